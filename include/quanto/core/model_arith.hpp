// quanto/core/model_arith.hpp: arithmetic in the model dtype with PyTorch's rounding steps.
//
// PyTorch computes an element-wise op on float16/bfloat16 tensors in float32 and rounds the result
// once to the tensor's dtype (round to nearest even); on float32 tensors it is plain float32
// arithmetic. Reproducing quanto bit for bit means doing exactly that, one op at a time, in the
// order quanto's Python code writes them. These helpers make each rounding step visible; every layer
// that must give quanto's bits (quantizers, modules, kernels' decoders, the CUDA repacker, the Eigen
// adapters) uses them as `model_arith::t_add`, `model_arith::narrow<T>`, ... (the library's own code
// in `quanto::detail` also by their plain names).
// IEEE float arithmetic is assumed: do not build code that needs bit-exactness with -ffast-math.
#pragma once

#include <cstdint>
#include <type_traits>

#include "quanto/core/config.hpp"
#include "quanto/core/float_bits.hpp"
#include "quanto/core/qtype.hpp"

QUANTO_BEGIN_NAMESPACE
namespace model_arith {

/// Exact widening of a model-dtype value to float.
template <ModelFloat T>
constexpr float widen(T x) noexcept {
  return static_cast<float>(x);
}
/// One rounding of a float result to the model dtype (the identity for float).
template <ModelFloat T>
constexpr T narrow(float x) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    if (!std::is_constant_evaluated()) return detail::opaque(x);  // no FMA across our steps
    return x;
  } else {
    return static_cast<T>(x);  // the conversion itself rounds, from a materialized float
  }
}

template <ModelFloat T>
constexpr T t_add(T a, T b) noexcept {
  return narrow<T>(widen(a) + widen(b));
}
template <ModelFloat T>
constexpr T t_sub(T a, T b) noexcept {
  return narrow<T>(widen(a) - widen(b));
}
template <ModelFloat T>
constexpr T t_div(T a, T b) noexcept {
  return narrow<T>(widen(a) / widen(b));
}
/// `tensor / python_number`: the number becomes the float opmath scalar.
template <ModelFloat T>
constexpr T t_div_scalar(T a, float b) noexcept {
  return narrow<T>(widen(a) / b);
}
template <ModelFloat T>
constexpr T t_neg(T a) noexcept {
  return narrow<T>(-widen(a));
}
template <ModelFloat T>
constexpr T t_abs(T a) noexcept {
  return narrow<T>(bits_to_float(float_to_bits(widen(a)) & 0x7fffffffu));
}

/// True when `x` is NaN or ±Inf; tests the bits, so it also works under -ffast-math.
template <ModelFloat T>
constexpr bool t_is_finite(T x) noexcept {
  return is_finite_bits(widen(x));
}

}  // namespace model_arith

namespace detail {
using model_arith::narrow;
using model_arith::t_abs;
using model_arith::t_add;
using model_arith::t_div;
using model_arith::t_div_scalar;
using model_arith::t_is_finite;
using model_arith::t_neg;
using model_arith::t_sub;
using model_arith::widen;
}  // namespace detail
QUANTO_END_NAMESPACE
