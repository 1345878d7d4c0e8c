// tests/support/correlated_inputs.hpp: calibration rows whose features are strongly correlated
// (a few latent factors mixed into every feature, per-feature gains over orders of magnitude, a
// little noise): the inputs on which GPTQ's error feedback beats round-to-nearest. Shared by the
// GPTQ tests and bench_gptq.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

namespace quanto_test {

/// Fills x[0 .. n*k) with n rows of k features: feature j of a row is
/// gain_j * (Σ_f z_f · mix_fj + 0.1 · noise), z a fresh normal vector of `factors` latent values per
/// row. The mixing and the gains (gain_j = exp(gain_sigma · normal)) are drawn from `mixing` first,
/// then the rows from `rows` (which may be the same engine), all through one normal distribution.
inline void fill_correlated(float* x, std::int64_t n, std::int64_t k, std::int64_t factors, float gain_sigma,
                            std::mt19937& mixing, std::mt19937& rows) {
  std::normal_distribution<float> nd;
  std::vector<float> mix(static_cast<std::size_t>(factors * k)), gain(static_cast<std::size_t>(k));
  for (auto& v : mix) v = nd(mixing);
  for (auto& v : gain) v = std::exp(gain_sigma * nd(mixing));
  std::vector<float> z(static_cast<std::size_t>(factors));
  for (std::int64_t r = 0; r < n; ++r) {
    for (auto& v : z) v = nd(rows);
    for (std::int64_t j = 0; j < k; ++j) {
      float s = 0.1f * nd(rows);
      for (std::int64_t f = 0; f < factors; ++f)
        s += z[static_cast<std::size_t>(f)] * mix[static_cast<std::size_t>(f * k + j)];
      x[static_cast<std::size_t>(r * k + j)] = gain[static_cast<std::size_t>(j)] * s;
    }
  }
}

}  // namespace quanto_test
