// bench/fp32_baseline.hpp: the float32 baseline of bench_matmul, `y = x · Wᵀ` with W float32
// [n, k] row-major, and OpenBLAS's cblas_sgemm at the same shapes when it is available
// (QUANTO_BENCH_HAVE_OPENBLAS, set by bench/CMakeLists.txt).
//
// The baseline has the structure of quanto's AVX2 kernels, so that a speed-up against it measures
// what the weight format changes and nothing else: tiles of up to 4 activation rows x 1 weight row,
// over blocks of 8 weight rows; each 32-element step issues 4 FMAs per activation row, into 4
// (1 row), 2 (2-3 rows) or 1 (4 rows) accumulators per row; the work is split over weight rows by
// quanto::kernels::parallel_for with the library's grain (kernels::default_rows_per_task). OpenBLAS
// is the "best float32 this machine can do" reference.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define QUANTO_BENCH_FP32_AVX2 1
#else
#define QUANTO_BENCH_FP32_AVX2 0
#endif

#if defined(QUANTO_BENCH_HAVE_OPENBLAS)
#include <cblas.h>
#endif

#include <quanto/core/config.hpp>
#include <quanto/kernels/matmul.hpp>
#include <quanto/kernels/parallel.hpp>

namespace quanto_bench::fp32 {

/// Whether the baseline body is the AVX2 + FMA one ("avx2") or plain loops ("scalar").
inline constexpr const char* isa_name = QUANTO_BENCH_FP32_AVX2 ? "avx2" : "scalar";

namespace detail {

#if QUANTO_BENCH_FP32_AVX2
inline float hsum(__m256 v) noexcept {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
  return _mm_cvtss_f32(s);
}

/// Accumulators per activation row (as quanto's kernels: 4 independent chains per 4-FMA step).
template <int MR>
inline constexpr int chains = MR >= 4 ? 1 : (MR == 1 ? 4 : 2);

/// MR activation rows (x[0..MR)) x weight row w: y[ii * ldy] = x[ii] · w.
template <int MR>
QUANTO_ALWAYS_INLINE void tile(const float* w, const float* const* x, std::int64_t k, float* y,
                               std::int64_t ldy) noexcept {
  constexpr int A = chains<MR>;
  __m256 acc[MR][A];
  for (int ii = 0; ii < MR; ++ii)
    for (int a = 0; a < A; ++a) acc[ii][a] = _mm256_setzero_ps();
  std::int64_t e = 0;
  for (; e + 32 <= k; e += 32)
    for (int j = 0; j < 4; ++j) {
      const __m256 wv = _mm256_loadu_ps(w + e + 8 * j);
      for (int ii = 0; ii < MR; ++ii)
        acc[ii][j % A] = _mm256_fmadd_ps(wv, _mm256_loadu_ps(x[ii] + e + 8 * j), acc[ii][j % A]);
    }
  for (int ii = 0; ii < MR; ++ii) {
    __m256 s = acc[ii][0];
    for (int a = 1; a < A; ++a) s = _mm256_add_ps(s, acc[ii][a]);
    float v = hsum(s);
    for (std::int64_t t = e; t < k; ++t) v += w[t] * x[ii][t];
    y[ii * ldy] = v;
  }
}
#endif

/// Plain loops: one dot product per output.
inline void tile_scalar(const float* w, const float* x, std::int64_t k, float* y) noexcept {
  float a[4] = {0, 0, 0, 0};
  std::int64_t e = 0;
  for (; e + 4 <= k; e += 4)
    for (int j = 0; j < 4; ++j) a[j] += w[e + j] * x[e + j];
  float v = (a[0] + a[1]) + (a[2] + a[3]);
  for (; e < k; ++e) v += w[e] * x[e];
  *y = v;
}

/// Weight rows [n0, n1) x all m activation rows, blocked as quanto's kernels are.
inline void rows(const float* w, std::int64_t k, const float* x, std::int64_t m, std::int64_t ldx, float* y,
                 std::int64_t ldy, std::int64_t n0, std::int64_t n1) noexcept {
#if QUANTO_BENCH_FP32_AVX2
  constexpr std::int64_t row_block = 8;
  for (std::int64_t rb = n0; rb < n1; rb += row_block) {
    const std::int64_t re = std::min(n1, rb + row_block);
    std::int64_t i0 = 0;
    for (; i0 + 4 <= m; i0 += 4) {
      const float* xs[4] = {x + i0 * ldx, x + (i0 + 1) * ldx, x + (i0 + 2) * ldx, x + (i0 + 3) * ldx};
      for (std::int64_t r = rb; r < re; ++r) tile<4>(w + r * k, xs, k, y + i0 * ldy + r, ldy);
    }
    const std::int64_t left = m - i0;
    if (left == 0) continue;
    const float* xs[3] = {x + i0 * ldx, x + std::min(i0 + 1, m - 1) * ldx, x + std::min(i0 + 2, m - 1) * ldx};
    for (std::int64_t r = rb; r < re; ++r) {
      if (left == 3)
        tile<3>(w + r * k, xs, k, y + i0 * ldy + r, ldy);
      else if (left == 2)
        tile<2>(w + r * k, xs, k, y + i0 * ldy + r, ldy);
      else
        tile<1>(w + r * k, xs, k, y + i0 * ldy + r, ldy);
    }
  }
#else
  for (std::int64_t r = n0; r < n1; ++r)
    for (std::int64_t i = 0; i < m; ++i) tile_scalar(w + r * k, x + i * ldx, k, y + i * ldy + r);
#endif
}

}  // namespace detail

/// y[i, r] = x[i, :] · w[r, :] for i < m, r < n. Parallel over weight rows with the library's grain.
inline void gemm(const float* w, std::int64_t n, std::int64_t k, const float* x, std::int64_t m, std::int64_t ldx,
                 float* y, std::int64_t ldy, const quanto::kernels::parallel_options& opt = {}) {
  if (m <= 0 || n <= 0) return;
  const std::int64_t row_bytes = std::max<std::int64_t>(1, k * static_cast<std::int64_t>(sizeof(float)));
  const std::int64_t grain = std::min(n, quanto::kernels::default_rows_per_task(row_bytes, m));
  quanto::kernels::parallel_for(
      0, n, grain, [&](std::int64_t n0, std::int64_t n1) { detail::rows(w, k, x, m, ldx, y, ldy, n0, n1); }, opt);
}

#if defined(QUANTO_BENCH_HAVE_OPENBLAS)
inline constexpr bool have_openblas = true;

/// OpenBLAS's worker threads for the following calls (the caller counts as one).
inline void openblas_threads(int threads) { openblas_set_num_threads(std::max(threads, 1)); }

/// The same product through cblas_sgemm: Y[m, n] = X[m, k] · W[n, k]ᵀ, row-major.
inline void sgemm_openblas(const float* w, std::int64_t n, std::int64_t k, const float* x, std::int64_t m,
                           std::int64_t ldx, float* y, std::int64_t ldy) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(m), static_cast<blasint>(n),
              static_cast<blasint>(k), 1.0f, x, static_cast<blasint>(ldx), w, static_cast<blasint>(k), 0.0f, y,
              static_cast<blasint>(ldy));
}

/// m = 1 through cblas_sgemv: y[n] = W[n, k] · x[k] (OpenBLAS 0.3.21 does not route an M = 1 sgemm
/// to its GEMV kernel, so both are measured).
inline void sgemv_openblas(const float* w, std::int64_t n, std::int64_t k, const float* x, float* y) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(n), static_cast<blasint>(k), 1.0f, w,
              static_cast<blasint>(k), x, 1, 0.0f, y, 1);
}
#else
inline constexpr bool have_openblas = false;
#endif

}  // namespace quanto_bench::fp32
