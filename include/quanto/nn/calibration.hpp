// quanto/nn/calibration.hpp: activation scales and their calibration, as optimum-quanto does it.
//
// Every quantized module has a per-tensor `input_scale` and `output_scale` in its model dtype,
// 1.0 until calibrated (quanto's default, and its "not calibrated yet" sentinel). Inside a
// `Calibration` scope each forward of a module with activations updates them from the batch's
// absolute maximum (`absmax / qmax`): the first batch replaces the 1.0, later ones blend in with
// `momentum · old + (1 - momentum) · new`, each step rounded to the model dtype as PyTorch does.
// Quirk kept from quanto: the input scale always blends with 0.9, whatever the scope's momentum.
// An input that is already quantized sets `input_scale` to its own scale.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/log.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/nn/activation.hpp"
#include "quanto/nn/state_dict.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

/// A calibration scope (RAII): while one is alive on a thread, forwards on that thread update the
/// activation scales of quantized modules. Scopes nest; the innermost one's momentum applies.
class Calibration {
 public:
  explicit Calibration(double momentum = 0.9) : momentum_(momentum), previous_(current()) {
    if (!(momentum >= 0.0 && momentum <= 1.0))
      throw value_error("Calibration: the momentum must be in [0, 1], got " + std::to_string(momentum));
    current() = this;
  }
  ~Calibration() { current() = previous_; }
  Calibration(const Calibration&) = delete;
  Calibration& operator=(const Calibration&) = delete;

  double momentum() const noexcept { return momentum_; }
  /// The innermost scope alive on this thread, or null.
  static const Calibration* active() noexcept { return current(); }

 private:
  static const Calibration*& current() noexcept {
    thread_local const Calibration* c = nullptr;
    return c;
  }
  double momentum_;
  const Calibration* previous_;
};

/// quanto's `_updated_scale(scale, new_scale, momentum)`: `new_scale` when `scale == 1` (the
/// uncalibrated sentinel), else `momentum·scale + new_scale·(1 - momentum)` with PyTorch's steps
/// (each product rounded to T, then the sum; `1 - momentum` computed in double first).
template <ModelFloat T>
T updated_scale(T scale, T new_scale, double momentum) noexcept {
  using quanto::model_arith::narrow;
  using quanto::model_arith::widen;
  if (widen(scale) == 1.0f) return new_scale;
  const T a = narrow<T>(widen(scale) * static_cast<float>(momentum));
  const T b = narrow<T>(widen(new_scale) * static_cast<float>(1.0 - momentum));
  return quanto::model_arith::t_add(a, b);
}

/// The activation side of a quantized module (quanto's QModuleMixin hooks and buffers): the qtype,
/// the two scales, and the steps a forward takes around the module's own computation.
template <ModelFloat T>
class activation_quantizer {
 public:
  activation_quantizer() = default;
  explicit activation_quantizer(std::optional<qtype_id> qtype) : qtype_(qtype) {
    if (qtype_) (void)visit_activation_qtype(*qtype_, [](auto) { return 0; });  // 8-bit only
  }

  std::optional<qtype_id> qtype() const noexcept { return qtype_; }
  T input_scale() const noexcept { return input_scale_; }
  T output_scale() const noexcept { return output_scale_; }
  void set_scales(T input, T output) noexcept {
    input_scale_ = input;
    output_scale_ = output;
  }

  /// Calibration of the input (every quantized module with activations, even those that do not
  /// quantize their input, as quanto's global hook does).
  void observe_input(const activation<T>& x) {
    if (!qtype_ || !Calibration::active()) return;
    if (x.is_quantized())
      input_scale_ = x.scale();
    else
      input_scale_ = updated_scale(input_scale_, absmax_activation_scale(x.value.view(), *qtype_), 0.9);
  }

  /// QLinear's input step: a quantized input of the same qtype passes as it is; another qtype is an
  /// unsupported_error; a float input is quantized with `input_scale`.
  activation<T> quantize_input(activation<T> x, std::string_view module) {
    if (!qtype_) return x;
    if (const auto q = x.qtype()) {
      if (*q != *qtype_)
        throw unsupported_error(std::string(module) + ": the input is quantized to " + std::string(to_string(*q)) +
                                ", the module's activations are " + std::string(to_string(*qtype_)));
      return x;
    }
    warn_if_uncalibrated(module);
    return to_quantized_activation(x.value.view(), *qtype_, input_scale_);
  }

  /// The output step: calibration, then quantization with `output_scale` (all quantized modules).
  activation<T> quantize_output(tensor<T> y, std::string_view module) {
    if (!qtype_) return y;
    if (const Calibration* c = Calibration::active())
      output_scale_ = updated_scale(output_scale_, absmax_activation_scale(y.view(), *qtype_), c->momentum());
    else
      warn_if_uncalibrated(module);
    return to_quantized_activation(y.view(), *qtype_, output_scale_);
  }

  void save(state_dict& sd, const std::string& prefix) const {
    sd.insert(prefix + "input_scale", stored_tensor::scalar(input_scale_));
    sd.insert(prefix + "output_scale", stored_tensor::scalar(output_scale_));
  }
  void load(load_context& lc, const std::string& prefix) {
    load_scalar(lc, prefix + "input_scale", input_scale_);
    load_scalar(lc, prefix + "output_scale", output_scale_);
  }

 private:
  static void load_scalar(load_context& lc, const std::string& key, T& into) {
    const stored_tensor* s = lc.take(key);
    if (!s) return;
    if (s->shape.numel() != 1)
      throw shape_error("state dict key '" + key + "' has shape " + s->shape.to_string() + ", expected []");
    into = s->to<T>(key)[0];
  }
  void warn_if_uncalibrated(std::string_view module) {
    if (warned_ || Calibration::active() || quanto::model_arith::widen(output_scale_) != 1.0f) return;
    warned_ = true;
    log(log_level::warning,
        std::string(module.empty() ? "a quantized module" : module) + ": activations are quantized to " +
            std::string(to_string(*qtype_)) +
            " with the default scale 1.0, so the model has not been calibrated and small values round to 0 "
            "(optimum-quanto#216); run a few batches inside a quanto::nn::Calibration scope first");
  }

  std::optional<qtype_id> qtype_;
  T input_scale_ = T(1.0f);
  T output_scale_ = T(1.0f);
  bool warned_ = false;
};

}  // namespace nn
QUANTO_END_NAMESPACE
