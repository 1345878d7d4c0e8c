// quanto/kernels/arm/neon/tiles.hpp: the NEON register tiles: one weight row x one activation row
// (exact: vfmaq; dynamic / int8: sdot), on the decoding of decode.hpp.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "quanto/core/config.hpp"
#include "quanto/core/float8.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/arm/neon/decode.hpp"
#include "quanto/kernels/layout.hpp"

// Empty unless the compiler targets this ISA, so that including it anywhere is harmless.
#if QUANTO_HAS_NEON_DOT
#include <arm_neon.h>

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace neon {

namespace detail {

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

}  // namespace neon
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE

#endif  // QUANTO_HAS_NEON_DOT
