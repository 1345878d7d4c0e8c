// quanto's planar PackedTensor layout: hand-computed bytes, round trips, errors.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include <quanto/quantize/packing.hpp>

using namespace quanto;

TEST(Packing, FourBitsArePlanarAlongTheFirstDimension) {
  // 5 rows, 1 column: R = 3; byte r = q[r] | q[r+3] << 4 (no partner for row 2).
  const std::vector<std::uint8_t> q{1, 2, 3, 4, 5};
  const auto p = pack(tensor_view<const std::uint8_t>(q.data(), shape{5, 1}), 4);
  ASSERT_EQ(p.shape(), (shape{3, 1}));
  EXPECT_EQ(p[0], 0x41);
  EXPECT_EQ(p[1], 0x52);
  EXPECT_EQ(p[2], 0x03);
}

TEST(Packing, TwoBitsUseFourPlanes) {
  // 6 rows, 2 columns: R = 2; byte = q[r] | q[r+2]<<2 | q[r+4]<<4 (plane 3 empty).
  const std::vector<std::uint8_t> q{0, 1, 2, 3, 3, 2, 1, 0, 1, 1, 2, 2};
  const auto p = pack(tensor_view<const std::uint8_t>(q.data(), shape{6, 2}), 2);
  ASSERT_EQ(p.shape(), (shape{2, 2}));
  EXPECT_EQ(p[0], 0 | (3 << 2) | (1 << 4));  // rows 0, 2, 4 of column 0
  EXPECT_EQ(p[1], 1 | (2 << 2) | (1 << 4));
  EXPECT_EQ(p[2], 2 | (1 << 2) | (2 << 4));  // rows 1, 3, 5
  EXPECT_EQ(p[3], 3 | (0 << 2) | (2 << 4));
}

TEST(Packing, RoundTripsForManyShapes) {
  std::mt19937 rng(7);
  for (int bits : {2, 4}) {
    for (std::int64_t rows : {1, 2, 3, 4, 5, 7, 8, 9, 12, 33}) {
      for (std::int64_t cols : {1, 3, 16}) {
        std::vector<std::uint8_t> q(static_cast<std::size_t>(rows * cols));
        for (auto& v : q) v = static_cast<std::uint8_t>(rng() % (1u << bits));
        const tensor_view<const std::uint8_t> codes(q.data(), shape{rows, cols});
        const auto p = pack(codes, bits);
        EXPECT_EQ(p.shape()[0], (rows + 8 / bits - 1) / (8 / bits));
        const auto u = unpack(p.view(), bits, codes.shape());
        ASSERT_EQ(u.shape(), codes.shape());
        for (std::size_t i = 0; i < q.size(); ++i) EXPECT_EQ(u[i], q[i]) << bits << " bits " << rows << "x" << cols;
      }
    }
  }
}

TEST(Packing, FourDimensionalCodesPackTheFirstDimension) {
  std::vector<std::uint8_t> q(3 * 2 * 2 * 2);
  for (std::size_t i = 0; i < q.size(); ++i) q[i] = static_cast<std::uint8_t>(i % 16);
  const tensor_view<const std::uint8_t> codes(q.data(), shape{3, 2, 2, 2});
  const auto p = pack(codes, 4);
  EXPECT_EQ(p.shape(), (shape{2, 2, 2, 2}));
  EXPECT_EQ(p[0], q[0] | (q[16] << 4));
  const auto u = unpack(p.view(), 4, codes.shape());
  for (std::size_t i = 0; i < q.size(); ++i) EXPECT_EQ(u[i], q[i]);
}

TEST(Packing, Errors) {
  const std::vector<std::uint8_t> q{16, 0};
  EXPECT_THROW(pack(tensor_view<const std::uint8_t>(q.data(), shape{2}), 4), value_error);  // 16 needs 5 bits
  EXPECT_THROW(pack(tensor_view<const std::uint8_t>(q.data(), shape{2}), 3), unsupported_error);
  const std::vector<std::uint8_t> p{0, 0, 0};
  EXPECT_THROW(unpack(tensor_view<const std::uint8_t>(p.data(), shape{3}), 4, shape{8}), shape_error);
}
