// quanto/nn/activation.hpp: what flows between modules. An `activation<T>` is a float tensor in
// the model dtype, and, when a quantized module produced it, also the 8-bit codes and the
// per-tensor scale it was quantized with (optimum-quanto's ActivationQBytesTensor). The float
// values are then exactly `scale * code`, so modules that do not care read `value`; a QLinear
// with the same activation qtype reuses the codes as quanto does (no second quantization).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/quantize/qtensor.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

namespace detail {
template <class Q, class T, bool = ByteQType<Q>>
struct qactivation_entry {  // qint2/qint4: no activation type
  using type = type_list<>;
};
template <class Q, class T>
struct qactivation_entry<Q, T, true> {
  using type = type_list<qactivation<Q, T>>;
};
template <class T, class List>
struct qactivations_of;
template <class T, class... Q>
struct qactivations_of<T, type_list<Q...>> {
  using type = concat_t<type_list<std::monostate>, typename qactivation_entry<Q, T>::type...>;
};
}  // namespace detail

/// The quantized form of an activation: one of the 8-bit qtypes (quanto allows no other).
template <ModelFloat T>
using any_qactivation = variant_of_t<typename detail::qactivations_of<T, qtypes>::type>;

/// Calls `f(Q{})` for an 8-bit qtype id; qint2/qint4 are an unsupported_error (quanto: "only
/// 8-bit activations are supported").
template <class F>
decltype(auto) visit_activation_qtype(qtype_id id, F&& f) {
  return visit_qtype(id, [&]<class Q>(Q q) -> decltype(std::forward<F>(f)(qint8{})) {
    if constexpr (ByteQType<Q>)
      return std::forward<F>(f)(q);
    else
      throw unsupported_error("activations are quantized to 8-bit qtypes only (qint8, qfloat8*), not " +
                              std::string(Q::name));
  });
}

/// A tensor flowing through a model (see the file comment). Converts from `tensor<T>`.
template <ModelFloat T>
struct activation {
  tensor<T> value;               ///< the float values (dequantized when quantized)
  any_qactivation<T> quantized;  ///< monostate unless a quantized module produced it

  activation() = default;
  activation(tensor<T> v) : value(std::move(v)) {}  // NOLINT: implicit on purpose
  activation(tensor<T> v, any_qactivation<T> q) : value(std::move(v)), quantized(std::move(q)) {}

  const quanto::shape& shape() const noexcept { return value.shape(); }
  bool is_quantized() const noexcept { return quantized.index() != 0; }
  /// The qtype of the codes, if quantized.
  std::optional<qtype_id> qtype() const noexcept {
    return std::visit(
        []<class A>(const A&) -> std::optional<qtype_id> {
          if constexpr (std::is_same_v<A, std::monostate>)
            return std::nullopt;
          else
            return id_of<typename A::qtype>();
        },
        quantized);
  }
  /// The per-tensor scale of the codes (state_error when not quantized).
  T scale() const {
    return std::visit(
        []<class A>(const A& a) -> T {
          if constexpr (std::is_same_v<A, std::monostate>)
            throw state_error("the activation is not quantized");
          else
            return a.scale;
        },
        quantized);
  }
  /// The float values, dropping the codes (what an op that does not keep quantization returns).
  tensor<T> take_value() && { return std::move(value); }
};

/// quanto's `quantize_activation(x, qtype, scale)` with the values dequantized alongside.
/// NaN or Inf in `x` is a value_error.
template <ByteQType Q, ModelFloat T>
activation<T> to_quantized_activation(tensor_view<const T> x, T scale) {
  qactivation<Q, T> q = quanto::quantize_activation<Q>(x, scale);
  tensor<T> values = q.dequantize();
  return {std::move(values), any_qactivation<T>(std::move(q))};
}

/// The same with the qtype chosen at run time (8-bit qtypes only).
template <ModelFloat T>
activation<T> to_quantized_activation(tensor_view<const T> x, qtype_id qtype, T scale) {
  return visit_activation_qtype(qtype, [&]<class Q>(Q) { return to_quantized_activation<Q>(x, scale); });
}

/// quanto's `absmax_scale(x, qtype)`: max|x| / qmax, in the model dtype (the per-batch statistic
/// calibration records).
template <ModelFloat T>
T absmax_activation_scale(tensor_view<const T> x, qtype_id qtype) {
  return visit_activation_qtype(qtype, [&]<class Q>(Q) { return activation_scale<Q>(x); });
}

}  // namespace nn
QUANTO_END_NAMESPACE
