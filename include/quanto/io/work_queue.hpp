// quanto/io/work_queue.hpp: the model writer's workers: jobs with a cost (the input bytes they
// hold while they run) under a memory budget, on threads of their own.
//
// Why not kernels/parallel.hpp's `parallel_for`, which has the dynamic chunk taking and the
// first-exception rule this needs: its threads run every `parallel_for` they start serially (a
// thread that runs chunks is "in a parallel region"; with oneTBB a blocked task holds a worker of
// the shared arena), and a `parallel_for` that finds its pool busy with another caller runs
// serially too. A module job calls `quantize_weight`, whose quantizers are `parallel_for` loops on
// the global pool. Here the workers are plain threads outside any parallel region, so the job that
// runs alone under the memory budget (the default budget is twice the largest weight: one or two of
// the largest modules at a time) still quantizes on the pool's threads; as chunks of a
// `parallel_for` each such job would run on one thread while the others wait for budget. The jobs
// also block while they wait for budget, which a `parallel_for` chunk should not do.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io::detail {

/// Runs jobs 0..n-1 on `threads` workers; a job of cost c waits until the running jobs' costs
/// plus c fit in `budget` (or nothing else runs). The first exception stops the rest and is
/// rethrown.
template <class Job>
void run_jobs(std::size_t n, unsigned threads, std::uint64_t budget, const std::vector<std::uint64_t>& cost,
              Job&& job) {
  std::mutex mutex;
  std::condition_variable cv;
  std::uint64_t in_flight = 0;
  std::size_t running = 0, next = 0;
  std::exception_ptr failure;
  const auto worker = [&] {
    for (;;) {
      std::size_t i;
      {
        std::unique_lock lock(mutex);
        if (failure || next == n) return;
        i = next++;
        cv.wait(lock, [&] { return failure || running == 0 || in_flight + cost[i] <= budget; });
        if (failure) return;
        in_flight += cost[i];
        ++running;
      }
      try {
        job(i);
      } catch (...) {
        const std::lock_guard lock(mutex);
        if (!failure) failure = std::current_exception();
      }
      {
        const std::lock_guard lock(mutex);
        in_flight -= cost[i];
        --running;
      }
      cv.notify_all();
    }
  };
  const unsigned t = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(std::max<std::size_t>(n, 1))));
  std::vector<std::thread> pool;
  pool.reserve(t - 1);
  for (unsigned k = 1; k < t; ++k) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
}

}  // namespace io::detail
QUANTO_END_NAMESPACE
