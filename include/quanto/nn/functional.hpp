// quanto/nn/functional.hpp: the float arithmetic of the modules, forward and backward: dense
// products in float32 accumulation (`gemm_nt`, `gemm_nn`, `gemm_tn`), im2col / col2im for
// convolutions, layer norm, GELU and softmax. Model-dtype tensors are widened to float32, computed,
// and rounded once to the model dtype, as PyTorch's CPU kernels do for float16/bfloat16.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/kernels/conv2d.hpp"
#include "quanto/kernels/parallel.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn::functional {

/// The elements of `t` as float32 (a copy; exact for every model dtype).
template <ModelFloat T>
std::vector<float> to_f32(tensor_view<const T> t) {
  std::vector<float> out(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) out[i] = quanto::model_arith::widen(t[i]);
  return out;
}

/// float32 values rounded to the model dtype, in `s`.
template <ModelFloat T>
tensor<T> from_f32(std::span<const float> v, const quanto::shape& s) {
  tensor<T> out(s);
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = quanto::model_arith::narrow<T>(v[i]);
  return out;
}

namespace detail {
/// Dot product with eight independent partial sums (so that it vectorises without reassociating
/// a single sum); a fixed order, so results do not depend on threads.
inline float dot(const float* a, const float* b, std::int64_t k) noexcept {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t e = 0;
  for (; e + 8 <= k; e += 8)
    for (int l = 0; l < 8; ++l) s[l] += a[e + l] * b[e + l];
  float tail = 0.0f;
  for (; e < k; ++e) tail += a[e] * b[e];
  return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])) + tail;
}
inline std::int64_t grain_for(std::int64_t per_item_flops) {
  return std::max<std::int64_t>(1, (std::int64_t{1} << 18) / std::max<std::int64_t>(1, per_item_flops));
}
}  // namespace detail

/// `c[i, j] (+)= Σ_e a[i, e] · b[j, e]`: a [m, k], b [n, k], c [m, n] (x · Wᵀ, a linear forward).
inline void gemm_nt(std::int64_t m, std::int64_t n, std::int64_t k, const float* a, const float* b, float* c,
                    bool accumulate = false) {
  kernels::parallel_for(0, n, detail::grain_for(2 * m * k), [&](std::int64_t j0, std::int64_t j1) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = j0; j < j1; ++j) {
        const float v = detail::dot(a + i * k, b + j * k, k);
        c[i * n + j] = accumulate ? c[i * n + j] + v : v;
      }
  });
}

/// `c[i, e] (+)= Σ_j g[i, j] · w[j, e]`: g [m, n], w [n, k], c [m, k] (the input gradient of a linear).
inline void gemm_nn(std::int64_t m, std::int64_t n, std::int64_t k, const float* g, const float* w, float* c,
                    bool accumulate = false) {
  kernels::parallel_for(0, m, detail::grain_for(2 * n * k), [&](std::int64_t i0, std::int64_t i1) {
    for (std::int64_t i = i0; i < i1; ++i) {
      float* ci = c + i * k;
      if (!accumulate) std::fill(ci, ci + k, 0.0f);
      for (std::int64_t j = 0; j < n; ++j) {
        const float gij = g[i * n + j];
        const float* wj = w + j * k;
        for (std::int64_t e = 0; e < k; ++e) ci[e] += gij * wj[e];
      }
    }
  });
}

/// `c[j, e] += Σ_i g[i, j] · x[i, e]`: g [m, n], x [m, k], c [n, k] (the weight gradient of a linear).
inline void gemm_tn_acc(std::int64_t m, std::int64_t n, std::int64_t k, const float* g, const float* x, float* c) {
  kernels::parallel_for(0, n, detail::grain_for(2 * m * k), [&](std::int64_t j0, std::int64_t j1) {
    for (std::int64_t j = j0; j < j1; ++j) {
      float* cj = c + j * k;
      for (std::int64_t i = 0; i < m; ++i) {
        const float gij = g[i * n + j];
        const float* xi = x + i * k;
        for (std::int64_t e = 0; e < k; ++e) cj[e] += gij * xi[e];
      }
    }
  });
}

/// Rows of a tensor [..., last]: (rows, last).
inline std::pair<std::int64_t, std::int64_t> rows_of(const quanto::shape& s, std::int64_t last, const char* who) {
  if (s.rank() < 1 || s[s.rank() - 1] != last)
    throw shape_error(std::string(who) + ": the input has shape " + s.to_string() + ", expected [..., " +
                      std::to_string(last) + "]");
  return {last == 0 ? 0 : s.numel() / last, last};
}

/// The shape `s` with its last dimension replaced by `last`.
inline quanto::shape with_last(const quanto::shape& s, std::int64_t last) {
  std::vector<std::int64_t> d(s.dims().begin(), s.dims().end());
  d.back() = last;
  return quanto::shape(std::span<const std::int64_t>(d));
}

// ---- convolution -------------------------------------------------------------------------------------

/// The patches of one image [C, H, W] as [pixels, C·KH·KW] floats (the weight's flattening order).
inline void im2col_f32(const float* x, const kernels::conv2d_geometry& g, const kernels::conv2d_params& p,
                       float* cols) {
  kernels::conv_detail::im2col(x, g, p, 0, g.pixels(), cols);
}

/// The adjoint of `im2col_f32`: adds each patch element back onto the image pixel it came from.
inline void col2im_add_f32(const float* cols, const kernels::conv2d_geometry& g, const kernels::conv2d_params& p,
                           float* x) {
  const std::int64_t hw = g.height * g.width;
  for (std::int64_t t = 0; t < g.pixels(); ++t) {
    const std::int64_t oh = t / g.out_w, ow = t % g.out_w;
    const std::int64_t ih0 = oh * p.stride_h - p.pad_h, iw0 = ow * p.stride_w - p.pad_w;
    const float* src = cols + t * g.patch();
    for (std::int64_t c = 0; c < g.channels; ++c)
      for (std::int64_t kh = 0; kh < g.kernel_h; ++kh) {
        const std::int64_t ih = ih0 + kh * p.dilation_h;
        for (std::int64_t kw = 0; kw < g.kernel_w; ++kw, ++src) {
          const std::int64_t iw = iw0 + kw * p.dilation_w;
          if (ih >= 0 && ih < g.height && iw >= 0 && iw < g.width) x[c * hw + ih * g.width + iw] += *src;
        }
      }
  }
}

// ---- element-wise and normalisation ------------------------------------------------------------------

namespace detail {
/// a·b + c, fused where the target has a fast fused multiply-add (std::fma is a slow library
/// call elsewhere); the erf below keeps its error bound either way.
inline float madd(float a, float b, float c) noexcept {
#ifdef FP_FAST_FMAF
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}
/// `c ? a : b` as a bit blend. A plain `?:` is a branch to GCC: with -ftrapping-math (the default)
/// it sinks each side's arithmetic, or what it can fold for a constant side, into that branch and may
/// not speculate it again, so the loop would not vectorise.
inline float select(bool c, float a, float b) noexcept {
  const std::uint32_t m = 0u - static_cast<std::uint32_t>(c);
  return std::bit_cast<float>((std::bit_cast<std::uint32_t>(a) & m) | (std::bit_cast<std::uint32_t>(b) & ~m));
}
/// exp(y) for finite y in [-87, 0.5] (the caller guarantees the range; no checks): y = n·ln2 + r
/// with n the nearest integer to y/ln2 (truncating y/ln2 - 1/2, which rounds for y/ln2 <= 1/2) and
/// |r| <= ln2/2 in two steps (ln2's high part has trailing zeros, so n·hi is exact), then
/// exp(r) = 1 + r·P(r), P a degree-5 minimax fit (relative error 2e-9), scaled by 2^n through the
/// exponent bits.
inline float exp_small(float y) noexcept {
  const auto n = static_cast<std::int32_t>(y * 1.44269504f - 0.5f);
  const float nf = static_cast<float>(n);
  float r = madd(nf, -0.693145752f, y);
  r = madd(nf, -1.42860677e-6f, r);
  float p = 1.38436642e-3f;
  p = madd(p, r, 8.37415829e-3f);
  p = madd(p, r, 4.16680016e-2f);
  p = madd(p, r, 1.66664317e-1f);
  p = madd(p, r, 4.99999940e-1f);
  p = madd(p, r, 1.0f);
  return madd(p, r, 1.0f) * std::bit_cast<float>((n + 127) << 23);
}
}  // namespace detail

/// exp(y) for y <= 0 (max-subtracted softmax scores), branch-free so that a loop over it vectorises.
/// Max error against exp in double over every float in [-87, 0]: 1.05 ulp (1.34 without FMA).
/// exp(±0) = 1; y < -87 (results under 1.7e-38) and -inf give 0; NaN propagates; y > 0 is outside
/// the range and gives 1.
inline float exp_nonpositive(float y) noexcept {
  float c = detail::select(y > -87.0f, y, -87.0f);  // NaN becomes -87 here (finite for the integer step)
  c = detail::select(c < 0.0f, c, 0.0f);
  const float r = detail::select(y >= -87.0f, detail::exp_small(c), 0.0f);
  return detail::select(y != y, y, r);
}

/// erf(x) in float, branch-free so that a loop over it vectorises (GCC -O3). Two fits, both
/// evaluated for every x and blended:
///   |x| < 0.921875:  erf(x) = x + x·R(x²), R a degree-5 minimax fit of erf(x)/x - 1;
///   otherwise:       erf(|x|) = 1 - exp(Q(|x|)), Q a degree-7 minimax fit of log(erfc) on
///                    [0.921875, 4] (|x| clamped to 4: beyond about 3.92 the result rounds to 1).
/// Max error against erf in double over every float in [-6, 6]: 1.13 ulp, 6.7e-8 absolute (with
/// FMA; 1.44 ulp, 8.6e-8 without). NaN propagates, erf(±inf) = ±1, erf(-0) = -0.
inline float erf_fast(float x) noexcept {
  using detail::madd;
  const float a = std::fabs(x);
  const float t = a * a;
  float r = -5.99080988e-4f;
  r = madd(r, t, 4.99317190e-3f);
  r = madd(r, t, -2.67666113e-2f);
  r = madd(r, t, 1.12818159e-1f);
  r = madd(r, t, -3.76124948e-1f);
  r = madd(r, t, 1.28379151e-1f);
  const float small = madd(a, r, a);                  // NaN stays NaN here
  const float s = detail::select(a < 4.0f, a, 4.0f);  // NaN and inf become 4: the exp stays in range
  float q = -2.11840616e-5f;
  q = madd(q, s, 4.35475755e-4f);
  q = madd(q, s, -4.17589163e-3f);
  q = madd(q, s, 2.51319222e-2f);
  q = madd(q, s, -1.08299062e-1f);
  q = madd(q, s, -6.33329988e-1f);
  q = madd(q, s, -1.12952316e+0f);
  q = madd(q, s, 1.76358226e-4f);
  const float large = 1.0f - detail::exp_small(q);
  return std::copysign(detail::select(a >= 0.921875f, large, small), x);
}

/// PyTorch's exact GELU: x/2 · (1 + erf(x/√2)) (with `erf_fast`).
inline float gelu_erf(float x) noexcept { return 0.5f * x * (1.0f + erf_fast(x * 0.7071067811865476f)); }
/// PyTorch's tanh-approximated GELU.
inline float gelu_tanh(float x) noexcept {
  const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + std::tanh(inner));
}
/// PyTorch's exact GELU: x/2 · (1 + erf(x/√2)); with `tanh_approx` its tanh form.
inline float gelu(float x, bool tanh_approx = false) noexcept { return tanh_approx ? gelu_tanh(x) : gelu_erf(x); }
/// d gelu / dx.
inline float gelu_grad(float x, bool tanh_approx = false) noexcept {
  if (tanh_approx) {
    const float x3 = x * x * x;
    const float inner = 0.7978845608028654f * (x + 0.044715f * x3);
    const float t = std::tanh(inner);
    const float dinner = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dinner;
  }
  const float cdf = 0.5f * (1.0f + erf_fast(x * 0.7071067811865476f));
  const float pdf = 0.3989422804014327f * std::exp(-0.5f * x * x);
  return cdf + x * pdf;
}

/// Softmax over the last dimension of `rows` rows of `n` floats, in place (max-subtracted).
inline void softmax_rows(float* v, std::int64_t rows, std::int64_t n) noexcept {
  for (std::int64_t r = 0; r < rows; ++r) {
    float* x = v + r * n;
    float mx = -INFINITY;
    for (std::int64_t j = 0; j < n; ++j) mx = std::max(mx, x[j]);
    float sum = 0.0f;
    for (std::int64_t j = 0; j < n; ++j) sum += (x[j] = std::exp(x[j] - mx));
    for (std::int64_t j = 0; j < n; ++j) x[j] /= sum;
  }
}

/// Per-row statistics a layer norm keeps for its backward.
struct norm_stats {
  std::vector<float> mean, rstd;
};

/// Layer norm over the last `n` elements of each of `rows` rows: y = (x - mean) · rstd · w + b
/// (w, b may be null), rstd = 1/√(var + eps), var the biased variance (two passes, float32).
inline norm_stats layer_norm_rows(const float* x, float* y, std::int64_t rows, std::int64_t n, const float* w,
                                  const float* b, float eps) {
  norm_stats st;
  st.mean.resize(static_cast<std::size_t>(rows));
  st.rstd.resize(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    double sum = 0.0;
    for (std::int64_t j = 0; j < n; ++j) sum += xr[j];
    const float mean = static_cast<float>(sum / static_cast<double>(n));
    double sq = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      const double d = static_cast<double>(xr[j]) - mean;
      sq += d * d;
    }
    const float rstd = static_cast<float>(1.0 / std::sqrt(sq / static_cast<double>(n) + static_cast<double>(eps)));
    for (std::int64_t j = 0; j < n; ++j) {
      float v = (xr[j] - mean) * rstd;
      if (w) v *= w[j];
      if (b) v += b[j];
      yr[j] = v;
    }
    st.mean[static_cast<std::size_t>(r)] = mean;
    st.rstd[static_cast<std::size_t>(r)] = rstd;
  }
  return st;
}

/// The layer norm backward: gx (written), gw and gb (accumulated; may be null).
inline void layer_norm_backward_rows(const float* x, const float* gy, const norm_stats& st, std::int64_t rows,
                                     std::int64_t n, const float* w, float* gx, float* gw, float* gb) {
  std::vector<float> xhat(static_cast<std::size_t>(n)), g(static_cast<std::size_t>(n));
  for (std::int64_t r = 0; r < rows; ++r) {
    const float mean = st.mean[static_cast<std::size_t>(r)], rstd = st.rstd[static_cast<std::size_t>(r)];
    const float* xr = x + r * n;
    const float* gr = gy + r * n;
    double sum_g = 0.0, sum_gx = 0.0;
    for (std::int64_t j = 0; j < n; ++j) {
      const auto u = static_cast<std::size_t>(j);
      xhat[u] = (xr[j] - mean) * rstd;
      g[u] = w ? gr[j] * w[j] : gr[j];
      if (gw) gw[j] += gr[j] * xhat[u];
      if (gb) gb[j] += gr[j];
      sum_g += g[u];
      sum_gx += static_cast<double>(g[u]) * xhat[u];
    }
    const auto mg = static_cast<float>(sum_g / static_cast<double>(n));
    const auto mgx = static_cast<float>(sum_gx / static_cast<double>(n));
    for (std::int64_t j = 0; j < n; ++j) {
      const auto u = static_cast<std::size_t>(j);
      gx[r * n + j] = rstd * (g[u] - mg - xhat[u] * mgx);
    }
  }
}

}  // namespace nn::functional
QUANTO_END_NAMESPACE
