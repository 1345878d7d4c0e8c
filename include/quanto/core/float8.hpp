// quanto/core/float8.hpp: the 8-bit float formats (e4m3fn, e5m2, e4m3fnuz) with PyTorch's c10 conversions.
#pragma once

#include <cstdint>
#include <limits>

#include "quanto/core/config.hpp"
#include "quanto/core/float_bits.hpp"
#include "quanto/core/small_float.hpp"

QUANTO_BEGIN_NAMESPACE

/// Which encodings of an 8-bit float format are NaN.
enum class float8_nan_encoding : std::uint8_t {
  all_ones,       ///< only S.1111.111 (0x7F, 0xFF); the rest of the top binade is finite (e4m3fn)
  ieee,           ///< exponent all ones with a non-zero mantissa; zero mantissa is +-inf (e5m2)
  negative_zero,  ///< only 0x80, the encoding of -0; no inf, no -0 (the "fnuz" formats)
};

/// Descriptors of the 8-bit formats: one struct per format, read by `float8<Format>`.
namespace float8_formats {

/// OCP / NVIDIA E4M3 "finite": bias 7, no inf, NaN = S.1111.111, max 448 (torch.float8_e4m3fn).
struct e4m3fn {
  static constexpr int exponent_bits = 4;
  static constexpr int mantissa_bits = 3;
  static constexpr int bias = 7;
  static constexpr bool has_inf = false;
  static constexpr bool has_negative_zero = true;
  static constexpr float8_nan_encoding nan_encoding = float8_nan_encoding::all_ones;
  /// Encoding produced for a NaN (or, non-saturating, an overflow) before the sign is or-ed in.
  static constexpr std::uint8_t nan_bits = 0x7F;
  /// Largest finite magnitude and its encoding.
  static constexpr std::uint8_t max_bits = 0x7E;
  static constexpr float max_value = 448.0f;
  /// Decimal limits (std::numeric_limits definitions).
  static constexpr int digits10 = 0;
  static constexpr int max_digits10 = 3;
  static constexpr int min_exponent10 = -1;
  static constexpr int max_exponent10 = 2;
};

/// OCP / NVIDIA E5M2: bias 15, IEEE-like inf and NaN, max 57344 (torch.float8_e5m2).
struct e5m2 {
  static constexpr int exponent_bits = 5;
  static constexpr int mantissa_bits = 2;
  static constexpr int bias = 15;
  static constexpr bool has_inf = true;
  static constexpr bool has_negative_zero = true;
  static constexpr float8_nan_encoding nan_encoding = float8_nan_encoding::ieee;
  /// Encoding produced for a NaN before the sign is or-ed in.
  static constexpr std::uint8_t nan_bits = 0x7F;
  /// Largest finite magnitude and its encoding.
  static constexpr std::uint8_t max_bits = 0x7B;
  static constexpr float max_value = 57344.0f;
  /// Decimal limits (std::numeric_limits definitions).
  static constexpr int digits10 = 0;
  static constexpr int max_digits10 = 2;
  static constexpr int min_exponent10 = -4;
  static constexpr int max_exponent10 = 4;
};

/// AMD/Graphcore E4M3 "finite, unsigned zero": bias 8, no inf, no -0, NaN = 0x80, max 240
/// (torch.float8_e4m3fnuz).
struct e4m3fnuz {
  static constexpr int exponent_bits = 4;
  static constexpr int mantissa_bits = 3;
  static constexpr int bias = 8;
  static constexpr bool has_inf = false;
  static constexpr bool has_negative_zero = false;
  static constexpr float8_nan_encoding nan_encoding = float8_nan_encoding::negative_zero;
  /// Encoding produced for a NaN (and for inf and overflow), whatever the sign.
  static constexpr std::uint8_t nan_bits = 0x80;
  /// Largest finite magnitude and its encoding.
  static constexpr std::uint8_t max_bits = 0x7F;
  static constexpr float max_value = 240.0f;
  /// Decimal limits (std::numeric_limits definitions).
  static constexpr int digits10 = 0;
  static constexpr int max_digits10 = 3;
  static constexpr int min_exponent10 = -2;
  static constexpr int max_exponent10 = 2;
};

}  // namespace float8_formats

/// An 8-bit float of format `Format` (a `float8_formats` descriptor). A plain byte (trivial,
/// standard layout); the default constructor leaves the bits uninitialised.
///
/// `float8(float)` is PyTorch's non-saturating c10 cast (`fp8e4m3fn_from_fp32_value`,
/// `fp8e5m2_from_fp32_value`, `fp8e4m3fnuz_from_fp32_value`), round to nearest even, subnormals
/// kept:
///   - e4m3fn:   NaN -> 0x7F | sign; inf and anything rounding above 448 -> 0x7F | sign (NaN).
///   - e5m2:     NaN -> 0x7F | sign; inf and anything rounding above 57344 -> 0x7C | sign (inf).
///   - e4m3fnuz: NaN, inf and anything rounding above 240 -> 0x80 (NaN) whatever the sign; a
///               result of zero is always 0x00 (-0.0 and tiny negatives give +0).
/// For e4m3fn this is torch's cast before pytorch/pytorch#178817 (April 2026); torch releases
/// after it (2.15 for one) saturate e4m3fn instead, which is exactly `from_float_saturate`.
/// That one clamps to [-max, max] first: optimum-quanto's clamp-then-cast. Decoding to float is
/// exact; NaN encodings decode to the bits torch returns (a quiet NaN carrying the sign and
/// mantissa for e4m3fn / e5m2, 0x7F800001 for e4m3fnuz). Integer-only and constexpr: exact
/// under -ffast-math.
template <class Format>
struct float8 : detail::small_float<float8<Format>, std::uint8_t> {
  /// The format descriptor.
  using format = Format;

  /// Uninitialised, like `float x;`.
  float8() = default;

  /// `f` rounded to nearest even, non-saturating (see the class); `from_float_saturate` clamps.
  explicit constexpr float8(float f) noexcept : detail::small_float<float8, std::uint8_t>(encode(f)) {}

  /// True for the format's NaN encodings.
  constexpr bool is_nan() const noexcept {
    if constexpr (Format::nan_encoding == float8_nan_encoding::negative_zero) {
      return this->bits_ == 0x80u;
    } else if constexpr (Format::nan_encoding == float8_nan_encoding::all_ones) {
      return (this->bits_ & 0x7Fu) == 0x7Fu;
    } else {
      return (this->bits_ & 0x7Fu) > inf_code;
    }
  }
  /// True for +-inf (only formats that have it).
  constexpr bool is_inf() const noexcept {
    if constexpr (Format::has_inf) {
      return (this->bits_ & 0x7Fu) == inf_code;
    } else {
      return false;
    }
  }

 private:
  static constexpr int mbits = Format::mantissa_bits;
  static constexpr int bias = Format::bias;
  static_assert(Format::exponent_bits + Format::mantissa_bits == 7, "1 + E + M must be 8 bits");
  /// Encoding magnitude of +inf (exponent all ones, zero mantissa), meaningful when has_inf.
  static constexpr std::uint32_t inf_code = ((1u << Format::exponent_bits) - 1u) << mbits;
  /// Float bits of the largest finite value.
  static constexpr std::uint32_t max_float_bits = detail::code_to_float_magnitude<mbits, bias>(Format::max_bits);
  static_assert(max_float_bits == float_to_bits(Format::max_value), "descriptor max_bits and max_value disagree");

  friend detail::small_float<float8, std::uint8_t>;
  static constexpr std::uint8_t max_bits = Format::max_bits;

  static constexpr std::uint8_t encode(float f) noexcept {
    const std::uint32_t u = float_to_bits(f);
    const std::uint32_t sign = (u >> 24) & 0x80u;
    const std::uint32_t abs = u & UINT32_C(0x7FFFFFFF);
    // The NaN of e4m3fn / e5m2 carries the sign; e4m3fnuz's single NaN is 0x80 itself.
    const std::uint32_t nan = Format::has_negative_zero ? (sign | Format::nan_bits) : Format::nan_bits;
    if (abs > UINT32_C(0x7F800000)) return static_cast<std::uint8_t>(nan);
    const std::uint32_t code = detail::round_magnitude_to_code<mbits, bias>(abs);
    if (code > Format::max_bits) {
      // Overflow, infinities included.
      if constexpr (Format::has_inf) {
        return static_cast<std::uint8_t>(sign | inf_code);
      } else {
        return static_cast<std::uint8_t>(nan);
      }
    }
    if constexpr (!Format::has_negative_zero) {
      if (code == 0) return 0;
    }
    return static_cast<std::uint8_t>(sign | code);
  }

  static constexpr std::uint32_t decode(std::uint8_t b) noexcept {
    const std::uint32_t sign = static_cast<std::uint32_t>(b & 0x80u) << 24;
    const std::uint32_t code = b & 0x7Fu;
    if constexpr (Format::nan_encoding == float8_nan_encoding::negative_zero) {
      if (b == 0x80u) return UINT32_C(0x7F800001);  // what torch's fnuz decoder returns
    } else {
      const bool special = Format::nan_encoding == float8_nan_encoding::all_ones ? code == 0x7Fu : code >= inf_code;
      if (special) {
        const std::uint32_t mant = code & ((1u << mbits) - 1u);
        // inf stays inf; a NaN becomes a quiet float NaN carrying sign and mantissa.
        return sign | UINT32_C(0x7F800000) | (mant != 0 ? UINT32_C(0x400000) | (mant << (23 - mbits)) : 0u);
      }
    }
    return sign | detail::code_to_float_magnitude<mbits, bias>(code);
  }
};

/// torch.float8_e4m3fn: 4 exponent bits, 3 mantissa bits, bias 7, no inf, max 448.
using float8_e4m3fn = float8<float8_formats::e4m3fn>;
/// torch.float8_e5m2: 5 exponent bits, 2 mantissa bits, bias 15, IEEE inf/NaN, max 57344.
using float8_e5m2 = float8<float8_formats::e5m2>;
/// torch.float8_e4m3fnuz: 4 exponent bits, 3 mantissa bits, bias 8, no inf, no -0, max 240.
using float8_e4m3fnuz = float8<float8_formats::e4m3fnuz>;

QUANTO_END_NAMESPACE

/// Limits of the 8-bit formats. Values follow the C++ definitions; they equal torch.finfo /
/// c10's except two c10 slips: e4m3fn max_exponent is 9 here (448 < 2^9; c10 says 8) and
/// e4m3fnuz min_exponent10 is -2 here (10^-2 >= 2^-7; c10 says -1). `infinity()` of a format
/// without inf returns its quiet NaN (as c10's e4m3fnuz does).
template <class Format>
class std::numeric_limits<quanto::float8<Format>> {
  using T = quanto::float8<Format>;
  static constexpr int m = Format::mantissa_bits;

 public:
  static constexpr bool is_specialized = true;
  static constexpr bool is_signed = true;
  static constexpr bool is_integer = false;
  static constexpr bool is_exact = false;
  static constexpr bool has_infinity = Format::has_inf;
  static constexpr bool has_quiet_NaN = true;
  static constexpr bool has_signaling_NaN = false;
  static constexpr std::float_denorm_style has_denorm = std::denorm_present;
  static constexpr bool has_denorm_loss = false;
  static constexpr std::float_round_style round_style = std::round_to_nearest;
  static constexpr bool is_iec559 = false;
  static constexpr bool is_bounded = true;
  static constexpr bool is_modulo = false;
  static constexpr int digits = m + 1;
  static constexpr int digits10 = Format::digits10;
  static constexpr int max_digits10 = Format::max_digits10;
  static constexpr int radix = 2;
  static constexpr int min_exponent = 2 - Format::bias;
  static constexpr int min_exponent10 = Format::min_exponent10;
  static constexpr int max_exponent = (Format::max_bits >> m) - Format::bias + 1;
  static constexpr int max_exponent10 = Format::max_exponent10;
  static constexpr bool traps = false;
  static constexpr bool tinyness_before = false;

  /// Smallest positive normal, 2^(1 - bias).
  static constexpr T min() noexcept { return T::from_bits(static_cast<std::uint8_t>(1u << m)); }
  /// -max.
  static constexpr T lowest() noexcept { return T::from_bits(static_cast<std::uint8_t>(0x80u | Format::max_bits)); }
  /// The largest finite value (448, 57344, 240).
  static constexpr T max() noexcept { return T::from_bits(Format::max_bits); }
  /// 2^-mantissa_bits.
  static constexpr T epsilon() noexcept { return T::from_bits(static_cast<std::uint8_t>((Format::bias - m) << m)); }
  /// 0.5.
  static constexpr T round_error() noexcept { return T::from_bits(static_cast<std::uint8_t>((Format::bias - 1) << m)); }
  /// +inf where the format has one, else the quiet NaN.
  static constexpr T infinity() noexcept {
    if constexpr (Format::has_inf) {
      return T::from_bits(static_cast<std::uint8_t>(Format::max_bits + 1));
    } else {
      return quiet_NaN();
    }
  }
  /// The NaN the conversion from float produces for a positive NaN (0x7F, 0x7F, 0x80).
  static constexpr T quiet_NaN() noexcept { return T::from_bits(Format::nan_bits); }
  /// No signalling NaN: the quiet NaN.
  static constexpr T signaling_NaN() noexcept { return quiet_NaN(); }
  /// Smallest positive subnormal, 2^(1 - bias - mantissa_bits).
  static constexpr T denorm_min() noexcept { return T::from_bits(0x01); }
};
