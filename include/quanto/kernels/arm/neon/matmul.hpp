// quanto/kernels/arm/neon/matmul.hpp: AArch64 NEON kernels with the dot-product extension
// (compiled when the translation unit targets it: -march=armv8.2-a+dotprod or later; see isa.hpp).
//
// NEON loads 16 bytes: one 32-element block of 4-bit codes (its low nibbles are elements 0..15,
// its high nibbles 16..31: k order, no permutation), 16 int8/fp8 codes, or two 2-bit blocks (plane p
// of both blocks: the activations are stored in that order by `position<Q>`).
//
// - exact:   codes widened to float32 (fp8 through float16 bits), vfmaq with float activations.
// - dynamic: sdot of the codes (2/4-bit codes fit in int8) with int8 activations, int32 per block.
// - int8:    sdot of int8 codes with int8 activations over the whole row: exact, any code.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "quanto/core/config.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/isa.hpp"
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

/// One weight row x one activation row, exact path.
template <QType Q, ModelFloat T, class S>
float row_exact(const packed_weight<Q, T, S>& w, const kernels::detail::prepared_activations& xp, std::int64_t r,
                std::int64_t i) noexcept {
  constexpr std::int64_t ch = chunk<Q>, planes = ch / 16;
  float rescale = 1.0f;
  if constexpr (FloatQType<Q>) rescale = fp8_rescale<typename Q::storage>();
  const std::int64_t wgroups = w.groups();
  const std::int64_t chunks_per_group = (wgroups <= 1 ? w.k_padded : w.group) / ch;
  const std::int64_t groups = std::max<std::int64_t>(wgroups, 1);
  const std::uint8_t* codes = w.row(r);
  const float* x = xp.row(i);
  float32x4_t total = vdupq_n_f32(0.0f);
  for (std::int64_t g = 0; g < groups; ++g) {
    float32x4_t acc[4] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
    for (std::int64_t c = g * chunks_per_group; c < (g + 1) * chunks_per_group; ++c) {
      const uint8x16_t raw = vld1q_u8(codes + c * 16);
      QUANTO_UNROLL
      for (int u = 0; u < static_cast<int>(planes); ++u) {
        float32x4_t f[4];
        to_f32<Q>(plane<Q::bits>(raw, u), f);
        const float* xs = x + c * ch + 16 * u;
        QUANTO_UNROLL
        for (int j = 0; j < 4; ++j) acc[j] = vfmaq_f32(acc[j], f[j], vld1q_f32(xs + 4 * j));
      }
    }
    const float s = wgroups == 0 ? 0.0f : w.scale_row(r)[g] * rescale;
    total = vfmaq_n_f32(total, vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])), s);
  }
  float v = vaddvq_f32(total);
  if constexpr (LowBitQType<Q>)
    for (std::int64_t g = 0; g < wgroups; ++g) v -= w.shift_row(r)[g] * xp.sums(i)[g];
  return v;
}

/// Integer dot of a run of chunks with int8 activations (sdot; 2/4-bit codes are valid int8).
template <QType Q>
QUANTO_ALWAYS_INLINE int32x4_t dot_chunks(const std::uint8_t* codes, const std::int8_t* xq, std::int64_t c0,
                                          std::int64_t c1) noexcept {
  constexpr std::int64_t ch = chunk<Q>, planes = ch / 16;
  int32x4_t acc0 = vdupq_n_s32(0), acc1 = vdupq_n_s32(0);
  for (std::int64_t c = c0; c < c1; ++c) {
    const uint8x16_t raw = vld1q_u8(codes + c * 16);
    QUANTO_UNROLL
    for (int u = 0; u < static_cast<int>(planes); ++u) {
      const int8x16_t q = vreinterpretq_s8_u8(plane<Q::bits>(raw, u));
      if (u % 2 == 0)
        acc0 = vdotq_s32(acc0, q, vld1q_s8(xq + c * ch + 16 * u));
      else
        acc1 = vdotq_s32(acc1, q, vld1q_s8(xq + c * ch + 16 * u));
    }
  }
  return vaddq_s32(acc0, acc1);
}

}  // namespace detail

template <QType Q, ModelFloat T, class S>
void gemm_exact(const packed_weight<Q, T, S>& w, const kernels::detail::prepared_activations& xp, std::int64_t n0,
                std::int64_t n1, float* y, std::int64_t ldy) {
  for (std::int64_t r = n0; r < n1; ++r)
    for (std::int64_t i = 0; i < xp.m; ++i) y[i * ldy + r] = detail::row_exact(w, xp, r, i);
}

template <IntegerQType Q, ModelFloat T, class S>
void gemm_dynamic(const packed_weight<Q, T, S>& w, const kernels::detail::prepared_activations& xp, std::int64_t n0,
                  std::int64_t n1, float* y, std::int64_t ldy) {
  constexpr std::int64_t ch = chunk<Q>;
  for (std::int64_t r = n0; r < n1; ++r) {
    const std::uint8_t* codes = w.row(r);
    for (std::int64_t i = 0; i < xp.m; ++i) {
      float32x4_t total = vdupq_n_f32(0.0f);
      for (std::int64_t b = 0; b < xp.xblocks; ++b) {
        const std::int64_t lo = b * xp.xblock, hi = b + 1 == xp.xblocks ? xp.k_padded : lo + xp.xblock;
        const int32x4_t d = detail::dot_chunks<Q>(codes, xp.qrow(i), lo / ch, hi / ch);
        const float ws = LowBitQType<Q> ? w.scale_row(r)[w.groups() <= 1 ? 0 : b] : 1.0f;
        total = vfmaq_n_f32(total, vcvtq_f32_s32(d), ws * xp.scales(i)[b]);
      }
      float v = vaddvq_f32(total);
      if constexpr (LowBitQType<Q>) {
        for (std::int64_t g = 0; g < w.groups(); ++g)
          v -= w.scale_row(r)[g] * xp.centrings(i)[g] + w.shift_row(r)[g] * xp.sums(i)[g];
      } else {
        v *= w.scale_row(r)[0];
      }
      y[i * ldy + r] = v;
    }
  }
}

template <ModelFloat T>
void gemm_int8(const packed_weight<qint8, T>& w, const kernels::detail::prepared_activations& xp, std::int64_t n0,
               std::int64_t n1, float* y, std::int64_t ldy) {
  for (std::int64_t r = n0; r < n1; ++r)
    for (std::int64_t i = 0; i < xp.m; ++i) {
      const int32x4_t d = detail::dot_chunks<qint8>(w.row(r), xp.qrow(i), 0, w.k_padded / 16);
      y[i * ldy + r] = static_cast<float>(vaddvq_s32(d)) * w.scale_row(r)[0];
    }
}

}  // namespace neon

template <>
struct backend<isa::neon_dot> {
  template <QType Q, class W>
  static constexpr std::int64_t position(const W&, std::int64_t e) noexcept {
    return neon::position<Q>(e);
  }
  template <class W>
  static bool supports(const W& w) noexcept {
    return neon::supports(w);
  }
  template <class... A>
  static void gemm_exact(A&&... a) {
    neon::gemm_exact(std::forward<A>(a)...);
  }
  template <class... A>
  static void gemm_dynamic(A&&... a) {
    neon::gemm_dynamic(std::forward<A>(a)...);
  }
  template <class... A>
  static void gemm_int8(A&&... a) {
    neon::gemm_int8(std::forward<A>(a)...);
  }
};

}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE

#endif  // QUANTO_HAS_NEON_DOT
