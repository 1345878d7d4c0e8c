// Quantization-aware training: gradients of a whole network against finite differences, the
// straight-through rule at network level (a quantized network's gradients are the float network's
// with the dequantized weights). The digits run is in test_qat_digits.cpp.
#include <gtest/gtest.h>

#include "nn_support.hpp"

namespace {
using namespace quanto;

std::unique_ptr<nn::Sequential<float>> small_net(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto m = std::make_unique<nn::Sequential<float>>();
  m->push(nn::Linear<float>(12, 16, rng));
  m->push(nn::GELU<float>{});
  m->push(nn::LayerNorm<float>(16));
  m->push(nn::Linear<float>(16, 5, rng));
  return m;
}

double loss_of(nn::module<float>& m, const tensor<float>& x, const std::vector<std::int64_t>& y) {
  return nn::cross_entropy<float>(m(tensor<float>(x)).value.view(), y).loss;
}

TEST(Qat, NetworkGradientsMatchFiniteDifferences) {
  auto net = small_net(3);
  const auto x = nt::random(shape{6, 12}, 4);
  const std::vector<std::int64_t> y = {0, 1, 2, 3, 4, 1};
  nn::train(*net, true);
  const auto lg = nn::cross_entropy<float>((*net)(tensor<float>(x)).value.view(), y);
  const auto gx = net->backward(lg.grad);
  nn::train(*net, false);
  // parameters: compare a spread of entries of every tensor
  nn::for_each_parameter(
      *net, nn::parameter_callback<float>([&](const std::string& name, tensor<float>& w, tensor<float>& g) {
        ASSERT_EQ(g.size(), w.size()) << name;
        for (std::size_t i = 0; i < w.size(); i += 7) {
          const float keep = w[i];
          const float h = 1e-2f;
          w[i] = keep + h;
          const double up = loss_of(*net, x, y);
          w[i] = keep - h;
          const double down = loss_of(*net, x, y);
          w[i] = keep;
          const double fd = (up - down) / (2.0 * h);
          EXPECT_NEAR(g[i], fd, 2e-3 + 2e-2 * std::abs(fd)) << name << "[" << i << "]";
        }
      }));
  // the input
  auto xx = x;
  for (std::size_t i = 0; i < xx.size(); i += 5) {
    const float keep = xx[i];
    xx[i] = keep + 1e-2f;
    const double up = loss_of(*net, xx, y);
    xx[i] = keep - 1e-2f;
    const double down = loss_of(*net, xx, y);
    xx[i] = keep;
    EXPECT_NEAR(gx[i], (up - down) / 2e-2, 2e-3 + 2e-2 * std::abs((up - down) / 2e-2)) << "x[" << i << "]";
  }
}

// Straight-through at network level: every gradient of the quantized network (weights before
// freeze, biases, input) is the float network's gradient with the dequantized weights. (Bit for bit
// per module, tests/nn/test_qmodules.cpp; here the fused kernels' forward rounds differently from the
// float twin's, so the upstream gradients differ in the last bits.)
TEST(Qat, StraightThroughAtNetworkLevel) {
  auto q = small_net(5);
  nn::quantize(*q, {.weights = qint4{}});
  auto twin = small_net(5);
  for (const char* name : {"0", "3"}) {
    const auto* ql = q->child(name)->as<nn::QLinear<qint4>>();
    ASSERT_NE(ql, nullptr);
    tensor<float> bias = *ql->bias();
    twin->child(name)->replace(
        std::make_unique<nn::node<nn::Linear<float>>>(nn::Linear<float>(ql->qweight().dequantize(), std::move(bias))));
  }
  const auto x = nt::random(shape{4, 12}, 8);
  const std::vector<std::int64_t> y = {4, 3, 2, 1};
  std::vector<tensor<float>> gq, gt;
  tensor<float> gxq, gxt;
  for (auto* m : {q.get(), twin.get()}) {
    nn::train(*m, true);
    const auto lg = nn::cross_entropy<float>((*m)(tensor<float>(x)).value.view(), y);
    (m == q.get() ? gxq : gxt) = m->backward(lg.grad);
    nn::for_each_parameter(*m, nn::parameter_callback<float>([&](const std::string&, tensor<float>&, tensor<float>& g) {
      (m == q.get() ? gq : gt).push_back(g);
    }));
  }
  ASSERT_EQ(gq.size(), 6u);  // two weights (before freeze), two biases, the LayerNorm's two
  ASSERT_EQ(gq.size(), gt.size());
  for (std::size_t p = 0; p < gq.size(); ++p) {
    ASSERT_EQ(gq[p].size(), gt[p].size()) << p;
    ASSERT_GT(gq[p].size(), 0u) << p;
  }
  for (std::size_t p = 0; p < gq.size(); ++p)
    for (std::size_t i = 0; i < gq[p].size(); ++i)
      ASSERT_NEAR(gq[p][i], gt[p][i], 1e-6 + 1e-4 * std::abs(gt[p][i])) << p << " " << i;
  for (std::size_t i = 0; i < gxq.size(); ++i) ASSERT_NEAR(gxq[i], gxt[i], 1e-6 + 1e-4 * std::abs(gxt[i])) << i;
}

}  // namespace
