// quanto/core/float16.hpp: quanto::float16, IEEE-754 binary16 with PyTorch's (c10::Half) conversions.
#pragma once

#include <cstdint>
#include <limits>

#include "quanto/core/config.hpp"
#include "quanto/core/float_bits.hpp"
#include "quanto/core/small_float.hpp"

QUANTO_BEGIN_NAMESPACE

/// IEEE-754 binary16 (1 sign, 5 exponent, 10 mantissa bits, bias 15, subnormals, inf, NaN):
/// torch.float16. A plain 2-byte value (trivial, standard layout); the default constructor
/// leaves the bits uninitialised, like a built-in float.
///
/// Conversions are bit-exact with PyTorch's scalar c10::Half casts: float -> float16 rounds to
/// nearest even, overflows to +-inf, and turns every NaN into 0x7E00 with the input's sign
/// (`fp16_ieee_from_fp32_value`). float16 -> float is exact; a NaN comes back quiet with its
/// payload (sign | 0x7FC00000 | mantissa << 13), as torch's F16C path returns it. All
/// conversions are integer-only and constexpr, so they are exact under -ffast-math and
/// flush-to-zero too.
struct float16 : detail::small_float<float16, std::uint16_t> {
  /// Uninitialised, like `float x;`.
  float16() = default;

  /// `f` rounded to nearest even (torch `tensor.to(torch.float16)` semantics, see the class).
  explicit constexpr float16(float f) noexcept : small_float(encode(f)) {}

  /// True for the 2046 NaN encodings (exponent all ones, mantissa non-zero).
  constexpr bool is_nan() const noexcept { return (bits_ & 0x7FFFu) > 0x7C00u; }
  /// True for +-inf (0x7C00, 0xFC00).
  constexpr bool is_inf() const noexcept { return (bits_ & 0x7FFFu) == 0x7C00u; }
  /// Largest finite encoding magnitude (65504).
  static constexpr std::uint16_t max_bits = 0x7BFF;

 private:
  friend small_float;
  /// Float bits of 65504: `from_float_saturate` clamps to [-65504, 65504].
  static constexpr std::uint32_t max_float_bits = 0x477FE000;

  static constexpr std::uint16_t encode(float f) noexcept {
    const std::uint32_t u = float_to_bits(f);
    const std::uint32_t sign = (u >> 16) & 0x8000u;
    const std::uint32_t abs = u & UINT32_C(0x7FFFFFFF);
    if (abs > UINT32_C(0x7F800000)) return static_cast<std::uint16_t>(sign | 0x7E00u);
    std::uint32_t code = detail::round_magnitude_to_code<10, 15>(abs);
    if (code > 0x7C00u) code = 0x7C00u;  // overflow (and inf) -> inf
    return static_cast<std::uint16_t>(sign | code);
  }

  static constexpr std::uint32_t decode(std::uint16_t h) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    const std::uint32_t code = h & 0x7FFFu;
    if (code >= 0x7C00u) {
      const std::uint32_t mant = code & 0x3FFu;
      return sign | UINT32_C(0x7F800000) | (mant != 0 ? UINT32_C(0x400000) | (mant << 13) : 0u);
    }
    return sign | detail::code_to_float_magnitude<10, 15>(code);
  }
};

QUANTO_END_NAMESPACE

/// Limits of quanto::float16 (values as torch.finfo(torch.float16) / c10::Half).
template <>
class std::numeric_limits<quanto::float16> {
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
  static constexpr bool is_iec559 = true;
  static constexpr bool is_bounded = true;
  static constexpr bool is_modulo = false;
  static constexpr int digits = 11;
  static constexpr int digits10 = 3;
  static constexpr int max_digits10 = 5;
  static constexpr int radix = 2;
  static constexpr int min_exponent = -13;
  static constexpr int min_exponent10 = -4;
  static constexpr int max_exponent = 16;
  static constexpr int max_exponent10 = 4;
  static constexpr bool traps = false;
  static constexpr bool tinyness_before = false;

  /// Smallest positive normal, 2^-14.
  static constexpr quanto::float16 min() noexcept { return quanto::float16::from_bits(0x0400); }
  /// -65504.
  static constexpr quanto::float16 lowest() noexcept { return quanto::float16::from_bits(0xFBFF); }
  /// 65504.
  static constexpr quanto::float16 max() noexcept { return quanto::float16::from_bits(0x7BFF); }
  /// 2^-10.
  static constexpr quanto::float16 epsilon() noexcept { return quanto::float16::from_bits(0x1400); }
  /// 0.5.
  static constexpr quanto::float16 round_error() noexcept { return quanto::float16::from_bits(0x3800); }
  /// +inf.
  static constexpr quanto::float16 infinity() noexcept { return quanto::float16::from_bits(0x7C00); }
  /// 0x7E00.
  static constexpr quanto::float16 quiet_NaN() noexcept { return quanto::float16::from_bits(0x7E00); }
  /// 0x7D00.
  static constexpr quanto::float16 signaling_NaN() noexcept { return quanto::float16::from_bits(0x7D00); }
  /// Smallest positive subnormal, 2^-24.
  static constexpr quanto::float16 denorm_min() noexcept { return quanto::float16::from_bits(0x0001); }
};
