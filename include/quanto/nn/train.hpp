// quanto/nn/train.hpp: what quantization-aware training needs beyond backward(): a loss
// (softmax cross-entropy over class logits) and plain SGD with optional momentum.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/nn/tree.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

/// The mean cross-entropy of `logits` [batch, classes] against `labels`, and its gradient.
template <ModelFloat T>
struct loss_and_grad {
  double loss = 0.0;
  tensor<T> grad;  ///< d loss / d logits, [batch, classes]
};

/// Softmax cross-entropy (PyTorch's `F.cross_entropy`, mean reduction). A label outside
/// [0, classes) is a value_error.
template <ModelFloat T>
loss_and_grad<T> cross_entropy(tensor_view<const T> logits, std::span<const std::int64_t> labels) {
  if (logits.rank() != 2 || logits.shape()[0] != static_cast<std::int64_t>(labels.size()))
    throw shape_error("cross_entropy: logits of shape " + logits.shape().to_string() + " for " +
                      std::to_string(labels.size()) + " labels");
  const std::int64_t b = logits.shape()[0], c = logits.shape()[1];
  loss_and_grad<T> out{0.0, tensor<T>(logits.shape())};
  std::vector<double> p(static_cast<std::size_t>(c));
  for (std::int64_t i = 0; i < b; ++i) {
    const std::int64_t y = labels[static_cast<std::size_t>(i)];
    if (y < 0 || y >= c)
      throw value_error("cross_entropy: label " + std::to_string(y) + " is not in [0, " + std::to_string(c) + ")");
    double mx = -std::numeric_limits<double>::infinity();
    for (std::int64_t j = 0; j < c; ++j)
      mx = std::max(mx, static_cast<double>(quanto::model_arith::widen(logits[static_cast<std::size_t>(i * c + j)])));
    double sum = 0.0;
    for (std::int64_t j = 0; j < c; ++j)
      sum += (p[static_cast<std::size_t>(j)] =
                  std::exp(quanto::model_arith::widen(logits[static_cast<std::size_t>(i * c + j)]) - mx));
    out.loss -= std::log(p[static_cast<std::size_t>(y)] / sum);
    for (std::int64_t j = 0; j < c; ++j) {
      const double g = (p[static_cast<std::size_t>(j)] / sum - (j == y ? 1.0 : 0.0)) / static_cast<double>(b);
      out.grad[static_cast<std::size_t>(i * c + j)] = quanto::model_arith::narrow<T>(static_cast<float>(g));
    }
  }
  out.loss /= static_cast<double>(b);
  return out;
}

/// Stochastic gradient descent: `v = momentum·v + g; w -= lr·v` (PyTorch's SGD without dampening),
/// then the gradients are zeroed. Tensors that have no gradient yet are skipped.
template <ModelFloat T>
class sgd {
 public:
  explicit sgd(double lr, double momentum = 0.0) : lr_(lr), momentum_(momentum) {
    if (!(lr > 0.0)) throw value_error("sgd: the learning rate must be positive");
    if (!(momentum >= 0.0 && momentum < 1.0)) throw value_error("sgd: the momentum must be in [0, 1)");
  }
  void step(module<T>& model) {
    for_each_parameter(
        model, parameter_callback<T>([&](const std::string& name, tensor<T>& w, tensor<float>& g) {
          if (g.size() != w.size() || g.size() == 0) return;
          std::vector<float>& v = velocity_[name];
          if (momentum_ > 0.0 && v.size() != g.size()) v.assign(g.size(), 0.0f);
          for (std::size_t i = 0; i < w.size(); ++i) {
            float step = g[i];
            if (momentum_ > 0.0) step = v[i] = static_cast<float>(momentum_) * v[i] + g[i];
            w[i] = quanto::model_arith::narrow<T>(quanto::model_arith::widen(w[i]) - static_cast<float>(lr_) * step);
            g[i] = 0.0f;
          }
        }));
  }
  void set_lr(double lr) { lr_ = lr; }

 private:
  double lr_, momentum_;
  std::unordered_map<std::string, std::vector<float>> velocity_;
};

}  // namespace nn
QUANTO_END_NAMESPACE
