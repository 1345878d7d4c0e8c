// Tests of quanto::float16 and quanto::bfloat16 against an independent table-search reference.
//
// The reference decodes each code from its fields with std::ldexp (in double) and encodes a float
// by binary search in the sorted table of every finite value, ties to the even code, then applies
// the format's overflow and NaN rules (those of PyTorch's c10 scalar casts). It shares no code
// with the library. Everything that touches floats goes through bit patterns or doubles that are
// normal numbers, so the suite also holds under -ffast-math (finite-math, flush-to-zero).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <quanto/core/bfloat16.hpp>
#include <quanto/core/float16.hpp>

namespace {

#ifdef NDEBUG
constexpr std::uint32_t kRandomSamples = 4'000'000;
#else
constexpr std::uint32_t kRandomSamples = 400'000;
#endif

// ---- float <-> exact double, without any float arithmetic (FTZ/DAZ-proof) ------------------------

std::uint32_t fbits(float f) { return std::bit_cast<std::uint32_t>(f); }
float ffrom(std::uint32_t u) { return std::bit_cast<float>(u); }
bool bits_nan(std::uint32_t u) { return (u & 0x7FFFFFFFu) > 0x7F800000u; }
bool bits_inf(std::uint32_t u) { return (u & 0x7FFFFFFFu) == 0x7F800000u; }

// |value| of finite float bits as a double (always a normal double).
double abs_as_double(std::uint32_t u) {
  const std::uint32_t e = (u >> 23) & 0xFFu;
  const std::uint32_t m = u & 0x7FFFFFu;
  if (e == 0) return std::ldexp(static_cast<double>(m), -149);
  return std::ldexp(static_cast<double>(m | 0x800000u), static_cast<int>(e) - 150);
}

// Float bits of a non-negative double that is exactly a float (checked).
std::uint32_t exact_float_bits(double d) {
  if (d == 0.0) return 0;
  int e = 0;
  const double frac = std::frexp(d, &e);             // d = frac * 2^e, frac in [0.5, 1)
  const double sig = std::ldexp(frac, 24);            // in [2^23, 2^24)
  const auto m = static_cast<std::uint32_t>(sig);
  EXPECT_EQ(static_cast<double>(m), sig) << "not a float: " << d;
  const int biased = e - 1 + 127;
  if (biased >= 1) return (static_cast<std::uint32_t>(biased) << 23) | (m - 0x800000u);
  const int shift = 1 - biased;
  EXPECT_EQ(m & ((1u << shift) - 1u), 0u) << "not a float: " << d;
  return m >> shift;
}

// ---- the reference formats -----------------------------------------------------------------------

struct Spec {
  const char* name;
  int ebits, mbits, bias;
  // NaN code produced by the cast (c10 scalar): fp16 keeps the sign, bf16 always 0x7FC0.
  std::uint32_t nan_pos, nan_neg;
};

constexpr Spec kHalf{"float16", 5, 10, 15, 0x7E00u, 0xFE00u};
constexpr Spec kBf16{"bfloat16", 8, 7, 127, 0x7FC0u, 0x7FC0u};

struct RefValue {
  enum Kind { finite, inf, nan } kind;
  bool negative;
  double magnitude;  // finite only
};

RefValue ref_decode(const Spec& s, std::uint32_t code) {
  const int width = 1 + s.ebits + s.mbits;
  const bool neg = ((code >> (width - 1)) & 1u) != 0;
  const std::uint32_t exp = (code >> s.mbits) & ((1u << s.ebits) - 1u);
  const std::uint32_t mant = code & ((1u << s.mbits) - 1u);
  if (exp == (1u << s.ebits) - 1u) return {mant != 0 ? RefValue::nan : RefValue::inf, neg, 0.0};
  const double v = exp == 0 ? std::ldexp(static_cast<double>(mant), 1 - s.bias - s.mbits)
                            : std::ldexp(static_cast<double>(mant + (1u << s.mbits)),
                                         static_cast<int>(exp) - s.bias - s.mbits);
  return {RefValue::finite, neg, v};
}

// All finite non-negative values in code order (increasing), plus the "virtual" next value one
// ulp above max (where rounding goes to overflow).
struct Table {
  std::vector<double> values;  // values[code] for code 0..max_code
  std::uint32_t max_code = 0;
  double virtual_next = 0.0;
};

Table make_table(const Spec& s) {
  Table t;
  const std::uint32_t half = 1u << (s.ebits + s.mbits);
  for (std::uint32_t c = 0; c < half; ++c) {
    const RefValue r = ref_decode(s, c);
    if (r.kind != RefValue::finite) break;
    if (!t.values.empty()) {
      EXPECT_LT(t.values.back(), r.magnitude);
    }
    t.values.push_back(r.magnitude);
  }
  t.max_code = static_cast<std::uint32_t>(t.values.size() - 1);
  const double max = t.values.back();
  t.virtual_next = max + (max - t.values[t.values.size() - 2]);
  return t;
}

std::uint32_t ref_encode(const Spec& s, const Table& t, std::uint32_t x) {
  const int width = 1 + s.ebits + s.mbits;
  const bool neg = (x >> 31) != 0;
  const std::uint32_t sign = neg ? 1u << (width - 1) : 0u;
  const std::uint32_t inf_code = (t.max_code + 1u) | sign;  // IEEE-like formats: max + 1 = inf
  if (bits_nan(x)) return neg ? s.nan_neg : s.nan_pos;
  if (bits_inf(x)) return inf_code;
  const double d = abs_as_double(x);
  const auto it = std::lower_bound(t.values.begin(), t.values.end(), d);
  const auto hi = static_cast<std::uint32_t>(it - t.values.begin());
  if (hi < t.values.size() && *it == d) return hi | sign;
  const std::uint32_t lo = hi - 1u;  // d > 0 here, and values[0] == 0
  const double hi_value = hi < t.values.size() ? t.values[hi] : t.virtual_next;
  const double mid = (t.values[lo] + hi_value) / 2.0;
  std::uint32_t code = d < mid ? lo : d > mid ? hi : ((lo & 1u) == 0 ? lo : hi);
  if (code > t.max_code) return inf_code;
  return code | sign;
}

// Inputs around every representable value and every rounding boundary, plus float specials.
std::vector<std::uint32_t> edge_inputs(const Table& t) {
  std::vector<std::uint32_t> out;
  auto add_around = [&](std::uint32_t b) {
    for (std::int64_t delta = -2; delta <= 2; ++delta) {
      const std::int64_t v = static_cast<std::int64_t>(b) + delta;
      if (v < 0 || v > 0x7F800000) continue;
      out.push_back(static_cast<std::uint32_t>(v));
      out.push_back(static_cast<std::uint32_t>(v) | 0x80000000u);
    }
  };
  std::vector<double> all = t.values;
  all.push_back(t.virtual_next);
  for (std::size_t i = 0; i < all.size(); ++i) {
    add_around(exact_float_bits(all[i]));
    if (i + 1 < all.size()) add_around(exact_float_bits((all[i] + all[i + 1]) / 2.0));
  }
  for (std::uint32_t b : {0x00000001u, 0x007FFFFFu, 0x00800000u, 0x7F7FFFFFu, 0x7F800000u,
                          0x3F800000u, 0x477FE000u, 0x477FF000u, 0x47800000u, 0x7F7F8000u,
                          0x7F7F7FFFu, 0x33000000u, 0x33000001u, 0x32FFFFFFu}) {
    add_around(b);
  }
  for (std::uint32_t nan : {0x7F800001u, 0x7FC00000u, 0x7FFFFFFFu, 0x7FA00000u, 0x7F802000u,
                            0x7F801FFFu, 0x7FE00000u, 0x7F800100u, 0x7FBFFFFFu}) {
    out.push_back(nan);
    out.push_back(nan | 0x80000000u);
  }
  return out;
}

// Random floats: half uniform bit patterns, half clustered near representable values.
std::vector<std::uint32_t> random_inputs(const Table& t, std::uint32_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::uint32_t> out;
  out.reserve(n);
  for (std::uint32_t i = 0; i < n; ++i) {
    if ((i & 1u) == 0) {
      out.push_back(static_cast<std::uint32_t>(rng()));
      continue;
    }
    const std::uint32_t code = static_cast<std::uint32_t>(rng()) % (t.max_code + 2u);
    const double v = code <= t.max_code ? t.values[code] : t.virtual_next;
    const std::uint32_t base = exact_float_bits(v);
    const std::uint32_t span = 1u << (static_cast<std::uint32_t>(rng()) % 24u);
    const std::int64_t off = static_cast<std::int64_t>(static_cast<std::uint32_t>(rng()) % (2u * span + 1u)) -
                             static_cast<std::int64_t>(span);
    const std::int64_t b = std::clamp<std::int64_t>(static_cast<std::int64_t>(base) + off, 0, 0x7F800000);
    out.push_back(static_cast<std::uint32_t>(b) | (static_cast<std::uint32_t>(rng()) & 0x80000000u));
  }
  return out;
}

std::string hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

// ---- the generic checks, per type -------------------------------------------------------------

template <class T>
void check_all_codes(const Spec& s) {
  for (std::uint32_t c = 0; c < 65536u; ++c) {
    const T h = T::from_bits(static_cast<std::uint16_t>(c));
    ASSERT_EQ(h.to_bits(), c);
    const std::uint32_t f = fbits(static_cast<float>(h));
    const RefValue r = ref_decode(s, c);
    const bool f_neg = (f >> 31) != 0;
    ASSERT_EQ(f_neg, r.negative) << s.name << " code " << hex(c);
    switch (r.kind) {
      case RefValue::nan:
        ASSERT_TRUE(bits_nan(f)) << s.name << " code " << hex(c) << " -> " << hex(f);
        ASSERT_TRUE(h.is_nan());
        ASSERT_FALSE(h.is_inf());
        ASSERT_FALSE(h.is_finite());
        ASSERT_FALSE(h == h);
        break;
      case RefValue::inf:
        ASSERT_EQ(f & 0x7FFFFFFFu, 0x7F800000u) << s.name << " code " << hex(c);
        ASSERT_TRUE(h.is_inf());
        ASSERT_FALSE(h.is_nan());
        break;
      case RefValue::finite:
        ASSERT_TRUE(h.is_finite());
        ASSERT_FALSE(h.is_nan() || h.is_inf());
        ASSERT_FALSE(bits_nan(f) || bits_inf(f));
        ASSERT_EQ(abs_as_double(f), r.magnitude) << s.name << " code " << hex(c);
        break;
    }
    if (r.kind != RefValue::nan) {
      // decode -> encode is the identity on every non-NaN code
      ASSERT_EQ(T(static_cast<float>(h)).to_bits(), c) << s.name << " code " << hex(c);
      ASSERT_EQ(T::from_float(quanto::to_float(h)).to_bits(), c);
      ASSERT_TRUE(h == h);
    }
  }
}

template <class T>
void check_inputs(const Spec& s, const Table& t, const std::vector<std::uint32_t>& xs) {
  const float max = ffrom(exact_float_bits(t.values.back()));
  std::size_t failures = 0;
  for (std::uint32_t x : xs) {
    const std::uint32_t want = ref_encode(s, t, x);
    const std::uint32_t got = T(ffrom(x)).to_bits();
    if (got != want && ++failures <= 10) {
      ADD_FAILURE() << s.name << "(" << hex(x) << ") = " << hex(got) << ", want " << hex(want);
    }
    // Saturating: clamp to [-max, max] (NaN passes), then the same cast.
    std::uint32_t clamped = x;
    if (!bits_nan(x) && (x & 0x7FFFFFFFu) > fbits(max)) clamped = (x & 0x80000000u) | fbits(max);
    const std::uint32_t want_sat = ref_encode(s, t, clamped);
    const std::uint32_t got_sat = T::from_float_saturate(ffrom(x)).to_bits();
    if (got_sat != want_sat && ++failures <= 10) {
      ADD_FAILURE() << s.name << "::from_float_saturate(" << hex(x) << ") = " << hex(got_sat)
                    << ", want " << hex(want_sat);
    }
  }
  EXPECT_EQ(failures, 0u) << s.name << ": " << xs.size() << " inputs";
}

// ---- layout and compile-time use ------------------------------------------------------------------

template <class T>
constexpr bool plain_16_bit = std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T> &&
                              std::is_trivially_default_constructible_v<T> && sizeof(T) == 2 &&
                              alignof(T) == 2 && !std::is_convertible_v<float, T> &&
                              !std::is_convertible_v<T, float>;
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
  check_inputs<quanto::float16>(kHalf, t, edge_inputs(t));
}

TEST(BFloat16, EdgeInputsMatchReference) {
  const Table t = make_table(kBf16);
  ASSERT_EQ(t.max_code, 0x7F7Fu);
  ASSERT_EQ(t.virtual_next, std::ldexp(1.0, 128));
  check_inputs<quanto::bfloat16>(kBf16, t, edge_inputs(t));
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
template <class T>
void check_every_float(const Spec& s) {
  const Table t = make_table(s);
  std::vector<std::uint32_t> chunk(1u << 22);
  for (std::uint64_t base = 0; base < (std::uint64_t{1} << 32); base += chunk.size()) {
    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<std::uint32_t>(base + i);
    check_inputs<T>(s, t, chunk);
    if (::testing::Test::HasFailure()) return;
  }
}
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
  EXPECT_EQ(float16(0x1p-25f).to_bits(), 0x0000u);           // tie with 0: even
  EXPECT_EQ(float16(0x1.000002p-25f).to_bits(), 0x0001u);
  EXPECT_EQ(float16(0x3p-25f).to_bits(), 0x0002u);           // 1.5 ulp: tie to even 2
  EXPECT_EQ(float16(0x1.ffcp-15f).to_bits(), 0x0400u);       // tie above the largest subnormal: up
  EXPECT_EQ(float16(ffrom(0x7FFFFFFFu)).to_bits(), 0x7E00u); // c10: payload dropped
  EXPECT_EQ(float16(ffrom(0xFF800001u)).to_bits(), 0xFE00u); // sign kept
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

template <class T>
void check_limits(const Spec& s) {
  using L = std::numeric_limits<T>;
  const Table t = make_table(s);
  static_assert(L::is_specialized && L::is_signed && !L::is_integer && !L::is_exact);
  static_assert(L::has_infinity && L::has_quiet_NaN && L::has_signaling_NaN);
  static_assert(L::has_denorm == std::denorm_present && L::radix == 2 && L::is_bounded);
  EXPECT_EQ(L::digits, s.mbits + 1);
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::max()))), t.values.back());
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::lowest()))), t.values.back());
  EXPECT_EQ(fbits(static_cast<float>(L::lowest())) >> 31, 1u);
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::min()))), t.values[1u << s.mbits]);
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::denorm_min()))), t.values[1]);
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::epsilon()))), std::ldexp(1.0, -s.mbits));
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::round_error()))), 0.5);
  EXPECT_EQ(fbits(static_cast<float>(L::infinity())), 0x7F800000u);
  EXPECT_TRUE(L::quiet_NaN().is_nan());
  EXPECT_TRUE(L::signaling_NaN().is_nan());
  EXPECT_EQ(L::quiet_NaN().to_bits(), s.nan_pos);
  // min_exponent: 2^(min_exponent - 1) is the smallest normal; max_exponent: max < 2^max_exponent.
  EXPECT_EQ(std::ldexp(1.0, L::min_exponent - 1), t.values[1u << s.mbits]);
  EXPECT_LT(t.values.back(), std::ldexp(1.0, L::max_exponent));
  EXPECT_GE(t.values.back(), std::ldexp(1.0, L::max_exponent - 1));
  EXPECT_GT(t.values[1u << s.mbits], std::pow(10.0, L::min_exponent10 - 1));
  EXPECT_LE(t.values[1u << s.mbits], std::pow(10.0, L::min_exponent10));
  EXPECT_GE(t.values.back(), std::pow(10.0, L::max_exponent10));
  EXPECT_LT(t.values.back(), std::pow(10.0, L::max_exponent10 + 1));
}

TEST(Float16, NumericLimits) {
  check_limits<quanto::float16>(kHalf);
  static_assert(std::numeric_limits<quanto::float16>::is_iec559);
  static_assert(std::numeric_limits<quanto::float16>::max().to_bits() == 0x7BFF);
}
TEST(BFloat16, NumericLimits) {
  check_limits<quanto::bfloat16>(kBf16);
  static_assert(std::numeric_limits<quanto::bfloat16>::max().to_bits() == 0x7F7F);
}

}  // namespace
