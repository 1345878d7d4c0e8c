// quanto/kernels/x86/avx2/panels.hpp: the AVX2 exact path at m >= exact_panel_min_rows: a block of
// 8 weight rows is decoded once into floats (per 256-element k-slice), then a float micro-kernel of
// 6 activation rows x 2 weight rows runs over it; each output's arithmetic does not depend on m.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

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

/// The batch (activation rows) from which the exact path takes the panel kernels, whose arithmetic
/// for an output does not depend on m; below it, register tiles of up to 4 rows (tiles.hpp) whose
/// low bits may depend on the tile height.
inline constexpr std::int64_t exact_panel_min_rows = 5;

namespace detail {

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
}  // namespace avx2
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE

#endif  // QUANTO_HAS_AVX2
