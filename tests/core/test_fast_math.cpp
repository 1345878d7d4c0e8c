// Built with -ffast-math (see tests/CMakeLists.txt): the NaN/Inf checks test bits, so they must
// still catch non-finite weights when the compiler assumes there are none.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include <quanto/quanto.hpp>

using namespace quanto;

namespace {
// Make NaN and Inf from bits so that the compiler cannot fold them away under -ffinite-math-only.
float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
}  // namespace

TEST(FastMath, NonFiniteWeightsAreStillRejected) {
#ifndef __FAST_MATH__
  GTEST_SKIP() << "this test is meant to be built with -ffast-math";
#endif
  for (std::uint32_t bad : {0x7FC00000u, 0xFFC00001u, 0x7F800001u, 0x7F800000u, 0xFF800000u}) {
    tensor<float> w(shape{2, 4});
    w[5] = from_bits(bad);
    EXPECT_THROW(quantize_weight<qint8>(w), value_error) << std::hex << bad;
    EXPECT_THROW(quantize_weight<qint4>(w), value_error) << std::hex << bad;
    tensor<bfloat16> h(shape{2, 4});
    h[3] = bfloat16(from_bits(bad));
    EXPECT_THROW(quantize_weight<qfloat8>(h), value_error) << std::hex << bad;
    EXPECT_FALSE(is_finite_bits(from_bits(bad)));
  }
  EXPECT_TRUE(is_nan_bits(from_bits(0x7FC00000u)));
  EXPECT_TRUE(float16::from_bits(0x7E00).is_nan());
  EXPECT_TRUE(float8_e4m3fnuz::from_bits(0x80).is_nan());
}
