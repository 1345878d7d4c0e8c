// quanto/kernels/arm/neon/matmul.hpp: AArch64 NEON kernels with the dot-product extension
// (compiled when the translation unit targets it: -march=armv8.2-a+dotprod or later; see
// core/isa.hpp). The kernels are in decode.hpp and tiles.hpp; this file has the entry points and
// `backend<isa::neon_dot>`.
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
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/arm/neon/decode.hpp"
#include "quanto/kernels/arm/neon/tiles.hpp"
#include "quanto/kernels/backend.hpp"
#include "quanto/kernels/layout.hpp"
#include "quanto/kernels/reference/activations.hpp"

// Empty unless the compiler targets this ISA, so that including it anywhere is harmless.
#if QUANTO_HAS_NEON_DOT
#include <arm_neon.h>

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace neon {

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
  static constexpr std::int64_t exact_panel_min_rows = 1;  // row_exact does not depend on m
  static float quantize_block(const float* x, std::int64_t n, std::int8_t* q, std::int32_t& sum) noexcept {
    return reference::quantize_block(x, n, q, sum);
  }
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
