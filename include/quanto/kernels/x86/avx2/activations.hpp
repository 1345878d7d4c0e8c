// quanto/kernels/x86/avx2/activations.hpp: AVX2's part of preparing activations: one block of the
// dynamic int8 quantization, bit-identical to reference/activations.hpp (compiled when the
// translation unit targets AVX2; see core/isa.hpp).
#pragma once

#include <cstdint>

#include "quanto/core/config.hpp"
#include "quanto/core/float_bits.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/kernels/reference/activations.hpp"

#if QUANTO_HAS_AVX2
#include <immintrin.h>

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace avx2 {

/// One block with AVX2 (a length that is not a multiple of 32 goes to the reference): identical codes, sum and scale
/// (cvtps rounds to nearest even in the default MXCSR mode, as round_half_even does).
inline float quantize_block(const float* x, std::int64_t n, std::int8_t* q, std::int32_t& sum) noexcept {
  if (n % 32 != 0) return reference::quantize_block(x, n, q, sum);
  const __m256 sign = _mm256_set1_ps(-0.0f), big = _mm256_set1_ps(3.4028234663852886e38f);
  __m256 vmax = _mm256_setzero_ps(), bad = _mm256_setzero_ps();
  for (std::int64_t e = 0; e < n; e += 8) {
    const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + e));
    bad = _mm256_or_ps(bad, _mm256_cmp_ps(a, big, _CMP_NLE_UQ));  // NaN or > FLT_MAX
    vmax = _mm256_max_ps(vmax, a);
  }
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
  const float amax = _mm_cvtss_f32(m4);
  sum = 0;
  if (!_mm256_testz_ps(bad, bad) || amax == 0.0f) {
    for (std::int64_t e = 0; e < n; ++e) q[e] = 0;
    return amax == 0.0f && _mm256_testz_ps(bad, bad) ? 0.0f : bits_to_float(0x7FC00000u);
  }
  const __m256 inv = _mm256_set1_ps(127.0f / amax), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
  __m256i vsum = _mm256_setzero_si256();
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (std::int64_t e = 0; e < n; e += 32) {
    __m256i v[4];
    for (int j = 0; j < 4; ++j) {
      const __m256 t = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + e + 8 * j), inv), lo), hi);
      v[j] = _mm256_cvtps_epi32(t);
      vsum = _mm256_add_epi32(vsum, v[j]);
    }
    // packs work per 128-bit lane: the permute puts the 32 bytes back in order
    const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + e), _mm256_permutevar8x32_epi32(b, order));
  }
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(vsum), _mm256_extracti128_si256(vsum, 1));
  s4 = _mm_add_epi32(s4, _mm_unpackhi_epi64(s4, s4));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 1));
  sum = _mm_cvtsi128_si32(s4);
  return amax / 127.0f;
}

}  // namespace avx2
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE

#endif  // QUANTO_HAS_AVX2
