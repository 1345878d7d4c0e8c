// quanto/nn/parameter.hpp: what the float modules' implementations share: a trainable tensor with
// its gradient, the float32 view of a model-dtype buffer, reading and writing state-dict tensors,
// PyTorch's default initialisation.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/nn/functional.hpp"
#include "quanto/nn/state_dict.hpp"

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
  for (auto& v : t) v = quanto::model_arith::narrow<T>(u(rng));
  return t;
}

inline void require_saved(bool saved, std::string_view kind) {
  if (!saved)
    throw state_error(std::string(kind) +
                      ": backward() needs a forward() in training mode first (call train(true) before the forward)");
}

}  // namespace detail
}  // namespace nn
QUANTO_END_NAMESPACE
