// examples/01_mlp_workflow/mlp.hpp: the example's model and training loop (also used by
// tests/nn/test_qat.cpp): a 64 -> hidden -> hidden -> 10 MLP as a run-time tree, mini-batch SGD
// on softmax cross-entropy, test accuracy.
#pragma once

#include <quanto/nn.hpp>

#include <algorithm>
#include <memory>
#include <random>
#include <vector>

#include "digits.hpp"

namespace digits {
using namespace quanto;

/// 64 -> hidden -> hidden -> 10, ReLU between.
inline std::unique_ptr<nn::Sequential<float>> make_mlp(std::int64_t hidden, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto m = std::make_unique<nn::Sequential<float>>();
  m->push(nn::Linear<float>(64, hidden, rng));
  m->push(nn::ReLU<float>{});
  m->push(nn::Linear<float>(hidden, hidden, rng));
  m->push(nn::ReLU<float>{});
  m->push(nn::Linear<float>(hidden, 10, rng));
  return m;
}

inline double accuracy(nn::module<float>& model, const split& s) {
  nn::train(model, false);
  const auto logits = model(tensor<float>(s.x)).value;
  std::int64_t right = 0;
  for (std::int64_t i = 0; i < s.size(); ++i) {
    const float* row = logits.data() + i * 10;
    right += (std::max_element(row, row + 10) - row) == s.y[static_cast<std::size_t>(i)];
  }
  return 100.0 * static_cast<double>(right) / static_cast<double>(s.size());
}

/// Mini-batch SGD with momentum over shuffled batches of 32; returns the last epoch's mean loss.
inline double fit(nn::module<float>& model, const split& s, int epochs, double lr, std::uint64_t seed) {
  nn::train(model, true);
  nn::sgd<float> opt(lr, 0.9);
  std::mt19937_64 rng(seed);
  std::vector<std::int64_t> order(static_cast<std::size_t>(s.size()));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);
  double loss = 0;
  for (int e = 0; e < epochs; ++e) {
    std::shuffle(order.begin(), order.end(), rng);
    loss = 0;
    int batches = 0;
    for (std::size_t b = 0; b < order.size(); b += 32) {
      const std::size_t n = std::min<std::size_t>(32, order.size() - b);
      tensor<float> x(shape{static_cast<std::int64_t>(n), 64});
      std::vector<std::int64_t> y(n);
      for (std::size_t i = 0; i < n; ++i) {
        const auto r = order[b + i];
        std::copy(s.x.data() + r * 64, s.x.data() + (r + 1) * 64, x.data() + i * 64);
        y[i] = s.y[static_cast<std::size_t>(r)];
      }
      const auto logits = model(std::move(x)).value;
      const auto lg = nn::cross_entropy<float>(logits.view(), y);
      (void)model.backward(lg.grad);
      opt.step(model);
      loss += lg.loss;
      ++batches;
    }
    loss /= batches;
  }
  nn::train(model, false);
  return loss;
}

/// A copy of a model's weights in a fresh float MLP (through the state dict, as a file would).
inline std::unique_ptr<nn::Sequential<float>> copy_of(nn::module<float>& trained, std::int64_t hidden) {
  auto m = make_mlp(hidden, 0);
  nn::load_state_dict(*m, nn::get_state_dict(trained));
  return m;
}

}  // namespace digits
