// Group-wise affine quantization (qint2/qint4): the group-size rule, grouping, Max, zero-point,
// HQQ's guarantees, exact ramps, constant groups, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include <quanto/quanto.hpp>

using namespace quanto;

TEST(GroupSize, QuantosModuleRule) {
  // The examples of the spec (§3.1), computed by hand from quanto's loop.
  const std::pair<std::int64_t, std::optional<std::int64_t>> table[] = {
      {32, std::nullopt}, {64, std::nullopt},  {96, std::nullopt}, {128, std::nullopt}, {160, 32},
      {192, 96},          {200, std::nullopt}, {256, 128},         {320, 64},           {1000, std::nullopt},
      {4096, 128},        {11008, 128},        {14336, 128},       {129, std::nullopt}, {224, 32}};
  for (const auto& [in, gs] : table) EXPECT_EQ(default_group_size(8, in), gs) << "in = " << in;
  EXPECT_EQ(default_group_size(shape{6, 32, 3, 3}), 96);  // conv: in = 32*3*3 = 288
  EXPECT_EQ(default_group_size(shape{8, 4, 3, 3}), std::nullopt);
}

TEST(Grouping, AxisMinusOneIsQuantosPermutation) {
  // base [A*gs, D] reshaped (A, gs, D), permuted (1, 2, 0), reshaped (gs, D*A).
  const std::int64_t A = 3, gs = 2, D = 4;
  tensor<int> base(shape{A * gs, D});
  for (std::size_t i = 0; i < base.size(); ++i) base[i] = static_cast<int>(i);
  const auto g = group(base.view(), qaxis::last, gs);
  ASSERT_EQ(g.shape(), (shape{gs, D * A}));
  for (std::int64_t a = 0; a < A; ++a)
    for (std::int64_t j = 0; j < gs; ++j)
      for (std::int64_t d = 0; d < D; ++d)
        EXPECT_EQ(g[static_cast<std::size_t>(j * D * A + d * A + a)],
                  base[static_cast<std::size_t>((a * gs + j) * D + d)]);
  const auto back = ungroup(g.view(), qaxis::last, gs, base.shape());
  for (std::size_t i = 0; i < base.size(); ++i) EXPECT_EQ(back[i], base[i]);
  EXPECT_THROW(group(base.view(), qaxis::last, 4), shape_error);  // 4 does not divide 6
  EXPECT_THROW(group(base.view(), qaxis::first, 3), shape_error);
}

TEST(Affine, MaxScaleShiftAndExactRamp) {
  // One group of 16 values on the grid -1 + 0.25*k: scale 0.25, shift 1, codes 0..15, exact.
  tensor<float> w(shape{2, 16});
  for (int k = 0; k < 16; ++k) {
    w[static_cast<std::size_t>(k)] = -1.0f + 0.25f * static_cast<float>(k);
    w[static_cast<std::size_t>(16 + k)] = 2.0f * static_cast<float>(15 - k);
  }
  const auto q = quantize_weight<qint4>(w);
  EXPECT_FALSE(q.group_size.has_value());  // in = 16 <= 128: per channel
  ASSERT_EQ(q.scale.shape(), (shape{2, 1}));
  EXPECT_EQ(q.scale[0], 0.25f);
  EXPECT_EQ(q.shift[0], 1.0f);
  EXPECT_EQ(q.scale[1], 2.0f);
  EXPECT_EQ(q.shift[1], -0.0f);
  const auto codes = q.unpack();
  for (int k = 0; k < 16; ++k) {
    EXPECT_EQ(codes[static_cast<std::size_t>(k)], k);
    EXPECT_EQ(codes[static_cast<std::size_t>(16 + k)], 15 - k);
  }
  const auto dq = q.dequantize();
  for (std::size_t i = 0; i < w.size(); ++i) EXPECT_EQ(dq[i], w[i]);
}

TEST(Affine, ConstantGroupsDequantizeExactly) {
  tensor<bfloat16> w(shape{4, 256});
  for (std::size_t i = 0; i < w.size(); ++i)
    w[i] = bfloat16(i < 128 ? 0.0f : i < 512 ? -1.25f : 0.1f * static_cast<float>(i % 7));
  for (auto id : {qtype_id::qint2, qtype_id::qint4}) {
    visit_qtype(id, [&]<class Q>(Q) {
      if constexpr (LowBitQType<Q>) {
        for (const bool hqq : {false, true}) {
          const auto q = hqq ? quantize_weight<Q>(w, group_affine<>{}, hqq_optimizer{}) : quantize_weight<Q>(w);
          EXPECT_EQ(q.group_size, 128);
          const auto dq = q.dequantize();
          for (std::size_t i = 0; i < 512; ++i) EXPECT_EQ(static_cast<float>(dq[i]), static_cast<float>(w[i])) << i;
          for (std::size_t i = 0; i < q.scale.size(); ++i) EXPECT_FALSE(is_nan_bits(static_cast<float>(q.scale[i])));
        }
      }
    });
  }
}

TEST(Affine, ZeroPointStoresAnIntegerShift) {
  tensor<float> w(shape{2, 4});
  const float v[] = {-1.0f, 0.0f, 1.0f, 2.0f, 0.5f, 1.0f, 2.0f, 3.5f};
  for (std::size_t i = 0; i < 8; ++i) w[i] = v[i];
  const auto q = quantize_weight<qint2>(w, group_affine<true>{});
  static_assert(std::is_same_v<std::decay_t<decltype(q.shift[0])>, std::uint8_t>);
  // Row 0: scale 3/3 = 1, shift 1 -> zero-point round(1/1) = 1; codes round(x/1) + 1.
  EXPECT_EQ(q.scale[0], 1.0f);
  EXPECT_EQ(q.shift[0], 1);
  const auto codes = q.unpack();
  EXPECT_EQ(codes[0], 0);
  EXPECT_EQ(codes[3], 3);
  const auto dq = q.dequantize();
  for (std::size_t i = 0; i < 4; ++i) EXPECT_EQ(dq[i], v[i]);
}

TEST(Affine, HqqNeverIncreasesTheMeanError) {
  std::mt19937 rng(3);
  std::normal_distribution<float> n;
  tensor<float16> w(shape{16, 256});
  for (auto& x : w) x = float16(n(rng));
  const auto mean_err = [&](const tensor<float16>& dq) {
    double e = 0;
    for (std::size_t i = 0; i < w.size(); ++i)
      e += std::abs(static_cast<double>(static_cast<float>(dq[i])) - static_cast<float>(w[i]));
    return e / static_cast<double>(w.size());
  };
  const auto base = quantize_weight<qint4>(w);
  const auto hqq = quantize_weight<qint4>(w, group_affine<>{}, hqq_optimizer{});
  for (std::size_t i = 0; i < base.scale.size(); ++i) EXPECT_EQ(base.scale[i].to_bits(), hqq.scale[i].to_bits());
  EXPECT_LE(mean_err(hqq.dequantize()), mean_err(base.dequantize()));
  // iters = 0 is Max.
  const auto none = quantize_weight<qint4>(w, group_affine<>{}, hqq_optimizer{.iters = 0});
  for (std::size_t i = 0; i < base.shift.size(); ++i) EXPECT_EQ(none.shift[i].to_bits(), base.shift[i].to_bits());
}

TEST(Affine, ExplicitGroupSizesAndAxisMinusOne) {
  tensor<float> w(shape{64, 12});
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(static_cast<float>(i));
  const auto q = quantize_weight<qint4>(w, group_affine<>{32, qaxis::last});
  EXPECT_EQ(q.codes_shape(), (shape{32, 24}));
  EXPECT_EQ(q.scale.shape(), (shape{1, 24}));
  const auto dq = q.dequantize();
  EXPECT_EQ(dq.shape(), w.shape());
  for (std::size_t i = 0; i < w.size(); ++i) EXPECT_NEAR(dq[i], w[i], 2.0f / 15.0f);
  EXPECT_THROW(quantize_weight<qint4>(w, group_affine<>{5}), shape_error);  // 5 does not divide 12
  const auto ungrouped = quantize_weight<qint2>(w, group_affine<>{no_group});
  EXPECT_EQ(ungrouped.scale.shape(), (shape{64, 1}));
  EXPECT_EQ(ungrouped.packed.shape(), (shape{16, 12}));
}

TEST(Affine, ValidateCatchesMismatchedParts) {
  tensor<float> w(shape{8, 256});
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i % 13);
  auto q = quantize_weight<qint4>(w);
  EXPECT_NO_THROW(q.validate());
  q.original_shape = shape{8, 128};
  EXPECT_THROW(q.validate(), shape_error);
}
