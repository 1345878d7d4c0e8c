// GPTQ on a module tree (nn/gptq.hpp): the calibrated pass beats quantize + freeze on held-out
// inputs, writes a model folder (safetensors + quanto_qmap.json) that reloads to the same weights
// and outputs, handles Conv2d through im2col, and turns bad calibration into typed errors that
// name the module and leave the tree as it was.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <quanto/io/model.hpp>
#include <quanto/io/qmap.hpp>
#include <quanto/io/state_dict.hpp>
#include <quanto/nn/gptq.hpp>

#include "../support/correlated_inputs.hpp"
#include "nn_support.hpp"

using namespace quanto;

namespace {

/// Rows with correlated features (6 latent factors): the mixing is the same for every call (one
/// distribution), the rows come from `seed`.
tensor<float> correlated(std::int64_t n, std::int64_t k, std::uint64_t seed) {
  std::mt19937 rng(static_cast<std::uint32_t>(seed));
  std::mt19937 fixed(99);
  tensor<float> x(shape{n, k});
  quanto_test::fill_correlated(x.data(), n, k, 6, 1.0f, fixed, rng);
  return x;
}

std::unique_ptr<nn::Sequential<float>> mlp() {
  std::mt19937_64 rng(5);
  auto m = std::make_unique<nn::Sequential<float>>();
  m->push(nn::Linear<float>(256, 192, rng));
  m->push(nn::GELU<float>{});
  m->push(nn::Linear<float>(192, 64, rng));
  return m;
}

double mse(const tensor<float>& a, const tensor<float>& b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s / static_cast<double>(a.size());
}

tensor<float> run(nn::module<float>& m, const tensor<float>& x) { return m.forward(tensor<float>(x)).take_value(); }

}  // namespace

TEST(GptqModel, BeatsQuantizeAndFreezeOnHeldOutInputs) {
  const tensor<float> calib = correlated(512, 256, 1), held = correlated(256, 256, 2);
  auto reference = mlp();
  const tensor<float> want = run(*reference, held);
  for (const char* qtype : {"qint4", "qint2"}) {
    auto rtn = mlp();
    nn::quantize(*rtn, {.weights = qtype});
    nn::freeze(*rtn);
    const double rtn_err = mse(run(*rtn, held), want);
    for (const bool sequential : {true, false}) {
      auto g = mlp();
      const nn::calibrated_report rep =
          nn::quantize_calibrated(*g, {.weights = qtype, .method = "gptq", .sequential = sequential}, [&] {
            for (std::int64_t b = 0; b < 4; ++b)  // four batches of 128 rows
              (void)g->forward(tensor<float>(shape{128, 256},
                                             calib.span().subspan(static_cast<std::size_t>(b * 128 * 256), 128 * 256)));
          });
      ASSERT_EQ(rep.modules.size(), 2u);
      EXPECT_EQ(rep.calibration_passes, 1);  // siblings (both Linears are the root's): one stage
      EXPECT_EQ(rep.modules[0].name, "0");
      EXPECT_EQ(rep.modules[0].samples, 512);
      EXPECT_EQ(rep.modules[0].features, 256);
      for (const auto& e : nn::named_modules(*g))
        if (const auto* q = e.target->quantized()) {
          EXPECT_TRUE(q->frozen()) << e.name;
        }
      const double err = mse(run(*g, held), want);
      EXPECT_LT(err, 0.75 * rtn_err) << qtype << " sequential " << sequential << ": " << err << " vs RTN " << rtn_err;
    }
  }
}

TEST(GptqModel, SequentialStagesFollowTheTree) {
  // Two containers: each is a stage of its own, calibrated after the first was quantized.
  std::mt19937_64 rng(3);
  struct two : nn::module<float> {
    nn::slot<float>* a;
    nn::slot<float>* b;
    explicit two(std::mt19937_64& r) {
      auto s1 = std::make_unique<nn::Sequential<float>>(nn::Linear<float>(64, 64, r));
      auto s2 = std::make_unique<nn::Sequential<float>>(nn::Linear<float>(64, 32, r));
      a = &add("first", std::move(s1));
      b = &add("second", std::move(s2));
    }
    nn::activation<float> forward(nn::activation<float> x) override { return (*b)((*a)(std::move(x))); }
    std::string_view kind() const noexcept override { return "two"; }
  } m(rng);
  const tensor<float> x = correlated(256, 64, 4);
  int calls = 0;
  const auto rep = nn::quantize_calibrated(m, {.weights = qint4{}, .method = nn::gptq{}}, [&] {
    ++calls;
    // the second stage sees the first already quantized
    if (calls == 2) {
      EXPECT_NE(nn::find_module<float>(m, "first.0")->quantized(), nullptr);
    }
    (void)m.forward(tensor<float>(x));
  });
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(rep.calibration_passes, 2);
  ASSERT_EQ(rep.modules.size(), 2u);
  EXPECT_EQ(rep.modules[1].name, "second.0");
}

TEST(GptqModel, FolderRoundTripGivesTheSameWeightsAndOutputs) {
  const tensor<float> calib = correlated(384, 256, 5), held = correlated(64, 256, 6);
  auto g = mlp();
  (void)nn::quantize_calibrated(*g, {.weights = qint4{}, .method = "gptq", .sequential = false},
                                [&] { (void)g->forward(tensor<float>(calib)); });
  // the first layer saw exactly `calib`: the plain-tensor GPTQ on the same rows gives its weight
  {
    auto f = mlp();
    gptq_hessian h(256);
    h.add(calib.view());
    const auto direct =
        gptq_quantize<qint4>(f->children()[0]->as<nn::Linear<float>>()->weight().view(), h, group_affine<>{});
    const auto* q = g->children()[0]->as<nn::QLinear<qint4, float>>();
    ASSERT_NE(q, nullptr);
    const tensor<float> mine = q->qweight().dequantize();
    for (std::size_t i = 0; i < mine.size(); ++i) ASSERT_EQ(mine[i], direct.dequantized[i]) << i;
  }
  const auto dir = std::filesystem::temp_directory_path() / ("quanto_gptq_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  io::save_state_dict(dir / "model.safetensors", nn::get_state_dict(*g), {{"format", "pt"}});
  io::write_qmap(dir / "quanto_qmap.json", nn::quantization_map(*g));
  // the folder reader sees quanto's layout and the loop's values
  const io::quantized_model folder = io::quantized_model::open(dir);
  const any_qweight w0 = folder.weight("0", shape{192, 256});
  const auto* qb = std::get_if<qbits_weight<qint4, float>>(&w0);
  ASSERT_NE(qb, nullptr);
  EXPECT_EQ(qb->group_size, std::optional<std::int64_t>(128));
  const tensor<float> from_file = qb->dequantize();
  const tensor<float> in_model = g->children()[0]->as<nn::QLinear<qint4, float>>()->qweight().dequantize();
  for (std::size_t i = 0; i < from_file.size(); ++i) ASSERT_EQ(from_file[i], in_model[i]);
  // requantize a fresh float tree from the files: bit-identical outputs
  auto fresh = mlp();
  (void)nn::requantize(*fresh, io::read_state_dict(dir / "model.safetensors"), io::read_qmap(dir / "quanto_qmap.json"));
  const tensor<float> a = run(*g, held), b = run(*fresh, held);
  for (std::size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << i;
  std::filesystem::remove_all(dir);
}

TEST(GptqModel, Conv2dThroughIm2col) {
  std::mt19937_64 rng(7);
  const auto make = [&] {
    std::mt19937_64 r(7);
    auto m = std::make_unique<nn::Sequential<float>>();
    m->push(nn::Conv2d<float>(8, 16, 3, r, kernels::conv2d_params{.pad_h = 1, .pad_w = 1}));
    return m;
  };
  // images whose channels are correlated
  const auto images = [](std::int64_t n, std::uint64_t seed) {
    const tensor<float> c = correlated(n * 10 * 10, 8, seed);
    tensor<float> x(shape{n, 8, 10, 10});
    for (std::int64_t b = 0; b < n; ++b)
      for (std::int64_t ch = 0; ch < 8; ++ch)
        for (std::int64_t p = 0; p < 100; ++p)
          x[static_cast<std::size_t>((b * 8 + ch) * 100 + p)] = c[static_cast<std::size_t>((b * 100 + p) * 8 + ch)];
    return x;
  };
  const tensor<float> calib = images(16, 8), held = images(4, 9);
  auto reference = make();
  const tensor<float> want = run(*reference, held);
  auto rtn = make();
  nn::quantize(*rtn, {.weights = qint4{}});
  nn::freeze(*rtn);
  auto g = make();
  const auto rep = nn::quantize_calibrated(*g, {.weights = qint4{}}, [&] { (void)g->forward(tensor<float>(calib)); });
  ASSERT_EQ(rep.modules.size(), 1u);
  EXPECT_EQ(rep.modules[0].samples, 16 * 100);  // one row per output pixel
  EXPECT_EQ(rep.modules[0].features, 72);
  EXPECT_NE((g->children()[0]->as<nn::QConv2d<qint4, float>>()), nullptr);
  EXPECT_LT(mse(run(*g, held), want), 0.8 * mse(run(*rtn, held), want));
  (void)rng;
}

TEST(GptqModel, BadCalibrationIsATypedErrorAndLeavesTheTree) {
  const tensor<float> x = correlated(64, 256, 10);
  // a leaf the calibration never reaches
  {
    std::mt19937_64 rng(1);
    struct skips : nn::module<float> {
      explicit skips(std::mt19937_64& r) {
        add("used", nn::Linear<float>(256, 16, r));
        add("unused", nn::Linear<float>(256, 16, r));
      }
      nn::activation<float> forward(nn::activation<float> x) override { return (*child("used"))(std::move(x)); }
      std::string_view kind() const noexcept override { return "skips"; }
    } m(rng);
    try {
      (void)nn::quantize_calibrated(m, {.weights = qint4{}}, [&] { (void)m.forward(tensor<float>(x)); });
      FAIL();
    } catch (const state_error& e) {
      EXPECT_NE(std::string(e.what()).find("unused"), std::string::npos) << e.what();
    }
    EXPECT_NE(m.child("used")->as<nn::Linear<float>>(), nullptr);  // nothing was replaced
    EXPECT_NE(m.child("unused")->as<nn::Linear<float>>(), nullptr);
    // excluding it works
    (void)nn::quantize_calibrated(m, {.weights = qint4{}, .exclude = "unused"},
                                  [&] { (void)m.forward(tensor<float>(x)); });
    EXPECT_NE((m.child("used")->as<nn::QLinear<qint4, float>>()), nullptr);
    EXPECT_NE(m.child("unused")->as<nn::Linear<float>>(), nullptr);
  }
  // NaN in the calibration input
  {
    auto m = mlp();
    tensor<float> bad = x;
    bad[300] = std::nanf("");
    try {
      (void)nn::quantize_calibrated(*m, {.weights = qint4{}}, [&] { (void)m->forward(tensor<float>(bad)); });
      FAIL();
    } catch (const value_error& e) {
      EXPECT_NE(std::string(e.what()).find("gptq '0'"), std::string::npos) << e.what();
    }
    EXPECT_NE(m->children()[0]->as<nn::Linear<float>>(), nullptr);
    EXPECT_EQ(run(*m, x).shape(), (shape{64, 64}));  // still runs, as float
  }
  // a calibration callback that throws leaves the tree as it was
  {
    auto m = mlp();
    EXPECT_THROW(
        (void)nn::quantize_calibrated(*m, {.weights = qint4{}}, [&] { throw std::runtime_error("interrupted"); }),
        std::runtime_error);
    EXPECT_NE(m->children()[0]->as<nn::Linear<float>>(), nullptr);
  }
  // names and specs
  EXPECT_THROW((void)nn::calibrated_method_arg("awq"), unsupported_error);
  auto m = mlp();
  EXPECT_THROW((void)nn::quantize_calibrated(*m, {.method = "gptq"}, [] {}), unsupported_error);
}
