// tests/support/random_weight.hpp: the weights the kernel tests (CPU and GPU) quantize: normal
// values with a few outliers, like a trained layer, from a seed.
#pragma once

#include <cstdint>
#include <random>

#include <quanto/core/tensor.hpp>

namespace quanto_test {

/// [n, k] values ~ N(0, 0.05), every 97th element (from the 3rd) scaled by 6: an outlier per row
/// or so, which sets the scale of its group.
template <class T>
quanto::tensor<T> random_weight(std::int64_t n, std::int64_t k, unsigned seed) {
  quanto::tensor<T> w(quanto::shape{n, k});
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 0.05f);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = T(i % 97 == 3 ? 6.0f * d(rng) : d(rng));
  return w;
}

}  // namespace quanto_test
