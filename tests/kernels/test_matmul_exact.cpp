// The weight-only matmul with float activations, on every ISA this machine runs, for every qtype x
// model dtype: within the float32 accumulation bound of a float64 product computed from the FILE
// layout; one-hot activations read single weights bit for bit; odd shapes, unaligned and strided
// inputs, bias, bfloat16/float16 activations and outputs, NaN, threads.
#include <gtest/gtest.h>

#include <cstring>

#include "matmul_support.hpp"

namespace {

using namespace kt;

template <class I>
class ExactMatmul : public IsaTest<I> {};
TYPED_TEST_SUITE(ExactMatmul, TestIsas);

/// Runs matmul<exact, I> on (m, n, k) and checks every output against the bound. x is placed at an
/// odd address with a row stride > k; y likewise.
template <class I, class Q, class T, class X = float, class Y = float, class S = default_scheme_t<Q>>
void check(std::int64_t m, std::int64_t n, std::int64_t k, S scheme = {}, bool with_bias = true) {
  if constexpr (qk::UsableIsa<I>) {
    SCOPED_TRACE(std::string(Q::name) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
                 " k=" + std::to_string(k));
    const auto w = make_weight<Q, T>(n, k, static_cast<unsigned>(n * 31 + k), scheme);
    const auto p = qk::pack_weight(w);
    const std::vector<X> x = random_x<X>(m * k, static_cast<unsigned>(m + 5));
    std::vector<float> bias;
    if (with_bias) bias = random_x<float>(n, 9);
    const std::int64_t ldx = k + 3, ldy = n + 2;
    std::vector<X> xs(static_cast<std::size_t>(m * ldx + 1), X(0.0f));
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t e = 0; e < k; ++e)
        xs[static_cast<std::size_t>(1 + i * ldx + e)] = x[static_cast<std::size_t>(i * k + e)];
    std::vector<Y> ys(static_cast<std::size_t>(m * ldy + 1), Y(-7.0f));
    matmul_on<qk::exact_activations, I>(p, xs.data() + 1, m, ldx, ys.data() + 1, ldy,
                                        with_bias ? bias.data() : nullptr);
    const auto ref = reference_matmul(w, x, m, with_bias ? bias.data() : nullptr);
    for (std::int64_t i = 0; i < m; ++i) {
      for (std::int64_t r = 0; r < n; ++r) {
        const double got = to_double(ys[static_cast<std::size_t>(1 + i * ldy + r)]);
        const double want = ref.y[static_cast<std::size_t>(i * n + r)];
        double bound = float_bound(k, ref.magnitude[static_cast<std::size_t>(i * n + r)]);
        if constexpr (!std::is_same_v<Y, float>)
          bound += std::fabs(want) * (std::is_same_v<Y, bfloat16> ? 1.0 / 256 : 1.0 / 2048);
        ASSERT_NEAR(got, want, bound) << "output [" << i << ", " << r << "]";
      }
      if (i + 1 < m) {
        for (std::int64_t r = n; r < ldy; ++r)  // the stride gap is not written
          ASSERT_EQ(to_double(ys[static_cast<std::size_t>(1 + i * ldy + r)]), -7.0);
      }
    }
  }
}

template <class I, class T>
void all_qtypes(std::int64_t m, std::int64_t n, std::int64_t k) {
  check<I, qint8, T>(m, n, k);
  check<I, qfloat8_e4m3fn, T>(m, n, k);
  check<I, qfloat8_e5m2, T>(m, n, k);
  check<I, qfloat8_e4m3fnuz, T>(m, n, k);
  check<I, qint4, T>(m, n, k);
  check<I, qint2, T>(m, n, k);
  check<I, qint4, T>(m, n, k, group_affine<true>{});
}

TYPED_TEST(ExactMatmul, EveryQtypeAndDtypeOddShapes) {
  using I = TypeParam;
  for (auto [m, n, k] :
       {std::tuple<int, int, int>{1, 1, 1}, {1, 5, 33}, {3, 17, 200}, {5, 9, 256}, {7, 33, 384}, {4, 8, 130}})
    all_qtypes<I, float>(m, n, k);
  all_qtypes<I, bfloat16>(2, 11, 512);
  all_qtypes<I, float16>(6, 10, 640);
}

TYPED_TEST(ExactMatmul, GroupSizes) {
  using I = TypeParam;
  check<I, qint4, bfloat16>(3, 12, 768, group_affine<>{64});
  check<I, qint4, float>(5, 7, 320);                          // groups of 64 and row padding (k_padded 384)
  check<I, qint2, float>(6, 7, 640, group_affine<>{128});     // 2-bit, 5 groups, padding
  check<I, qint4, bfloat16>(3, 12, 768, group_affine<>{32});  // odd multiples of 32: AVX2 block mode
  check<I, qint4, bfloat16>(3, 12, 768, group_affine<>{96});
  check<I, qint4, float>(2, 12, 768, group_affine<>{no_group});
  check<I, qint2, bfloat16>(5, 12, 768, group_affine<>{256});
  check<I, qint2, bfloat16>(5, 12, 768, group_affine<true>{64});
}

// From m = 5 the AVX2 exact path decodes blocks of 8 weight rows per 256-element slice and runs
// 6 x 2 micro-tiles: tiles of 6 with remainders, 8-row blocks with odd tails, slices cut by group
// boundaries (192), a last slice shorter than 256, and m large enough for several tiles.
TYPED_TEST(ExactMatmul, ManyActivationRows) {
  using I = TypeParam;
  check<I, qint8, float>(13, 17, 1000);
  check<I, qint8, bfloat16>(24, 40, 384);
  check<I, qfloat8_e4m3fn, float>(11, 9, 520);
  check<I, qfloat8_e5m2, float16>(6, 3, 64);
  check<I, qint4, float>(19, 23, 768, group_affine<>{192});  // a group boundary inside a slice
  check<I, qint4, bfloat16>(8, 16, 1536, group_affine<>{128});
  check<I, qint4, float>(7, 5, 448, group_affine<>{64});
  check<I, qint2, float>(9, 11, 640, group_affine<>{128});
  check<I, qint4, float>(12, 10, 300, group_affine<>{no_group});
}

TYPED_TEST(ExactMatmul, LowPrecisionActivationsAndOutputs) {
  using I = TypeParam;
  check<I, qint4, bfloat16, bfloat16, bfloat16>(3, 20, 256);
  check<I, qint8, bfloat16, bfloat16, float>(5, 20, 384);
  check<I, qfloat8_e4m3fn, float16, float16, float16>(2, 9, 128);
  check<I, qint2, float, float, bfloat16>(1, 9, 1024, {}, false);
}

TYPED_TEST(ExactMatmul, OneHotActivationsReadSingleWeightsExactly) {
  using I = TypeParam;
  const auto run = [](const auto& w) {
    const auto p = qk::pack_weight(w);
    const std::int64_t n = p.n, k = p.k;
    for (std::int64_t j : {std::int64_t{0}, std::int64_t{1}, std::int64_t{17}, std::int64_t{31}, std::int64_t{32},
                           std::int64_t{63}, std::int64_t{64}, std::int64_t{100}, k - 1}) {
      std::vector<float> x(static_cast<std::size_t>(k), 0.0f);
      x[static_cast<std::size_t>(j)] = 1.0f;
      std::vector<float> y(static_cast<std::size_t>(n));
      matmul_on<qk::exact_activations, I>(p, x.data(), std::int64_t{1}, k, y.data(), n);
      const auto dq = exact_weight(w);
      for (std::int64_t r = 0; r < n; ++r) {
        // scale * code in float, minus the shift: what a one-hot row computes with no rounding left
        const double e = dq[static_cast<std::size_t>(r * k + j)];
        ASSERT_NEAR(y[static_cast<std::size_t>(r)], e, std::fabs(e) * 1e-6 + 1e-7) << "row " << r << " col " << j;
      }
    }
  };
  run(make_weight<qint8, float>(9, 130, 1));
  run(make_weight<qfloat8_e4m3fn, bfloat16>(9, 130, 2));
  run(make_weight<qfloat8_e4m3fnuz, float>(9, 130, 2));
  run(make_weight<qint4, bfloat16>(9, 256, 3));
  run(make_weight<qint2, float>(9, 384, 4));
  run(make_weight<qint4, float>(9, 101, 5));
  // the same through the many-row kernels: row i of x is one-hot at column j_i
  const auto run_batch = [](const auto& w) {
    const auto p = qk::pack_weight(w);
    const std::int64_t n = p.n, k = p.k;
    const std::vector<std::int64_t> cols{0, 1, 31, 64, 100, 255, 256, k - 1};
    const auto m = static_cast<std::int64_t>(cols.size());
    std::vector<float> x(static_cast<std::size_t>(m * k), 0.0f);
    for (std::int64_t i = 0; i < m; ++i) x[static_cast<std::size_t>(i * k + cols[static_cast<std::size_t>(i)])] = 1.0f;
    std::vector<float> y(static_cast<std::size_t>(m * n));
    matmul_on<qk::exact_activations, I>(p, x.data(), m, k, y.data(), n);
    const auto dq = exact_weight(w);
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t r = 0; r < n; ++r) {
        const double e = dq[static_cast<std::size_t>(r * k + cols[static_cast<std::size_t>(i)])];
        ASSERT_NEAR(y[static_cast<std::size_t>(i * n + r)], e, std::fabs(e) * 1e-6 + 1e-7)
            << "row " << r << " col " << cols[static_cast<std::size_t>(i)];
      }
  };
  run_batch(make_weight<qint8, float>(11, 300, 6));
  run_batch(make_weight<qfloat8_e4m3fnuz, bfloat16>(11, 300, 7));
  run_batch(make_weight<qint4, float>(11, 384, 8));
  run_batch(make_weight<qint2, float>(11, 512, 9));
}

TYPED_TEST(ExactMatmul, NanActivationGivesNanRowsOnly) {
  using I = TypeParam;
  const auto p = qk::pack_weight(make_weight<qint4, float>(6, 256, 1));
  std::vector<float> x = random_x<float>(2 * 256, 3);
  x[300] = std::nanf("");
  std::vector<float> y(12);
  matmul_on<qk::exact_activations, I>(p, x.data(), std::int64_t{2}, std::int64_t{256}, y.data(), std::int64_t{6});
  for (int r = 0; r < 6; ++r) {
    EXPECT_FALSE(std::isnan(y[static_cast<std::size_t>(r)]));
    EXPECT_TRUE(std::isnan(y[static_cast<std::size_t>(6 + r)]));
  }
}

TYPED_TEST(ExactMatmul, NanActivationGivesNanRowsOnlyInABatch) {
  using I = TypeParam;
  const auto p = qk::pack_weight(make_weight<qint8, float>(10, 384, 2));
  std::vector<float> x = random_x<float>(9 * 384, 4);
  x[4 * 384 + 300] = std::nanf("");
  x[7 * 384 + 3] = INFINITY;
  std::vector<float> y(90);
  matmul_on<qk::exact_activations, I>(p, x.data(), std::int64_t{9}, std::int64_t{384}, y.data(), std::int64_t{10});
  for (int i = 0; i < 9; ++i)
    for (int r = 0; r < 10; ++r) {
      const float v = y[static_cast<std::size_t>(i * 10 + r)];
      if (i == 4)
        EXPECT_TRUE(std::isnan(v)) << i << "," << r;
      else if (i == 7)
        EXPECT_FALSE(std::isfinite(v)) << i << "," << r;
      else
        EXPECT_TRUE(std::isfinite(v)) << i << "," << r;
    }
}

TYPED_TEST(ExactMatmul, SameBitsForAnyThreadCountAndTaskSize) {
  using I = TypeParam;
  const auto p = qk::pack_weight(make_weight<qint4, bfloat16>(200, 512, 1));
  const std::vector<float> x = random_x<float>(5 * 512, 2);
  std::vector<float> first;
  for (int threads : {1, 2, 3})
    for (std::int64_t rows : {0, 1, 7, 64}) {
      std::vector<float> y(5 * 200);
      qk::matmul_options opt;
      opt.parallel.threads = threads;
      opt.rows_per_task = rows;
      matmul_on<qk::exact_activations, I>(p, x.data(), std::int64_t{5}, std::int64_t{512}, y.data(), std::int64_t{200},
                                          static_cast<const float*>(nullptr), opt);
      if (first.empty())
        first = y;
      else
        ASSERT_EQ(0, std::memcmp(first.data(), y.data(), y.size() * sizeof(float))) << threads << " threads, " << rows;
    }
}

TEST(ExactMatmulApi, TensorOverloadAndErrors) {
  const auto w = make_weight<qint8, float>(6, 40, 1);
  const auto p = qk::pack_weight(w);
  tensor<float> x(shape{2, 3, 40});
  const auto xs = random_x<float>(240, 1);
  std::memcpy(x.data(), xs.data(), 240 * sizeof(float));
  const std::vector<float> bias(6, 0.5f);
  const tensor<float> y = qk::matmul(p, x.view(), bias);
  EXPECT_EQ(y.shape(), (shape{2, 3, 6}));
  std::vector<float> y2(36);
  qk::matmul(p, x.data(), 6, 40, y2.data(), 6, bias.data());
  EXPECT_EQ(0, std::memcmp(y.data(), y2.data(), 36 * sizeof(float)));
  EXPECT_THROW(qk::matmul(p, tensor<float>(shape{2, 41}).view()), shape_error);
  EXPECT_THROW(qk::matmul(p, x.view(), std::vector<float>(5)), shape_error);
  EXPECT_THROW(qk::matmul(p, x.data(), 6, 39, y2.data(), 6), shape_error);
  EXPECT_THROW(qk::matmul(p, x.data(), 6, 40, y2.data(), 5), shape_error);
  EXPECT_THROW(qk::matmul(p, x.data(), -1, 40, y2.data(), 6), shape_error);
  qk::matmul(p, x.data(), 0, 40, y2.data(), 6);  // m = 0: nothing to do
}

TEST(ExactMatmulApi, NativeIsaIsTheBestUsable) {
  if constexpr (QUANTO_HAS_AVX2)
    EXPECT_EQ(qk::native_isa::name, "avx2");
  else
    EXPECT_EQ(qk::native_isa::name, "scalar");
  std::printf("[ native ISA: %s; target: %s ]\n", std::string(qk::native_isa::name).c_str(),
              std::string(qk::target_isa::name).c_str());
}

}  // namespace
