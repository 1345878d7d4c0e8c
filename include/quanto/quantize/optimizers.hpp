// quanto/quantize/optimizers.hpp: the scale/shift optimizers as policy types: `absmax` for the
// symmetric 8-bit qtypes, `max_optimizer` and `hqq_optimizer` for the affine 2/4-bit qtypes.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/core/type_list.hpp"
#include "quanto/quantize/affine.hpp"
#include "quanto/quantize/axis.hpp"
#include "quanto/quantize/simd.hpp"
#include "quanto/quantize/symmetric.hpp"
#include "quanto/quantize/torch_pow.hpp"
#include "quanto/quantize/torch_sum.hpp"

QUANTO_BEGIN_NAMESPACE

/// quanto's `AbsmaxOptimizer`: `scale = max|x| / qmax` per axis. Symmetric: 8-bit qtypes only.
struct absmax_optimizer {
  static constexpr std::string_view name = "absmax";
  static constexpr bool is_affine = false;

  template <ByteQType Q, ModelFloat T>
  tensor<T> operator()(tensor_view<const T> base, qaxis axis, kernels::parallel_options par = {}) const {
    return absmax_scale<Q>(base, effective_axis(base.shape(), axis), par);
  }
};

/// quanto's `MaxOptimizer`: `scale = (max - min) / (2^bits - 1)`, `shift = -min`. Affine:
/// qint2/qint4 only. The default optimizer of the low-bit qtypes.
struct max_optimizer {
  static constexpr std::string_view name = "max";
  static constexpr bool is_affine = true;

  /// `base` is already grouped; `axis` as quanto's AffineOptimizer receives it.
  template <LowBitQType Q, ModelFloat T>
  scale_shift<T> operator()(tensor_view<const T> base, qaxis axis, kernels::parallel_options par = {}) const {
    return max_scale_shift<Q>(base, effective_axis(base.shape(), axis), par);
  }
};

/// quanto's `HqqOptimizer` (Half-Quadratic Quantization, after mobiusml/hqq): starts from
/// MaxOptimizer's scale and shift, keeps the scale, and refines the shift by proximal steps on
/// an Lp (p < 1) error, stopping at the first step that does not lower the mean absolute error.
/// Same parameters, same loop, same early stop, same rounding steps as quanto.
struct hqq_optimizer {
  static constexpr std::string_view name = "hqq";
  static constexpr bool is_affine = true;

  double lp_norm = 0.7;
  double beta = 10.0;
  double kappa = 1.01;
  int iters = 20;
  /// The PyTorch CPU build to match: its vector width sets the summation order (torch_sum.hpp)
  /// and which elements of `pow` take the scalar path.
  torch_sum_order sum_order = torch_sum_order::avx2;
  /// The intra-op thread count PyTorch ran with (`torch.get_num_threads()`). On tensors over
  /// 32768 elements (its parallel grain) it splits the work into per-thread chunks, which changes
  /// the full sum behind HQQ's mean absolute error (and so, on a near tie, where the loop stops)
  /// and, for float32, which `pow` elements take the scalar path. Per-row means do not depend on it.
  int torch_threads = 1;

  template <LowBitQType Q, ModelFloat T>
  scale_shift<T> operator()(tensor_view<const T> base, qaxis axis, kernels::parallel_options par = {}) const;
};

namespace detail {

/// `torch.pow(t, exponent)` for a model-dtype tensor and a Python-float exponent: PyTorch
/// rounds the exponent to the tensor's dtype, computes in float with its vectorized pow (SLEEF's,
/// not correctly rounded: see torch_pow.hpp), and rounds the result to the dtype.
template <ModelFloat T>
inline T t_pow(T x, T exponent) noexcept {
  return narrow<T>(torch_powf(widen(x), widen(exponent)));
}

/// The same op on the elements PyTorch's vectorized loop leaves over (the last `numel % 16` of a
/// float32 tensor with AVX2, `% 32` with AVX-512, when it runs in one chunk): there it calls
/// `std::pow(float, double)` with the unrounded Python exponent. For float16/bfloat16 the two
/// paths agree once rounded to the dtype, so only float32 needs this.
inline float t_pow_tail(float x, double exponent) noexcept {
  return opaque(static_cast<float>(std::pow(static_cast<double>(x), exponent)));
}

/// Where that tail starts in a contiguous tensor of `n` elements of T (n for float16/bfloat16).
template <ModelFloat T>
constexpr std::size_t pow_tail_begin(std::size_t n, torch_sum_order order) noexcept {
  if constexpr (!std::is_same_v<T, float>) return n;
  const std::size_t step = order == torch_sum_order::avx2 ? 16 : 32;  // two vectors per iteration
  return n - n % step;
}

/// Which elements of a contiguous `n`-element tensor take that scalar path when PyTorch runs with
/// `threads` threads: each chunk of `torch_chunk_size` elements runs the vector loop on its own,
/// so each has its own tail (with one chunk: `pow_tail_begin`).
template <ModelFloat T>
struct pow_tail_map {
  std::size_t n, chunk;
  torch_sum_order order;
  pow_tail_map(std::size_t n_, torch_sum_order o, int threads)
      : n(n_), chunk(static_cast<std::size_t>(torch_chunk_size(static_cast<std::int64_t>(n_), threads))), order(o) {}
  bool operator()(std::size_t i) const noexcept {
    if constexpr (!std::is_same_v<T, float>) return false;
    const std::size_t begin = chunk == 0 ? 0 : i / chunk * chunk;
    const std::size_t len = std::min(chunk, n - begin);
    return i - begin >= pow_tail_begin<T>(len, order);
  }
};

/// `torch_sum_all(x, n, order, threads)`, with the AVX2 order's lane sums in registers when the
/// vector code is on (the same additions in the same order: bit-identical).
/// `x` may be of a model dtype, summed as its float values (only with the vector code on).
template <class T = float>
inline float fast_sum_all(const T* x, std::int64_t n, torch_sum_order order, int threads) {
#if QUANTO_HAS_AVX2
  namespace qd = kernels::quantize_dispatch;
  if (qd::compiled && qd::enabled() && order == torch_sum_order::avx2) {
    const auto sum = []<class U>(const U* p, std::int64_t m) { return kernels::quantize_avx2::sum_lanes8(p, m); };
    const std::int64_t chunk = torch_chunk_size(n, threads);
    if (chunk >= n) return sum(x, n);
    std::vector<float> slots(static_cast<std::size_t>(threads), 0.0f);
    for (std::int64_t k = 0; k * chunk < n; ++k)
      slots[static_cast<std::size_t>(k)] += sum(x + k * chunk, std::min(chunk, n - k * chunk));
    return 0.0f + sum(slots.data(), threads);
  }
#endif
  if constexpr (std::is_same_v<T, float>) {
    return torch_sum_all(x, n, order, threads);
  } else {
    std::vector<float> wide(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < wide.size(); ++i) wide[i] = widen(x[i]);
    return torch_sum_all(wide.data(), n, order, threads);
  }
}

/// `float(torch.abs(a - b).mean())`, PyTorch running with `threads` threads.
template <ModelFloat T>
double mean_abs_error(std::span<const T> a, std::span<const T> b, torch_sum_order order, int threads = 1,
                      kernels::parallel_options par = {}) {
  namespace qd = kernels::quantize_dispatch;
  std::vector<float> d(a.size());
  const bool simd = qd::enabled();
  kernels::parallel_for(
      0, static_cast<std::int64_t>(a.size()), qd::elements_per_task,
      [&](std::int64_t lo, std::int64_t hi) {
        auto i = static_cast<std::size_t>(lo);
        const auto end = static_cast<std::size_t>(hi);
#if QUANTO_HAS_AVX2
        if constexpr (qd::compiled)
          if (simd) i += kernels::quantize_avx2::abs_diff_run(a.data() + i, b.data() + i, d.data() + i, end - i);
#endif
        for (; i < end; ++i) d[i] = widen(t_abs(t_sub(a[i], b[i])));
      },
      par);
  (void)simd;
  const float sum = fast_sum_all(d.data(), static_cast<std::int64_t>(d.size()), order, threads);
  return static_cast<double>(widen(narrow<T>(sum / static_cast<float>(d.size()))));
}

#if QUANTO_HAS_AVX2
/// HQQ with one shift per row (quanto's axis-0 groups), PyTorch's AVX2 sum order and the vector
/// code on: each iteration is one pass over the rows, every row computed whole from the cache:
/// target (its dequantized values recomputed from the codes, |err|^(p-1) by table for 16-bit T),
/// row sum, new shift, new codes and |base - dequantized| in T; then the full sum of those errors.
/// The same values, rounding by rounding and sum by sum, as the reference loop, with no tensor per
/// iteration (the codes and the errors live in two buffers each).
template <LowBitQType Q, ModelFloat T>
void hqq_rows(const hqq_optimizer& opt, tensor_view<const T> base, scale_shift<T>& best, const param_map& pm,
              kernels::parallel_options par) {
  namespace qd = kernels::quantize_dispatch;
  namespace v = kernels::quantize_avx2;
  const auto cols = static_cast<std::size_t>(pm.cols);
  const std::size_t n = base.size();
  const tensor_view<const T> scale = best.scale.view();
  const T exponent = narrow<T>(static_cast<float>(opt.lp_norm - 1.0));
  std::vector<float> pow_table;
  if constexpr (!std::is_same_v<T, float>) {
    // |err| is a non-negative T: the reference's t_pow of each of them, once
    pow_table.resize(0x8000);
    for (std::uint32_t u = 0; u < 0x8000; ++u)
      pow_table[u] = widen(t_pow(T::from_bits(static_cast<std::uint16_t>(u)), exponent));
  }
  // float32: the elements PyTorch's pow leaves to std::pow (the last of each of its chunks)
  std::vector<std::pair<std::size_t, std::size_t>> pow_tails;
  const pow_tail_map<T> in_pow_tail(n, opt.sum_order, opt.torch_threads);
  if constexpr (std::is_same_v<T, float>)
    for (std::size_t c0 = 0; in_pow_tail.chunk > 0 && c0 < n; c0 += in_pow_tail.chunk) {
      const std::size_t len = std::min(in_pow_tail.chunk, n - c0);
      pow_tails.emplace_back(c0 + pow_tail_begin<T>(len, opt.sum_order), c0 + len);
    }
  const std::int64_t grain = std::max<std::int64_t>(1, qd::elements_per_task / std::max<std::int64_t>(1, pm.cols));
  std::vector<std::uint8_t> codes(n), codes2(n);
  std::vector<T> err(n);

  // A row whose Max scale and shift are finite is finite (min and max propagate NaN and inf); with
  // them far from overflow every step of the row is a number (|err| = 0 gives pow = inf, whose
  // shrinkage is -inf, cut to 0), so the vector code may skip the NaN rule of its roundings.
  const auto numbers = [](T s, T sh) {
    constexpr float limit = 0x1p-8f * static_cast<float>(std::numeric_limits<T>::max());
    const float a = std::abs(widen(s)), c = std::abs(widen(sh));
    return a < limit && c < limit;
  };
  std::vector<unsigned char> finite_row(static_cast<std::size_t>(pm.rows));  // from Max's scale and shift = -min
  for (std::size_t r = 0; r < finite_row.size(); ++r) finite_row[r] = numbers(scale[r], best.shift[r]) ? 1 : 0;
  // codes and |base - dequantized| for `shift`, row r
  const auto requantize_row = [&](std::size_t r, T sh, std::uint8_t* c, T* d) {
    const T* x = base.data() + r * cols;
    const T s = scale[r];
    const bool safe = finite_row[r] && numbers(s, sh);
    std::size_t k =
        safe && widen(s) != 0.0f
            ? v::quantize_affine_run<T, Q::bits, false, true>(x, c, cols, widen(s), widen(sh), nullptr, nullptr)
            : v::quantize_affine_run<T, Q::bits, false>(x, c, cols, widen(s), widen(sh), nullptr, nullptr);
    for (; k < cols; ++k) c[k] = quantize_affine_value(x[k], s, sh, Q::bits);
    k = safe ? v::dequantize_abs_error_run<T, true>(x, c, d, cols, widen(s), widen(sh))
             : v::dequantize_abs_error_run<T, false>(x, c, d, cols, widen(s), widen(sh));
    for (; k < cols; ++k) d[k] = t_abs(t_sub(x[k], dequantize_affine_value(c[k], s, sh)));
  };
  const auto mean_error = [&] {
    const float sum = fast_sum_all(err.data(), static_cast<std::int64_t>(n), opt.sum_order, opt.torch_threads);
    return static_cast<double>(widen(narrow<T>(sum / static_cast<float>(n))));
  };
  kernels::parallel_for(
      0, pm.rows, grain,
      [&](std::int64_t lo, std::int64_t hi) {
        for (auto r = static_cast<std::size_t>(lo); r < static_cast<std::size_t>(hi); ++r)
          requantize_row(r, best.shift[r], codes.data() + r * cols, err.data() + r * cols);
      },
      par);
  double best_error = mean_error();

  double b = opt.beta;
  tensor<T> shift(scale.shape());
  for (int it = 0; it < opt.iters; ++it) {
    const float inv_beta = static_cast<float>(1.0 / b);
    kernels::parallel_for(
        0, pm.rows, grain,
        [&](std::int64_t lo, std::int64_t hi) {
          std::vector<float> target(cols);
          for (auto r = static_cast<std::size_t>(lo); r < static_cast<std::size_t>(hi); ++r) {
            const T* x = base.data() + r * cols;
            const std::uint8_t* c = codes.data() + r * cols;
            const T s = scale[r], sh = best.shift[r];
            // the reference's element (optimizers.hpp, the loop below) with dq recomputed
            const auto element = [&](std::size_t k) {
              const T e = t_sub(x[k], dequantize_affine_value(c[k], s, sh));
              const T a = t_abs(e);
              const std::size_t i = r * cols + k;
              const float p = in_pow_tail(i) ? t_pow_tail(widen(a), opt.lp_norm - 1.0) : widen(t_pow(a, exponent));
              const T shrunk = t_sub(a, narrow<T>(inv_beta * p));
              const T rr = widen(shrunk) > 0.0f ? shrunk : T(0.0f);
              const float ev = widen(e) > 0.0f ? widen(rr) : widen(e) < 0.0f ? -widen(rr) : 0.0f;
              const T qs = narrow<T>(static_cast<float>(c[k]) * widen(s));
              target[k] = widen(t_sub(qs, t_sub(x[k], narrow<T>(ev))));
            };
            std::size_t k = finite_row[r] && numbers(s, sh)
                                ? v::hqq_target_row<T, true>(x, c, target.data(), cols, widen(s), widen(sh),
                                                             widen(exponent), inv_beta, pow_table.data())
                                : v::hqq_target_row<T, false>(x, c, target.data(), cols, widen(s), widen(sh),
                                                              widen(exponent), inv_beta, pow_table.data());
            for (; k < cols; ++k) element(k);
            for (const auto& [t0, t1] : pow_tails)  // float32 only
              for (std::size_t i = std::max(t0, r * cols); i < std::min(t1, (r + 1) * cols); ++i) element(i - r * cols);
            const float sum = fast_sum_all(target.data(), static_cast<std::int64_t>(cols), opt.sum_order, 1);
            shift[r] = narrow<T>(sum / static_cast<float>(cols));
            requantize_row(r, shift[r], codes2.data() + r * cols, err.data() + r * cols);
          }
        },
        par);
    const double err2 = mean_error();
    if (!(err2 < best_error)) break;
    best_error = err2;
    std::swap(best.shift, shift);
    codes.swap(codes2);
    b *= opt.kappa;
  }
}
#endif

}  // namespace detail

template <LowBitQType Q, ModelFloat T>
scale_shift<T> hqq_optimizer::operator()(tensor_view<const T> base, qaxis axis, kernels::parallel_options par) const {
  using namespace detail;
  namespace qd = kernels::quantize_dispatch;
  axis = effective_axis(base.shape(), axis);
  scale_shift<T> best = max_scale_shift<Q>(base, axis, par);
  // quanto cannot run HQQ along a single row or column (its quantize_weight rejects axis=None);
  // Max's per-column parameters already reproduce such a tensor exactly, so keep them.
  if (axis == qaxis::none) return best;
#if QUANTO_HAS_AVX2
  if constexpr (qd::compiled) {
    const param_map rows = broadcast_params(base.shape(), best.scale.shape());
    if (qd::enabled() && rows.k == param_map::kind::per_row && sum_order == torch_sum_order::avx2 &&
        qd::pow_uses_sleef(widen(narrow<T>(static_cast<float>(lp_norm - 1.0))))) {
      hqq_rows<Q>(*this, base, best, rows, par);
      return best;
    }
  }
#endif

  const tensor_view<const T> scale = best.scale.view();
  tensor<std::uint8_t> codes = quantize_affine<Q>(base, scale, best.shift.view(), par);
  tensor<T> dq = dequantize_affine<T>(codes.view(), scale, best.shift.view(), par);
  double best_error = mean_abs_error<T>(base.span(), dq.span(), sum_order, torch_threads, par);

  const param_map pm = broadcast_params(base.shape(), scale.shape());
  const T exponent = narrow<T>(static_cast<float>(lp_norm - 1.0));
  const pow_tail_map<T> in_pow_tail(base.size(), sum_order, torch_threads);
  const bool per_column = pm.k == param_map::kind::per_column;
  // The vector loop covers SLEEF's exponents; the pow tail of a float32 tensor (std::pow in
  // PyTorch) is redone below by the reference element, as are the few exponents PyTorch sends to
  // cheaper operations.
  const bool simd = qd::enabled() && qd::pow_uses_sleef(widen(exponent));
  double b = beta;
  std::vector<float> target(base.size());
  for (int it = 0; it < iters; ++it) {
    const float inv_beta = static_cast<float>(1.0 / b);
    const auto element = [&](std::size_t i, std::size_t j) {
      // e = shrink_lp(base - dequant(base_q)) = sign(x) * relu(|x| - (1/beta) * |x|^(p-1))
      const T err = t_sub(base[i], dq[i]);
      const T a = t_abs(err);
      const float p = in_pow_tail(i) ? t_pow_tail(widen(a), lp_norm - 1.0) : widen(t_pow(a, exponent));
      const T shrunk = t_sub(a, narrow<T>(inv_beta * p));
      const T r = widen(shrunk) > 0.0f ? shrunk : T(0.0f);
      const float ev = widen(err) > 0.0f ? widen(r) : widen(err) < 0.0f ? -widen(r) : 0.0f;
      // q * scale - (base - e)
      const T qs = narrow<T>(static_cast<float>(codes[i]) * widen(scale[j]));
      target[i] = widen(t_sub(qs, t_sub(base[i], narrow<T>(ev))));
    };
    qd::for_each_run(pm, par, [&](std::size_t b0, std::size_t n, std::size_t j) {
      std::size_t k = 0;
#if QUANTO_HAS_AVX2
      if constexpr (qd::compiled) {
        namespace v = kernels::quantize_avx2;
        if (simd && per_column)
          k = v::hqq_target_run<T, true>(base.data() + b0, dq.data() + b0, codes.data() + b0, target.data() + b0, n,
                                         0.0f, scale.data(), widen(exponent), inv_beta);
        else if (simd)
          k = v::hqq_target_run<T, false>(base.data() + b0, dq.data() + b0, codes.data() + b0, target.data() + b0, n,
                                          widen(scale[j]), nullptr, widen(exponent), inv_beta);
      }
#endif
      for (; k < n; ++k) element(b0 + k, per_column ? k : j);
    });
    if (simd && std::is_same_v<T, float>) {
      // The elements PyTorch's pow leaves to std::pow: the last of each of its chunks.
      const std::size_t n = base.size(), chunk = in_pow_tail.chunk;
      for (std::size_t c0 = 0; chunk > 0 && c0 < n; c0 += chunk) {
        const std::size_t len = std::min(chunk, n - c0);
        for (std::size_t i = c0 + pow_tail_begin<T>(len, sum_order); i < c0 + len; ++i)
          element(i, static_cast<std::size_t>(pm.index(static_cast<std::int64_t>(i))));
      }
    }
    // hqq_shift = mean(target) per group, summed in float in PyTorch's order, rounded to T. With
    // several threads PyTorch splits these reductions by output (row or 32-column blocks), so each
    // mean is still summed in the one-thread order (for AVX2; AVX-512 groups 64 columns at a time).
    const std::int64_t rows = pm.rows, cols = pm.cols;
    const bool per_row = pm.k == param_map::kind::per_row;
    std::vector<float> sums;
    if (per_row && simd && sum_order == torch_sum_order::avx2) {
      sums.assign(static_cast<std::size_t>(rows), 0.0f);
      kernels::parallel_for(
          0, rows, std::max<std::int64_t>(1, qd::elements_per_task / std::max<std::int64_t>(1, cols)),
          [&](std::int64_t lo, std::int64_t hi) {
            for (std::int64_t r = lo; r < hi; ++r)
              sums[static_cast<std::size_t>(r)] = fast_sum_all(target.data() + r * cols, cols, sum_order, 1);
          },
          par);
    } else {
      sums = per_row ? torch_sum_rows(target.data(), rows, cols, sum_order)
                     : torch_sum_cols(target.data(), rows, cols, sum_order);
    }
    const float count = static_cast<float>(per_row ? cols : rows);
    tensor<T> shift(scale.shape());
    for (std::size_t j = 0; j < shift.size(); ++j) shift[j] = narrow<T>(sums[j] / count);

    tensor<std::uint8_t> codes2 = quantize_affine<Q>(base, scale, shift.view(), par);
    tensor<T> dq2 = dequantize_affine<T>(codes2.view(), scale, shift.view(), par);
    const double err2 = mean_abs_error<T>(base.span(), dq2.span(), sum_order, torch_threads, par);
    if (!(err2 < best_error)) break;
    best_error = err2;
    best.shift = std::move(shift);
    codes = std::move(codes2);
    dq = std::move(dq2);
    b *= kappa;
  }
  return best;
}

/// An optimizer that can quantize qtype `Q`: absmax for the 8-bit qtypes, an affine one
/// (max, hqq) for qint2/qint4.
template <class Opt, class Q>
concept OptimizerFor = QType<Q> &&(Opt::is_affine ? LowBitQType<Q> : ByteQType<Q>);

/// The optimizer quanto uses by default: absmax for 8-bit qtypes, max for qint2/qint4.
template <QType Q>
using default_optimizer_t = std::conditional_t<(Q::bits == 8), absmax_optimizer, max_optimizer>;

/// Every optimizer, in the order of `optimizer_id`: the run-time ids, names, parsing and the
/// modules' `optimizer_choice` are derived from it.
using optimizers = type_list<absmax_optimizer, max_optimizer, hqq_optimizer>;

/// The optimizers, as a run-time value (the positions in `optimizers`).
enum class optimizer_id : std::uint8_t { absmax, max, hqq };

template <class O>
constexpr optimizer_id optimizer_id_of() noexcept {
  return static_cast<optimizer_id>(index_of_v<O, optimizers>);
}
static_assert(optimizers::size == 3 && optimizer_id_of<absmax_optimizer>() == optimizer_id::absmax &&
                  optimizer_id_of<max_optimizer>() == optimizer_id::max &&
                  optimizer_id_of<hqq_optimizer>() == optimizer_id::hqq,
              "quanto: optimizer_id and the optimizers list must name the same optimizers in the same order");

/// Calls `f(O{})` with the optimizer type that `id` names (default parameters); an invalid id is
/// an `unsupported_error`.
template <class F>
constexpr decltype(auto) visit_optimizer(optimizer_id id, F&& f) {
  const auto i = static_cast<std::size_t>(id);
  if (i >= optimizers::size) throw unsupported_error("invalid optimizer id");
  return visit_type_at<optimizers>(i, std::forward<F>(f));
}

constexpr std::string_view to_string(optimizer_id o) {
  return visit_optimizer(o, []<class O>(O) { return O::name; });
}

/// The optimizer named `name` ("absmax", "max", "hqq"); nullopt when unknown.
constexpr std::optional<optimizer_id> find_optimizer(std::string_view name) noexcept {
  std::optional<optimizer_id> found;
  for_each_type(optimizers{}, [&]<class O>(O) {
    if (O::name == name) found = optimizer_id_of<O>();
  });
  return found;
}

/// The optimizer names, for messages: "absmax, max or hqq".
inline std::string optimizer_names() {
  std::string out;
  std::size_t i = 0;
  for_each_type(optimizers{}, [&]<class O>(O) {
    if (i != 0) out += i + 1 == optimizers::size ? " or " : ", ";
    out += O::name;
    ++i;
  });
  return out;
}

QUANTO_END_NAMESPACE
