// quanto/quantize/affine.hpp: affine quantization of qint2/qint4: the `group_affine` scheme
// policy, quanto's MaxOptimizer (scale and float shift from min/max), `quantize_affine` with a
// float shift or an integer zero-point, and dequantization. Codes are unsigned, in [0, 2^bits - 1].
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/quantize/axis.hpp"
#include "quanto/quantize/checks.hpp"
#include "quanto/quantize/group.hpp"
#include "quanto/quantize/packing.hpp"
#include "quanto/quantize/simd.hpp"

QUANTO_BEGIN_NAMESPACE

/// A scale and a float shift in the model dtype (quanto stores `shift = -min`).
template <ModelFloat T>
struct scale_shift {
  tensor<T> scale;
  tensor<T> shift;
};

namespace detail {

constexpr float code_max(int bits) noexcept { return static_cast<float>((1 << bits) - 1); }

/// `clamp(round(q), 0, 2^bits-1).to(uint8)`, with the 0/0 case (a zero scale, NaN quotient)
/// giving code 0: dequantization then yields `-shift`, which is exactly the value of every
/// element of a constant group (quanto leaves this to an implementation-defined cast).
constexpr std::uint8_t to_code(float q, int bits) noexcept {
  if (is_nan_bits(q)) return 0;
  return static_cast<std::uint8_t>(static_cast<int>(std::clamp(q, 0.0f, code_max(bits))));
}

/// One element of quanto's `quantize_affine` with a float shift:
/// `round((x + shift) / scale)` with both the sum and the quotient rounded to the model dtype.
template <ModelFloat T>
constexpr std::uint8_t quantize_affine_value(T x, T scale, T shift, int bits) noexcept {
  return to_code(round_half_even(widen(t_div(t_add(x, shift), scale))), bits);
}

/// With an integer zero-point: `round(x / scale) + zero_point` (the sum in the model dtype).
template <ModelFloat T>
constexpr std::uint8_t quantize_affine_value(T x, T scale, std::uint8_t zero_point, int bits) noexcept {
  const T r = narrow<T>(round_half_even(widen(t_div(x, scale))));
  return to_code(widen(narrow<T>(widen(r) + static_cast<float>(zero_point))), bits);
}

/// quanto's QBitsDequantizer with a float shift: `scale * q - shift`, two roundings.
template <ModelFloat T>
constexpr T dequantize_affine_value(std::uint8_t q, T scale, T shift) noexcept {
  return t_sub(narrow<T>(widen(scale) * static_cast<float>(q)), shift);
}

/// With a zero-point: `scale * (int8(q) - int8(zero_point))`, one rounding.
template <ModelFloat T>
constexpr T dequantize_affine_value(std::uint8_t q, T scale, std::uint8_t zero_point) noexcept {
  const int d = static_cast<int>(static_cast<std::int8_t>(q)) - static_cast<int>(static_cast<std::int8_t>(zero_point));
  return narrow<T>(widen(scale) * static_cast<float>(static_cast<std::int8_t>(d)));
}

template <class Shift>
concept AffineShift = ModelFloat<Shift> || std::is_same_v<Shift, std::uint8_t>;

}  // namespace detail

/// Group-wise affine scheme (qint2/qint4). `group_size` is `auto_group` (quanto's module rule,
/// the default), `no_group`, or a size that must divide the per-axis element count.
/// `ZeroPoint` stores the shift as a uint8 integer zero-point (quanto's `zeropoint=True`)
/// instead of a float; it changes the weight's type, so it is a template argument.
template <bool ZeroPoint = false>
struct group_affine {
  static constexpr bool is_affine = true;
  static constexpr bool zero_point = ZeroPoint;
  std::int64_t group_size = auto_group;
  qaxis axis = qaxis::first;
};

/// quanto's `MaxOptimizer.optimize(base, qtype, axis)` on an already grouped tensor:
/// `scale = (max - min) / (2^bits - 1)` and `shift = -min`, in the model dtype. Axis 0 reduces
/// each row; axis -1 — and, as in quanto, axis None (a single row) — reduces each column.
template <LowBitQType Q, ModelFloat T>
scale_shift<T> max_scale_shift(tensor_view<const T> base, qaxis axis, kernels::parallel_options par = {}) {
  namespace qd = kernels::quantize_dispatch;
  const param_map pm = map_params(base.shape(), axis == qaxis::first ? qaxis::first : qaxis::last);
  const auto n = static_cast<std::size_t>(pm.count());
  std::vector<float> lo(n, 0.0f), hi(n, 0.0f);
  std::vector<unsigned char> seen(n, 0);
  const auto step = [&](std::size_t i, std::size_t j) {
    const float v = model_arith::widen(base[i]);
    if (!seen[j]) {
      lo[j] = hi[j] = v;
      seen[j] = 1;
    } else if (is_nan_bits(v)) {
      lo[j] = hi[j] = v;  // amin/amax propagate NaN
    } else if (!is_nan_bits(lo[j])) {
      lo[j] = std::min(lo[j], v);
      hi[j] = std::max(hi[j], v);
    }
  };
  (void)par;  // used by the vector path only
  bool done = false;
#if QUANTO_HAS_AVX2
  if constexpr (qd::compiled) {
    // min and max are order-free except for NaN (the reference keeps the last one's bits) and the
    // sign of a zero extreme (the first zero seen): a run with either goes to the reference.
    if (qd::enabled() && pm.k == param_map::kind::per_row) {
      qd::for_each_run(pm, par, [&](std::size_t b, std::size_t len, std::size_t r) {
        float l = 0.0f, h = 0.0f;
        bool nan = false;
        const std::size_t k = kernels::quantize_avx2::minmax_run(base.data() + b, len, l, h, nan);
        if (k > 0 && !nan) {
          lo[r] = l;
          hi[r] = h;
          seen[r] = 1;
          for (std::size_t i = b + k; i < b + len; ++i) step(i, r);
          if (!is_nan_bits(lo[r]) && lo[r] != 0.0f && hi[r] != 0.0f) return;
        }
        seen[r] = 0;
        for (std::size_t i = b; i < b + len; ++i) step(i, r);
      });
      done = true;
    }
  }
#endif
  if (!done) pm.for_each(step);
  scale_shift<T> out{tensor<T>(pm.param_shape), tensor<T>(pm.param_shape)};
  const float levels = detail::code_max(Q::bits);  // qmax - qmin
  for (std::size_t j = 0; j < n; ++j) {
    const T rmin = model_arith::narrow<T>(lo[j]), rmax = model_arith::narrow<T>(hi[j]);
    out.scale[j] = model_arith::t_div_scalar(model_arith::t_sub(rmax, rmin), levels);
    out.shift[j] = model_arith::t_neg(rmin);
  }
  return out;
}

/// quanto's `zeropoint=True` conversion of a float shift: `clamp(round(shift / scale), 0,
/// 2^bits - 1)` as uint8 (0/0 gives 0).
template <LowBitQType Q, ModelFloat T>
tensor<std::uint8_t> to_zero_point(tensor_view<const T> scale, tensor_view<const T> shift) {
  detail::require_shape(shift.shape(), scale.shape(), "the shift");
  tensor<std::uint8_t> zp(scale.shape());
  for (std::size_t j = 0; j < zp.size(); ++j)
    zp[j] = detail::to_code(round_half_even(model_arith::widen(model_arith::t_div(shift[j], scale[j]))), Q::bits);
  return zp;
}

/// quanto's `quantize_affine` on an already grouped tensor (`group_size` handled by the
/// caller): `scale` and `shift` broadcast over `base` per row, per column or per tensor.
/// `Shift` is the model dtype (float shift) or uint8 (zero-point).
template <LowBitQType Q, ModelFloat T, detail::AffineShift Shift>
tensor<std::uint8_t> quantize_affine(tensor_view<const T> base, tensor_view<const T> scale,
                                     tensor_view<const Shift> shift, kernels::parallel_options par = {}) {
  namespace qd = kernels::quantize_dispatch;
  const param_map pm = broadcast_params(base.shape(), scale.shape());
  detail::require_shape(shift.shape(), scale.shape(), "the shift");
  tensor<std::uint8_t> codes(base.shape());
  const bool per_column = pm.k == param_map::kind::per_column;
  const bool simd = qd::enabled();
  qd::for_each_run(pm, par, [&](std::size_t b, std::size_t n, std::size_t j) {
    std::size_t k = 0;
#if QUANTO_HAS_AVX2
    if constexpr (qd::compiled) {
      namespace v = kernels::quantize_avx2;
      const T* x = base.data() + b;
      std::uint8_t* o = codes.data() + b;
      if constexpr (std::is_same_v<Shift, std::uint8_t>) {
        if (simd && per_column)
          k = v::quantize_affine_zp_run<T, Q::bits, true>(x, o, n, 0.0f, 0, scale.data(), shift.data());
        else if (simd)
          k = v::quantize_affine_zp_run<T, Q::bits, false>(x, o, n, model_arith::widen(scale[j]), shift[j], nullptr,
                                                           nullptr);
      } else {
        if (simd && per_column)
          k = v::quantize_affine_run<T, Q::bits, true>(x, o, n, 0.0f, 0.0f, scale.data(), shift.data());
        else if (simd)
          k = v::quantize_affine_run<T, Q::bits, false>(x, o, n, model_arith::widen(scale[j]),
                                                        model_arith::widen(shift[j]), nullptr, nullptr);
      }
    }
#endif
    for (; k < n; ++k) {
      const std::size_t p = per_column ? k : j;
      codes[b + k] = detail::quantize_affine_value(base[b + k], scale[p], shift[p], Q::bits);
    }
  });
  (void)simd;
  return codes;
}

/// Dequantizes codes laid out as `quantize_affine` produced them (grouped shape) into `out`, a
/// buffer of the codes' element count (any shape; written in the codes' flat order).
template <ModelFloat T, detail::AffineShift Shift>
void dequantize_affine_into(tensor_view<const std::uint8_t> codes, tensor_view<const T> scale,
                            tensor_view<const Shift> shift, tensor_view<T> out, kernels::parallel_options par = {}) {
  namespace qd = kernels::quantize_dispatch;
  const param_map pm = broadcast_params(codes.shape(), scale.shape());
  detail::require_shape(shift.shape(), scale.shape(), "the shift");
  detail::require_numel(out.numel(), codes.numel(), "the dequantized output");
  const bool per_column = pm.k == param_map::kind::per_column;
  const bool simd = qd::enabled();
  qd::for_each_run(pm, par, [&](std::size_t b, std::size_t n, std::size_t j) {
    std::size_t k = 0;
#if QUANTO_HAS_AVX2
    if constexpr (qd::compiled) {
      namespace v = kernels::quantize_avx2;
      const std::uint8_t* q = codes.data() + b;
      T* o = out.data() + b;
      if constexpr (std::is_same_v<Shift, std::uint8_t>) {
        if (simd && per_column)
          k = v::dequantize_affine_zp_run<T, true>(q, o, n, 0.0f, 0, scale.data(), shift.data());
        else if (simd)
          k = v::dequantize_affine_zp_run<T, false>(q, o, n, model_arith::widen(scale[j]), shift[j], nullptr, nullptr);
      } else {
        if (simd && per_column)
          k = v::dequantize_affine_run<T, true>(q, o, n, 0.0f, 0.0f, scale.data(), shift.data());
        else if (simd)
          k = v::dequantize_affine_run<T, false>(q, o, n, model_arith::widen(scale[j]), model_arith::widen(shift[j]),
                                                 nullptr, nullptr);
      }
    }
#endif
    for (; k < n; ++k) {
      const std::size_t p = per_column ? k : j;
      out[b + k] = detail::dequantize_affine_value(codes[b + k], scale[p], shift[p]);
    }
  });
  (void)simd;
}

/// Dequantizes codes laid out as `quantize_affine` produced them (grouped shape).
template <ModelFloat T, detail::AffineShift Shift>
tensor<T> dequantize_affine(tensor_view<const std::uint8_t> codes, tensor_view<const T> scale,
                            tensor_view<const Shift> shift, kernels::parallel_options par = {}) {
  tensor<T> out(codes.shape());
  dequantize_affine_into<T, Shift>(codes, scale, shift, out.mutable_view(), par);
  return out;
}

/// `dequantize_affine(unpack(packed, bits, codes_shape), scale, shift)` into `out` (the codes'
/// element count, their flat order), reading the packed bytes directly: no code tensor. With one
/// parameter per row (quanto's axis-0 groups) each row is dequantized by a table of its 2^bits
/// outputs, computed by the same element code as `dequantize_affine`; other layouts unpack first.
template <ModelFloat T, detail::AffineShift Shift>
void dequantize_packed_into(tensor_view<const std::uint8_t> packed, int bits, const shape& codes_shape,
                            tensor_view<const T> scale, tensor_view<const Shift> shift, tensor_view<T> out,
                            kernels::parallel_options par = {}) {
  namespace qd = kernels::quantize_dispatch;
  const param_map pm = broadcast_params(codes_shape, scale.shape());
  detail::require_shape(shift.shape(), scale.shape(), "the shift");
  detail::require_numel(out.numel(), codes_shape.numel(), "the dequantized output");
  const shape expect = packed_shape(codes_shape, bits);
  if (!(packed.shape() == expect))
    throw shape_error("packed data has shape " + packed.shape().to_string() + ", expected " + expect.to_string() +
                      " for codes of shape " + codes_shape.to_string());
  if (pm.k != param_map::kind::per_row) {
    const tensor<std::uint8_t> codes = unpack(packed, bits, codes_shape);
    dequantize_affine_into<T, Shift>(codes.view(), scale, shift, out, par);
    return;
  }
  const auto cols = static_cast<std::size_t>(pm.cols);
  const auto rows_per_plane = static_cast<std::size_t>(packed.shape()[0]);
  const auto mask = static_cast<std::uint8_t>((1u << bits) - 1u);
  const bool simd = qd::enabled();
  qd::for_each_run(pm, par, [&](std::size_t b, std::size_t n, std::size_t r) {
    // grouped row r lives in byte row r % R, bit plane r / R
    const std::uint8_t* src = packed.data() + (r % rows_per_plane) * cols;
    const auto sh = static_cast<int>(static_cast<std::size_t>(bits) * (r / rows_per_plane));
    T* o = out.data() + b;
    std::size_t k = 0;
#if QUANTO_HAS_AVX2
    if constexpr (qd::compiled) {
      namespace v = kernels::quantize_avx2;
      if (simd && n >= 32) {
        alignas(32) static constexpr std::uint8_t iota[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
        alignas(32) T table[16];
        std::size_t t = 0;
        if constexpr (std::is_same_v<Shift, std::uint8_t>)
          t = v::dequantize_affine_zp_run<T, false>(iota, table, 16, model_arith::widen(scale[r]), shift[r], nullptr,
                                                    nullptr);
        else
          t = v::dequantize_affine_run<T, false>(iota, table, 16, model_arith::widen(scale[r]),
                                                 model_arith::widen(shift[r]), nullptr, nullptr);
        for (; t < 16; ++t) table[t] = detail::dequantize_affine_value(iota[t], scale[r], shift[r]);
        k = v::dequantize_table_run(src, sh, mask, table, o, n);
      }
    }
#endif
    for (; k < n; ++k)
      o[k] = detail::dequantize_affine_value(static_cast<std::uint8_t>((src[k] >> sh) & mask), scale[r], shift[r]);
  });
  (void)simd;
}

QUANTO_END_NAMESPACE
