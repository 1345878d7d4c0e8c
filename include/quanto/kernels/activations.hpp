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
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/kernels/backend.hpp"
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

/// Deprecated: the activation element types the kernels take are the model dtypes, `ModelFloat`
/// (core/qtype.hpp), which this name duplicated; it stays for one release (C++20 cannot mark a
/// concept [[deprecated]]).
template <class X>
concept KernelFloat = ModelFloat<X>;

namespace detail {

template <ModelFloat X>
inline float to_f32(X v) noexcept {
  if constexpr (std::is_same_v<X, float>)
    return v;
  else
    return to_float(v);
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
  tensor<float> centring;                ///< [m, groups]: dynamic 2/4-bit, c * (xscale * xqsum - group_sum)
  bool has_int8_min = false;             ///< w8a8: some activation code is -128
  float out_scale = 1.0f;                ///< applied in the epilogue (an activation's quantization scale)

  const float* row(std::int64_t i) const noexcept { return x.data() + i * k_padded; }
  const float* sums(std::int64_t i) const noexcept { return group_sum.data() + i * groups; }
  const std::int8_t* qrow(std::int64_t i) const noexcept { return xq.data() + i * k_padded; }
  const float* scales(std::int64_t i) const noexcept { return xscale.data() + i * xblocks; }
  const std::int32_t* qsums(std::int64_t i) const noexcept { return xqsum.data() + i * xblocks; }
  const float* centrings(std::int64_t i) const noexcept { return centring.data() + i * groups; }
};

}  // namespace detail

// The preparation functions are compiled per target (they use AVX2 where the TU has it), so they
// live in the per-target namespace like the kernels.
inline namespace QUANTO_TARGET_NS {

namespace prep {

/// Identity: the element order a scalar kernel reads.
struct logical_order {
  constexpr std::int64_t operator()(std::int64_t e) const noexcept { return e; }
};

/// Float rows (in the kernel's element order) and per-group sums (in logical order, so they are the
/// same for every ISA). `decode(i, e)` returns x[i, e]; `position(e)` is where a kernel wants
/// logical element e: a permutation that only moves elements within 128-element chunks.
template <class Decode, class Position = logical_order>
detail::prepared_activations prepare_float(std::int64_t m, std::int64_t k, std::int64_t k_padded, std::int64_t group,
                                           bool need_sums, Decode&& decode, Position position = {}) {
  detail::prepared_activations p;
  p.m = m;
  p.k = k;
  p.k_padded = k_padded;
  p.groups = group == 0 ? 0 : k / group;
  p.x = tensor<float>(shape{m, k_padded});
  if (need_sums) p.group_sum = tensor<float>(shape{m, p.groups});
  // The permutation repeats every 128 elements (row_align) and moves runs of consecutive elements:
  // copy run by run (one run of 128 for the identity, 8 of 16 for 4-bit, 16 of 8 for 2-bit).
  constexpr std::int64_t period = 128;
  struct run {
    std::int64_t src, dst, len;
  };
  run runs[period];
  std::int64_t nruns = 0;
  for (std::int64_t j = 0; j < period; ++j) {
    const std::int64_t to = position(j);
    if (nruns > 0 && runs[nruns - 1].dst + runs[nruns - 1].len == to)
      ++runs[nruns - 1].len;
    else
      runs[nruns++] = run{j, to, 1};
  }
  for (std::int64_t i = 0; i < m; ++i) {
    float* dst = p.x.data() + i * k_padded;
    for (std::int64_t base = 0; base < k; base += period)
      for (std::int64_t t = 0; t < nruns; ++t) {
        const std::int64_t from = base + runs[t].src, len = std::min(runs[t].len, k - from);
        float* out = dst + base + runs[t].dst;
        for (std::int64_t j = 0; j < len; ++j) out[j] = decode(i, from + j);
      }
    if (!need_sums) continue;
    // 8 interleaved partial sums, added pairwise: a fixed order (the same on every ISA) without a
    // serial dependency chain through one accumulator
    for (std::int64_t g = 0; g < p.groups; ++g) {
      float lanes[8] = {};
      const std::int64_t lo = g * group, hi = lo + group;
      std::int64_t e = lo;
      for (; e + 8 <= hi; e += 8)
        for (int l = 0; l < 8; ++l) lanes[l] += decode(i, e + l);
      for (int l = 0; e < hi; ++e, ++l) lanes[l] += decode(i, e);
      const float s = ((lanes[0] + lanes[4]) + (lanes[2] + lanes[6])) + ((lanes[1] + lanes[5]) + (lanes[3] + lanes[7]));
      p.group_sum[static_cast<std::size_t>(i * p.groups + g)] = s;
    }
  }
  return p;
}

/// The dynamic policy's quantization of the prepared float rows, per block of `xblock` elements
/// in the kernel's order (the last block runs to k_padded, whose padding is 0), by ISA `I`'s
/// `quantize_block` (every ISA gives the reference's bits).
template <Isa I>
void quantize_rows_int8(detail::prepared_activations& p, std::int64_t xblock) {
  p.xblock = xblock;
  p.xblocks = (p.k == 0 || xblock <= 0) ? 0 : (p.k + xblock - 1) / xblock;
  p.xq = tensor<std::int8_t>(shape{p.m, p.k_padded});
  p.xscale = tensor<float>(shape{p.m, p.xblocks});
  p.xqsum = tensor<std::int32_t>(shape{p.m, p.xblocks});
  for (std::int64_t i = 0; i < p.m; ++i) {
    for (std::int64_t b = 0; b < p.xblocks; ++b) {
      const std::int64_t lo = b * xblock, hi = b + 1 == p.xblocks ? p.k_padded : lo + xblock;
      const auto at = static_cast<std::size_t>(i * p.xblocks + b);
      std::int8_t* q = p.xq.data() + i * p.k_padded + lo;
      p.xscale[at] = backend<I>::quantize_block(p.row(i) + lo, hi - lo, q, p.xqsum[at]);
    }
  }
}

/// For 2/4-bit weights whose x blocks are the weight's groups: the per-group term that turns the
/// kernel's `scale * xscale * sum(q * xq)` into the centred product (see reference::gemm_dynamic):
/// y = sum_g scale_g * xscale_g * sum(q*xq)  -  sum_g (scale_g * centring_g + shift_g * xsum_g).
inline void centre_lowbit(detail::prepared_activations& p, int bits) {
  const float c = static_cast<float>(1 << (bits - 1));
  p.centring = tensor<float>(shape{p.m, p.groups});
  for (std::int64_t i = 0; i < p.m; ++i)
    for (std::int64_t g = 0; g < p.groups; ++g) {
      const auto at = static_cast<std::size_t>(i * p.groups + g);
      p.centring[at] = c * (p.scales(i)[g] * static_cast<float>(p.qsums(i)[g]) - p.sums(i)[g]);
    }
}

}  // namespace prep
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE
