// quanto/quantize/gptq.hpp: GPTQ (Frantar et al., 2022) on plain tensors: the calibration Hessian of
// one layer (`gptq_hessian`) and the error-compensating quantization of its weight
// (`gptq_quantize`), written in optimum-quanto's own layout.
//
// The weight is quantized column by column (columns are the layer's input features); each
// column's rounding error, scaled by the inverse Hessian's upper Cholesky factor U, is pushed onto
// the columns not yet quantized: inside a block of 128 columns at once, onto later blocks by one
// rank-128 product (`detail::dense::gemm_tn`). Every column is quantized with the library's own
// element quantizer and the group's scale and shift in the model dtype, so the codes, scales and
// shifts are a valid quanto weight: `dequantize()` gives exactly the values the loop used.
//
// - qint2/qint4 (`group_affine<>`): quanto's MaxOptimizer parameters per group of `group_size`
//   input features (default: quanto's module rule), computed when the loop reaches the group
//   from the weights as updated so far (GPTQ's rule), or, with `static_groups` / `act_order`, from
//   the original weights before the loop (the only act-order variant quanto's contiguous groups
//   can store). Blocks are aligned to groups, so a group is always complete when it is measured.
// - qint8 / qfloat8 (`symmetric`, axis 0): quanto's absmax scale per output row, from the original
//   weights, before the loop.
//
// Numerics: H is accumulated as stated at `gptq_hessian`; dampening (λ·mean(diag H) on the
// diagonal, λ = 1 % as the reference), the Cholesky factorization and the triangular inverse run in
// float64; U is then rounded to float32, and the weight updates run in float32, as the reference.
// U comes from one factorization: with J the reversal permutation, J·H·J = L·Lᵀ gives H = Ũ·Ũᵀ
// with Ũ = J·L·J upper triangular, so H⁻¹ = (Ũ⁻¹)ᵀ·Ũ⁻¹ and U = Ũ⁻¹ = J·L⁻¹·J.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/parallel.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/quantize/affine.hpp"
#include "quanto/quantize/checks.hpp"
#include "quanto/quantize/dense.hpp"
#include "quanto/quantize/group.hpp"
#include "quanto/quantize/packing.hpp"
#include "quanto/quantize/qtensor.hpp"
#include "quanto/quantize/symmetric.hpp"

QUANTO_BEGIN_NAMESPACE

/// The calibration statistics of one layer for GPTQ: H = (2/n)·Σ x·xᵀ over the n rows x its input
/// took (the tokens of a Linear, the im2col patches of a Conv2d). Accumulation rule: the rows of
/// each `add` are multiplied in float32 in chunks of 512 rows (a fixed order), each chunk's
/// product is added to a float64 sum, and H is formed in float64.
class gptq_hessian {
 public:
  /// `name` labels errors (the module's name in the model).
  explicit gptq_hessian(std::int64_t features, std::string name = {}) : k_(features), name_(std::move(name)) {
    if (features <= 0) throw shape_error(label() + ": a Hessian needs a positive feature count");
  }

  std::int64_t features() const noexcept { return k_; }
  /// The rows added so far.
  std::int64_t samples() const noexcept { return n_; }
  const std::string& name() const noexcept { return name_; }
  std::string label() const { return name_.empty() ? std::string("gptq") : "gptq '" + name_ + "'"; }

  /// Adds `rows` rows of `features()` floats each (row-major). A NaN or Inf is a value_error naming
  /// the module (nothing is added then).
  void add(const float* x, std::int64_t rows, kernels::parallel_options par = {}) {
    if (rows <= 0) return;
    for (std::int64_t i = 0; i < rows * k_; ++i)
      if (!std::isfinite(x[i]))
        throw value_error(label() + ": calibration input row " + std::to_string(n_ + i / k_) + " holds " +
                          (std::isnan(x[i]) ? "NaN" : "Inf") + " (feature " + std::to_string(i % k_) + ")");
    if (sum_.empty()) sum_.assign(static_cast<std::size_t>(k_ * k_), 0.0);
    chunk_.resize(static_cast<std::size_t>(k_ * k_));
    constexpr std::int64_t RC = 512, NB = 128;
    for (std::int64_t r0 = 0; r0 < rows; r0 += RC) {
      const std::int64_t rc = std::min(RC, rows - r0);
      const float* xc = x + r0 * k_;
      std::fill(chunk_.begin(), chunk_.end(), 0.0f);
      for (std::int64_t i0 = 0; i0 < k_; i0 += NB) {  // the lower triangle, block row by block row
        const std::int64_t i1 = std::min(k_, i0 + NB);
        detail::dense::gemm_tn<float>(i1 - i0, i1, rc, 1.0f, {xc + i0, k_, 1}, xc, k_, chunk_.data() + i0 * k_, k_,
                                      par);
      }
      for (std::int64_t i = 0; i < k_; ++i)
        for (std::int64_t j = 0; j <= i; ++j)
          sum_[static_cast<std::size_t>(i * k_ + j)] +=
              static_cast<double>(chunk_[static_cast<std::size_t>(i * k_ + j)]);
    }
    n_ += rows;
  }

  /// Adds every row of `x` (its last dimension is the feature count), widened to float32.
  template <ModelFloat T>
  void add(tensor_view<const T> x, kernels::parallel_options par = {}) {
    if (x.rank() < 1 || x.shape()[x.rank() - 1] != k_)
      throw shape_error(label() + ": a calibration input of shape " + x.shape().to_string() + " does not have " +
                        std::to_string(k_) + " features");
    if constexpr (std::is_same_v<T, float>) {
      add(x.data(), x.numel() / k_, par);
    } else {
      std::vector<float> f(x.size());
      for (std::size_t i = 0; i < f.size(); ++i) f[i] = model_arith::widen(x[i]);
      add(f.data(), x.numel() / k_, par);
    }
  }

  /// H (features × features, row-major): (2/n)·Σ x·xᵀ. A state_error when no row was added (the
  /// calibration never reached the layer).
  std::vector<double> matrix() const {
    if (n_ == 0)
      throw state_error(label() +
                        ": no calibration input reached this layer, so it has no Hessian (check that "
                        "the calibration forwards run through it)");
    std::vector<double> h(sum_.size());
    const double s = 2.0 / static_cast<double>(n_);
    for (std::int64_t i = 0; i < k_; ++i)
      for (std::int64_t j = 0; j <= i; ++j) {
        const double v = s * sum_[static_cast<std::size_t>(i * k_ + j)];
        h[static_cast<std::size_t>(i * k_ + j)] = v;
        h[static_cast<std::size_t>(j * k_ + i)] = v;
      }
    return h;
  }

 private:
  std::int64_t k_, n_ = 0;
  std::string name_;
  std::vector<double> sum_;   ///< Σ x·xᵀ, lower triangle (full storage)
  std::vector<float> chunk_;  ///< one chunk's product (scratch)
};

/// GPTQ's parameters (the reference's defaults).
struct gptq_options {
  /// λ: H += λ·mean(diag H)·I before the factorization. When the dampened matrix still is not
  /// positive definite (numerically), λ is multiplied by 10, up to three times, then a value_error.
  double damp = 0.01;
  /// Columns per block (the lazy batch update's rank); rounded to a multiple of the group size.
  std::int64_t block = 128;
  /// Columns in the order of decreasing diag(H) (the reference's `act_order`); implies static groups.
  bool act_order = false;
  /// Group parameters from the original weights before the loop, instead of from the updated ones
  /// when the loop reaches each group.
  bool static_groups = false;
  /// qint2/qint4 only. 0: each group's scale and shift are quanto's MaxOptimizer's (min/max). n > 0:
  /// also try the range shrunk to p·[min, max] for n - 1 more factors p evenly down to
  /// 1 - clip_shrink, and keep the one with the lowest Σ H_ee·(x_e − x̂_e)² over the group (the
  /// output error for a diagonal H). The codes still go through quanto's quantizer; the
  /// parameters are then no longer MaxOptimizer's, but any scale/shift is a valid quanto weight.
  int clip_steps = 0;
  double clip_shrink = 0.5;
  kernels::parallel_options parallel = {};
};

/// What `gptq_quantize` returns: the weight in quanto's layout, the values the loop used (which
/// `weight.dequantize()` reproduces bit for bit), and what the loop had to adjust.
template <QType Q, ModelFloat T>
struct gptq_result {
  qweight_t<Q, T, default_scheme_t<Q>> weight;
  tensor<T> dequantized;
  double damp = 0.0;              ///< the λ used (the option, or larger after retries)
  std::int64_t dead_columns = 0;  ///< input features with H_ii = 0 (never active): their weights were zeroed
};

namespace detail {

/// The largest block that is at most `block` and a multiple of the group size (at least one group).
inline std::int64_t gptq_block(std::int64_t block, std::int64_t group) {
  if (block <= 0) throw value_error("gptq: the block size must be positive, got " + std::to_string(block));
  return group >= block ? group : block - block % group;
}

/// A group's scale and shift from its `n` values `x` (model dtype): quanto's MaxOptimizer formula
/// (`(max - min) / (2^bits - 1)`, `-min`) on the range p·[min, max], for the p of the clip grid
/// (see gptq_options::clip_steps) with the lowest Σ h_e·(x_e − x̂_e)².
template <LowBitQType Q, ModelFloat T>
void clipped_affine_params(const T* x, std::int64_t n, const double* h, int steps, double shrink, T& scale, T& shift) {
  float lo = model_arith::widen(x[0]), hi = lo;
  for (std::int64_t e = 1; e < n; ++e) {
    const float v = model_arith::widen(x[e]);
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  const float levels = code_max(Q::bits);
  double best = -1.0;
  for (int i = 0; i < std::max(1, steps); ++i) {
    const float p = steps <= 1 ? 1.0f : static_cast<float>(1.0 - shrink * i / (steps - 1));
    const T rmin = model_arith::narrow<T>(lo * p), rmax = model_arith::narrow<T>(hi * p);
    const T sc = model_arith::t_div_scalar(model_arith::t_sub(rmax, rmin), levels), sh = model_arith::t_neg(rmin);
    double err = 0.0;
    for (std::int64_t e = 0; e < n; ++e) {
      const T v = x[e];
      const T d = dequantize_affine_value(quantize_affine_value(v, sc, sh, Q::bits), sc, sh);
      const double diff = static_cast<double>(model_arith::widen(v)) - model_arith::widen(d);
      err += h[e] * diff * diff;
    }
    if (best < 0.0 || err < best) {
      best = err;
      scale = sc;
      shift = sh;
    }
  }
}

/// U, the upper Cholesky factor of (H + damp)⁻¹, in float32 (see the file comment for how).
/// `h` is the permuted, dead-column-fixed H; returns the λ used.
inline double gptq_inverse_factor(std::int64_t n, const std::vector<double>& h, double damp, std::vector<float>& u,
                                  const std::string& label, kernels::parallel_options par) {
  double mean = 0.0;
  for (std::int64_t i = 0; i < n; ++i) mean += h[static_cast<std::size_t>(i * n + i)];
  mean /= static_cast<double>(n);
  if (!std::isfinite(mean) || !(mean > 0.0))
    throw value_error(label + ": the Hessian's mean diagonal is " + std::to_string(mean) +
                      " (non-finite or not positive)");
  if (!(damp >= 0.0)) throw value_error(label + ": the dampening must not be negative");
  std::vector<double> a(h.size());
  for (int attempt = 0; attempt < 4; ++attempt, damp = damp == 0.0 ? 1e-4 : damp * 10.0) {
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j <= i; ++j)  // J·(H + λ·mean·I)·J, lower triangle
        a[static_cast<std::size_t>(i * n + j)] =
            h[static_cast<std::size_t>((n - 1 - i) * n + (n - 1 - j))] + (i == j ? damp * mean : 0.0);
    if (dense::cholesky_lower(n, a.data(), par)) continue;
    dense::invert_lower(n, a.data(), par);
    u.assign(static_cast<std::size_t>(n * n), 0.0f);
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = i; j < n; ++j)
        u[static_cast<std::size_t>(i * n + j)] =
            static_cast<float>(a[static_cast<std::size_t>((n - 1 - i) * n + (n - 1 - j))]);
    return damp;
  }
  throw value_error(label + ": the dampened Hessian is not positive definite even with λ = " +
                    std::to_string(damp / 10.0) + " (too few or degenerate calibration samples)");
}

}  // namespace detail

/// GPTQ on `w` ([out, in] or a Conv2d's [out, in, kh, kw]: columns are the numel/out input
/// features) with the layer's Hessian `h` (row-major, features × features, as
/// `gptq_hessian::matrix` returns it). `Q` is qint2/qint4 (scheme `group_affine<>`, axis 0) or an
/// 8-bit qtype (`symmetric`, axis 0). Errors name `name`: a group size that does not divide the
/// features or a Hessian of the wrong size (shape_error), NaN/Inf in the weight or the Hessian, or a
/// Hessian that no dampening makes positive definite (value_error).
template <QType Q, ModelFloat T, Scheme S = default_scheme_t<Q>>
gptq_result<Q, T> gptq_quantize(tensor_view<const T> w, std::span<const double> h, const S& scheme = {},
                                const gptq_options& opt = {}, std::string_view name = {}) {
  static_assert(std::is_same_v<S, default_scheme_t<Q>>,
                "quanto: gptq_quantize writes quanto's module layout: group_affine<> (float shift) for "
                "qint2/qint4, symmetric for 8-bit qtypes");
  const std::string label = name.empty() ? std::string("gptq") : "gptq '" + std::string(name) + "'";
  if (w.rank() < 2 || w.shape()[0] == 0)
    throw shape_error(label + ": the weight needs rank >= 2 and outputs, got shape " + w.shape().to_string());
  if (scheme.axis != qaxis::first)
    throw unsupported_error(label + ": GPTQ quantizes along axis 0 (parameters per output row) only");
  const std::int64_t rows = w.shape()[0], cols = w.numel() / rows;
  if (static_cast<std::int64_t>(h.size()) != cols * cols)
    throw shape_error(label + ": the Hessian has " + std::to_string(h.size()) + " values, expected " +
                      std::to_string(cols) + "² for " + std::to_string(cols) + " input features");
  detail::require_finite(w, (label + ": the weight").c_str());
  const kernels::parallel_options par = opt.parallel;

  // group layout (quanto's: contiguous input features of one output row)
  std::optional<std::int64_t> gs;
  if constexpr (LowBitQType<Q>) {
    if (scheme.group_size == auto_group)
      gs = default_group_size(w.shape());
    else if (scheme.group_size > 0)
      gs = scheme.group_size;
    else if (scheme.group_size != no_group)
      throw shape_error(label + ": invalid group size " + std::to_string(scheme.group_size));
    if (gs && (cols % *gs != 0))
      throw shape_error(label + ": group size " + std::to_string(*gs) + " does not divide the " + std::to_string(cols) +
                        " input features (quanto's groups are contiguous and never padded)");
  }
  const std::int64_t group = gs.value_or(cols), groups = cols / group;
  if constexpr (LowBitQType<Q>) {
    if (rows * groups == 1) {
      // One output and one group: quanto keeps a scale and shift per element (its per-axis rule on
      // an axis of size 1), which reproduces every weight exactly; there is no error to compensate.
      gptq_result<Q, T> lossless{quantize_weight<Q>(w, scheme), {}, opt.damp, 0};
      lossless.dequantized = lossless.weight.dequantize();
      return lossless;
    }
  }
  const bool dynamic = LowBitQType<Q> && gs && !opt.act_order && !opt.static_groups;
  const std::int64_t block = dynamic ? detail::gptq_block(opt.block, group) : detail::gptq_block(opt.block, 1);

  gptq_result<Q, T> out;
  // the weights, transposed (column c is contiguous), and the Hessian with dead columns fixed
  std::vector<float> wt(static_cast<std::size_t>(rows * cols));
  tensor<T> original(w);  // the weights the static parameters are measured on (dead columns zeroed)
  std::vector<bool> dead(static_cast<std::size_t>(cols), false);
  for (std::int64_t c = 0; c < cols; ++c) {
    const double d = h[static_cast<std::size_t>(c * cols + c)];
    if (!std::isfinite(d)) throw value_error(label + ": the Hessian holds NaN or Inf");
    if (d == 0.0) {
      dead[static_cast<std::size_t>(c)] = true;
      ++out.dead_columns;
    }
  }
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < cols; ++c) {
      const auto i = static_cast<std::size_t>(r * cols + c);
      if (dead[static_cast<std::size_t>(c)]) original[i] = T(0.0f);
      wt[static_cast<std::size_t>(c * rows + r)] = model_arith::widen(original[i]);
    }
  // act-order: decreasing diag(H), ties in column order
  std::vector<std::int64_t> perm(static_cast<std::size_t>(cols));
  std::iota(perm.begin(), perm.end(), std::int64_t{0});
  const auto diag = [&](std::int64_t c) {
    return dead[static_cast<std::size_t>(c)] ? 1.0 : h[static_cast<std::size_t>(c * cols + c)];
  };
  if (opt.act_order)
    std::stable_sort(perm.begin(), perm.end(), [&](std::int64_t a, std::int64_t b) { return diag(a) > diag(b); });
  std::vector<float> u;
  {
    std::vector<double> hp(static_cast<std::size_t>(cols * cols));
    for (std::int64_t i = 0; i < cols; ++i) {
      const std::int64_t pi = perm[static_cast<std::size_t>(i)];
      for (std::int64_t j = 0; j < cols; ++j) {
        const std::int64_t pj = perm[static_cast<std::size_t>(j)];
        const double v = i == j ? diag(pi) : h[static_cast<std::size_t>(pi * cols + pj)];
        if (!std::isfinite(v)) throw value_error(label + ": the Hessian holds NaN or Inf");
        hp[static_cast<std::size_t>(i * cols + j)] = v;
      }
    }
    if (opt.act_order) {
      std::vector<float> permuted(wt.size());
      for (std::int64_t i = 0; i < cols; ++i)
        std::copy_n(wt.data() + perm[static_cast<std::size_t>(i)] * rows, rows, permuted.data() + i * rows);
      wt.swap(permuted);
    }
    out.damp = detail::gptq_inverse_factor(cols, hp, opt.damp, u, label, par);
  }

  // the parameters: per (row, group) for qint2/qint4, per row for 8-bit
  using file_weight = qweight_t<Q, T, default_scheme_t<Q>>;
  std::vector<T> scale(static_cast<std::size_t>(rows * groups)), shift;
  quanto::shape param_shape;
  if constexpr (LowBitQType<Q>) {
    shift.resize(scale.size());
    const quanto::shape base_shape = gs ? grouped_shape(w.shape(), qaxis::first, group) : w.shape();
    param_shape = map_params(base_shape, qaxis::first).param_shape;
    if (!dynamic && opt.clip_steps > 0) {
      std::vector<double> hd(static_cast<std::size_t>(group));
      for (std::int64_t r = 0; r < rows; ++r)
        for (std::int64_t g = 0; g < groups; ++g) {
          for (std::int64_t e = 0; e < group; ++e) hd[static_cast<std::size_t>(e)] = diag(g * group + e);
          const auto p = static_cast<std::size_t>(r * groups + g);
          detail::clipped_affine_params<Q, T>(original.data() + r * cols + g * group, group, hd.data(), opt.clip_steps,
                                              opt.clip_shrink, scale[p], shift[p]);
        }
    } else if (!dynamic) {
      const scale_shift<T> ss = max_scale_shift<Q>(original.view().reshape(base_shape), qaxis::first, par);
      std::copy(ss.scale.span().begin(), ss.scale.span().end(), scale.begin());
      std::copy(ss.shift.span().begin(), ss.shift.span().end(), shift.begin());
    }
  } else {
    const tensor<T> s = absmax_scale<Q>(original.view(), effective_axis(w.shape(), qaxis::first), par);
    param_shape = s.shape();
    std::copy(s.span().begin(), s.span().end(), scale.begin());
  }

  using code_t = std::conditional_t<LowBitQType<Q>, std::uint8_t, typename Q::storage>;
  std::vector<code_t> codes(static_cast<std::size_t>(rows * cols));
  out.dequantized = tensor<T>(w.shape());
  T* dq = out.dequantized.data();
  std::vector<float> err(static_cast<std::size_t>(block * rows));
  constexpr std::int64_t RC = 128;  // rows per task inside a block (their columns stay in cache)
  for (std::int64_t i1 = 0; i1 < cols; i1 += block) {
    const std::int64_t i2 = std::min(cols, i1 + block);
    kernels::parallel_for(
        0, (rows + RC - 1) / RC, 1,
        [&](std::int64_t t0, std::int64_t t1) {
          std::vector<T> buf;
          std::vector<double> hd;
          for (std::int64_t t = t0; t < t1; ++t) {
            const std::int64_t r0 = t * RC, r1 = std::min(rows, r0 + RC), nr = r1 - r0;
            for (std::int64_t i = i1; i < i2; ++i) {
              const std::int64_t oc = perm[static_cast<std::size_t>(i)], g = oc / group;
              if constexpr (LowBitQType<Q>) {
                if (dynamic && oc % group == 0) {  // a group starts: measure it as it is now
                  buf.resize(static_cast<std::size_t>(nr * group));
                  for (std::int64_t r = 0; r < nr; ++r)
                    for (std::int64_t e = 0; e < group; ++e)
                      buf[static_cast<std::size_t>(r * group + e)] =
                          model_arith::narrow<T>(wt[static_cast<std::size_t>((i + e) * rows + r0 + r)]);
                  if (opt.clip_steps > 0) {
                    hd.resize(static_cast<std::size_t>(group));
                    for (std::int64_t e = 0; e < group; ++e) hd[static_cast<std::size_t>(e)] = diag(oc + e);
                    for (std::int64_t r = 0; r < nr; ++r) {
                      const auto p = static_cast<std::size_t>((r0 + r) * groups + g);
                      detail::clipped_affine_params<Q, T>(buf.data() + r * group, group, hd.data(), opt.clip_steps,
                                                          opt.clip_shrink, scale[p], shift[p]);
                    }
                  } else {
                    const scale_shift<T> ss = max_scale_shift<Q>(
                        tensor_view<const T>(std::span<const T>(buf), quanto::shape{nr, group}), qaxis::first, {1});
                    for (std::int64_t r = 0; r < nr; ++r) {
                      scale[static_cast<std::size_t>((r0 + r) * groups + g)] = ss.scale[static_cast<std::size_t>(r)];
                      shift[static_cast<std::size_t>((r0 + r) * groups + g)] = ss.shift[static_cast<std::size_t>(r)];
                    }
                  }
                }
              }
              const float d = u[static_cast<std::size_t>(i * cols + i)];
              float* wi = wt.data() + i * rows;
              float* ei = err.data() + (i - i1) * rows;
              for (std::int64_t r = r0; r < r1; ++r) {
                const auto p = static_cast<std::size_t>(r * groups + g);
                const T x = model_arith::narrow<T>(wi[r]);
                T v;
                if constexpr (LowBitQType<Q>) {
                  const std::uint8_t q = detail::quantize_affine_value(x, scale[p], shift[p], Q::bits);
                  v = detail::dequantize_affine_value(q, scale[p], shift[p]);
                  codes[static_cast<std::size_t>(r * cols + oc)] = q;
                } else {
                  const code_t q = detail::quantize_symmetric_value<Q>(x, scale[p]);
                  v = detail::dequantize_symmetric_value<Q>(q, scale[p]);
                  codes[static_cast<std::size_t>(r * cols + oc)] = q;
                }
                dq[r * cols + oc] = v;
                ei[r] = (wi[r] - model_arith::widen(v)) / d;
              }
              const float* ui = u.data() + i * cols;
              for (std::int64_t j = i + 1; j < i2; ++j)
                detail::dense::axpy<float>(nr, -ui[j], ei + r0, wt.data() + j * rows + r0);
            }
          }
        },
        par);
    // the lazy batch update of every later column: W[i2:] -= U[i1:i2, i2:]ᵀ · E
    detail::dense::gemm_tn<float>(cols - i2, rows, i2 - i1, -1.0f, {u.data() + i1 * cols + i2, cols, 1}, err.data(),
                                  rows, wt.data() + i2 * rows, rows, par);
  }

  tensor<T> scale_t(param_shape);
  std::copy(scale.begin(), scale.end(), scale_t.data());
  if constexpr (LowBitQType<Q>) {
    tensor<T> shift_t(param_shape);
    std::copy(shift.begin(), shift.end(), shift_t.data());
    const quanto::shape cs = gs ? grouped_shape(w.shape(), qaxis::first, group) : w.shape();
    const tensor<std::uint8_t> c(cs, std::span<const std::uint8_t>(codes));
    out.weight =
        file_weight{pack(c.view(), Q::bits), std::move(scale_t), std::move(shift_t), w.shape(), qaxis::first, gs};
  } else {
    out.weight = file_weight{tensor<code_t>(w.shape(), std::span<const code_t>(codes)), std::move(scale_t),
                             effective_axis(w.shape(), qaxis::first)};
  }
  return out;
}

/// The same, from a layer's accumulated statistics (named after it).
template <QType Q, ModelFloat T, Scheme S = default_scheme_t<Q>>
gptq_result<Q, T> gptq_quantize(tensor_view<const T> w, const gptq_hessian& h, const S& scheme = {},
                                const gptq_options& opt = {}) {
  const std::vector<double> m = h.matrix();
  return gptq_quantize<Q, T, S>(w, std::span<const double>(m), scheme, opt, h.name());
}

QUANTO_END_NAMESPACE
