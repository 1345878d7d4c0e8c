// quanto/core/parallel.hpp: the threading layer of the kernels and the quantizers: a small thread
// pool and `parallel_for`, or oneTBB when QUANTO_USE_TBB is defined (target quanto::tbb defines
// it). Its names stay in `quanto::kernels`, where they were first published (kernels/parallel.hpp
// forwards here).
//
// Determinism. `parallel_for(begin, end, grain, f)` cuts [begin, end) into chunks
// [begin + k*grain, min(begin + (k+1)*grain, end)), k = 0, 1, ...: the boundaries depend on
// (begin, end, grain) only, never on the number of threads or on the backend. Which thread runs a
// chunk, and when, is not fixed. A kernel that computes each output inside one chunk (and a
// reduction that keeps one partial per chunk, index (lo - begin) / grain, and adds them in order
// afterwards) therefore gives the same bits with 1, 2 or 64 threads.
//
// Nesting. With the built-in pool a `parallel_for` called from inside `f` runs serially on the
// thread that called it: threads never multiply. oneTBB schedules nested loops itself.
#pragma once

#include <algorithm>
#include <atomic>
#include <charconv>
#include <concepts>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string_view>
#include <system_error>
#include <thread>
#include <type_traits>
#include <vector>

#include "quanto/core/config.hpp"

#if defined(QUANTO_USE_TBB) && __has_include(<tbb/parallel_for.h>)
#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>
#include <tbb/partitioner.h>
#include <tbb/task_arena.h>
#define QUANTO_PARALLEL_TBB 1
#else
#define QUANTO_PARALLEL_TBB 0
#endif

QUANTO_BEGIN_NAMESPACE
namespace kernels {

class thread_pool;

/// How a `parallel_for` may use threads.
///   threads: 0 (or less) = every thread of the backend, 1 = the calling thread only, n = at most n.
///   pool:    the pool to run on; nullptr = `thread_pool::global()`. Ignored by the oneTBB backend.
struct parallel_options {
  int threads = 0;
  thread_pool* pool = nullptr;
};

namespace detail {

/// Set while the current thread runs chunks of a `parallel_for` (always set on pool workers).
inline bool& parallel_region_flag() noexcept {
  static thread_local bool flag = false;
  return flag;
}

/// Marks the current thread as inside a parallel region for its lifetime; restores the old value.
class parallel_region_guard {
 public:
  parallel_region_guard() noexcept : previous_(parallel_region_flag()) { parallel_region_flag() = true; }
  ~parallel_region_guard() { parallel_region_flag() = previous_; }
  parallel_region_guard(const parallel_region_guard&) = delete;
  parallel_region_guard& operator=(const parallel_region_guard&) = delete;

 private:
  bool previous_;
};

/// The chunks of [begin, end) for a grain: chunk i is [lo(i), hi(i)). Unsigned arithmetic, so any
/// int64 range works (end - begin may exceed INT64_MAX). Requires end > begin.
struct chunking {
  std::int64_t begin;
  std::uint64_t length;
  std::uint64_t grain;
  std::uint64_t count;

  constexpr chunking(std::int64_t b, std::int64_t e, std::int64_t g) noexcept
      : begin(b),
        length(static_cast<std::uint64_t>(e) - static_cast<std::uint64_t>(b)),
        grain(g > 0 ? static_cast<std::uint64_t>(g) : std::uint64_t{1}),
        count((length - 1) / grain + 1) {}

  constexpr std::int64_t lo(std::uint64_t i) const noexcept {
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(begin) + i * grain);
  }
  constexpr std::int64_t hi(std::uint64_t i) const noexcept {
    const std::uint64_t offset = i * grain;
    const std::uint64_t rest = length - offset;
    return static_cast<std::int64_t>(static_cast<std::uint64_t>(begin) + offset + (rest < grain ? rest : grain));
  }
};

/// Parses QUANTO_NUM_THREADS: a positive decimal integer that fits an int, optionally surrounded by
/// whitespace. Returns 0 for nullptr, empty, non-numeric, trailing garbage, zero, negative or
/// out-of-range values (the caller then uses its default).
inline int threads_from_env(const char* value) noexcept {
  if (value == nullptr) return 0;
  std::string_view s(value);
  constexpr std::string_view space = " \t\n\r\f\v";
  const auto first = s.find_first_not_of(space);
  if (first == std::string_view::npos) return 0;
  s = s.substr(first, s.find_last_not_of(space) - first + 1);
  int n = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc{} || end != s.data() + s.size() || n <= 0) return 0;
  return n;
}

/// The size of the global pool: QUANTO_NUM_THREADS if it is a positive integer, otherwise
/// std::thread::hardware_concurrency(), and at least 1.
inline int default_thread_count() noexcept {
  if (const int n = threads_from_env(std::getenv("QUANTO_NUM_THREADS")); n > 0) return n;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw == 0 ? 1 : static_cast<int>(std::min<unsigned>(hw, 1u << 20));
}

struct pool_access;

}  // namespace detail

/// Whether the current thread is running chunks of a `parallel_for` (a pool worker always is).
/// With the built-in pool, a `parallel_for` started while this is true runs serially.
inline bool in_parallel_region() noexcept { return detail::parallel_region_flag(); }

/// A fixed set of std::threads that run `parallel_for` chunks. A pool of size t has t - 1 workers:
/// the thread that calls `parallel_for` is the t-th. One `parallel_for` runs on a pool at a time;
/// another caller that finds it busy runs its loop serially instead of waiting.
class thread_pool {
 public:
  /// `threads` counts the caller; values below 1 are taken as 1 (no workers).
  explicit thread_pool(int threads) : size_(threads < 1 ? 1 : threads) {
    workers_.reserve(static_cast<std::size_t>(size_ - 1));
    try {
      for (int i = 0; i < size_ - 1; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
    } catch (...) {
      shut_down();
      throw;
    }
  }

  ~thread_pool() { shut_down(); }

  thread_pool(const thread_pool&) = delete;
  thread_pool& operator=(const thread_pool&) = delete;

  /// The number of threads a `parallel_for` on this pool can use, the caller included.
  int size() const noexcept { return size_; }

  /// How long (in pause instructions, ~50 µs) a worker and the caller poll before sleeping on a
  /// condition variable: a model's back-to-back loops (a layer's matmuls, tens of µs each) then
  /// start and finish without a futex wake-up each, which costs tens of µs on a VM.
  static constexpr int spin_polls = 2000;

  /// The process-wide pool, created on first use with `detail::default_thread_count()` threads
  /// (QUANTO_NUM_THREADS, else the hardware concurrency).
  static thread_pool& global() {
    static thread_pool pool(detail::default_thread_count());
    return pool;
  }

 private:
  friend struct detail::pool_access;
  using job_fn = void (*)(void*) noexcept;

  // Runs fn(ctx) on the caller and on participants - 1 workers, and returns once all have returned.
  // Returns false without running anything if another caller is using the pool.
  bool try_run(int participants, job_fn fn, void* ctx) {
    std::unique_lock<std::mutex> dispatch(dispatch_mutex_, std::try_to_lock);
    if (!dispatch.owns_lock()) return false;
    const int helpers = std::clamp(participants, 1, size_) - 1;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = fn;
      job_ctx_ = ctx;
      job_workers_ = helpers;
      pending_.store(helpers, std::memory_order_relaxed);
      generation_.fetch_add(1, std::memory_order_release);
    }
    if (helpers > 0) wake_.notify_all();
    {
      detail::parallel_region_guard region;
      fn(ctx);
    }
    spin_while([this] { return pending_.load(std::memory_order_acquire) != 0; });
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_.load(std::memory_order_relaxed) == 0; });
    return true;
  }

  /// Polls `busy()` up to spin_polls times (a hint only: the mutex and condition variables below
  /// remain the synchronisation).
  template <class Busy>
  static void spin_while(Busy busy) noexcept {
    for (int i = 0; i < spin_polls && busy(); ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      __asm__ __volatile__("yield");
#endif
    }
  }

  void worker_loop(int index) {
    detail::parallel_region_flag() = true;
    std::uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      lock.unlock();
      spin_while([&] {
        return generation_.load(std::memory_order_acquire) == seen && !stop_.load(std::memory_order_relaxed);
      });
      lock.lock();
      wake_.wait(lock, [&] {
        return stop_.load(std::memory_order_relaxed) || generation_.load(std::memory_order_relaxed) != seen;
      });
      if (stop_.load(std::memory_order_relaxed)) return;
      seen = generation_.load(std::memory_order_relaxed);
      if (index >= job_workers_) continue;  // this job needs fewer threads
      const job_fn fn = job_;
      void* const ctx = job_ctx_;
      lock.unlock();
      fn(ctx);
      lock.lock();
      if (pending_.fetch_sub(1, std::memory_order_release) == 1) done_.notify_one();
    }
  }

  void shut_down() noexcept {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_.store(true, std::memory_order_relaxed);
    }
    wake_.notify_all();
    for (auto& t : workers_)
      if (t.joinable()) t.join();
    workers_.clear();
  }

  int size_;
  std::vector<std::thread> workers_;
  std::mutex dispatch_mutex_;  // held by the one caller running a job on this pool
  std::mutex mutex_;           // guards everything below
  std::condition_variable wake_;
  std::condition_variable done_;
  job_fn job_ = nullptr;
  void* job_ctx_ = nullptr;
  int job_workers_ = 0;  // workers with index < job_workers_ take part in the current job
  // written under mutex_; atomic so that the spin loops may read them without it
  std::atomic<int> pending_{0};               // participating workers that have not finished the job
  std::atomic<std::uint64_t> generation_{0};  // bumped once per job
  std::atomic<bool> stop_{false};             // set once, at destruction
};

namespace detail {

struct pool_access {
  static bool try_run(thread_pool& pool, int participants, void (*fn)(void*) noexcept, void* ctx) {
    return pool.try_run(participants, fn, ctx);
  }
};

/// Runs every chunk in order on the current thread.
template <class F>
void run_chunks_serially(const chunking& ch, F& f) {
  parallel_region_guard region;
  for (std::uint64_t i = 0; i < ch.count; ++i) f(ch.lo(i), ch.hi(i));
}

/// One `parallel_for` on the built-in pool: every participant takes the next chunk index from
/// `next` until none is left or a chunk has thrown.
template <class F>
struct parallel_job {
  const chunking& ch;
  F& f;
  std::atomic<std::uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::exception_ptr error;  // written once, by the participant that set `failed`

  parallel_job(const chunking& c, F& fn) noexcept : ch(c), f(fn) {}

  static void run(void* self) noexcept {
    auto& job = *static_cast<parallel_job*>(self);
    while (!job.failed.load(std::memory_order_relaxed)) {
      const std::uint64_t i = job.next.fetch_add(1, std::memory_order_relaxed);
      if (i >= job.ch.count) return;
      try {
        job.f(job.ch.lo(i), job.ch.hi(i));
      } catch (...) {
        if (!job.failed.exchange(true, std::memory_order_relaxed)) job.error = std::current_exception();
        return;
      }
    }
  }
};

}  // namespace detail

/// The number of chunks `parallel_for(begin, end, grain, f)` makes: ceil((end - begin) / grain)
/// (grain <= 0 counts as 1), 0 if end <= begin. Chunk k is [begin + k*grain, min(begin + (k+1)*grain, end)).
constexpr std::int64_t chunk_count(std::int64_t begin, std::int64_t end, std::int64_t grain) noexcept {
  return end <= begin ? 0 : static_cast<std::int64_t>(detail::chunking(begin, end, grain).count);
}

// The backends get their own inline namespace so that TUs built with and without QUANTO_USE_TBB
// do not emit different bodies under one mangled name.
#if QUANTO_PARALLEL_TBB
inline namespace backend_tbb {
#else
inline namespace backend_std {
#endif

/// The backend `parallel_for` uses in this translation unit: "tbb" or "std".
constexpr std::string_view parallel_backend() noexcept { return QUANTO_PARALLEL_TBB ? "tbb" : "std"; }

/// Calls f(lo, hi) once for each chunk of [begin, end) (see `chunk_count`), possibly from several
/// threads at once: f must be safe to call concurrently. Nothing happens if end <= begin; grain <= 0
/// counts as 1. If f throws, chunks not yet started are abandoned, and the first exception is
/// rethrown on the calling thread once every running chunk has returned.
template <class F>
requires std::invocable<F&, std::int64_t, std::int64_t>
void parallel_for(std::int64_t begin, std::int64_t end, std::int64_t grain, F&& f, parallel_options opt = {}) {
  if (end <= begin) return;
  const detail::chunking ch(begin, end, grain);
  if (ch.count == 1 || opt.threads == 1) {
    detail::run_chunks_serially(ch, f);
    return;
  }
#if QUANTO_PARALLEL_TBB
  const auto body = [&](const tbb::blocked_range<std::uint64_t>& r) {
    detail::parallel_region_guard region;
    for (std::uint64_t i = r.begin(); i != r.end(); ++i) f(ch.lo(i), ch.hi(i));
  };
  const tbb::blocked_range<std::uint64_t> chunks(0, ch.count, 1);
  if (opt.threads > 0 && opt.threads < tbb::this_task_arena::max_concurrency()) {
    tbb::task_arena arena(opt.threads);  // a smaller arena than the one this thread is in
    arena.execute([&] { tbb::parallel_for(chunks, body, tbb::simple_partitioner{}); });
  } else {
    tbb::parallel_for(chunks, body, tbb::simple_partitioner{});
  }
#else
  if (in_parallel_region()) {  // nested: this thread is already one of a loop's threads
    detail::run_chunks_serially(ch, f);
    return;
  }
  thread_pool& pool = opt.pool != nullptr ? *opt.pool : thread_pool::global();
  std::uint64_t threads = static_cast<std::uint64_t>(pool.size());
  if (opt.threads > 0) threads = std::min(threads, static_cast<std::uint64_t>(opt.threads));
  threads = std::min(threads, ch.count);
  if (threads <= 1) {
    detail::run_chunks_serially(ch, f);
    return;
  }
  using job_type = detail::parallel_job<std::remove_reference_t<F> >;
  job_type job(ch, f);
  if (!detail::pool_access::try_run(pool, static_cast<int>(threads), &job_type::run, &job)) {
    detail::run_chunks_serially(ch, f);  // the pool is busy with another caller's loop
    return;
  }
  if (job.error) std::rethrow_exception(job.error);
#endif
}

}  // namespace backend_tbb / backend_std

}  // namespace kernels
QUANTO_END_NAMESPACE
