// quanto/core/bfloat16.hpp: quanto::bfloat16, the top half of a binary32, with PyTorch's (c10::BFloat16) conversions.
#pragma once

#include <cstdint>
#include <limits>

#include "quanto/core/config.hpp"
#include "quanto/core/float_bits.hpp"
#include "quanto/core/small_float.hpp"

QUANTO_BEGIN_NAMESPACE

/// bfloat16 (1 sign, 8 exponent, 7 mantissa bits, bias 127, subnormals, inf, NaN):
/// torch.bfloat16. A plain 2-byte value (trivial, standard layout); the default constructor
/// leaves the bits uninitialised, like a built-in float.
///
/// Conversions are bit-exact with PyTorch's scalar c10::BFloat16 casts
/// (`round_to_nearest_even`): float -> bfloat16 rounds to nearest even, overflows to +-inf and
/// turns EVERY NaN into 0x7FC0 (sign and payload dropped). Note that torch's vectorised CPU cast
/// (`tensor.to(torch.bfloat16)` with AVX2/AVX-512) returns 0xFFFF for NaN instead; the two agree
/// on every other input. bfloat16 -> float is exact (the bits shifted left by 16, NaN payloads
/// kept). Integer-only and constexpr: exact under -ffast-math and flush-to-zero too.
struct bfloat16 : detail::small_float<bfloat16, std::uint16_t> {
  /// Uninitialised, like `float x;`.
  bfloat16() = default;

  /// `f` rounded to nearest even (see the class for NaN).
  explicit constexpr bfloat16(float f) noexcept : small_float(encode(f)) {}

  /// True for the NaN encodings (exponent all ones, mantissa non-zero).
  constexpr bool is_nan() const noexcept { return (bits_ & 0x7FFFu) > 0x7F80u; }
  /// True for +-inf (0x7F80, 0xFF80).
  constexpr bool is_inf() const noexcept { return (bits_ & 0x7FFFu) == 0x7F80u; }
  /// Largest finite encoding magnitude (about 3.3895e38).
  static constexpr std::uint16_t max_bits = 0x7F7F;

 private:
  friend small_float;
  /// Float bits of the largest finite bfloat16: `from_float_saturate` clamps to it.
  static constexpr std::uint32_t max_float_bits = 0x7F7F0000;

  /// Exact: the float with these top 16 bits.
  static constexpr std::uint32_t decode(std::uint16_t b) noexcept { return static_cast<std::uint32_t>(b) << 16; }

  static constexpr std::uint16_t encode(float f) noexcept {
    const std::uint32_t u = float_to_bits(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t abs = u & UINT32_C(0x7FFFFFFF);
    if (abs > UINT32_C(0x7F800000)) return 0x7FC0;  // c10: any NaN -> 0x7FC0, sign dropped
    // Same bias: rounding the low 16 bits away is the whole conversion; a carry out of the
    // largest finite value lands exactly on inf (0x7F80), inf itself is unchanged.
    return static_cast<std::uint16_t>(sign | detail::round_magnitude_to_code<7, 127>(abs));
  }
};

QUANTO_END_NAMESPACE

/// Limits of quanto::bfloat16 (values as torch.finfo(torch.bfloat16) / c10::BFloat16).
template <>
class std::numeric_limits<quanto::bfloat16> {
 public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = false;
  static constexpr bool is_exact = false;
  static constexpr bool has_infinity = true;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool has_signaling_NaN = true;
  static constexpr std::float_denorm_style has_denorm = std::denorm_present;
  static constexpr bool has_denorm_loss = false;
  static constexpr std::float_round_style round_style = std::round_to_nearest;
  static constexpr bool is_iec559 = false;  // not an IEEE-754 interchange format (as c10)
  static constexpr bool is_bounded = true;
  static constexpr bool is_modulo = false;
  static constexpr int digits = 8;
  static constexpr int digits10 = 2;
  static constexpr int max_digits10 = 4;
  static constexpr int radix = 2;
  static constexpr int min_exponent = -125;
  static constexpr int min_exponent10 = -37;
  static constexpr int max_exponent = 128;
  static constexpr int max_exponent10 = 38;
  static constexpr bool traps = false;
  static constexpr bool tinyness_before = false;

  /// Smallest positive normal, 2^-126.
  static constexpr quanto::bfloat16 min() noexcept { return quanto::bfloat16::from_bits(0x0080); }
  /// About -3.3895e38.
  static constexpr quanto::bfloat16 lowest() noexcept { return quanto::bfloat16::from_bits(0xFF7F); }
  /// About 3.3895e38.
  static constexpr quanto::bfloat16 max() noexcept { return quanto::bfloat16::from_bits(0x7F7F); }
  /// 2^-7.
  static constexpr quanto::bfloat16 epsilon() noexcept { return quanto::bfloat16::from_bits(0x3C00); }
  /// 0.5.
  static constexpr quanto::bfloat16 round_error() noexcept { return quanto::bfloat16::from_bits(0x3F00); }
  /// +inf.
  static constexpr quanto::bfloat16 infinity() noexcept { return quanto::bfloat16::from_bits(0x7F80); }
  /// 0x7FC0.
  static constexpr quanto::bfloat16 quiet_NaN() noexcept { return quanto::bfloat16::from_bits(0x7FC0); }
  /// 0x7FA0.
  static constexpr quanto::bfloat16 signaling_NaN() noexcept { return quanto::bfloat16::from_bits(0x7FA0); }
  /// Smallest positive subnormal, 2^-133.
  static constexpr quanto::bfloat16 denorm_min() noexcept { return quanto::bfloat16::from_bits(0x0001); }
};
