// Tests of the 8-bit float formats and of the float_bits helpers, against independent references.
//
// The reference decodes each code from its fields with std::ldexp (in double) and encodes a float
// by binary search in the sorted table of every finite value, ties to the even code, then applies
// the format's overflow and NaN rules (those of PyTorch's non-saturating c10 casts). It shares no
// code with the library. Everything that touches floats goes through bit patterns or doubles that
// are normal numbers, so the suite also holds under -ffast-math (finite-math, flush-to-zero).
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

#include <quanto/core/float8.hpp>
#include <quanto/core/float_bits.hpp>

namespace {

#ifdef NDEBUG
constexpr std::uint32_t kRandomSamples = 4'000'000;
constexpr bool kOptimised = true;
#else
constexpr std::uint32_t kRandomSamples = 400'000;
constexpr bool kOptimised = false;
#endif

// ---- float <-> exact double, without any float arithmetic (FTZ/DAZ-proof) ------------------------

std::uint32_t fbits(float f) { return std::bit_cast<std::uint32_t>(f); }
float ffrom(std::uint32_t u) { return std::bit_cast<float>(u); }
bool bits_nan(std::uint32_t u) { return ((u >> 23) & 0xFFu) == 0xFFu && (u & 0x7FFFFFu) != 0; }
bool bits_inf(std::uint32_t u) { return ((u >> 23) & 0xFFu) == 0xFFu && (u & 0x7FFFFFu) == 0; }

// |value| of finite float bits as a double (always a normal double).
double abs_as_double(std::uint32_t u) {
  const std::uint32_t e = (u >> 23) & 0xFFu;
  const std::uint32_t m = u & 0x7FFFFFu;
  if (e == 0) return std::ldexp(static_cast<double>(m), -149);
  return std::ldexp(static_cast<double>(m | 0x800000u), static_cast<int>(e) - 150);
}

// Float bits of a non-negative double that is exactly a normal float (checked).
std::uint32_t exact_float_bits(double d) {
  if (d == 0.0) return 0;
  int e = 0;
  const double frac = std::frexp(d, &e);
  const double sig = std::ldexp(frac, 24);
  const auto m = static_cast<std::uint32_t>(sig);
  EXPECT_EQ(static_cast<double>(m), sig) << "not a float: " << d;
  const int biased = e - 1 + 127;
  EXPECT_GE(biased, 1);
  return (static_cast<std::uint32_t>(biased) << 23) | (m - 0x800000u);
}

std::string hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

// ---- the reference formats -----------------------------------------------------------------------

enum class NanRule { all_ones, ieee, only_0x80 };

struct Spec {
  const char* name;
  int ebits, mbits, bias;
  NanRule nan_rule;
  bool unsigned_zero;
  // Codes the non-saturating cast produces (from the c10 sources), positive / negative input.
  std::uint32_t nan_pos, nan_neg, inf_pos, inf_neg, overflow_pos, overflow_neg;
};

constexpr Spec kE4M3FN{"e4m3fn", 4, 3, 7, NanRule::all_ones, false,
                       0x7F, 0xFF, 0x7F, 0xFF, 0x7F, 0xFF};
constexpr Spec kE5M2{"e5m2", 5, 2, 15, NanRule::ieee, false, 0x7F, 0xFF, 0x7C, 0xFC, 0x7C, 0xFC};
constexpr Spec kE4M3FNUZ{"e4m3fnuz", 4, 3, 8, NanRule::only_0x80, true,
                         0x80, 0x80, 0x80, 0x80, 0x80, 0x80};

struct RefValue {
  enum Kind { finite, inf, nan } kind;
  bool negative;
  double magnitude;  // finite only
};

RefValue ref_decode(const Spec& s, std::uint32_t code) {
  const bool neg = (code & 0x80u) != 0;
  const std::uint32_t exp = (code >> s.mbits) & ((1u << s.ebits) - 1u);
  const std::uint32_t mant = code & ((1u << s.mbits) - 1u);
  const std::uint32_t exp_max = (1u << s.ebits) - 1u, mant_max = (1u << s.mbits) - 1u;
  switch (s.nan_rule) {
    case NanRule::all_ones:
      if (exp == exp_max && mant == mant_max) return {RefValue::nan, neg, 0.0};
      break;
    case NanRule::ieee:
      if (exp == exp_max) return {mant != 0 ? RefValue::nan : RefValue::inf, neg, 0.0};
      break;
    case NanRule::only_0x80:
      if (code == 0x80u) return {RefValue::nan, true, 0.0};
      break;
  }
  const double v = exp == 0 ? std::ldexp(static_cast<double>(mant), 1 - s.bias - s.mbits)
                            : std::ldexp(static_cast<double>(mant + (1u << s.mbits)),
                                         static_cast<int>(exp) - s.bias - s.mbits);
  return {RefValue::finite, neg, v};
}

struct Table {
  std::vector<double> values;  // values[code] for code 0..max_code, increasing
  std::uint32_t max_code = 0;
  double virtual_next = 0.0;   // one ulp above max: rounding there is overflow
};

Table make_table(const Spec& s) {
  Table t;
  for (std::uint32_t c = 0; c < 0x80u; ++c) {
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
  const bool neg = (x >> 31) != 0;
  if (bits_nan(x)) return neg ? s.nan_neg : s.nan_pos;
  if (bits_inf(x)) return neg ? s.inf_neg : s.inf_pos;
  const double d = abs_as_double(x);
  const auto it = std::lower_bound(t.values.begin(), t.values.end(), d);
  std::uint32_t code = static_cast<std::uint32_t>(it - t.values.begin());
  if (!(code < t.values.size() && *it == d)) {
    const std::uint32_t lo = code - 1u, hi = code;
    const double hi_value = hi < t.values.size() ? t.values[hi] : t.virtual_next;
    const double mid = (t.values[lo] + hi_value) / 2.0;
    code = d < mid ? lo : d > mid ? hi : ((lo & 1u) == 0 ? lo : hi);
  }
  if (code > t.max_code) return neg ? s.overflow_neg : s.overflow_pos;
  if (code == 0 && s.unsigned_zero) return 0;
  return code | (neg ? 0x80u : 0u);
}

// Saturating reference: clamp the float to [-max, max] (NaN passes through), then cast.
std::uint32_t ref_encode_saturate(const Spec& s, const Table& t, std::uint32_t x) {
  const std::uint32_t max_bits = exact_float_bits(t.values.back());
  if (!bits_nan(x) && (x & 0x7FFFFFFFu) > max_bits) x = (x & 0x80000000u) | max_bits;
  return ref_encode(s, t, x);
}

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
    // a quarter and three quarters of the way too
    if (i + 1 < all.size()) add_around(exact_float_bits((3 * all[i] + all[i + 1]) / 4.0));
    if (i + 1 < all.size()) add_around(exact_float_bits((all[i] + 3 * all[i + 1]) / 4.0));
  }
  // half of the smallest subnormal and below, float subnormals, huge values, infinities
  add_around(exact_float_bits(t.values[1] / 2.0));
  add_around(exact_float_bits(t.values[1] / 4.0));
  for (std::uint32_t b : {0x00000000u, 0x00000001u, 0x007FFFFFu, 0x00800000u, 0x3F800000u,
                          0x7F7FFFFFu, 0x7F800000u, 0x4E6E6B28u /* 1e9 */, 0x47800000u,
                          0x43800000u, 0x43F00000u, 0x477FE000u}) {
    add_around(b);
  }
  for (std::uint32_t nan : {0x7F800001u, 0x7FC00000u, 0x7FFFFFFFu, 0x7FA00000u, 0x7F802000u,
                            0x7FE00000u, 0x7F800100u, 0x7FBFFFFFu}) {
    out.push_back(nan);
    out.push_back(nan | 0x80000000u);
  }
  return out;
}

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

// ---- generic checks ----------------------------------------------------------------------------

template <class T>
void check_all_codes(const Spec& s) {
  for (std::uint32_t c = 0; c < 256u; ++c) {
    const T h = T::from_bits(static_cast<std::uint8_t>(c));
    ASSERT_EQ(h.to_bits(), c);
    const std::uint32_t f = fbits(static_cast<float>(h));
    const RefValue r = ref_decode(s, c);
    switch (r.kind) {
      case RefValue::nan:
        ASSERT_TRUE(bits_nan(f)) << s.name << " code " << hex(c) << " -> " << hex(f);
        ASSERT_TRUE(h.is_nan());
        ASSERT_FALSE(h.is_inf() || h.is_finite());
        ASSERT_FALSE(h == h);
        break;
      case RefValue::inf:
        ASSERT_EQ(f, r.negative ? 0xFF800000u : 0x7F800000u) << s.name << " code " << hex(c);
        ASSERT_TRUE(h.is_inf());
        ASSERT_FALSE(h.is_nan() || h.is_finite());
        break;
      case RefValue::finite:
        ASSERT_EQ((f >> 31) != 0, r.negative) << s.name << " code " << hex(c);
        ASSERT_TRUE(h.is_finite());
        ASSERT_FALSE(h.is_nan() || h.is_inf());
        ASSERT_FALSE(bits_nan(f) || bits_inf(f));
        ASSERT_EQ(abs_as_double(f), r.magnitude) << s.name << " code " << hex(c);
        break;
    }
    if (r.kind != RefValue::nan) {
      ASSERT_EQ(T(static_cast<float>(h)).to_bits(), c) << s.name << " code " << hex(c);
      ASSERT_EQ(T::from_float(quanto::to_float(h)).to_bits(), c);
      ASSERT_TRUE(h == h);
    }
  }
}

template <class T>
void check_inputs(const Spec& s, const Table& t, const std::vector<std::uint32_t>& xs) {
  std::size_t failures = 0;
  for (std::uint32_t x : xs) {
    const std::uint32_t want = ref_encode(s, t, x);
    const std::uint32_t got = T(ffrom(x)).to_bits();
    if (got != want && ++failures <= 10) {
      ADD_FAILURE() << s.name << "(" << hex(x) << ") = " << hex(got) << ", want " << hex(want);
    }
    const std::uint32_t want_sat = ref_encode_saturate(s, t, x);
    const std::uint32_t got_sat = T::from_float_saturate(ffrom(x)).to_bits();
    if (got_sat != want_sat && ++failures <= 10) {
      ADD_FAILURE() << s.name << "::from_float_saturate(" << hex(x) << ") = " << hex(got_sat)
                    << ", want " << hex(want_sat);
    }
  }
  EXPECT_EQ(failures, 0u) << s.name << ": " << xs.size() << " inputs";
}

template <class T>
void check_format(const Spec& s, std::uint32_t seed) {
  const Table t = make_table(s);
  check_all_codes<T>(s);
  check_inputs<T>(s, t, edge_inputs(t));
  check_inputs<T>(s, t, random_inputs(t, kRandomSamples, seed));
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

template <class T>
void check_limits(const Spec& s) {
  using L = std::numeric_limits<T>;
  const Table t = make_table(s);
  static_assert(L::is_specialized && L::is_signed && !L::is_integer && !L::is_exact);
  static_assert(L::has_quiet_NaN && !L::is_iec559 && L::radix == 2 && L::is_bounded);
  static_assert(L::has_denorm == std::denorm_present);
  EXPECT_EQ(L::digits, s.mbits + 1);
  EXPECT_EQ(L::has_infinity, s.nan_rule == NanRule::ieee);
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::max()))), t.values.back());
  EXPECT_EQ(fbits(static_cast<float>(L::lowest())), fbits(static_cast<float>(L::max())) | 0x80000000u);
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::min()))), t.values[1u << s.mbits]);
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::denorm_min()))), t.values[1]);
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::epsilon()))), std::ldexp(1.0, -s.mbits));
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::round_error()))), 0.5);
  EXPECT_TRUE(L::quiet_NaN().is_nan());
  EXPECT_EQ(L::quiet_NaN().to_bits(), s.nan_pos);
  if (L::has_infinity) {
    EXPECT_EQ(fbits(static_cast<float>(L::infinity())), 0x7F800000u);
  } else {
    EXPECT_TRUE(L::infinity().is_nan());
  }
  EXPECT_EQ(std::ldexp(1.0, L::min_exponent - 1), t.values[1u << s.mbits]);
  EXPECT_LT(t.values.back(), std::ldexp(1.0, L::max_exponent));
  EXPECT_GE(t.values.back(), std::ldexp(1.0, L::max_exponent - 1));
  EXPECT_GT(t.values[1u << s.mbits], std::pow(10.0, L::min_exponent10 - 1));
  EXPECT_LE(t.values[1u << s.mbits], std::pow(10.0, L::min_exponent10));
  EXPECT_GE(t.values.back(), std::pow(10.0, L::max_exponent10));
  EXPECT_LT(t.values.back(), std::pow(10.0, L::max_exponent10 + 1));
  // digits10: every decimal with that many digits survives a round trip; max_digits10 is enough
  // to tell every two values apart (bounds from the C++ definitions, radix 2).
  EXPECT_EQ(L::digits10, static_cast<int>(std::floor((L::digits - 1) * std::log10(2.0))));
  EXPECT_EQ(L::max_digits10, static_cast<int>(std::ceil(1 + L::digits * std::log10(2.0))));
}

// ---- layout and compile-time use ------------------------------------------------------------------

template <class T>
constexpr bool plain_8_bit = std::is_trivially_copyable_v<T> && std::is_standard_layout_v<T> &&
                             std::is_trivially_default_constructible_v<T> && sizeof(T) == 1 &&
                             !std::is_convertible_v<float, T> && !std::is_convertible_v<T, float>;
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

TEST(Float8E4M3FN, AllCodesAndFloatsMatchReference) {
  check_format<quanto::float8_e4m3fn>(kE4M3FN, 101u);
}
TEST(Float8E5M2, AllCodesAndFloatsMatchReference) { check_format<quanto::float8_e5m2>(kE5M2, 202u); }
TEST(Float8E4M3FNUZ, AllCodesAndFloatsMatchReference) {
  check_format<quanto::float8_e4m3fnuz>(kE4M3FNUZ, 303u);
}

TEST(Float8E4M3FN, DISABLED_EveryFloatMatchesReference) {
  check_every_float<quanto::float8_e4m3fn>(kE4M3FN);
}
TEST(Float8E5M2, DISABLED_EveryFloatMatchesReference) { check_every_float<quanto::float8_e5m2>(kE5M2); }
TEST(Float8E4M3FNUZ, DISABLED_EveryFloatMatchesReference) {
  check_every_float<quanto::float8_e4m3fnuz>(kE4M3FNUZ);
}

TEST(Float8E4M3FN, NumericLimits) { check_limits<quanto::float8_e4m3fn>(kE4M3FN); }
TEST(Float8E5M2, NumericLimits) { check_limits<quanto::float8_e5m2>(kE5M2); }
TEST(Float8E4M3FNUZ, NumericLimits) { check_limits<quanto::float8_e4m3fnuz>(kE4M3FNUZ); }

TEST(Float8E4M3FN, KnownValues) {
  using T = quanto::float8_e4m3fn;
  EXPECT_EQ(T(448.0f).to_bits(), 0x7Eu);
  EXPECT_EQ(T(-448.0f).to_bits(), 0xFEu);
  EXPECT_EQ(T(464.0f).to_bits(), 0x7Eu);     // tie between 448 and (480): even
  EXPECT_EQ(T(464.00003f).to_bits(), 0x7Fu); // rounds to 480: not representable -> NaN
  EXPECT_EQ(T(-1e6f).to_bits(), 0xFFu);
  EXPECT_EQ(T(ffrom(0x7F800000u)).to_bits(), 0x7Fu);
  EXPECT_EQ(T(ffrom(0xFFC00000u)).to_bits(), 0xFFu);
  EXPECT_EQ(T(0x1p-6f).to_bits(), 0x08u);    // smallest normal
  EXPECT_EQ(T(0x1p-9f).to_bits(), 0x01u);    // smallest subnormal
  EXPECT_EQ(T(0x1p-10f).to_bits(), 0x00u);   // tie with 0: even
  EXPECT_EQ(T(-0x1p-10f).to_bits(), 0x80u);  // -0 exists
  EXPECT_EQ(T(0x1.000002p-10f).to_bits(), 0x01u);
  EXPECT_EQ(T(0x7p-10f).to_bits(), 0x04u);   // 3.5 ulp: tie to even 4
  EXPECT_EQ(T(256.0f).to_bits(), 0x78u);     // the top binade is finite
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
  EXPECT_EQ(T(61440.0f).to_bits(), 0x7Cu);   // tie with 65536: even -> inf
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
  EXPECT_EQ(T(248.0f).to_bits(), 0x80u);     // tie with 256: even -> overflow -> NaN
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
  const Case cases[] = {{0.5f, 0.0f},   {1.5f, 2.0f},   {2.5f, 2.0f},   {3.5f, 4.0f},
                        {-0.5f, -0.0f}, {-1.5f, -2.0f}, {-2.5f, -2.0f}, {0.49999997f, 0.0f},
                        {0.50000006f, 1.0f}, {1.4999999f, 1.0f}, {-0.3f, -0.0f},
                        {8388607.5f, 8388608.0f}, {8388606.5f, 8388606.0f}, {8388608.0f, 8388608.0f},
                        {16777216.0f, 16777216.0f}, {3e38f, 3e38f}, {-7.0f, -7.0f},
                        {0x1p-149f, 0.0f}, {-0x1p-149f, -0.0f}, {4194303.5f, 4194304.0f},
                        {4194302.5f, 4194302.0f}};
  for (const Case& c : cases) {
    EXPECT_EQ(fbits(quanto::round_half_even(c.in)), fbits(c.out)) << c.in;
    EXPECT_EQ(fbits(quanto::round_half_even(c.in)), ref_round(fbits(c.in))) << c.in;
  }
  for (std::uint32_t special : {0x7F800000u, 0xFF800000u, 0x7FC00001u, 0xFF812345u, 0x7F800001u,
                                0x00000000u, 0x80000000u}) {
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
      FAIL() << hex(u) << " -> " << hex(fbits(quanto::round_half_even(ffrom(u)))) << ", want "
             << hex(ref_round(u));
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
      FAIL() << hex(u) << " -> " << hex(fbits(quanto::round_half_even(ffrom(u)))) << ", want "
             << hex(ref_round(u));
    }
  }
}

// Opt-in: every float in [0.25, 2^24], where all the rounding happens.
TEST(FloatBits, DISABLED_RoundHalfEvenEveryFractionalFloat) { check_round_range(1u); }

}  // namespace
