// quanto/kernels/x86/avx2/matmul.hpp: the AVX2 + FMA + F16C matmul entry points and
// `backend<isa::avx2>` (compiled when the translation unit targets them; see core/isa.hpp). The
// kernels are in decode.hpp (codes -> values), tiles.hpp (register tiles, m < 5 and the integer
// paths), panels.hpp (the exact path at m >= 5); activations.hpp quantizes activation blocks.
#pragma once

#include <cstdint>
#include <utility>

#include "quanto/core/config.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/backend.hpp"
#include "quanto/kernels/layout.hpp"
#include "quanto/kernels/x86/avx2/activations.hpp"
#include "quanto/kernels/x86/avx2/decode.hpp"
#include "quanto/kernels/x86/avx2/panels.hpp"
#include "quanto/kernels/x86/avx2/tiles.hpp"

#if QUANTO_HAS_AVX2

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace avx2 {

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
  // from exact_panel_min_rows on (panels.hpp); below it tile_exact's decode per 4 rows costs no more
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
  if constexpr (LowBitQType<Q>) {
    // groups of 1, 2 or 4 whole loads (64 / 128 / 256 elements at 4 bits, 128 / 256 / 512 at 2 bits)
    // take the straight-line tile; others (one group per row, groups of 192, ...) the general one
    const std::int64_t loads = w.groups() > 1 ? w.group / (32 * 8 / Q::bits) : 0;
    const bool whole = w.groups() > 1 && w.group % (32 * 8 / Q::bits) == 0;
    const auto fixed = [&](auto lpg) {
      detail::for_tiles(xp.m, n0, n1, xp.k_padded, 0, 0,
                        [&](auto mr, auto nr, std::int64_t r, std::int64_t i0, std::int64_t, std::int64_t, bool) {
                          QUANTO_UNROLL
                          for (int rr = 0; rr < decltype(nr)::value; ++rr)
                            detail::tile_dynamic_lowbit_fixed<decltype(mr)::value, decltype(lpg)::value>(w, xp, r + rr,
                                                                                                         i0, y, ldy);
                        });
    };
    if (whole && loads == 2) return fixed(std::integral_constant<int, 2>{});
    if (whole && loads == 1) return fixed(std::integral_constant<int, 1>{});
    if constexpr (detail::fixed_group_fits<Q::bits, 4>)
      if (whole && loads == 4) return fixed(std::integral_constant<int, 4>{});
  } else {
    if (xp.xblock == 128 && w.k_padded == xp.xblocks * 128) {
      detail::for_tiles(xp.m, n0, n1, xp.k_padded, 0, 0,
                        [&](auto mr, auto nr, std::int64_t r, std::int64_t i0, std::int64_t, std::int64_t, bool) {
                          QUANTO_UNROLL
                          for (int rr = 0; rr < decltype(nr)::value; ++rr)
                            detail::tile_dynamic_int8_fixed<decltype(mr)::value, 4>(w, xp, r + rr, i0, y, ldy);
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
  static constexpr std::int64_t exact_panel_min_rows = avx2::exact_panel_min_rows;
  static float quantize_block(const float* x, std::int64_t n, std::int8_t* q, std::int32_t& sum) noexcept {
    return avx2::quantize_block(x, n, q, sum);
  }
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