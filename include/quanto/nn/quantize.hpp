// quanto/nn/quantize.hpp: the model-level workflow of optimum-quanto on the run-time tree:
// `quantize` (replace modules by name, with fnmatch include/exclude patterns), `freeze`,
// `quantization_map`, `state_dict` / `load_state_dict` with quanto's keys, and `requantize`.
//
//   nn::quantize(model, {.weights = qint4{}, .activations = qint8{}, .exclude = "lm_head"});
//   { nn::Calibration calib{0.9}; for (auto& batch : samples) model.forward(batch); }
//   nn::freeze(model);
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/quantization_map.hpp"
#include "quanto/nn/concepts.hpp"
#include "quanto/nn/fnmatch.hpp"
#include "quanto/nn/qmodules.hpp"
#include "quanto/nn/state_dict.hpp"
#include "quanto/nn/tree.hpp"
#include "quanto/quantize/optimizers.hpp"
#include "quanto/quantize/runtime.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

/// One fnmatch pattern or a list of them (quanto accepts a string or a list).
struct patterns {
  std::vector<std::string> list;
  patterns() = default;
  patterns(const char* p) : list{p} {}             // NOLINT: implicit on purpose
  patterns(std::string p) : list{std::move(p)} {}  // NOLINT
  patterns(std::initializer_list<std::string> ps) : list(ps) {}
  patterns(std::vector<std::string> ps) : list(std::move(ps)) {}  // NOLINT
  bool empty() const noexcept { return list.empty(); }
  bool any_matches(std::string_view name) const noexcept { return fnmatch_any(name, list); }
};

/// A qtype given as a type (`qint4{}`), an id, a name ("qint4", "qfloat8", "none"), or nothing.
struct qtype_arg {
  std::optional<qtype_id> id;
  qtype_arg() = default;
  qtype_arg(std::nullopt_t) {}      // NOLINT
  qtype_arg(qtype_id q) : id(q) {}  // NOLINT
  template <QType Q>
  qtype_arg(Q) : id(id_of<Q>()) {}    // NOLINT
  qtype_arg(std::string_view name) {  // NOLINT
    if (name != "none") id = qtype_from_name(name);
  }
  qtype_arg(const char* name) : qtype_arg(std::string_view(name)) {}         // NOLINT
  qtype_arg(const std::string& name) : qtype_arg(std::string_view(name)) {}  // NOLINT
};

/// An optimizer given as a policy value (`hqq_optimizer{}`), a name ("absmax", "max", "hqq"), or
/// nothing (quanto's default for the weight qtype).
struct optimizer_arg {
  optimizer_choice choice{};
  optimizer_arg() = default;
  optimizer_arg(absmax_optimizer o) : choice(o) {}  // NOLINT
  optimizer_arg(max_optimizer o) : choice(o) {}     // NOLINT
  optimizer_arg(hqq_optimizer o) : choice(o) {}     // NOLINT
  optimizer_arg(optimizer_id id)                    // NOLINT
      : choice(visit_optimizer(id, [](auto o) -> optimizer_choice { return o; })) {}
  optimizer_arg(std::string_view name) : optimizer_arg(optimizer_from_name(name)) {}  // NOLINT
  optimizer_arg(const char* name) : optimizer_arg(std::string_view(name)) {}          // NOLINT
  optimizer_arg(const std::string& name) : optimizer_arg(std::string_view(name)) {}   // NOLINT
};

/// The arguments of quanto's `quantize(model, weights, activations, optimizer, include, exclude)`.
struct quantize_spec {
  qtype_arg weights = {};
  qtype_arg activations = {};
  optimizer_arg optimizer = {};
  patterns include = {};  ///< when not empty, only modules whose name matches one of these
  patterns exclude = {};  ///< modules whose name matches one of these are left as they are
};

/// Whether `quantize` with `spec` would consider the module called `name` (quanto's rule).
inline bool selected(const quantize_spec& spec, std::string_view name) {
  if (!spec.include.empty() && !spec.include.any_matches(name)) return false;
  return !(!spec.exclude.empty() && spec.exclude.any_matches(name));
}

/// Replaces every selected Linear / Conv2d (and LayerNorm, when activations are given) by its
/// quantized module, named as in the tree, in the dynamic state (call `freeze` afterwards, or
/// train first). Modules already quantized, and all other module types, are left alone. The root
/// itself is never replaced (it is the container the caller holds). The spec is validated before
/// any module changes (unsupported_error for an optimizer that does not fit the weights, or for
/// non-8-bit activations). Returns the number of modules replaced.
template <ModelFloat T>
std::size_t quantize(module<T>& model, const quantize_spec& spec) {
  const qconfig config{spec.activations.id, spec.optimizer.choice};
  if (config.activations) (void)visit_activation_qtype(*config.activations, [](auto) { return 0; });
  if (spec.weights.id)
    visit_qtype(*spec.weights.id, [&]<class Q>(Q) { check_optimizer<Q>(config.optimizer); });
  else if (config.optimizer.index() != 0)
    throw unsupported_error("quantize: an optimizer was given without a weight qtype");
  std::size_t replaced = 0;
  for (const named_module<T>& e : named_modules(model)) {
    if (!e.holder || e.target->quantized() || !selected(spec, e.name)) continue;
    if (auto q = e.target->make_quantized(spec.weights.id, config, e.name)) {
      e.holder->replace(std::move(q));
      ++replaced;
    }
  }
  return replaced;
}

/// quanto's `freeze(model)`: every quantized module stores its weight quantized and drops the float
/// weight.
template <ModelFloat T>
void freeze(module<T>& model) {
  for (const named_module<T>& e : named_modules(model))
    if (auto* q = e.target->quantized()) q->freeze();
}

/// The plain map types live in core/quantization_map.hpp (io reads and writes them without the
/// module layer); these names are the ones nn has always offered.
using quanto::qmap_entry;
using quanto::quantization_map_t;

/// quanto's `quantization_map(model)`: every quantized module, in `named_modules` order.
template <ModelFloat T>
quantization_map_t quantization_map(module<T>& model) {
  const auto name_of = [](std::optional<qtype_id> q) { return q ? std::string(to_string(*q)) : std::string("none"); };
  quantization_map_t out;
  for (const named_module<T>& e : named_modules(model))
    if (const auto* q = e.target->quantized())
      out.push_back({e.name, name_of(q->weight_qtype()), name_of(q->activation_qtype())});
  return out;
}

/// The tree's tensors under PyTorch's keys: each module's own (quantized modules: quanto's
/// flattened weight keys, then `bias`, `input_scale`, `output_scale`), in `named_modules` order.
template <ModelFloat T>
state_dict get_state_dict(module<T>& model) {
  state_dict sd;
  for (const named_module<T>& e : named_modules(model)) e.target->save_own(sd, e.name.empty() ? "" : e.name + ".");
  return sd;
}

/// Loads `sd` into the tree (PyTorch's `load_state_dict`). A frozen quantized module given a float
/// `weight` becomes dynamic; a dynamic one given quantized keys becomes frozen with those exact
/// values. `strict`: missing or unexpected keys are a state_dict_error (after loading what matched).
template <ModelFloat T>
load_result load_state_dict(module<T>& model, const state_dict& sd, bool strict = true) {
  load_context lc(sd);
  for (const named_module<T>& e : named_modules(model)) e.target->load_own(lc, e.name.empty() ? "" : e.name + ".");
  load_result r = lc.result();
  if (strict && !r.ok()) {
    std::string msg = "load_state_dict:";
    const auto list = [&](const char* what, const std::vector<std::string>& keys) {
      if (keys.empty()) return;
      msg += std::string(" ") + what + ":";
      for (std::size_t i = 0; i < keys.size() && i < 8; ++i) msg += " '" + keys[i] + "'";
      if (keys.size() > 8) msg += " (" + std::to_string(keys.size()) + " in all)";
    };
    list("missing keys", r.missing_keys);
    list("unexpected keys", r.unexpected_keys);
    throw state_dict_error(msg);
  }
  return r;
}

/// quanto's `requantize(model, state_dict, quantization_map)`: quantizes each module the map names
/// with its qtypes and the default optimizer, then loads the state dict (non-strict, as quanto).
/// A map entry naming no module, or one that cannot be quantized, is a state_dict_error.
template <ModelFloat T>
load_result requantize(module<T>& model, const state_dict& sd, const quantization_map_t& qmap) {
  // one walk of the tree: replacing a leaf in its slot leaves every other slot where it was
  std::map<std::string, slot<T>*, std::less<>> slots;
  for (const named_module<T>& e : named_modules(model))
    if (e.holder) slots.emplace(e.name, e.holder);
  for (const qmap_entry& q : qmap) {
    const qtype_arg weights(std::string_view{q.weights}), acts(std::string_view{q.activations});
    const auto it = slots.find(q.name);
    if (it == slots.end())
      throw state_dict_error("quantization map: no module called '" + q.name + "' (or it is the root)");
    slot<T>* holder = it->second;
    if (holder->get().quantized()) continue;
    auto m = holder->get().make_quantized(weights.id, qconfig{acts.id, {}}, q.name);
    if (!m)
      throw state_dict_error("quantization map: module '" + q.name + "' (" + std::string(holder->get().kind()) +
                             ") cannot be quantized with weights " + q.weights + ", activations " + q.activations);
    holder->replace(std::move(m));
  }
  return load_state_dict(model, sd, false);
}

/// A one-line-per-module description of the tree (PyTorch's repr, in spirit).
template <ModelFloat T>
std::string describe(module<T>& model) {
  std::string out;
  for (const named_module<T>& e : named_modules(model)) {
    const std::size_t depth =
        e.name.empty() ? 0 : 1 + static_cast<std::size_t>(std::count(e.name.begin(), e.name.end(), '.'));
    out += std::string(2 * depth, ' ') + (e.name.empty() ? std::string("(root)") : e.name) + ": " +
           std::string(e.target->kind());
    if (const auto* q = e.target->quantized()) {
      out += " [weights " + std::string(q->weight_qtype() ? to_string(*q->weight_qtype()) : "none") + ", activations " +
             std::string(q->activation_qtype() ? to_string(*q->activation_qtype()) : "none") +
             (q->frozen() ? ", frozen]" : ", dynamic]");
    }
    out += "\n";
  }
  return out;
}

}  // namespace nn
QUANTO_END_NAMESPACE
