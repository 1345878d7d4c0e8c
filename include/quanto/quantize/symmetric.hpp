// quanto/quantize/symmetric.hpp: symmetric quantization of 8-bit qtypes (qint8, qfloat8*):
// the `symmetric` scheme policy (per_tensor, per_channel), the absmax scale and quanto's
// `quantize_symmetric`, per tensor or per axis, and dequantization.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/float8.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/quantize/axis.hpp"
#include "quanto/quantize/checks.hpp"
#include "quanto/quantize/simd.hpp"

QUANTO_BEGIN_NAMESPACE
namespace detail {

/// The largest value the storage type holds, used by quanto's clamp: iinfo(int8) = [-128, 127]
/// (asymmetric, although the scale divides by 127), finfo(fp8).max for the float8 types.
template <ByteQType Q>
constexpr float storage_max() noexcept {
  if constexpr (Q::is_floating_point)
    return Q::qmax;
  else
    return 127.0f;
}
template <ByteQType Q>
constexpr float storage_min() noexcept {
  if constexpr (Q::is_floating_point)
    return Q::qmin;
  else
    return -128.0f;
}

/// One element of quanto's `quantize_symmetric`: `q = x / s` in the model dtype, then
/// `round` (integer qtypes only), clamp to the storage range, cast. A NaN quotient can only come
/// from 0/0 (a zero scale over a zero value, inputs being finite): quanto leaves that to an
/// implementation-defined cast; here it gives the zero code, so the element dequantizes to 0,
/// exactly its value.
template <ByteQType Q, ModelFloat T>
constexpr typename Q::storage quantize_symmetric_value(T x, T s) noexcept {
  using S = typename Q::storage;
  const float q = widen(t_div(x, s));
  if (is_nan_bits(q)) return S{};
  if constexpr (Q::is_floating_point) {
    const float c = std::clamp(q, storage_min<Q>(), storage_max<Q>());
    return S(c);
  } else {
    const float r = std::clamp(round_half_even(q), storage_min<Q>(), storage_max<Q>());
    return static_cast<S>(static_cast<int>(r));
  }
}

/// max |x| over a run with the reference's rule (amax propagates NaN: the last one's bits), by
/// the vector code while no NaN is seen.
template <ModelFloat T>
float run_absmax(const T* x, std::size_t n, bool simd) noexcept {
  float m = 0.0f;
  std::size_t k = 0;
#if QUANTO_HAS_AVX2
  if constexpr (kernels::quantize_dispatch::compiled) {
    bool nan = false;
    if (simd) k = kernels::quantize_avx2::absmax_bits_run(x, n, m, nan);
    if (nan) k = 0, m = 0.0f;
  }
#endif
  (void)simd;
  for (; k < n; ++k) {
    const float a = widen(t_abs(x[k]));
    if (is_nan_bits(a) || (!is_nan_bits(m) && a > m)) m = a;
  }
  return m;
}

/// One element of quanto's symmetric dequantization: `scale * data`, one rounding to T.
template <ByteQType Q, ModelFloat T>
constexpr T dequantize_symmetric_value(typename Q::storage q, T s) noexcept {
  return narrow<T>(widen(s) * static_cast<float>(q));
}

}  // namespace detail

/// Symmetric scheme (8-bit qtypes): one scale per row (axis 0, the default and what modules
/// use), per column (axis -1) or per tensor. An axis of size 1 becomes per tensor.
struct symmetric {
  static constexpr bool is_affine = false;
  qaxis axis = qaxis::first;
};
inline constexpr symmetric per_tensor{qaxis::none};
inline constexpr symmetric per_channel{qaxis::first};

/// quanto's `AbsmaxOptimizer`: `scale = max|x| / qmax` over the reduced dimensions, in the model
/// dtype, with quanto's keepdim shape ([d0,1,..] for axis 0, [1,..,dl] for axis -1, [] for none).
/// `axis` is taken as given: apply `effective_axis` first for quanto's size-1 rule.
template <ByteQType Q, ModelFloat T>
tensor<T> absmax_scale(tensor_view<const T> base, qaxis axis, kernels::parallel_options par = {}) {
  namespace qd = kernels::quantize_dispatch;
  const param_map pm = map_params(base.shape(), axis);
  std::vector<float> rmax(static_cast<std::size_t>(pm.count()), 0.0f);
  const auto step = [&](std::size_t i, std::size_t j) {
    const float a = model_arith::widen(model_arith::t_abs(base[i]));
    float& m = rmax[j];
    if (is_nan_bits(a) || (!is_nan_bits(m) && a > m)) m = a;  // amax propagates NaN
  };
  (void)par;  // used by the vector path only
  bool done = false;
#if QUANTO_HAS_AVX2
  if constexpr (qd::compiled) {
    // max is order-free; only a NaN (whose bits the reference takes from the last one) sends a
    // run, or a per-column / per-tensor reduction, back to the reference.
    namespace v = kernels::quantize_avx2;
    if (qd::enabled() && pm.k == param_map::kind::per_row) {
      qd::for_each_run(pm, par, [&](std::size_t b, std::size_t n, std::size_t r) {
        bool nan = false;
        const std::size_t k = v::absmax_run(base.data() + b, n, rmax[r], nan);
        if (nan) {
          rmax[r] = 0.0f;
          for (std::size_t i = b; i < b + n; ++i) step(i, r);
        } else {
          for (std::size_t i = b + k; i < b + n; ++i) step(i, r);
        }
      });
      done = true;
    } else if (qd::enabled() && pm.k == param_map::kind::per_tensor) {
      const std::int64_t total = pm.rows * pm.cols;
      const std::int64_t chunks = kernels::chunk_count(0, total, qd::elements_per_task);
      std::vector<float> part(static_cast<std::size_t>(chunks), 0.0f);
      std::vector<unsigned char> nan(static_cast<std::size_t>(chunks), 0);
      qd::for_each_run(pm, par, [&](std::size_t b, std::size_t n, std::size_t) {
        const std::size_t c = b / static_cast<std::size_t>(qd::elements_per_task);
        bool has_nan = false;
        float m = 0.0f;
        const std::size_t k = v::absmax_run(base.data() + b, n, m, has_nan);
        for (std::size_t i = b + k; i < b + n && !has_nan; ++i) {
          const float a = model_arith::widen(model_arith::t_abs(base[i]));
          has_nan = is_nan_bits(a);
          m = a > m ? a : m;
        }
        part[c] = m;
        nan[c] = has_nan;
      });
      if (std::find(nan.begin(), nan.end(), 1) == nan.end()) {
        for (float m : part) rmax[0] = m > rmax[0] ? m : rmax[0];
        done = true;
      }
    } else if (qd::enabled()) {
      bool nan = false;
      const auto cols = static_cast<std::size_t>(pm.cols);
      const std::size_t k = v::absmax_cols(base.data(), static_cast<std::size_t>(pm.rows), cols, rmax.data(), nan);
      if (!nan) {
        for (std::size_t r = 0; r < static_cast<std::size_t>(pm.rows); ++r)
          for (std::size_t c = k; c < cols; ++c) step(r * cols + c, c);
        done = true;
      } else {
        std::fill(rmax.begin(), rmax.end(), 0.0f);
      }
    }
  }
#endif
  if (!done) pm.for_each(step);
  tensor<T> scale(pm.param_shape);
  for (std::size_t j = 0; j < rmax.size(); ++j)
    scale[j] = model_arith::t_div_scalar(model_arith::narrow<T>(rmax[j]), static_cast<float>(Q::qmax));
  return scale;
}

/// absmax_scale(base, axis 0) and quantize_symmetric with it, one row at a time: the row is
/// read from memory once and quantized from the cache. The same bits as the two calls.
template <ByteQType Q, ModelFloat T>
void quantize_absmax_rows(tensor_view<const T> base, tensor<T>& scale, tensor<typename Q::storage>& data,
                          kernels::parallel_options par = {}) {
  namespace qd = kernels::quantize_dispatch;
  const param_map pm = map_params(base.shape(), qaxis::first);
  scale = tensor<T>(pm.param_shape);
  data = tensor<typename Q::storage>(base.shape());
  const bool simd = qd::enabled();
  qd::for_each_run(pm, par, [&](std::size_t b, std::size_t n, std::size_t r) {
    const T* x = base.data() + b;
    typename Q::storage* out = data.data() + b;
    const float m = detail::run_absmax(x, n, simd);
    const T s = model_arith::t_div_scalar(model_arith::narrow<T>(m), static_cast<float>(Q::qmax));
    scale[r] = s;
    std::size_t k = 0;
#if QUANTO_HAS_AVX2
    if constexpr (qd::compiled) {
      namespace v = kernels::quantize_avx2;
      const float sf = model_arith::widen(s);
      // finite x over a positive scale with max |x| / s < 2^20: every quotient is a number that
      // converts to int32 exactly
      if (simd && sf > 0.0f && m < 0x1p127f && m / sf < 0x1p20f)
        k = v::quantize_symmetric_bounded_run<Q, T>(x, out, n, sf,
                                                    r + 1 < static_cast<std::size_t>(pm.rows) ? x + n : nullptr);
      else if (simd)
        k = v::quantize_symmetric_run<Q, T, false>(x, out, n, sf, nullptr);
    }
#endif
    for (; k < n; ++k) out[k] = detail::quantize_symmetric_value<Q>(x[k], s);
  });
}

/// quanto's `quantize_symmetric(base, dtype, axis, scale)`: `scale` must have the keepdim shape
/// that `absmax_scale` returns for this axis.
template <ByteQType Q, ModelFloat T>
tensor<typename Q::storage> quantize_symmetric(tensor_view<const T> base, qaxis axis, tensor_view<const T> scale,
                                               kernels::parallel_options par = {}) {
  namespace qd = kernels::quantize_dispatch;
  const param_map pm = map_params(base.shape(), axis);
  detail::require_shape(scale.shape(), pm.param_shape, "the scale");
  tensor<typename Q::storage> out(base.shape());
  const bool per_column = pm.k == param_map::kind::per_column;
  const bool simd = qd::enabled();
  qd::for_each_run(pm, par, [&](std::size_t b, std::size_t n, std::size_t j) {
    std::size_t k = 0;
#if QUANTO_HAS_AVX2
    if constexpr (qd::compiled) {
      namespace v = kernels::quantize_avx2;
      if (simd && per_column)
        k = v::quantize_symmetric_run<Q, T, true>(base.data() + b, out.data() + b, n, 0.0f, scale.data());
      else if (simd)
        k = v::quantize_symmetric_run<Q, T, false>(base.data() + b, out.data() + b, n, model_arith::widen(scale[j]),
                                                   nullptr);
    }
#endif
    for (; k < n; ++k) out[b + k] = detail::quantize_symmetric_value<Q>(base[b + k], scale[per_column ? k : j]);
  });
  (void)simd;
  return out;
}

/// `scale * data` in the model dtype into `out`, a buffer of the data's element count (any shape;
/// written in the data's flat order).
template <ByteQType Q, ModelFloat T>
void dequantize_symmetric_into(tensor_view<const typename Q::storage> data, qaxis axis, tensor_view<const T> scale,
                               tensor_view<T> out, kernels::parallel_options par = {}) {
  namespace qd = kernels::quantize_dispatch;
  const param_map pm = map_params(data.shape(), axis);
  detail::require_shape(scale.shape(), pm.param_shape, "the scale");
  detail::require_numel(out.numel(), data.numel(), "the dequantized output");
  const bool per_column = pm.k == param_map::kind::per_column;
  const bool simd = qd::enabled();
  qd::for_each_run(pm, par, [&](std::size_t b, std::size_t n, std::size_t j) {
    std::size_t k = 0;
#if QUANTO_HAS_AVX2
    if constexpr (qd::compiled) {
      namespace v = kernels::quantize_avx2;
      if (simd && per_column)
        k = v::dequantize_symmetric_run<Q, T, true>(data.data() + b, out.data() + b, n, 0.0f, scale.data());
      else if (simd)
        k = v::dequantize_symmetric_run<Q, T, false>(data.data() + b, out.data() + b, n, model_arith::widen(scale[j]),
                                                     nullptr);
    }
#endif
    for (; k < n; ++k) out[b + k] = detail::dequantize_symmetric_value<Q>(data[b + k], scale[per_column ? k : j]);
  });
  (void)simd;
}

/// `scale * data` in the model dtype, in the data's shape.
template <ByteQType Q, ModelFloat T>
tensor<T> dequantize_symmetric(tensor_view<const typename Q::storage> data, qaxis axis, tensor_view<const T> scale,
                               kernels::parallel_options par = {}) {
  tensor<T> out(data.shape());
  dequantize_symmetric_into<Q, T>(data, axis, scale, out.mutable_view(), par);
  return out;
}

QUANTO_END_NAMESPACE
