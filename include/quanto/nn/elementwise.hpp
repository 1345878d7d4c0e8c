// quanto/nn/elementwise.hpp: the parameter-free float modules an MLP and a small transformer need:
// ReLU, GELU, Softmax (PyTorch's names; a quantized input stays quantized where quanto keeps it so).
#pragma once

#include <cmath>
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
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/nn/activation.hpp"
#include "quanto/nn/concepts.hpp"
#include "quanto/nn/functional.hpp"
#include "quanto/nn/parameter.hpp"
#include "quanto/nn/state_dict.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

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
      const float f = quanto::model_arith::widen(v);
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
      if (!(quanto::model_arith::widen((*saved_)[i]) > 0.0f)) g[i] = T(0.0f);
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
        dst[i] = quanto::model_arith::narrow<T>(functional::gelu_tanh(quanto::model_arith::widen(src[i])));
    } else if constexpr (std::is_same_v<T, float>) {
      // a plain loop over contiguous floats (no narrow<float> barrier, the store rounds): it vectorises
      for (std::size_t i = 0; i < n; ++i) dst[i] = functional::gelu_erf(src[i]);
    } else {
      for (std::size_t i = 0; i < n; ++i)
        dst[i] = quanto::model_arith::narrow<T>(functional::gelu_erf(quanto::model_arith::widen(src[i])));
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
      g[i] = quanto::model_arith::narrow<T>(quanto::model_arith::widen(grad_output[i]) *
                                            functional::gelu_grad(quanto::model_arith::widen((*saved_)[i]), tanh_));
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
        const T scale = quanto::model_arith::narrow<T>(1.0f / static_cast<float>(Q::qmax));
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
        dotv += quanto::model_arith::widen(grad_output[static_cast<std::size_t>(r * n + j)]) *
                quanto::model_arith::widen((*saved_)[static_cast<std::size_t>(r * n + j)]);
      for (std::int64_t j = 0; j < n; ++j) {
        const auto i = static_cast<std::size_t>(r * n + j);
        g[i] = quanto::model_arith::narrow<T>(quanto::model_arith::widen((*saved_)[i]) *
                                              (quanto::model_arith::widen(grad_output[i]) - dotv));
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
