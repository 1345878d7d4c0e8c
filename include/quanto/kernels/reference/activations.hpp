// quanto/kernels/reference/activations.hpp: the reference's part of preparing activations: one block
// of the dynamic int8 quantization, in plain C++ (every ISA's `backend<I>::quantize_block` gives its
// bits; tests/kernels/test_matmul_quantized.cpp checks them).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "quanto/core/config.hpp"
#include "quanto/core/float_bits.hpp"
#include "quanto/core/isa.hpp"

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace reference {

/// One block of the dynamic quantization, plain C++: codes round(x * 127 / absmax) clamped to
/// [-127, 127] (round half to even), their sum, and the block scale absmax / 127 (0 for a zero
/// block, NaN if the block holds NaN or Inf, whose codes are then 0).
inline float quantize_block(const float* x, std::int64_t n, std::int8_t* q, std::int32_t& sum) noexcept {
  float amax = 0.0f;
  bool finite = true;
  for (std::int64_t e = 0; e < n; ++e) {
    finite = finite && is_finite_bits(x[e]);
    amax = std::max(amax, std::fabs(x[e]));
  }
  sum = 0;
  if (!finite) {
    for (std::int64_t e = 0; e < n; ++e) q[e] = 0;
    return bits_to_float(0x7FC00000u);
  }
  if (amax == 0.0f) {
    for (std::int64_t e = 0; e < n; ++e) q[e] = 0;
    return 0.0f;
  }
  const float inv = 127.0f / amax;
  for (std::int64_t e = 0; e < n; ++e) {
    q[e] = static_cast<std::int8_t>(std::clamp(round_half_even(x[e] * inv), -127.0f, 127.0f));
    sum += q[e];
  }
  return amax / 127.0f;
}

}  // namespace reference
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE
