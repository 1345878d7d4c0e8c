// quanto/quantize/x86/avx2/quantize.hpp: AVX2 runs of the quantizers' element loops, bit-identical
// to the scalar reference (quantize/symmetric.hpp, affine.hpp, packing.hpp, optimizers.hpp).
//
// Each function handles a contiguous run of elements that share their parameters (a row, a group)
// or whose parameters lie in a parallel contiguous array (per column), processes as many whole
// vectors as it can and returns how many elements it did: the caller finishes the rest with the
// scalar reference, so the tails and every special case stay the oracle's. Every step is the same
// IEEE float operation as the scalar code, one rounding each, in the same order (products go through
// `opaque8` so that no FMA can fuse them with the next addition). Reductions whose order PyTorch
// fixes are either order-free (min, max) or reproduce the lane order exactly (sums: `sum_all8`).
// Included by quantize/simd.hpp only (it lives in quantize/, not kernels/, because it is the
// quantizers' code: the layering core -> quantize -> kernels holds); needs AVX2 + FMA + F16C (QUANTO_HAS_AVX2).
#pragma once

#include <immintrin.h>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "quanto/core/bfloat16.hpp"
#include "quanto/core/config.hpp"
#include "quanto/core/float16.hpp"
#include "quanto/core/float8.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/quantize/torch_pow.hpp"
#include "quanto/quantize/torch_sum.hpp"

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace quantize_avx2 {

// ---- primitives ---------------------------------------------------------------------------------

/// The vector as a rounded value the compiler cannot fuse into a later FMA.
QUANTO_ALWAYS_INLINE __m256 opaque8(__m256 v) noexcept {
  __asm__("" : "+x"(v));
  return v;
}
QUANTO_ALWAYS_INLINE __m256i bits(__m256 v) noexcept { return _mm256_castps_si256(v); }
QUANTO_ALWAYS_INLINE __m256 flt(__m256i v) noexcept { return _mm256_castsi256_ps(v); }
QUANTO_ALWAYS_INLINE __m256i splat(std::uint32_t u) noexcept { return _mm256_set1_epi32(static_cast<int>(u)); }
QUANTO_ALWAYS_INLINE __m256 splatf(float f) noexcept { return _mm256_set1_ps(f); }

/// All-ones lanes where the float is a NaN (integer compare: safe under -ffast-math).
QUANTO_ALWAYS_INLINE __m256i nan_mask(__m256 v) noexcept {
  return _mm256_cmpgt_epi32(_mm256_and_si256(bits(v), splat(0x7FFFFFFFu)), splat(0x7F800000u));
}
/// All-ones lanes where the float is NaN or ±inf.
QUANTO_ALWAYS_INLINE __m256i nonfinite_mask(__m256 v) noexcept {
  return _mm256_cmpgt_epi32(_mm256_and_si256(bits(v), splat(0x7FFFFFFFu)), splat(0x7F7FFFFFu));
}
QUANTO_ALWAYS_INLINE __m256 abs8(__m256 v) noexcept { return flt(_mm256_and_si256(bits(v), splat(0x7FFFFFFFu))); }
QUANTO_ALWAYS_INLINE __m256 round_even8(__m256 v) noexcept {
  return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
QUANTO_ALWAYS_INLINE __m256 select(__m256i mask, __m256 yes, __m256 no) noexcept {
  return _mm256_blendv_ps(no, yes, _mm256_castsi256_ps(mask));
}
QUANTO_ALWAYS_INLINE __m256i selecti(__m256i mask, __m256i yes, __m256i no) noexcept {
  return _mm256_blendv_epi8(no, yes, mask);
}

/// 8 elements of T, widened exactly to float.
template <class T>
QUANTO_ALWAYS_INLINE __m256 load8(const T* p) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return _mm256_loadu_ps(p);
  } else if constexpr (std::is_same_v<T, bfloat16>) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return flt(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    static_assert(std::is_same_v<T, float16>);
    // F16C widens exactly; a NaN comes back quiet with its payload, as float16's decode does.
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
}

/// One rounding to T, kept as a float (`widen(narrow<T>(x))`), NaN staying a NaN.
template <class T>
QUANTO_ALWAYS_INLINE __m256 narrow8(__m256 v) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    return opaque8(v);
  } else if constexpr (std::is_same_v<T, bfloat16>) {
    const __m256i u = bits(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), splat(1));
    const __m256i r = _mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(u, splat(0x7FFFu)), odd), splat(0xFFFF0000u));
    return flt(selecti(nan_mask(v), splat(0x7FC00000u), r));
  } else {
    return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
}

/// Rounds 8 floats to T and stores them with T's own NaN rule (bfloat16: 0x7FC0; float16:
/// sign | 0x7E00; float: the bits as they are).
template <class T>
QUANTO_ALWAYS_INLINE void store8(T* p, __m256 v) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    _mm256_storeu_ps(p, v);
  } else if constexpr (std::is_same_v<T, bfloat16>) {
    const __m256i u = bits(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), splat(1));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, splat(0x7FFFu)), odd), 16);
    r = selecti(nan_mask(v), splat(0x7FC0u), r);
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
  } else {
    // A NaN becomes the quiet NaN of its sign, which F16C narrows to sign | 0x7E00 as c10 does.
    const __m256 quiet = flt(_mm256_or_si256(_mm256_and_si256(bits(v), splat(0x80000000u)), splat(0x7FC00000u)));
    v = select(nan_mask(v), quiet, v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
}

/// `store8` for values known not to be NaN (finite parameters over finite or integer data): the
/// same bits without the NaN rule.
template <class T>
QUANTO_ALWAYS_INLINE void store8_number(T* p, __m256 v) noexcept {
  if constexpr (std::is_same_v<T, float>) {
    _mm256_storeu_ps(p, v);
  } else if constexpr (std::is_same_v<T, bfloat16>) {
    const __m256i u = bits(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), splat(1));
    const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, splat(0x7FFFu)), odd), 16);
    const __m128i packed = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), packed);
  } else {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
}

/// Four vectors of 8 int32 (each in [-128, 255]) to 32 bytes in order; `Signed` saturates as int8.
template <bool Signed>
QUANTO_ALWAYS_INLINE __m256i pack32(__m256i a, __m256i b, __m256i c, __m256i d) noexcept {
  __m256i ab, cd, abcd;
  if constexpr (Signed) {
    ab = _mm256_packs_epi32(a, b);
    cd = _mm256_packs_epi32(c, d);
    abcd = _mm256_packs_epi16(ab, cd);
  } else {
    ab = _mm256_packus_epi32(a, b);
    cd = _mm256_packus_epi32(c, d);
    abcd = _mm256_packus_epi16(ab, cd);
  }
  return _mm256_permutevar8x32_epi32(abcd, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

// ---- NaN / finiteness scans -----------------------------------------------------------------------

/// Index of the first vector-aligned block of `n` elements holding a NaN or ±inf, or n when the run
/// is finite up to its last whole vector (the caller checks the tail).
template <class T>
inline std::size_t finite_prefix(const T* x, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i m =
        _mm256_or_si256(_mm256_or_si256(nonfinite_mask(load8(x + i)), nonfinite_mask(load8(x + i + 8))),
                        _mm256_or_si256(nonfinite_mask(load8(x + i + 16)), nonfinite_mask(load8(x + i + 24))));
    if (!_mm256_testz_si256(m, m)) return i;
  }
  return i;
}

// ---- symmetric (qint8, qfloat8) -------------------------------------------------------------------

/// max |x| over the whole vectors of a run, and whether any of them is NaN (then the caller redoes
/// the run with the reference, which keeps the last NaN's bits). Returns the elements covered.
template <class T>
inline std::size_t absmax_run(const T* x, std::size_t n, float& max_out, bool& nan_out) noexcept {
  __m256 m0 = _mm256_setzero_ps(), m1 = m0;
  __m256i nan = _mm256_setzero_si256();
  std::size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = abs8(load8(x + i)), b = abs8(load8(x + i + 8));
    nan = _mm256_or_si256(nan, _mm256_or_si256(nan_mask(a), nan_mask(b)));
    m0 = _mm256_max_ps(m0, a);
    m1 = _mm256_max_ps(m1, b);
  }
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, _mm256_max_ps(m0, m1));
  float m = 0.0f;
  for (float v : lanes) m = v > m ? v : m;
  max_out = m;
  nan_out = !_mm256_testz_si256(nan, nan);
  return i;
}

/// Column-wise max |x| of a row-major [rows, cols] matrix for the columns [0, cols - cols % 8),
/// into `out` (floats); any NaN in those columns sets `nan_out` (the caller then uses the reference).
template <class T>
inline std::size_t absmax_cols(const T* x, std::size_t rows, std::size_t cols, float* out, bool& nan_out) noexcept {
  const std::size_t vc = cols - cols % 8;
  __m256i nan = _mm256_setzero_si256();
  for (std::size_t c = 0; c < vc; c += 8) _mm256_storeu_ps(out + c, _mm256_setzero_ps());
  for (std::size_t r = 0; r < rows; ++r) {
    const T* row = x + r * cols;
    for (std::size_t c = 0; c < vc; c += 8) {
      const __m256 a = abs8(load8(row + c));
      nan = _mm256_or_si256(nan, nan_mask(a));
      _mm256_storeu_ps(out + c, _mm256_max_ps(_mm256_loadu_ps(out + c), a));
    }
  }
  nan_out = !_mm256_testz_si256(nan, nan);
  return vc;
}

/// The codes of 8 quotients `q` (already rounded to T) as int32 lanes, Q's storage bits.
template <class Q, bool MaybeNaN = true>
QUANTO_ALWAYS_INLINE __m256i symmetric_codes8(__m256 q) noexcept {
  const __m256i nan = MaybeNaN ? nan_mask(q) : _mm256_setzero_si256();
  if constexpr (!Q::is_floating_point) {
    const __m256 r = _mm256_min_ps(_mm256_max_ps(round_even8(q), splatf(-128.0f)), splatf(127.0f));
    return _mm256_andnot_si256(nan, _mm256_cvttps_epi32(r));
  } else {
    using F = typename Q::storage::format;
    constexpr int m = F::mantissa_bits, bias = F::bias;
    // std::clamp(q, -max, max): max_ps / min_ps keep q (and its zero sign) when it is in range.
    const __m256 c = _mm256_min_ps(_mm256_max_ps(q, splatf(Q::qmin)), splatf(Q::qmax));
    const __m256i u = bits(c);
    const __m256i sign = _mm256_srli_epi32(_mm256_and_si256(u, splat(0x80000000u)), 24);
    const __m256i abs = _mm256_and_si256(u, splat(0x7FFFFFFFu));
    // Normal in the target format: re-bias and round the encoding (rne_shift_right).
    constexpr int s = 23 - m;
    const __m256i v = _mm256_sub_epi32(abs, splat(static_cast<std::uint32_t>(127 - bias) << 23));
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(v, s), splat(1));
    const __m256i normal =
        _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(v, splat((1u << (s - 1)) - 1u)), odd), s);
    // Subnormal in the target format: |c| / 2^(1 - bias - m) is exact in float; cvtps rounds it
    // to nearest even (the default MXCSR mode), as the integer rounding of the reference does.
    const __m256 scaled = _mm256_mul_ps(flt(abs), splatf(static_cast<float>(1u << (bias + m - 1))));
    const __m256i sub = _mm256_cvtps_epi32(scaled);
    const __m256i is_sub = _mm256_cmpgt_epi32(splat(static_cast<std::uint32_t>(128 - bias) << 23), abs);
    const __m256i code = selecti(is_sub, sub, normal);
    __m256i out;
    if constexpr (F::has_negative_zero) {
      out = _mm256_or_si256(sign, code);
    } else {
      const __m256i zero = _mm256_cmpeq_epi32(code, _mm256_setzero_si256());
      out = _mm256_andnot_si256(zero, _mm256_or_si256(sign, code));
    }
    return _mm256_andnot_si256(nan, out);
  }
}

/// quantize_symmetric over a run: `out[i] = code(x[i] / s)`, with `s` one value (PerColumn false)
/// or `scale[i]` (PerColumn true). Returns the elements done (a multiple of 32).
template <class Q, class T, bool PerColumn>
inline std::size_t quantize_symmetric_run(const T* x, typename Q::storage* out, std::size_t n, float s,
                                          const T* scale) noexcept {
  const __m256 sv = splatf(s);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i c[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 d = PerColumn ? load8(scale + i + 8 * k) : sv;
      c[k] = symmetric_codes8<Q>(narrow8<T>(_mm256_div_ps(load8(x + i + 8 * k), d)));
    }
    const __m256i b = pack32<!Q::is_floating_point>(c[0], c[1], c[2], c[3]);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), b);
  }
  return i;
}

/// `narrow8` for values known not to be NaN.
template <class T>
QUANTO_ALWAYS_INLINE __m256 narrow8_number(__m256 v) noexcept {
  if constexpr (std::is_same_v<T, bfloat16>) {
    const __m256i u = bits(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), splat(1));
    return flt(_mm256_and_si256(_mm256_add_epi32(_mm256_add_epi32(u, splat(0x7FFFu)), odd), splat(0xFFFF0000u)));
  } else {
    return narrow8<T>(v);
  }
}

/// max |x| over the whole vectors of a run as a float, by integer maxima of the magnitude bits
/// (for non-negative floats their order; a NaN's bits exceed every number's), and whether a NaN is
/// among them (then the caller redoes the run with the reference). Returns the elements covered.
template <class T>
inline std::size_t absmax_bits_run(const T* x, std::size_t n, float& max_out, bool& nan_out) noexcept {
  std::size_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    const __m256i mag = splat(0x7FFFFFFFu);
    __m256i m0 = _mm256_setzero_si256(), m1 = m0;
    for (; i + 16 <= n; i += 16) {
      m0 = _mm256_max_epi32(m0, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), mag));
      m1 = _mm256_max_epi32(m1, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 8)), mag));
    }
    alignas(32) std::uint32_t l[8];
    _mm256_store_si256(reinterpret_cast<__m256i*>(l), _mm256_max_epi32(m0, m1));
    std::uint32_t m = 0;
    for (std::uint32_t v : l) m = v > m ? v : m;
    nan_out = m > 0x7F800000u;
    max_out = bits_to_float(m);
  } else {
    const __m256i mag = _mm256_set1_epi16(0x7FFF);
    __m256i m0 = _mm256_setzero_si256(), m1 = m0;
    for (; i + 32 <= n; i += 32) {
      m0 = _mm256_max_epu16(m0, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i)), mag));
      m1 =
          _mm256_max_epu16(m1, _mm256_and_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(x + i + 16)), mag));
    }
    alignas(32) std::uint16_t l[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(l), _mm256_max_epu16(m0, m1));
    std::uint16_t m = 0;
    for (std::uint16_t v : l) m = v > m ? v : m;
    const T t = T::from_bits(m);
    nan_out = t.is_nan();
    max_out = nan_out ? 0.0f : static_cast<float>(t);
  }
  return i;
}

/// Float8 codes of Q for 16 values of T (bfloat16 or float16) given as their bits in 16-bit lanes,
/// none NaN: clamped to +-qmax, re-biased and rounded to nearest even on T's own encoding (exact
/// values, so the same code as from the float). Lanes below Q's smallest normal are flagged in
/// `sub` (their rounding grid is not T's) unless T and Q share the exponent bias (float16 and e5m2),
/// where T's encoding rounds straight to Q's, subnormals included.
template <class Q, class T>
QUANTO_ALWAYS_INLINE __m256i float8_codes16(__m256i h, __m256i& sub) noexcept {
  using F = typename Q::storage::format;
  constexpr bool bf = std::is_same_v<T, bfloat16>;
  constexpr int mt = bf ? 7 : 10, bias_t = bf ? 127 : 15;
  constexpr int m = F::mantissa_bits, bias = F::bias, sh = mt - m;
  static_assert(sh > 0 && bias_t >= bias);
  const auto set = [](unsigned v) { return _mm256_set1_epi16(static_cast<short>(v)); };
  const __m256i sign = _mm256_srli_epi16(_mm256_and_si256(h, set(0x8000u)), 8);
  const __m256i a = _mm256_min_epu16(_mm256_and_si256(h, set(0x7FFFu)), set(T(Q::qmax).to_bits()));
  const __m256i v = _mm256_sub_epi16(a, set(static_cast<unsigned>(bias_t - bias) << mt));
  const __m256i odd = _mm256_and_si256(_mm256_srli_epi16(v, sh), set(1));
  const __m256i code = _mm256_srli_epi16(_mm256_add_epi16(_mm256_add_epi16(v, set((1u << (sh - 1)) - 1u)), odd), sh);
  if constexpr (bias_t != bias)
    sub = _mm256_or_si256(sub, _mm256_cmpgt_epi16(set(static_cast<unsigned>(bias_t - bias + 1) << mt), a));
  if constexpr (F::has_negative_zero) {
    return _mm256_or_si256(sign, code);
  } else {
    const __m256i zero = _mm256_cmpeq_epi16(code, _mm256_setzero_si256());
    return _mm256_andnot_si256(zero, _mm256_or_si256(sign, code));
  }
}

/// quantize_symmetric over a run whose quotients are known to be numbers of magnitude < 2^20 (a
/// normal scale `s` and max |x| / s below that, checked by the caller): the same codes as
/// `quantize_symmetric_run` without its NaN rule; qint8 clamps by the saturating packs.
/// `ahead`, when not null, is prefetched alongside (the next run: its load overlaps this one's
/// arithmetic; a prefetch never faults).
template <class Q, class T>
inline std::size_t quantize_symmetric_bounded_run(const T* x, typename Q::storage* out, std::size_t n, float s,
                                                  const T* ahead) noexcept {
  const __m256 sv = splatf(s);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if (ahead != nullptr) {
      _mm_prefetch(reinterpret_cast<const char*>(ahead + i), _MM_HINT_T0);
      if constexpr (sizeof(T) == 4) _mm_prefetch(reinterpret_cast<const char*>(ahead + i + 16), _MM_HINT_T0);
    }
    if constexpr (Q::is_floating_point && !std::is_same_v<T, float>) {
      // float8 from 16-bit T: the quotients rounded to T, packed to 16-bit lanes, encoded 16 at once
      __m256 q[4];
      for (int k = 0; k < 4; ++k) q[k] = _mm256_div_ps(load8(x + i + 8 * k), sv);
      __m256i h01, h23;
      if constexpr (std::is_same_v<T, bfloat16>) {
        __m256i r[4];
        for (int k = 0; k < 4; ++k) r[k] = _mm256_srli_epi32(bits(narrow8_number<T>(q[k])), 16);
        h01 = _mm256_packus_epi32(r[0], r[1]);  // [0-3, 8-11 | 4-7, 12-15]
        h23 = _mm256_packus_epi32(r[2], r[3]);
      } else {
        constexpr int rn = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        h01 = _mm256_setr_m128i(_mm256_cvtps_ph(q[0], rn), _mm256_cvtps_ph(q[1], rn));
        h23 = _mm256_setr_m128i(_mm256_cvtps_ph(q[2], rn), _mm256_cvtps_ph(q[3], rn));
      }
      __m256i sub = _mm256_setzero_si256();
      const __m256i c01 = float8_codes16<Q, T>(h01, sub), c23 = float8_codes16<Q, T>(h23, sub);
      __m256i b;
      if (!_mm256_testz_si256(sub, sub)) {  // a small quotient: the per-float encoding
        __m256i c[4];
        for (int k = 0; k < 4; ++k) c[k] = symmetric_codes8<Q, false>(narrow8_number<T>(q[k]));
        b = pack32<false>(c[0], c[1], c[2], c[3]);
      } else if constexpr (std::is_same_v<T, bfloat16>) {
        b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(c01, c23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      } else {
        b = _mm256_permute4x64_epi64(_mm256_packus_epi16(c01, c23), 0xD8);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), b);
      continue;
    }
    __m256i c[4];
    for (int k = 0; k < 4; ++k) {
      const __m256 q = narrow8_number<T>(_mm256_div_ps(load8(x + i + 8 * k), sv));
      if constexpr (Q::is_floating_point)
        c[k] = symmetric_codes8<Q, false>(q);
      else
        c[k] = _mm256_cvttps_epi32(round_even8(q));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), pack32<!Q::is_floating_point>(c[0], c[1], c[2], c[3]));
  }
  return i;
}

/// The values of 8 float8 codes none of which is a NaN or an infinity (code_values8 without the
/// special encodings; code_values8 starts from it).
template <class Q>
QUANTO_ALWAYS_INLINE __m256 float8_numbers8(__m128i b) noexcept {
  using F = typename Q::storage::format;
  constexpr int m = F::mantissa_bits, bias = F::bias;
  const __m256i u = _mm256_cvtepu8_epi32(b);
  const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(u, splat(0x80u)), 24);
  const __m256i code = _mm256_and_si256(u, splat(0x7Fu));
  // The magnitude code in the float's exponent/mantissa position is the value times
  // 2^(bias - 127) (a float subnormal for the format's subnormals): one exact product rescales it.
  const __m256 mag =
      _mm256_mul_ps(flt(_mm256_slli_epi32(code, 23 - m)), flt(splat(static_cast<std::uint32_t>(254 - bias) << 23)));
  return flt(_mm256_or_si256(sign, bits(mag)));
}

/// The float values of 8 codes of Q (exact; NaN codes give the bits the reference decodes to).
template <class Q>
QUANTO_ALWAYS_INLINE __m256 code_values8(const typename Q::storage* q) noexcept {
  const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q));
  if constexpr (!Q::is_floating_point) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b));
  } else {
    using F = typename Q::storage::format;
    constexpr int m = F::mantissa_bits;
    __m256i out = bits(float8_numbers8<Q>(b));  // then the NaN / infinity codes over it
    const __m256i u = _mm256_cvtepu8_epi32(b);
    const __m256i sign = _mm256_slli_epi32(_mm256_and_si256(u, splat(0x80u)), 24);
    const __m256i code = _mm256_and_si256(u, splat(0x7Fu));
    if constexpr (F::nan_encoding == float8_nan_encoding::negative_zero) {
      out = selecti(_mm256_cmpeq_epi32(u, splat(0x80u)), splat(0x7F800001u), out);
    } else {
      constexpr std::uint32_t inf_code = ((1u << F::exponent_bits) - 1u) << m;
      const __m256i special = F::nan_encoding == float8_nan_encoding::all_ones
                                  ? _mm256_cmpeq_epi32(code, splat(0x7Fu))
                                  : _mm256_cmpgt_epi32(code, splat(inf_code - 1u));
      const __m256i mant = _mm256_and_si256(code, splat((1u << m) - 1u));
      const __m256i nonzero = _mm256_cmpgt_epi32(mant, _mm256_setzero_si256());
      const __m256i payload =
          _mm256_and_si256(nonzero, _mm256_or_si256(splat(0x400000u), _mm256_slli_epi32(mant, 23 - m)));
      const __m256i sp = _mm256_or_si256(_mm256_or_si256(sign, splat(0x7F800000u)), payload);
      out = selecti(special, sp, out);
    }
    return flt(out);
  }
}

/// All-ones bytes where a float8 code of Q is a NaN or an infinity (32 codes at once).
template <class Q>
QUANTO_ALWAYS_INLINE __m256i float8_special32(__m256i b) noexcept {
  using F = typename Q::storage::format;
  if constexpr (F::nan_encoding == float8_nan_encoding::negative_zero) {
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi8(static_cast<char>(0x80)));
  } else {
    // all_ones: 0x7F / 0xFF; ieee: every code whose exponent field is all ones
    constexpr auto key = static_cast<char>(
        F::nan_encoding == float8_nan_encoding::all_ones ? 0x7Fu : ((1u << F::exponent_bits) - 1u) << F::mantissa_bits);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, _mm256_set1_epi8(key)), _mm256_set1_epi8(key));
  }
}

/// dequantize_symmetric over a run: `out[i] = T(s * q[i])`. Returns the elements done. Without
/// PerColumn, qint8 codes under a finite `s` give no NaN, so the NaN rule of the store is skipped.
template <class Q, class T, bool PerColumn>
inline std::size_t dequantize_symmetric_run(const typename Q::storage* q, T* out, std::size_t n, float s,
                                            const T* scale) noexcept {
  const __m256 sv = splatf(s);
  std::size_t i = 0;
  if constexpr (!PerColumn && !Q::is_floating_point) {
    if (is_finite_bits(s)) {
      for (; i + 16 <= n; i += 16) {
        store8_number(out + i, _mm256_mul_ps(sv, code_values8<Q>(q + i)));
        store8_number(out + i + 8, _mm256_mul_ps(sv, code_values8<Q>(q + i + 8)));
      }
    }
  } else if constexpr (!PerColumn) {
    // float8: blocks of 32 codes without a NaN / inf code take the plain path
    if (is_finite_bits(s)) {
      for (; i + 32 <= n; i += 32) {
        const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i));
        const __m256i sp = float8_special32<Q>(b);
        if (!_mm256_testz_si256(sp, sp)) {
          for (std::size_t k = i; k < i + 32; k += 8) store8(out + k, _mm256_mul_ps(sv, code_values8<Q>(q + k)));
          continue;
        }
        const __m128i lo = _mm256_castsi256_si128(b), hi = _mm256_extracti128_si256(b, 1);
        store8_number(out + i, _mm256_mul_ps(sv, float8_numbers8<Q>(lo)));
        store8_number(out + i + 8, _mm256_mul_ps(sv, float8_numbers8<Q>(_mm_unpackhi_epi64(lo, lo))));
        store8_number(out + i + 16, _mm256_mul_ps(sv, float8_numbers8<Q>(hi)));
        store8_number(out + i + 24, _mm256_mul_ps(sv, float8_numbers8<Q>(_mm_unpackhi_epi64(hi, hi))));
      }
    }
  }
  for (; i + 8 <= n; i += 8) {
    const __m256 d = PerColumn ? load8(scale + i) : sv;
    store8(out + i, _mm256_mul_ps(d, code_values8<Q>(q + i)));
  }
  return i;
}

// ---- affine (qint2, qint4) ------------------------------------------------------------------------

/// min and max over the whole vectors of a run and whether any is NaN. Returns the elements covered.
template <class T>
inline std::size_t minmax_run(const T* x, std::size_t n, float& lo, float& hi, bool& nan_out) noexcept {
  if (n < 8) return 0;
  __m256 mn = load8(x), mx = mn;
  __m256i nan = nan_mask(mn);
  std::size_t i = 8;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = load8(x + i);
    nan = _mm256_or_si256(nan, nan_mask(v));
    mn = _mm256_min_ps(mn, v);
    mx = _mm256_max_ps(mx, v);
  }
  alignas(32) float a[8], b[8];
  _mm256_store_ps(a, mn);
  _mm256_store_ps(b, mx);
  float l = a[0], h = b[0];
  for (int k = 1; k < 8; ++k) {
    l = a[k] < l ? a[k] : l;
    h = b[k] > h ? b[k] : h;
  }
  lo = l;
  hi = h;
  nan_out = !_mm256_testz_si256(nan, nan);
  return i;
}

/// Codes of 8 rounded quotients (`to_code(round(q), bits)`), int32 lanes.
template <int Bits>
QUANTO_ALWAYS_INLINE __m256i affine_codes8(__m256 q) noexcept {
  const __m256i nan = nan_mask(q);
  const __m256 c = _mm256_min_ps(_mm256_max_ps(q, _mm256_setzero_ps()), splatf(static_cast<float>((1 << Bits) - 1)));
  return _mm256_andnot_si256(nan, _mm256_cvttps_epi32(c));
}

/// quantize_affine with a float shift over a run: `round((x + shift) / scale)` (T roundings),
/// parameters one value each or (PerColumn) arrays parallel to x. Returns the elements done.
/// `Numbers`: the caller knows that no sum or quotient is NaN (finite x, shift and a nonzero scale
/// far from overflow), so the roundings skip the NaN rule (max_ps already sends a NaN to code 0).
template <class T, int Bits, bool PerColumn, bool Numbers = false>
inline std::size_t quantize_affine_run(const T* x, std::uint8_t* out, std::size_t n, float scale, float shift,
                                       const T* scales, const T* shifts) noexcept {
  const auto nr = [](__m256 v) { return Numbers ? narrow8_number<T>(v) : narrow8<T>(v); };
  const __m256 sc = splatf(scale), sh = splatf(shift);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i c[4];
    for (int k = 0; k < 4; ++k) {
      const std::size_t j = i + 8 * static_cast<std::size_t>(k);
      const __m256 a = PerColumn ? load8(scales + j) : sc, b = PerColumn ? load8(shifts + j) : sh;
      const __m256 sum = nr(_mm256_add_ps(load8(x + j), b));
      c[k] = affine_codes8<Bits>(round_even8(nr(_mm256_div_ps(sum, a))));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), pack32<false>(c[0], c[1], c[2], c[3]));
  }
  return i;
}

/// The same with a uint8 zero-point: `round(x / scale)` to T, `+ zp` to T, then the code.
template <class T, int Bits, bool PerColumn>
inline std::size_t quantize_affine_zp_run(const T* x, std::uint8_t* out, std::size_t n, float scale, std::uint8_t zp,
                                          const T* scales, const std::uint8_t* zps) noexcept {
  const __m256 sc = splatf(scale), z = splatf(static_cast<float>(zp));
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    __m256i c[4];
    for (int k = 0; k < 4; ++k) {
      const std::size_t j = i + 8 * static_cast<std::size_t>(k);
      const __m256 a = PerColumn ? load8(scales + j) : sc;
      const __m256 zv =
          PerColumn
              ? _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(zps + j))))
              : z;
      const __m256 r = narrow8<T>(round_even8(narrow8<T>(_mm256_div_ps(load8(x + j), a))));
      c[k] = affine_codes8<Bits>(narrow8<T>(_mm256_add_ps(r, zv)));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), pack32<false>(c[0], c[1], c[2], c[3]));
  }
  return i;
}

QUANTO_ALWAYS_INLINE __m256 u8_values8(const std::uint8_t* q) noexcept {
  return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q))));
}

/// `scale * q - shift` in T, two roundings, over a run. Returns the elements done.
template <class T, bool PerColumn>
inline std::size_t dequantize_affine_run(const std::uint8_t* q, T* out, std::size_t n, float scale, float shift,
                                         const T* scales, const T* shifts) noexcept {
  const __m256 sc = splatf(scale), sh = splatf(shift);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = PerColumn ? load8(scales + i) : sc, b = PerColumn ? load8(shifts + i) : sh;
    const __m256 p = narrow8<T>(opaque8(_mm256_mul_ps(a, u8_values8(q + i))));
    store8(out + i, _mm256_sub_ps(p, b));
  }
  return i;
}

/// `scale * int8(int8(q) - int8(zp))` in T, over a run. Returns the elements done.
template <class T, bool PerColumn>
inline std::size_t dequantize_affine_zp_run(const std::uint8_t* q, T* out, std::size_t n, float scale, std::uint8_t zp,
                                            const T* scales, const std::uint8_t* zps) noexcept {
  const __m256 sc = splatf(scale);
  const __m256i z = _mm256_set1_epi32(static_cast<std::int8_t>(zp));
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 a = PerColumn ? load8(scales + i) : sc;
    const __m256i zv = PerColumn ? _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(zps + i))) : z;
    const __m256i qv = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
    const __m256i d = _mm256_srai_epi32(_mm256_slli_epi32(_mm256_sub_epi32(qv, zv), 24), 24);
    store8(out + i, _mm256_mul_ps(a, _mm256_cvtepi32_ps(d)));
  }
  return i;
}

/// Dequantizes a run of 2/4-bit codes straight from packed bytes, `code = (src[k] >> shift) & mask`,
/// by table: `table` holds the run's 16 outputs, `table[c]` the reference's value for code c (the
/// caller computes it, so every bit, NaN included, is the reference's). Returns the elements done.
template <class T>
inline std::size_t dequantize_table_run(const std::uint8_t* src, int shift, std::uint8_t mask, const T* table, T* out,
                                        std::size_t n) noexcept {
  const __m128i sh = _mm_cvtsi32_si128(shift);
  std::size_t i = 0;
  if constexpr (std::is_same_v<T, float>) {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table));
    const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table + 8));
    const __m256i m = splat(mask);
    for (; i + 8 <= n; i += 8) {
      const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + i)));
      const __m256i c = _mm256_and_si256(_mm256_srl_epi32(b, sh), m);
      const __m256i v0 = _mm256_permutevar8x32_epi32(lo, c), v1 = _mm256_permutevar8x32_epi32(hi, c);
      // codes 8..15 have bit 3 set: moved to the sign bit, it picks the upper table
      const __m256i v = selecti(_mm256_srai_epi32(_mm256_slli_epi32(c, 28), 31), v1, v0);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), v);
    }
  } else {
    // 16-bit outputs: the low and the high bytes of the 16 entries as two pshufb tables.
    const __m256i t = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(table));
    const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10, 12,
                                           14, 1, 3, 5, 7, 9, 11, 13, 15);
    // [lo 0-7, hi 0-7 | lo 8-15, hi 8-15] -> [lo 0-15 | hi 0-15]
    const __m256i s = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(t, split), 0xD8);
    const __m256i tlo = _mm256_permute2x128_si256(s, s, 0x00), thi = _mm256_permute2x128_si256(s, s, 0x11);
    const __m256i m = _mm256_set1_epi8(static_cast<char>(mask));
    for (; i + 32 <= n; i += 32) {
      const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
      // 16-bit shifts move bits across bytes; the mask keeps each code's own bits
      const __m256i c = _mm256_and_si256(_mm256_srl_epi16(b, sh), m);
      const __m256i l = _mm256_shuffle_epi8(tlo, c), h = _mm256_shuffle_epi8(thi, c);
      const __m256i a = _mm256_unpacklo_epi8(l, h), z = _mm256_unpackhi_epi8(l, h);  // [0-7, 16-23], [8-15, 24-31]
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_permute2x128_si256(a, z, 0x20));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i + 16), _mm256_permute2x128_si256(a, z, 0x31));
    }
  }
  return i;
}

// ---- packing ----------------------------------------------------------------------------------------

/// `out[k] |= src[k] << shift` for k < n, and whether some src[k] exceeds `mask`. Returns done.
inline std::size_t pack_plane(const std::uint8_t* src, std::uint8_t* out, std::size_t n, int shift, std::uint8_t mask,
                              bool& overflow) noexcept {
  const __m256i mv = _mm256_set1_epi8(static_cast<char>(mask));
  __m256i bad = _mm256_setzero_si256();
  const __m128i sh = _mm_cvtsi32_si128(shift);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    bad = _mm256_or_si256(bad, _mm256_andnot_si256(mv, s));
    // 16-bit shifts move bits across bytes: the codes are in range (checked) and masked first.
    const __m256i v = _mm256_sll_epi16(_mm256_and_si256(s, mv), sh);
    const __m256i o = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(out + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_or_si256(o, v));
  }
  overflow = !_mm256_testz_si256(bad, bad);
  return i;
}

/// `out[k] = (src[k] >> shift) & mask` for k < n. Returns done.
inline std::size_t unpack_plane(const std::uint8_t* src, std::uint8_t* out, std::size_t n, int shift,
                                std::uint8_t mask) noexcept {
  const __m256i mv = _mm256_set1_epi8(static_cast<char>(mask));
  const __m128i sh = _mm_cvtsi32_si128(shift);
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i s = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_and_si256(_mm256_srl_epi16(s, sh), mv));
  }
  return i;
}

// ---- sums in PyTorch's AVX2 order -------------------------------------------------------------------

/// An 8-lane accumulator with lane-wise addition: `detail::lanes<8>` as one register.
struct lanes8 {
  __m256 v = _mm256_setzero_ps();
  lanes8& operator+=(const lanes8& o) noexcept {
    v = _mm256_add_ps(v, o.v);
    return *this;
  }
};

/// `detail::inner_sum_lanes<8>(x, n)` (torch_sum.hpp), bit for bit: the same cascade over the same
/// lane-wise partial sums, each lane a register lane. `x` may be of a model dtype: the sum is of
/// its values widened to float (exact), as PyTorch's float accumulation of a float copy.
template <class T>
inline float sum_lanes8(const T* x, std::int64_t n) {
  const auto at = [&](std::int64_t i) {
    if constexpr (std::is_same_v<T, float>)
      return x[i];
    else
      return static_cast<float>(x[i]);
  };
  if (n < 8) return quanto::detail::row_sum<float>(n, at);
  const std::int64_t nvec = n / 8;
  const lanes8 acc = quanto::detail::row_sum<lanes8>(nvec, [&](std::int64_t i) { return lanes8{load8(x + i * 8)}; });
  alignas(32) float l[8];
  _mm256_store_ps(l, acc.v);
  float total = 0.0f;
  for (std::int64_t k = nvec * 8; k < n; ++k) total += at(k);
  for (int k = 0; k < 8; ++k) total += l[k];
  return total;
}

// ---- pow (SLEEF's powf_u10 as torch_pow.hpp re-derives it), 8 lanes ---------------------------------

namespace pow8 {
QUANTO_ALWAYS_INLINE __m256 add(__m256 a, __m256 b) noexcept { return opaque8(_mm256_add_ps(a, b)); }
QUANTO_ALWAYS_INLINE __m256 sub(__m256 a, __m256 b) noexcept { return opaque8(_mm256_sub_ps(a, b)); }
QUANTO_ALWAYS_INLINE __m256 mul(__m256 a, __m256 b) noexcept { return opaque8(_mm256_mul_ps(a, b)); }
QUANTO_ALWAYS_INLINE __m256 fma(__m256 a, __m256 b, __m256 c) noexcept { return _mm256_fmadd_ps(a, b, c); }
QUANTO_ALWAYS_INLINE __m256 neg(__m256 a) noexcept { return flt(_mm256_xor_si256(bits(a), splat(0x80000000u))); }

struct df {
  __m256 hi, lo;
};
QUANTO_ALWAYS_INLINE df sum_any(__m256 a, __m256 b) noexcept {
  const __m256 s = add(a, b);
  const __m256 bv = sub(s, a);
  return {s, add(sub(a, sub(s, bv)), sub(b, bv))};
}
QUANTO_ALWAYS_INLINE df sum_any(df x, __m256 b) noexcept {
  const __m256 s = add(x.hi, b);
  const __m256 bv = sub(s, x.hi);
  const __m256 err = add(sub(x.hi, sub(s, bv)), sub(b, bv));
  return {s, add(err, x.lo)};
}
QUANTO_ALWAYS_INLINE df sum_any(df x, df y) noexcept {
  const __m256 s = add(x.hi, y.hi);
  const __m256 yv = sub(s, x.hi);
  const __m256 err = add(sub(x.hi, sub(s, yv)), sub(y.hi, yv));
  return {s, add(err, add(x.lo, y.lo))};
}
QUANTO_ALWAYS_INLINE df sum_ordered(df x, df y) noexcept {
  const __m256 s = add(x.hi, y.hi);
  return {s, add(add(add(sub(x.hi, s), y.hi), x.lo), y.lo)};
}
QUANTO_ALWAYS_INLINE df sum_ordered(__m256 a, df y) noexcept {
  const __m256 s = add(a, y.hi);
  return {s, add(add(sub(a, s), y.hi), y.lo)};
}
QUANTO_ALWAYS_INLINE df renormalize(df x) noexcept {
  const __m256 s = add(x.hi, x.lo);
  return {s, add(sub(x.hi, s), x.lo)};
}
QUANTO_ALWAYS_INLINE df scale(df x, __m256 f) noexcept { return {mul(x.hi, f), mul(x.lo, f)}; }
QUANTO_ALWAYS_INLINE df product(df x, __m256 b) noexcept {
  const __m256 p = mul(x.hi, b);
  return {p, fma(x.lo, b, fma(x.hi, b, neg(p)))};
}
QUANTO_ALWAYS_INLINE df product(df x, df y) noexcept {
  const __m256 p = mul(x.hi, y.hi);
  return {p, fma(x.hi, y.lo, fma(x.lo, y.hi, fma(x.hi, y.hi, neg(p))))};
}
QUANTO_ALWAYS_INLINE df square(df x) noexcept {
  const __m256 p = mul(x.hi, x.hi);
  return {p, fma(add(x.hi, x.hi), x.lo, fma(x.hi, x.hi, neg(p)))};
}
QUANTO_ALWAYS_INLINE df quotient(df n, df d) noexcept {
  const __m256 inv = opaque8(_mm256_div_ps(splatf(1.0f), d.hi));
  const __m256 q = mul(n.hi, inv);
  const __m256 q_err = fma(inv, n.hi, neg(q));
  const __m256 inv_err = fma(neg(d.lo), inv, fma(neg(d.hi), inv, splatf(1.0f)));
  return {q, fma(q, inv_err, fma(n.lo, inv, q_err))};
}

/// SLEEF's vldexp as `sleef_pow::scale_by_pow2`: four equal factors and a remainder.
QUANTO_ALWAYS_INLINE __m256 scale_by_pow2(__m256 x, __m256i q) noexcept {
  const __m256i neg_ = _mm256_srai_epi32(q, 31);
  __m256i m = _mm256_slli_epi32(_mm256_sub_epi32(_mm256_srai_epi32(_mm256_add_epi32(neg_, q), 6), neg_), 4);
  q = _mm256_sub_epi32(q, _mm256_slli_epi32(m, 2));
  m = _mm256_add_epi32(m, splat(127));
  m = _mm256_min_epi32(_mm256_max_epi32(m, _mm256_setzero_si256()), splat(255));
  const __m256 big = flt(_mm256_slli_epi32(m, 23));
  x = mul(mul(mul(mul(x, big), big), big), big);
  return mul(x, flt(_mm256_slli_epi32(_mm256_add_epi32(q, splat(127)), 23)));
}

QUANTO_ALWAYS_INLINE df logkf(__m256 d) noexcept {
  namespace c = quanto::detail::sleef_pow;
  const __m256i tiny = _mm256_castps_si256(_mm256_cmp_ps(d, splatf(0x1p-126f), _CMP_LT_OQ));
  d = select(tiny, mul(d, splatf(0x1p64f)), d);
  __m256i e = _mm256_sub_epi32(
      _mm256_and_si256(_mm256_srli_epi32(bits(mul(d, splatf(c::kFourThirds))), 23), splat(0xFFu)), splat(0x7F));
  const __m256 m = flt(_mm256_add_epi32(bits(d), _mm256_slli_epi32(_mm256_sub_epi32(_mm256_setzero_si256(), e), 23)));
  e = selecti(tiny, _mm256_sub_epi32(e, splat(64)), e);

  const df r = quotient(sum_any(splatf(-1.0f), m), sum_any(splatf(1.0f), m));
  const df r2 = square(r);
  __m256 t = splatf(0x1.ec2d14p-3f);
  t = fma(t, r2.hi, splatf(0x1.23f494p-2f));
  t = fma(t, r2.hi, splatf(0x1.999bb2p-2f));
  const df cc = {splatf(0x1.555554p-1f), splatf(0x1.fb6706p-29f)};
  df s = product(df{splatf(c::kLn2Hi), splatf(c::kLn2Lo)}, _mm256_cvtepi32_ps(e));
  s = sum_ordered(s, scale(r, splatf(2.0f)));
  s = sum_ordered(s, product(product(r2, r), sum_any(product(r2, t), cc)));
  return s;
}

QUANTO_ALWAYS_INLINE __m256 expkf(df d) noexcept {
  namespace c = quanto::detail::sleef_pow;
  // cvtps2dq: nearest even, NaN / out of range -> INT32_MIN, as round_to_int32.
  const __m256i q = _mm256_cvtps_epi32(mul(add(d.hi, d.lo), splatf(c::kInvLn2)));
  const __m256 qf = _mm256_cvtepi32_ps(q);
  df s = sum_any(d, mul(qf, splatf(-c::kLn2Upper)));
  s = sum_any(s, mul(qf, splatf(-c::kLn2Lower)));
  s = renormalize(s);
  __m256 u = splatf(0x1.655decp-10f);
  u = fma(u, s.hi, splatf(0x1.1222d6p-7f));
  u = fma(u, s.hi, splatf(0x1.555e98p-5f));
  u = fma(u, s.hi, splatf(0x1.5554bcp-3f));
  u = fma(u, s.hi, splatf(0x1.fffff6p-2f));
  df t = sum_ordered(s, product(square(s), u));
  t = sum_ordered(splatf(1.0f), t);
  const __m256 result = scale_by_pow2(add(t.hi, t.lo), q);
  const __m256i under = _mm256_castps_si256(_mm256_cmp_ps(d.hi, splatf(-104.0f), _CMP_LT_OQ));
  return _mm256_andnot_ps(_mm256_castsi256_ps(under), result);
}
}  // namespace pow8

/// `detail::sleef_powf_u10(x, y)` on 8 lanes with one exponent `y` (bit for bit, special cases
/// included).
inline __m256 sleef_powf8(__m256 x, float y) noexcept {
  using namespace pow8;
  const float ay = y < 0 ? -y : y;
  const bool y_is_int = std::trunc(y) == y || ay > 0x1p24f;
  const bool y_is_odd = y_is_int && ay < 0x1p24f && (static_cast<std::int32_t>(y) & 1) == 1;
  const __m256 yv = splatf(y);
  const __m256 ax = abs8(x);

  __m256 result = expkf(product(logkf(ax), yv));
  result = select(nan_mask(result), flt(splat(0x7F800000u)), result);

  const __m256i not_pos = _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_NGT_UQ));  // !(x > 0)
  if (!y_is_int) {
    result = select(not_pos, flt(splat(0x7FC00000u)), result);
  } else if (y_is_odd) {
    result = select(not_pos, neg(result), result);
  }
  if (is_inf_bits(y)) {
    const __m256 efx = flt(_mm256_xor_si256(bits(sub(ax, splatf(1.0f))), splat(float_to_bits(y) & 0x80000000u)));
    const __m256 lt = _mm256_cmp_ps(efx, _mm256_setzero_ps(), _CMP_LT_OQ);
    const __m256 eq = _mm256_cmp_ps(efx, _mm256_setzero_ps(), _CMP_EQ_OQ);
    result = _mm256_blendv_ps(_mm256_blendv_ps(flt(splat(0x7F800000u)), splatf(1.0f), eq), _mm256_setzero_ps(), lt);
  }
  {
    const __m256i is_inf = _mm256_cmpeq_epi32(bits(ax), splat(0x7F800000u));
    const __m256i is_zero = _mm256_cmpeq_epi32(bits(ax), _mm256_setzero_si256());
    // to_zero = sign(y) != (x == 0)
    const __m256i to_zero = sign_bit(y) ? _mm256_andnot_si256(is_zero, splat(0xFFFFFFFFu)) : is_zero;
    __m256i mag = _mm256_andnot_si256(to_zero, splat(0x7F800000u));
    if (y_is_odd) mag = _mm256_or_si256(mag, _mm256_and_si256(bits(x), splat(0x80000000u)));
    result = select(_mm256_or_si256(is_inf, is_zero), flt(mag), result);
  }
  const __m256i xnan = nan_mask(x);
  if (is_nan_bits(y)) {
    result = flt(splat(0xFFFFFFFFu));
  } else {
    result = select(xnan, flt(splat(0xFFFFFFFFu)), result);
  }
  if (y == 0.0f) return splatf(1.0f);
  return select(_mm256_cmpeq_epi32(bits(x), splat(0x3F800000u)), splatf(1.0f), result);
}

/// One HQQ target run (optimizers.hpp, the loop body) for elements sharing `scale`, or, PerColumn,
/// with parallel scale arrays: returns the elements done; `target` receives floats.
template <class T, bool PerColumn>
inline std::size_t hqq_target_run(const T* base, const T* dq, const std::uint8_t* codes, float* target, std::size_t n,
                                  float scale, const T* scales, float exponent, float inv_beta) noexcept {
  const __m256 sc = splatf(scale), ib = splatf(inv_beta);
  const __m256 zero = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = load8(base + i);
    const __m256 err = narrow8<T>(_mm256_sub_ps(x, load8(dq + i)));
    const __m256 a = abs8(err);
    const __m256 p = narrow8<T>(sleef_powf8(a, exponent));
    const __m256 shrunk = narrow8<T>(_mm256_sub_ps(a, narrow8<T>(opaque8(_mm256_mul_ps(ib, p)))));
    // r = shrunk > 0 ? shrunk : 0 (a NaN shrunk gives 0, as the scalar comparison does)
    const __m256 r = _mm256_and_ps(_mm256_cmp_ps(shrunk, zero, _CMP_GT_OQ), shrunk);
    const __m256 pos = _mm256_cmp_ps(err, zero, _CMP_GT_OQ), negm = _mm256_cmp_ps(err, zero, _CMP_LT_OQ);
    const __m256 ev = _mm256_or_ps(_mm256_and_ps(pos, r), _mm256_and_ps(negm, pow8::neg(r)));
    const __m256 s = PerColumn ? load8(scales + i) : sc;
    const __m256 qs = narrow8<T>(opaque8(_mm256_mul_ps(u8_values8(codes + i), s)));
    const __m256 inner = narrow8<T>(_mm256_sub_ps(x, narrow8<T>(ev)));
    _mm256_storeu_ps(target + i, narrow8<T>(_mm256_sub_ps(qs, inner)));
  }
  return i;
}

/// The HQQ target of one row whose dequantized values are recomputed from its codes
/// (`dequantize_affine_value(code, scale, shift)`, what quanto's `dequantize` holds): as
/// `hqq_target_run`, with |err|^(p-1) read from `pow_table` (indexed by the bits of |err| in T:
/// the reference's `t_pow` of every non-negative T) when T is 16-bit, SLEEF's vector pow for float.
/// `Numbers`: the caller knows that no NaN arises (finite row, parameters far from overflow), so
/// the roundings to T skip the NaN rule.
template <class T, bool Numbers>
inline std::size_t hqq_target_row(const T* base, const std::uint8_t* codes, float* target, std::size_t n, float scale,
                                  float shift, float exponent, float inv_beta, const float* pow_table) noexcept {
  const auto nr = [](__m256 v) { return Numbers ? narrow8_number<T>(v) : narrow8<T>(v); };
  const __m256 sc = splatf(scale), sh = splatf(shift), ib = splatf(inv_beta);
  const __m256 zero = _mm256_setzero_ps();
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = load8(base + i);
    const __m256 qs = nr(opaque8(_mm256_mul_ps(sc, u8_values8(codes + i))));
    const __m256 dq = nr(_mm256_sub_ps(qs, sh));
    const __m256 err = nr(_mm256_sub_ps(x, dq));
    const __m256 a = abs8(err);
    __m256 p;
    if constexpr (std::is_same_v<T, float>) {
      (void)pow_table;
      p = sleef_powf8(a, exponent);
    } else if constexpr (std::is_same_v<T, bfloat16>) {
      p = _mm256_i32gather_ps(pow_table, _mm256_srli_epi32(bits(a), 16), 4);
    } else {
      const __m128i h = _mm256_cvtps_ph(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);  // exact
      p = _mm256_i32gather_ps(pow_table, _mm256_cvtepu16_epi32(h), 4);
    }
    const __m256 shrunk = nr(_mm256_sub_ps(a, nr(opaque8(_mm256_mul_ps(ib, p)))));
    const __m256 r = _mm256_and_ps(_mm256_cmp_ps(shrunk, zero, _CMP_GT_OQ), shrunk);
    const __m256 pos = _mm256_cmp_ps(err, zero, _CMP_GT_OQ), negm = _mm256_cmp_ps(err, zero, _CMP_LT_OQ);
    const __m256 ev = _mm256_or_ps(_mm256_and_ps(pos, r), _mm256_and_ps(negm, pow8::neg(r)));
    const __m256 inner = nr(_mm256_sub_ps(x, nr(ev)));
    _mm256_storeu_ps(target + i, nr(_mm256_sub_ps(qs, inner)));
  }
  return i;
}

/// `t_abs(t_sub(x[i], dequantize_affine_value(codes[i], scale, shift)))` into d (T), over a run.
template <class T, bool Numbers>
inline std::size_t dequantize_abs_error_run(const T* x, const std::uint8_t* codes, T* d, std::size_t n, float scale,
                                            float shift) noexcept {
  const auto nr = [](__m256 v) { return Numbers ? narrow8_number<T>(v) : narrow8<T>(v); };
  const __m256 sc = splatf(scale), sh = splatf(shift);
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 p = nr(opaque8(_mm256_mul_ps(sc, u8_values8(codes + i))));
    const __m256 dq = nr(_mm256_sub_ps(p, sh));
    (Numbers ? store8_number<T> : store8<T>)(d + i, abs8(nr(_mm256_sub_ps(load8(x + i), dq))));
  }
  return i;
}

/// `widen(t_abs(t_sub(a[i], b[i])))` into d, over a run. Returns the elements done.
template <class T>
inline std::size_t abs_diff_run(const T* a, const T* b, float* d, std::size_t n) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(d + i, abs8(narrow8<T>(_mm256_sub_ps(load8(a + i), load8(b + i)))));
  return i;
}

}  // namespace quantize_avx2
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE
