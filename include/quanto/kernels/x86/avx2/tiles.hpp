// quanto/kernels/x86/avx2/tiles.hpp: the AVX2 register tiles: MR (<= 4) activation rows x 1 or 2
// weight rows, each weight row decoded once per tile (decode.hpp) and multiplied in registers, and
// `for_tiles`, which walks a task's rows in L2 panels, k-slices and blocks of 8 weight rows.
//
// - exact:   codes -> float, FMA with float activations, scale per group.
// - dynamic: 2/4-bit: pmaddubsw(unsigned codes, int8 x) -> int16, summed a few times, pmaddwd -> int32;
//            int8: sign trick (|w| x sign(x, w)), since pmaddubsw needs one unsigned side.
// - int8:    int8 x int8 sign-extended to int16, pmaddwd -> int32 (exact for every code, -128 too).
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "quanto/core/config.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/layout.hpp"
#include "quanto/kernels/x86/avx2/decode.hpp"

#if QUANTO_HAS_AVX2
#include <immintrin.h>

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace avx2 {
namespace detail {

QUANTO_ALWAYS_INLINE float hsum(__m256 v) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

QUANTO_ALWAYS_INLINE std::int32_t hsum(__m256i v) noexcept {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
  return _mm_cvtsi128_si32(s);
}

/// How far ahead of its loads a GEMV tile prefetches the weight row (the read roofline's best
/// pattern prefetches 512 bytes ahead, but in the kernels 0, 512 and 1024 measured alike within
/// this VM's noise, so it is off by default: 0). A knob for other machines.
#ifndef QUANTO_AVX2_PREFETCH_BYTES
#define QUANTO_AVX2_PREFETCH_BYTES 0
#endif
inline constexpr std::int64_t prefetch_bytes = QUANTO_AVX2_PREFETCH_BYTES;

/// Prefetches the weight bytes `prefetch_bytes` after p.
QUANTO_ALWAYS_INLINE void prefetch_ahead(const std::uint8_t* p) noexcept {
  if constexpr (prefetch_bytes > 0) _mm_prefetch(reinterpret_cast<const char*>(p) + prefetch_bytes, _MM_HINT_T0);
}

/// Float accumulators per activation row, so that a 4-FMA unit has 4 independent chains.
template <int MR>
inline constexpr int chains = MR == 1 ? 4 : (MR == 2 ? 2 : 1);

/// Exact path: MR activation rows (from i0) x weight row r, over the row's chunks [c0, c1) (a
/// k-slice, so that the activation tile stays in L1). The first slice writes y (and subtracts the
/// shift term), later ones add to it.
template <int MR, QType Q, ModelFloat T, class S>
QUANTO_ALWAYS_INLINE void tile_exact(const packed_weight<Q, T, S>& w, const kernels::detail::prepared_activations& xp,
                                     std::int64_t r, std::int64_t i0, std::int64_t c0, std::int64_t c1, bool first,
                                     float* y, std::int64_t ldy) noexcept {
  constexpr std::int64_t chunk = 32 * 8 / Q::bits, units = chunk / 32;
  constexpr int A = chains<MR>;
  float rescale = 1.0f;
  if constexpr (FloatQType<Q>) rescale = fp8_rescale<typename Q::storage>();
  const std::int64_t wgroups = w.groups();
  const std::int64_t chunks_per_group = (wgroups <= 1 ? w.k_padded : w.group) / chunk;
  const std::uint8_t* codes = w.row(r);
  const float* scale = w.scale_row(r);
  const float* x[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) x[ii] = xp.row(i0 + ii);
  __m256 total[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) total[ii] = _mm256_setzero_ps();
  for (std::int64_t c = c0; c < c1;) {
    const std::int64_t g = c / chunks_per_group;
    const std::int64_t end = std::min(c1, (g + 1) * chunks_per_group);
    __m256 acc[MR][A];
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) QUANTO_UNROLL
    for (int a = 0; a < A; ++a) acc[ii][a] = _mm256_setzero_ps();
    for (; c < end; ++c) {
      const std::int64_t base = c * chunk;
      const __m256i raw = load32(codes + base * Q::bits / 8);
      QUANTO_UNROLL
      for (int u = 0; u < static_cast<int>(units); ++u) {
        const __m256i q = unit_codes<Q::bits>(raw, u);
        QUANTO_UNROLL
        for (int j = 0; j < 4; ++j) {
          const __m256 f = part_floats<Q>(q, j);
          QUANTO_UNROLL
          for (int ii = 0; ii < MR; ++ii)
            acc[ii][j % A] = _mm256_fmadd_ps(f, _mm256_loadu_ps(x[ii] + base + 32 * u + 8 * j), acc[ii][j % A]);
        }
      }
    }
    const __m256 sc = _mm256_set1_ps(wgroups == 0 ? 0.0f : scale[g] * rescale);
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) {
      __m256 sum = acc[ii][0];
      QUANTO_UNROLL
      for (int a = 1; a < A; ++a) sum = _mm256_add_ps(sum, acc[ii][a]);
      total[ii] = _mm256_fmadd_ps(sum, sc, total[ii]);
    }
  }
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) {
    float v = hsum(total[ii]);
    float& out = y[(i0 + ii) * ldy + r];
    if (first) {
      if constexpr (LowBitQType<Q>) {
        const float* shift = w.shift_row(r);
        const float* sums = xp.sums(i0 + ii);
        for (std::int64_t g = 0; g < wgroups; ++g) v -= shift[g] * sums[g];
      }
      out = v;
    } else {
      out += v;
    }
  }
}

/// tile_exact for two weight rows (r, r+1) at once: every activation load feeds two FMAs, which
/// halves the loads per multiply-add (the limit of the one-row tile at m > 1).
template <int MR, QType Q, ModelFloat T, class S>
QUANTO_ALWAYS_INLINE void tile_exact2(const packed_weight<Q, T, S>& w, const kernels::detail::prepared_activations& xp,
                                      std::int64_t r, std::int64_t i0, std::int64_t c0, std::int64_t c1, bool first,
                                      float* y, std::int64_t ldy) noexcept {
  constexpr std::int64_t chunk = 32 * 8 / Q::bits, units = chunk / 32;
  constexpr int A = chains<MR>;  // as tile_exact: a row gets the same bits alone or in a pair
  float rescale = 1.0f;
  if constexpr (FloatQType<Q>) rescale = fp8_rescale<typename Q::storage>();
  const std::int64_t wgroups = w.groups();
  const std::int64_t chunks_per_group = (wgroups <= 1 ? w.k_padded : w.group) / chunk;
  const std::uint8_t* codes0 = w.row(r);
  const std::uint8_t* codes1 = w.row(r + 1);
  const float* scale0 = w.scale_row(r);
  const float* scale1 = w.scale_row(r + 1);
  const float* x[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) x[ii] = xp.row(i0 + ii);
  __m256 total[MR][2];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) total[ii][0] = total[ii][1] = _mm256_setzero_ps();
  for (std::int64_t c = c0; c < c1;) {
    const std::int64_t g = c / chunks_per_group;
    const std::int64_t end = std::min(c1, (g + 1) * chunks_per_group);
    __m256 acc[MR][2][A];
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) QUANTO_UNROLL
    for (int a = 0; a < A; ++a) acc[ii][0][a] = acc[ii][1][a] = _mm256_setzero_ps();
    for (; c < end; ++c) {
      const std::int64_t base = c * chunk;
      const __m256i raw0 = load32(codes0 + base * Q::bits / 8);
      const __m256i raw1 = load32(codes1 + base * Q::bits / 8);
      QUANTO_UNROLL
      for (int u = 0; u < static_cast<int>(units); ++u) {
        const __m256i q0 = unit_codes<Q::bits>(raw0, u), q1 = unit_codes<Q::bits>(raw1, u);
        QUANTO_UNROLL
        for (int j = 0; j < 4; ++j) {
          const __m256 f0 = part_floats<Q>(q0, j), f1 = part_floats<Q>(q1, j);
          QUANTO_UNROLL
          for (int ii = 0; ii < MR; ++ii) {
            const __m256 xv = _mm256_loadu_ps(x[ii] + base + 32 * u + 8 * j);
            acc[ii][0][j % A] = _mm256_fmadd_ps(f0, xv, acc[ii][0][j % A]);
            acc[ii][1][j % A] = _mm256_fmadd_ps(f1, xv, acc[ii][1][j % A]);
          }
        }
      }
    }
    const __m256 s0 = _mm256_set1_ps(wgroups == 0 ? 0.0f : scale0[g] * rescale);
    const __m256 s1 = _mm256_set1_ps(wgroups == 0 ? 0.0f : scale1[g] * rescale);
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) {
      __m256 a0 = acc[ii][0][0], a1 = acc[ii][1][0];
      QUANTO_UNROLL
      for (int a = 1; a < A; ++a) {
        a0 = _mm256_add_ps(a0, acc[ii][0][a]);
        a1 = _mm256_add_ps(a1, acc[ii][1][a]);
      }
      total[ii][0] = _mm256_fmadd_ps(a0, s0, total[ii][0]);
      total[ii][1] = _mm256_fmadd_ps(a1, s1, total[ii][1]);
    }
  }
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) QUANTO_UNROLL
  for (int rr = 0; rr < 2; ++rr) {
    float v = hsum(total[ii][rr]);
    float& out = y[(i0 + ii) * ldy + r + rr];
    if (first) {
      if constexpr (LowBitQType<Q>) {
        const float* shift = w.shift_row(r + rr);
        const float* sums = xp.sums(i0 + ii);
        for (std::int64_t g = 0; g < wgroups; ++g) v -= shift[g] * sums[g];
      }
      out = v;
    } else {
      out += v;
    }
  }
}

/// sum_g a[g] * b[g] + c[g] * d[g], 8 groups at a time.
QUANTO_ALWAYS_INLINE float dot2(const float* a, const float* b, const float* c, const float* d,
                                std::int64_t n) noexcept {
  __m256 acc = _mm256_setzero_ps();
  std::int64_t g = 0;
  for (; g + 8 <= n; g += 8)
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + g), _mm256_loadu_ps(b + g),
                          _mm256_fmadd_ps(_mm256_loadu_ps(c + g), _mm256_loadu_ps(d + g), acc));
  float v = hsum(acc);
  for (; g < n; ++g) v += a[g] * b[g] + c[g] * d[g];
  return v;
}

/// Dynamic path for 2/4-bit weights: unsigned codes x int8 activations, one x block per group;
/// the centring and the shift are one vectorised dot product per row (prep::centre_lowbit).
template <int MR, LowBitQType Q, ModelFloat T, class S>
QUANTO_ALWAYS_INLINE void tile_dynamic_lowbit(const packed_weight<Q, T, S>& w,
                                              const kernels::detail::prepared_activations& xp, std::int64_t r,
                                              std::int64_t i0, float* y, std::int64_t ldy) noexcept {
  constexpr std::int64_t units = 8 / Q::bits;  // 32-code units per 32-byte load
  // int16 partial sums: each pmaddubsw lane is at most 2 * (2^bits - 1) * 127; flush to int32
  // before 8 of them could overflow (8 * 3810 < 32767 for 4 bits).
  constexpr std::int64_t flush_every = 8;
  const std::int64_t wgroups = w.groups();
  const std::int64_t blocks = xp.xblocks;  // one x block per weight group (or one per row)
  const std::int64_t loads_per_group = (wgroups <= 1 ? w.k_padded : w.group) / (32 * units);
  const std::uint8_t* wp = w.row(r);
  const float* scale = w.scale_row(r);
  const std::int8_t* xq[MR];
  const float* xs[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) {
    xq[ii] = xp.qrow(i0 + ii);
    xs[ii] = xp.scales(i0 + ii);
  }
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 total[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) total[ii] = _mm256_setzero_ps();
  std::int64_t xo = 0;  // offset into the activation rows
  for (std::int64_t g = 0; g < blocks; ++g) {
    __m256i acc32[MR];
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) acc32[ii] = _mm256_setzero_si256();
    for (std::int64_t left = loads_per_group; left > 0;) {
      const std::int64_t loads = std::min(left, flush_every / units);
      left -= loads;
      __m256i acc16[MR];
      QUANTO_UNROLL
      for (int ii = 0; ii < MR; ++ii) acc16[ii] = _mm256_setzero_si256();
      for (std::int64_t l = 0; l < loads; ++l, wp += 32, xo += 32 * units) {
        const __m256i raw = load32(wp);
        QUANTO_UNROLL
        for (int v = 0; v < static_cast<int>(units); ++v) {
          const __m256i q = unit_codes<Q::bits>(raw, v);
          QUANTO_UNROLL
          for (int ii = 0; ii < MR; ++ii)
            acc16[ii] = _mm256_add_epi16(acc16[ii], _mm256_maddubs_epi16(q, load32(xq[ii] + xo + 32 * v)));
        }
      }
      QUANTO_UNROLL
      for (int ii = 0; ii < MR; ++ii) acc32[ii] = _mm256_add_epi32(acc32[ii], _mm256_madd_epi16(acc16[ii], ones));
    }
    const float ws = scale[wgroups <= 1 ? 0 : g];
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii)
      total[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc32[ii]), _mm256_set1_ps(ws * xs[ii][g]), total[ii]);
  }
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii)
    y[(i0 + ii) * ldy + r] =
        hsum(total[ii]) - dot2(scale, xp.centrings(i0 + ii), w.shift_row(r), xp.sums(i0 + ii), wgroups);
}

/// The most pmaddubsw results of Bits-bit codes x int8 activations an int16 lane can sum: each is
/// at most 2 * (2^bits - 1) * 127.
template <int Bits>
inline constexpr int int16_sums = 32767 / (2 * ((1 << Bits) - 1) * 127);

/// Whether a group of LPG 32-byte loads fits one int16 accumulator (tile_dynamic_lowbit_fixed).
template <int Bits, int LPG>
inline constexpr bool fixed_group_fits = LPG*(8 / Bits) <= int16_sums<Bits>;

/// tile_dynamic_lowbit for weights whose groups are LPG whole 32-byte loads (LPG a constant: the
/// common groups of 64, 128 or 256 elements), with the group's pmaddubsw results summed in one int16
/// accumulator: the loop over a group is straight-line code, one int32 widening, conversion and
/// FMA per group, and the weight stream is prefetched `prefetch_bytes` ahead. The integer dots
/// are the reference's; only the float combination order differs from it (within float rounding).
template <int MR, int LPG, LowBitQType Q, ModelFloat T, class S>
QUANTO_ALWAYS_INLINE void tile_dynamic_lowbit_fixed(const packed_weight<Q, T, S>& w,
                                                    const kernels::detail::prepared_activations& xp, std::int64_t r,
                                                    std::int64_t i0, float* y, std::int64_t ldy) noexcept {
  constexpr int units = 8 / Q::bits;  // 32-code units per 32-byte load
  static_assert(fixed_group_fits<Q::bits, LPG>);
  const std::int64_t wgroups = w.groups();
  const std::uint8_t* wp = w.row(r);
  const float* scale = w.scale_row(r);
  const std::int8_t* xq[MR];
  const float* xs[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) {
    xq[ii] = xp.qrow(i0 + ii);
    xs[ii] = xp.scales(i0 + ii);
  }
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 total[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) total[ii] = _mm256_setzero_ps();
  for (std::int64_t g = 0; g < wgroups; ++g, wp += 32 * LPG) {
    prefetch_ahead(wp);
    if constexpr (LPG > 2) prefetch_ahead(wp + 64);
    const std::int64_t xo = g * 32 * LPG * units;
    __m256i acc16[MR];
    QUANTO_UNROLL
    for (int l = 0; l < LPG; ++l) {
      const __m256i raw = load32(wp + 32 * l);
      QUANTO_UNROLL
      for (int v = 0; v < units; ++v) {
        const __m256i q = unit_codes<Q::bits>(raw, v);
        QUANTO_UNROLL
        for (int ii = 0; ii < MR; ++ii) {
          const __m256i d = _mm256_maddubs_epi16(q, load32(xq[ii] + xo + 32 * (l * units + v)));
          acc16[ii] = l == 0 && v == 0 ? d : _mm256_add_epi16(acc16[ii], d);
        }
      }
    }
    const float ws = scale[g];
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii)
      total[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(acc16[ii], ones)),
                                  _mm256_set1_ps(ws * xs[ii][g]), total[ii]);
  }
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii)
    y[(i0 + ii) * ldy + r] =
        hsum(total[ii]) - dot2(scale, xp.centrings(i0 + ii), w.shift_row(r), xp.sums(i0 + ii), wgroups);
}

/// Dynamic path for int8 weights: |w| x sign(x, w) through pmaddubsw (x is in [-127, 127]).
template <int MR, ModelFloat T>
QUANTO_ALWAYS_INLINE void tile_dynamic_int8(const packed_weight<qint8, T>& w,
                                            const kernels::detail::prepared_activations& xp, std::int64_t r,
                                            std::int64_t i0, float* y, std::int64_t ldy) noexcept {
  const std::int64_t chunks_per_block = xp.xblock / 32;
  const std::uint8_t* codes = w.row(r);
  const std::int8_t* xq[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) xq[ii] = xp.qrow(i0 + ii);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 total[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) total[ii] = _mm256_setzero_ps();
  for (std::int64_t b = 0; b < xp.xblocks; ++b) {
    __m256i acc[MR];
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) acc[ii] = _mm256_setzero_si256();
    const std::int64_t end = b + 1 == xp.xblocks ? w.k_padded / 32 : (b + 1) * chunks_per_block;
    for (std::int64_t c = b * chunks_per_block; c < end; ++c) {
      const __m256i wq = load32(codes + 32 * c);
      const __m256i aw = _mm256_abs_epi8(wq);
      QUANTO_UNROLL
      for (int ii = 0; ii < MR; ++ii) {
        const __m256i sx = _mm256_sign_epi8(load32(xq[ii] + 32 * c), wq);
        acc[ii] = _mm256_add_epi32(acc[ii], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones));
      }
    }
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii)
      total[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[ii]), _mm256_set1_ps(xp.scales(i0 + ii)[b]), total[ii]);
  }
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) y[(i0 + ii) * ldy + r] = hsum(total[ii]) * w.scale_row(r)[0];
}

/// tile_dynamic_int8 for x blocks of CPB whole 32-byte chunks (CPB a constant: blocks of 128 fill
/// every row exactly, as k_padded is a multiple of 128): straight-line code per block, the weight
/// stream prefetched ahead. The same integer dots; the float combination order may differ from the
/// reference's (within float rounding).
template <int MR, int CPB, ModelFloat T>
QUANTO_ALWAYS_INLINE void tile_dynamic_int8_fixed(const packed_weight<qint8, T>& w,
                                                  const kernels::detail::prepared_activations& xp, std::int64_t r,
                                                  std::int64_t i0, float* y, std::int64_t ldy) noexcept {
  const std::uint8_t* codes = w.row(r);
  const std::int8_t* xq[MR];
  const float* xs[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) {
    xq[ii] = xp.qrow(i0 + ii);
    xs[ii] = xp.scales(i0 + ii);
  }
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 total[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) total[ii] = _mm256_setzero_ps();
  for (std::int64_t b = 0; b < xp.xblocks; ++b, codes += 32 * CPB) {
    const std::int64_t xo = b * 32 * CPB;
    __m256i acc[MR];
    QUANTO_UNROLL
    for (int c = 0; c < CPB; ++c) {
      if (c % 2 == 0) prefetch_ahead(codes + 32 * c);
      const __m256i wq = load32(codes + 32 * c);
      const __m256i aw = _mm256_abs_epi8(wq);
      QUANTO_UNROLL
      for (int ii = 0; ii < MR; ++ii) {
        const __m256i sx = _mm256_sign_epi8(load32(xq[ii] + xo + 32 * c), wq);
        const __m256i d = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
        acc[ii] = c == 0 ? d : _mm256_add_epi32(acc[ii], d);
      }
    }
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii)
      total[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[ii]), _mm256_set1_ps(xs[ii][b]), total[ii]);
  }
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) y[(i0 + ii) * ldy + r] = hsum(total[ii]) * w.scale_row(r)[0];
}

/// w8a8: int8 x int8 widened to int16, pmaddwd into int32: exact, bit-identical to the reference.
template <int MR, ModelFloat T>
QUANTO_ALWAYS_INLINE void tile_int8(const packed_weight<qint8, T>& w, const kernels::detail::prepared_activations& xp,
                                    std::int64_t r, std::int64_t i0, float* y, std::int64_t ldy) noexcept {
  const std::uint8_t* codes = w.row(r);
  const std::int8_t* xq[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) xq[ii] = xp.qrow(i0 + ii);
  __m256i acc[MR][2];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) acc[ii][0] = acc[ii][1] = _mm256_setzero_si256();
  for (std::int64_t e = 0; e < w.k_padded; e += 32) {
    const __m256i w0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + e)));
    const __m256i w1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + e + 16)));
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) {
      const __m256i x0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq[ii] + e)));
      const __m256i x1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(xq[ii] + e + 16)));
      acc[ii][0] = _mm256_add_epi32(acc[ii][0], _mm256_madd_epi16(w0, x0));
      acc[ii][1] = _mm256_add_epi32(acc[ii][1], _mm256_madd_epi16(w1, x1));
    }
  }
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii)
    y[(i0 + ii) * ldy + r] = static_cast<float>(hsum(_mm256_add_epi32(acc[ii][0], acc[ii][1]))) * w.scale_row(r)[0];
}

/// w8a8 with activations in [-127, 127]: |w| x sign(x, w) through pmaddubsw (pairs stay below
/// 2 * 128 * 127 < 2^15), int32 over the whole row: exact, the same sum as tile_int8.
template <int MR, ModelFloat T>
QUANTO_ALWAYS_INLINE void tile_int8_sign(const packed_weight<qint8, T>& w,
                                         const kernels::detail::prepared_activations& xp, std::int64_t r,
                                         std::int64_t i0, float* y, std::int64_t ldy) noexcept {
  const std::uint8_t* codes = w.row(r);
  const std::int8_t* xq[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) xq[ii] = xp.qrow(i0 + ii);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) acc[ii] = _mm256_setzero_si256();
  for (std::int64_t e = 0; e < w.k_padded; e += 32) {
    const __m256i wq = load32(codes + e);
    const __m256i aw = _mm256_abs_epi8(wq);
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii)
      acc[ii] = _mm256_add_epi32(
          acc[ii], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, _mm256_sign_epi8(load32(xq[ii] + e), wq)), ones));
  }
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) y[(i0 + ii) * ldy + r] = static_cast<float>(hsum(acc[ii])) * w.scale_row(r)[0];
}

/// Exact path, 4-bit weights in block mode (see block_mode): one 32-element block at a time.
template <int MR, ModelFloat T, class S>
QUANTO_ALWAYS_INLINE void tile_exact_blocks(const packed_weight<qint4, T, S>& w,
                                            const kernels::detail::prepared_activations& xp, std::int64_t r,
                                            std::int64_t i0, float* y, std::int64_t ldy) noexcept {
  constexpr int A = chains<MR>;
  const std::int64_t groups = w.groups(), per_group = w.group / 32;
  const std::uint8_t* codes = w.row(r);
  const float* scale = w.scale_row(r);
  const float* x[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) x[ii] = xp.row(i0 + ii);
  __m256 total[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) total[ii] = _mm256_setzero_ps();
  for (std::int64_t g = 0; g < groups; ++g) {
    __m256 acc[MR][A];
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) QUANTO_UNROLL
    for (int a = 0; a < A; ++a) acc[ii][a] = _mm256_setzero_ps();
    for (std::int64_t blk = g * per_group; blk < (g + 1) * per_group; ++blk) {
      const __m256i c = block_codes4(codes, blk);
      QUANTO_UNROLL
      for (int j = 0; j < 4; ++j) {
        const __m256 f = part_floats<qint4>(c, j);
        QUANTO_UNROLL
        for (int ii = 0; ii < MR; ++ii)
          acc[ii][j % A] = _mm256_fmadd_ps(f, _mm256_loadu_ps(x[ii] + blk * 32 + 8 * j), acc[ii][j % A]);
      }
    }
    const __m256 sc = _mm256_set1_ps(scale[g]);
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) {
      __m256 sum = acc[ii][0];
      QUANTO_UNROLL
      for (int a = 1; a < A; ++a) sum = _mm256_add_ps(sum, acc[ii][a]);
      total[ii] = _mm256_fmadd_ps(sum, sc, total[ii]);
    }
  }
  const float* shift = w.shift_row(r);
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) {
    float v = hsum(total[ii]);
    const float* sums = xp.sums(i0 + ii);
    for (std::int64_t g = 0; g < groups; ++g) v -= shift[g] * sums[g];
    y[(i0 + ii) * ldy + r] = v;
  }
}

/// Dynamic path, 4-bit weights in block mode: pmaddubsw per block, int32 and scale per group.
template <int MR, ModelFloat T, class S>
QUANTO_ALWAYS_INLINE void tile_dynamic_blocks(const packed_weight<qint4, T, S>& w,
                                              const kernels::detail::prepared_activations& xp, std::int64_t r,
                                              std::int64_t i0, float* y, std::int64_t ldy) noexcept {
  constexpr std::int64_t flush_every = 8;  // int16 lanes: 8 * 2 * 15 * 127 < 2^15
  const std::int64_t groups = w.groups(), per_group = w.group / 32;
  const std::uint8_t* codes = w.row(r);
  const float* scale = w.scale_row(r);
  const std::int8_t* xq[MR];
  const float* xs[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) {
    xq[ii] = xp.qrow(i0 + ii);
    xs[ii] = xp.scales(i0 + ii);
  }
  const __m256i ones = _mm256_set1_epi16(1);
  __m256 total[MR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) total[ii] = _mm256_setzero_ps();
  for (std::int64_t g = 0; g < groups; ++g) {
    __m256i acc32[MR];
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) acc32[ii] = _mm256_setzero_si256();
    for (std::int64_t b0 = g * per_group; b0 < (g + 1) * per_group; b0 += flush_every) {
      const std::int64_t b1 = std::min((g + 1) * per_group, b0 + flush_every);
      __m256i acc16[MR];
      QUANTO_UNROLL
      for (int ii = 0; ii < MR; ++ii) acc16[ii] = _mm256_setzero_si256();
      for (std::int64_t blk = b0; blk < b1; ++blk) {
        const __m256i c = block_codes4(codes, blk);
        QUANTO_UNROLL
        for (int ii = 0; ii < MR; ++ii)
          acc16[ii] = _mm256_add_epi16(acc16[ii], _mm256_maddubs_epi16(c, load32(xq[ii] + blk * 32)));
      }
      QUANTO_UNROLL
      for (int ii = 0; ii < MR; ++ii) acc32[ii] = _mm256_add_epi32(acc32[ii], _mm256_madd_epi16(acc16[ii], ones));
    }
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii)
      total[ii] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc32[ii]), _mm256_set1_ps(scale[g] * xs[ii][g]), total[ii]);
  }
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii)
    y[(i0 + ii) * ldy + r] =
        hsum(total[ii]) - dot2(scale, xp.centrings(i0 + ii), w.shift_row(r), xp.sums(i0 + ii), groups);
}

/// Rows [n0, n1) x all activation rows. Activation rows go in panels that fit in L2 (~128 KiB of
/// activations, a multiple of 4 rows), and each panel in k-slices of `slice` chunks (so a tile of 4
/// activation rows stays in L1); then blocks of 8 weight rows meet tiles of up to 4 activation
/// rows. A weight row is decoded once per tile. `tile(mr, r, i0, c0, c1, first)`.
template <class Tile>
QUANTO_ALWAYS_INLINE void for_tiles(std::int64_t m, std::int64_t n0, std::int64_t n1, std::int64_t x_row_bytes,
                                    std::int64_t chunks, std::int64_t slice, Tile&& tile) {
  constexpr std::int64_t row_block = 8;
  const std::int64_t panel =
      std::max<std::int64_t>(4, (std::int64_t{128} << 10) / std::max<std::int64_t>(1, x_row_bytes) / 4 * 4);
  if (slice <= 0) slice = std::max<std::int64_t>(chunks, 1);
  const auto rows = [&](auto mr, std::int64_t rb, std::int64_t re, std::int64_t i0, std::int64_t c0, std::int64_t c1,
                        bool first) {
    std::int64_t r = rb;
    for (; r + 2 <= re; r += 2) tile(mr, std::integral_constant<int, 2>{}, r, i0, c0, c1, first);
    if (r < re) tile(mr, std::integral_constant<int, 1>{}, r, i0, c0, c1, first);
  };
  for (std::int64_t p0 = 0; p0 < m; p0 += panel) {
    const std::int64_t p1 = std::min(m, p0 + panel);
    for (std::int64_t c0 = 0; c0 < std::max<std::int64_t>(chunks, 1); c0 += slice) {
      const std::int64_t c1 = std::min(chunks, c0 + slice);
      const bool first = c0 == 0;
      for (std::int64_t rb = n0; rb < n1; rb += row_block) {
        const std::int64_t re = std::min(n1, rb + row_block);
        std::int64_t i0 = p0;
        for (; i0 + 4 <= p1; i0 += 4) rows(std::integral_constant<int, 4>{}, rb, re, i0, c0, c1, first);
        const std::int64_t left = p1 - i0;
        if (left == 3)
          rows(std::integral_constant<int, 3>{}, rb, re, i0, c0, c1, first);
        else if (left == 2)
          rows(std::integral_constant<int, 2>{}, rb, re, i0, c0, c1, first);
        else if (left == 1)
          rows(std::integral_constant<int, 1>{}, rb, re, i0, c0, c1, first);
      }
    }
  }
}

}  // namespace detail
}  // namespace avx2
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE

#endif  // QUANTO_HAS_AVX2
