// quanto/nn/layers.hpp: the float modules with weights: Linear, Conv2d, LayerNorm. Each has PyTorch's
// parameter names and shapes, a forward in float32 arithmetic rounded once to the model dtype, and a
// backward. Includes the element-wise modules (ReLU, GELU, Softmax: nn/elementwise.hpp) and the
// plumbing they share (nn/parameter.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/kernels/conv2d.hpp"
#include "quanto/nn/activation.hpp"
#include "quanto/nn/concepts.hpp"
#include "quanto/nn/elementwise.hpp"
#include "quanto/nn/functional.hpp"
#include "quanto/nn/parameter.hpp"
#include "quanto/nn/state_dict.hpp"
#include "quanto/quantize/checks.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

namespace detail {

/// What Linear and Conv2d share: a weight and an optional bias (one value per output), their
/// gradients, PyTorch's state-dict keys (`weight`, `bias`), and the input a backward needs.
template <ModelFloat T>
class weight_and_bias {
 public:
  const tensor<T>& weight() const noexcept { return weight_.value; }
  tensor<T>& weight() noexcept { return weight_.value; }
  const tensor<T>* bias() const noexcept { return bias_ ? &bias_->value : nullptr; }
  bool has_bias() const noexcept { return bias_.has_value(); }

  template <ParameterVisitor<T> F>
  void for_each_parameter(F&& f) {
    f("weight", weight_.value, weight_.grad);
    if (bias_) f("bias", bias_->value, bias_->grad);
  }
  void zero_grad() {
    weight_.zero_grad();
    if (bias_) bias_->zero_grad();
  }
  void train(bool on) {
    training_ = on;
    if (!on) saved_.reset();
  }
  void save(state_dict& sd, const std::string& prefix) const {
    save_tensor(sd, prefix + "weight", weight_.value);
    if (bias_) save_tensor(sd, prefix + "bias", bias_->value);
  }
  void load(load_context& lc, const std::string& prefix) {
    load_tensor(lc, prefix + "weight", weight_.value, weight_.value.shape());
    if (bias_) load_tensor(lc, prefix + "bias", bias_->value, bias_->value.shape());
  }
  /// Moves the parameters out (the quantized replacement takes them; quanto sets them to None).
  parameter<T> release_weight() && { return std::move(weight_); }
  std::optional<parameter<T>> release_bias() && { return std::move(bias_); }

 protected:
  /// Checks the weight's rank (`layout` names it in messages) and that the bias has one value per
  /// output (the weight's first dimension).
  weight_and_bias(std::string_view kind, std::size_t rank, std::string_view layout, tensor<T> weight,
                  std::optional<tensor<T>> bias)
      : weight_{std::move(weight), {}} {
    if (weight_.value.rank() != rank)
      throw shape_error(std::string(kind) + ": the weight has shape " + weight_.value.shape().to_string() +
                        ", expected " + std::string(layout));
    if (bias) {
      const std::int64_t out = weight_.value.shape()[0];
      if (!(bias->shape() == quanto::shape{out}))
        throw shape_error(std::string(kind) + ": the bias has shape " + bias->shape().to_string() + ", expected [" +
                          std::to_string(out) + "]");
      bias_ = parameter<T>{std::move(*bias), {}};
    }
  }

  parameter<T> weight_;
  std::optional<parameter<T>> bias_;
  bool training_ = false;
  std::optional<tensor<T>> saved_;
};

}  // namespace detail

// ---- Linear ------------------------------------------------------------------------------------------

/// `y = x · Wᵀ + b`, W [out, in] (PyTorch's nn.Linear). State dict: `weight`, `bias`.
template <ModelFloat T = float>
class Linear : public detail::weight_and_bias<T> {
  using base = detail::weight_and_bias<T>;
  using base::bias_;
  using base::saved_;
  using base::training_;
  using base::weight_;

 public:
  using value_type = T;
  static constexpr std::string_view kind = "Linear";

  explicit Linear(tensor<T> weight, std::optional<tensor<T>> bias = std::nullopt)
      : base(kind, 2, "[out, in]", std::move(weight), std::move(bias)) {}
  /// A Linear initialised as PyTorch does, from `rng`.
  template <class Rng>
  Linear(std::int64_t in, std::int64_t out, Rng& rng, bool bias = true)
      : Linear(detail::uniform_init<T>({out, in}, in, rng),
               bias ? std::optional<tensor<T>>(detail::uniform_init<T>({out}, in, rng)) : std::nullopt) {}

  std::int64_t in_features() const noexcept { return weight_.value.shape()[1]; }
  std::int64_t out_features() const noexcept { return weight_.value.shape()[0]; }

  activation<T> forward(activation<T> x) {
    const auto [m, k] = functional::rows_of(x.shape(), in_features(), "Linear");
    const std::int64_t n = out_features();
    detail::f32_buffer<T> xf(x.value.view()), wf(weight_.value.view());
    std::vector<float> y(static_cast<std::size_t>(m * n));
    functional::gemm_nt(m, n, k, xf.data(), wf.data(), y.data());
    if (bias_) add_bias(y, m);
    if (training_) saved_ = std::move(x.value);
    return functional::from_f32<T>(y, functional::with_last(x.shape(), n));
  }

  tensor<T> backward(const tensor<T>& grad_output) {
    detail::require_saved(saved_.has_value(), kind);
    const quanto::shape expected = functional::with_last(saved_->shape(), out_features());
    if (!(grad_output.shape() == expected))
      throw shape_error("Linear backward: the gradient has shape " + grad_output.shape().to_string() + ", expected " +
                        expected.to_string());
    const auto [m, n] = functional::rows_of(grad_output.shape(), out_features(), "Linear backward");
    const std::int64_t k = in_features();
    detail::f32_buffer<T> g(grad_output.view()), xf(saved_->view()), wf(weight_.value.view());
    functional::gemm_tn_acc(m, n, k, g.data(), xf.data(), weight_.grad_storage().data());
    if (bias_) accumulate_bias_grad(g.data(), m, n, bias_->grad_storage());
    std::vector<float> gx(static_cast<std::size_t>(m * k));
    functional::gemm_nn(m, n, k, g.data(), wf.data(), gx.data());
    return functional::from_f32<T>(gx, saved_->shape());
  }

  static void accumulate_bias_grad(const float* g, std::int64_t m, std::int64_t n, tensor<float>& gb) {
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) gb[static_cast<std::size_t>(j)] += g[i * n + j];
  }

 private:
  void add_bias(std::vector<float>& y, std::int64_t m) const {
    const std::int64_t n = out_features();
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j)
        y[static_cast<std::size_t>(i * n + j)] += quanto::model_arith::widen(bias_->value[static_cast<std::size_t>(j)]);
  }
};

// ---- Conv2d ------------------------------------------------------------------------------------------

/// 2-D convolution over NCHW inputs, W [out, in, kh, kw] (PyTorch's nn.Conv2d; groups = 1).
/// State dict: `weight`, `bias`.
template <ModelFloat T = float>
class Conv2d : public detail::weight_and_bias<T> {
  using base = detail::weight_and_bias<T>;
  using base::bias_;
  using base::saved_;
  using base::training_;
  using base::weight_;

 public:
  using value_type = T;
  static constexpr std::string_view kind = "Conv2d";

  explicit Conv2d(tensor<T> weight, std::optional<tensor<T>> bias = std::nullopt, kernels::conv2d_params params = {})
      : base(kind, 4, "[out, in, kh, kw]", std::move(weight), std::move(bias)), params_(params) {
    if (params_.groups != 1) throw unsupported_error("Conv2d: only groups = 1 is supported");
  }
  template <class Rng>
  Conv2d(std::int64_t in, std::int64_t out, std::int64_t kernel, Rng& rng, kernels::conv2d_params params = {},
         bool bias = true)
      : Conv2d(
            detail::uniform_init<T>({out, in, kernel, kernel}, in * kernel * kernel, rng),
            bias ? std::optional<tensor<T>>(detail::uniform_init<T>({out}, in * kernel * kernel, rng)) : std::nullopt,
            params) {}

  std::int64_t out_channels() const noexcept { return weight_.value.shape()[0]; }
  std::int64_t in_channels() const noexcept { return weight_.value.shape()[1]; }
  const kernels::conv2d_params& params() const noexcept { return params_; }

  activation<T> forward(activation<T> x) {
    const kernels::conv2d_geometry g = kernels::conv2d_shape(weight_.value.shape(), x.shape(), params_);
    detail::f32_buffer<T> xf(x.value.view()), wf(weight_.value.view());
    std::vector<float> y(static_cast<std::size_t>(g.output_shape().numel()));
    const std::int64_t K = g.patch(), P = g.pixels(), O = g.out_channels;
    std::vector<float> cols(static_cast<std::size_t>(P * K)), out(static_cast<std::size_t>(P * O));
    for (std::int64_t b = 0; b < g.batch; ++b) {
      functional::im2col_f32(xf.data() + b * g.channels * g.height * g.width, g, params_, cols.data());
      functional::gemm_nt(P, O, K, cols.data(), wf.data(), out.data());
      for (std::int64_t o = 0; o < O; ++o) {
        const float bo = bias_ ? quanto::model_arith::widen(bias_->value[static_cast<std::size_t>(o)]) : 0.0f;
        for (std::int64_t p = 0; p < P; ++p)
          y[static_cast<std::size_t>((b * O + o) * P + p)] = out[static_cast<std::size_t>(p * O + o)] + bo;
      }
    }
    if (training_) saved_ = std::move(x.value);
    return functional::from_f32<T>(y, g.output_shape());
  }

  tensor<T> backward(const tensor<T>& grad_output) {
    detail::require_saved(saved_.has_value(), kind);
    detail::f32_buffer<T> wf(weight_.value.view());
    return conv2d_backward(*saved_, grad_output, wf.data(), &weight_.grad_storage(),
                           bias_ ? &bias_->grad_storage() : nullptr, weight_.value.shape(), params_);
  }

  /// The convolution backward for weight `w` (float32, [out, in·kh·kw]): returns the input gradient,
  /// accumulates the weight and bias gradients where given.
  static tensor<T> conv2d_backward(const tensor<T>& input, const tensor<T>& grad_output, const float* w,
                                   tensor<float>* gw, tensor<float>* gb, const quanto::shape& wshape,
                                   const kernels::conv2d_params& params) {
    const kernels::conv2d_geometry g = kernels::conv2d_shape(wshape, input.shape(), params);
    if (!(grad_output.shape() == g.output_shape()))
      throw shape_error("Conv2d backward: the gradient has shape " + grad_output.shape().to_string() + ", expected " +
                        g.output_shape().to_string());
    detail::f32_buffer<T> xf(input.view()), gf(grad_output.view());
    const std::int64_t K = g.patch(), P = g.pixels(), O = g.out_channels, in_image = g.channels * g.height * g.width;
    std::vector<float> cols(static_cast<std::size_t>(P * K)), gcols(static_cast<std::size_t>(P * K)),
        gt(static_cast<std::size_t>(P * O)), gx(static_cast<std::size_t>(input.size()), 0.0f);
    for (std::int64_t b = 0; b < g.batch; ++b) {
      const float* gb_img = gf.data() + b * O * P;
      for (std::int64_t o = 0; o < O; ++o)
        for (std::int64_t p = 0; p < P; ++p) gt[static_cast<std::size_t>(p * O + o)] = gb_img[o * P + p];
      if (gw) {
        functional::im2col_f32(xf.data() + b * in_image, g, params, cols.data());
        functional::gemm_tn_acc(P, O, K, gt.data(), cols.data(), gw->data());
      }
      if (gb)
        for (std::int64_t o = 0; o < O; ++o)
          for (std::int64_t p = 0; p < P; ++p) (*gb)[static_cast<std::size_t>(o)] += gb_img[o * P + p];
      functional::gemm_nn(P, O, K, gt.data(), w, gcols.data());
      functional::col2im_add_f32(gcols.data(), g, params, gx.data() + b * in_image);
    }
    return functional::from_f32<T>(gx, input.shape());
  }

 private:
  kernels::conv2d_params params_;
};

// ---- LayerNorm ---------------------------------------------------------------------------------------

/// Layer normalisation over the last dimension (PyTorch's nn.LayerNorm(n, eps, elementwise_affine,
/// bias)). State dict: `weight`, `bias` when affine.
template <ModelFloat T = float>
class LayerNorm {
 public:
  using value_type = T;
  static constexpr std::string_view kind = "LayerNorm";

  explicit LayerNorm(std::int64_t normalized, float eps = 1e-5f, bool elementwise_affine = true, bool bias = true)
      : n_(normalized), eps_(eps) {
    if (normalized <= 0) throw shape_error("LayerNorm: the normalised size must be positive");
    if (elementwise_affine) {
      weight_ = parameter<T>{tensor<T>(quanto::shape{normalized}), {}};
      for (auto& v : weight_->value) v = T(1.0f);
      if (bias) bias_ = parameter<T>{tensor<T>(quanto::shape{normalized}), {}};
    }
  }

  std::int64_t normalized_size() const noexcept { return n_; }
  float eps() const noexcept { return eps_; }
  tensor<T>* weight() noexcept { return weight_ ? &weight_->value : nullptr; }
  tensor<T>* bias() noexcept { return bias_ ? &bias_->value : nullptr; }

  activation<T> forward(activation<T> x) {
    const auto [rows, n] = functional::rows_of(x.shape(), n_, "LayerNorm");
    detail::f32_buffer<T> xf(x.value.view());
    std::optional<detail::f32_buffer<T>> wf, bf;
    if (weight_) wf.emplace(weight_->value.view());
    if (bias_) bf.emplace(bias_->value.view());
    std::vector<float> y(x.value.size());
    functional::norm_stats st = functional::layer_norm_rows(xf.data(), y.data(), rows, n, wf ? wf->data() : nullptr,
                                                            bf ? bf->data() : nullptr, eps_);
    if (training_) {
      saved_ = std::move(x.value);
      stats_ = std::move(st);
      return functional::from_f32<T>(y, saved_->shape());
    }
    return functional::from_f32<T>(y, x.shape());
  }

  tensor<T> backward(const tensor<T>& grad_output) {
    detail::require_saved(saved_.has_value(), kind);
    if (!(grad_output.shape() == saved_->shape()))
      throw shape_error("LayerNorm backward: the gradient has shape " + grad_output.shape().to_string() +
                        ", expected " + saved_->shape().to_string());
    const std::int64_t rows = saved_->numel() / n_;
    detail::f32_buffer<T> xf(saved_->view()), gf(grad_output.view());
    std::optional<detail::f32_buffer<T>> wf;
    if (weight_) wf.emplace(weight_->value.view());
    std::vector<float> gx(saved_->size());
    functional::layer_norm_backward_rows(xf.data(), gf.data(), stats_, rows, n_, wf ? wf->data() : nullptr, gx.data(),
                                         weight_ ? weight_->grad_storage().data() : nullptr,
                                         bias_ ? bias_->grad_storage().data() : nullptr);
    return functional::from_f32<T>(gx, saved_->shape());
  }

  template <ParameterVisitor<T> F>
  void for_each_parameter(F&& f) {
    if (weight_) f("weight", weight_->value, weight_->grad);
    if (bias_) f("bias", bias_->value, bias_->grad);
  }
  void zero_grad() {
    if (weight_) weight_->zero_grad();
    if (bias_) bias_->zero_grad();
  }
  void train(bool on) {
    training_ = on;
    if (!on) saved_.reset();
  }
  void save(state_dict& sd, const std::string& prefix) const {
    if (weight_) detail::save_tensor(sd, prefix + "weight", weight_->value);
    if (bias_) detail::save_tensor(sd, prefix + "bias", bias_->value);
  }
  void load(load_context& lc, const std::string& prefix) {
    if (weight_) detail::load_tensor(lc, prefix + "weight", weight_->value, weight_->value.shape());
    if (bias_) detail::load_tensor(lc, prefix + "bias", bias_->value, bias_->value.shape());
  }

 private:
  std::int64_t n_;
  float eps_;
  std::optional<parameter<T>> weight_, bias_;
  bool training_ = false;
  std::optional<tensor<T>> saved_;
  functional::norm_stats stats_;
};

}  // namespace nn
QUANTO_END_NAMESPACE
