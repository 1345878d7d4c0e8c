// quanto/core/float_bits.hpp: bit-level float helpers (classification, exact rounding) that stay correct under
// -ffast-math.
#pragma once

#include <bit>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE

static_assert(std::numeric_limits<float>::is_iec559 && sizeof(float) == 4, "quanto needs IEEE-754 binary32 floats");

/// The IEEE-754 bit pattern of `f`.
constexpr std::uint32_t float_to_bits(float f) noexcept { return std::bit_cast<std::uint32_t>(f); }

/// The float whose IEEE-754 bit pattern is `u`.
constexpr float bits_to_float(std::uint32_t u) noexcept { return std::bit_cast<float>(u); }

/// True for every NaN (quiet or signalling, any sign and payload). Tests the bit pattern, so it
/// keeps working where -ffast-math lets the compiler assume that NaNs do not exist.
constexpr bool is_nan_bits(float f) noexcept {
  return (float_to_bits(f) & UINT32_C(0x7FFFFFFF)) > UINT32_C(0x7F800000);
}

/// True for +inf and -inf. Tests the bit pattern (safe under -ffast-math).
constexpr bool is_inf_bits(float f) noexcept {
  return (float_to_bits(f) & UINT32_C(0x7FFFFFFF)) == UINT32_C(0x7F800000);
}

/// True for every value that is neither NaN nor infinite. Tests the bit pattern (safe under
/// -ffast-math).
constexpr bool is_finite_bits(float f) noexcept {
  return (float_to_bits(f) & UINT32_C(0x7FFFFFFF)) < UINT32_C(0x7F800000);
}

/// True when the sign bit of `f` is set (-0.0, negative values, NaNs with the sign bit).
constexpr bool sign_bit(float f) noexcept { return (float_to_bits(f) >> 31) != 0; }

/// Rounds `x` to an integral value, ties to even: exactly what `torch.round` and `std::nearbyint`
/// (default rounding mode) return, for every float. The sign is kept (round(-0.3f) is -0.0f),
/// values with |x| >= 2^23 and infinities are returned unchanged and a NaN comes back with its
/// bits untouched. Integer arithmetic on the bit pattern only: exact under -ffast-math (no
/// `(x + 2^23) - 2^23` for the optimiser to fold away) and independent of the FPU rounding mode.
constexpr float round_half_even(float x) noexcept {
#if defined(__has_builtin)
#if __has_builtin(__builtin_roundevenf)
  // The same function as below, as one instruction where the target has it (roundss on SSE4.1,
  // frintn on Arm): exact and independent of the rounding mode, like the bit version.
  if (!std::is_constant_evaluated() && !is_nan_bits(x)) return __builtin_roundevenf(x);  // NaN bits: below
#endif
#endif
  const std::uint32_t u = float_to_bits(x);
  const std::uint32_t sign = u & UINT32_C(0x80000000);
  const std::uint32_t mag = u ^ sign;
  const std::uint32_t biased_exp = mag >> 23;
  if (biased_exp >= 150) return x;                   // |x| >= 2^23, inf or NaN: already integral (or passthrough)
  if (biased_exp < 126) return bits_to_float(sign);  // |x| < 0.5: a zero of the same sign
  if (biased_exp == 126) {
    // 0.5 <= |x| < 1: exactly 0.5 ties to the even 0, anything above goes to 1.
    return bits_to_float(sign | (mag == UINT32_C(0x3F000000) ? 0u : UINT32_C(0x3F800000)));
  }
  // 1 <= |x| < 2^23: the low `frac_bits` bits of the encoding are the fraction. Rounding the
  // encoding itself lets a carry ripple into the exponent (1.5 -> 2.0) as it should.
  const unsigned frac_bits = 150u - biased_exp;  // 1 .. 23
  const std::uint32_t unit = UINT32_C(1) << frac_bits;
  const std::uint32_t odd = (mag >> frac_bits) & 1u;
  const std::uint32_t rounded = (mag + (unit >> 1) - 1u + odd) & ~(unit - 1u);
  return bits_to_float(sign | rounded);
}

namespace detail {

/// Returns `x` unchanged as a rounded float that the optimizer cannot see through: a product
/// passed through it is never fused with a later addition into an FMA (GCC does that under its
/// default -ffp-contract=fast in GNU mode, e.g. CMake's -std=gnu++20 with -march=native), and
/// `(a + b) - a` is never simplified to `b`. Code that must reproduce another library's roundings
/// one operation at a time routes each result through here; it costs only the lost fusion.
QUANTO_ALWAYS_INLINE float opaque(float x) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || (defined(__i386__) && defined(__SSE2__)))
  __asm__("" : "+x"(x));
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(x));
#elif defined(__GNUC__)
  __asm__("" : "+m"(x));
#else
  volatile float v = x;  // other compilers: a store and a load round and hide the value
  x = v;
#endif
  return x;
}

/// `v / 2^s` rounded to nearest, ties to even, for 1 <= s <= 31 and v + 2^(s-1) < 2^32.
constexpr std::uint32_t rne_shift_right(std::uint32_t v, unsigned s) noexcept {
  const std::uint32_t odd = (v >> s) & 1u;
  return (v + ((UINT32_C(1) << (s - 1)) - 1u) + odd) >> s;
}

/// Rounds the magnitude of a non-NaN float (its bits without the sign, inf allowed) to a binary
/// format with `MantissaBits` stored mantissa bits, exponent bias `Bias`, subnormals, and an
/// unbounded exponent range above: the result is the format's magnitude code
/// (exponent << MantissaBits | mantissa), round to nearest even. Codes past the format's largest
/// finite value signal overflow; the caller maps them to inf, NaN or max as its format requires.
template <int MantissaBits, int Bias>
constexpr std::uint32_t round_magnitude_to_code(std::uint32_t abs_bits) noexcept {
  static_assert(MantissaBits >= 1 && MantissaBits <= 22 && Bias >= 1 && Bias <= 127);
  const std::uint32_t biased_exp = abs_bits >> 23;
  if (biased_exp + Bias > 127u) {
    // A normal number of the target format (or beyond its range): re-bias the exponent in place
    // and round the whole encoding; a mantissa carry rolls into the exponent.
    return rne_shift_right(abs_bits - (static_cast<std::uint32_t>(127 - Bias) << 23),
                           static_cast<unsigned>(23 - MantissaBits));
  }
  // A subnormal of the target format: count in units of its smallest subnormal,
  // 2^(1 - Bias - MantissaBits).
  const std::uint32_t significand = (abs_bits & UINT32_C(0x7FFFFF)) | (biased_exp != 0 ? UINT32_C(0x800000) : 0u);
  const std::uint32_t effective_exp = biased_exp != 0 ? biased_exp : 1u;
  const std::uint32_t shift = static_cast<std::uint32_t>(151 - Bias - MantissaBits) - effective_exp;
  if (shift > 24u) return 0;  // below half the smallest subnormal (significand < 2^24)
  return rne_shift_right(significand, shift);
}

/// The float bits of a finite, non-negative magnitude code of a binary format with
/// `MantissaBits` mantissa bits and bias `Bias` (exact: every such value is a float). For
/// formats whose subnormals are normal floats (not bfloat16, whose decoding is a plain shift).
template <int MantissaBits, int Bias>
constexpr std::uint32_t code_to_float_magnitude(std::uint32_t code) noexcept {
  static_assert(MantissaBits >= 1 && MantissaBits <= 22 && Bias >= 1 && Bias + MantissaBits <= 127);
  constexpr std::uint32_t mant_mask = (UINT32_C(1) << MantissaBits) - 1u;
  const std::uint32_t exp = code >> MantissaBits;
  const std::uint32_t mant = code & mant_mask;
  if (exp != 0) {
    return ((exp + static_cast<std::uint32_t>(127 - Bias)) << 23) | (mant << (23 - MantissaBits));
  }
  if (mant == 0) return 0;
  // Subnormal: mant * 2^(1 - Bias - MantissaBits), a normal float: the leading one becomes the
  // implicit bit.
  const int lead = static_cast<int>(std::bit_width(mant)) - 1;  // 0 .. MantissaBits-1
  const int float_exp = lead + 1 - Bias - MantissaBits + 127;   // >= 1 by the static_assert
  return (static_cast<std::uint32_t>(float_exp) << 23) | ((mant << (23 - lead)) & UINT32_C(0x7FFFFF));
}

}  // namespace detail

QUANTO_END_NAMESPACE
