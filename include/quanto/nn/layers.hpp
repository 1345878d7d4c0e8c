// quanto/nn/layers.hpp: the float modules: Linear, Conv2d, LayerNorm, and the element-wise pieces
// an MLP and a small transformer need (ReLU, GELU, Softmax). Each has PyTorch's parameter names
// and shapes, a forward in float32 arithmetic rounded once to the model dtype, and a backward.
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
#include "quanto/nn/functional.hpp"
#include "quanto/nn/state_dict.hpp"
#include "quanto/quantize/checks.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

/// A trainable tensor and its float32 gradient (empty until a backward runs).
template <ModelFloat T>
struct parameter {
  tensor<T> value;
  tensor<float> grad;

  /// The gradient, allocated (zero) on first use.
  tensor<float>& grad_storage() {
    if (grad.size() != value.size() || !(grad.shape() == value.shape())) grad = tensor<float>(value.shape());
    return grad;
  }
  void zero_grad() {
    if (grad.size()) std::fill(grad.begin(), grad.end(), 0.0f);
  }
};

namespace detail {

/// float32 elements of a model-dtype buffer: the buffer itself for float, a widened copy otherwise.
template <ModelFloat T>
class f32_buffer {
 public:
  explicit f32_buffer(tensor_view<const T> t) {
    if constexpr (std::is_same_v<T, float>)
      ptr_ = t.data();
    else {
      copy_ = functional::to_f32(t);
      ptr_ = copy_.data();
    }
  }
  const float* data() const noexcept { return ptr_; }

 private:
  const float* ptr_ = nullptr;
  std::vector<float> copy_;
};

template <ModelFloat T>
void save_tensor(state_dict& sd, const std::string& key, const tensor<T>& t) {
  sd.insert(key, stored_tensor::from(t));
}

/// Reads `key` into `into` (its dtype must be T, its shape `expected`); records it as missing when
/// absent and leaves `into` as it was.
template <ModelFloat T>
void load_tensor(load_context& lc, const std::string& key, tensor<T>& into, const quanto::shape& expected) {
  const stored_tensor* s = lc.take(key);
  if (!s) return;
  if (!(s->shape == expected))
    throw shape_error("state dict key '" + key + "' has shape " + s->shape.to_string() + ", expected " +
                      expected.to_string());
  into = s->to<T>(key);
}

/// PyTorch's default initialisation of Linear/Conv2d weights and biases: U(-1/√fan_in, 1/√fan_in).
template <ModelFloat T, class Rng>
tensor<T> uniform_init(const quanto::shape& s, std::int64_t fan_in, Rng& rng) {
  const float bound = fan_in > 0 ? 1.0f / std::sqrt(static_cast<float>(fan_in)) : 0.0f;
  std::uniform_real_distribution<float> u(-bound, bound);
  tensor<T> t(s);
  for (auto& v : t) v = quanto::detail::narrow<T>(u(rng));
  return t;
}

inline void require_saved(bool saved, std::string_view kind) {
  if (!saved)
    throw state_error(std::string(kind) +
                      ": backward() needs a forward() in training mode first (call train(true) before the forward)");
}

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
        y[static_cast<std::size_t>(i * n + j)] += quanto::detail::widen(bias_->value[static_cast<std::size_t>(j)]);
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
        const float bo = bias_ ? quanto::detail::widen(bias_->value[static_cast<std::size_t>(o)]) : 0.0f;
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

// ---- element-wise --------------------------------------------------------------------------------

namespace detail {
/// Shared plumbing of the parameter-free modules.
template <ModelFloat T>
struct stateless {
  template <class F>
  void for_each_parameter(F&&) {}
  void zero_grad() {}
  void save(state_dict&, const std::string&) const {}
  void load(load_context&, const std::string&) {}
};
}  // namespace detail

/// max(x, 0). Keeps qint8 activations quantized (quanto's relu on ActivationQBytesTensor: the
/// codes become max(code, 0), the scale stays). Float8 activations come out as plain float
/// tensors, as in quanto, whose relu falls back to the dequantized values for float8 qtypes
/// ("Relu is not supported for float8 types"): the next QLinear then calibrates and quantizes
/// that input itself.
template <ModelFloat T = float>
class ReLU : public detail::stateless<T> {
 public:
  using value_type = T;
  static constexpr std::string_view kind = "ReLU";

  activation<T> forward(activation<T> x) {
    const T zero = T(0.0f);
    auto relu = [&](auto& v) {
      const float f = quanto::detail::widen(v);
      if (!(f > 0.0f) && !is_nan_bits(f)) v = zero;
    };
    if (training_) saved_ = x.value;
    for (auto& v : x.value) relu(v);
    bool keeps_codes = true;
    std::visit(
        [&]<class A>(A& a) {
          if constexpr (!std::is_same_v<A, std::monostate>) {
            if constexpr (std::is_same_v<typename A::qtype::storage, std::int8_t>)
              for (auto& c : a.data) c = std::max<std::int8_t>(c, 0);
            else
              keeps_codes = false;
          }
        },
        x.quantized);
    if (!keeps_codes) x.quantized = std::monostate{};
    return x;
  }
  tensor<T> backward(const tensor<T>& grad_output) {
    detail::require_saved(saved_.has_value(), kind);
    if (!(grad_output.shape() == saved_->shape()))
      throw shape_error("ReLU backward: the gradient has shape " + grad_output.shape().to_string() + ", expected " +
                        saved_->shape().to_string());
    tensor<T> g = grad_output;
    for (std::size_t i = 0; i < g.size(); ++i)
      if (!(quanto::detail::widen((*saved_)[i]) > 0.0f)) g[i] = T(0.0f);
    return g;
  }
  void train(bool on) {
    training_ = on;
    if (!on) saved_.reset();
  }

 private:
  bool training_ = false;
  std::optional<tensor<T>> saved_;
};

/// GELU, exact (erf) by default or with PyTorch's tanh approximation. Returns float activations.
template <ModelFloat T = float>
class GELU : public detail::stateless<T> {
 public:
  using value_type = T;
  static constexpr std::string_view kind = "GELU";

  explicit GELU(bool tanh_approximation = false) : tanh_(tanh_approximation) {}

  activation<T> forward(activation<T> x) {
    tensor<T> y(x.shape());
    const T* src = x.value.data();
    T* dst = y.data();
    const std::size_t n = y.size();
    if (tanh_) {
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = quanto::detail::narrow<T>(functional::gelu_tanh(quanto::detail::widen(src[i])));
    } else if constexpr (std::is_same_v<T, float>) {
      // a plain loop over contiguous floats (no narrow<float> barrier, the store rounds): it vectorises
      for (std::size_t i = 0; i < n; ++i) dst[i] = functional::gelu_erf(src[i]);
    } else {
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = quanto::detail::narrow<T>(functional::gelu_erf(quanto::detail::widen(src[i])));
    }
    if (training_) saved_ = std::move(x.value);
    return y;
  }
  tensor<T> backward(const tensor<T>& grad_output) {
    detail::require_saved(saved_.has_value(), kind);
    if (!(grad_output.shape() == saved_->shape()))
      throw shape_error("GELU backward: the gradient has shape " + grad_output.shape().to_string() + ", expected " +
                        saved_->shape().to_string());
    tensor<T> g(grad_output.shape());
    for (std::size_t i = 0; i < g.size(); ++i)
      g[i] = quanto::detail::narrow<T>(quanto::detail::widen(grad_output[i]) *
                                       functional::gelu_grad(quanto::detail::widen((*saved_)[i]), tanh_));
    return g;
  }
  void train(bool on) {
    training_ = on;
    if (!on) saved_.reset();
  }

 private:
  bool tanh_;
  bool training_ = false;
  std::optional<tensor<T>> saved_;
};

/// Softmax over the last dimension. A quantized input gives a quantized output, requantized with
/// the fixed scale 1/qmax of its qtype, as quanto's softmax on ActivationQBytesTensor does.
template <ModelFloat T = float>
class Softmax : public detail::stateless<T> {
 public:
  using value_type = T;
  static constexpr std::string_view kind = "Softmax";

  activation<T> forward(activation<T> x) {
    if (x.shape().rank() < 1) throw shape_error("Softmax: the input needs at least one dimension");
    const std::int64_t n = x.shape()[x.shape().rank() - 1];
    std::vector<float> v = functional::to_f32(x.value.view());
    functional::softmax_rows(v.data(), n == 0 ? 0 : x.shape().numel() / n, n);
    tensor<T> y = functional::from_f32<T>(v, x.shape());
    if (training_) saved_ = y;
    if (const auto q = x.qtype()) {
      return visit_activation_qtype(*q, [&]<class Q>(Q) {
        const T scale = quanto::detail::narrow<T>(1.0f / static_cast<float>(Q::qmax));
        return to_quantized_activation<Q>(y.view(), scale);
      });
    }
    return y;
  }
  /// The softmax Jacobian applied to `grad_output`: s · (g - Σ g·s).
  tensor<T> backward(const tensor<T>& grad_output) {
    detail::require_saved(saved_.has_value(), kind);
    if (!(grad_output.shape() == saved_->shape()))
      throw shape_error("Softmax backward: the gradient has shape " + grad_output.shape().to_string() + ", expected " +
                        saved_->shape().to_string());
    const std::int64_t n = saved_->shape()[saved_->rank() - 1];
    const std::int64_t rows = n == 0 ? 0 : saved_->numel() / n;
    tensor<T> g(grad_output.shape());
    for (std::int64_t r = 0; r < rows; ++r) {
      float dotv = 0.0f;
      for (std::int64_t j = 0; j < n; ++j)
        dotv += quanto::detail::widen(grad_output[static_cast<std::size_t>(r * n + j)]) *
                quanto::detail::widen((*saved_)[static_cast<std::size_t>(r * n + j)]);
      for (std::int64_t j = 0; j < n; ++j) {
        const auto i = static_cast<std::size_t>(r * n + j);
        g[i] = quanto::detail::narrow<T>(quanto::detail::widen((*saved_)[i]) *
                                         (quanto::detail::widen(grad_output[i]) - dotv));
      }
    }
    return g;
  }
  void train(bool on) {
    training_ = on;
    if (!on) saved_.reset();
  }

 private:
  bool training_ = false;
  std::optional<tensor<T>> saved_;
};

}  // namespace nn
QUANTO_END_NAMESPACE
