// quanto/kernels/arm/neon/decode.hpp: NEON decoding of the kernel layout's codes: the element order
// the kernels read (`position`), which weights they take, the code -> float conversion.
//
// NEON loads 16 bytes: one 32-element block of 4-bit codes (its low nibbles are elements 0..15,
// its high nibbles 16..31: k order, no permutation), 16 int8/fp8 codes, or two 2-bit blocks (plane p
// of both blocks: the activations are stored in that order by `position<Q>`).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "quanto/core/config.hpp"
#include "quanto/core/float8.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/layout.hpp"

// Empty unless the compiler targets this ISA, so that including it anywhere is harmless.
#if QUANTO_HAS_NEON_DOT
#include <arm_neon.h>

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace neon {

/// Elements one 16-byte load covers.
template <QType Q>
inline constexpr std::int64_t chunk = Q::bits == 8 ? 16 : (Q::bits == 4 ? 32 : 64);

template <QType Q>
constexpr std::int64_t position(std::int64_t e) noexcept {
  if constexpr (Q::bits != 2) {
    return e;
  } else {
    // 2 blocks of 8 bytes; plane p of both blocks is one 16-byte vector
    const std::int64_t base = e / 64 * 64, j = e % 64;
    const std::int64_t b = j / 32, jj = j % 32;
    return base + (jj / 8) * 16 + b * 8 + jj % 8;
  }
}

template <QType Q, ModelFloat T, class S>
bool supports(const packed_weight<Q, T, S>& w) noexcept {
  return w.groups() <= 1 || w.group % chunk<Q> == 0;
}

namespace detail {

/// The 16 codes of plane `u` of a 16-byte load (the raw bytes for 8-bit).
template <int Bits>
QUANTO_ALWAYS_INLINE uint8x16_t plane(uint8x16_t raw, int u) noexcept {
  if constexpr (Bits == 8) {
    (void)u;
    return raw;
  } else {
    const uint8x16_t mask = vdupq_n_u8(static_cast<std::uint8_t>((1 << Bits) - 1));
    switch (u) {  // vshrq_n needs an immediate
      case 0:
        return vandq_u8(raw, mask);
      case 1:
        return vandq_u8(vshrq_n_u8(raw, Bits), mask);
      case 2:
        return vandq_u8(vshrq_n_u8(raw, 4), mask);  // 2-bit only
      default:
        return vandq_u8(vshrq_n_u8(raw, 6), mask);  // 2-bit only
    }
  }
}

/// 16 codes to 4 x 4 floats, in order.
template <QType Q>
QUANTO_ALWAYS_INLINE void to_f32(uint8x16_t c, float32x4_t f[4]) noexcept {
  if constexpr (FloatQType<Q>) {
    using F = typename Q::storage;
    const uint16x8_t lo = vmovl_u8(vget_low_u8(c)), hi = vmovl_u8(vget_high_u8(c));
    uint16x8_t h[2];
    const uint16x8_t parts[2] = {lo, hi};
    for (int p = 0; p < 2; ++p) {
      if constexpr (std::is_same_v<F, float8_e5m2>) {
        h[p] = vshlq_n_u16(parts[p], 8);
      } else {
        h[p] = vorrq_u16(vandq_u16(vshlq_n_u16(parts[p], 7), vdupq_n_u16(0x3F80)),
                         vandq_u16(vshlq_n_u16(parts[p], 8), vdupq_n_u16(0x8000)));
      }
    }
    f[0] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h[0])));
    f[1] = vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h[0])));
    f[2] = vcvt_f32_f16(vreinterpret_f16_u16(vget_low_u16(h[1])));
    f[3] = vcvt_f32_f16(vreinterpret_f16_u16(vget_high_u16(h[1])));
  } else if constexpr (ByteQType<Q>) {
    const int8x16_t s = vreinterpretq_s8_u8(c);
    const int16x8_t lo = vmovl_s8(vget_low_s8(s)), hi = vmovl_s8(vget_high_s8(s));
    f[0] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo)));
    f[1] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(lo)));
    f[2] = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi)));
    f[3] = vcvtq_f32_s32(vmovl_s16(vget_high_s16(hi)));
  } else {
    const uint16x8_t lo = vmovl_u8(vget_low_u8(c)), hi = vmovl_u8(vget_high_u8(c));
    f[0] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(lo)));
    f[1] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(lo)));
    f[2] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(hi)));
    f[3] = vcvtq_f32_u32(vmovl_u16(vget_high_u16(hi)));
  }
}

template <class F>
constexpr float fp8_rescale() noexcept {
  if constexpr (std::is_same_v<F, float8_e5m2>)
    return 1.0f;
  else if constexpr (std::is_same_v<F, float8_e4m3fnuz>)
    return 128.0f;
  else
    return 256.0f;
}

}  // namespace detail

}  // namespace neon
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE

#endif  // QUANTO_HAS_NEON_DOT
