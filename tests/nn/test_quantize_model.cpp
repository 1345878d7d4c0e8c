// The model-level workflow on the run-time tree: named_modules order and names, quanto's
// include/exclude semantics (tests/quantize/test_quantize_patterns.py), quanto's MLP acceptance
// numbers (tests/quantize/test_quantize_mlp.py), validation before any change, freeze, describe.
#include <gtest/gtest.h>

#include "nn_support.hpp"

namespace {
using namespace quanto;

// quanto's ClassificationModel: an MLP called "model" and a Linear "lm_head".
struct Classifier : nn::module<float> {
  nn::slot<float>& model;
  nn::slot<float>& lm_head;
  Classifier()
      : model(add("model", std::make_unique<nt::Mlp<float>>(32, 10, 128, 4))),
        lm_head(add("lm_head", nn::Linear<float>(tensor<float>(nt::random(shape{5, 10}, 9)), std::nullopt))) {}
  nn::activation<float> forward(nn::activation<float> x) override { return lm_head(model(std::move(x))); }
  std::string_view kind() const noexcept override { return "Classifier"; }
};

std::vector<std::string> quantized_names(nn::module<float>& m) {
  std::vector<std::string> out;
  for (const auto& e : nn::named_modules(m))
    if (e.target->quantized()) out.push_back(e.name);
  return out;
}

TEST(Tree, NamedModulesInPyTorchOrder) {
  Classifier c;
  std::vector<std::string> names;
  for (const auto& e : nn::named_modules(c)) names.push_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"", "model", "model.input_layer", "model.mid_layer", "model.output_layer",
                                             "lm_head"}));
  EXPECT_EQ(nn::find_module(c, "model.mid_layer")->kind(), "Linear");
  EXPECT_EQ(nn::find_module(c, "model.nothing"), nullptr);
}

TEST(Tree, ChildNamesAreChecked) {
  nn::Sequential<float> s;
  s.push(nn::ReLU<float>{});
  EXPECT_THROW(s.add("0", nn::ReLU<float>{}), value_error);
  EXPECT_THROW(s.add("a.b", nn::ReLU<float>{}), value_error);
  EXPECT_THROW(s.add("", nn::ReLU<float>{}), value_error);
  EXPECT_EQ(s.children().size(), 1u);
}

struct pattern_case {
  nn::patterns include, exclude;
  std::vector<std::string> expected;
};

TEST(Quantize, IncludeExcludeLikeQuanto) {
  const std::vector<std::string> all = {"model.input_layer", "model.mid_layer", "model.output_layer", "lm_head"};
  const std::vector<pattern_case> cases = {
      {{}, {}, all},
      {{}, "lm_head", {"model.input_layer", "model.mid_layer", "model.output_layer"}},
      {{}, "model*", {"lm_head"}},
      {{}, {"model.mid_layer", "lm_head"}, {"model.input_layer", "model.output_layer"}},
      {"model*", {}, {"model.input_layer", "model.mid_layer", "model.output_layer"}},
      {"lm_head", {}, {"lm_head"}},
      {{"model.input_layer", "lm_head"}, {}, {"model.input_layer", "lm_head"}},
      {"model*", "model.mid_layer", {"model.input_layer", "model.output_layer"}},
      {"*_layer", "*mid*", {"model.input_layer", "model.output_layer"}},
      {"model.?id_layer", {}, {"model.mid_layer"}},
      {"model.[im]*", {}, {"model.input_layer", "model.mid_layer"}},
      {"model", {}, {}},  // a container matches, but is not quantizable; its children do not match
      {"*", "*", {}},
  };
  for (const auto& pc : cases) {
    Classifier c;
    nn::quantize(c, {.weights = qint8{}, .include = pc.include, .exclude = pc.exclude});
    EXPECT_EQ(quantized_names(c), pc.expected);
  }
}

TEST(Quantize, NamesAndQtypesByString) {
  Classifier c;
  EXPECT_EQ(nn::quantize(c, {.weights = "qint4", .activations = "qfloat8", .optimizer = "hqq", .exclude = "lm_head"}),
            3u);
  const auto qmap = nn::quantization_map(c);
  ASSERT_EQ(qmap.size(), 3u);
  EXPECT_EQ(qmap[0], (nn::qmap_entry{"model.input_layer", "qint4", "qfloat8_e4m3fn"}));
  EXPECT_THROW(nn::quantize(c, {.weights = "qint5"}), unsupported_error);
  EXPECT_THROW(nn::quantize(c, {.weights = "qint4", .optimizer = "adam"}), unsupported_error);
}

TEST(Quantize, ValidatesBeforeChangingAnything) {
  Classifier c;
  EXPECT_THROW(nn::quantize(c, {.weights = qint8{}, .optimizer = max_optimizer{}}), unsupported_error);
  EXPECT_THROW(nn::quantize(c, {.weights = qint4{}, .optimizer = absmax_optimizer{}}), unsupported_error);
  EXPECT_THROW(nn::quantize(c, {.weights = qint4{}, .activations = qint4{}}), unsupported_error);
  EXPECT_THROW(nn::quantize(c, {.activations = qint8{}}), unsupported_error);  // a Linear needs weights
  EXPECT_TRUE(quantized_names(c).empty());
}

TEST(Quantize, QuantizedModulesAreLeftAlone) {
  Classifier c;
  EXPECT_EQ(nn::quantize(c, {.weights = qint8{}, .include = "lm_head"}), 1u);
  EXPECT_EQ(nn::quantize(c, {.weights = qint4{}}), 3u);
  EXPECT_EQ(nn::quantization_map(c).back(), (nn::qmap_entry{"lm_head", "qint8", "none"}));
}

// A model with every quantizable kind: LayerNorm is replaced only with activations.
struct Mixed : nn::module<float> {
  nn::slot<float>& conv;
  nn::slot<float>& norm;
  nn::slot<float>& act;
  Mixed()
      : conv(add("conv", nn::Conv2d<float>(tensor<float>(nt::random(shape{4, 3, 3, 3}, 1)), std::nullopt))),
        norm(add("norm", nn::LayerNorm<float>(6))),
        act(add("act", nn::GELU<float>{})) {}
  nn::activation<float> forward(nn::activation<float> x) override { return act(norm(conv(std::move(x)))); }
  std::string_view kind() const noexcept override { return "Mixed"; }
};

TEST(Quantize, LayerNormOnlyWithActivations) {
  Mixed a, b;
  nn::quantize(a, {.weights = qint8{}});
  EXPECT_EQ(quantized_names(a), (std::vector<std::string>{"conv"}));
  nn::quantize(b, {.weights = qint8{}, .activations = qint8{}});
  EXPECT_EQ(quantized_names(b), (std::vector<std::string>{"conv", "norm"}));
  EXPECT_EQ(b.norm->kind(), "QLayerNorm");
  const auto x = nt::random(shape{2, 3, 8, 8}, 4);
  {
    nn::Calibration calib;
    EXPECT_EQ(b(x).shape(), (shape{2, 4, 6, 6}));
  }
  EXPECT_NE(nn::describe(b).find("norm: QLayerNorm [weights none, activations qint8, frozen]"), std::string::npos)
      << nn::describe(b);
}

// quanto's test_quantize_mlp: MLP(32 -> 128 -> 128 -> 10, softmax), one batch of [1, 32] calibrated
// during the quantized forward, compared with the float output by cosine similarity.
struct mlp_case {
  nn::quantize_spec spec;
  double atol;
};

void run_mlp_case(const mlp_case& mc, bool frozen) {
  nt::Mlp<float> model(32, 10, 128, 17);
  const auto x = nt::random(shape{1, 32}, 23);
  const auto y = model(x).value;
  nn::quantize(model, mc.spec);
  if (frozen) nn::freeze(model);
  nn::activation<float> qy;
  {
    nn::Calibration c;
    qy = model(x);
  }
  EXPECT_EQ(qy.is_quantized(), mc.spec.activations.id.has_value());
  for (const auto& e : nn::quantization_map(model)) EXPECT_EQ(e.weights, to_string(*mc.spec.weights.id));
  EXPECT_LE(nt::one_minus_cos(y, qy.value), mc.atol + 1e-5)
      << to_string(*mc.spec.weights.id) << " / "
      << (mc.spec.activations.id ? to_string(*mc.spec.activations.id) : "none") << (frozen ? " frozen" : " dynamic");
}

TEST(QuantizeMlp, QuantosAcceptanceNumbers) {
  const std::vector<mlp_case> cases = {
      {{.weights = qint8{}}, 1e-6},
      {{.weights = qfloat8_e4m3fn{}}, 1e-6},
      {{.weights = qfloat8_e5m2{}}, 1e-6},
      {{.weights = qfloat8_e4m3fnuz{}}, 1e-6},
      {{.weights = qint4{}, .optimizer = max_optimizer{}}, 1e-4},
      {{.weights = qint4{}, .optimizer = hqq_optimizer{}}, 1e-4},
      {{.weights = qint8{}, .activations = qint8{}}, 1e-3},
      {{.weights = qint8{}, .activations = qfloat8_e4m3fn{}}, 1e-3},
      {{.weights = qint8{}, .activations = qfloat8_e4m3fnuz{}}, 1e-3},
      {{.weights = qint8{}, .activations = qfloat8_e5m2{}}, 1e-2},
  };
  for (const auto& c : cases) {
    run_mlp_case(c, false);
    run_mlp_case(c, true);
  }
}

TEST(QuantizeMlp, FreezeDropsModelMemory) {
  nt::Mlp<float> model(32, 10, 512, 3);
  nn::quantize(model, {.weights = qint4{}});
  (void)model(nt::random(shape{1, 32}, 1));
  const auto bytes = [&] {
    std::size_t b = 0;
    for (const char* n : {"input_layer", "mid_layer", "output_layer"})
      b += model.child(n)->as<nn::QLinear<qint4>>()->weight_bytes();
    return b;
  };
  const std::size_t before = bytes();
  nn::freeze(model);
  const std::size_t after = bytes();
  EXPECT_EQ(before, (32 * 512 + 512 * 512 + 512 * 10) * sizeof(float));
  EXPECT_LT(after * 4, before) << before << " -> " << after;
  for (const auto& e : nn::named_modules(model)) {
    if (auto* q = e.target->quantized()) {
      EXPECT_TRUE(q->frozen());
    }
  }
}

}  // namespace
