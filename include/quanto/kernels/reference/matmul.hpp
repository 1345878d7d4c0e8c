// quanto/kernels/reference/matmul.hpp: the scalar reference matmul kernels. Always compiled; every
// SIMD path is tested against them. Plain loops in the order the math is written:
//
//   exact:    y[i,r] = sum_g ( scale[r,g] * sum_{e in g} w(code[r,e]) * x[i,e]  -  shift[r,g] * xsum[i,g] )
//   dynamic:  y[i,r] = sum_b scale[r,g(b)] * xscale[i,b] * sum_{e in b} code[r,e] * xq[i,e]  -  shift term
//   int8:     y[i,r] = float(sum_e code[r,e] * xq[i,e])            (int32, exact; scales in the epilogue)
//
// where w(c) is the code's value (int8, fp8, or an unsigned 2/4-bit code): decode.hpp; the
// activation blocks' quantization is activations.hpp.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>

#include "quanto/core/config.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/backend.hpp"
#include "quanto/kernels/layout.hpp"
#include "quanto/kernels/reference/activations.hpp"
#include "quanto/kernels/reference/decode.hpp"

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace reference {

/// Weight-only matmul with float activations, rows [n0, n1) of the weight.
template <QType Q, ModelFloat T, class S>
void gemm_exact(const packed_weight<Q, T, S>& w, const detail::prepared_activations& xp, std::int64_t n0,
                std::int64_t n1, float* y, std::int64_t ldy) {
  const std::int64_t groups = w.groups();
  for (std::int64_t r = n0; r < n1; ++r) {
    const std::uint8_t* codes = w.row(r);
    for (std::int64_t i = 0; i < xp.m; ++i) {
      const float* x = xp.row(i);
      float acc = 0.0f;
      for (std::int64_t g = 0; g < groups; ++g) {
        float dot = 0.0f;
        for (std::int64_t e = g * w.group; e < (g + 1) * w.group; ++e)
          dot += code_value<Q>(layout_detail::get_code<Q::bits>(codes, e)) * x[e];
        acc += w.scale_row(r)[g] * dot;
        if constexpr (LowBitQType<Q>) acc -= w.shift_row(r)[g] * xp.sums(i)[g];
      }
      y[i * ldy + r] = acc;
    }
  }
}

/// The centre of 2/4-bit codes: the dynamic path multiplies (q - centre) so that the rounding error
/// of the int8 activations is weighted by small numbers.
template <QType Q>
inline constexpr std::int32_t code_centre = LowBitQType<Q> ? (1 << (Q::bits - 1)) : 0;

/// Weight-only matmul with activations quantized per block to int8 (integer qtypes only):
/// sum_b ws * xs_b * (sum q*xq - c * sum xq)  -  sum_g (shift_g - c * ws_g) * xsum_g.
template <IntegerQType Q, ModelFloat T, class S>
void gemm_dynamic(const packed_weight<Q, T, S>& w, const detail::prepared_activations& xp, std::int64_t n0,
                  std::int64_t n1, float* y, std::int64_t ldy) {
  constexpr std::int32_t c = code_centre<Q>;
  for (std::int64_t r = n0; r < n1; ++r) {
    const std::uint8_t* codes = w.row(r);
    for (std::int64_t i = 0; i < xp.m; ++i) {
      const std::int8_t* xq = xp.qrow(i);
      float acc = 0.0f;
      for (std::int64_t b = 0; b < xp.xblocks; ++b) {
        const std::int64_t lo = b * xp.xblock, hi = b + 1 == xp.xblocks ? xp.k_padded : lo + xp.xblock;
        std::int32_t dot = 0;
        for (std::int64_t e = lo; e < hi; ++e) dot += code_int<Q>(layout_detail::get_code<Q::bits>(codes, e)) * xq[e];
        const float ws = w.scale_row(r)[LowBitQType<Q> ? lo / w.group : 0];
        acc += ws * xp.scales(i)[b] * static_cast<float>(dot - c * xp.qsums(i)[b]);
      }
      if constexpr (LowBitQType<Q>)
        for (std::int64_t g = 0; g < w.groups(); ++g)
          acc -= (w.shift_row(r)[g] - static_cast<float>(c) * w.scale_row(r)[g]) * xp.sums(i)[g];
      y[i * ldy + r] = acc;
    }
  }
}

/// int8 activations x int8 weights: exact int32 dot products, converted to float (scales are the
/// epilogue's).
template <ModelFloat T>
void gemm_int8(const packed_weight<qint8, T>& w, const detail::prepared_activations& xp, std::int64_t n0,
               std::int64_t n1, float* y, std::int64_t ldy) {
  for (std::int64_t r = n0; r < n1; ++r) {
    const auto* codes = reinterpret_cast<const std::int8_t*>(w.row(r));
    for (std::int64_t i = 0; i < xp.m; ++i) {
      const std::int8_t* xq = xp.qrow(i);
      std::int32_t dot = 0;
      for (std::int64_t e = 0; e < w.k; ++e) dot += static_cast<std::int32_t>(codes[e]) * xq[e];
      y[i * ldy + r] = static_cast<float>(dot) * w.scale_row(r)[0];
    }
  }
}

}  // namespace reference

template <>
struct backend<isa::scalar> {
  static constexpr std::int64_t exact_panel_min_rows = 1;  // no output's bits depend on m
  static float quantize_block(const float* x, std::int64_t n, std::int8_t* q, std::int32_t& sum) noexcept {
    return reference::quantize_block(x, n, q, sum);
  }
  template <QType Q, class W>
  static constexpr std::int64_t position(const W&, std::int64_t e) noexcept {
    return reference::position<Q>(e);
  }
  template <class W>
  static bool supports(const W&) noexcept {
    return true;
  }
  template <class... A>
  static void gemm_exact(A&&... a) {
    reference::gemm_exact(std::forward<A>(a)...);
  }
  template <class... A>
  static void gemm_dynamic(A&&... a) {
    reference::gemm_dynamic(std::forward<A>(a)...);
  }
  template <class... A>
  static void gemm_int8(A&&... a) {
    reference::gemm_int8(std::forward<A>(a)...);
  }
};

}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE
