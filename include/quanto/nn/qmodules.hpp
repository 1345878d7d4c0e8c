// quanto/nn/qmodules.hpp: the quantized modules QLinear, QConv2d and QLayerNorm (optimum-quanto's
// QModuleMixin family), and their entries in the float → quantized registry.
//
// Life of a quantized weight (as in quanto):
// - dynamic (after quantize, before freeze): the float weight is kept and trained; every forward
//   re-quantizes it with the module's optimizer and group size, packs it into the kernel layout and
//   runs the fused kernels; backward passes gradients straight through the quantization;
// - frozen (`freeze()`): the weight is quantized once, only the kernel layout is kept (it converts
//   back to quanto's file layout bit for bit for `state_dict`), and the float weight is freed.
// Bias is never quantized. QLinear quantizes inputs and outputs when it has activations; QConv2d
// and QLayerNorm quantize outputs only; QLayerNorm exists only with activations.
// The weight holder itself (dynamic or frozen) is nn/quantized_weight.hpp.
#pragma once

#include <cstdint>
#include <optional>
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
#include "quanto/kernels/layout.hpp"
#include "quanto/kernels/matmul.hpp"
#include "quanto/nn/activation.hpp"
#include "quanto/nn/calibration.hpp"
#include "quanto/nn/concepts.hpp"
#include "quanto/nn/functional.hpp"
#include "quanto/nn/layers.hpp"
#include "quanto/nn/quantized_weight.hpp"
#include "quanto/nn/state_dict.hpp"
#include "quanto/quantize/qtensor.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

namespace detail {

inline std::string module_label(std::string_view kind, const std::string& name) {
  return name.empty() ? std::string(kind) : std::string(kind) + " '" + name + "'";
}

/// The bias as float32 for the kernels: the module's own storage in a float model (no copy on the
/// forward path), a widened copy otherwise; empty without a bias.
template <ModelFloat T>
class bias_f32 {
 public:
  explicit bias_f32(const std::optional<parameter<T>>& bias) {
    if (bias) {
      buffer_.emplace(bias->value.view());
      size_ = bias->value.size();
    }
  }
  const float* data() const noexcept { return buffer_ ? buffer_->data() : nullptr; }
  std::span<const float> span() const noexcept { return {data(), size_}; }

 private:
  std::optional<f32_buffer<T>> buffer_;
  std::size_t size_ = 0;
};

/// The activation side of every quantized module (quanto's QModuleMixin buffers and hooks) and its
/// name in the model (for messages).
template <ModelFloat T>
class qmodule_base {
 public:
  std::optional<qtype_id> activation_qtype() const noexcept { return acts_.qtype(); }
  T input_scale() const noexcept { return acts_.input_scale(); }
  T output_scale() const noexcept { return acts_.output_scale(); }
  void set_scales(T input, T output) noexcept { acts_.set_scales(input, output); }
  const std::string& name() const noexcept { return name_; }
  void set_name(std::string name) {
    name_ = std::move(name);
    label_ = module_label(kind_, name_);
  }

 protected:
  qmodule_base(std::string_view kind, std::optional<qtype_id> activations)
      : acts_(activations), kind_(kind), label_(kind) {}
  activation_quantizer<T> acts_;
  std::string name_;
  std::string_view kind_;
  std::string label_;  ///< "QLinear 'encoder.0.query'", for messages (built once, not per forward)
};

/// What QLinear and QConv2d share: the quantized weight (dynamic or frozen), the float bias, their
/// gradients, quanto's state-dict keys, and what a backward needs.
template <QType Q, ModelFloat T>
class qweight_module_base : public qmodule_base<T> {
 public:
  std::optional<qtype_id> weight_qtype() const noexcept { return id_of<Q>(); }
  bool frozen() const noexcept { return weight_.frozen(); }
  void freeze() { weight_.freeze(); }
  /// The quantized weight in quanto's file layout (what `state_dict` writes once frozen).
  auto qweight() const { return weight_.quantized(); }
  /// The frozen weight in the kernel layout (null before freeze).
  const kernels::packed_weight<Q, T>* packed_weight() const noexcept { return weight_.packed(); }
  /// The float weight, before freeze (null after).
  const tensor<T>* float_weight() const noexcept {
    const parameter<T>* p = weight_.float_parameter();
    return p ? &p->value : nullptr;
  }
  const tensor<T>* bias() const noexcept { return bias_ ? &bias_->value : nullptr; }
  std::size_t weight_bytes() const noexcept { return weight_.bytes(); }

  template <ParameterVisitor<T> F>
  void for_each_parameter(F&& f) {
    if (parameter<T>* p = weight_.float_parameter()) f("weight", p->value, p->grad);
    if (bias_) f("bias", bias_->value, bias_->grad);
  }
  void zero_grad() {
    if (parameter<T>* p = weight_.float_parameter()) p->zero_grad();
    if (bias_) bias_->zero_grad();
  }
  void train(bool on) {
    training_ = on;
    if (!on) {
      saved_input_.reset();
      saved_weight_ = {};
    }
  }
  void save(state_dict& sd, const std::string& prefix) const {
    weight_.save(sd, prefix);
    if (bias_) sd.insert(prefix + "bias", stored_tensor::from(bias_->value));
    this->acts_.save(sd, prefix);
  }
  void load(load_context& lc, const std::string& prefix) {
    weight_.load(lc, prefix);
    if (bias_) load_tensor(lc, prefix + "bias", bias_->value, bias_->value.shape());
    this->acts_.load(lc, prefix);
  }

 protected:
  qweight_module_base(std::string_view kind, parameter<T> weight, std::optional<parameter<T>> bias,
                      const qconfig& config)
      : qmodule_base<T>(kind, config.activations),
        bias_(std::move(bias)),
        weight_(std::move(weight), config.optimizer) {}

  std::optional<parameter<T>> bias_;
  quantized_weight<Q, T> weight_;
  bool training_ = false;
  std::optional<tensor<T>> saved_input_;
  std::vector<float> saved_weight_;  ///< the dequantized weight of the last training forward
};

}  // namespace detail

// ---- QLinear -----------------------------------------------------------------------------------------

/// A Linear with weights of qtype `Q` (and, when `qconfig::activations` is set, 8-bit activations).
template <QType Q, ModelFloat T = float>
class QLinear : public detail::qweight_module_base<Q, T> {
  using base = detail::qweight_module_base<Q, T>;
  using base::acts_;
  using base::bias_;
  using base::saved_input_;
  using base::saved_weight_;
  using base::training_;
  using base::weight_;

 public:
  using value_type = T;
  using qtype = Q;
  static constexpr std::string_view kind = "QLinear";

  /// Replaces `linear`, taking its weight and bias (quanto's `QLinear.from_module`).
  explicit QLinear(Linear<T>&& linear, qconfig config = {})
      : base(kind, std::move(linear).release_weight(), std::move(linear).release_bias(), config),
        in_(weight_.shape()[1]),
        out_(weight_.shape()[0]) {}
  QLinear(tensor<T> weight, std::optional<tensor<T>> bias, qconfig config = {})
      : QLinear(Linear<T>(std::move(weight), std::move(bias)), config) {}

  std::int64_t in_features() const noexcept { return in_; }
  std::int64_t out_features() const noexcept { return out_; }

  activation<T> forward(activation<T> x) {
    const std::string& label = this->label_;
    const auto rows = functional::rows_of(x.shape(), in_, label.c_str());
    const std::int64_t m = rows.first, k = rows.second;  // plain locals: the lambda below captures them
    acts_.observe_input(x);
    x = acts_.quantize_input(std::move(x), label);
    std::optional<kernels::packed_weight<Q, T>> scratch;
    const auto& w = weight_.for_forward(scratch, training_ ? &saved_weight_ : nullptr);
    const detail::bias_f32<T> b(bias_);
    const float* bp = b.data();
    tensor<T> y(functional::with_last(x.shape(), out_));
    bool done = false;
    if constexpr (ByteQType<Q>) {
      std::visit(
          [&]<class A>(const A& a) {
            if constexpr (!std::is_same_v<A, std::monostate>) {
              kernels::matmul_quantized<typename A::qtype>(w, a.data.data(), quanto::model_arith::widen(a.scale), m, k,
                                                           y.data(), out_, bp);
              done = true;
            }
          },
          x.quantized);
    }
    if (!done) kernels::matmul(w, x.value.data(), m, k, y.data(), out_, bp);
    if (training_) saved_input_ = std::move(x.value);
    return acts_.quantize_output(std::move(y), label);
  }

  /// Straight-through: the input gradient uses the dequantized weight; the float weight (before
  /// freeze) receives gᵀ·x as if no quantization had happened; quantized activations pass the
  /// gradient unchanged.
  tensor<T> backward(const tensor<T>& grad_output) {
    detail::require_saved(saved_input_.has_value(), kind);
    const quanto::shape expected = functional::with_last(saved_input_->shape(), out_);
    if (!(grad_output.shape() == expected))
      throw shape_error("QLinear backward: the gradient has shape " + grad_output.shape().to_string() + ", expected " +
                        expected.to_string());
    const auto [m, n] = functional::rows_of(grad_output.shape(), out_, "QLinear backward");
    detail::f32_buffer<T> g(grad_output.view()), xf(saved_input_->view());
    if (parameter<T>* p = weight_.float_parameter())
      functional::gemm_tn_acc(m, n, in_, g.data(), xf.data(), p->grad_storage().data());
    if (bias_) Linear<T>::accumulate_bias_grad(g.data(), m, n, bias_->grad_storage());
    std::vector<float> gx(static_cast<std::size_t>(m * in_));
    functional::gemm_nn(m, n, in_, g.data(), saved_weight_.data(), gx.data());
    return functional::from_f32<T>(gx, saved_input_->shape());
  }

 private:
  std::int64_t in_, out_;
};

// ---- QConv2d -----------------------------------------------------------------------------------------

/// A Conv2d with weights of qtype `Q`; with activations, its outputs are quantized (not its inputs).
template <QType Q, ModelFloat T = float>
class QConv2d : public detail::qweight_module_base<Q, T> {
  using base = detail::qweight_module_base<Q, T>;
  using base::acts_;
  using base::bias_;
  using base::saved_input_;
  using base::saved_weight_;
  using base::training_;
  using base::weight_;

 public:
  using value_type = T;
  using qtype = Q;
  static constexpr std::string_view kind = "QConv2d";

  explicit QConv2d(Conv2d<T>&& conv, qconfig config = {})
      : base(kind, std::move(conv).release_weight(), std::move(conv).release_bias(), config), params_(conv.params()) {}

  const kernels::conv2d_params& params() const noexcept { return params_; }

  activation<T> forward(activation<T> x) {
    acts_.observe_input(x);
    std::optional<kernels::packed_weight<Q, T>> scratch;
    const auto& w = weight_.for_forward(scratch, training_ ? &saved_weight_ : nullptr);
    const detail::bias_f32<T> b(bias_);
    tensor<T> y = kernels::conv2d(w, x.value.view(), b.span(), params_);
    if (training_) saved_input_ = std::move(x.value);
    return acts_.quantize_output(std::move(y), this->label_);
  }

  /// Straight-through, as QLinear::backward.
  tensor<T> backward(const tensor<T>& grad_output) {
    detail::require_saved(saved_input_.has_value(), kind);
    parameter<T>* p = weight_.float_parameter();
    return Conv2d<T>::conv2d_backward(*saved_input_, grad_output, saved_weight_.data(),
                                      p ? &p->grad_storage() : nullptr, bias_ ? &bias_->grad_storage() : nullptr,
                                      weight_.shape(), params_);
  }

 private:
  kernels::conv2d_params params_;
};

// ---- QLayerNorm --------------------------------------------------------------------------------------

/// A LayerNorm whose outputs are quantized. Its weights are never quantized, so there is nothing to
/// freeze (`frozen()` is true), and it needs activations (unsupported_error otherwise).
template <ModelFloat T = float>
class QLayerNorm : public detail::qmodule_base<T> {
  using base = detail::qmodule_base<T>;
  using base::acts_;

 public:
  using value_type = T;
  static constexpr std::string_view kind = "QLayerNorm";

  explicit QLayerNorm(LayerNorm<T>&& norm, qconfig config) : base(kind, config.activations), norm_(std::move(norm)) {
    if (!config.activations)
      throw unsupported_error(
          "QLayerNorm quantizes activations only: a qconfig without activations leaves the "
          "LayerNorm as it is");
  }

  std::optional<qtype_id> weight_qtype() const noexcept { return std::nullopt; }
  bool frozen() const noexcept { return true; }
  void freeze() {}
  LayerNorm<T>& norm() noexcept { return norm_; }

  activation<T> forward(activation<T> x) {
    acts_.observe_input(x);
    activation<T> y = norm_.forward(std::move(x));
    return acts_.quantize_output(std::move(y).take_value(), this->label_);
  }
  tensor<T> backward(const tensor<T>& grad_output) { return norm_.backward(grad_output); }
  template <ParameterVisitor<T> F>
  void for_each_parameter(F&& f) {
    norm_.for_each_parameter(f);
  }
  void zero_grad() { norm_.zero_grad(); }
  void train(bool on) { norm_.train(on); }
  void save(state_dict& sd, const std::string& prefix) const {
    norm_.save(sd, prefix);
    acts_.save(sd, prefix);
  }
  void load(load_context& lc, const std::string& prefix) {
    norm_.load(lc, prefix);
    acts_.load(lc, prefix);
  }

 private:
  LayerNorm<T> norm_;
};

// ---- the registry ------------------------------------------------------------------------------------

template <ModelFloat T>
struct qmodule_traits<Linear<T>> {
  static constexpr bool quantizable = true;
  template <class F>
  static void quantize(Linear<T>&& m, std::optional<qtype_id> weights, const qconfig& c, F&& emit) {
    if (!weights)
      throw unsupported_error(
          "quantizing a Linear needs a weight qtype (activation-only quantization is not supported)");
    visit_qtype(*weights, [&]<class Q>(Q) { emit(QLinear<Q, T>(std::move(m), c)); });
  }
};

template <ModelFloat T>
struct qmodule_traits<Conv2d<T>> {
  static constexpr bool quantizable = true;
  template <class F>
  static void quantize(Conv2d<T>&& m, std::optional<qtype_id> weights, const qconfig& c, F&& emit) {
    if (!weights)
      throw unsupported_error(
          "quantizing a Conv2d needs a weight qtype (activation-only quantization is not supported)");
    visit_qtype(*weights, [&]<class Q>(Q) { emit(QConv2d<Q, T>(std::move(m), c)); });
  }
};

template <ModelFloat T>
struct qmodule_traits<LayerNorm<T>> {
  static constexpr bool quantizable = true;
  template <class F>
  static void quantize(LayerNorm<T>&& m, std::optional<qtype_id>, const qconfig& c, F&& emit) {
    if (c.activations) emit(QLayerNorm<T>(std::move(m), c));
  }
};

}  // namespace nn
QUANTO_END_NAMESPACE
