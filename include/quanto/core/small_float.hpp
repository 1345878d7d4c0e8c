// quanto/core/small_float.hpp: what float16, bfloat16 and the float8 types share: a raw encoding
// with value semantics, exact decoding to float, saturating conversion, IEEE equality on bits.
#pragma once

#include <cstdint>
#include <type_traits>

#include "quanto/core/config.hpp"
#include "quanto/core/float_bits.hpp"

QUANTO_BEGIN_NAMESPACE
namespace detail {

/// Base of the small float formats (CRTP). `Derived` supplies, privately (befriending this
/// base): `static constexpr Bits encode(float)` (round to nearest even, the format's NaN and
/// overflow rules), `static constexpr std::uint32_t decode(Bits)` (exact float bits),
/// `max_bits` (largest finite encoding) and `max_float_bits` (its float bits); and publicly
/// `is_nan()` and `is_inf()`. The encoding is the only data member, so the formats stay trivial,
/// standard-layout values of 1 or 2 bytes.
template <class Derived, class Bits>
struct small_float {
  static_assert(std::is_same_v<Bits, std::uint8_t> || std::is_same_v<Bits, std::uint16_t>);
  using bits_type = Bits;

  /// Uninitialised, like `float x;`.
  small_float() = default;

  /// The value with raw encoding `bits`.
  static constexpr Derived from_bits(Bits bits) noexcept {
    Derived d{};
    d.bits_ = bits;
    return d;
  }
  /// `f` rounded to nearest even (the same as `Derived(f)`).
  static constexpr Derived from_float(float f) noexcept { return from_bits(Derived::encode(f)); }
  /// `f` clamped to [-max, max] and then converted — what `x.clamp(min, max).to(dtype)` gives, and
  /// what optimum-quanto's clamp-then-cast does: finite overflow and infinities become +-max;
  /// NaN stays the format's NaN.
  static constexpr Derived from_float_saturate(float f) noexcept {
    const std::uint32_t u = float_to_bits(f);
    const std::uint32_t abs = u & UINT32_C(0x7FFFFFFF);
    if (abs <= Derived::max_float_bits || abs > UINT32_C(0x7F800000)) return from_float(f);
    return from_bits(static_cast<Bits>(((u >> (32 - 8 * sizeof(Bits))) & sign_bit) | Derived::max_bits));
  }

  /// The raw encoding.
  constexpr Bits to_bits() const noexcept { return bits_; }
  /// The exact value as a float.
  explicit constexpr operator float() const noexcept { return bits_to_float(Derived::decode(bits_)); }
  /// True for every encoding that is neither NaN nor inf.
  constexpr bool is_finite() const noexcept { return !self().is_nan() && !self().is_inf(); }

  /// IEEE equality of the values: NaN equals nothing, +0 == -0. Bit-based, so it holds under
  /// -ffast-math. `bits_equal` compares encodings.
  friend constexpr bool operator==(Derived a, Derived b) noexcept {
    if (a.is_nan() || b.is_nan()) return false;
    return a.bits_ == b.bits_ || ((a.bits_ | b.bits_) & static_cast<Bits>(~sign_bit)) == 0;
  }

 protected:
  static constexpr Bits sign_bit = static_cast<Bits>(1u << (8 * sizeof(Bits) - 1));
  /// For Derived's converting constructor: `Derived(float f) : small_float(Derived::encode(f))`.
  explicit constexpr small_float(Bits bits) noexcept : bits_(bits) {}

  Bits bits_;

 private:
  constexpr const Derived& self() const noexcept { return static_cast<const Derived&>(*this); }
};

template <class T>
concept SmallFloat = requires {
  typename T::bits_type;
}
&&std::is_base_of_v<small_float<T, typename T::bits_type>, T>;

}  // namespace detail

/// The exact value of `x` as a float.
template <detail::SmallFloat T>
constexpr float to_float(T x) noexcept {
  return static_cast<float>(x);
}

/// True when `a` and `b` have the same encoding.
template <detail::SmallFloat T>
constexpr bool bits_equal(T a, T b) noexcept {
  return a.to_bits() == b.to_bits();
}

QUANTO_END_NAMESPACE
