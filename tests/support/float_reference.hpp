// tests/support/float_reference.hpp: an independent reference for the 16- and 8-bit float formats.
//
// The reference decodes each code from its fields with std::ldexp (in double) and encodes a float
// by binary search in the sorted table of every finite value, ties to the even code, then applies
// the format's overflow and NaN rules (those of PyTorch's non-saturating c10 casts). It shares no
// code with the library: it includes no quanto header and calls none of quanto's conversions.
// Everything that touches floats goes through bit patterns or doubles that are normal numbers, so
// the tests also hold under -ffast-math (finite-math, flush-to-zero).
//
// The checks at the end are templates over the type under test (float16, bfloat16, float8_*); they
// compare what that type does with what the reference says.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace float_reference {

// ---- float <-> exact double, without any float arithmetic (FTZ/DAZ-proof) ------------------------

inline std::uint32_t fbits(float f) { return std::bit_cast<std::uint32_t>(f); }
inline float ffrom(std::uint32_t u) { return std::bit_cast<float>(u); }
inline bool bits_nan(std::uint32_t u) { return (u & 0x7FFFFFFFu) > 0x7F800000u; }
inline bool bits_inf(std::uint32_t u) { return (u & 0x7FFFFFFFu) == 0x7F800000u; }

// |value| of finite float bits as a double (always a normal double).
inline double abs_as_double(std::uint32_t u) {
  const std::uint32_t e = (u >> 23) & 0xFFu;
  const std::uint32_t m = u & 0x7FFFFFu;
  if (e == 0) return std::ldexp(static_cast<double>(m), -149);
  return std::ldexp(static_cast<double>(m | 0x800000u), static_cast<int>(e) - 150);
}

// Float bits of a non-negative double that is exactly a float, normal or subnormal (checked).
inline std::uint32_t exact_float_bits(double d) {
  if (d == 0.0) return 0;
  int e = 0;
  const double frac = std::frexp(d, &e);    // d = frac * 2^e, frac in [0.5, 1)
  const double sig = std::ldexp(frac, 24);  // in [2^23, 2^24)
  const auto m = static_cast<std::uint32_t>(sig);
  EXPECT_EQ(static_cast<double>(m), sig) << "not a float: " << d;
  const int biased = e - 1 + 127;
  if (biased >= 1) return (static_cast<std::uint32_t>(biased) << 23) | (m - 0x800000u);
  const int shift = 1 - biased;
  EXPECT_EQ(m & ((1u << shift) - 1u), 0u) << "not a float: " << d;
  return m >> shift;
}

inline std::string hex(std::uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08X", v);
  return buf;
}

// ---- the reference formats -----------------------------------------------------------------------

// Which codes are NaN (and inf): ieee: exponent all ones (mantissa 0 is inf); all_ones: only the
// codes with every exponent and mantissa bit set; only_sign_bit: only the code with just the sign
// bit set (the "fnuz" formats, whose -0 is NaN).
enum class NanRule { ieee, all_ones, only_sign_bit };

struct Spec {
  const char* name;
  int ebits, mbits, bias;
  NanRule nan_rule;
  bool unsigned_zero;  // -0 rounds to +0 (no negative zero)
  // Codes the non-saturating cast produces (from the c10 sources), positive / negative input.
  std::uint32_t nan_pos, nan_neg, inf_pos, inf_neg, overflow_pos, overflow_neg;

  int width() const { return 1 + ebits + mbits; }
  std::uint32_t sign_bit() const { return 1u << (width() - 1); }
};

struct RefValue {
  enum Kind { finite, inf, nan } kind;
  bool negative;
  double magnitude;  // finite only
};

inline RefValue ref_decode(const Spec& s, std::uint32_t code) {
  const bool neg = (code & s.sign_bit()) != 0;
  const std::uint32_t exp = (code >> s.mbits) & ((1u << s.ebits) - 1u);
  const std::uint32_t mant = code & ((1u << s.mbits) - 1u);
  const std::uint32_t exp_max = (1u << s.ebits) - 1u, mant_max = (1u << s.mbits) - 1u;
  switch (s.nan_rule) {
    case NanRule::ieee:
      if (exp == exp_max) return {mant != 0 ? RefValue::nan : RefValue::inf, neg, 0.0};
      break;
    case NanRule::all_ones:
      if (exp == exp_max && mant == mant_max) return {RefValue::nan, neg, 0.0};
      break;
    case NanRule::only_sign_bit:
      // The sign bit marks this NaN, it is no sign: c10 decodes it to a positive float NaN.
      if (code == s.sign_bit()) return {RefValue::nan, false, 0.0};
      break;
  }
  const double v =
      exp == 0 ? std::ldexp(static_cast<double>(mant), 1 - s.bias - s.mbits)
               : std::ldexp(static_cast<double>(mant + (1u << s.mbits)), static_cast<int>(exp) - s.bias - s.mbits);
  return {RefValue::finite, neg, v};
}

// All finite non-negative values in code order (increasing), plus the "virtual" next value one
// ulp above max (where rounding goes to overflow).
struct Table {
  std::vector<double> values;  // values[code] for code 0..max_code
  std::uint32_t max_code = 0;
  double virtual_next = 0.0;
};

inline Table make_table(const Spec& s) {
  Table t;
  for (std::uint32_t c = 0; c < s.sign_bit(); ++c) {
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

// The non-saturating cast of the float with bits x.
inline std::uint32_t ref_encode(const Spec& s, const Table& t, std::uint32_t x) {
  const bool neg = (x >> 31) != 0;
  if (bits_nan(x)) return neg ? s.nan_neg : s.nan_pos;
  if (bits_inf(x)) return neg ? s.inf_neg : s.inf_pos;
  const double d = abs_as_double(x);
  const auto it = std::lower_bound(t.values.begin(), t.values.end(), d);
  std::uint32_t code = static_cast<std::uint32_t>(it - t.values.begin());
  if (!(code < t.values.size() && *it == d)) {
    const std::uint32_t lo = code - 1u, hi = code;  // d > 0 here, and values[0] == 0
    const double hi_value = hi < t.values.size() ? t.values[hi] : t.virtual_next;
    const double mid = (t.values[lo] + hi_value) / 2.0;
    code = d < mid ? lo : d > mid ? hi : ((lo & 1u) == 0 ? lo : hi);
  }
  if (code > t.max_code) return neg ? s.overflow_neg : s.overflow_pos;
  if (code == 0 && s.unsigned_zero) return 0;
  return code | (neg ? s.sign_bit() : 0u);
}

// Saturating reference: clamp the float to [-max, max] (NaN passes through), then cast.
inline std::uint32_t ref_encode_saturate(const Spec& s, const Table& t, std::uint32_t x) {
  const std::uint32_t max_bits = exact_float_bits(t.values.back());
  if (!bits_nan(x) && (x & 0x7FFFFFFFu) > max_bits) x = (x & 0x80000000u) | max_bits;
  return ref_encode(s, t, x);
}

// ---- inputs --------------------------------------------------------------------------------------

// Adds the float bits b - 2 .. b + 2 (those that are finite or inf), each with both signs.
inline void add_around(std::vector<std::uint32_t>& out, std::uint32_t b) {
  for (std::int64_t delta = -2; delta <= 2; ++delta) {
    const std::int64_t v = static_cast<std::int64_t>(b) + delta;
    if (v < 0 || v > 0x7F800000) continue;
    out.push_back(static_cast<std::uint32_t>(v));
    out.push_back(static_cast<std::uint32_t>(v) | 0x80000000u);
  }
}

// NaN inputs (positive; edge_inputs adds the negative ones): quiet and signalling payloads, low and
// high payload bits.
inline constexpr std::uint32_t kNanInputs[] = {0x7F800001u, 0x7FC00000u, 0x7FFFFFFFu, 0x7FA00000u, 0x7F802000u,
                                               0x7F801FFFu, 0x7FE00000u, 0x7F800100u, 0x7FBFFFFFu};

// Inputs around every representable value, every rounding boundary and the points a quarter and
// three quarters of the way between two values; around half and a quarter of the smallest
// subnormal, the float boundaries (zero, subnormals, 1, FLT_MAX, inf) and the format's own
// extra_boundaries (float bits); and every NaN payload above, with both signs.
inline std::vector<std::uint32_t> edge_inputs(const Table& t, const std::vector<std::uint32_t>& extra_boundaries) {
  std::vector<std::uint32_t> out;
  std::vector<double> all = t.values;
  all.push_back(t.virtual_next);
  for (std::size_t i = 0; i < all.size(); ++i) {
    add_around(out, exact_float_bits(all[i]));
    if (i + 1 < all.size()) {
      add_around(out, exact_float_bits((all[i] + all[i + 1]) / 2.0));
      add_around(out, exact_float_bits((3 * all[i] + all[i + 1]) / 4.0));
      add_around(out, exact_float_bits((all[i] + 3 * all[i + 1]) / 4.0));
    }
  }
  add_around(out, exact_float_bits(t.values[1] / 2.0));
  add_around(out, exact_float_bits(t.values[1] / 4.0));
  for (std::uint32_t b : {0x00000000u, 0x00000001u, 0x007FFFFFu, 0x00800000u, 0x3F800000u, 0x7F7FFFFFu, 0x7F800000u}) {
    add_around(out, b);
  }
  for (std::uint32_t b : extra_boundaries) add_around(out, b);
  for (std::uint32_t nan : kNanInputs) {
    out.push_back(nan);
    out.push_back(nan | 0x80000000u);
  }
  return out;
}

// Random floats: half uniform bit patterns, half clustered near representable values.
inline std::vector<std::uint32_t> random_inputs(const Table& t, std::uint32_t n, std::uint32_t seed) {
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

// ---- the generic checks, per type under test ----------------------------------------------------

// Every code: decodes to the reference value (sign, kind, exact magnitude), classifies as it, and
// every non-NaN code survives decode -> encode.
template <class T>
void check_all_codes(const Spec& s) {
  using Code = decltype(T{}.to_bits());
  for (std::uint32_t c = 0; c < (1u << s.width()); ++c) {
    const T h = T::from_bits(static_cast<Code>(c));
    ASSERT_EQ(h.to_bits(), c);
    const std::uint32_t f = fbits(static_cast<float>(h));
    const RefValue r = ref_decode(s, c);
    ASSERT_EQ((f >> 31) != 0, r.negative) << s.name << " code " << hex(c) << " -> " << hex(f);
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
        ASSERT_TRUE(h.is_finite());
        ASSERT_FALSE(h.is_nan() || h.is_inf());
        ASSERT_FALSE(bits_nan(f) || bits_inf(f));
        ASSERT_EQ(abs_as_double(f), r.magnitude) << s.name << " code " << hex(c);
        break;
    }
    if (r.kind != RefValue::nan) {
      // decode -> encode is the identity on every non-NaN code. to_float is quanto's, found by
      // argument-dependent lookup (this header includes no quanto header).
      ASSERT_EQ(T(static_cast<float>(h)).to_bits(), c) << s.name << " code " << hex(c);
      ASSERT_EQ(T::from_float(to_float(h)).to_bits(), c);
      ASSERT_TRUE(h == h);
    }
  }
}

// The float bits xs, cast (T(float)) and cast saturating (T::from_float_saturate), against the
// reference; reports the first 10 mismatches.
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
      ADD_FAILURE() << s.name << "::from_float_saturate(" << hex(x) << ") = " << hex(got_sat) << ", want "
                    << hex(want_sat);
    }
  }
  EXPECT_EQ(failures, 0u) << s.name << ": " << xs.size() << " inputs";
}

// Every one of the 2^32 floats against the reference (for opt-in DISABLED_ tests: it takes long).
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

// std::numeric_limits<T> against the reference table; what differs between formats (is_iec559,
// signalling NaNs) is for the caller to check.
template <class T>
void check_limits(const Spec& s) {
  using L = std::numeric_limits<T>;
  const Table t = make_table(s);
  static_assert(L::is_specialized && L::is_signed && !L::is_integer && !L::is_exact);
  static_assert(L::has_quiet_NaN && L::radix == 2 && L::is_bounded);
  static_assert(L::has_denorm == std::denorm_present);
  EXPECT_EQ(L::digits, s.mbits + 1);
  EXPECT_EQ(L::has_infinity, s.nan_rule == NanRule::ieee);
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::max()))), t.values.back());
  EXPECT_EQ(abs_as_double(fbits(static_cast<float>(L::lowest()))), t.values.back());
  EXPECT_EQ(fbits(static_cast<float>(L::lowest())) >> 31, 1u);
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
  // min_exponent: 2^(min_exponent - 1) is the smallest normal; max_exponent: max < 2^max_exponent.
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

}  // namespace float_reference
