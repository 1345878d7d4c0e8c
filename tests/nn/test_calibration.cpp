// Activation scales and Calibration: quanto's update rule (first batch replaces the 1.0 sentinel,
// then an EMA whose steps round in the model dtype; the input side always blends with 0.9), scales
// untouched outside a scope (quanto's test_calibrate.py), quantized inputs passing their scale, and
// the warning for an uncalibrated model.
#include <gtest/gtest.h>

#include <thread>

#include "nn_support.hpp"

namespace {
using namespace quanto;

TEST(UpdatedScale, FirstBatchReplacesTheSentinel) {
  EXPECT_EQ(nn::updated_scale(1.0f, 0.25f, 0.9), 0.25f);
  EXPECT_EQ(nn::updated_scale(bfloat16(1.0f), bfloat16(3.0f), 0.5), bfloat16(3.0f));
}

TEST(UpdatedScale, EmaRoundsLikePyTorch) {
  // float32: 0.9f*s rounded, 0.1 (= 1 - 0.9 in double, then float) * n rounded, then the sum
  const float s = 0.3f, n = 0.7f;
  const float a = s * 0.9f, b = n * static_cast<float>(1.0 - 0.9);
  EXPECT_EQ(nn::updated_scale(s, n, 0.9), a + b);
  // bfloat16: each step rounds to bfloat16
  const bfloat16 bs(0.3f), bn(0.7f);
  const bfloat16 ba(static_cast<float>(bs) * 0.9f), bb(static_cast<float>(bn) * static_cast<float>(1.0 - 0.9));
  EXPECT_EQ(nn::updated_scale(bs, bn, 0.9), bfloat16(static_cast<float>(ba) + static_cast<float>(bb)));
  EXPECT_NE(nn::updated_scale(s, n, 0.5), nn::updated_scale(s, n, 0.9));
}

// The output before quantization, for the input quantized with `input_scale`: the same weight
// run without activations on the same quantized input.
tensor<float> raw_output(const nn::QLinear<qint8>& q, const tensor<float>& x, float input_scale) {
  nn::Linear<float> lin(tensor<float>(*q.float_weight()), *q.bias());
  nn::QLinear<qint8> twin(std::move(lin));
  return twin.forward(nn::to_quantized_activation<qint8>(x.view(), input_scale)).value;
}

TEST(Calibration, ScalesStayOneWithoutIt) {
  std::mt19937_64 rng(1);
  nn::QLinear<qint8> q(nn::Linear<float>(32, 16, rng), {.activations = qtype_id::qint8});
  scoped_log_sink quiet([](log_level, std::string_view) {});
  (void)q.forward(nt::random(shape{4, 32}, 2));
  EXPECT_EQ(q.input_scale(), 1.0f);
  EXPECT_EQ(q.output_scale(), 1.0f);
}

TEST(Calibration, FirstBatchThenMomentum) {
  std::mt19937_64 rng(1);
  nn::QLinear<qint8> q(nn::Linear<float>(32, 16, rng), {.activations = qtype_id::qint8});
  const auto x1 = nt::random(shape{4, 32}, 2, -2.0f, 2.0f), x2 = nt::random(shape{4, 32}, 3, -0.5f, 0.5f);
  const auto amax = [](const tensor<float>& t) { return activation_scale<qint8>(t.view()); };
  const float in1 = amax(x1), out1 = amax(raw_output(q, x1, in1));
  // the second batch's output is computed from the input quantized with the first batch's scale
  nn::Calibration calib(0.5);
  (void)q.forward(x1);
  EXPECT_EQ(q.input_scale(), in1);
  EXPECT_EQ(q.output_scale(), out1);
  const float in2 = nn::updated_scale(in1, amax(x2), 0.9);  // the input side always uses 0.9
  const float out2 = nn::updated_scale(out1, amax(raw_output(q, x2, in2)), 0.5);
  (void)q.forward(x2);
  EXPECT_EQ(q.input_scale(), in2);
  EXPECT_EQ(q.output_scale(), out2);
}

TEST(Calibration, QuantizedInputPassesItsScale) {
  nt::Mlp<float> mlp(32, 10, 64, 5);
  nn::quantize(mlp, {.weights = qint8{}, .activations = qint8{}});
  {
    nn::Calibration c;
    (void)mlp(nt::random(shape{2, 32}, 1));
  }
  const auto* in = mlp.input_layer->quantized();
  const auto* mid = mlp.mid_layer->quantized();
  // mid_layer's input is input_layer's quantized output through ReLU: same codes, same scale
  EXPECT_EQ(mid->input_scale(), in->output_scale());
  EXPECT_NE(in->input_scale(), 1.0f);
}

TEST(Calibration, ScopesNestAndAreThreadLocal) {
  EXPECT_EQ(nn::Calibration::active(), nullptr);
  {
    nn::Calibration outer(0.9);
    {
      nn::Calibration inner(0.5);
      EXPECT_EQ(nn::Calibration::active()->momentum(), 0.5);
      const nn::Calibration* other = &inner;
      std::thread([&] { other = nn::Calibration::active(); }).join();
      EXPECT_EQ(other, nullptr);
    }
    EXPECT_EQ(nn::Calibration::active()->momentum(), 0.9);
  }
  EXPECT_EQ(nn::Calibration::active(), nullptr);
  EXPECT_THROW(nn::Calibration(1.5), value_error);
  EXPECT_THROW(nn::Calibration(-0.1), value_error);
}

TEST(Calibration, WarnsOnceWhenUncalibrated) {
  std::vector<std::string> messages;
  scoped_log_sink sink([&](log_level l, std::string_view m) {
    EXPECT_EQ(l, log_level::warning);
    messages.emplace_back(m);
  });
  nt::Mlp<float> mlp(32, 10, 64, 5);
  nn::quantize(mlp, {.weights = qint4{}, .activations = qint8{}});
  const auto x = nt::random(shape{2, 32}, 1);
  (void)mlp(x);
  (void)mlp(x);
  ASSERT_EQ(messages.size(), 3u);  // one per module, not per call
  EXPECT_NE(messages[0].find("QLinear 'input_layer'"), std::string::npos) << messages[0];
  EXPECT_NE(messages[0].find("Calibration"), std::string::npos);

  messages.clear();
  nt::Mlp<float> calibrated(32, 10, 64, 5);
  nn::quantize(calibrated, {.weights = qint4{}, .activations = qint8{}});
  {
    nn::Calibration c;
    (void)calibrated(x);
  }
  (void)calibrated(x);
  EXPECT_TRUE(messages.empty());

  nt::Mlp<float> weights_only(32, 10, 64, 5);
  nn::quantize(weights_only, {.weights = qint4{}});
  (void)weights_only(x);
  EXPECT_TRUE(messages.empty());
}

// quanto#216: with the default scale, int8 activations round small values to 0; calibration
// fixes it.
TEST(Calibration, UncalibratedInt8LosesSmallValues) {
  scoped_log_sink quiet([](log_level, std::string_view) {});
  std::mt19937_64 rng(3);
  nn::Linear<float> ref(64, 32, rng);
  nn::QLinear<qint8> raw(nn::Linear<float>(tensor<float>(ref.weight()), *ref.bias()), {.activations = qtype_id::qint8});
  nn::QLinear<qint8> cal(nn::Linear<float>(tensor<float>(ref.weight()), *ref.bias()), {.activations = qtype_id::qint8});
  const auto x = nt::random(shape{8, 64}, 1);
  {
    nn::Calibration c;
    (void)cal.forward(x);
  }
  const auto y = ref.forward(x).value;
  EXPECT_LE(nt::one_minus_cos(y, cal.forward(x).value), 1e-3);
  EXPECT_GT(nt::one_minus_cos(y, raw.forward(x).value), 0.1);
}

}  // namespace
