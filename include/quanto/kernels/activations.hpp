// quanto/kernels/activations.hpp: the per-call preparation of a matmul's activations, shared by
// every ISA — conversion to float32 (zero-padded to the weight's k_padded), the per-group sums an
// affine weight's shift needs, and the dynamic per-block int8 quantization of the fast path.
// It costs O(m·k), against the kernel's O(m·n·k).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "quanto/core/bfloat16.hpp"
#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/float16.hpp"
#include "quanto/core/float_bits.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/kernels/isa.hpp"
#include "quanto/kernels/layout.hpp"

QUANTO_BEGIN_NAMESPACE
namespace kernels {

/// Activation policies of the weight-only matmul.
/// - `exact_activations`: x stays float32 (bfloat16/float16 x is widened exactly); the weight is
///   dequantized on the fly and accumulated in float32. The default.
/// - `dynamic_int8_activations`: x is quantized per block to int8 on every call (absmax / 127,
///   round to nearest even) and multiplied with the integer codes by integer dot products; blocks are
///   the weight's groups (qint2/qint4) or `block` elements (qint8). 2/4-bit codes are centred
///   (q - 2^(bits-1)) so the activation rounding error is not amplified by the codes' offset; the
///   shift term uses the exact float sums. Faster; its accuracy cost is measured in tests/kernels
///   and docs/kernels.md.
struct exact_activations {};
struct dynamic_int8_activations {
  static constexpr std::int64_t block = 128;  ///< x block for 8-bit weights
};

template <class P>
concept ActivationPolicy = std::is_same_v<P, exact_activations> || std::is_same_v<P, dynamic_int8_activations>;

/// Activation element types the kernels take.
template <class X>
concept KernelFloat = std::is_same_v<X, float> || std::is_same_v<X, bfloat16> || std::is_same_v<X, float16>;

namespace detail {

template <KernelFloat X>
inline float to_f32(X v) noexcept {
  if constexpr (std::is_same_v<X, float>) return v;
  else return to_float(v);
}

/// One call's activations, ready for a kernel: m rows of k_padded floats (zero-padded), their
/// per-group sums, and, for the dynamic policy, int8 codes with one scale per block.
struct prepared_activations {
  std::int64_t m = 0, k = 0, k_padded = 0, groups = 0;
  std::int64_t xblock = 0, xblocks = 0;  ///< dynamic policy: elements per x block, blocks per row
  tensor<float> x;                       ///< [m, k_padded]
  tensor<float> group_sum;               ///< [m, groups]: sum of x over each weight group
  tensor<std::int8_t> xq;                ///< [m, k_padded]: dynamic policy
  tensor<float> xscale;                  ///< [m, xblocks]: dynamic policy (NaN for a non-finite block)
  tensor<std::int32_t> xqsum;            ///< [m, xblocks]: dynamic policy, the sum of each block's codes
  float out_scale = 1.0f;                ///< applied in the epilogue (an activation's quantization scale)

  const float* row(std::int64_t i) const noexcept { return x.data() + i * k_padded; }
  const float* sums(std::int64_t i) const noexcept { return group_sum.data() + i * groups; }
  const std::int8_t* qrow(std::int64_t i) const noexcept { return xq.data() + i * k_padded; }
  const float* scales(std::int64_t i) const noexcept { return xscale.data() + i * xblocks; }
  const std::int32_t* qsums(std::int64_t i) const noexcept { return xqsum.data() + i * xblocks; }
};

/// Identity: the element order a scalar kernel reads.
struct logical_order {
  constexpr std::int64_t operator()(std::int64_t e) const noexcept { return e; }
};

/// Shared part of the preparation: float rows and group sums. `decode(i, e)` returns x[i, e];
/// `position(e)` is where a kernel wants logical element e within its row (a permutation of
/// [0, k_padded) that only moves elements within 128-element chunks). Sums are taken in logical
/// order, so they are the same for every ISA.
template <class Decode, class Position = logical_order>
prepared_activations prepare_float(std::int64_t m, std::int64_t k, std::int64_t k_padded, std::int64_t group,
                                   bool need_sums, Decode&& decode, Position position = {}) {
  prepared_activations p;
  p.m = m;
  p.k = k;
  p.k_padded = k_padded;
  p.groups = group == 0 ? 0 : k / group;
  p.x = tensor<float>(shape{m, k_padded});
  if (need_sums) p.group_sum = tensor<float>(shape{m, p.groups});
  std::vector<float> logical(static_cast<std::size_t>(k));
  for (std::int64_t i = 0; i < m; ++i) {
    for (std::int64_t e = 0; e < k; ++e) logical[static_cast<std::size_t>(e)] = decode(i, e);
    float* dst = p.x.data() + i * k_padded;
    for (std::int64_t e = 0; e < k; ++e) dst[position(e)] = logical[static_cast<std::size_t>(e)];
    if (!need_sums) continue;
    for (std::int64_t g = 0; g < p.groups; ++g) {
      float s = 0.0f;
      for (std::int64_t e = g * group; e < (g + 1) * group; ++e) s += logical[static_cast<std::size_t>(e)];
      p.group_sum[static_cast<std::size_t>(i * p.groups + g)] = s;
    }
  }
  return p;
}

/// The dynamic policy's quantization of the prepared float rows: per block of `xblock` elements
/// (in the kernel's order; the last block runs to k_padded, whose padding is 0), scale =
/// absmax / 127 and codes round(x / scale) in [-127, 127]. A block of zeros has scale 0 and
/// codes 0; a block holding NaN or Inf gets a NaN scale, so the outputs it feeds are NaN.
inline void quantize_rows_int8(prepared_activations& p, std::int64_t xblock) {
  p.xblock = xblock;
  p.xblocks = (p.k == 0 || xblock <= 0) ? 0 : (p.k + xblock - 1) / xblock;
  p.xq = tensor<std::int8_t>(shape{p.m, p.k_padded});
  p.xscale = tensor<float>(shape{p.m, p.xblocks});
  p.xqsum = tensor<std::int32_t>(shape{p.m, p.xblocks});
  for (std::int64_t i = 0; i < p.m; ++i) {
    const float* x = p.row(i);
    std::int8_t* q = p.xq.data() + i * p.k_padded;
    for (std::int64_t b = 0; b < p.xblocks; ++b) {
      const std::int64_t lo = b * xblock, hi = b + 1 == p.xblocks ? p.k_padded : lo + xblock;
      float amax = 0.0f;
      bool finite = true;
      for (std::int64_t e = lo; e < hi; ++e) {
        finite = finite && is_finite_bits(x[e]);
        amax = std::max(amax, std::fabs(x[e]));
      }
      float& d = p.xscale[static_cast<std::size_t>(i * p.xblocks + b)];
      if (!finite) {
        d = bits_to_float(0x7FC00000u);
        continue;  // codes stay 0
      }
      d = amax / 127.0f;
      if (amax == 0.0f) continue;
      const float inv = 127.0f / amax;
      std::int32_t sum = 0;
      for (std::int64_t e = lo; e < hi; ++e) {
        q[e] = static_cast<std::int8_t>(std::clamp(round_half_even(x[e] * inv), -127.0f, 127.0f));
        sum += q[e];
      }
      p.xqsum[static_cast<std::size_t>(i * p.xblocks + b)] = sum;
    }
  }
}

}  // namespace detail
}  // namespace kernels
QUANTO_END_NAMESPACE
