// State dicts with optimum-quanto's keys, dtypes and shapes (spec §6.1), the quantization map, the
// requantize round trip (tests/quantize/test_requantize.py: exact weights, qtypes and scales), and
// typed errors for state dicts that do not fit.
#include <gtest/gtest.h>

#include "nn_support.hpp"

namespace {
using namespace quanto;

struct key_info {
  std::string key;
  dtype dt;
  shape s;
};

std::vector<key_info> keys_of(const nn::state_dict& sd) {
  std::vector<key_info> out;
  for (const auto& [k, t] : sd) out.push_back({k, t.dtype, t.shape});
  return out;
}

void expect_keys(const nn::state_dict& sd, const std::vector<key_info>& expected) {
  const auto got = keys_of(sd);
  ASSERT_EQ(got.size(), expected.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].key, expected[i].key);
    EXPECT_EQ(got[i].dt, expected[i].dt) << got[i].key;
    EXPECT_EQ(got[i].s, expected[i].s) << got[i].key;
  }
}

template <QType Q, class T = float>
nn::state_dict frozen_linear_sd(std::int64_t in, std::int64_t out, bool bias = true) {
  nn::Sequential<T> s;
  std::mt19937_64 rng(3);
  s.push(nn::Linear<T>(in, out, rng, bias));
  nn::quantize(s, {.weights = Q{}});
  nn::freeze(s);
  return nn::get_state_dict(s);
}

TEST(StateDict, QuantosKeysForEachQtype) {
  expect_keys(frozen_linear_sd<qint8>(256, 64), {{"0.weight._data", dtype::i8, {64, 256}},
                                                 {"0.weight._scale", dtype::f32, {64, 1}},
                                                 {"0.bias", dtype::f32, {64}},
                                                 {"0.input_scale", dtype::f32, {}},
                                                 {"0.output_scale", dtype::f32, {}}});
  expect_keys(frozen_linear_sd<qfloat8_e4m3fn>(256, 64), {{"0.weight._data", dtype::f8_e4m3fn, {64, 256}},
                                                          {"0.weight._scale", dtype::f32, {64, 1}},
                                                          {"0.bias", dtype::f32, {64}},
                                                          {"0.input_scale", dtype::f32, {}},
                                                          {"0.output_scale", dtype::f32, {}}});
  expect_keys(frozen_linear_sd<qfloat8_e5m2, bfloat16>(256, 64, false), {{"0.weight._data", dtype::f8_e5m2, {64, 256}},
                                                                         {"0.weight._scale", dtype::bf16, {64, 1}},
                                                                         {"0.input_scale", dtype::bf16, {}},
                                                                         {"0.output_scale", dtype::bf16, {}}});
  // qint4, in = 256: groups of 128 -> codes [128, 128], packed two per byte along dim 0 -> [64, 128]
  expect_keys(frozen_linear_sd<qint4>(256, 64), {{"0.weight._data._data", dtype::u8, {64, 128}},
                                                 {"0.weight._scale", dtype::f32, {128, 1}},
                                                 {"0.weight._shift", dtype::f32, {128, 1}},
                                                 {"0.bias", dtype::f32, {64}},
                                                 {"0.input_scale", dtype::f32, {}},
                                                 {"0.output_scale", dtype::f32, {}}});
  // qint2, in = 192: groups of 96 -> codes [128, 96] -> [32, 96]
  expect_keys(frozen_linear_sd<qint2, float16>(192, 64), {{"0.weight._data._data", dtype::u8, {32, 96}},
                                                          {"0.weight._scale", dtype::f16, {128, 1}},
                                                          {"0.weight._shift", dtype::f16, {128, 1}},
                                                          {"0.bias", dtype::f16, {64}},
                                                          {"0.input_scale", dtype::f16, {}},
                                                          {"0.output_scale", dtype::f16, {}}});
  // qint4, in = 100 <= 128: per output channel, codes [10, 100] -> [5, 100]
  expect_keys(frozen_linear_sd<qint4>(100, 10, false), {{"0.weight._data._data", dtype::u8, {5, 100}},
                                                        {"0.weight._scale", dtype::f32, {10, 1}},
                                                        {"0.weight._shift", dtype::f32, {10, 1}},
                                                        {"0.input_scale", dtype::f32, {}},
                                                        {"0.output_scale", dtype::f32, {}}});
  // one output: quanto's axis of size 1 becomes per tensor, a 0-d scale
  expect_keys(frozen_linear_sd<qint8>(32, 1, false), {{"0.weight._data", dtype::i8, {1, 32}},
                                                      {"0.weight._scale", dtype::f32, {}},
                                                      {"0.input_scale", dtype::f32, {}},
                                                      {"0.output_scale", dtype::f32, {}}});
}

TEST(StateDict, ConvAndDynamicKeys) {
  nn::Sequential<float> s;
  std::mt19937_64 rng(3);
  s.push(nn::Conv2d<float>(3, 8, 3, rng));
  s.push(nn::Linear<float>(16, 4, rng));
  nn::quantize(s, {.weights = qint8{}});
  // dynamic: the float weight is saved instead of the quantized keys
  expect_keys(nn::get_state_dict(s), {{"0.weight", dtype::f32, {8, 3, 3, 3}},
                                      {"0.bias", dtype::f32, {8}},
                                      {"0.input_scale", dtype::f32, {}},
                                      {"0.output_scale", dtype::f32, {}},
                                      {"1.weight", dtype::f32, {4, 16}},
                                      {"1.bias", dtype::f32, {4}},
                                      {"1.input_scale", dtype::f32, {}},
                                      {"1.output_scale", dtype::f32, {}}});
  nn::freeze(s);
  const auto sd = nn::get_state_dict(s);
  EXPECT_EQ(sd.at("0.weight._data").shape, (shape{8, 3, 3, 3}));
  EXPECT_EQ(sd.at("0.weight._scale").shape, (shape{8, 1, 1, 1}));
}

// quanto's test_requantize: a frozen model's state dict and qmap rebuild the same model exactly.
template <class T>
void check_requantize(const nn::quantize_spec& spec) {
  nt::Mlp<T> model(32, 10, 256, 41);
  nt::Mlp<T> fresh(32, 10, 256, 99);  // other float weights: everything must come from the file
  nn::quantize(model, spec);
  const auto x = nt::random<T>(shape{3, 32}, 5);
  {
    nn::Calibration c;
    (void)model(x);
  }
  nn::freeze(model);
  const auto sd = nn::get_state_dict(model);
  const auto qmap = nn::quantization_map(model);
  const auto r = nn::requantize(fresh, sd, qmap);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(nn::get_state_dict(fresh) == sd);
  EXPECT_EQ(nn::quantization_map(fresh), qmap);
  const auto a = model(x).value, b = fresh(x).value;
  for (std::size_t i = 0; i < a.size(); ++i)
    ASSERT_EQ(quanto::model_arith::widen(a[i]), quanto::model_arith::widen(b[i])) << i;
}

TEST(StateDict, RequantizeRoundTrip) {
  check_requantize<float>({.weights = qint4{}});
  check_requantize<float>({.weights = qint2{}, .optimizer = hqq_optimizer{}});
  check_requantize<float>({.weights = qint8{}, .activations = qint8{}});
  check_requantize<float>({.weights = qfloat8_e4m3fn{}, .activations = qfloat8_e5m2{}});
  check_requantize<bfloat16>({.weights = qint4{}, .activations = qint8{}});
  check_requantize<float16>({.weights = qfloat8_e4m3fnuz{}});
}

TEST(StateDict, FloatWeightMakesModuleDynamicAgain) {
  nt::Mlp<float> a(32, 10, 64, 1), b(32, 10, 64, 1);
  nn::quantize(a, {.weights = qint8{}});
  nn::quantize(b, {.weights = qint8{}});
  nn::freeze(b);
  nn::load_state_dict(b, nn::get_state_dict(a));  // dynamic keys into a frozen model
  EXPECT_FALSE(b.input_layer->quantized()->frozen());
  EXPECT_TRUE(nn::get_state_dict(a) == nn::get_state_dict(b));
}

TEST(StateDict, MismatchesAreTypedErrors) {
  nt::Mlp<float> model(32, 10, 64, 1);
  nn::quantize(model, {.weights = qint4{}});
  nn::freeze(model);
  const auto sd = nn::get_state_dict(model);
  const auto without = [&](const std::string& drop) {
    nn::state_dict out;
    for (const auto& [k, t] : sd)
      if (k != drop) out.insert(k, t);
    return out;
  };
  const auto with_changed = [&](const std::string& key, nn::stored_tensor t) {
    nn::state_dict out;
    for (const auto& [k, v] : sd) out.insert(k, k == key ? t : v);
    return out;
  };
  nt::Mlp<float> target(32, 10, 64, 2);
  nn::quantize(target, {.weights = qint4{}});
  EXPECT_THROW(nn::load_state_dict(target, without("mid_layer.weight._shift")), nn::state_dict_error);
  const auto partial = nn::load_state_dict(target, without("mid_layer.bias"), false);
  EXPECT_EQ(partial.missing_keys, (std::vector<std::string>{"mid_layer.bias"}));
  nn::state_dict extra = sd;
  extra.insert("mid_layer.bogus", nn::stored_tensor::scalar(1.0f));
  EXPECT_THROW(nn::load_state_dict(target, extra), nn::state_dict_error);
  EXPECT_EQ(nn::load_state_dict(target, extra, false).unexpected_keys, (std::vector<std::string>{"mid_layer.bogus"}));
  // wrong dtype, wrong shape, wrong packed size
  EXPECT_THROW(nn::load_state_dict(target, with_changed("mid_layer.weight._scale",
                                                        nn::stored_tensor::from(tensor<float16>(shape{64, 1})))),
               nn::state_dict_error);
  EXPECT_THROW(
      nn::load_state_dict(target, with_changed("mid_layer.bias", nn::stored_tensor::from(tensor<float>(shape{63})))),
      shape_error);
  EXPECT_THROW(nn::load_state_dict(target, with_changed("mid_layer.weight._data._data",
                                                        nn::stored_tensor::from(tensor<std::uint8_t>(shape{31, 64})))),
               shape_error);
  EXPECT_THROW(nn::load_state_dict(
                   target, with_changed("mid_layer.input_scale", nn::stored_tensor::from(tensor<float>(shape{2})))),
               shape_error);
  nn::state_dict dup;
  dup.insert("a", nn::stored_tensor::scalar(1.0f));
  EXPECT_THROW(dup.insert("a", nn::stored_tensor::scalar(2.0f)), nn::state_dict_error);
}

TEST(StateDict, QmapNamesModulesThatExist) {
  nt::Mlp<float> model(32, 10, 64, 1);
  EXPECT_THROW(nn::requantize(model, {}, {{"nothing", "qint4", "none"}}), nn::state_dict_error);
  EXPECT_THROW(nn::requantize(model, {}, {{"mid_layer", "qint3", "none"}}), unsupported_error);
}

}  // namespace
