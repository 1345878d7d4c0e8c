// Matmul throughput of quanto's kernels against the machine's ceilings and a float32 baseline, all
// measured in the same run.
//
//   build-release/bench/bench_matmul [--quick] [--threads=1,2] [--json=PATH] [benchmark flags]
//
// Every row is `y = x · Wᵀ` for a Llama-3-8B projection (W is [n, k]) with a batch of m activation
// rows: quanto's kernels per qtype x activation policy x ISA, the w8a8 path, an AVX2 float32
// baseline with the kernels' structure (fp32_baseline.hpp) and OpenBLAS sgemm. Before and after the
// benchmarks the binary measures the read bandwidth and the fp32 / int8 peaks (roofline.hpp); the
// summary table gives each row as a fraction of them and as a speed-up over the float32 baseline at
// the same shape, batch and thread count. See docs/benchmarks.md ("Matmul").
//
// Own flags (removed before Google Benchmark sees the command line):
//   --quick            only 4096x4096 with m in {1, 16} (also: QUANTO_BENCH_QUICK=1)
//   --threads=LIST     thread counts, comma separated (default 1,2)
//   --shapes=LIST      weight shapes NxK, comma separated (default the Llama-3-8B ones below;
//                      MiniLM's layers: --shapes=384x384,1536x384,384x1536 --batches=24)
//   --batches=LIST     activation rows m, comma separated (default 1,4,16,64,512)
//   --json=PATH        write every row and the roofline numbers to PATH
// Defaults added unless given: --benchmark_repetitions=3 --benchmark_display_aggregates_only=true.
// Environment: QUANTO_BENCH_ROTATE_MIB (weight bytes to rotate over for m <= 16, default 256),
// QUANTO_BENCH_CACHE_MIB (weights kept between rows, default 2560), QUANTO_BENCH_BW_MIB (the
// bandwidth buffer, default 512).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <quanto/kernels/matmul.hpp>
#include <quanto/quanto.hpp>

#include "fp32_baseline.hpp"
#include "roofline.hpp"

namespace {

namespace qk = quanto::kernels;
using quanto::bfloat16;

// ---- configuration --------------------------------------------------------------------------------

struct layer_shape {
  std::int64_t n, k;  // W is [n, k]: n output features, k input features
};
// Llama-3-8B: attention projection, MLP up/gate (4096 -> 14336), MLP down (14336 -> 4096).
constexpr layer_shape kShapes[] = {{4096, 4096}, {14336, 4096}, {4096, 14336}};

struct config {
  bool quick = false;
  std::vector<int> threads{1, 2};
  std::vector<layer_shape> shapes;    // --shapes=NxK,...: replaces kShapes
  std::vector<std::int64_t> batches;  // --batches=M,...: replaces the default batches
  std::string json_path;
  int repetitions = 3;
};
config g_cfg;

std::int64_t env_mib(const char* name, std::int64_t fallback) {
  if (const char* s = std::getenv(name)) {
    const long long v = std::strtoll(s, nullptr, 10);
    if (v > 0) return v;
  }
  return fallback;
}

// ---- weights: sources, quantized sets, rotation, cache -----------------------------------------------

/// Objects kept between benchmarks (weights take seconds to quantize), least recently used first out
/// once their bytes pass the budget. Entries are shared_ptrs, so an evicted one in use stays alive.
class object_cache {
 public:
  template <class T, class Make>
  std::shared_ptr<T> get(const std::string& key, Make&& make) {
    auto it = slots_.find(key);
    if (it == slots_.end()) {
      std::shared_ptr<T> obj = make();
      it = slots_.emplace(key, slot{obj, 0, 0}).first;
    }
    it->second.stamp = ++clock_;
    return std::static_pointer_cast<T>(it->second.obj);
  }

  /// Records the bytes of `key` and evicts other entries until the total fits the budget.
  void account(const std::string& key, std::size_t bytes) {
    slots_.at(key).bytes = bytes;
    const std::size_t budget = static_cast<std::size_t>(env_mib("QUANTO_BENCH_CACHE_MIB", 2560)) << 20;
    for (;;) {
      std::size_t total = 0;
      auto oldest = slots_.end();
      for (auto it = slots_.begin(); it != slots_.end(); ++it) {
        total += it->second.bytes;
        if (it->first != key && (oldest == slots_.end() || it->second.stamp < oldest->second.stamp)) oldest = it;
      }
      if (total <= budget || oldest == slots_.end()) return;
      slots_.erase(oldest);
    }
  }

 private:
  struct slot {
    std::shared_ptr<void> obj;
    std::size_t bytes;
    std::uint64_t stamp;
  };
  std::map<std::string, slot> slots_;
  std::uint64_t clock_ = 0;
};
object_cache g_cache;

std::string shape_key(std::int64_t n, std::int64_t k) { return std::to_string(n) + "x" + std::to_string(k); }

/// Deterministic pseudo-normal values (sum of 4 uniforms), fast enough for 58M elements.
struct fast_normal {
  std::uint64_t s;
  float operator()(float sigma) noexcept {
    float sum = 0.0f;
    for (int i = 0; i < 4; ++i) {
      s += 0x9E3779B97F4A7C15ull;
      std::uint64_t z = s;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      z ^= z >> 31;
      sum += static_cast<float>(z >> 40) * (1.0f / 16777216.0f);
    }
    return (sum - 2.0f) * 1.7320508f * sigma;  // variance of the sum of 4 U(0,1) is 1/3
  }
};

/// The model weight of a shape, in bfloat16 (a trained layer's scale: sigma 0.02).
std::shared_ptr<quanto::tensor<bfloat16>> source_weight(std::int64_t n, std::int64_t k) {
  const std::string key = "src/" + shape_key(n, k);
  auto w = g_cache.get<quanto::tensor<bfloat16>>(key, [&] {
    auto t = std::make_shared<quanto::tensor<bfloat16>>(quanto::shape{n, k});
    fast_normal rng{static_cast<std::uint64_t>(n * 7919 + k)};
    for (auto& v : *t) v = bfloat16(rng(0.02f));
    return t;
  });
  g_cache.account(key, w->size() * sizeof(bfloat16));
  return w;
}

/// Copies of one weight. For memory-bound rows (m <= 16) a call uses the next copy, so the copies
/// together (>= QUANTO_BENCH_ROTATE_MIB, default 256 MiB, far past the 32 MiB L3) make every call
/// read its weight from DRAM, as in a model whose layers do not fit the cache. Compute-bound rows
/// (m >= 64) use copy 0 only: there the weight is read once per 4 activation rows from cache.
template <class W>
struct weight_set {
  std::vector<W> copies;
  std::int64_t bytes = 0;  // bytes one call streams
};

std::size_t copies_for(std::int64_t bytes, std::int64_t m) {
  if (m > 16) return 1;
  const std::int64_t target = env_mib("QUANTO_BENCH_ROTATE_MIB", 256) << 20;
  return static_cast<std::size_t>(std::max<std::int64_t>(2, (target + bytes - 1) / std::max<std::int64_t>(bytes, 1)));
}

template <class W, class Make>
std::shared_ptr<weight_set<W>> weights(const std::string& key, std::int64_t m, Make&& make) {
  auto set = g_cache.get<weight_set<W>>(key, make);
  const std::size_t want = copies_for(set->bytes, m);
  set->copies.reserve(want);
  while (set->copies.size() < want) set->copies.push_back(set->copies.front());
  g_cache.account(key, static_cast<std::size_t>(set->bytes) * set->copies.size());
  return set;
}

struct fp32_weight {
  quanto::tensor<float> w;
};

std::shared_ptr<weight_set<fp32_weight>> fp32_weights(std::int64_t n, std::int64_t k, std::int64_t m) {
  return weights<fp32_weight>("float32/" + shape_key(n, k), m, [&] {
    auto src = source_weight(n, k);
    auto set = std::make_shared<weight_set<fp32_weight>>();
    fp32_weight f{quanto::tensor<float>(quanto::shape{n, k})};
    for (std::size_t i = 0; i < src->size(); ++i) f.w[i] = quanto::to_float((*src)[i]);
    set->copies.push_back(std::move(f));
    set->bytes = n * k * static_cast<std::int64_t>(sizeof(float));
    return set;
  });
}

template <class Q>
using packed_t = decltype(qk::pack_weight(quanto::quantize_weight<Q>(std::declval<const quanto::tensor<bfloat16>&>())));

template <class Q>
std::shared_ptr<weight_set<packed_t<Q>>> quantized_weights(std::int64_t n, std::int64_t k, std::int64_t m) {
  return weights<packed_t<Q>>(std::string(Q::name) + "/" + shape_key(n, k), m, [&] {
    auto src = source_weight(n, k);
    auto set = std::make_shared<weight_set<packed_t<Q>>>();
    set->copies.push_back(qk::pack_weight(quanto::quantize_weight<Q>(*src)));
    set->bytes = set->copies.front().stream_bytes();
    return set;
  });
}

std::vector<float> activations(std::int64_t m, std::int64_t k) {
  std::vector<float> x(static_cast<std::size_t>(m * k));
  fast_normal rng{static_cast<std::uint64_t>(m * 31 + k)};
  for (auto& v : x) v = rng(1.0f);
  return x;
}

std::vector<std::int8_t> int8_activations(std::int64_t m, std::int64_t k) {
  std::vector<std::int8_t> x(static_cast<std::size_t>(m * k));
  std::mt19937 rng(static_cast<unsigned>(m * 17 + k));
  std::uniform_int_distribution<int> d(-127, 127);
  for (auto& v : x) v = static_cast<std::int8_t>(d(rng));
  return x;
}

/// The pool every quanto and baseline row runs on: as many threads as the largest count asked for.
qk::thread_pool& bench_pool() {
  static qk::thread_pool pool(*std::max_element(g_cfg.threads.begin(), g_cfg.threads.end()));
  return pool;
}

qk::parallel_options parallel(int threads) { return qk::parallel_options{threads, &bench_pool()}; }

// ---- the rows ----------------------------------------------------------------------------------------

/// What the summary needs to know about a row besides its time.
struct row_meta {
  std::string name, label, qtype, policy, isa;
  std::int64_t n = 0, k = 0, m = 0;
  int threads = 1;
  bool int8_peak = false;  // compared with the int8 dot peak (else the fp32 FMA peak)
  std::string baseline;    // the float32 baseline row at the same shape / batch / threads
};
std::vector<row_meta> g_rows;
std::map<std::string, std::size_t> g_row_index;
std::map<std::string, double> g_bytes;  // row name -> weight bytes one call streams

std::string row_name(const std::string& label, std::int64_t n, std::int64_t k, std::int64_t m, int t) {
  return label + "/n:" + std::to_string(n) + "/k:" + std::to_string(k) + "/m:" + std::to_string(m) +
         "/t:" + std::to_string(t);
}

/// Sets the per-run counters: GB/s of weight bytes and GOPS (2·m·n·k per call).
void set_counters(benchmark::State& st, const std::string& name, double bytes, std::int64_t m, std::int64_t n,
                  std::int64_t k) {
  const double it = static_cast<double>(st.iterations());
  g_bytes[name] = bytes;
  // Shown by the console as e.g. "12.3G/s": weight bytes and operations per second.
  st.counters["weight_bytes"] =
      benchmark::Counter(bytes * it, benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
  st.counters["ops"] = benchmark::Counter(2.0 * static_cast<double>(m * n) * static_cast<double>(k) * it,
                                          benchmark::Counter::kIsRate, benchmark::Counter::kIs1000);
}

template <class Sets, class Call>
void rotate(benchmark::State& st, const Sets& set, std::int64_t m, Call&& call) {
  const std::size_t copies = m > 16 ? 1 : set.copies.size();
  std::size_t i = 0;
  for (auto _ : st) {
    call(set.copies[i]);
    if (++i == copies) i = 0;
    benchmark::ClobberMemory();
  }
}

void bm_fp32(benchmark::State& st, const std::string& name, std::int64_t n, std::int64_t k, std::int64_t m, int t) {
  const auto set = fp32_weights(n, k, m);
  const auto x = activations(m, k);
  std::vector<float> y(static_cast<std::size_t>(m * n));
  const auto opt = parallel(t);
  rotate(st, *set, m, [&](const fp32_weight& w) {
    quanto_bench::fp32::gemm(w.w.data(), n, k, x.data(), m, k, y.data(), n, opt);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(st, name, static_cast<double>(set->bytes), m, n, k);
}

#if defined(QUANTO_BENCH_HAVE_OPENBLAS)
void bm_openblas(benchmark::State& st, const std::string& name, std::int64_t n, std::int64_t k, std::int64_t m, int t) {
  const auto set = fp32_weights(n, k, m);
  const auto x = activations(m, k);
  std::vector<float> y(static_cast<std::size_t>(m * n));
  quanto_bench::fp32::openblas_threads(t);
  rotate(st, *set, m, [&](const fp32_weight& w) {
    quanto_bench::fp32::sgemm_openblas(w.w.data(), n, k, x.data(), m, k, y.data(), n);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(st, name, static_cast<double>(set->bytes), m, n, k);
  // OpenBLAS's idle workers spin for a while (~0.1 s) before they sleep: let them settle so that
  // they do not take a core from the next row.
  if (t > 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
}

void bm_openblas_gemv(benchmark::State& st, const std::string& name, std::int64_t n, std::int64_t k, std::int64_t m,
                      int t) {
  const auto set = fp32_weights(n, k, m);
  const auto x = activations(m, k);
  std::vector<float> y(static_cast<std::size_t>(n));
  quanto_bench::fp32::openblas_threads(t);
  rotate(st, *set, m, [&](const fp32_weight& w) {
    quanto_bench::fp32::sgemv_openblas(w.w.data(), n, k, x.data(), y.data());
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(st, name, static_cast<double>(set->bytes), m, n, k);
  if (t > 1) std::this_thread::sleep_for(std::chrono::milliseconds(200));
}
#endif

template <class Q, class P, class I>
void bm_quanto(benchmark::State& st, const std::string& name, std::int64_t n, std::int64_t k, std::int64_t m, int t) {
  const auto set = quantized_weights<Q>(n, k, m);
  const auto x = activations(m, k);
  std::vector<float> y(static_cast<std::size_t>(m * n));
  qk::matmul_options opt;
  opt.parallel = parallel(t);
  rotate(st, *set, m, [&](const packed_t<Q>& w) {
    qk::matmul<P, I>(w, x.data(), m, k, y.data(), n, nullptr, opt);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(st, name, static_cast<double>(set->bytes), m, n, k);
}

template <class I>
void bm_w8a8(benchmark::State& st, const std::string& name, std::int64_t n, std::int64_t k, std::int64_t m, int t) {
  const auto set = quantized_weights<quanto::qint8>(n, k, m);
  const auto xq = int8_activations(m, k);
  std::vector<float> y(static_cast<std::size_t>(m * n));
  qk::matmul_options opt;
  opt.parallel = parallel(t);
  rotate(st, *set, m, [&](const packed_t<quanto::qint8>& w) {
    qk::matmul_quantized<quanto::qint8, I>(w, xq.data(), 0.01f, m, k, y.data(), n, nullptr, opt);
    benchmark::DoNotOptimize(y.data());
  });
  set_counters(st, name, static_cast<double>(set->bytes), m, n, k);
}

using bench_fn = void (*)(benchmark::State&, const std::string&, std::int64_t, std::int64_t, std::int64_t, int);

void add_row(const std::string& qtype, const std::string& policy, const std::string& isa, bool int8_peak,
             std::int64_t n, std::int64_t k, std::int64_t m, int t, bench_fn fn) {
  row_meta r;
  r.label = qtype + "." + policy + "." + isa;
  r.name = row_name(r.label, n, k, m, t);
  r.qtype = qtype;
  r.policy = policy;
  r.isa = isa;
  r.n = n;
  r.k = k;
  r.m = m;
  r.threads = t;
  r.int8_peak = int8_peak;
  r.baseline = row_name(std::string("float32.baseline.") + quanto_bench::fp32::isa_name, n, k, m, t);
  g_row_index[r.name] = g_rows.size();
  g_rows.push_back(r);
  const std::string name = r.name;
  benchmark::RegisterBenchmark(name.c_str(),
                               [=](benchmark::State& st) {
                                 try {
                                   fn(st, name, n, k, m, t);
                                 } catch (const std::exception& e) {
                                   st.SkipWithError(e.what());
                                 }
                               })
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
}

/// Rows in run order: for each shape, batch and thread count, the float32 baseline first, then
/// every candidate, OpenBLAS last (sgemm; at m = 1 also sgemv), so that each candidate runs right
/// after its baseline on the same machine state (seconds apart, not minutes).
void register_rows() {
  using quanto::qfloat8_e4m3fn;
  using quanto::qint2;
  using quanto::qint4;
  using quanto::qint8;
  using dyn = qk::dynamic_int8_activations;
  using exact = qk::exact_activations;
  std::vector<std::int64_t> batches =
      g_cfg.quick ? std::vector<std::int64_t>{1, 16} : std::vector<std::int64_t>{1, 4, 16, 64, 512};
  if (!g_cfg.batches.empty()) batches = g_cfg.batches;
  std::vector<layer_shape> shape_list(std::begin(kShapes), g_cfg.quick ? std::begin(kShapes) + 1 : std::end(kShapes));
  if (!g_cfg.shapes.empty()) shape_list = g_cfg.shapes;
  for (std::size_t s = 0; s < shape_list.size(); ++s) {
    const auto [n, k] = shape_list[s];
    for (const std::int64_t m : batches) {
      // m = 512 only for the square shape and the fast paths (the exact paths take seconds per call).
      const bool big = m == 512;
      if (big && s != 0) continue;
      for (const int t : g_cfg.threads) {
        add_row("float32", "baseline", quanto_bench::fp32::isa_name, false, n, k, m, t, bm_fp32);
        // One set of rows per SIMD ISA of core/isa.hpp's list that this build and CPU run.
        qk::for_each_isa([&](auto tag) {
          using I = decltype(tag);
          if constexpr (qk::UsableIsa<I> && !std::is_same_v<I, qk::isa::scalar>) {
            if (!qk::cpu_supports<I>()) return;
            const std::string isa(I::name);
            if (!big) add_row("qint4_g128", "exact", isa, false, n, k, m, t, bm_quanto<qint4, exact, I>);
            add_row("qint4_g128", "dynamic", isa, true, n, k, m, t, bm_quanto<qint4, dyn, I>);
            if (!big) add_row("qint2_g128", "exact", isa, false, n, k, m, t, bm_quanto<qint2, exact, I>);
            if (!big) add_row("qint2_g128", "dynamic", isa, true, n, k, m, t, bm_quanto<qint2, dyn, I>);
            if (!big) add_row("qint8", "exact", isa, false, n, k, m, t, bm_quanto<qint8, exact, I>);
            add_row("qint8", "dynamic", isa, true, n, k, m, t, bm_quanto<qint8, dyn, I>);
            if (!big) add_row("qfloat8_e4m3fn", "exact", isa, false, n, k, m, t, bm_quanto<qfloat8_e4m3fn, exact, I>);
            add_row("qint8", "w8a8", isa, true, n, k, m, t, bm_w8a8<I>);
          }
        });
#if defined(QUANTO_BENCH_HAVE_OPENBLAS)
        add_row("float32", "sgemm", "openblas", false, n, k, m, t, bm_openblas);
        if (m == 1) add_row("float32", "sgemv", "openblas", false, n, k, m, t, bm_openblas_gemv);
#endif
      }
    }
  }
}

// ---- roofline ----------------------------------------------------------------------------------------

std::vector<quanto_bench::roofline::ceilings> g_roof_start, g_roof_end;

std::vector<quanto_bench::roofline::ceilings> measure_roofline(const char* when) {
  std::vector<quanto_bench::roofline::ceilings> out;
  std::printf("roofline (%s of run, %zu MiB read buffer):\n", when, quanto_bench::roofline::buffer_bytes() >> 20);
  for (const int t : g_cfg.threads) {
    out.push_back(quanto_bench::roofline::measure(t));
    const auto& c = out.back();
    std::printf(
        "  threads %d: read %.2f GB/s (%d streams x %zu B rows, prefetch %zu), fp32 FMA %.1f GFLOP/s, "
        "int8 dot (maddubs+madd+add) %.1f GOPS, maddubs alone %.1f GOPS\n",
        t, c.read_gbps, c.read_best.streams, c.read_best.row, c.read_best.prefetch, c.fp32_gflops, c.int8_gops,
        c.maddubs_gops);
  }
  std::fflush(stdout);
  return out;
}

/// The ceiling a fraction is taken of: the larger of the two measurements (noise only lowers them).
quanto_bench::roofline::ceilings ceiling(int threads) {
  quanto_bench::roofline::ceilings c;
  c.threads = threads;
  for (const auto* v : {&g_roof_start, &g_roof_end})
    for (const auto& r : *v)
      if (r.threads == threads) {
        if (r.read_gbps > c.read_gbps) {
          c.read_gbps = r.read_gbps;
          c.read_best = r.read_best;
        }
        c.fp32_gflops = std::max(c.fp32_gflops, r.fp32_gflops);
        c.int8_gops = std::max(c.int8_gops, r.int8_gops);
        c.maddubs_gops = std::max(c.maddubs_gops, r.maddubs_gops);
      }
  return c;
}

// ---- summary -----------------------------------------------------------------------------------------

double median(std::vector<double> v) {
  if (v.empty()) return std::nan("");
  std::sort(v.begin(), v.end());
  const std::size_t h = v.size() / 2;
  return v.size() % 2 ? v[h] : 0.5 * (v[h - 1] + v[h]);
}

double unit_seconds(benchmark::TimeUnit u) {
  switch (u) {
    case benchmark::kNanosecond:
      return 1e-9;
    case benchmark::kMicrosecond:
      return 1e-6;
    case benchmark::kMillisecond:
      return 1e-3;
    default:
      return 1.0;
  }
}

struct result {
  const row_meta* meta = nullptr;
  int repetitions = 0;
  double seconds = 0, gbps = 0, bw_fraction = 0, gops = 0, peak_fraction = 0, speedup = 0;
};

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0) {
      const auto p = line.find(':');
      return p == std::string::npos ? line : line.substr(p + 2);
    }
  return "unknown";
}

/// Prints the runs as the console reporter does, keeps their times, and at the end measures the
/// roofline again and prints (and writes, with --json) the summary.
class MatmulReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const std::string name = r.run_name.function_name;
      if (r.run_type == Run::RT_Iteration) {
        if (r.iterations > 0) samples_[name].push_back(r.real_accumulated_time / static_cast<double>(r.iterations));
      } else if (r.aggregate_name == "median") {
        medians_[name] = r.GetAdjustedRealTime() * unit_seconds(r.time_unit);
      }
    }
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    if (samples_.empty() && medians_.empty()) return;
    std::printf("\n");
    g_roof_end = measure_roofline("end");
    std::map<std::string, double> secs;
    std::map<std::string, int> reps;
    for (const auto& [name, v] : samples_) {
      secs[name] = median(v);
      reps[name] = static_cast<int>(v.size());
    }
    for (const auto& [name, s] : medians_)
      if (!secs.count(name)) secs[name] = s;
    std::vector<result> rows;
    for (const row_meta& meta : g_rows) {
      const auto it = secs.find(meta.name);
      if (it == secs.end()) continue;
      result r;
      r.meta = &meta;
      r.repetitions = reps.count(meta.name) ? reps[meta.name] : g_cfg.repetitions;
      r.seconds = it->second;
      const auto c = ceiling(meta.threads);
      r.gbps = g_bytes[meta.name] / r.seconds / 1e9;
      r.bw_fraction = c.read_gbps > 0 ? r.gbps / c.read_gbps : std::nan("");
      r.gops = 2.0 * static_cast<double>(meta.m * meta.n) * static_cast<double>(meta.k) / r.seconds / 1e9;
      const double peak = meta.int8_peak ? c.int8_gops : c.fp32_gflops;
      r.peak_fraction = peak > 0 ? r.gops / peak : std::nan("");
      const auto b = secs.find(meta.baseline);
      r.speedup = b == secs.end() ? std::nan("") : b->second / r.seconds;
      rows.push_back(r);
    }
    print(rows);
    if (!g_cfg.json_path.empty()) write_json(rows);
  }

 private:
  static void print(const std::vector<result>& rows) {
    std::printf(
        "\nmedian of each row's repetitions; bw = fraction of the read bandwidth, peak = fraction of the\n"
        "fp32 FMA peak (exact, float32) or of the int8 dot peak (dynamic, w8a8), x fp32 = speed-up over\n"
        "the float32 baseline at the same shape, batch and threads\n\n");
    std::printf("%-34s %6s %6s %4s %2s %10s %8s %6s %8s %6s %8s\n", "row", "n", "k", "m", "t", "ms", "GB/s", "bw",
                "GOPS", "peak", "x fp32");
    for (const auto& r : rows) {
      const row_meta& m = *r.meta;
      std::printf("%-34s %6lld %6lld %4lld %2d %10.3f %8.2f %6.3f %8.2f %6.3f %8.3f\n", m.label.c_str(),
                  static_cast<long long>(m.n), static_cast<long long>(m.k), static_cast<long long>(m.m), m.threads,
                  r.seconds * 1e3, r.gbps, r.bw_fraction, r.gops, r.peak_fraction, r.speedup);
    }
    std::fflush(stdout);
  }

  static void write_roofline(std::ostream& o, const std::vector<quanto_bench::roofline::ceilings>& v) {
    o << "[";
    for (std::size_t i = 0; i < v.size(); ++i) {
      const auto& c = v[i];
      o << (i ? ", " : "") << "{\"threads\": " << c.threads << ", \"read_gbps\": " << json_number(c.read_gbps)
        << ", \"read_streams\": " << c.read_best.streams << ", \"read_row_bytes\": " << c.read_best.row
        << ", \"read_prefetch\": " << c.read_best.prefetch << ", \"fp32_gflops\": " << json_number(c.fp32_gflops)
        << ", \"int8_gops\": " << json_number(c.int8_gops) << ", \"int8_maddubs_gops\": " << json_number(c.maddubs_gops)
        << "}";
    }
    o << "]";
  }

  static void write_json(const std::vector<result>& rows) {
    std::ofstream o(g_cfg.json_path);
    if (!o) {
      std::fprintf(stderr, "bench_matmul: cannot write %s\n", g_cfg.json_path.c_str());
      return;
    }
    char date[32];
    const std::time_t now = std::time(nullptr);
    std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", std::localtime(&now));
    std::vector<quanto_bench::roofline::ceilings> used;
    for (const int t : g_cfg.threads) used.push_back(ceiling(t));
    o << "{\n  \"context\": {\"date\": \"" << date << "\", \"cpu\": \"" << cpu_model()
      << "\", \"hardware_threads\": " << std::thread::hardware_concurrency()
      << ", \"quick\": " << (g_cfg.quick ? "true" : "false")
      << ", \"rotate_mib\": " << env_mib("QUANTO_BENCH_ROTATE_MIB", 256)
      << ", \"bw_buffer_mib\": " << (quanto_bench::roofline::buffer_bytes() >> 20)
      << ", \"openblas\": " << (quanto_bench::fp32::have_openblas ? "true" : "false") << ", \"parallel_backend\": \""
      << qk::parallel_backend() << "\"},\n";
    o << "  \"roofline\": {\"start\": ";
    write_roofline(o, g_roof_start);
    o << ", \"end\": ";
    write_roofline(o, g_roof_end);
    o << ", \"used\": ";
    write_roofline(o, used);
    o << "},\n  \"rows\": [\n";
    for (std::size_t i = 0; i < rows.size(); ++i) {
      const auto& r = rows[i];
      const row_meta& m = *r.meta;
      o << "    {\"name\": \"" << m.name << "\", \"qtype\": \"" << m.qtype << "\", \"policy\": \"" << m.policy
        << "\", \"isa\": \"" << m.isa << "\", \"n\": " << m.n << ", \"k\": " << m.k << ", \"m\": " << m.m
        << ", \"threads\": " << m.threads << ", \"repetitions\": " << r.repetitions
        << ", \"seconds\": " << json_number(r.seconds) << ", \"weight_bytes\": " << json_number(g_bytes[m.name])
        << ", \"gbps\": " << json_number(r.gbps) << ", \"bw_fraction\": " << json_number(r.bw_fraction)
        << ", \"gops\": " << json_number(r.gops) << ", \"peak\": \"" << (m.int8_peak ? "int8" : "fp32")
        << "\", \"peak_fraction\": " << json_number(r.peak_fraction)
        << ", \"speedup_vs_fp32\": " << json_number(r.speedup) << "}" << (i + 1 < rows.size() ? "," : "") << "\n";
    }
    o << "  ]\n}\n";
    std::printf("wrote %s\n", g_cfg.json_path.c_str());
  }

  std::map<std::string, std::vector<double>> samples_;
  std::map<std::string, double> medians_;
};

// ---- command line ------------------------------------------------------------------------------------

bool starts_with(const char* s, const char* prefix) { return std::strncmp(s, prefix, std::strlen(prefix)) == 0; }

/// A positive decimal integer, the whole of `text` (else invalid_argument naming `flag`).
std::int64_t positive(const char* flag, const std::string& text) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v <= 0)
    throw std::invalid_argument(std::string(flag) + ": '" + text + "' is not a positive integer");
  return v;
}

/// Calls f(item) for each item of a comma-separated, non-empty list.
template <class F>
void for_each_item(const char* flag, const char* list, F f) {
  std::stringstream ss(list);
  std::string item;
  bool any = false;
  while (std::getline(ss, item, ',')) {
    f(item);
    any = true;
  }
  if (!any) throw std::invalid_argument(std::string(flag) + ": empty list");
}

/// Takes our own flags out of argv and adds the default repetitions; returns the new argv.
std::vector<char*> parse_args(int argc, char** argv, std::vector<std::string>& storage) {
  if (const char* q = std::getenv("QUANTO_BENCH_QUICK"); q && *q && std::strcmp(q, "0") != 0) g_cfg.quick = true;
  std::vector<char*> out{argv[0]};
  bool reps = false, display = false;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    if (std::strcmp(a, "--quick") == 0) {
      g_cfg.quick = true;
    } else if (starts_with(a, "--json=")) {
      g_cfg.json_path = a + 7;
    } else if (starts_with(a, "--shapes=")) {  // e.g. 384x384,1536x384 (n x k)
      for_each_item("--shapes", a + 9, [](const std::string& item) {
        const std::size_t x = item.find('x');
        if (x == std::string::npos) throw std::invalid_argument("--shapes: '" + item + "' is not NxK");
        g_cfg.shapes.push_back({positive("--shapes", item.substr(0, x)), positive("--shapes", item.substr(x + 1))});
      });
    } else if (starts_with(a, "--batches=")) {
      for_each_item("--batches", a + 10,
                    [](const std::string& item) { g_cfg.batches.push_back(positive("--batches", item)); });
    } else if (starts_with(a, "--threads=")) {
      g_cfg.threads.clear();
      for_each_item("--threads", a + 10, [](const std::string& item) {
        g_cfg.threads.push_back(static_cast<int>(std::min<std::int64_t>(positive("--threads", item), 1024)));
      });
    } else {
      if (starts_with(a, "--benchmark_repetitions=")) {
        reps = true;
        g_cfg.repetitions = std::max(1, std::atoi(a + 24));
      }
      if (starts_with(a, "--benchmark_display_aggregates_only") || starts_with(a, "--benchmark_report_aggregates_only"))
        display = true;
#if defined(QUANTO_BENCH_MIN_TIME_PLAIN_SECONDS)
      // This Google Benchmark wants a plain number of seconds: accept the newer "0.05s" spelling too.
      if (starts_with(a, "--benchmark_min_time=") && a[std::strlen(a) - 1] == 's') {
        storage.emplace_back(a, std::strlen(a) - 1);
        continue;
      }
#endif
      out.push_back(argv[i]);
    }
  }
  if (!reps) storage.push_back("--benchmark_repetitions=" + std::to_string(g_cfg.repetitions));
  if (!display) storage.push_back("--benchmark_display_aggregates_only=true");
  for (auto& s : storage) out.push_back(s.data());
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> storage;
  std::vector<char*> args;
  try {
    args = parse_args(argc, argv, storage);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_matmul: %s\n", e.what());
    return 2;
  }
  int n = static_cast<int>(args.size());
  args.push_back(nullptr);
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  register_rows();
  bool listing = false;
  for (int i = 1; i < n; ++i)
    listing = listing || starts_with(args[static_cast<std::size_t>(i)], "--benchmark_list_tests");
  if (!listing) g_roof_start = measure_roofline("start");
  MatmulReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
