// quanto/nn/tree.hpp: models as a tree of named modules, chosen at run time (PyTorch's nn.Module
// tree). `module<T>` is the node interface; any type satisfying `ValueModule` goes into the tree wrapped
// in `node<M>`; containers own named child slots. `named_modules()` walks the tree in PyTorch's
// order with PyTorch's dotted names ("encoder.layer.0.attention.query"), and quantization
// replaces the module held in a slot, so code that calls a child through its slot always runs
// the current module.
//
//   struct Block : nn::module<float> {
//     nn::slot<float>& query = add("query", nn::Linear<float>(64, 64, rng));
//     nn::activation<float> forward(nn::activation<float> x) override { return query(std::move(x)); }
//     std::string_view kind() const noexcept override { return "Block"; }
//   };
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/nn/activation.hpp"
#include "quanto/nn/concepts.hpp"
#include "quanto/nn/state_dict.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

template <ModelFloat T>
class module;

/// A visitor over the trainable tensors of a tree: `f(qualified_name, value, grad)`.
template <ModelFloat T>
using parameter_callback = std::function<void(const std::string&, tensor<T>&, tensor<float>&)>;

/// What a quantized module offers at run time (the `QuantizedModule` concept, type-erased).
template <ModelFloat T>
class quantized_interface {
 public:
  virtual ~quantized_interface() = default;
  virtual std::optional<qtype_id> weight_qtype() const = 0;
  virtual std::optional<qtype_id> activation_qtype() const = 0;
  virtual T input_scale() const = 0;
  virtual T output_scale() const = 0;
  virtual bool frozen() const = 0;
  virtual void freeze() = 0;
};

/// A named place in a container that holds one module. Calling the slot runs its current module.
template <ModelFloat T>
class slot {
 public:
  slot(std::string name, std::unique_ptr<module<T>> m) : name_(std::move(name)), module_(std::move(m)) {}
  const std::string& name() const noexcept { return name_; }
  module<T>& get() const noexcept { return *module_; }
  module<T>* operator->() const noexcept { return module_.get(); }
  activation<T> operator()(activation<T> x) const { return module_->forward(std::move(x)); }
  /// Puts another module here and returns the one that was here.
  std::unique_ptr<module<T>> replace(std::unique_ptr<module<T>> m) {
    if (!m) throw value_error("slot '" + name_ + "': cannot hold a null module");
    return std::exchange(module_, std::move(m));
  }
  /// The wrapped value if this slot holds a `node<M>`; null otherwise.
  template <ValueModule M>
  M* as() const noexcept;

 private:
  std::string name_;
  std::unique_ptr<module<T>> module_;
};

/// A node of the run-time tree. Containers override `forward` (and `backward` to train) and add
/// children; leaves are `node<M>` around a `ValueModule` value.
template <ModelFloat T>
class module {
 public:
  using value_type = T;
  module() = default;
  module(const module&) = delete;
  module& operator=(const module&) = delete;
  virtual ~module() = default;

  virtual activation<T> forward(activation<T> x) = 0;
  activation<T> operator()(activation<T> x) { return forward(std::move(x)); }
  /// The input gradient, after a forward in training mode (containers chain their children).
  virtual tensor<T> backward(const tensor<T>& grad_output) {
    (void)grad_output;
    throw unsupported_error(std::string(kind()) + " has no backward");
  }
  /// The module type's name ("Linear", "QLinear", a container's own name).
  virtual std::string_view kind() const noexcept = 0;

  /// The quantized-module view, for QLinear/QConv2d/QLayerNorm leaves; null for others.
  virtual quantized_interface<T>* quantized() noexcept { return nullptr; }
  const quantized_interface<T>* quantized() const noexcept { return const_cast<module*>(this)->quantized(); }

  /// This module's own tensors (not its children's), under `prefix`.
  virtual void save_own(state_dict&, const std::string& prefix) const { (void)prefix; }
  virtual void load_own(load_context&, const std::string& prefix) { (void)prefix; }
  virtual void for_each_own_parameter(const std::string& prefix, const parameter_callback<T>& f) {
    (void)prefix;
    (void)f;
  }
  virtual void zero_grad_own() {}
  virtual void train_own(bool on) { (void)on; }

  /// For a quantizable leaf: its quantized replacement (moving the weights out of this one), or
  /// null when quanto would leave it as it is. Null for every other module.
  virtual std::unique_ptr<module<T>> make_quantized(std::optional<qtype_id> weights, const qconfig& config,
                                                    const std::string& name) {
    (void)weights;
    (void)config;
    (void)name;
    return nullptr;
  }

  const std::vector<std::unique_ptr<slot<T>>>& children() const noexcept { return children_; }
  /// The child slot called `name`; null when there is none.
  slot<T>* child(std::string_view name) const noexcept {
    for (const auto& c : children_)
      if (c->name() == name) return c.get();
    return nullptr;
  }

  /// Adds a child. Names are unique among siblings and contain no '.'.
  slot<T>& add(std::string name, std::unique_ptr<module<T>> m);
  /// Adds a `ValueModule` value as a child (wrapped in `node<M>`).
  template <ValueModule M>
  requires std::is_same_v<typename M::value_type, T> slot<T>
  &add(std::string name, M m);

 private:
  std::vector<std::unique_ptr<slot<T>>> children_;
};

/// A `ValueModule` value as a tree leaf.
template <ValueModule M>
class node final : public module<typename M::value_type>, public quantized_interface<typename M::value_type> {
 public:
  using T = typename M::value_type;
  explicit node(M m) : m_(std::move(m)) {}

  M& value() noexcept { return m_; }
  const M& value() const noexcept { return m_; }

  activation<T> forward(activation<T> x) override { return m_.forward(std::move(x)); }
  tensor<T> backward(const tensor<T>& g) override {
    if constexpr (TrainableModule<M>)
      return m_.backward(g);
    else
      return module<T>::backward(g);
  }
  std::string_view kind() const noexcept override { return M::kind; }

  quantized_interface<T>* quantized() noexcept override {
    if constexpr (QuantizedModule<M>)
      return this;
    else
      return nullptr;
  }
  std::optional<qtype_id> weight_qtype() const override {
    if constexpr (QuantizedModule<M>)
      return m_.weight_qtype();
    else
      return std::nullopt;
  }
  std::optional<qtype_id> activation_qtype() const override {
    if constexpr (QuantizedModule<M>)
      return m_.activation_qtype();
    else
      return std::nullopt;
  }
  T input_scale() const override {
    if constexpr (QuantizedModule<M>)
      return m_.input_scale();
    else
      return T(1.0f);
  }
  T output_scale() const override {
    if constexpr (QuantizedModule<M>)
      return m_.output_scale();
    else
      return T(1.0f);
  }
  bool frozen() const override {
    if constexpr (QuantizedModule<M>)
      return m_.frozen();
    else
      return false;
  }
  void freeze() override {
    if constexpr (QuantizedModule<M>) m_.freeze();
  }

  void save_own(state_dict& sd, const std::string& prefix) const override { m_.save(sd, prefix); }
  void load_own(load_context& lc, const std::string& prefix) override { m_.load(lc, prefix); }
  void for_each_own_parameter(const std::string& prefix, const parameter_callback<T>& f) override {
    if constexpr (requires { m_.for_each_parameter([](std::string_view, tensor<T>&, tensor<float>&) {}); })
      m_.for_each_parameter(
          [&](std::string_view n, tensor<T>& v, tensor<float>& g) { f(prefix + std::string(n), v, g); });
  }
  void zero_grad_own() override {
    if constexpr (TrainableModule<M>) m_.zero_grad();
  }
  void train_own(bool on) override { m_.train(on); }

  std::unique_ptr<module<T>> make_quantized(std::optional<qtype_id> weights, const qconfig& config,
                                            const std::string& name) override {
    if constexpr (QuantizableModule<M>) {
      std::unique_ptr<module<T>> out;
      qmodule_traits<M>::quantize(std::move(m_), weights, config, [&]<class QM>(QM&& qm) {
        qm.set_name(name);
        out = std::make_unique<node<std::decay_t<QM>>>(std::forward<QM>(qm));
      });
      return out;
    } else {
      return nullptr;
    }
  }

 private:
  M m_;
};

template <ModelFloat T>
template <ValueModule M>
M* slot<T>::as() const noexcept {
  auto* n = dynamic_cast<node<M>*>(module_.get());
  return n ? &n->value() : nullptr;
}

template <ModelFloat T>
slot<T>& module<T>::add(std::string name, std::unique_ptr<module<T>> m) {
  if (!m) throw value_error("add: module '" + name + "' is null");
  if (name.empty() || name.find('.') != std::string::npos)
    throw value_error("add: a child name must be non-empty and contain no '.', got '" + name + "'");
  if (child(name)) throw value_error("add: there is already a child called '" + name + "'");
  children_.push_back(std::make_unique<slot<T>>(std::move(name), std::move(m)));
  return *children_.back();
}

template <ModelFloat T>
template <ValueModule M>
requires std::is_same_v<typename M::value_type, T> slot<T>
&module<T>::add(std::string name, M m) {
  return add(std::move(name), std::unique_ptr<module<T>>(std::make_unique<node<M>>(std::move(m))));
}

/// Children run in order ("0", "1", ... as PyTorch's nn.Sequential names them).
template <ModelFloat T = float>
class Sequential : public module<T> {
 public:
  Sequential() = default;
  template <class... Ms>
  explicit Sequential(Ms&&... ms) {
    (push(std::forward<Ms>(ms)), ...);
  }
  template <class M>
  slot<T>& push(M&& m) {
    const std::string name = std::to_string(this->children().size());
    if constexpr (std::is_convertible_v<M, std::unique_ptr<module<T>>>)
      return this->add(name, std::unique_ptr<module<T>>(std::forward<M>(m)));
    else
      return this->add(name, std::forward<M>(m));
  }
  activation<T> forward(activation<T> x) override {
    for (const auto& c : this->children()) x = (*c)(std::move(x));
    return x;
  }
  tensor<T> backward(const tensor<T>& grad_output) override {
    tensor<T> g = grad_output;
    const auto& cs = this->children();
    for (auto it = cs.rbegin(); it != cs.rend(); ++it) g = (*it)->get().backward(g);
    return g;
  }
  std::string_view kind() const noexcept override { return "Sequential"; }
};

/// One entry of `named_modules`: the dotted name, the module, and the slot holding it (null for
/// the root).
template <ModelFloat T>
struct named_module {
  std::string name;
  module<T>* target;
  slot<T>* holder;
};

/// Every module of the tree with its name, in PyTorch's `named_modules()` order (pre-order; the
/// root is "").
template <ModelFloat T>
std::vector<named_module<T>> named_modules(module<T>& root) {
  std::vector<named_module<T>> out;
  struct walker {
    std::vector<named_module<T>>& out;
    void operator()(module<T>& m, const std::string& name, slot<T>* holder) {
      out.push_back({name, &m, holder});
      for (const auto& c : m.children()) (*this)(c->get(), name.empty() ? c->name() : name + "." + c->name(), c.get());
    }
  };
  walker{out}(root, "", nullptr);
  return out;
}

/// The module called `name` ("" is the root); null when there is none.
template <ModelFloat T>
module<T>* find_module(module<T>& root, std::string_view name) {
  for (const auto& e : named_modules(root))
    if (e.name == name) return e.target;
  return nullptr;
}

/// Switches training mode (caching the inputs backward needs) on every module of the tree.
template <ModelFloat T>
void train(module<T>& root, bool on = true) {
  for (const auto& e : named_modules(root)) e.target->train_own(on);
}

/// Calls `f(name, value, grad)` for every trainable tensor, with names such as "0.weight".
template <ModelFloat T>
void for_each_parameter(module<T>& root, const parameter_callback<T>& f) {
  for (const auto& e : named_modules(root)) e.target->for_each_own_parameter(e.name.empty() ? "" : e.name + ".", f);
}

template <ModelFloat T>
void zero_grad(module<T>& root) {
  for (const auto& e : named_modules(root)) e.target->zero_grad_own();
}

}  // namespace nn
QUANTO_END_NAMESPACE
