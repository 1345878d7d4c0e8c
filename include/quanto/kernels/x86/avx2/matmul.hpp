// quanto/kernels/x86/avx2/matmul.hpp: AVX2 + FMA + F16C matmul kernels (compiled when the
// translation unit targets them; see isa.hpp).
//
// Every kernel reads a row's codes 32 bytes at a time (a "chunk": 32 int8/fp8 codes, 64 4-bit codes
// or 128 2-bit codes, see layout.hpp) and splits it with shifts and masks into "units" of 32 codes.
// A unit's codes come out in the order the byte layout gives them, not in k order; the activations
// were stored in that same order by `position<Q>` when they were prepared, so no shuffle is needed.
//
// - exact:   codes -> float (int8: sign extension; 2/4-bit: zero extension; fp8: re-biased to
//            float16 bits and converted with F16C), FMA with float activations, scale per group.
// - dynamic: 2/4-bit: pmaddubsw(unsigned codes, int8 x) -> int16, summed a few times, pmaddwd -> int32;
//            int8: sign trick (|w| x sign(x, w)), since pmaddubsw needs one unsigned side.
// - int8:    int8 x int8 sign-extended to int16, pmaddwd -> int32 (exact for every code, -128 too).
//
// Work is tiled MR (<= 4) activation rows x 1 weight row, over blocks of 8 weight rows, so that a
// weight row is decoded once per 4 activation rows and a tile of activations stays in cache.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/isa.hpp"
#include "quanto/kernels/layout.hpp"

// Empty unless the compiler targets this ISA, so that including it anywhere is harmless.
#if QUANTO_HAS_AVX2
#include <immintrin.h>

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace avx2 {

/// Whether a 4-bit weight runs block by block (its groups are odd multiples of 32, e.g. quanto's 96,
/// so a group boundary can fall inside a 32-byte load): then the activations stay in k order.
template <QType Q, ModelFloat T, class S>
bool block_mode(const packed_weight<Q, T, S>& w) noexcept {
  return Q::bits == 4 && w.groups() > 1 && w.group % 64 != 0;
}

/// Where logical element e of a row goes in the activations this ISA reads (see the file comment).
template <QType Q, class W>
std::int64_t position(const W& w, std::int64_t e) noexcept {
  if constexpr (Q::bits == 8) {
    return e;
  } else {
    if (block_mode(w)) return e;
    constexpr std::int64_t chunk = 32 * 8 / Q::bits;             // elements per 32-byte load
    constexpr std::int64_t block_bytes = block_k * Q::bits / 8;  // bytes per 32-element block
    const std::int64_t base = e / chunk * chunk, j = e % chunk;
    const std::int64_t b = j / block_k, jj = j % block_k;
    const std::int64_t plane = jj / block_bytes, byte = b * block_bytes + jj % block_bytes;
    return base + plane * 32 + byte;
  }
}

/// Whether these kernels take the weight: 2-bit groups must be whole 128-element chunks (or a
/// single group); 4-bit weights always (block by block when their groups need it).
template <QType Q, ModelFloat T, class S>
bool supports(const packed_weight<Q, T, S>& w) noexcept {
  constexpr std::int64_t chunk = 32 * 8 / Q::bits;
  return Q::bits == 4 || w.groups() <= 1 || w.group % chunk == 0;
}

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

/// The 32 codes of unit `u` of a chunk (unsigned for 2/4-bit, the raw bytes for 8-bit).
template <int Bits>
QUANTO_ALWAYS_INLINE __m256i unit_codes(__m256i raw, int u) noexcept {
  if constexpr (Bits == 8) {
    (void)u;
    return raw;
  } else {
    const __m256i mask = _mm256_set1_epi8(static_cast<char>((1 << Bits) - 1));
    return _mm256_and_si256(_mm256_srli_epi16(raw, Bits * u), mask);
  }
}

/// The power of two the fp8 decoding (part_floats) divides by: 2^8 (e4m3fn, bias 7), 2^7 (e4m3fnuz, bias 8), 1 (e5m2).
template <class F>
constexpr float fp8_rescale() noexcept {
  if constexpr (std::is_same_v<F, float8_e5m2>)
    return 1.0f;
  else if constexpr (std::is_same_v<F, float8_e4m3fnuz>)
    return 128.0f;
  else
    return 256.0f;
}

/// Bytes 8j .. 8j+7 of 32 codes as 8 floats (j a constant after unrolling): int8 sign-extended,
/// 2/4-bit zero-extended, fp8 re-biased to float16 (see fp8_rescale).
template <QType Q>
QUANTO_ALWAYS_INLINE __m256 part_floats(__m256i c, int j) noexcept {
  const __m128i half = j < 2 ? _mm256_castsi256_si128(c) : _mm256_extracti128_si256(c, 1);
  const __m128i p = (j & 1) ? _mm_srli_si128(half, 8) : half;
  if constexpr (FloatQType<Q>) {
    using F = typename Q::storage;
    const __m128i v16 = _mm_cvtepu8_epi16(p);
    __m128i h;
    if constexpr (std::is_same_v<F, float8_e5m2>) {
      h = _mm_slli_epi16(v16, 8);  // e5m2 is the top byte of a float16
    } else {
      // e4m3fn / e4m3fnuz: |code| << 7 puts exponent and mantissa in float16's fields with float16's
      // bias (15) instead of 7 or 8; subnormals land on float16 subnormals with the same factor.
      h = _mm_or_si128(_mm_and_si128(_mm_slli_epi16(v16, 7), _mm_set1_epi16(0x3F80)),
                       _mm_and_si128(_mm_slli_epi16(v16, 8), _mm_set1_epi16(static_cast<short>(0x8000))));
    }
    return _mm256_cvtph_ps(h);
  } else if constexpr (ByteQType<Q>) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(p));
  } else {
    return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(p));
  }
}

QUANTO_ALWAYS_INLINE __m256i load32(const void* p) noexcept {
  return _mm256_loadu_si256(static_cast<const __m256i*>(p));
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

/// A 4-bit block (16 bytes) as 32 codes in k order: low nibbles (elements 0..15), then high ones.
QUANTO_ALWAYS_INLINE __m256i block_codes4(const std::uint8_t* row, std::int64_t blk) noexcept {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + blk * 16));
  const __m128i mask = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), mask), _mm_and_si128(v, mask));
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

// ---- exact path at m > 1: decode a block of weight rows once, then a float micro-kernel ----------

/// Weight rows per block of the panel path, and elements per k-slice (the decoded block, 8 KiB,
/// and a 6-row activation tile, 6 KiB, stay in L1 together).
inline constexpr std::int64_t panel_rows = 8;
inline constexpr std::int64_t panel_slice = 256;
/// Activation rows per micro-tile: 6 rows x 2 weight rows = 12 accumulators, 2 weight registers,
/// activations read straight into the FMAs.
inline constexpr int panel_mr = 6;

/// Decodes elements [s0, s1) (whole chunks, in the layout's order = the prepared activations'
/// order) of weight rows [r, r + rows) into `out` (rows of `panel_slice` floats): the codes' exact
/// values (fp8: divided by fp8_rescale, which the scale carries).
template <QType Q, ModelFloat T, class S>
QUANTO_ALWAYS_INLINE void decode_panel(const packed_weight<Q, T, S>& w, std::int64_t r, std::int64_t rows,
                                       std::int64_t s0, std::int64_t s1, float* out) noexcept {
  constexpr std::int64_t chunk = 32 * 8 / Q::bits, units = chunk / 32;
  for (std::int64_t rr = 0; rr < rows; ++rr) {
    const std::uint8_t* codes = w.row(r + rr);
    float* o = out + rr * panel_slice;
    for (std::int64_t base = s0; base < s1; base += chunk, o += chunk) {
      const __m256i raw = load32(codes + base * Q::bits / 8);
      QUANTO_UNROLL
      for (int u = 0; u < static_cast<int>(units); ++u) {
        const __m256i q = unit_codes<Q::bits>(raw, u);
        QUANTO_UNROLL
        for (int j = 0; j < 4; ++j) _mm256_storeu_ps(o + 32 * u + 8 * j, part_floats<Q>(q, j));
      }
    }
  }
}

/// The horizontal sums of 8 consecutive 8-lane totals, as one vector (lane r = sum of total r).
QUANTO_ALWAYS_INLINE __m256 sum_rows8(const float* t) noexcept {
  const auto at = [t](int r) { return _mm256_loadu_ps(t + 8 * r); };
  const __m256 h0 = _mm256_hadd_ps(_mm256_hadd_ps(at(0), at(1)), _mm256_hadd_ps(at(2), at(3)));
  const __m256 h1 = _mm256_hadd_ps(_mm256_hadd_ps(at(4), at(5)), _mm256_hadd_ps(at(6), at(7)));
  // h0 = [rows 0-3, lanes 0-3 | rows 0-3, lanes 4-7], h1 likewise for rows 4-7
  return _mm256_add_ps(_mm256_permute2f128_ps(h0, h1, 0x20), _mm256_permute2f128_ps(h0, h1, 0x31));
}

/// MR activation rows x NR decoded weight rows over `len` elements (a multiple of 8), then
/// `total[ii][rr] += acc * scale[rr]` (the totals live in memory, 8 floats each; the first segment
/// of a block stores `acc * scale` instead, so the totals need no zeroing).
template <int MR, int NR>
QUANTO_ALWAYS_INLINE void panel_micro(const float* const* x, const float* wd, std::int64_t len, const float* scale,
                                      float* const* total, bool first) noexcept {
  __m256 acc[MR][NR];
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) QUANTO_UNROLL
  for (int rr = 0; rr < NR; ++rr) acc[ii][rr] = _mm256_setzero_ps();
  for (std::int64_t e = 0; e < len; e += 8) {
    __m256 wv[NR];
    QUANTO_UNROLL
    for (int rr = 0; rr < NR; ++rr) wv[rr] = _mm256_loadu_ps(wd + rr * panel_slice + e);
    QUANTO_UNROLL
    for (int ii = 0; ii < MR; ++ii) {
      __m256 xv = _mm256_loadu_ps(x[ii] + e);
      // one load feeding NR FMAs: without this GCC folds the load into each FMA, and the loads
      // (not the FMAs) become the limit
      if constexpr (NR > 1) __asm__("" : "+x"(xv));
      QUANTO_UNROLL
      for (int rr = 0; rr < NR; ++rr) acc[ii][rr] = _mm256_fmadd_ps(wv[rr], xv, acc[ii][rr]);
    }
  }
  QUANTO_UNROLL
  for (int ii = 0; ii < MR; ++ii) QUANTO_UNROLL
  for (int rr = 0; rr < NR; ++rr) {
    float* t = total[ii] + rr * 8;
    const __m256 sc = _mm256_set1_ps(scale[rr]);
    _mm256_storeu_ps(t, first ? _mm256_mul_ps(acc[ii][rr], sc) : _mm256_fmadd_ps(acc[ii][rr], sc, _mm256_loadu_ps(t)));
  }
}

/// One micro-tile of `mr` (1..panel_mr) activation rows from i0 over the decoded rows' elements
/// [a, b) of the slice starting at s0 (all in one weight group), NR weight rows from rr0.
template <int NR>
QUANTO_ALWAYS_INLINE void panel_tile(int mr, const kernels::detail::prepared_activations& xp, std::int64_t i0,
                                     std::int64_t s0, std::int64_t a, std::int64_t b, const float* wd, std::int64_t rr0,
                                     const float* scale, float* tot, bool first) noexcept {
  const float* x[panel_mr];
  float* t[panel_mr];
  for (int ii = 0; ii < mr; ++ii) {
    x[ii] = xp.row(i0 + ii) + a;
    t[ii] = tot + ((i0 + ii) * panel_rows + rr0) * 8;
  }
  const float* w0 = wd + rr0 * panel_slice + (a - s0);
  switch (mr) {
    case 6:
      panel_micro<6, NR>(x, w0, b - a, scale, t, first);
      break;
    case 5:
      panel_micro<5, NR>(x, w0, b - a, scale, t, first);
      break;
    case 4:
      panel_micro<4, NR>(x, w0, b - a, scale, t, first);
      break;
    case 3:
      panel_micro<3, NR>(x, w0, b - a, scale, t, first);
      break;
    case 2:
      panel_micro<2, NR>(x, w0, b - a, scale, t, first);
      break;
    default:
      panel_micro<1, NR>(x, w0, b - a, scale, t, first);
      break;
  }
}

/// The exact path for several activation rows: for each block of 8 weight rows and each k-slice of
/// 256 elements, the codes are decoded once into floats (not once per 4 activation rows), then
/// 6 x 2 micro-tiles of FMAs run over each weight group's part of the slice, and each group's sum
/// is scaled into a per-output 8-lane total; the shift term comes last, as in tile_exact. Each
/// output's arithmetic depends on m, k and the group size only (not on threads or task bounds).
template <QType Q, ModelFloat T, class S>
void gemm_exact_panel(const packed_weight<Q, T, S>& w, const kernels::detail::prepared_activations& xp, std::int64_t n0,
                      std::int64_t n1, float* y, std::int64_t ldy) {
  constexpr std::int64_t chunk = 32 * 8 / Q::bits;
  float rescale = 1.0f;
  if constexpr (FloatQType<Q>) rescale = fp8_rescale<typename Q::storage>();
  const std::int64_t m = xp.m, wgroups = w.groups();
  // as gemm_exact: with several groups the padding belongs to none (k is then whole chunks)
  const std::int64_t kend = wgroups > 1 ? w.k : w.k_padded;
  const std::int64_t glen = wgroups > 1 ? w.group : std::max<std::int64_t>(kend, 1);
  alignas(32) float wd[panel_rows * panel_slice];
  thread_local std::vector<float> tot_buffer;
  thread_local std::vector<float> shift_t;
  tot_buffer.resize(static_cast<std::size_t>(m * panel_rows * 8));
  float* tot = tot_buffer.data();
  for (std::int64_t rb = n0; rb < n1; rb += panel_rows) {
    const std::int64_t rows = std::min(panel_rows, n1 - rb);
    // a full block's totals are all written by its first segment; a tail block's unused rows and
    // an empty row (k = 0) are read as zeros
    if (rows < panel_rows || kend == 0) std::fill(tot_buffer.begin(), tot_buffer.end(), 0.0f);
    for (std::int64_t s0 = 0; s0 < kend; s0 += panel_slice) {
      const std::int64_t s1 = std::min(kend, s0 + panel_slice);
      static_assert(panel_slice % chunk == 0);
      decode_panel(w, rb, rows, s0, s1, wd);
      for (std::int64_t a = s0; a < s1;) {  // the slice's parts in one weight group each
        const std::int64_t g = a / glen;
        const std::int64_t b = std::min(s1, (g + 1) * glen);
        float sc[panel_rows];
        for (std::int64_t rr = 0; rr < rows; ++rr) sc[rr] = w.scale_row(rb + rr)[wgroups > 1 ? g : 0] * rescale;
        for (std::int64_t i0 = 0; i0 < m; i0 += panel_mr) {
          const int mr = static_cast<int>(std::min<std::int64_t>(panel_mr, m - i0));
          std::int64_t rr = 0;
          for (; rr + 2 <= rows; rr += 2) panel_tile<2>(mr, xp, i0, s0, a, b, wd, rr, sc + rr, tot, a == 0);
          if (rr < rows) panel_tile<1>(mr, xp, i0, s0, a, b, wd, rr, sc + rr, tot, a == 0);
        }
        a = b;
      }
    }
    // the block's shifts transposed ([group][row], rows past `rows` zero), so that the shift term
    // runs on the 8 outputs of an activation row at once, in the same per-output order as tile_exact
    if constexpr (LowBitQType<Q>) {
      shift_t.assign(static_cast<std::size_t>(wgroups * panel_rows), 0.0f);
      for (std::int64_t rr = 0; rr < rows; ++rr)
        for (std::int64_t g = 0; g < wgroups; ++g)
          shift_t[static_cast<std::size_t>(g * panel_rows + rr)] = w.shift_row(rb + rr)[g];
    }
    for (std::int64_t i = 0; i < m; ++i) {
      __m256 v = sum_rows8(tot + i * panel_rows * 8);
      if constexpr (LowBitQType<Q>) {
        const float* sums = xp.sums(i);
        for (std::int64_t g = 0; g < wgroups; ++g)
          v = _mm256_fnmadd_ps(_mm256_loadu_ps(shift_t.data() + g * panel_rows), _mm256_set1_ps(sums[g]), v);
      }
      if (rows == panel_rows) {
        _mm256_storeu_ps(y + i * ldy + rb, v);
      } else {
        alignas(32) float out[panel_rows];
        _mm256_store_ps(out, v);
        std::copy(out, out + rows, y + i * ldy + rb);
      }
    }
  }
}

}  // namespace detail

template <QType Q, ModelFloat T, class S>
void gemm_exact(const packed_weight<Q, T, S>& w, const kernels::detail::prepared_activations& xp, std::int64_t n0,
                std::int64_t n1, float* y, std::int64_t ldy) {
  if constexpr (Q::bits == 4) {
    if (block_mode(w)) {
      detail::for_tiles(xp.m, n0, n1, xp.k_padded * std::int64_t{sizeof(float)}, 0, 0,
                        [&](auto mr, auto nr, std::int64_t r, std::int64_t i0, std::int64_t, std::int64_t, bool) {
                          QUANTO_UNROLL
                          for (int rr = 0; rr < decltype(nr)::value; ++rr)
                            detail::tile_exact_blocks<decltype(mr)::value>(w, xp, r + rr, i0, y, ldy);
                        });
      return;
    }
  }
  // from exact_panel_min_rows on (isa.hpp); below it tile_exact's decode per 4 rows costs no more
  // than a decode into memory
  if (xp.m >= exact_panel_min_rows) {
    detail::gemm_exact_panel(w, xp, n0, n1, y, ldy);
    return;
  }
  // k-slices of ~1024 elements, whole groups, when the batch has more than one activation row
  // (for one row the activations are read once per weight row and stay in L1 anyway)
  constexpr std::int64_t chunk = 32 * 8 / Q::bits;
  // With several groups, the row's padding (k to k_padded) belongs to no group: stop at k (a
  // whole number of chunks then). One group (or 8-bit) covers the padding, whose codes are 0.
  const std::int64_t chunks = w.groups() > 1 ? w.k / chunk : w.k_padded / chunk;
  const std::int64_t per_group = w.groups() <= 1 ? chunks : w.group / chunk;
  std::int64_t slice = 0;
  if (xp.m > 1 && (w.groups() > 1 || ByteQType<Q>)) {
    const std::int64_t unit = ByteQType<Q> ? 1 : per_group;
    slice = std::max<std::int64_t>(1, (1024 / chunk) / unit) * unit;
  }
  detail::for_tiles(
      xp.m, n0, n1, xp.k_padded * std::int64_t{sizeof(float)}, chunks, slice,
      [&](auto mr, auto nr, std::int64_t r, std::int64_t i0, std::int64_t c0, std::int64_t c1, bool first) {
        if constexpr (decltype(nr)::value == 2)
          detail::tile_exact2<decltype(mr)::value>(w, xp, r, i0, c0, c1, first, y, ldy);
        else
          detail::tile_exact<decltype(mr)::value>(w, xp, r, i0, c0, c1, first, y, ldy);
      });
}

template <IntegerQType Q, ModelFloat T, class S>
void gemm_dynamic(const packed_weight<Q, T, S>& w, const kernels::detail::prepared_activations& xp, std::int64_t n0,
                  std::int64_t n1, float* y, std::int64_t ldy) {
  if constexpr (Q::bits == 4) {
    if (block_mode(w)) {
      detail::for_tiles(xp.m, n0, n1, xp.k_padded, 0, 0,
                        [&](auto mr, auto nr, std::int64_t r, std::int64_t i0, std::int64_t, std::int64_t, bool) {
                          QUANTO_UNROLL
                          for (int rr = 0; rr < decltype(nr)::value; ++rr)
                            detail::tile_dynamic_blocks<decltype(mr)::value>(w, xp, r + rr, i0, y, ldy);
                        });
      return;
    }
  }
  detail::for_tiles(xp.m, n0, n1, xp.k_padded, 0, 0,
                    [&](auto mr, auto nr, std::int64_t r, std::int64_t i0, std::int64_t, std::int64_t, bool) {
                      // one weight row at a time: sharing activation loads between two rows measured slower here
                      QUANTO_UNROLL
                      for (int rr = 0; rr < decltype(nr)::value; ++rr) {
                        if constexpr (LowBitQType<Q>)
                          detail::tile_dynamic_lowbit<decltype(mr)::value>(w, xp, r + rr, i0, y, ldy);
                        else
                          detail::tile_dynamic_int8<decltype(mr)::value>(w, xp, r + rr, i0, y, ldy);
                      }
                    });
}

template <ModelFloat T>
void gemm_int8(const packed_weight<qint8, T>& w, const kernels::detail::prepared_activations& xp, std::int64_t n0,
               std::int64_t n1, float* y, std::int64_t ldy) {
  // Activations without a -128 code (the usual case: symmetric quantization gives [-127, 127])
  // take pmaddubsw with the sign trick; a -128 would break it, so then every product is widened
  // to int16. Both are exact, so the result does not depend on which ran.
  if (xp.has_int8_min) {
    detail::for_tiles(xp.m, n0, n1, xp.k_padded, 0, 0,
                      [&](auto mr, auto nr, std::int64_t r, std::int64_t i0, std::int64_t, std::int64_t, bool) {
                        QUANTO_UNROLL
                        for (int rr = 0; rr < decltype(nr)::value; ++rr)
                          detail::tile_int8<decltype(mr)::value>(w, xp, r + rr, i0, y, ldy);
                      });
  } else {
    detail::for_tiles(xp.m, n0, n1, xp.k_padded, 0, 0,
                      [&](auto mr, auto nr, std::int64_t r, std::int64_t i0, std::int64_t, std::int64_t, bool) {
                        QUANTO_UNROLL
                        for (int rr = 0; rr < decltype(nr)::value; ++rr)
                          detail::tile_int8_sign<decltype(mr)::value>(w, xp, r + rr, i0, y, ldy);
                      });
  }
}

}  // namespace avx2

template <>
struct backend<isa::avx2> {
  template <QType Q, class W>
  static std::int64_t position(const W& w, std::int64_t e) noexcept {
    return avx2::position<Q>(w, e);
  }
  template <class W>
  static bool supports(const W& w) noexcept {
    return avx2::supports(w);
  }
  template <class... A>
  static void gemm_exact(A&&... a) {
    avx2::gemm_exact(std::forward<A>(a)...);
  }
  template <class... A>
  static void gemm_dynamic(A&&... a) {
    avx2::gemm_dynamic(std::forward<A>(a)...);
  }
  template <class... A>
  static void gemm_int8(A&&... a) {
    avx2::gemm_int8(std::forward<A>(a)...);
  }
};

}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE

#endif  // QUANTO_HAS_AVX2
