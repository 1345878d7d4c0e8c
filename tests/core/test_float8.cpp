// Tests of the 8-bit float formats and of the float_bits helpers, against independent references
// (for the formats, tests/support/float_reference.hpp: the rules of PyTorch's non-saturating c10
// casts, no library code). Everything that touches floats goes through bit patterns or doubles
// that are normal numbers, so the suite also holds under -ffast-math (finite-math, flush-to-zero).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <type_traits>
#include <vector>

#include <quanto/core/float8.hpp>
#include <quanto/core/float_bits.hpp>

#include "../support/float_reference.hpp"

namespace {

#ifdef NDEBUG
constexpr std::uint32_t kRandomSamples = 4'000'000;
constexpr bool kOptimised = true;
#else
constexpr std::uint32_t kRandomSamples = 400'000;
constexpr bool kOptimised = false;
#endif

using namespace float_reference;

constexpr Spec kE4M3FN{"e4m3fn", 4, 3, 7, NanRule::all_ones, false, 0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0xFF};
constexpr Spec kE5M2{"e5m2", 5, 2, 15, NanRule::ieee, false, 0x7F, 0xFF, 0x7C, 0xFC, 0x7C, 0xFC};
constexpr Spec kE4M3FNUZ{"e4m3fnuz", 4, 3, 8, NanRule::only_sign_bit, true, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80};

// Float bits that edge_inputs also probes around, beside those it always takes: a huge value
// (1e9), 2^16 and the float16 max, and 256 and 480 (e4m3fn: the top binade and one ulp above max).
const std::vector<std::uint32_t> kExtraBoundaries = {0x4E6E6B28u /* 1e9 */, 0x47800000u, 0x43800000u, 0x43F00000u,
                                                     0x477FE000u};

// ---- generic checks ----------------------------------------------------------------------------

template <class T>
void check_format(const Spec& s, std::uint32_t seed) {
  const Table t = make_table(s);
  check_all_codes<T>(s);
  check_inputs<T>(s, t, edge_inputs(t, kExtraBoundaries));
  check_inputs<T>(s, t, random_inputs(t, kRandomSamples, seed));
}

// The shared limits checks, and what the 8-bit types have beyond them.
template <class T>
void check_8_bit_limits(const Spec& s) {
  static_assert(!std::numeric_limits<T>::is_iec559);
  check_limits<T>(s);
}

// ---- layout and compile-time use ------------------------------------------------------------------

template <class T>
constexpr bool plain_8_bit =
    std::is_trivially_copyable_v<T>&& std::is_standard_layout_v<T>&& std::is_trivially_default_constructible_v<T> &&
    sizeof(T) == 1 && !std::is_convertible_v<float, T> && !std::is_convertible_v<T, float>;
static_assert(plain_8_bit<quanto::float8_e4m3fn>);
static_assert(plain_8_bit<quanto::float8_e5m2>);
static_assert(plain_8_bit<quanto::float8_e4m3fnuz>);
static_assert(!std::is_same_v<quanto::float8_e4m3fn, quanto::float8_e4m3fnuz>);

static_assert(quanto::float8_e4m3fn(448.0f).to_bits() == 0x7E);
static_assert(quanto::float8_e5m2(57344.0f).to_bits() == 0x7B);
static_assert(quanto::float8_e4m3fnuz(240.0f).to_bits() == 0x7F);
static_assert(static_cast<float>(quanto::float8_e4m3fn::from_bits(0xC4)) == -3.0f);
static_assert(quanto::float8_e4m3fn::from_float_saturate(1e6f).to_bits() == 0x7E);
static_assert(quanto::round_half_even(2.5f) == 2.0f);
static_assert(quanto::round_half_even(-3.5f) == -4.0f);
static_assert(quanto::float_to_bits(quanto::round_half_even(-0.3f)) == 0x80000000u);
static_assert(quanto::is_nan_bits(quanto::bits_to_float(0x7FC00000u)));
static_assert(!quanto::is_finite_bits(quanto::bits_to_float(0xFF800000u)));

// ---- tests: the formats -----------------------------------------------------------------------------

TEST(Float8E4M3FN, AllCodesAndFloatsMatchReference) { check_format<quanto::float8_e4m3fn>(kE4M3FN, 101u); }
TEST(Float8E5M2, AllCodesAndFloatsMatchReference) { check_format<quanto::float8_e5m2>(kE5M2, 202u); }
TEST(Float8E4M3FNUZ, AllCodesAndFloatsMatchReference) { check_format<quanto::float8_e4m3fnuz>(kE4M3FNUZ, 303u); }

// Opt-in (--gtest_also_run_disabled_tests): every one of the 2^32 floats against the reference.
TEST(Float8E4M3FN, DISABLED_EveryFloatMatchesReference) { check_every_float<quanto::float8_e4m3fn>(kE4M3FN); }
TEST(Float8E5M2, DISABLED_EveryFloatMatchesReference) { check_every_float<quanto::float8_e5m2>(kE5M2); }
TEST(Float8E4M3FNUZ, DISABLED_EveryFloatMatchesReference) { check_every_float<quanto::float8_e4m3fnuz>(kE4M3FNUZ); }

TEST(Float8E4M3FN, NumericLimits) { check_8_bit_limits<quanto::float8_e4m3fn>(kE4M3FN); }
TEST(Float8E5M2, NumericLimits) { check_8_bit_limits<quanto::float8_e5m2>(kE5M2); }
TEST(Float8E4M3FNUZ, NumericLimits) { check_8_bit_limits<quanto::float8_e4m3fnuz>(kE4M3FNUZ); }

TEST(Float8E4M3FN, KnownValues) {
  using T = quanto::float8_e4m3fn;
  EXPECT_EQ(T(448.0f).to_bits(), 0x7Eu);
  EXPECT_EQ(T(-448.0f).to_bits(), 0xFEu);
  EXPECT_EQ(T(464.0f).to_bits(), 0x7Eu);      // tie between 448 and (480): even
  EXPECT_EQ(T(464.00003f).to_bits(), 0x7Fu);  // rounds to 480: not representable -> NaN
  EXPECT_EQ(T(-1e6f).to_bits(), 0xFFu);
  EXPECT_EQ(T(ffrom(0x7F800000u)).to_bits(), 0x7Fu);
  EXPECT_EQ(T(ffrom(0xFFC00000u)).to_bits(), 0xFFu);
  EXPECT_EQ(T(0x1p-6f).to_bits(), 0x08u);    // smallest normal
  EXPECT_EQ(T(0x1p-9f).to_bits(), 0x01u);    // smallest subnormal
  EXPECT_EQ(T(0x1p-10f).to_bits(), 0x00u);   // tie with 0: even
  EXPECT_EQ(T(-0x1p-10f).to_bits(), 0x80u);  // -0 exists
  EXPECT_EQ(T(0x1.000002p-10f).to_bits(), 0x01u);
  EXPECT_EQ(T(0x7p-10f).to_bits(), 0x04u);  // 3.5 ulp: tie to even 4
  EXPECT_EQ(T(256.0f).to_bits(), 0x78u);    // the top binade is finite
  EXPECT_EQ(T::from_float_saturate(480.0f).to_bits(), 0x7Eu);
  EXPECT_EQ(T::from_float_saturate(ffrom(0xFF800000u)).to_bits(), 0xFEu);
  EXPECT_EQ(T::from_float_saturate(ffrom(0x7FC00000u)).to_bits(), 0x7Fu);
  EXPECT_EQ(fbits(static_cast<float>(T::from_bits(0x7F))), 0x7FF00000u);  // torch's NaN bits
  EXPECT_EQ(fbits(static_cast<float>(T::from_bits(0xFF))), 0xFFF00000u);
  EXPECT_EQ(static_cast<float>(T::from_bits(0x7E)), 448.0f);
  EXPECT_EQ(static_cast<float>(T::from_bits(0x01)), 0x1p-9f);
  EXPECT_TRUE(T::from_bits(0x00) == T::from_bits(0x80));
}

TEST(Float8E5M2, KnownValues) {
  using T = quanto::float8_e5m2;
  EXPECT_EQ(T(57344.0f).to_bits(), 0x7Bu);
  EXPECT_EQ(T(61439.996f).to_bits(), 0x7Bu);
  EXPECT_EQ(T(61440.0f).to_bits(), 0x7Cu);  // tie with 65536: even -> inf
  EXPECT_EQ(T(-1e9f).to_bits(), 0xFCu);
  EXPECT_EQ(T(ffrom(0xFF800000u)).to_bits(), 0xFCu);
  EXPECT_EQ(T(ffrom(0x7F800001u)).to_bits(), 0x7Fu);
  EXPECT_EQ(T(ffrom(0xFFFFFFFFu)).to_bits(), 0xFFu);
  EXPECT_EQ(T(0x1p-14f).to_bits(), 0x04u);
  EXPECT_EQ(T(0x1p-16f).to_bits(), 0x01u);
  EXPECT_EQ(T(0x1p-17f).to_bits(), 0x00u);
  EXPECT_EQ(T(-0.0f).to_bits(), 0x80u);
  EXPECT_EQ(T::from_float_saturate(1e9f).to_bits(), 0x7Bu);
  EXPECT_EQ(T::from_float_saturate(ffrom(0xFF800000u)).to_bits(), 0xFBu);
  EXPECT_EQ(fbits(static_cast<float>(T::from_bits(0x7C))), 0x7F800000u);
  EXPECT_EQ(fbits(static_cast<float>(T::from_bits(0xFD))), 0xFFE00000u);
  EXPECT_EQ(fbits(static_cast<float>(T::from_bits(0x7E))), 0x7FC00000u);
}

TEST(Float8E4M3FNUZ, KnownValues) {
  using T = quanto::float8_e4m3fnuz;
  EXPECT_EQ(T(240.0f).to_bits(), 0x7Fu);
  EXPECT_EQ(T(-240.0f).to_bits(), 0xFFu);
  EXPECT_EQ(T(247.99998f).to_bits(), 0x7Fu);
  EXPECT_EQ(T(248.0f).to_bits(), 0x80u);  // tie with 256: even -> overflow -> NaN
  EXPECT_EQ(T(-1e6f).to_bits(), 0x80u);
  EXPECT_EQ(T(ffrom(0xFF800000u)).to_bits(), 0x80u);
  EXPECT_EQ(T(ffrom(0xFFC00000u)).to_bits(), 0x80u);
  EXPECT_EQ(T(-0.0f).to_bits(), 0x00u);      // no negative zero
  EXPECT_EQ(T(-0x1p-11f).to_bits(), 0x00u);  // tiny negative rounds to +0
  EXPECT_EQ(T(-0x1.8p-10f).to_bits(), 0x82u);
  EXPECT_EQ(T(0x1p-7f).to_bits(), 0x08u);
  EXPECT_EQ(T(0x1p-10f).to_bits(), 0x01u);
  EXPECT_EQ(T::from_float_saturate(-1e6f).to_bits(), 0xFFu);
  EXPECT_EQ(T::from_float_saturate(ffrom(0x7F800000u)).to_bits(), 0x7Fu);
  EXPECT_EQ(T::from_float_saturate(ffrom(0x7FC00000u)).to_bits(), 0x80u);
  EXPECT_EQ(fbits(static_cast<float>(T::from_bits(0x80))), 0x7F800001u);  // torch's NaN bits
  EXPECT_EQ(fbits(static_cast<float>(T::from_bits(0x00))), 0x00000000u);
  EXPECT_FALSE(T::from_bits(0x80) == T::from_bits(0x80));
}

// ---- tests: float_bits ----------------------------------------------------------------------------

TEST(FloatBits, BitCastsRoundTrip) {
  std::mt19937 rng(7u);
  for (int i = 0; i < 100000; ++i) {
    const auto u = static_cast<std::uint32_t>(rng());
    ASSERT_EQ(quanto::float_to_bits(quanto::bits_to_float(u)), u);
  }
  EXPECT_EQ(quanto::float_to_bits(1.0f), 0x3F800000u);
  EXPECT_EQ(quanto::float_to_bits(-0.0f), 0x80000000u);
}

TEST(FloatBits, ClassificationOfEveryNaNAndInf) {
  for (std::uint32_t sign : {0u, 0x80000000u}) {
    for (std::uint32_t m = 1; m < 0x800000u; ++m) {
      const float f = ffrom(sign | 0x7F800000u | m);
      if (!quanto::is_nan_bits(f) || quanto::is_inf_bits(f) || quanto::is_finite_bits(f)) {
        FAIL() << "NaN " << hex(sign | 0x7F800000u | m) << " misclassified";
      }
    }
    const float inf = ffrom(sign | 0x7F800000u);
    EXPECT_TRUE(quanto::is_inf_bits(inf));
    EXPECT_FALSE(quanto::is_nan_bits(inf));
    EXPECT_FALSE(quanto::is_finite_bits(inf));
    EXPECT_EQ(quanto::sign_bit(inf), sign != 0);
  }
}

TEST(FloatBits, ClassificationOfFiniteValues) {
  std::mt19937 rng(11u);
  auto check = [](std::uint32_t u) {
    const float f = ffrom(u);
    const bool special = ((u >> 23) & 0xFFu) == 0xFFu;
    ASSERT_EQ(quanto::is_finite_bits(f), !special) << hex(u);
    ASSERT_EQ(quanto::is_nan_bits(f), bits_nan(u)) << hex(u);
    ASSERT_EQ(quanto::is_inf_bits(f), bits_inf(u)) << hex(u);
    ASSERT_EQ(quanto::sign_bit(f), (u >> 31) != 0) << hex(u);
  };
  for (std::uint32_t u : {0u, 1u, 0x7F7FFFFFu, 0x00800000u, 0x80000000u, 0xFF7FFFFFu, 0x807FFFFFu}) {
    check(u);
  }
  for (int i = 0; i < 1'000'000; ++i) check(static_cast<std::uint32_t>(rng()));
}

// Reference RNE: floor in double, compare the remainder with one half.
std::uint32_t ref_round(std::uint32_t u) {
  if (((u >> 23) & 0xFFu) == 0xFFu) return u;  // inf, NaN: unchanged
  const std::uint32_t sign = u & 0x80000000u;
  const double d = abs_as_double(u);
  const double fl = std::floor(d);
  const double rem = d - fl;
  double r = fl;
  if (rem > 0.5 || (rem == 0.5 && std::fmod(fl, 2.0) != 0.0)) r = fl + 1.0;
  if (r == 0.0) return sign;
  return sign | exact_float_bits(r);
}

TEST(FloatBits, RoundHalfEvenKnownValues) {
  struct Case {
    float in, out;
  };
  const Case cases[] = {{0.5f, 0.0f},
                        {1.5f, 2.0f},
                        {2.5f, 2.0f},
                        {3.5f, 4.0f},
                        {-0.5f, -0.0f},
                        {-1.5f, -2.0f},
                        {-2.5f, -2.0f},
                        {0.49999997f, 0.0f},
                        {0.50000006f, 1.0f},
                        {1.4999999f, 1.0f},
                        {-0.3f, -0.0f},
                        {8388607.5f, 8388608.0f},
                        {8388606.5f, 8388606.0f},
                        {8388608.0f, 8388608.0f},
                        {16777216.0f, 16777216.0f},
                        {3e38f, 3e38f},
                        {-7.0f, -7.0f},
                        {0x1p-149f, 0.0f},
                        {-0x1p-149f, -0.0f},
                        {4194303.5f, 4194304.0f},
                        {4194302.5f, 4194302.0f}};
  for (const Case& c : cases) {
    EXPECT_EQ(fbits(quanto::round_half_even(c.in)), fbits(c.out)) << c.in;
    EXPECT_EQ(fbits(quanto::round_half_even(c.in)), ref_round(fbits(c.in))) << c.in;
  }
  for (std::uint32_t special :
       {0x7F800000u, 0xFF800000u, 0x7FC00001u, 0xFF812345u, 0x7F800001u, 0x00000000u, 0x80000000u}) {
    EXPECT_EQ(fbits(quanto::round_half_even(ffrom(special))), special) << hex(special);
  }
}

TEST(FloatBits, RoundHalfEvenHalfwayCases) {
  // k + 0.5 for every k whose halfway point is a float (k < 2^23), both signs; strided when not
  // optimised.
  const std::uint32_t step = kOptimised ? 1u : 61u;
  for (std::uint32_t k = 0; k < (1u << 23); k += step) {
    const double h = static_cast<double>(k) + 0.5;
    const std::uint32_t b = exact_float_bits(h);
    const double want = (k % 2 == 0) ? static_cast<double>(k) : static_cast<double>(k) + 1.0;
    const std::uint32_t want_bits = want == 0.0 ? 0u : exact_float_bits(want);
    ASSERT_EQ(fbits(quanto::round_half_even(ffrom(b))), want_bits) << h;
    ASSERT_EQ(fbits(quanto::round_half_even(ffrom(b | 0x80000000u))), want_bits | 0x80000000u) << -h;
  }
}

void check_round_range(std::uint32_t step) {
  for (std::uint32_t u = 0x3E800000u; u <= 0x4B800000u; u += step) {
    if (fbits(quanto::round_half_even(ffrom(u))) != ref_round(u)) {
      FAIL() << hex(u) << " -> " << hex(fbits(quanto::round_half_even(ffrom(u)))) << ", want " << hex(ref_round(u));
    }
  }
}

TEST(FloatBits, RoundHalfEvenMatchesReference) {
  // Positive floats from 0.25 to 2^24 (an odd stride walks through every fraction length), plus
  // random bit patterns of both signs.
  check_round_range(kOptimised ? 13u : 997u);
  std::mt19937 rng(13u);
  for (std::uint32_t i = 0; i < kRandomSamples; ++i) {
    const auto u = static_cast<std::uint32_t>(rng());
    if (fbits(quanto::round_half_even(ffrom(u))) != ref_round(u)) {
      FAIL() << hex(u) << " -> " << hex(fbits(quanto::round_half_even(ffrom(u)))) << ", want " << hex(ref_round(u));
    }
  }
}

// Opt-in: every float in [0.25, 2^24], where all the rounding happens.
TEST(FloatBits, DISABLED_RoundHalfEvenEveryFractionalFloat) { check_round_range(1u); }

}  // namespace
