// Tests of quanto::float16 and quanto::bfloat16 against an independent table-search reference
// (tests/support/float_reference.hpp: the rules of PyTorch's c10 scalar casts, no library code).
// Everything that touches floats goes through bit patterns or doubles that are normal numbers, so
// the suite also holds under -ffast-math (finite-math, flush-to-zero).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <quanto/core/bfloat16.hpp>
#include <quanto/core/float16.hpp>

#include "../support/float_reference.hpp"

namespace {

#ifdef NDEBUG
constexpr std::uint32_t kRandomSamples = 4'000'000;
#else
constexpr std::uint32_t kRandomSamples = 400'000;
#endif

using namespace float_reference;

// The c10 scalar casts: NaN keeps its sign in float16 and is always 0x7FC0 in bfloat16; overflow is
// an infinity.
constexpr Spec kHalf{"float16", 5, 10, 15, NanRule::ieee, false, 0x7E00u, 0xFE00u, 0x7C00u, 0xFC00u, 0x7C00u, 0xFC00u};
constexpr Spec kBf16{"bfloat16", 8, 7, 127, NanRule::ieee, false, 0x7FC0u, 0x7FC0u, 0x7F80u, 0xFF80u, 0x7F80u, 0xFF80u};

// Float bits that edge_inputs also probes around, beside those it always takes: the float16 max
// (65504), its overflow tie (65520) and 2^16; the bfloat16 overflow tie and the float below it;
// float16's tie with zero (2^-25) and its neighbours.
const std::vector<std::uint32_t> kExtraBoundaries = {0x477FE000u, 0x477FF000u, 0x47800000u, 0x7F7F8000u,
                                                     0x7F7F7FFFu, 0x33000000u, 0x33000001u, 0x32FFFFFFu};

// ---- layout and compile-time use ------------------------------------------------------------------

template <class T>
constexpr bool plain_16_bit =
    std::is_trivially_copyable_v<T>&& std::is_standard_layout_v<T>&& std::is_trivially_default_constructible_v<T> &&
    sizeof(T) == 2 && alignof(T) == 2 && !std::is_convertible_v<float, T> && !std::is_convertible_v<T, float>;
static_assert(plain_16_bit<quanto::float16>);
static_assert(plain_16_bit<quanto::bfloat16>);

static_assert(quanto::float16(1.0f).to_bits() == 0x3C00);
static_assert(quanto::float16(-2.0f).to_bits() == 0xC000);
static_assert(static_cast<float>(quanto::float16::from_bits(0x3555)) == 0x1.554p-2f);
static_assert(quanto::bfloat16(1.0f).to_bits() == 0x3F80);
static_assert(quanto::bfloat16(3.140625f).to_bits() == 0x4049);
static_assert(static_cast<float>(quanto::bfloat16::from_bits(0xC049)) == -3.140625f);
static_assert(quanto::float16::from_float_saturate(1e9f).to_bits() == 0x7BFF);

// ---- tests ------------------------------------------------------------------------------------------

TEST(Float16, AllCodesDecodeExactlyAndRoundTrip) { check_all_codes<quanto::float16>(kHalf); }
TEST(BFloat16, AllCodesDecodeExactlyAndRoundTrip) { check_all_codes<quanto::bfloat16>(kBf16); }

TEST(Float16, EdgeInputsMatchReference) {
  const Table t = make_table(kHalf);
  ASSERT_EQ(t.max_code, 0x7BFFu);
  ASSERT_EQ(t.values.back(), 65504.0);
  ASSERT_EQ(t.virtual_next, 65536.0);
  ASSERT_EQ(kHalf.inf_pos, t.max_code + 1u);  // IEEE-like: the code after max is inf
  check_inputs<quanto::float16>(kHalf, t, edge_inputs(t, kExtraBoundaries));
}

TEST(BFloat16, EdgeInputsMatchReference) {
  const Table t = make_table(kBf16);
  ASSERT_EQ(t.max_code, 0x7F7Fu);
  ASSERT_EQ(t.virtual_next, std::ldexp(1.0, 128));
  ASSERT_EQ(kBf16.inf_pos, t.max_code + 1u);  // IEEE-like: the code after max is inf
  check_inputs<quanto::bfloat16>(kBf16, t, edge_inputs(t, kExtraBoundaries));
}

TEST(Float16, RandomInputsMatchReference) {
  const Table t = make_table(kHalf);
  check_inputs<quanto::float16>(kHalf, t, random_inputs(t, kRandomSamples, 20240611u));
}

TEST(BFloat16, RandomInputsMatchReference) {
  const Table t = make_table(kBf16);
  check_inputs<quanto::bfloat16>(kBf16, t, random_inputs(t, kRandomSamples, 20240612u));
}

// Opt-in (--gtest_also_run_disabled_tests): every one of the 2^32 floats against the reference.
TEST(Float16, DISABLED_EveryFloatMatchesReference) { check_every_float<quanto::float16>(kHalf); }
TEST(BFloat16, DISABLED_EveryFloatMatchesReference) { check_every_float<quanto::bfloat16>(kBf16); }

TEST(Float16, KnownValues) {
  using quanto::float16;
  EXPECT_EQ(float16(65504.0f).to_bits(), 0x7BFFu);
  EXPECT_EQ(float16(65519.996f).to_bits(), 0x7BFFu);
  EXPECT_EQ(float16(65520.0f).to_bits(), 0x7C00u);  // tie with 65536 goes to the even code: inf
  EXPECT_EQ(float16(-1e10f).to_bits(), 0xFC00u);
  EXPECT_EQ(float16(ffrom(0x7F800000u)).to_bits(), 0x7C00u);
  EXPECT_EQ(float16(ffrom(0x80000000u)).to_bits(), 0x8000u);
  EXPECT_EQ(float16(0x1p-24f).to_bits(), 0x0001u);
  EXPECT_EQ(float16(0x1p-25f).to_bits(), 0x0000u);  // tie with 0: even
  EXPECT_EQ(float16(0x1.000002p-25f).to_bits(), 0x0001u);
  EXPECT_EQ(float16(0x3p-25f).to_bits(), 0x0002u);            // 1.5 ulp: tie to even 2
  EXPECT_EQ(float16(0x1.ffcp-15f).to_bits(), 0x0400u);        // tie above the largest subnormal: up
  EXPECT_EQ(float16(ffrom(0x7FFFFFFFu)).to_bits(), 0x7E00u);  // c10: payload dropped
  EXPECT_EQ(float16(ffrom(0xFF800001u)).to_bits(), 0xFE00u);  // sign kept
  // torch's decoding of NaN codes: quiet, payload kept
  EXPECT_EQ(fbits(static_cast<float>(float16::from_bits(0x7C01))), 0x7FC02000u);
  EXPECT_EQ(fbits(static_cast<float>(float16::from_bits(0xFD00))), 0xFFE00000u);
  EXPECT_EQ(float16::from_float_saturate(ffrom(0xFF800000u)).to_bits(), 0xFBFFu);
  EXPECT_EQ(float16::from_float_saturate(ffrom(0x7FC00000u)).to_bits(), 0x7E00u);
  EXPECT_TRUE(float16::from_bits(0x0000) == float16::from_bits(0x8000));
  EXPECT_FALSE(quanto::bits_equal(float16::from_bits(0x0000), float16::from_bits(0x8000)));
}

TEST(BFloat16, KnownValues) {
  using quanto::bfloat16;
  EXPECT_EQ(bfloat16(ffrom(0x3F808000u)).to_bits(), 0x3F80u);  // tie, even stays
  EXPECT_EQ(bfloat16(ffrom(0x3F818000u)).to_bits(), 0x3F82u);  // tie, odd goes up
  EXPECT_EQ(bfloat16(ffrom(0x3F808001u)).to_bits(), 0x3F81u);
  EXPECT_EQ(bfloat16(ffrom(0x7F7FFFFFu)).to_bits(), 0x7F80u);  // FLT_MAX overflows to inf
  EXPECT_EQ(bfloat16(ffrom(0x7F7F7FFFu)).to_bits(), 0x7F7Fu);
  EXPECT_EQ(bfloat16(ffrom(0x00008000u)).to_bits(), 0x0000u);  // subnormal tie to even 0
  EXPECT_EQ(bfloat16(ffrom(0x00018000u)).to_bits(), 0x0002u);
  EXPECT_EQ(bfloat16(ffrom(0x80000001u)).to_bits(), 0x8000u);
  EXPECT_EQ(bfloat16(ffrom(0xFFC00000u)).to_bits(), 0x7FC0u);  // c10: every NaN is 0x7FC0
  EXPECT_EQ(bfloat16(ffrom(0x7F800001u)).to_bits(), 0x7FC0u);
  EXPECT_EQ(fbits(static_cast<float>(bfloat16::from_bits(0xFF81))), 0xFF810000u);
  EXPECT_EQ(bfloat16::from_float_saturate(ffrom(0x7F800000u)).to_bits(), 0x7F7Fu);
  EXPECT_EQ(bfloat16::from_float_saturate(ffrom(0xFF7FFFFFu)).to_bits(), 0xFF7Fu);
}

// The shared limits checks, and what both 16-bit types have beyond the 8-bit ones.
template <class T>
void check_16_bit_limits(const Spec& s) {
  using L = std::numeric_limits<T>;
  static_assert(L::has_infinity && L::has_quiet_NaN && L::has_signaling_NaN);
  check_limits<T>(s);  // with has_infinity, checks infinity() too
  EXPECT_TRUE(L::signaling_NaN().is_nan());
}

TEST(Float16, NumericLimits) {
  check_16_bit_limits<quanto::float16>(kHalf);
  static_assert(std::numeric_limits<quanto::float16>::is_iec559);
  static_assert(std::numeric_limits<quanto::float16>::max().to_bits() == 0x7BFF);
}
TEST(BFloat16, NumericLimits) {
  check_16_bit_limits<quanto::bfloat16>(kBf16);
  static_assert(std::numeric_limits<quanto::bfloat16>::max().to_bits() == 0x7F7F);
}

}  // namespace
