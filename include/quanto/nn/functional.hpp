// quanto/nn/functional.hpp: the float arithmetic of the modules, forward and backward: dense
// products in float32 accumulation (`gemm_nt`, `gemm_nn`, `gemm_tn`), im2col / col2im for
// convolutions, layer norm, GELU and softmax. Model-dtype tensors are widened to float32, computed,
// and rounded once to the model dtype, as PyTorch's CPU kernels do for float16/bfloat16.
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
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/kernels/conv2d.hpp"
#include "quanto/kernels/parallel.hpp"
#include "quanto/quantize/model_arith.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn::functional {

/// The elements of `t` as float32 (a copy; exact for every model dtype).
template <ModelFloat T>
std::vector<float> to_f32(tensor_view<const T> t) {
  std::vector<float> out(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) out[i] = quanto::detail::widen(t[i]);
  return out;
}

/// float32 values rounded to the model dtype, in `s`.
template <ModelFloat T>
tensor<T> from_f32(std::span<const float> v, const quanto::shape& s) {
  tensor<T> out(s);
  for (std::size_t i = 0; i < v.size(); ++i) out[i] = quanto::detail::narrow<T>(v[i]);
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
inline void im2col_f32(const float* x, const kernels::conv2d_geometry& g, const kernels::conv2d_params& p, float* cols) {
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

/// PyTorch's exact GELU: x/2 · (1 + erf(x/√2)); with `tanh_approx` its tanh form.
inline float gelu(float x, bool tanh_approx = false) noexcept {
  if (tanh_approx) {
    const float inner = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + std::tanh(inner));
  }
  return 0.5f * x * (1.0f + std::erf(x * 0.7071067811865476f));
}
/// d gelu / dx.
inline float gelu_grad(float x, bool tanh_approx = false) noexcept {
  if (tanh_approx) {
    const float x3 = x * x * x;
    const float inner = 0.7978845608028654f * (x + 0.044715f * x3);
    const float t = std::tanh(inner);
    const float dinner = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dinner;
  }
  const float cdf = 0.5f * (1.0f + std::erf(x * 0.7071067811865476f));
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
