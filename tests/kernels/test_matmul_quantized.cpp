// Quantized activations: the dynamic int8 policy (per-block int8 activations, integer dot products),
// w8a8 (int8 codes x int8 codes, exact int32: bit-identical on every ISA, -128 included) and float8
// activations. Each ISA this machine runs is checked against the scalar reference.
#include <gtest/gtest.h>

#include <bit>
#include <cstring>
#include <limits>

#include "matmul_support.hpp"

namespace {

using namespace kt;

template <class I>
class QuantizedMatmul : public IsaTest<I> {};
TYPED_TEST_SUITE(QuantizedMatmul, TestIsas);

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

/// dynamic on ISA I vs (1) the reference's dynamic result: same int8 activations and integer dots,
/// only the float combination order differs; (2) the exact path: the accuracy cost of int8
/// activations, which must stay small on normal data.
template <class I, class Q, class T, class S = default_scheme_t<Q>>
void check_dynamic(std::int64_t m, std::int64_t n, std::int64_t k, S scheme = {}, double max_rel = 0.02) {
  if constexpr (qk::UsableIsa<I>) {
    SCOPED_TRACE(std::string(Q::name) + " m=" + std::to_string(m) + " n=" + std::to_string(n) +
                 " k=" + std::to_string(k));
    const auto w = make_weight<Q, T>(n, k, static_cast<unsigned>(n + 3 * k), scheme);
    const auto p = qk::pack_weight(w);
    const std::vector<float> x = random_x<float>(m * k, 11);
    std::vector<float> dyn(static_cast<std::size_t>(m * n)), ref(dyn.size()), exact(dyn.size());
    qk::matmul<qk::dynamic_int8_activations, I>(p, x.data(), m, k, dyn.data(), n);
    qk::matmul<qk::dynamic_int8_activations, qk::isa::scalar>(p, x.data(), m, k, ref.data(), n);
    qk::matmul<qk::exact_activations, qk::isa::scalar>(p, x.data(), m, k, exact.data(), n);
    const auto r64 = reference_matmul(w, x, m, nullptr);
    for (std::size_t i = 0; i < dyn.size(); ++i)
      ASSERT_NEAR(dyn[i], ref[i], float_bound(k, r64.magnitude[i])) << "output " << i;
    const double rel = rel_l2(dyn, exact);
    std::printf("[ dynamic int8 vs exact, %s m=%lld n=%lld k=%lld group=%lld: relative L2 error %.4f ]\n",
                std::string(Q::name).c_str(), static_cast<long long>(m), static_cast<long long>(n),
                static_cast<long long>(k), static_cast<long long>(p.group), rel);
    EXPECT_LT(rel, max_rel);
    EXPECT_GT(rel, 0.0);  // it is an approximation: identical results would mean the policy did nothing
  }
}

TYPED_TEST(QuantizedMatmul, DynamicInt8EveryIntegerQtype) {
  using I = TypeParam;
  for (auto [m, n, k] : {std::tuple<int, int, int>{1, 7, 128}, {3, 17, 256}, {5, 9, 384}, {4, 33, 1024}, {2, 5, 130}}) {
    check_dynamic<I, qint8, float>(m, n, k);
    check_dynamic<I, qint8, bfloat16>(m, n, k);
    check_dynamic<I, qint4, bfloat16>(m, n, k);
    check_dynamic<I, qint4, float>(m, n, k, group_affine<true>{});
    check_dynamic<I, qint2, bfloat16>(m, n, k, {}, 0.05);
  }
  check_dynamic<I, qint4, bfloat16>(3, 12, 768, group_affine<>{64});
  check_dynamic<I, qint4, bfloat16>(3, 12, 768, group_affine<>{32});
  check_dynamic<I, qint4, bfloat16>(5, 12, 576, group_affine<>{96});  // AVX2 block mode, m > 4
  check_dynamic<I, qint4, float>(5, 7, 320);                          // groups of 64 and row padding
  check_dynamic<I, qint4, bfloat16>(2, 9, 4096);  // 32 groups: the vectorised per-group terms run more than once
  check_dynamic<I, qint2, bfloat16>(1, 9, 4096, {}, 0.05);
  check_dynamic<I, qint4, bfloat16>(3, 12, 4096, group_affine<>{no_group}, 0.03);  // one x block per row
}

TYPED_TEST(QuantizedMatmul, DynamicNanAndZeroBlocks) {
  using I = TypeParam;
  if constexpr (qk::UsableIsa<I>) {
    const auto p = qk::pack_weight(make_weight<qint4, float>(4, 256, 1));
    std::vector<float> x(3 * 256, 0.0f);  // row 0: zeros
    for (int e = 0; e < 256; ++e) x[static_cast<std::size_t>(256 + e)] = float(e % 7) - 3.0f;
    for (int e = 0; e < 256; ++e) x[static_cast<std::size_t>(512 + e)] = 1.0f;
    x[600] = std::numeric_limits<float>::infinity();  // row 2: an Inf
    std::vector<float> y(12);
    qk::matmul<qk::dynamic_int8_activations, I>(p, x.data(), 3, 256, y.data(), 4);
    for (int r = 0; r < 4; ++r) {
      EXPECT_EQ(y[static_cast<std::size_t>(r)], 0.0f);
      EXPECT_TRUE(std::isfinite(y[static_cast<std::size_t>(4 + r)]));
      EXPECT_TRUE(std::isnan(y[static_cast<std::size_t>(8 + r)]));
    }
  }
}

TYPED_TEST(QuantizedMatmul, W8A8IsExactAndBitIdenticalToTheReference) {
  using I = TypeParam;
  if constexpr (qk::UsableIsa<I>) {
    for (bool with_min : {true, false})  // a -128 activation code switches the AVX2 kernel to its int16 path
      for (auto [m, n, k] : {std::tuple<int, int, int>{1, 1, 1}, {1, 9, 100}, {5, 13, 257}, {6, 40, 2048}}) {
        auto w = make_weight<qint8, bfloat16>(n, k, static_cast<unsigned>(k));
        w.data[0] = -128;  // the corner a pmaddubsw sign trick gets wrong
        const auto p = qk::pack_weight(w);
        std::vector<std::int8_t> xq(static_cast<std::size_t>(m * k));
        std::mt19937 rng(static_cast<unsigned>(m));
        for (auto& v : xq) v = static_cast<std::int8_t>(static_cast<int>(rng() % 255) - 127);
        if (with_min) xq[0] = -128;
        const float sx = 0.0123f;
        std::vector<float> bias = random_x<float>(n, 2);
        std::vector<float> y(static_cast<std::size_t>(m * n)), yr(y.size());
        qk::matmul_quantized<qint8, I>(p, xq.data(), sx, m, k, y.data(), n, bias.data());
        qk::matmul_quantized<qint8, qk::isa::scalar>(p, xq.data(), sx, m, k, yr.data(), n, bias.data());
        ASSERT_EQ(0, std::memcmp(y.data(), yr.data(), y.size() * sizeof(float)));
        for (int i = 0; i < m; ++i)
          for (int r = 0; r < n; ++r) {
            std::int64_t dot = 0;
            for (int e = 0; e < k; ++e)
              dot +=
                  std::int64_t{w.data[static_cast<std::size_t>(r * k + e)]} * xq[static_cast<std::size_t>(i * k + e)];
            const float want = std::fma(static_cast<float>(dot) * to_float(w.scale[static_cast<std::size_t>(r)]), sx,
                                        bias[static_cast<std::size_t>(r)]);
            ASSERT_EQ(y[static_cast<std::size_t>(i * n + r)], want) << i << "," << r;
          }
      }
  }
}

template <class I, class QX, class Q>
void check_float8(std::int64_t m, std::int64_t n, std::int64_t k) {
  if constexpr (qk::UsableIsa<I>) {
    const auto w = make_weight<Q, float>(n, k, 5);
    const auto p = qk::pack_weight(w);
    const std::vector<float> xf = random_x<float>(m * k, 3);
    tensor<float> xt(shape{m, k});
    std::memcpy(xt.data(), xf.data(), xf.size() * sizeof(float));
    const float sx = activation_scale<QX>(xt.view());
    const auto qa = quantize_activation<QX>(xt.view(), sx);
    std::vector<float> y(static_cast<std::size_t>(m * n));
    qk::matmul_quantized<QX, I>(p, qa.data.data(), sx, m, k, y.data(), n);
    // reference: the activation's dequantized values through the float64 product
    const tensor<float> xd = qa.dequantize();
    const std::vector<float> xdv(xd.data(), xd.data() + xd.size());
    const auto ref = reference_matmul(w, xdv, m, nullptr);
    for (std::size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], ref.y[i], float_bound(k, ref.magnitude[i]) * 2) << i;
  }
}

TYPED_TEST(QuantizedMatmul, Float8Activations) {
  using I = TypeParam;
  check_float8<I, qfloat8_e4m3fn, qfloat8_e4m3fn>(3, 17, 256);
  check_float8<I, qfloat8_e4m3fn, qint8>(2, 9, 130);
  check_float8<I, qfloat8_e5m2, qfloat8_e5m2>(4, 8, 512);
  check_float8<I, qint8, qfloat8_e4m3fn>(1, 8, 64);
}

// Every ISA's activation-block quantization (backend<I>::quantize_block) must give the reference's
// codes, sum and scale exactly, ties, clamps, zeros, NaN and Inf included, at lengths that are and
// are not whole vectors.
template <class I>
class DynamicActivationBlocks : public IsaTest<I> {};
TYPED_TEST_SUITE(DynamicActivationBlocks, TestIsas);

template <class I>
void check_blocks() {
  if constexpr (qk::UsableIsa<I>) {
    for (const int n : {128, 96, 32, 33, 7}) {
      for (int trial = 0; trial < 200; ++trial) {
        std::vector<float> x = random_x<float>(n, static_cast<unsigned>(trial), trial % 3 == 0 ? 1e-30f : 2.0f);
        if (trial % 5 == 1)
          for (int e = 0; e < n; e += 3) x[static_cast<std::size_t>(e)] = float(e % 11) * 0.5f - 2.5f;  // ties at .5
        if (trial == 7) x.assign(static_cast<std::size_t>(n), 0.0f);
        if (trial == 8) x[static_cast<std::size_t>(n / 3)] = std::nanf("");
        if (trial == 9) x[static_cast<std::size_t>(n - 1)] = -std::numeric_limits<float>::infinity();
        if (trial == 10) x[3] = std::numeric_limits<float>::max();
        std::int8_t a[128], b[128];
        std::int32_t sa = -1, sb = -2;
        const float da = qk::backend<qk::isa::scalar>::quantize_block(x.data(), n, a, sa);
        const float db = qk::backend<I>::quantize_block(x.data(), n, b, sb);
        ASSERT_EQ(std::bit_cast<std::uint32_t>(da), std::bit_cast<std::uint32_t>(db)) << n << " " << trial;
        ASSERT_EQ(sa, sb) << n << " " << trial;
        ASSERT_EQ(0, std::memcmp(a, b, static_cast<std::size_t>(n))) << n << " " << trial;
      }
    }
  }
}

TYPED_TEST(DynamicActivationBlocks, EqualScalar) { check_blocks<TypeParam>(); }

TEST(QuantizedMatmulApi, W8A8RefusesAnOverflowingK) {
  const auto p = qk::pack_weight(make_weight<qint8, float>(1, (1 << 17) + 32, 1));
  std::vector<std::int8_t> x(static_cast<std::size_t>(p.k));
  std::vector<float> y(1);
  EXPECT_THROW(qk::matmul_quantized<qint8>(p, x.data(), 1.0f, 1, p.k, y.data(), 1), unsupported_error);
}

}  // namespace
