// quanto/quantize/dense.hpp: the dense linear algebra that calibrated quantization needs (GPTQ's
// Hessians and their inverse factors): a register-blocked `C += alpha · Aᵀ·B` on float or double,
// a blocked Cholesky factorization, and a blocked inverse of a lower-triangular matrix. Row-major,
// no allocation in the kernels, one fixed order of operations (results do not depend on threads).
//
// The vector code uses GCC/Clang vector extensions (32-byte vectors: AVX2 registers where the
// target has them, two SSE/NEON registers otherwise); plain loops handle the edges.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/parallel.hpp"

QUANTO_BEGIN_NAMESPACE
namespace detail::dense {

template <class R>
struct vec;
template <>
struct vec<float> {
  using type = float __attribute__((vector_size(32)));
  static constexpr std::int64_t lanes = 8;
};
template <>
struct vec<double> {
  using type = double __attribute__((vector_size(32)));
  static constexpr std::int64_t lanes = 4;
};
template <class R>
using vec_t = typename vec<R>::type;

template <class R>
QUANTO_ALWAYS_INLINE vec_t<R> load(const R* p) noexcept {
  vec_t<R> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class R>
QUANTO_ALWAYS_INLINE void store(R* p, vec_t<R> v) noexcept {
  std::memcpy(p, &v, sizeof v);
}

/// `y[i] += alpha · x[i]` for i < n.
template <class R>
inline void axpy(std::int64_t n, R alpha, const R* x, R* y) noexcept {
  constexpr std::int64_t L = vec<R>::lanes;
  std::int64_t i = 0;
  for (; i + L <= n; i += L) store(y + i, load(y + i) + alpha * load(x + i));
  for (; i < n; ++i) y[i] += alpha * x[i];
}

/// `Σ x[i]·y[i]` with `lanes` partial sums (fixed order).
template <class R>
inline R dot(std::int64_t n, const R* x, const R* y) noexcept {
  constexpr std::int64_t L = vec<R>::lanes;
  vec_t<R> acc{};
  std::int64_t i = 0;
  for (; i + L <= n; i += L) acc += load(x + i) * load(y + i);
  R s = 0;
  for (std::int64_t l = 0; l < L; ++l) s += acc[l];
  for (; i < n; ++i) s += x[i] * y[i];
  return s;
}

/// A(p, i) = a[p·sp + i·si]: any strides (its elements are broadcast one at a time).
template <class R>
struct strided {
  const R* a;
  std::int64_t sp, si;
  const R& operator()(std::int64_t p, std::int64_t i) const noexcept { return a[p * sp + i * si]; }
};

/// The micro-kernel: an MR × NR tile of `alpha · Aᵀ·B` over k from packed panels (`a`: k × MR,
/// `b`: k × NR, both contiguous), added to C (the whole tile when `rows`/`cols` are full, else
/// through a scratch tile).
template <class R>
inline constexpr int gemm_mr = 6;
template <class R>
inline constexpr std::int64_t gemm_nr = 2 * vec<R>::lanes;

template <class R>
QUANTO_ALWAYS_INLINE void micro_tile(std::int64_t k, R alpha, const R* a, const R* b, R* c, std::int64_t ldc,
                                     std::int64_t rows, std::int64_t cols) noexcept {
  constexpr int MR = gemm_mr<R>;
  constexpr std::int64_t L = vec<R>::lanes, NR = gemm_nr<R>;
  vec_t<R> acc[MR][2] = {};
  for (std::int64_t p = 0; p < k; ++p) {
    const vec_t<R> b0 = load(b + p * NR), b1 = load(b + p * NR + L);
    QUANTO_UNROLL
    for (int r = 0; r < MR; ++r) {
      const R av = a[p * MR + r];
      acc[r][0] += av * b0;
      acc[r][1] += av * b1;
    }
  }
  if (rows == MR && cols == NR) {
    QUANTO_UNROLL
    for (int r = 0; r < MR; ++r) {
      R* cr = c + r * ldc;
      store(cr, load(cr) + alpha * acc[r][0]);
      store(cr + L, load(cr + L) + alpha * acc[r][1]);
    }
    return;
  }
  R t[MR][NR];
  for (int r = 0; r < MR; ++r) {
    store(t[r], acc[r][0]);
    store(t[r] + L, acc[r][1]);
  }
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < cols; ++j) c[r * ldc + j] += alpha * t[r][j];
}

/// `C(i, j) += alpha · Σ_p A(p, i)·B(p, j)` for i < m, j < n, p < k; B and C row-major
/// (`ldb`, `ldc`). Blocked as GotoBLAS: panels of k (KC) and of C's columns (NC) and rows (MC)
/// are packed contiguous, then micro-tiles run over them; tiles of columns run on `par`'s
/// threads. Each element's sum has one order, whatever the threads.
template <class R>
void gemm_tn(std::int64_t m, std::int64_t n, std::int64_t k, R alpha, strided<R> a, const R* b, std::int64_t ldb, R* c,
             std::int64_t ldc, kernels::parallel_options par = {}) {
  if (m <= 0 || n <= 0 || k <= 0) return;
  constexpr std::int64_t MR = gemm_mr<R>, NR = gemm_nr<R>, KC = 256, MC = 120, NC = 2048;
  std::vector<R> ap(static_cast<std::size_t>(MC * KC)), bp(static_cast<std::size_t>(KC * NC));
  for (std::int64_t p0 = 0; p0 < k; p0 += KC) {
    const std::int64_t kc = std::min(KC, k - p0);
    for (std::int64_t j0 = 0; j0 < n; j0 += NC) {
      const std::int64_t nc = std::min(NC, n - j0), jtiles = (nc + NR - 1) / NR;
      for (std::int64_t jt = 0; jt < jtiles; ++jt) {  // B panel: jtiles × kc × NR, zero-padded
        const std::int64_t cols = std::min(NR, nc - jt * NR);
        R* dst = bp.data() + jt * kc * NR;
        for (std::int64_t p = 0; p < kc; ++p) {
          const R* src = b + (p0 + p) * ldb + j0 + jt * NR;
          std::int64_t j = 0;
          for (; j < cols; ++j) dst[p * NR + j] = src[j];
          for (; j < NR; ++j) dst[p * NR + j] = R(0);
        }
      }
      for (std::int64_t i0 = 0; i0 < m; i0 += MC) {
        const std::int64_t mc = std::min(MC, m - i0), itiles = (mc + MR - 1) / MR;
        for (std::int64_t it = 0; it < itiles; ++it) {  // A panel: itiles × kc × MR, zero-padded
          const std::int64_t rows = std::min(MR, mc - it * MR);
          R* dst = ap.data() + it * kc * MR;
          for (std::int64_t p = 0; p < kc; ++p) {
            std::int64_t r = 0;
            for (; r < rows; ++r) dst[p * MR + r] = a(p0 + p, i0 + it * MR + r);
            for (; r < MR; ++r) dst[p * MR + r] = R(0);
          }
        }
        const std::int64_t grain =
            std::max<std::int64_t>(1, (std::int64_t{1} << 21) / std::max<std::int64_t>(1, mc * kc * NR));
        kernels::parallel_for(
            0, jtiles, grain,
            [&](std::int64_t t0, std::int64_t t1) {
              for (std::int64_t jt = t0; jt < t1; ++jt) {
                const std::int64_t cols = std::min(NR, nc - jt * NR);
                for (std::int64_t it = 0; it < itiles; ++it)
                  micro_tile<R>(kc, alpha, ap.data() + it * kc * MR, bp.data() + jt * kc * NR,
                                c + (i0 + it * MR) * ldc + j0 + jt * NR, ldc, std::min(MR, mc - it * MR), cols);
              }
            },
            par);
      }
    }
  }
}

/// Factors the symmetric positive-definite `a` (n×n, row-major, lower triangle read) in place
/// into its lower Cholesky factor L (a = L·Lᵀ; the strict upper triangle is set to zero).
/// Returns the first column whose pivot is not positive (or not finite), or nullopt on success
/// (then `a` holds a partial factorization).
inline std::optional<std::int64_t> cholesky_lower(std::int64_t n, double* a, kernels::parallel_options par = {}) {
  constexpr std::int64_t NB = 128;
  std::vector<double> panel;  // the factored panel below the diagonal block, transposed
  for (std::int64_t k0 = 0; k0 < n; k0 += NB) {
    const std::int64_t k1 = std::min(n, k0 + NB), b = k1 - k0;
    // the diagonal block and the panel below it, left-looking inside the block
    for (std::int64_t j = k0; j < k1; ++j) {
      double* lj = a + j * n;
      const double d = lj[j] - dot(j - k0, lj + k0, lj + k0);
      if (!(d > 0.0) || !std::isfinite(d)) return j;
      const double s = std::sqrt(d);
      lj[j] = s;
      kernels::parallel_for(
          j + 1, n, 512,
          [&](std::int64_t i0, std::int64_t i1) {
            for (std::int64_t i = i0; i < i1; ++i) {
              double* li = a + i * n;
              li[j] = (li[j] - dot(j - k0, li + k0, lj + k0)) / s;
            }
          },
          par);
    }
    if (k1 == n) break;
    // trailing update of the lower triangle: A22 -= L21·L21ᵀ
    const std::int64_t m2 = n - k1;
    panel.assign(static_cast<std::size_t>(b * m2), 0.0);
    for (std::int64_t i = 0; i < m2; ++i)
      for (std::int64_t p = 0; p < b; ++p) panel[static_cast<std::size_t>(p * m2 + i)] = a[(k1 + i) * n + k0 + p];
    for (std::int64_t r0 = 0; r0 < m2; r0 += NB) {
      const std::int64_t r1 = std::min(m2, r0 + NB);
      gemm_tn<double>(r1 - r0, r1, b, -1.0, {panel.data() + r0, m2, 1}, panel.data(), m2, a + (k1 + r0) * n + k1, n,
                      par);
    }
  }
  for (std::int64_t i = 0; i < n; ++i) std::fill(a + i * n + i + 1, a + (i + 1) * n, 0.0);
  return std::nullopt;
}

/// Replaces the lower-triangular `l` (n×n, row-major, a positive diagonal, zeros above it) by its
/// inverse, in place.
inline void invert_lower(std::int64_t n, double* l, kernels::parallel_options par = {}) {
  constexpr std::int64_t NB = 128;
  // 1. each diagonal block by forward substitution (column by column)
  std::vector<double> x(static_cast<std::size_t>(NB * NB));
  for (std::int64_t d0 = 0; d0 < n; d0 += NB) {
    const std::int64_t b = std::min(NB, n - d0);
    std::fill(x.begin(), x.end(), 0.0);
    for (std::int64_t j = 0; j < b; ++j)
      for (std::int64_t i = j; i < b; ++i) {
        double s = i == j ? 1.0 : 0.0;
        for (std::int64_t p = j; p < i; ++p) s -= l[(d0 + i) * n + d0 + p] * x[static_cast<std::size_t>(p * NB + j)];
        x[static_cast<std::size_t>(i * NB + j)] = s / l[(d0 + i) * n + d0 + i];
      }
    for (std::int64_t i = 0; i < b; ++i)
      for (std::int64_t j = 0; j <= i; ++j) l[(d0 + i) * n + d0 + j] = x[static_cast<std::size_t>(i * NB + j)];
  }
  // 2. block column by block column: X_ij = -X_ii · Σ_{j <= q < i} L_iq · X_qj, rows in order (the
  //    blocks above row i of column j already hold X, those right of column j still hold L)
  std::vector<double> s(static_cast<std::size_t>(NB * NB));
  for (std::int64_t j0 = 0; j0 < n; j0 += NB) {
    const std::int64_t bj = std::min(NB, n - j0);
    for (std::int64_t i0 = j0 + NB; i0 < n; i0 += NB) {
      const std::int64_t bi = std::min(NB, n - i0);
      std::fill(s.begin(), s.end(), 0.0);
      // S (bi × bj) = L[i0.., j0..i0) · X[j0..i0, j0..]; the block L_ij itself is read (q = j)
      // with X_jj, the diagonal block inverted in step 1.
      gemm_tn<double>(bi, bj, i0 - j0, 1.0, {l + i0 * n + j0, 1, n}, l + j0 * n + j0, n, s.data(), NB, par);
      double* xij = l + i0 * n + j0;
      for (std::int64_t r = 0; r < bi; ++r) std::fill(xij + r * n, xij + r * n + bj, 0.0);
      gemm_tn<double>(bi, bj, bi, -1.0, {l + i0 * n + i0, 1, n}, s.data(), NB, xij, n, par);
    }
  }
}

}  // namespace detail::dense
QUANTO_END_NAMESPACE
