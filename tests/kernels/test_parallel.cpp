// Tests of quanto/core/parallel.hpp. Built twice: test_parallel (quanto's thread pool) and, when
// oneTBB is found, test_parallel_tbb (QUANTO_USE_TBB, via quanto::tbb).
#include "quanto/core/parallel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

namespace qk = quanto::kernels;
using chunk = std::pair<std::int64_t, std::int64_t>;

#if defined(QUANTO_USE_TBB)
constexpr bool kTbb = true;
#else
constexpr bool kTbb = false;
#endif

// Runs parallel_for and returns the chunks it made, sorted.
std::vector<chunk> record_chunks(std::int64_t begin, std::int64_t end, std::int64_t grain, qk::parallel_options opt) {
  std::mutex m;
  std::vector<chunk> chunks;
  qk::parallel_for(
      begin, end, grain,
      [&](std::int64_t lo, std::int64_t hi) {
        std::lock_guard<std::mutex> lock(m);
        chunks.emplace_back(lo, hi);
      },
      opt);
  std::sort(chunks.begin(), chunks.end());
  return chunks;
}

// The chunks parallel_for must make: [begin + k*grain, min(begin + (k+1)*grain, end)).
std::vector<chunk> expected_chunks(std::int64_t begin, std::int64_t end, std::int64_t grain) {
  std::vector<chunk> out;
  if (grain <= 0) grain = 1;
  for (std::int64_t lo = begin; lo < end; lo = (end - lo > grain ? lo + grain : end))
    out.emplace_back(lo, end - lo > grain ? lo + grain : end);
  return out;
}

struct range_case {
  std::int64_t begin, end, grain;
};

const std::vector<range_case>& range_cases() {
  static const std::vector<range_case> cases = {
      {0, 0, 1},      {5, 3, 1},      {0, 1, 1},    {0, 1, 100}, {0, 10, 1},
      {0, 10, 3},     {0, 10, 10},    {0, 10, 11},  {-7, 13, 4}, {0, 1000, 1},
      {0, 1000, 7},   {3, 1003, 64},  {0, 1000, 0}, {0, 37, -5}, {0, 1000, std::numeric_limits<std::int64_t>::max()},
      {-1000, -1, 3}, {0, 4096, 512},
  };
  return cases;
}

std::string describe(const range_case& c, int threads) {
  return "[" + std::to_string(c.begin) + ", " + std::to_string(c.end) + ") grain " + std::to_string(c.grain) +
         " threads " + std::to_string(threads);
}

// ---- coverage -----------------------------------------------------------------------------------

TEST(ParallelFor, EveryIndexExactlyOnce) {
  qk::thread_pool pool(8);
  for (const auto& c : range_cases()) {
    for (int threads : {0, 1, 2, 3, 8}) {
      for (qk::thread_pool* p : {static_cast<qk::thread_pool*>(nullptr), &pool}) {
        const std::int64_t n = std::max<std::int64_t>(c.end - c.begin, 0);
        std::unique_ptr<std::atomic<int>[]> hits(new std::atomic<int>[static_cast<std::size_t>(n)]);
        for (std::int64_t i = 0; i < n; ++i) hits[static_cast<std::size_t>(i)] = 0;
        std::atomic<int> calls{0};
        qk::parallel_for(c.begin, c.end, c.grain,
                         [&](std::int64_t lo, std::int64_t hi) {
                           calls.fetch_add(1);
                           for (std::int64_t i = lo; i < hi; ++i)
                             hits[static_cast<std::size_t>(i - c.begin)].fetch_add(1);
                         },
                         {threads, p});
        for (std::int64_t i = 0; i < n; ++i)
          ASSERT_EQ(hits[static_cast<std::size_t>(i)].load(), 1) << describe(c, threads) << " index " << c.begin + i;
        EXPECT_EQ(calls.load(), qk::chunk_count(c.begin, c.end, c.grain)) << describe(c, threads);
      }
    }
  }
}

TEST(ParallelFor, EmptyRangeCallsNothing) {
  bool called = false;
  qk::parallel_for(0, 0, 1, [&](std::int64_t, std::int64_t) { called = true; });
  qk::parallel_for(10, -10, 1, [&](std::int64_t, std::int64_t) { called = true; });
  EXPECT_FALSE(called);
  EXPECT_EQ(qk::chunk_count(0, 0, 1), 0);
  EXPECT_EQ(qk::chunk_count(10, -10, 1), 0);
}

TEST(ParallelFor, ChunkCount) {
  EXPECT_EQ(qk::chunk_count(0, 1, 1), 1);
  EXPECT_EQ(qk::chunk_count(0, 10, 3), 4);
  EXPECT_EQ(qk::chunk_count(0, 9, 3), 3);
  EXPECT_EQ(qk::chunk_count(0, 10, 0), 10);
  EXPECT_EQ(qk::chunk_count(0, 10, -1), 10);
  EXPECT_EQ(qk::chunk_count(0, 10, std::numeric_limits<std::int64_t>::max()), 1);
  static_assert(qk::chunk_count(-7, 13, 4) == 5);
}

// The whole int64 range: end - begin does not fit an int64, the chunking must not overflow.
TEST(ParallelFor, FullInt64Range) {
  constexpr std::int64_t lo = std::numeric_limits<std::int64_t>::min();
  constexpr std::int64_t hi = std::numeric_limits<std::int64_t>::max();
  constexpr std::int64_t grain = std::int64_t{1} << 62;
  qk::thread_pool pool(3);
  const auto chunks = record_chunks(lo, hi, grain, {0, &pool});
  const std::vector<chunk> expected = {{lo, lo + grain}, {lo + grain, 0}, {0, grain}, {grain, hi}};
  EXPECT_EQ(chunks, expected);
  EXPECT_EQ(qk::chunk_count(lo, hi, grain), 4);
}

// ---- determinism: chunk boundaries do not depend on the thread count ---------------------------

TEST(ParallelFor, ChunkBoundariesIndependentOfThreads) {
  qk::thread_pool pool(8);
  for (const auto& c : range_cases()) {
    const auto expected = expected_chunks(c.begin, c.end, c.grain);
    for (int threads : {1, 2, 3, 8}) {
      EXPECT_EQ(record_chunks(c.begin, c.end, c.grain, {threads, &pool}), expected) << describe(c, threads);
      EXPECT_EQ(record_chunks(c.begin, c.end, c.grain, {threads, nullptr}), expected) << describe(c, threads);
    }
  }
}

// A reduction with one partial per chunk, added in chunk order, gives the same bits for any thread
// count: the pattern the kernels use.
TEST(ParallelFor, PerChunkReductionIsBitIdentical) {
  constexpr std::int64_t n = 100003, grain = 1000;
  std::vector<float> x(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) x[static_cast<std::size_t>(i)] = 1.0f / static_cast<float>(i + 1);
  qk::thread_pool pool(8);
  auto sum = [&](int threads) {
    std::vector<float> partial(static_cast<std::size_t>(qk::chunk_count(0, n, grain)));
    qk::parallel_for(0, n, grain,
                     [&](std::int64_t lo, std::int64_t hi) {
                       float s = 0.0f;
                       for (std::int64_t i = lo; i < hi; ++i) s += x[static_cast<std::size_t>(i)];
                       partial[static_cast<std::size_t>(lo / grain)] = s;
                     },
                     {threads, &pool});
    float total = 0.0f;
    for (float p : partial) total += p;
    return total;
  };
  const float one = sum(1);
  for (int threads : {0, 2, 3, 8}) EXPECT_EQ(sum(threads), one) << threads;
}

// ---- threads -------------------------------------------------------------------------------------

TEST(ParallelFor, UsesSeveralThreadsAndRespectsTheLimit) {
  qk::thread_pool pool(4);
  for (int threads : {0, 2, 3}) {
    std::mutex m;
    std::set<std::thread::id> ids;
    qk::parallel_for(0, 64, 1,
                     [&](std::int64_t, std::int64_t) {
                       std::this_thread::sleep_for(std::chrono::milliseconds(2));
                       std::lock_guard<std::mutex> lock(m);
                       ids.insert(std::this_thread::get_id());
                     },
                     {threads, &pool});
    EXPECT_GE(ids.size(), 2u) << "threads " << threads;  // 64 chunks of 2 ms: the helpers wake up
    if (threads > 0) {
      EXPECT_LE(ids.size(), static_cast<std::size_t>(threads)) << "threads " << threads;
    }
    if (!kTbb && threads == 0) {
      EXPECT_LE(ids.size(), 4u);
    }
  }
}

TEST(ParallelFor, OneThreadRunsOnTheCaller) {
  const auto me = std::this_thread::get_id();
  std::atomic<int> elsewhere{0};
  std::vector<std::int64_t> order;
  qk::parallel_for(0, 100, 7,
                   [&](std::int64_t lo, std::int64_t) {
                     if (std::this_thread::get_id() != me) elsewhere.fetch_add(1);
                     order.push_back(lo);  // no lock: one thread only
                   },
                   {1, nullptr});
  EXPECT_EQ(elsewhere.load(), 0);
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));  // serially, in chunk order
  EXPECT_EQ(order.size(), 15u);
}

TEST(ThreadPool, SizeOne) {
  qk::thread_pool pool(1);
  EXPECT_EQ(pool.size(), 1);
  const auto me = std::this_thread::get_id();
  std::atomic<int> elsewhere{0}, sum{0};
  qk::parallel_for(0, 1000, 3,
                   [&](std::int64_t lo, std::int64_t hi) {
                     if (std::this_thread::get_id() != me) elsewhere.fetch_add(1);
                     for (std::int64_t i = lo; i < hi; ++i) sum.fetch_add(static_cast<int>(i));
                   },
                   {0, &pool});
  if (!kTbb) {
    EXPECT_EQ(elsewhere.load(), 0);  // oneTBB ignores the pool
  }
  EXPECT_EQ(sum.load(), 999 * 1000 / 2);
}

TEST(ThreadPool, SizeBelowOneMeansOne) {
  EXPECT_EQ(qk::thread_pool(0).size(), 1);
  EXPECT_EQ(qk::thread_pool(-3).size(), 1);
  EXPECT_EQ(qk::thread_pool(5).size(), 5);
}

TEST(ThreadPool, CreateAndDestroyRepeatedly) {
  for (int round = 0; round < 20; ++round) {
    qk::thread_pool pool(1 + round % 5);
    std::atomic<std::int64_t> sum{0};
    qk::parallel_for(0, 100, 1, [&](std::int64_t lo, std::int64_t) { sum.fetch_add(lo); }, {0, &pool});
    EXPECT_EQ(sum.load(), 99 * 100 / 2);
  }
  qk::thread_pool unused(4);  // destroyed without ever running a job
}

TEST(ThreadPool, GlobalSize) {
  // ctest also runs this test with QUANTO_NUM_THREADS=3 (test_parallel_env).
  const int from_env = qk::detail::threads_from_env(std::getenv("QUANTO_NUM_THREADS"));
  const unsigned hw = std::thread::hardware_concurrency();
  const int expected = from_env > 0 ? from_env : (hw == 0 ? 1 : static_cast<int>(hw));
  EXPECT_EQ(qk::thread_pool::global().size(), expected);
  EXPECT_EQ(&qk::thread_pool::global(), &qk::thread_pool::global());
}

TEST(ThreadPool, ThreadsFromEnv) {
  using qk::detail::threads_from_env;
  EXPECT_EQ(threads_from_env(nullptr), 0);
  EXPECT_EQ(threads_from_env(""), 0);
  EXPECT_EQ(threads_from_env("   "), 0);
  EXPECT_EQ(threads_from_env("1"), 1);
  EXPECT_EQ(threads_from_env("4"), 4);
  EXPECT_EQ(threads_from_env("64"), 64);
  EXPECT_EQ(threads_from_env(" 8\n"), 8);
  EXPECT_EQ(threads_from_env("007"), 7);
  EXPECT_EQ(threads_from_env("0"), 0);
  EXPECT_EQ(threads_from_env("-2"), 0);
  EXPECT_EQ(threads_from_env("+3"), 0);
  EXPECT_EQ(threads_from_env("abc"), 0);
  EXPECT_EQ(threads_from_env("4x"), 0);
  EXPECT_EQ(threads_from_env("4 4"), 0);
  EXPECT_EQ(threads_from_env("2.5"), 0);
  EXPECT_EQ(threads_from_env("99999999999999999999"), 0);
}

// ---- exceptions ----------------------------------------------------------------------------------

TEST(ParallelFor, ExceptionPropagatesAndPoolStillWorks) {
  qk::thread_pool pool(4);
  for (int threads : {0, 1, 2, 4}) {
    try {
      qk::parallel_for(0, 100, 1,
                       [&](std::int64_t lo, std::int64_t) {
                         if (lo == 17) throw std::runtime_error("chunk 17");
                       },
                       {threads, &pool});
      ADD_FAILURE() << "no exception, threads " << threads;
    } catch (const std::runtime_error& e) {
      EXPECT_STREQ(e.what(), "chunk 17");
    }
    EXPECT_FALSE(qk::in_parallel_region());

    // the same pool afterwards
    std::atomic<std::int64_t> sum{0};
    qk::parallel_for(0, 1000, 9,
                     [&](std::int64_t lo, std::int64_t hi) {
                       for (std::int64_t i = lo; i < hi; ++i) sum.fetch_add(i);
                     },
                     {threads, &pool});
    EXPECT_EQ(sum.load(), 999 * 1000 / 2) << "threads " << threads;
  }
}

TEST(ParallelFor, FirstOfManyExceptionsAndNoChunkOutlivesTheCall) {
  qk::thread_pool pool(4);
  std::atomic<int> started{0}, finished{0};
  try {
    qk::parallel_for(0, 1000, 1,
                     [&](std::int64_t lo, std::int64_t) {
                       started.fetch_add(1);
                       std::this_thread::sleep_for(std::chrono::milliseconds(1));
                       finished.fetch_add(1);
                       throw std::out_of_range("chunk " + std::to_string(lo));
                     },
                     {0, &pool});
    ADD_FAILURE() << "no exception";
  } catch (const std::out_of_range& e) {
    EXPECT_EQ(std::string(e.what()).rfind("chunk ", 0), 0u);
  }
  const int done = finished.load();
  EXPECT_EQ(started.load(), done);  // every chunk that started had returned before the rethrow
  EXPECT_LT(done, 1000);            // the rest were abandoned
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(finished.load(), done);  // and nothing runs afterwards
}

TEST(ParallelFor, ExceptionOnGlobalPool) {
  EXPECT_THROW(qk::parallel_for(0, 64, 1,
                                [](std::int64_t lo, std::int64_t) {
                                  if (lo % 5 == 3) throw std::logic_error("x");
                                }),
               std::logic_error);
  std::atomic<int> n{0};
  qk::parallel_for(0, 64, 1, [&](std::int64_t, std::int64_t) { n.fetch_add(1); });
  EXPECT_EQ(n.load(), 64);
}

// ---- nesting -------------------------------------------------------------------------------------

TEST(ParallelFor, NestedRunsSeriallyInsideARegion) {
  EXPECT_FALSE(qk::in_parallel_region());
  qk::thread_pool pool(4);
  constexpr int outer = 8, inner = 50;
  std::atomic<int> outside_region{0}, moved_thread{0}, inner_hits{0};
  qk::parallel_for(0, outer, 1,
                   [&](std::int64_t, std::int64_t) {
                     if (!qk::in_parallel_region()) outside_region.fetch_add(1);
                     const auto me = std::this_thread::get_id();
                     qk::parallel_for(0, inner, 1,
                                      [&](std::int64_t, std::int64_t) {
                                        if (!qk::in_parallel_region()) outside_region.fetch_add(1);
                                        if (std::this_thread::get_id() != me) moved_thread.fetch_add(1);
                                        inner_hits.fetch_add(1);
                                      },
                                      {0, &pool});
                     if (!qk::in_parallel_region()) outside_region.fetch_add(1);  // restored after the inner loop
                   },
                   {0, &pool});
  EXPECT_FALSE(qk::in_parallel_region());
  EXPECT_EQ(outside_region.load(), 0);
  EXPECT_EQ(inner_hits.load(), outer * inner);
  if (!kTbb) {
    EXPECT_EQ(moved_thread.load(), 0);  // oneTBB may run nested chunks elsewhere
  }
}

TEST(ParallelFor, NestedOnAnotherPoolIsSerialToo) {
  if (kTbb) GTEST_SKIP() << "oneTBB schedules nested loops itself";
  qk::thread_pool a(3), b(3);
  std::atomic<int> moved_thread{0}, hits{0};
  qk::parallel_for(0, 6, 1,
                   [&](std::int64_t, std::int64_t) {
                     const auto me = std::this_thread::get_id();
                     qk::parallel_for(0, 20, 1,
                                      [&](std::int64_t, std::int64_t) {
                                        if (std::this_thread::get_id() != me) moved_thread.fetch_add(1);
                                        hits.fetch_add(1);
                                      },
                                      {0, &b});
                   },
                   {0, &a});
  EXPECT_EQ(moved_thread.load(), 0);
  EXPECT_EQ(hits.load(), 120);
}

// ---- several external callers --------------------------------------------------------------------

TEST(ParallelFor, ConcurrentCallersDoNotDeadlock) {
  qk::thread_pool pool(4);
  for (qk::thread_pool* p : {&pool, static_cast<qk::thread_pool*>(nullptr)}) {
    constexpr int callers = 4, rounds = 200;
    std::atomic<int> wrong{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < callers; ++t) {
      threads.emplace_back([&, t] {
        for (int r = 0; r < rounds; ++r) {
          std::atomic<std::int64_t> sum{0};
          const std::int64_t n = 100 + 37 * t + r;
          qk::parallel_for(0, n, 1 + r % 9,
                           [&](std::int64_t lo, std::int64_t hi) {
                             for (std::int64_t i = lo; i < hi; ++i) sum.fetch_add(i);
                           },
                           {r % 3, p});
          if (sum.load() != n * (n - 1) / 2) wrong.fetch_add(1);
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(wrong.load(), 0);
  }
}

TEST(ParallelFor, ConcurrentCallersWithExceptions) {
  qk::thread_pool pool(3);
  std::atomic<int> caught{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&] {
      for (int r = 0; r < 50; ++r) {
        try {
          qk::parallel_for(0, 40, 1,
                           [&](std::int64_t lo, std::int64_t) {
                             if (lo == r % 40) throw std::runtime_error("boom");
                           },
                           {0, &pool});
        } catch (const std::runtime_error&) {
          caught.fetch_add(1);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(caught.load(), 150);
}

TEST(ParallelFor, ManySmallChunks) {
  qk::thread_pool pool(4);
  std::atomic<std::int64_t> sum{0};
  constexpr std::int64_t n = 200000;
  qk::parallel_for(0, n, 1, [&](std::int64_t lo, std::int64_t hi) { sum.fetch_add(hi - lo); }, {0, &pool});
  EXPECT_EQ(sum.load(), n);
}

TEST(ParallelFor, AcceptsConstAndMutableCallables) {
  std::atomic<int> n{0};
  const auto c = [&](std::int64_t, std::int64_t) { n.fetch_add(1); };
  qk::parallel_for(0, 10, 1, c);
  struct counter {
    std::atomic<int>* n;
    void operator()(std::int64_t, std::int64_t) { n->fetch_add(1); }
  } m{&n};
  qk::parallel_for(0, 10, 1, m);
  qk::parallel_for(0, 10, 1, counter{&n});
  EXPECT_EQ(n.load(), 30);
}

TEST(ParallelFor, Backend) { EXPECT_EQ(qk::parallel_backend(), kTbb ? "tbb" : "std"); }

}  // namespace
