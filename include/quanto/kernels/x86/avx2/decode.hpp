// quanto/kernels/x86/avx2/decode.hpp: AVX2 decoding of the kernel layout's codes: where each
// element's activation goes (`position`), which weights the kernels take, and the code -> integer /
// float conversions every kernel of this folder shares (compiled when the translation unit targets
// AVX2; see core/isa.hpp).
//
// Every kernel reads a row's codes 32 bytes at a time (a "chunk": 32 int8/fp8 codes, 64 4-bit codes
// or 128 2-bit codes, see layout.hpp) and splits it with shifts and masks into "units" of 32 codes.
// A unit's codes come out in the order the byte layout gives them, not in k order; the activations
// were stored in that same order by `position<Q>` when they were prepared, so no shuffle is needed.
#pragma once

#include <cstdint>
#include <type_traits>

#include "quanto/core/config.hpp"
#include "quanto/core/float8.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"
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

/// A 4-bit block (16 bytes) as 32 codes in k order: low nibbles (elements 0..15), then high ones.
QUANTO_ALWAYS_INLINE __m256i block_codes4(const std::uint8_t* row, std::int64_t blk) noexcept {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + blk * 16));
  const __m128i mask = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), mask), _mm_and_si128(v, mask));
}

}  // namespace detail
}  // namespace avx2
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE

#endif  // QUANTO_HAS_AVX2
