// tests/nn/nn_support.hpp: shared helpers of the nn tests: random tensors, quanto's
// `assert_similar` (1 - cosine), and quanto's test MLP as a run-time tree.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>

#include <quanto/nn.hpp>

#include "nn_instances.hpp"

namespace nt {
using namespace quanto;

/// Uniform values in [lo, hi) (quanto's `random_tensor` draws from [-1, 1)).
template <class T = float>
tensor<T> random(shape s, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  tensor<T> t(s);
  for (auto& v : t) v = quanto::model_arith::narrow<T>(u(rng));
  return t;
}

/// 1 - cos(a, b) over the flattened tensors, in double.
template <class T>
double one_minus_cos(const tensor<T>& a, const tensor<T>& b) {
  EXPECT_EQ(a.shape(), b.shape());
  double d = 0, na = 0, nb = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = quanto::model_arith::widen(a[i]), y = quanto::model_arith::widen(b[i]);
    d += x * y;
    na += x * x;
    nb += y * y;
  }
  if (na == 0 && nb == 0) return 0.0;
  return 1.0 - d / std::sqrt(na * nb);
}

/// max|a - b| / max|a| (quanto's check_weight_qtensor_linear bound).
template <class T>
double rel_max_error(const tensor<T>& a, const tensor<T>& b) {
  double e = 0, m = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = quanto::model_arith::widen(a[i]), y = quanto::model_arith::widen(b[i]);
    e = std::max(e, std::abs(x - y));
    m = std::max(m, std::abs(x));
  }
  return m == 0 ? e : e / m;
}

/// quanto's assert_similar bound for a dtype: atol = finfo.resolution, rtol as quanto's helper.
template <class T>
double similar_bound(double atol = -1) {
  if constexpr (std::is_same_v<T, float>)
    return (atol < 0 ? 1e-6 : atol) + 1e-5;
  else if constexpr (std::is_same_v<T, float16>)
    return (atol < 0 ? 1e-3 : atol) + 1e-3;
  else
    return (atol < 0 ? 1e-2 : atol) + 1e-1;
}

/// quanto's tests/helpers MLP: relu(input_layer) -> relu(mid_layer) -> softmax(output_layer).
template <class T = float>
struct Mlp : nn::module<T> {
  nn::slot<T>& input_layer;
  nn::slot<T>& mid_layer;
  nn::slot<T>& output_layer;
  nn::ReLU<T> relu1, relu2;
  nn::Softmax<T> softmax;

  Mlp(std::int64_t in, std::int64_t out, std::int64_t hidden, std::uint64_t seed)
      : Mlp(in, out, hidden, std::mt19937_64(seed)) {}
  Mlp(std::int64_t in, std::int64_t out, std::int64_t hidden, std::mt19937_64 rng)
      : input_layer(this->add("input_layer", nn::Linear<T>(in, hidden, rng))),
        mid_layer(this->add("mid_layer", nn::Linear<T>(hidden, hidden, rng))),
        output_layer(this->add("output_layer", nn::Linear<T>(hidden, out, rng))) {}

  nn::activation<T> forward(nn::activation<T> x) override {
    x = relu1.forward(input_layer(std::move(x)));
    x = relu2.forward(mid_layer(std::move(x)));
    return softmax.forward(output_layer(std::move(x)));
  }
  std::string_view kind() const noexcept override { return "MLP"; }
};

}  // namespace nt
