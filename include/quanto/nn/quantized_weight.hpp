// quanto/nn/quantized_weight.hpp: the weight of a quantized module (QLinear, QConv2d), dynamic or
// frozen, and the check that an optimizer fits a weight qtype.
//
// - dynamic (after quantize, before freeze): the float weight is kept and trained; every forward
//   re-quantizes it with the module's optimizer and group size and packs it into the kernel layout;
// - frozen (`freeze()`): the weight is quantized once, only the kernel layout is kept (it converts
//   back to quanto's file layout bit for bit), and the float weight is freed.
#pragma once

#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/shape.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/kernels/layout.hpp"
#include "quanto/nn/concepts.hpp"
#include "quanto/nn/layers.hpp"
#include "quanto/quantize/qtensor.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

/// Throws unsupported_error when `opt` does not fit qtype Q (quanto: "AbsmaxOptimizer is only
/// for 8-bit weights", "an affine optimizer is required for qint2/qint4").
template <QType Q>
void check_optimizer(const optimizer_choice& opt) {
  std::visit(
      []<class O>(const O&) {
        if constexpr (!std::is_same_v<O, std::monostate>) {
          if constexpr (!OptimizerFor<O, Q>)
            throw unsupported_error(std::string("the ") + std::string(O::name) + " optimizer cannot quantize " +
                                    std::string(Q::name) + " weights (" +
                                    (Q::bits == 8 ? "8-bit weights use absmax" : "qint2/qint4 weights use max or hqq") +
                                    ")");
        }
      },
      opt);
}

namespace detail {

/// A module's weight, dynamic or frozen (see the file comment). Shared by QLinear and QConv2d.
template <QType Q, ModelFloat T>
class quantized_weight {
 public:
  using file_weight = qweight_t<Q, T, default_scheme_t<Q>>;
  using packed_type = kernels::packed_weight<Q, T>;

  quantized_weight(parameter<T> weight, optimizer_choice optimizer)
      : shape_(weight.value.shape()), float_(std::move(weight)), optimizer_(optimizer) {
    check_optimizer<Q>(optimizer_);
  }

  const quanto::shape& shape() const noexcept { return shape_; }
  bool frozen() const noexcept { return packed_.has_value(); }

  /// The weight in quanto's file layout: quantized now (dynamic) or read back (frozen).
  file_weight quantized() const {
    if (packed_) return kernels::unpack_weight(*packed_);
    return std::visit(
        [&]<class O>(const O& opt) -> file_weight {
          if constexpr (std::is_same_v<O, std::monostate>)
            return quantize_weight<Q>(float_->value.view());
          else if constexpr (OptimizerFor<O, Q>)
            return quantize_weight<Q>(float_->value.view(), default_scheme_t<Q>{}, opt);
          else
            throw unsupported_error("unreachable: optimizer checked at construction");
        },
        optimizer_);
  }

  /// The kernel layout for a forward: the frozen one, or `scratch` filled from a fresh
  /// quantization (whose dequantized values go to `dequantized` when asked, for a backward).
  const packed_type& for_forward(std::optional<packed_type>& scratch, std::vector<float>* dequantized) const {
    if (packed_) {
      if (dequantized) *dequantized = functional::to_f32(kernels::unpack_weight(*packed_).dequantize().view());
      return *packed_;
    }
    const file_weight q = quantized();
    if (dequantized) *dequantized = functional::to_f32(q.dequantize().view());
    scratch.emplace(kernels::pack_weight(q));
    return *scratch;
  }

  /// Quantizes once, keeps the kernel layout and frees the float weight. Idempotent.
  void freeze() {
    if (packed_) return;
    packed_.emplace(kernels::pack_weight(quantized()));
    float_.reset();
  }

  /// The float weight, trainable before freeze (null after).
  parameter<T>* float_parameter() noexcept { return float_ ? &*float_ : nullptr; }
  const parameter<T>* float_parameter() const noexcept { return float_ ? &*float_ : nullptr; }
  const packed_type* packed() const noexcept { return packed_ ? &*packed_ : nullptr; }

  /// Bytes held for the weight: the float weight (and its gradient) or the kernel layout.
  std::size_t bytes() const noexcept {
    if (packed_)
      return static_cast<std::size_t>(packed_->codes.size() + (packed_->scale.size() + packed_->shift.size()) * 4);
    return float_ ? float_->value.size() * sizeof(T) + float_->grad.size() * sizeof(float) : 0;
  }

  /// quanto's keys: `weight` (dynamic), or `weight._data` + `weight._scale` (8-bit),
  /// `weight._data._data` + `weight._scale` + `weight._shift` (qint2/qint4).
  void save(state_dict& sd, const std::string& prefix) const {
    if (!packed_) {
      sd.insert(prefix + "weight", stored_tensor::from(float_->value));
      return;
    }
    const file_weight q = quantized();
    if constexpr (ByteQType<Q>) {
      sd.insert(prefix + "weight._data", stored_tensor::from(q.data));
      sd.insert(prefix + "weight._scale", stored_tensor::from(q.scale));
    } else {
      sd.insert(prefix + "weight._data._data", stored_tensor::from(q.packed));
      sd.insert(prefix + "weight._scale", stored_tensor::from(q.scale));
      sd.insert(prefix + "weight._shift", stored_tensor::from(q.shift));
    }
  }

  /// Reads either form: a float `weight` makes the module dynamic again; quantized keys freeze it
  /// with those exact values (validated: shapes and dtypes must be what quanto writes).
  void load(load_context& lc, const std::string& prefix) {
    if (lc.has(prefix + "weight")) {
      parameter<T> p{tensor<T>(shape_), {}};
      load_tensor(lc, prefix + "weight", p.value, shape_);
      float_ = std::move(p);
      packed_.reset();
      return;
    }
    if constexpr (ByteQType<Q>) {
      const stored_tensor* data = lc.take(prefix + "weight._data");
      const stored_tensor* scale = lc.take(prefix + "weight._scale");
      if (!data || !scale) return;
      file_weight w;
      w.data = data->to<typename Q::storage>(prefix + "weight._data");
      w.scale = scale->to<T>(prefix + "weight._scale");
      w.axis = w.scale.rank() == 0 ? qaxis::none : qaxis::first;
      require_shape(w.data.shape(), prefix + "weight._data");
      w.validate();
      adopt(std::move(w));
    } else {
      const stored_tensor* data = lc.take(prefix + "weight._data._data");
      const stored_tensor* scale = lc.take(prefix + "weight._scale");
      const stored_tensor* shift = lc.take(prefix + "weight._shift");
      if (!data || !scale || !shift) return;
      if (shift->dtype == quanto::dtype::u8 || shift->dtype == quanto::dtype::i8)
        throw unsupported_error("state dict key '" + prefix +
                                "weight._shift' holds an integer zero-point (written on Intel XPU); only float shifts "
                                "are supported");
      file_weight w;
      w.packed = data->to<std::uint8_t>(prefix + "weight._data._data");
      w.scale = scale->to<T>(prefix + "weight._scale");
      w.shift = shift->to<T>(prefix + "weight._shift");
      w.original_shape = shape_;
      w.axis = qaxis::first;
      w.group_size = default_group_size(shape_);
      w.validate();
      adopt(std::move(w));
    }
  }

 private:
  void require_shape(const quanto::shape& got, const std::string& key) const {
    if (!(got == shape_))
      throw shape_error("state dict key '" + key + "' has shape " + got.to_string() + ", expected " +
                        shape_.to_string());
  }
  void adopt(const file_weight& w) {
    packed_.emplace(kernels::pack_weight(w));
    float_.reset();
  }

  quanto::shape shape_;
  std::optional<parameter<T>> float_;
  std::optional<packed_type> packed_;
  optimizer_choice optimizer_;
};

}  // namespace detail
}  // namespace nn
QUANTO_END_NAMESPACE
