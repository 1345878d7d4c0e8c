// GPTQ on plain tensors: the dense kernels against naive loops, a case computed by hand, the
// reconstruction error against round-to-nearest on correlated inputs, the lazy batch update against
// an unblocked run, the stored weight dequantizing to the loop's values, and bad input.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <quanto/quantize/gptq.hpp>
#include <quanto/quanto.hpp>

#include "../support/correlated_inputs.hpp"

using namespace quanto;

namespace {

std::vector<double> random_spd(std::int64_t n, std::mt19937& rng) {
  std::normal_distribution<double> nd;
  std::vector<double> g(static_cast<std::size_t>(n * n)), a(g.size(), 0.0);
  for (auto& v : g) v = nd(rng);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      double s = i == j ? static_cast<double>(n) : 0.0;
      for (std::int64_t p = 0; p < n; ++p)
        s += g[static_cast<std::size_t>(i * n + p)] * g[static_cast<std::size_t>(j * n + p)];
      a[static_cast<std::size_t>(i * n + j)] = s;
    }
  return a;
}

/// Calibration rows with strongly correlated features (8 latent factors, gains over two orders of
/// magnitude), mixing and rows from one engine.
std::vector<float> correlated_inputs(std::int64_t n, std::int64_t k, std::mt19937& rng) {
  std::vector<float> x(static_cast<std::size_t>(n * k));
  quanto_test::fill_correlated(x.data(), n, k, 8, 1.5f, rng, rng);
  return x;
}

/// ‖X·Wᵀ − X·Ŵᵀ‖² over the rows of x.
template <class T>
double output_error(const std::vector<float>& x, std::int64_t n, const tensor<float>& w, const tensor<T>& wq) {
  const std::int64_t out = w.shape()[0], k = w.numel() / out;
  double e = 0.0;
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t o = 0; o < out; ++o) {
      double d = 0.0;
      for (std::int64_t j = 0; j < k; ++j)
        d += static_cast<double>(x[static_cast<std::size_t>(r * k + j)]) *
             (static_cast<double>(w[static_cast<std::size_t>(o * k + j)]) -
              static_cast<double>(model_arith::widen(wq[static_cast<std::size_t>(o * k + j)])));
      e += d * d;
    }
  return e;
}

tensor<float> random_weight(std::int64_t out, std::int64_t in, std::mt19937& rng) {
  std::normal_distribution<float> nd;
  tensor<float> w(shape{out, in});
  for (auto& v : w) v = 0.05f * nd(rng);
  return w;
}

}  // namespace

TEST(Dense, GemmMatchesNaiveLoopsOnEdgeSizes) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> ud(-1, 1);
  for (const auto [m, n, k] : {std::array<std::int64_t, 3>{7, 37, 300}, {4, 16, 1}, {13, 5, 9}}) {
    std::vector<float> a(static_cast<std::size_t>(k * m)), b(static_cast<std::size_t>(k * n)),
        c(static_cast<std::size_t>(m * n)), ref;
    for (auto& v : a) v = ud(rng);
    for (auto& v : b) v = ud(rng);
    for (auto& v : c) v = ud(rng);
    ref = c;
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (std::int64_t p = 0; p < k; ++p)
          s += double(a[static_cast<std::size_t>(p * m + i)]) * b[static_cast<std::size_t>(p * n + j)];
        ref[static_cast<std::size_t>(i * n + j)] -= static_cast<float>(2.0 * s);
      }
    detail::dense::gemm_tn<float>(m, n, k, -2.0f, {a.data(), m, 1}, b.data(), n, c.data(), n);
    for (std::size_t i = 0; i < c.size(); ++i) EXPECT_NEAR(c[i], ref[i], 1e-3) << m << "x" << n << "x" << k;
  }
}

TEST(Dense, CholeskyAndTriangularInverse) {
  std::mt19937 rng(2);
  for (const std::int64_t n : {1, 5, 130, 300}) {
    const std::vector<double> a = random_spd(n, rng);
    std::vector<double> l = a;
    ASSERT_FALSE(detail::dense::cholesky_lower(n, l.data()).has_value());
    double worst = 0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (std::int64_t p = 0; p < n; ++p)
          s += l[static_cast<std::size_t>(i * n + p)] * l[static_cast<std::size_t>(j * n + p)];
        worst = std::max(worst,
                         std::abs(s - a[static_cast<std::size_t>(i * n + j)]) / a[static_cast<std::size_t>(i * n + i)]);
        if (j > i) {
          EXPECT_EQ(l[static_cast<std::size_t>(i * n + j)], 0.0);
        }
      }
    EXPECT_LT(worst, 1e-12) << n;
    std::vector<double> x = l;
    detail::dense::invert_lower(n, x.data());
    worst = 0;
    for (std::int64_t i = 0; i < n; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (std::int64_t p = 0; p < n; ++p)
          s += x[static_cast<std::size_t>(i * n + p)] * l[static_cast<std::size_t>(p * n + j)];
        worst = std::max(worst, std::abs(s - (i == j ? 1.0 : 0.0)));
      }
    EXPECT_LT(worst, 1e-10) << n;
  }
  std::vector<double> indefinite = {1, 2, 2, 1};
  EXPECT_EQ(detail::dense::cholesky_lower(2, indefinite.data()), std::int64_t{1});
}

TEST(Gptq, HandComputedCase) {
  // One row [0, 0.76, 1.5] at qint4 without groups: scale 1.5/15 = 0.1, shift -0. With
  // H = [[1,0,0],[0,7.25,2.5],[0,2.5,1]], H⁻¹ = UᵀU with U = [[1,0,0],[0,1,-2.5],[0,0,1]].
  // Column 0: code 0, no error. Column 1: 7.6 rounds to 8, error (0.76 - 0.8)/U11 = -0.04, so
  // column 2 becomes 1.5 - (-0.04)(-2.5) = 1.4: code 14 where round-to-nearest gives 15.
  // A second row [1.5, 0.76, 0]: 15 (error ~0, and U01 = U02 = 0), 8 (error -0.04), then
  // 0 - (-0.04)(-2.5) = -0.1, which clamps to code 0 as round-to-nearest's 0 does.
  const tensor<float> w(shape{2, 3}, std::vector<float>{0.0f, 0.76f, 1.5f, 1.5f, 0.76f, 0.0f});
  const std::vector<double> h = {1, 0, 0, 0, 7.25, 2.5, 0, 2.5, 1};
  gptq_options opt;
  opt.damp = 0.0;
  const auto r = gptq_quantize<qint4>(w.view(), std::span<const double>(h), group_affine<>{}, opt);
  const tensor<std::uint8_t> codes = r.weight.unpack();
  EXPECT_EQ(codes[0], 0);
  EXPECT_EQ(codes[1], 8);
  EXPECT_EQ(codes[2], 14);
  EXPECT_EQ(codes[3], 15);
  EXPECT_EQ(codes[4], 8);
  EXPECT_EQ(codes[5], 0);
  EXPECT_FLOAT_EQ(r.weight.scale[0], 1.5f / 15.0f);
  EXPECT_FLOAT_EQ(r.weight.scale[1], 1.5f / 15.0f);
  const auto rtn = quantize_weight<qint4>(w.view()).unpack();
  EXPECT_EQ(rtn[2], 15);
  EXPECT_EQ(r.damp, 0.0);
}

TEST(Gptq, BeatsRoundToNearestOnCorrelatedInputs) {
  std::mt19937 rng(3);
  const std::int64_t k = 256, out = 48, n = 1024;
  const std::vector<float> x = correlated_inputs(2 * n, k, rng);  // first half calibrates, second half is held out
  const std::vector<float> held(x.begin() + n * k, x.end());
  const tensor<float> w = random_weight(out, k, rng);
  gptq_hessian h(k, "layer");
  h.add(x.data(), n);
  const std::vector<float> calib(x.begin(), x.begin() + n * k);
  const auto check = [&](const char* what, double gptq_calib, double gptq_held, double rtn_calib, double rtn_held,
                         double ratio) {
    EXPECT_LT(gptq_calib, ratio * rtn_calib) << what;
    EXPECT_LT(gptq_held, ratio * rtn_held) << what;
  };
  {
    const auto g = gptq_quantize<qint4>(w.view(), h, group_affine<>{.group_size = 64});
    const auto rtn = quantize_weight<qint4>(w.view(), group_affine<>{.group_size = 64}).dequantize();
    check("qint4 g64", output_error(calib, n, w, g.dequantized), output_error(held, n, w, g.dequantized),
          output_error(calib, n, w, rtn), output_error(held, n, w, rtn), 0.6);
  }
  {
    gptq_options opt;
    opt.act_order = true;
    const auto g = gptq_quantize<qint4>(w.view(), h, group_affine<>{.group_size = 64}, opt);
    const auto rtn = quantize_weight<qint4>(w.view(), group_affine<>{.group_size = 64}).dequantize();
    check("qint4 g64 act-order", output_error(calib, n, w, g.dequantized), output_error(held, n, w, g.dequantized),
          output_error(calib, n, w, rtn), output_error(held, n, w, rtn), 0.6);
  }
  {
    const auto g = gptq_quantize<qint2>(w.view(), h, group_affine<>{.group_size = 128});
    const auto rtn = quantize_weight<qint2>(w.view(), group_affine<>{.group_size = 128}).dequantize();
    check("qint2 g128", output_error(calib, n, w, g.dequantized), output_error(held, n, w, g.dequantized),
          output_error(calib, n, w, rtn), output_error(held, n, w, rtn), 0.6);
  }
  {
    const auto g = gptq_quantize<qint8>(w.view(), h);
    const auto rtn = quantize_weight<qint8>(w.view()).dequantize();
    check("qint8", output_error(calib, n, w, g.dequantized), output_error(held, n, w, g.dequantized),
          output_error(calib, n, w, rtn), output_error(held, n, w, rtn), 0.8);
  }
}

TEST(Gptq, ClipSearchKeepsMaxAtOneStepAndHelpsAtTwoBits) {
  std::mt19937 rng(12);
  const std::int64_t k = 256, out = 32, n = 1024;
  const std::vector<float> x = correlated_inputs(2 * n, k, rng);
  const std::vector<float> calib(x.begin(), x.begin() + n * k), held(x.begin() + n * k, x.end());
  const tensor<float> w = random_weight(out, k, rng);
  gptq_hessian h(k);
  h.add(calib.data(), n);
  for (const bool act_order : {false, true}) {
    gptq_options plain, one, clip;
    plain.act_order = one.act_order = clip.act_order = act_order;
    one.clip_steps = 1;  // the grid is {1}: MaxOptimizer's parameters exactly
    clip.clip_steps = 20;
    const auto a = gptq_quantize<qint2>(w.view(), h, group_affine<>{.group_size = 64}, plain);
    const auto b = gptq_quantize<qint2>(w.view(), h, group_affine<>{.group_size = 64}, one);
    const auto c = gptq_quantize<qint2>(w.view(), h, group_affine<>{.group_size = 64}, clip);
    for (std::size_t i = 0; i < a.dequantized.size(); ++i) ASSERT_EQ(a.dequantized[i], b.dequantized[i]) << i;
    EXPECT_LT(output_error(held, n, w, c.dequantized), 0.9 * output_error(held, n, w, a.dequantized))
        << "act_order " << act_order;
  }
}

TEST(Gptq, LazyBatchUpdateEqualsUnblockedRun) {
  // Blocks of 32 (three lazy rank-32 updates) against one block of all 128 columns (none): the same
  // algorithm up to float32 reassociation, so nearly every code agrees.
  std::mt19937 rng(4);
  const std::int64_t k = 128, out = 64, n = 512;
  const std::vector<float> x = correlated_inputs(n, k, rng);
  const tensor<float> w = random_weight(out, k, rng);
  gptq_hessian h(k);
  h.add(x.data(), n);
  for (const bool act_order : {false, true}) {
    gptq_options a, b;
    a.block = 32;
    b.block = 128;
    a.act_order = b.act_order = act_order;
    const auto ra = gptq_quantize<qint4>(w.view(), h, group_affine<>{.group_size = 32}, a);
    const auto rb = gptq_quantize<qint4>(w.view(), h, group_affine<>{.group_size = 32}, b);
    const tensor<std::uint8_t> ca = ra.weight.unpack(), cb = rb.weight.unpack();
    std::size_t same = 0;
    for (std::size_t i = 0; i < ca.size(); ++i) same += ca[i] == cb[i];
    EXPECT_GE(static_cast<double>(same), 0.995 * static_cast<double>(ca.size())) << "act_order " << act_order;
  }
}

template <class T>
void expect_dequantizes_to_loop_values() {
  std::mt19937 rng(5);
  const std::int64_t k = 192, out = 20, n = 300;
  const std::vector<float> x = correlated_inputs(n, k, rng);
  tensor<T> w(shape{out, k});
  std::normal_distribution<float> nd;
  for (auto& v : w) v = model_arith::narrow<T>(0.05f * nd(rng));
  gptq_hessian h(k);
  h.add(x.data(), n);
  const auto same = [](const auto& a, const auto& b) {
    ASSERT_EQ(a.shape(), b.shape());
    for (std::size_t i = 0; i < a.size(); ++i)
      ASSERT_EQ(float_to_bits(model_arith::widen(a[i])), float_to_bits(model_arith::widen(b[i]))) << i;
  };
  for (const bool act_order : {false, true}) {
    gptq_options opt;
    opt.act_order = act_order;
    const auto q4 = gptq_quantize<qint4>(w.view(), h, group_affine<>{}, opt);  // quanto's rule: groups of 96
    EXPECT_EQ(q4.weight.group_size, std::optional<std::int64_t>(96));
    q4.weight.validate();
    same(q4.weight.dequantize(), q4.dequantized);
    const auto q2 = gptq_quantize<qint2>(w.view(), h, group_affine<>{.group_size = 64}, opt);
    same(q2.weight.dequantize(), q2.dequantized);
    const auto q8 = gptq_quantize<qint8>(w.view(), h, symmetric{}, opt);
    same(q8.weight.dequantize(), q8.dequantized);
    opt.clip_steps = 8;
    const auto c2 = gptq_quantize<qint2>(w.view(), h, group_affine<>{.group_size = 64}, opt);
    same(c2.weight.dequantize(), c2.dequantized);
  }
}
TEST(Gptq, StoredWeightDequantizesToTheLoopsValuesFloat32) { expect_dequantizes_to_loop_values<float>(); }
TEST(Gptq, StoredWeightDequantizesToTheLoopsValuesBfloat16) { expect_dequantizes_to_loop_values<bfloat16>(); }
TEST(Gptq, StoredWeightDequantizesToTheLoopsValuesFloat16) { expect_dequantizes_to_loop_values<float16>(); }

TEST(Gptq, ConvWeightsAreFlattenedPerOutputChannel) {
  std::mt19937 rng(6);
  const std::int64_t k = 8 * 3 * 3, n = 200;
  const std::vector<float> x = correlated_inputs(n, k, rng);
  tensor<float> w(shape{4, 8, 3, 3});
  std::normal_distribution<float> nd;
  for (auto& v : w) v = nd(rng);
  gptq_hessian h(k);
  h.add(x.data(), n);
  const auto r = gptq_quantize<qint4>(w.view(), h);
  EXPECT_EQ(r.weight.group_size, std::nullopt);  // quanto's rule: 72 features <= 128, one group per channel
  EXPECT_EQ(r.weight.scale.shape(), (shape{4, 1, 1, 1}));
  EXPECT_EQ(r.weight.shape(), w.shape());
  const tensor<float> dq = r.weight.dequantize();
  for (std::size_t i = 0; i < dq.size(); ++i) ASSERT_EQ(dq[i], r.dequantized[i]);
}

TEST(Gptq, OneRowWeightsKeepQuantosLosslessPerElementParameters) {
  // quanto turns a per-row request on a one-row weight into per-element parameters: exact.
  const tensor<float> w(shape{1, 3}, std::vector<float>{0.0f, 0.76f, 1.5f});
  const std::vector<double> h = {1, 0, 0, 0, 7.25, 2.5, 0, 2.5, 1};
  const auto r = gptq_quantize<qint4>(w.view(), std::span<const double>(h));
  for (std::size_t i = 0; i < w.size(); ++i) EXPECT_EQ(r.dequantized[i], w[i]);
  const auto r8 = gptq_quantize<qint8>(w.view(), std::span<const double>(h));
  EXPECT_EQ(r8.weight.axis, qaxis::none);  // one scale, as quanto stores it
  EXPECT_EQ(r8.weight.dequantize()[2], r8.dequantized[2]);
}

TEST(Gptq, DeadInputsAreZeroedAndCounted) {
  std::mt19937 rng(7);
  const std::int64_t k = 64, n = 256;
  std::vector<float> x = correlated_inputs(n, k, rng);
  for (std::int64_t r = 0; r < n; ++r) x[static_cast<std::size_t>(r * k + 5)] = 0.0f;  // feature 5 never active
  const tensor<float> w = random_weight(8, k, rng);
  gptq_hessian h(k);
  h.add(x.data(), n);
  const auto r = gptq_quantize<qint4>(w.view(), h, group_affine<>{.group_size = 32});
  EXPECT_EQ(r.dead_columns, 1);
  for (const float v : r.dequantized) EXPECT_TRUE(std::isfinite(v));
}

TEST(Gptq, TooFewSamplesFallBackToDampening) {
  // 6 rows for 64 features: H has rank 6. Dampening (λ = 1 % of the mean diagonal) makes it
  // positive definite; the result is finite and fits the calibration rows better than RTN.
  std::mt19937 rng(8);
  const std::int64_t k = 64, n = 6;
  const std::vector<float> x = correlated_inputs(n, k, rng);
  const tensor<float> w = random_weight(16, k, rng);
  gptq_hessian h(k, "tiny");
  h.add(x.data(), n);
  const auto r = gptq_quantize<qint4>(w.view(), h, group_affine<>{.group_size = 32});
  EXPECT_EQ(r.damp, 0.01);
  for (const float v : r.weight.scale) EXPECT_TRUE(std::isfinite(v));
  const auto rtn = quantize_weight<qint4>(w.view(), group_affine<>{.group_size = 32}).dequantize();
  EXPECT_LT(output_error(x, n, w, r.dequantized), output_error(x, n, w, rtn));
}

TEST(Gptq, BadInputIsATypedErrorNamingTheModule) {
  const std::int64_t k = 48;
  gptq_hessian h(k, "encoder.0.query");
  const tensor<float> w(shape{4, k}, std::vector<float>(static_cast<std::size_t>(4 * k), 0.5f));
  // never reached
  try {
    (void)gptq_quantize<qint4>(w.view(), h);
    FAIL();
  } catch (const state_error& e) {
    EXPECT_NE(std::string(e.what()).find("encoder.0.query"), std::string::npos) << e.what();
  }
  // NaN / Inf activations
  std::vector<float> x(static_cast<std::size_t>(3 * k), 1.0f);
  x[static_cast<std::size_t>(k + 2)] = std::nanf("");
  try {
    h.add(x.data(), 3);
    FAIL();
  } catch (const value_error& e) {
    EXPECT_NE(std::string(e.what()).find("encoder.0.query"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("NaN"), std::string::npos) << e.what();
  }
  EXPECT_EQ(h.samples(), 0);
  x[static_cast<std::size_t>(k + 2)] = INFINITY;
  EXPECT_THROW(h.add(x.data(), 3), value_error);
  x[static_cast<std::size_t>(k + 2)] = 1.0f;
  h.add(x.data(), 3);
  // a group size that does not divide the features
  try {
    (void)gptq_quantize<qint4>(w.view(), h, group_affine<>{.group_size = 20});
    FAIL();
  } catch (const shape_error& e) {
    EXPECT_NE(std::string(e.what()).find("encoder.0.query"), std::string::npos) << e.what();
  }
  // a Hessian of the wrong size, a NaN weight, a NaN Hessian
  const tensor<float> wide(shape{4, k + 1}, std::vector<float>(static_cast<std::size_t>(4 * (k + 1)), 0.5f));
  EXPECT_THROW((void)gptq_quantize<qint4>(wide.view(), h), shape_error);
  tensor<float> nan_w = w;
  nan_w[3] = std::nanf("");
  EXPECT_THROW((void)gptq_quantize<qint4>(nan_w.view(), h), value_error);
  std::vector<double> hm = h.matrix();
  hm[1] = std::nan("");
  EXPECT_THROW((void)gptq_quantize<qint4>(w.view(), std::span<const double>(hm)), value_error);
  // an indefinite "Hessian" that no dampening fixes
  std::vector<double> bad(static_cast<std::size_t>(k * k), 0.0);
  for (std::int64_t i = 0; i < k; ++i) bad[static_cast<std::size_t>(i * k + i)] = 1.0;
  bad[1] = bad[static_cast<std::size_t>(k)] = 1e6;
  EXPECT_THROW((void)gptq_quantize<qint4>(w.view(), std::span<const double>(bad)), value_error);
}
