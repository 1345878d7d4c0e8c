// quanto/kernels/matmul.hpp: the matmul front door. `y = x · Wᵀ (+ bias)` for a weight in the
// kernel layout (`pack_weight`), with plain pointer entry points for other engines and a tensor
// convenience overload. The ISA is a template argument (default: `native_isa`), chosen at compile
// time with no run-time branch, and reached only through `backend<I>` (backend.hpp); the work is split over output rows
// (deterministic for any thread count: each output is computed by one thread, in a fixed order).
//
//   matmul(w, x, m, ldx, y, ldy, bias)                      exact float activations (default)
//   matmul<dynamic_int8_activations>(w, x, ...)             int8 activations per block, integer dots
//   matmul_quantized<qint8>(w, xq, x_scale, m, ...)         w8a8: int8 x int8 -> int32, exact
//   matmul_quantized<qfloat8_e4m3fn>(w, xq, x_scale, ...)   float8 activations (float accumulation)
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/parallel.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/backend.hpp"
#include "quanto/kernels/layout.hpp"
// Every ISA folder's entry header: each defines `backend<I>` when the compiler targets its ISA and
// is empty otherwise (one line per folder; the ISAs themselves are core/isa.hpp's isa_list).
#include "quanto/kernels/arm/neon/matmul.hpp"
#include "quanto/kernels/reference/matmul.hpp"
#include "quanto/kernels/x86/avx2/matmul.hpp"

QUANTO_BEGIN_NAMESPACE
namespace kernels {

/// Options of a matmul call.
struct matmul_options {
  parallel_options parallel{};     ///< threads / pool (see parallel.hpp)
  std::int64_t rows_per_task = 0;  ///< output rows per parallel task; 0 = default_rows_per_task
};

/// Weight rows per task when the caller does not choose: about 256 KiB of weight bytes per task at
/// m <= 2 (each task streams a long run of memory), fewer rows as the batch grows, since a row then
/// costs ~m/2 times more arithmetic than reading it (a 384 x 384 weight at m = 24 is 7 tasks, not
/// 1); a multiple of 8 rows (the kernels' row block). Depends on the shape only (determinism).
inline std::int64_t default_rows_per_task(std::int64_t row_bytes, std::int64_t m) noexcept {
  const std::int64_t work = std::max<std::int64_t>(1, row_bytes) * std::max<std::int64_t>(1, (m + 1) / 2);
  const std::int64_t rows = (std::int64_t{256} << 10) / work;
  return std::max<std::int64_t>(8, (rows + 7) / 8 * 8);
}

inline namespace QUANTO_TARGET_NS {
namespace dispatch {

/// The ISA's element order for weight `w` (identity for the reference).
template <Isa I, class W>
struct order {
  const W* w;
  std::int64_t operator()(std::int64_t e) const noexcept {
    return backend<I>::template position<typename W::qtype>(*w, e);
  }
};

/// Whether ISA `I` has a SIMD body for this weight's shape (otherwise the reference runs it).
template <Isa I, QType Q, ModelFloat T, class S>
bool simd_supports(const packed_weight<Q, T, S>& w) noexcept {
  if constexpr (std::is_same_v<I, isa::scalar>)
    return false;
  else
    return backend<I>::supports(w);
}

template <class Kind, Isa I, QType Q, ModelFloat T, class S>
void run_rows(const packed_weight<Q, T, S>& w, const kernels::detail::prepared_activations& xp, std::int64_t n0,
              std::int64_t n1, float* y, std::int64_t ldy, bool simd) {
  const auto go = [&](auto b) {
    using B = decltype(b);
    if constexpr (std::is_same_v<Kind, exact_activations>)
      B::gemm_exact(w, xp, n0, n1, y, ldy);
    else if constexpr (std::is_same_v<Kind, dynamic_int8_activations>)
      B::gemm_dynamic(w, xp, n0, n1, y, ldy);
    else
      B::gemm_int8(w, xp, n0, n1, y, ldy);
  };
  if (simd)
    go(backend<I>{});
  else
    go(backend<isa::scalar>{});
}

/// Marks the w8a8 integer path in `run_rows`.
struct int8_activations {};

template <ModelFloat Y>
inline Y from_f32(float v) noexcept {
  if constexpr (std::is_same_v<Y, float>)
    return v;
  else
    return Y(v);
}

/// Splits the output rows into tasks, runs the kernel on each, and applies the epilogue
/// (`acc * out_scale + bias`, conversion to Y) while the task's outputs are still in cache.
template <class Kind, Isa I, QType Q, ModelFloat T, class S, ModelFloat Y>
void run(const packed_weight<Q, T, S>& w, const kernels::detail::prepared_activations& xp, Y* y, std::int64_t ldy,
         const float* bias, const matmul_options& opt) {
  const std::int64_t m = xp.m, n = w.n;
  if (m == 0 || n == 0) return;
  const bool simd = simd_supports<I>(w);
  std::int64_t grain = opt.rows_per_task;
  if (grain <= 0) grain = default_rows_per_task(w.row_bytes(), m);
  grain = std::min(grain, n);
  parallel_for(
      0, n, grain,
      [&](std::int64_t n0, std::int64_t n1) {
        const std::int64_t cols = n1 - n0;
        std::vector<float> tmp;
        float* acc;
        std::int64_t ld;
        if constexpr (std::is_same_v<Y, float>) {
          acc = y + n0;
          ld = ldy;
        } else {
          tmp.resize(static_cast<std::size_t>(m * cols));
          acc = tmp.data();
          ld = cols;
        }
        run_rows<Kind, I>(w, xp, n0, n1, acc - n0, ld, simd);
        for (std::int64_t i = 0; i < m; ++i)
          for (std::int64_t c = 0; c < cols; ++c) {
            // one explicit rounding order (no contraction left to the compiler): acc * s, then + bias
            const float v =
                bias ? std::fma(acc[i * ld + c], xp.out_scale, bias[n0 + c]) : acc[i * ld + c] * xp.out_scale;
            y[i * ldy + n0 + c] = from_f32<Y>(v);
          }
      },
      opt.parallel);
}

inline void check_dims(std::int64_t m, std::int64_t k, std::int64_t ldx, std::int64_t n, std::int64_t ldy) {
  if (m < 0) throw shape_error("matmul: negative batch " + std::to_string(m));
  if (ldx < k) throw shape_error("matmul: ldx " + std::to_string(ldx) + " is smaller than k = " + std::to_string(k));
  if (ldy < n) throw shape_error("matmul: ldy " + std::to_string(ldy) + " is smaller than n = " + std::to_string(n));
}

}  // namespace dispatch

/// `y[i, :] = x[i, :] · Wᵀ (+ bias)` for i < m. `x` is m rows of w.k elements, `ldx` apart; `y` is
/// m rows of w.n elements, `ldy` apart; `bias` is w.n floats or null. x and y may be unaligned.
template <ActivationPolicy P = exact_activations, Isa I = native_isa, QType Q, ModelFloat T, class S, ModelFloat X,
          ModelFloat Y>
void matmul(const packed_weight<Q, T, S>& w, const X* x, std::int64_t m, std::int64_t ldx, Y* y, std::int64_t ldy,
            const float* bias = nullptr, const matmul_options& opt = {}) {
  static_assert(UsableIsa<I>, "quanto: this ISA has no kernels, or the compiler flags do not enable it");
  static_assert(!(std::is_same_v<P, dynamic_int8_activations> && FloatQType<Q>),
                "quanto: dynamic int8 activations need an integer weight (qint2/qint4/qint8); a qfloat8 "
                "weight takes exact_activations");
  dispatch::check_dims(m, w.k, ldx, w.n, ldy);
  if (m == 0) return;
  constexpr bool dynamic = std::is_same_v<P, dynamic_int8_activations>;
  const bool simd = dispatch::simd_supports<I>(w);
  auto decode = [&](std::int64_t i, std::int64_t e) { return kernels::detail::to_f32(x[i * ldx + e]); };
  auto p = simd ? prep::prepare_float(m, w.k, w.k_padded, w.group, LowBitQType<Q>, decode,
                                      dispatch::order<I, std::decay_t<decltype(w)>>{&w})
                : prep::prepare_float(m, w.k, w.k_padded, w.group, LowBitQType<Q>, decode);
  if constexpr (dynamic) {
    prep::quantize_rows_int8<I>(p, LowBitQType<Q> ? w.group : dynamic_int8_activations::block);
    if constexpr (LowBitQType<Q>) prep::centre_lowbit(p, Q::bits);
  }
  dispatch::run<P, I>(w, p, y, ldy, bias, opt);
}

/// A matmul whose activations are already quantized (quanto's QLinear with activations): codes of
/// `QX` (qint8 or a qfloat8) with one per-tensor scale. qint8 x qint8 accumulates in int32, exactly
/// (bit-identical on every ISA); any other pair accumulates the codes' values in float32. 8-bit
/// weights only.
template <ByteQType QX, Isa I = native_isa, ByteQType Q, ModelFloat T, ModelFloat Y>
void matmul_quantized(const packed_weight<Q, T>& w, const typename QX::storage* xq, float x_scale, std::int64_t m,
                      std::int64_t ldx, Y* y, std::int64_t ldy, const float* bias = nullptr,
                      const matmul_options& opt = {}) {
  static_assert(UsableIsa<I>, "quanto: this ISA has no kernels, or the compiler flags do not enable it");
  dispatch::check_dims(m, w.k, ldx, w.n, ldy);
  if (m == 0) return;
  constexpr bool integer = std::is_same_v<QX, qint8> && std::is_same_v<Q, qint8>;
  auto decode = [&](std::int64_t i, std::int64_t e) -> float {
    if constexpr (std::is_same_v<QX, qint8>)
      return static_cast<float>(xq[i * ldx + e]);
    else
      return to_float(xq[i * ldx + e]);
  };
  if constexpr (integer) {
    if (w.k > (std::int64_t{1} << 17))
      throw unsupported_error("w8a8: k = " + std::to_string(w.k) + " could overflow int32 accumulation (limit 131072)");
    kernels::detail::prepared_activations p;
    p.m = m;
    p.k = w.k;
    p.k_padded = w.k_padded;
    p.xq = tensor<std::int8_t>(shape{m, w.k_padded});
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t e = 0; e < w.k; ++e) {
        p.xq[static_cast<std::size_t>(i * w.k_padded + e)] = xq[i * ldx + e];
        p.has_int8_min = p.has_int8_min || xq[i * ldx + e] == -128;
      }
    p.out_scale = x_scale;
    dispatch::run<dispatch::int8_activations, I>(w, p, y, ldy, bias, opt);
  } else {
    const bool simd = dispatch::simd_supports<I>(w);
    auto p = simd ? prep::prepare_float(m, w.k, w.k_padded, w.group, false, decode,
                                        dispatch::order<I, std::decay_t<decltype(w)>>{&w})
                  : prep::prepare_float(m, w.k, w.k_padded, w.group, false, decode);
    p.out_scale = x_scale;
    dispatch::run<exact_activations, I>(w, p, y, ldy, bias, opt);
  }
}

/// Tensor convenience: x of shape [..., k] gives y of shape [..., n] (same element type as x).
template <ActivationPolicy P = exact_activations, Isa I = native_isa, QType Q, ModelFloat T, class S, ModelFloat X>
tensor<X> matmul(const packed_weight<Q, T, S>& w, tensor_view<const X> x, std::span<const float> bias = {},
                 const matmul_options& opt = {}) {
  if (x.rank() < 1 || x.shape()[x.rank() - 1] != w.k)
    throw shape_error("matmul: x has shape " + x.shape().to_string() + ", expected [..., " + std::to_string(w.k) + "]");
  if (!bias.empty() && static_cast<std::int64_t>(bias.size()) != w.n)
    throw shape_error("matmul: bias has " + std::to_string(bias.size()) + " elements, expected " + std::to_string(w.n));
  std::vector<std::int64_t> dims(x.shape().dims().begin(), x.shape().dims().end());
  dims.back() = w.n;
  tensor<X> y{shape(dims)};
  std::int64_t m = 1;
  for (std::size_t d = 0; d + 1 < dims.size(); ++d) m *= dims[d];
  matmul<P, I>(w, x.data(), m, w.k, y.data(), w.n, bias.empty() ? nullptr : bias.data(), opt);
  return y;
}

}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE
