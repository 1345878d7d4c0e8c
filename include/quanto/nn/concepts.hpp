// quanto/nn/concepts.hpp: what a module is, what makes one quantizable, and what a quantized module
// offers. Modules are plain value types (`Linear<float>`, `QLinear<qint4>`), composed statically by
// users or wrapped into the run-time tree (nn/tree.hpp); these concepts are the contract both use.
#pragma once

#include <concepts>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "quanto/core/config.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/nn/activation.hpp"
#include "quanto/nn/state_dict.hpp"
#include "quanto/quantize/optimizers.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

/// A module: maps an activation to an activation in its model dtype `value_type`, and can save and
/// load its tensors under PyTorch's key names.
/// - `forward` is what a model runs; taking and returning `activation<T>` lets quantized codes
///   travel between quantized modules as quanto's ActivationQBytesTensor does.
/// - `save` / `load` give the state dict (keys relative to a prefix such as "encoder.0.").
/// - `train(bool)` switches the caching of inputs that `backward` needs (off: inference keeps no
///   copies).
/// - `kind` names the module type in messages and printed trees.
template <class M>
concept ValueModule = ModelFloat<typename M::value_type> &&
    requires(M& m, const M& cm, activation<typename M::value_type> x, state_dict& sd, load_context& lc,
             const std::string& prefix) {
  { M::kind } -> std::convertible_to<std::string_view>;
  { m.forward(std::move(x)) } -> std::same_as<activation<typename M::value_type>>;
  cm.save(sd, prefix);
  m.load(lc, prefix);
  m.train(true);
};

/// Deprecated: the old name of `ValueModule`, which differed from the tree's `module<T>` by case only.
/// Kept for one release.
template <class M>
concept Module = ValueModule<M>;

/// Called as `f(name, value, grad)` for each trainable tensor: `grad` is float32, sized like
/// `value` once a backward has run (empty before).
template <class F, class T>
concept ParameterVisitor = requires(F& f, std::string_view name, tensor<T>& value, tensor<float>& grad) {
  f(name, value, grad);
};

/// A module that can learn: `backward(grad_output)` returns the gradient of its input and
/// accumulates the gradients of its parameters (after a forward in training mode).
template <class M>
concept TrainableModule = ValueModule<M> && requires(M& m, const tensor<typename M::value_type>& g) {
  { m.backward(g) } -> std::same_as<tensor<typename M::value_type>>;
  m.zero_grad();
};

/// The optimizer a quantized module re-quantizes its weight with: quanto's default for the qtype
/// (absmax for 8-bit, max for qint2/qint4), or one chosen explicitly.
using optimizer_choice = variant_of_t<concat_t<type_list<std::monostate>, optimizers>>;

/// How a quantized module quantizes, beyond its weight qtype: its activation qtype (none: weights
/// only) and its weight optimizer.
struct qconfig {
  std::optional<qtype_id> activations = std::nullopt;
  optimizer_choice optimizer = {};
};

/// The registry from a float module type to its quantized replacement (quanto's
/// `nn.Linear → QLinear`, `nn.Conv2d → QConv2d`, `nn.LayerNorm → QLayerNorm`). A specialisation
/// provides `quantizable = true` and
/// `template <class F> static void quantize(M&& m, std::optional<qtype_id> weights, const qconfig&, F&& emit)`,
/// which calls `emit(QM&&)` with the quantized module, or does not call it when quanto would not
/// replace the module (QLayerNorm without activations).
template <class M>
struct qmodule_traits {
  static constexpr bool quantizable = false;
};

/// A module quanto replaces when it quantizes a model.
template <class M>
concept QuantizableModule = ValueModule<M> && qmodule_traits<M>::quantizable;

/// A quantized module (quanto's QModuleMixin): its qtypes (for the quantization map), its
/// per-tensor activation scales (1.0 until calibrated) and `freeze()`, after which the weight is
/// stored quantized and the float weight is gone.
template <class M>
concept QuantizedModule = ValueModule<M> && requires(M& m, const M& cm) {
  { cm.weight_qtype() } -> std::same_as<std::optional<qtype_id>>;
  { cm.activation_qtype() } -> std::same_as<std::optional<qtype_id>>;
  { cm.input_scale() } -> std::same_as<typename M::value_type>;
  { cm.output_scale() } -> std::same_as<typename M::value_type>;
  { cm.frozen() } -> std::same_as<bool>;
  m.freeze();
  m.set_name(std::string{});
};

}  // namespace nn
QUANTO_END_NAMESPACE
