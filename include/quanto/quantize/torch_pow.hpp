// quanto/quantize/torch_pow.hpp: float32 `torch.pow(tensor, exponent)` as PyTorch computes it on
// an x86 CPU, bit for bit.
//
// HQQ raises |error| to the power `lp_norm - 1` every iteration, and the result feeds the
// shrinkage step, so one ulp of difference in that power eventually flips a quantized value.
// PyTorch's CPU kernel (aten/src/ATen/native/cpu/PowKernel.cpp) sends a few exponents to cheaper
// operations (sqrt, reciprocal, products) and everything else through `Vectorized<float>::pow`,
// i.e. SLEEF's `Sleef_powf8_u10` (AVX2) or `Sleef_powf16_u10` (AVX-512). That function has a
// 1-ulp error bound and is not correctly rounded (for y = -0.3 and x in [0, 4), 2.4 % of its
// results are 1 ulp away from the correctly rounded power), so only the same algorithm gives the
// same bits.
//
// `detail::sleef_powf_u10` re-derives SLEEF's algorithm (SLEEF, by Naoki Shibata and contributors,
// Boost Software License 1.0; see src/libm/sleefsimdsp.c and src/common/df.h there) as one lane of
// its AVX2 + FMA build, written here from scratch as portable scalar C++:
//
//   pow(x, y) = exp(y * log|x|), with log|x| and the product carried as "double-float" pairs
//   (hi + lo, two floats, ~48 significant bits) so that the final exp is accurate to ~1 ulp.
//
//   log|x| (SLEEF's logkf):  pre-scale subnormals by 2^64; split |x| = m * 2^e with m in
//     [0.75, 1.5) (e taken from the exponent bits of |x| / 0.75); r = (m - 1) / (m + 1) in
//     double-float; log m = 2r + r^3 * P(r^2) with a degree-3 polynomial whose last coefficient
//     is itself a double-float; add e * ln 2 (ln 2 as a double-float).
//   exp(d) (SLEEF's expkf):  q = round(d / ln 2); s = d - q * ln 2 (ln 2 split in two floats,
//     the upper part short enough for q * upper to be exact); exp(s) = 1 + s + s^2 * Q(s) with a
//     degree-4 polynomial; scale by 2^q in several steps so that no intermediate overflows early.
//
// Every fused multiply-add of the AVX2 build is a `std::fma` here, and every other operation is
// one IEEE float operation in the same order. The plain products and sums go through an empty asm
// barrier (`detail::opaque`, core/float_bits.hpp) so that a compiler allowed to contract (GCC's
// default -ffp-contract=fast with -mfma / -march=native) or to reassociate (-ffast-math) cannot
// fuse or re-order them: the double-float arithmetic depends on every individual rounding.
//
// The AVX-512 build of SLEEF differs only in how logkf splits |x| (vgetexp/vgetmant, no
// subnormal pre-scaling, instead of the exponent-bits arithmetic): for every finite x > 0 the
// split is the same pair (m, e) (see the comment on `sleef_logkf`), and zero, inf and NaN are
// overwritten by the special-case selection both builds share, so the two agree bit for bit
// (from reading SLEEF's source; only the AVX2 build could be run here). Verified against torch
// 2.15 (AVX2): every non-negative finite float for y = -0.3f, -0.30078125 and -0.30004883 (the
// float, bfloat16 and float16 roundings of 0.7 - 1), millions of inputs for other exponents,
// negative, zero, infinite and NaN operands included, with zero mismatches.
//
// Not supported: x87 arithmetic (FLT_EVAL_METHOD != 0), flush-to-zero / denormals-are-zero modes
// and -ffast-math (which switches those on at program start on x86 and folds the NaN and
// infinity tests); they change the results.
#pragma once

#include <bit>
#include <cmath>
#include <cstdint>

#include "quanto/core/config.hpp"
#include "quanto/core/float_bits.hpp"

QUANTO_BEGIN_NAMESPACE

namespace detail {
namespace sleef_pow {

// One rounded IEEE operation each, never fused or reassociated.
QUANTO_ALWAYS_INLINE float add(float a, float b) noexcept { return opaque(a + b); }
QUANTO_ALWAYS_INLINE float sub(float a, float b) noexcept { return opaque(a - b); }
QUANTO_ALWAYS_INLINE float mul(float a, float b) noexcept { return opaque(a * b); }
QUANTO_ALWAYS_INLINE float div(float a, float b) noexcept { return opaque(a / b); }
/// a * b + c with a single rounding (the build's `vfmadd`).
QUANTO_ALWAYS_INLINE float fma(float a, float b, float c) noexcept { return std::fma(a, b, c); }

/// A "double-float": the unevaluated sum hi + lo, |lo| <= ulp(hi) / 2 when normalized.
struct dfloat {
  float hi;
  float lo;
};

// ---- double-float arithmetic (SLEEF's df.h, FMA flavour) --------------------------------------
// Two flavours of addition, as in SLEEF: the "ordered" ones assume |first| >= |second| (Fast2Sum,
// cheaper), the "any" ones do not (Knuth's TwoSum). Which one each step uses matters for the bits.

/// a + b exactly, any magnitudes (TwoSum).
QUANTO_ALWAYS_INLINE dfloat sum_any(float a, float b) noexcept {
  const float s = add(a, b);
  const float b_virtual = sub(s, a);
  const float a_err = sub(a, sub(s, b_virtual));
  const float b_err = sub(b, b_virtual);
  return {s, add(a_err, b_err)};
}

/// x + b, any magnitudes; the low word of x joins the rounding error at the end.
QUANTO_ALWAYS_INLINE dfloat sum_any(dfloat x, float b) noexcept {
  const float s = add(x.hi, b);
  const float b_virtual = sub(s, x.hi);
  const float err = add(sub(x.hi, sub(s, b_virtual)), sub(b, b_virtual));
  return {s, add(err, x.lo)};
}

/// x + y, any magnitudes; both low words are added together first.
QUANTO_ALWAYS_INLINE dfloat sum_any(dfloat x, dfloat y) noexcept {
  const float s = add(x.hi, y.hi);
  const float y_virtual = sub(s, x.hi);
  const float err = add(sub(x.hi, sub(s, y_virtual)), sub(y.hi, y_virtual));
  return {s, add(err, add(x.lo, y.lo))};
}

/// x + y for |x.hi| >= |y.hi| (Fast2Sum on the high words, then the low words in order).
QUANTO_ALWAYS_INLINE dfloat sum_ordered(dfloat x, dfloat y) noexcept {
  const float s = add(x.hi, y.hi);
  return {s, add(add(add(sub(x.hi, s), y.hi), x.lo), y.lo)};
}

/// a + y for |a| >= |y.hi|.
QUANTO_ALWAYS_INLINE dfloat sum_ordered(float a, dfloat y) noexcept {
  const float s = add(a, y.hi);
  return {s, add(add(sub(a, s), y.hi), y.lo)};
}

/// Re-splits hi + lo so that hi is the rounded sum.
QUANTO_ALWAYS_INLINE dfloat renormalize(dfloat x) noexcept {
  const float s = add(x.hi, x.lo);
  return {s, add(sub(x.hi, s), x.lo)};
}

/// Both words times f (SLEEF only scales by powers of two, which is exact).
QUANTO_ALWAYS_INLINE dfloat scale(dfloat x, float f) noexcept { return {mul(x.hi, f), mul(x.lo, f)}; }

/// x * b: the exact error of hi * b by one FMA, plus lo * b by another.
QUANTO_ALWAYS_INLINE dfloat product(dfloat x, float b) noexcept {
  const float p = mul(x.hi, b);
  return {p, fma(x.lo, b, fma(x.hi, b, -p))};
}

/// x * y, dropping lo * lo.
QUANTO_ALWAYS_INLINE dfloat product(dfloat x, dfloat y) noexcept {
  const float p = mul(x.hi, y.hi);
  return {p, fma(x.hi, y.lo, fma(x.lo, y.hi, fma(x.hi, y.hi, -p)))};
}

/// x * x, dropping lo * lo.
QUANTO_ALWAYS_INLINE dfloat square(dfloat x) noexcept {
  const float p = mul(x.hi, x.hi);
  return {p, fma(add(x.hi, x.hi), x.lo, fma(x.hi, x.hi, -p))};
}

/// n / d: one float division for 1/d.hi, then FMA corrections for the residues of n and d.
QUANTO_ALWAYS_INLINE dfloat quotient(dfloat n, dfloat d) noexcept {
  const float inv = div(1.0f, d.hi);
  const float q = mul(n.hi, inv);
  const float q_err = fma(inv, n.hi, -q);                        // n.hi * inv - q, exact
  const float inv_err = fma(-d.lo, inv, fma(-d.hi, inv, 1.0f));  // ~ 1 - d * inv
  return {q, fma(q, inv_err, fma(n.lo, inv, q_err))};
}

// ---- integer helpers, with the wrap-around of the vector integer instructions -----------------

QUANTO_ALWAYS_INLINE std::int32_t wrap_add(std::int32_t a, std::int32_t b) noexcept {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(a) + static_cast<std::uint32_t>(b));
}
QUANTO_ALWAYS_INLINE std::int32_t wrap_sub(std::int32_t a, std::int32_t b) noexcept {
  return static_cast<std::int32_t>(static_cast<std::uint32_t>(a) - static_cast<std::uint32_t>(b));
}
QUANTO_ALWAYS_INLINE std::uint32_t shl(std::int32_t a, int s) noexcept { return static_cast<std::uint32_t>(a) << s; }

/// `cvtps2dq`: round to nearest even; NaN and anything outside int32 give INT32_MIN.
QUANTO_ALWAYS_INLINE std::int32_t round_to_int32(float v) noexcept {
  if (!(v >= -0x1p31f && v < 0x1p31f)) return INT32_MIN;
  return static_cast<std::int32_t>(round_half_even(v));
}

/// The float whose biased exponent field is the low 9 bits of `biased` (shifted by 23), as
/// SLEEF's 2^n constructions do it (no range check).
QUANTO_ALWAYS_INLINE float exponent_field_float(std::int32_t biased) noexcept {
  return std::bit_cast<float>(shl(biased, 23));
}

/// x * 2^q, SLEEF's `vldexp`: the scale is applied as four equal factors 2^(16 * floor(q / 64))
/// (each clamped to the float exponent range) and a last factor for the remainder, so that
/// overflow and gradual underflow happen where they should.
QUANTO_ALWAYS_INLINE float scale_by_pow2(float x, std::int32_t q) noexcept {
  const std::int32_t neg = q >> 31;  // 0 or -1 (arithmetic shift)
  std::int32_t m = static_cast<std::int32_t>(shl(wrap_sub(wrap_add(neg, q) >> 6, neg), 4));
  q = wrap_sub(q, static_cast<std::int32_t>(shl(m, 2)));
  m = wrap_add(m, 127);
  if (m < 0) m = 0;
  if (m > 255) m = 255;
  const float big = exponent_field_float(m);
  x = mul(mul(mul(mul(x, big), big), big), big);
  return mul(x, exponent_field_float(wrap_add(q, 127)));
}

// ---- constants (exact float values, written as hex floats) ------------------------------------

inline constexpr float kLn2Hi = 0x1.62e43p-1f;    // ln 2 as a double-float: hi ...
inline constexpr float kLn2Lo = -0x1.05c61p-29f;  // ... + lo
inline constexpr float kLn2Upper = 0x1.62e4p-1f;  // ln 2 = upper (few bits) + lower, for exp
inline constexpr float kLn2Lower = 0x1.7f7d1cp-20f;
inline constexpr float kInvLn2 = 0x1.715476p+0f;      // 1 / ln 2
inline constexpr float kFourThirds = 0x1.555556p+0f;  // 1 / 0.75 rounded to float

/// log(d) for d >= 0 as a double-float (SLEEF's logkf, as built for AVX2).
///
/// e is the exponent field of fl(d * fl(4/3)) and m = d * 2^-e (by adding to d's exponent
/// field). With s in [1, 2) the significand of d, s * fl(4/3) rounds to >= 2 exactly when
/// s >= 1.5 (the float just below 1.5 still lands below 2), so m = s or s / 2 is in [0.75, 1.5).
/// The AVX-512 build takes e = getexp(d * fl(4/3)) and m = getmant(d, [0.75, 1.5)) instead,
/// without pre-scaling subnormals; that is the same (m, e) for every finite d > 0 (for subnormal
/// d the product rounds on the subnormal grid, but k * 4/3 for an integer k < 1.5 * 2^n stays
/// more than half a unit below 2^(n+1), so it cannot round up to it either). Zero, inf and NaN
/// get meaningless values here; the caller replaces their results.
inline dfloat sleef_logkf(float d) noexcept {
  const bool tiny = d < 0x1p-126f;
  if (tiny) d = mul(d, 0x1p64f);
  std::int32_t e = static_cast<std::int32_t>((std::bit_cast<std::uint32_t>(mul(d, kFourThirds)) >> 23) & 0xffu) - 0x7f;
  const float m = std::bit_cast<float>(std::bit_cast<std::uint32_t>(d) + shl(-e, 23));
  if (tiny) e -= 64;

  const dfloat r = quotient(sum_any(-1.0f, m), sum_any(1.0f, m));  // (m - 1) / (m + 1)
  const dfloat r2 = square(r);

  float t = 0x1.ec2d14p-3f;
  t = fma(t, r2.hi, 0x1.23f494p-2f);
  t = fma(t, r2.hi, 0x1.999bb2p-2f);
  const dfloat c = {0x1.555554p-1f, 0x1.fb6706p-29f};  // ~2/3 as a double-float

  dfloat s = product(dfloat{kLn2Hi, kLn2Lo}, static_cast<float>(e));
  s = sum_ordered(s, scale(r, 2.0f));
  s = sum_ordered(s, product(product(r2, r), sum_any(product(r2, t), c)));
  return s;
}

/// exp(d.hi + d.lo) (SLEEF's expkf); 0 once d.hi < -104.
inline float sleef_expkf(dfloat d) noexcept {
  const std::int32_t q = round_to_int32(mul(add(d.hi, d.lo), kInvLn2));
  const float qf = static_cast<float>(q);

  dfloat s = sum_any(d, mul(qf, -kLn2Upper));
  s = sum_any(s, mul(qf, -kLn2Lower));
  s = renormalize(s);

  float u = 0x1.655decp-10f;
  u = fma(u, s.hi, 0x1.1222d6p-7f);
  u = fma(u, s.hi, 0x1.555e98p-5f);
  u = fma(u, s.hi, 0x1.5554bcp-3f);
  u = fma(u, s.hi, 0x1.fffff6p-2f);

  dfloat t = sum_ordered(s, product(square(s), u));
  t = sum_ordered(1.0f, t);
  const float result = scale_by_pow2(add(t.hi, t.lo), q);
  return d.hi < -104.0f ? 0.0f : result;
}

}  // namespace sleef_pow

/// pow(x, y) exactly as SLEEF's `Sleef_powf8_u10` (AVX2 + FMA build) computes one lane, special
/// cases included: pow(x, 0) = pow(1, y) = 1 (even for NaN), a NaN x or y otherwise gives the
/// all-ones NaN (0xFFFFFFFF) and a negative x with a non-integer y the default NaN (0x7FC00000).
/// Error <= 1 ulp, not correctly rounded.
inline float sleef_powf_u10(float x, float y) noexcept {
  using namespace sleef_pow;
  const float ax = std::fabs(x);
  const float ay = std::fabs(y);
  const bool y_is_int = std::trunc(y) == y || ay > 0x1p24f;
  const bool y_is_odd = y_is_int && ay < 0x1p24f && (static_cast<std::int32_t>(y) & 1) == 1;

  float result = sleef_expkf(product(sleef_logkf(ax), y));
  if (is_nan_bits(result)) result = bits_to_float(UINT32_C(0x7F800000));

  // Sign of a negative base: +-1 for integral y, NaN otherwise (a product with the default NaN).
  if (!(x > 0.0f)) {
    if (!y_is_int) {
      result = bits_to_float(UINT32_C(0x7FC00000));
    } else if (y_is_odd) {
      result = -result;
    }
  }

  if (is_inf_bits(y)) {
    // |x| < 1, = 1, > 1, with the sign flipped for y = -inf.
    const float efx = bits_to_float(float_to_bits(sub(ax, 1.0f)) ^ (float_to_bits(y) & 0x80000000u));
    result = efx < 0.0f ? 0.0f : (efx == 0.0f ? 1.0f : bits_to_float(UINT32_C(0x7F800000)));
  }
  if (is_inf_bits(x) || x == 0.0f) {
    const bool to_zero = sign_bit(y) != (x == 0.0f);
    const std::uint32_t magnitude = to_zero ? 0u : UINT32_C(0x7F800000);
    const std::uint32_t sign = y_is_odd ? (float_to_bits(x) & 0x80000000u) : 0u;
    result = bits_to_float(magnitude | sign);
  }
  if (is_nan_bits(x) || is_nan_bits(y)) result = bits_to_float(UINT32_C(0xFFFFFFFF));
  if (y == 0.0f || x == 1.0f) result = 1.0f;
  return result;
}

/// `torch.pow(t, y)` for a float32 CPU tensor `t` and a scalar exponent `y`, element `x`, as
/// PyTorch's vectorized CPU kernel computes it on x86 (AVX2 or AVX-512):
///   y == 0 -> 1 (even for NaN x), y == 1 -> x (NaN payload kept): `pow_Tensor_Scalar_out`;
///   y == 0.5 -> sqrt(x), y == -0.5 -> 1 / sqrt(x), y == -1 -> 1 / x, y == 2 -> x * x,
///   y == 3 -> (x * x) * x, y == -2 -> 1 / (x * x), anything else -> SLEEF's powf_u10.
/// `y` must be the exponent exactly (PyTorch compares the Python double with these values before
/// rounding it to float for SLEEF). Caveats: PyTorch builds with MKL compute the y == 0.5 case with
/// MKL's vsSqrt, which is not always correctly rounded on AMD CPUs; here it is the correctly
/// rounded std::sqrt (what non-MKL builds give). The non-vectorized tail of a tensor whose size is
/// not a multiple of the vector width uses std::pow(float, double) instead.
inline float torch_powf(float x, float y) noexcept {
  using namespace sleef_pow;
  if (y == 0.0f) return 1.0f;
  if (y == 1.0f) return x;
  if (y == 0.5f) return std::sqrt(x);
  if (y == -0.5f) return div(1.0f, opaque(std::sqrt(x)));
  if (y == -1.0f) return div(1.0f, x);
  if (y == 2.0f) return mul(x, x);
  if (y == 3.0f) return mul(mul(x, x), x);
  if (y == -2.0f) return div(1.0f, mul(x, x));
  return sleef_powf_u10(x, y);
}

}  // namespace detail

QUANTO_END_NAMESPACE
