// bench/roofline.hpp: the machine's ceilings, measured inside the benchmark binary so that every
// matmul figure can be read as a fraction of what this machine did in the same run.
//
//   read_bandwidth_gbps(t)   STREAM-like read (a sum with 32-byte loads, 8 independent
//                            accumulators) of a buffer far larger than the L3 (512 MiB by default),
//                            t threads each reading its own slice; the best of a few read patterns
//                            (1 to 8 rows read side by side, with and without software prefetch),
//                            each the best of several repetitions
//   fp32_fma_gflops(t)       12 independent _mm256_fmadd_ps chains per thread, in registers
//   int8_dot_gops(t)         the AVX2 int8 dot sequence the kernels use, in independent chains:
//                            pmaddubsw (u8 x s8 -> s16 pairs) + pmaddwd (x1 -> s32) + paddd;
//                            1 multiply-accumulate = 2 ops, 32 MACs per sequence
//   int8_maddubs_gops(t)     pmaddubsw alone (32 MACs per instruction), the raw multiplier rate
//
// Threads are std::threads (the caller is thread 0) started together at a std::barrier; the time
// of a repetition is the caller's wall time from the start barrier to the end barrier, so it
// includes the slowest thread. On a target without AVX2 the same functions run scalar loops.
#pragma once

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define QUANTO_BENCH_ROOFLINE_AVX2 1
#else
#define QUANTO_BENCH_ROOFLINE_AVX2 0
#endif

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <thread>
#include <vector>

namespace quanto_bench::roofline {

/// Size of the bandwidth buffer: QUANTO_BENCH_BW_MIB if set (at least 64), else 512 MiB.
inline std::size_t buffer_bytes() {
  std::size_t mib = 512;
  if (const char* s = std::getenv("QUANTO_BENCH_BW_MIB")) {
    const long v = std::strtol(s, nullptr, 10);
    if (v >= 64) mib = static_cast<std::size_t>(v);
  }
  return mib << 20;
}

namespace detail {

/// Keeps a value alive without emitting code for it.
template <class T>
inline void keep(T& v) noexcept {
#if defined(__GNUC__) || defined(__clang__)
  asm volatile("" : "+m"(v) : : "memory");
#else
  static volatile T sink;
  sink = v;
#endif
}

struct aligned_delete {
  void operator()(unsigned char* p) const noexcept { ::operator delete (p, std::align_val_t{64}); }
};

/// The bandwidth buffer: allocated once, every page written before the first measurement.
inline const unsigned char* buffer() {
  static const std::unique_ptr<unsigned char, aligned_delete> buf = [] {
    const std::size_t bytes = buffer_bytes();
    auto* p = static_cast<unsigned char*>(::operator new (bytes, std::align_val_t{64}));
    std::memset(p, 1, bytes);  // fault every page in now, not during a measurement
    return std::unique_ptr<unsigned char, aligned_delete>(p);
  }();
  return buf.get();
}

/// Runs work(thread_index) on `threads` threads at once, `reps` times; returns the shortest
/// repetition in seconds (wall time of the caller from the start barrier to the end barrier).
template <class Work>
double best_time(int threads, int reps, Work work) {
  threads = std::max(threads, 1);
  std::barrier sync(threads);
  std::vector<std::thread> pool;
  pool.reserve(static_cast<std::size_t>(threads - 1));
  for (int t = 1; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int r = 0; r < reps; ++r) {
        sync.arrive_and_wait();
        work(t);
        sync.arrive_and_wait();
      }
    });
  double best = 1e300;
  for (int r = 0; r < reps; ++r) {
    sync.arrive_and_wait();
    const auto t0 = std::chrono::steady_clock::now();
    work(0);
    sync.arrive_and_wait();
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    best = std::min(best, dt.count());
  }
  for (auto& th : pool) th.join();
  return best;
}

/// Sums [p, p + bytes) read `streams` rows of `row` bytes at a time, side by side (more streams =
/// more misses in flight), 64 bytes per row per step into 8 accumulators, with a software prefetch
/// `prefetch` bytes ahead in each row (0: none). row = 0 makes each stream a contiguous
/// bytes / streams part. bytes must be a multiple of streams * row (of 64 * streams for row = 0).
inline std::uint64_t read_sum(const unsigned char* p, std::size_t bytes, int streams, std::size_t row,
                              std::size_t prefetch) noexcept {
  const std::size_t ns = static_cast<std::size_t>(streams);
  if (row == 0) row = bytes / ns;
#if QUANTO_BENCH_ROOFLINE_AVX2
  __m256i a[8];
  for (auto& v : a) v = _mm256_setzero_si256();
  for (std::size_t base = 0; base + ns * row <= bytes; base += ns * row)
    for (std::size_t i = 0; i < row; i += 64)
      for (std::size_t s = 0; s < ns; ++s) {
        const unsigned char* q = p + base + row * s + i;
        if (prefetch) _mm_prefetch(reinterpret_cast<const char*>(q + prefetch), _MM_HINT_T0);
        const std::size_t j = (2 * s) & 7;
        a[j] = _mm256_add_epi32(a[j], _mm256_load_si256(reinterpret_cast<const __m256i*>(q)));
        a[j + 1] = _mm256_add_epi32(a[j + 1], _mm256_load_si256(reinterpret_cast<const __m256i*>(q + 32)));
      }
  for (int j = 1; j < 8; ++j) a[0] = _mm256_add_epi32(a[0], a[j]);
  __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(a[0]), _mm256_extracti128_si256(a[0], 1));
  sum = _mm_add_epi32(sum, _mm_unpackhi_epi64(sum, sum));
  return static_cast<std::uint64_t>(_mm_cvtsi128_si64(sum));
#else
  (void)prefetch;
  std::uint64_t a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (std::size_t base = 0; base + ns * row <= bytes; base += ns * row)
    for (std::size_t i = 0; i < row; i += 64)
      for (std::size_t s = 0; s < ns; ++s) {
        const auto* q = reinterpret_cast<const std::uint64_t*>(p + base + row * s + i);
        for (int j = 0; j < 8; ++j) a[j] += q[j];
      }
  return a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
#endif
}

/// `iters` rounds of 12 independent FMA chains (8 floats each): 192 flops per round.
inline void fma_chains(std::int64_t iters) noexcept {
#if QUANTO_BENCH_ROOFLINE_AVX2
  const __m256 b = _mm256_set1_ps(0.9999f), c = _mm256_set1_ps(1e-4f);
  // Distinct starting values, made opaque: identical chains would be merged by the compiler.
  __m256 a0 = _mm256_set1_ps(1.00f), a1 = _mm256_set1_ps(1.01f), a2 = _mm256_set1_ps(1.02f);
  __m256 a3 = _mm256_set1_ps(1.03f), a4 = _mm256_set1_ps(1.04f), a5 = _mm256_set1_ps(1.05f);
  __m256 a6 = _mm256_set1_ps(1.06f), a7 = _mm256_set1_ps(1.07f), a8 = _mm256_set1_ps(1.08f);
  __m256 a9 = _mm256_set1_ps(1.09f), a10 = _mm256_set1_ps(1.10f), a11 = _mm256_set1_ps(1.11f);
#if defined(__GNUC__) || defined(__clang__)
  asm volatile(""
               : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5), "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9),
                 "+x"(a10), "+x"(a11));
#endif
  for (std::int64_t i = 0; i < iters; ++i) {
    a0 = _mm256_fmadd_ps(a0, b, c);
    a1 = _mm256_fmadd_ps(a1, b, c);
    a2 = _mm256_fmadd_ps(a2, b, c);
    a3 = _mm256_fmadd_ps(a3, b, c);
    a4 = _mm256_fmadd_ps(a4, b, c);
    a5 = _mm256_fmadd_ps(a5, b, c);
    a6 = _mm256_fmadd_ps(a6, b, c);
    a7 = _mm256_fmadd_ps(a7, b, c);
    a8 = _mm256_fmadd_ps(a8, b, c);
    a9 = _mm256_fmadd_ps(a9, b, c);
    a10 = _mm256_fmadd_ps(a10, b, c);
    a11 = _mm256_fmadd_ps(a11, b, c);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                           _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(a8, a9), _mm256_add_ps(a10, a11)));
  keep(s);
#else
  float a[24];
  for (auto& v : a) v = 1.0f;
  for (std::int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 24; ++j) a[j] = a[j] * 0.9999f + 1e-4f;  // 24 chains ~ 48 flops per round
  keep(a);
#endif
}
/// Flops per round of fma_chains.
inline constexpr double fma_round_flops = QUANTO_BENCH_ROOFLINE_AVX2 ? 12 * 8 * 2 : 24 * 2;

/// `iters` rounds of 4 independent int8 dot chains: acc += pmaddwd(pmaddubsw(a_j, b), 1). The
/// empty asm makes each a_j opaque every round, so the multiplies are not hoisted out of the loop.
/// 4 x 32 MACs = 256 ops per round.
inline void int8_dot_chains(std::int64_t iters) noexcept {
#if QUANTO_BENCH_ROOFLINE_AVX2
  const __m256i b = _mm256_set1_epi8(3), ones = _mm256_set1_epi16(1);
  __m256i a0 = _mm256_set1_epi8(1), a1 = _mm256_set1_epi8(2), a2 = _mm256_set1_epi8(5), a3 = _mm256_set1_epi8(7);
  __m256i s0 = _mm256_setzero_si256(), s1 = s0, s2 = s0, s3 = s0;
#if defined(__GNUC__) || defined(__clang__)
  asm volatile("" : "+x"(s0), "+x"(s1), "+x"(s2), "+x"(s3));
#endif
  for (std::int64_t i = 0; i < iters; ++i) {
#if defined(__GNUC__) || defined(__clang__)
    asm volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3));
#endif
    s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(a0, b), ones));
    s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(a1, b), ones));
    s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(_mm256_maddubs_epi16(a2, b), ones));
    s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(_mm256_maddubs_epi16(a3, b), ones));
  }
  __m256i s = _mm256_add_epi32(_mm256_add_epi32(s0, s1), _mm256_add_epi32(s2, s3));
  keep(s);
#else
  std::int32_t s[8] = {};
  std::int8_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  for (std::int64_t i = 0; i < iters; ++i) {
    keep(a);
    for (int j = 0; j < 8; ++j) s[j] += a[j] * 3;
  }
  keep(s);
#endif
}
inline constexpr double int8_dot_round_ops = QUANTO_BENCH_ROOFLINE_AVX2 ? 4 * 32 * 2 : 8 * 2;

/// `iters` rounds of 8 independent pmaddubsw chains (x_j = pmaddubsw(x_j, b)): 8 x 32 MACs = 512
/// ops per round. The chains are dependent through their own results, so nothing can be hoisted.
inline void maddubs_chains(std::int64_t iters) noexcept {
#if QUANTO_BENCH_ROOFLINE_AVX2
  const __m256i b = _mm256_set1_epi8(1);
  __m256i x0 = _mm256_set1_epi8(1), x1 = _mm256_set1_epi8(2), x2 = _mm256_set1_epi8(3), x3 = _mm256_set1_epi8(4);
  __m256i x4 = _mm256_set1_epi8(5), x5 = _mm256_set1_epi8(6), x6 = _mm256_set1_epi8(7), x7 = _mm256_set1_epi8(8);
#if defined(__GNUC__) || defined(__clang__)
  asm volatile("" : "+x"(x0), "+x"(x1), "+x"(x2), "+x"(x3), "+x"(x4), "+x"(x5), "+x"(x6), "+x"(x7));
#endif
  for (std::int64_t i = 0; i < iters; ++i) {
    x0 = _mm256_maddubs_epi16(x0, b);
    x1 = _mm256_maddubs_epi16(x1, b);
    x2 = _mm256_maddubs_epi16(x2, b);
    x3 = _mm256_maddubs_epi16(x3, b);
    x4 = _mm256_maddubs_epi16(x4, b);
    x5 = _mm256_maddubs_epi16(x5, b);
    x6 = _mm256_maddubs_epi16(x6, b);
    x7 = _mm256_maddubs_epi16(x7, b);
  }
  __m256i s = _mm256_or_si256(_mm256_or_si256(_mm256_or_si256(x0, x1), _mm256_or_si256(x2, x3)),
                              _mm256_or_si256(_mm256_or_si256(x4, x5), _mm256_or_si256(x6, x7)));
  keep(s);
#else
  int8_dot_chains(iters);
#endif
}
inline constexpr double maddubs_round_ops = QUANTO_BENCH_ROOFLINE_AVX2 ? 8 * 32 * 2 : 8 * 2;

/// Ops per second of `kernel(rounds)` on `threads` threads (each running `rounds` rounds of
/// `ops_per_round`), best of `reps`.
template <class Kernel>
double compute_rate(int threads, std::int64_t rounds, double ops_per_round, Kernel kernel, int reps = 5) {
  kernel(rounds / 16);  // wake the core up (frequency, caches)
  const double t = best_time(threads, reps, [&](int) { kernel(rounds); });
  return static_cast<double>(rounds) * ops_per_round * std::max(threads, 1) / t;
}

}  // namespace detail

/// One way of reading the buffer: rows walked side by side, their length (0: one contiguous part
/// per stream), software prefetch distance.
struct read_variant {
  int streams;
  std::size_t row;
  std::size_t prefetch;
};
/// One core's bandwidth is bounded by the misses it keeps in flight, so the ceiling is the best of
/// a plain sequential read and reads of several rows at once (as a GEMV reads weight rows), with
/// and without prefetch. (Streams far apart, at power-of-two distances, can hit DRAM bank
/// conflicts: hence rows of 16-64 KiB.)
inline constexpr read_variant read_variants[] = {{1, 0, 0},       {4, 16384, 0},   {8, 16384, 0}, {4, 16384, 512},
                                                 {8, 16384, 512}, {4, 65536, 512}, {8, 0, 256}};

/// Read bandwidth in GB/s (1e9 bytes) with `threads` threads for one variant, best of `reps`.
inline double read_bandwidth_gbps(int threads, read_variant v, int reps = 5) {
  threads = std::max(threads, 1);
  const unsigned char* buf = detail::buffer();
  const std::size_t unit = static_cast<std::size_t>(v.streams) * (v.row ? v.row : 64);
  const std::size_t slice = buffer_bytes() / static_cast<std::size_t>(threads) / unit * unit;
  std::vector<std::uint64_t> sums(static_cast<std::size_t>(threads) * 8);  // 64 bytes apart
  const double t = detail::best_time(threads, reps, [&](int i) {
    sums[static_cast<std::size_t>(i) * 8] =
        detail::read_sum(buf + slice * static_cast<std::size_t>(i), slice, v.streams, v.row, v.prefetch);
  });
  detail::keep(sums[0]);
  return static_cast<double>(slice) * threads / t / 1e9;
}

/// Read bandwidth in GB/s with `threads` threads: the best variant (see read_variants), which is
/// stored in *which if given.
inline double read_bandwidth_gbps(int threads, read_variant* which = nullptr) {
  double best = 0;
  for (const read_variant& v : read_variants)
    if (const double r = read_bandwidth_gbps(threads, v); r > best) {
      best = r;
      if (which) *which = v;
    }
  return best;
}

/// Peak fp32 FMA rate in GFLOP/s with `threads` threads.
inline double fp32_fma_gflops(int threads) {
  return detail::compute_rate(threads, std::int64_t{1} << 23, detail::fma_round_flops, detail::fma_chains) / 1e9;
}

/// Peak int8 rate of the pmaddubsw + pmaddwd + paddd sequence in GOPS (1 MAC = 2 ops).
inline double int8_dot_gops(int threads) {
  return detail::compute_rate(threads, std::int64_t{1} << 23, detail::int8_dot_round_ops, detail::int8_dot_chains) /
         1e9;
}

/// Peak rate of pmaddubsw alone in GOPS (32 MACs = 64 ops per instruction).
inline double int8_maddubs_gops(int threads) {
  return detail::compute_rate(threads, std::int64_t{1} << 22, detail::maddubs_round_ops, detail::maddubs_chains) / 1e9;
}

/// Every ceiling for one thread count.
struct ceilings {
  int threads = 1;
  double read_gbps = 0;             ///< GB/s
  read_variant read_best{1, 0, 0};  ///< the read pattern that reached read_gbps
  double fp32_gflops = 0;           ///< GFLOP/s
  double int8_gops = 0;             ///< GOPS, pmaddubsw + pmaddwd + paddd
  double maddubs_gops = 0;          ///< GOPS, pmaddubsw alone
};

inline ceilings measure(int threads) {
  ceilings c;
  c.threads = threads;
  c.read_gbps = read_bandwidth_gbps(threads, &c.read_best);
  c.fp32_gflops = fp32_fma_gflops(threads);
  c.int8_gops = int8_dot_gops(threads);
  c.maddubs_gops = int8_maddubs_gops(threads);
  return c;
}

}  // namespace quanto_bench::roofline
