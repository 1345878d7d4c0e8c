// Quantize / dequantize throughput per qtype and model dtype, in GB/s of float data, printed
// beside a plain memory copy of the same bytes measured in the same run: the ratio is the figure.
// The argument of each row is the thread count (the library's pool; 1 = the calling thread).
// Built as bench_quantize_ggml (when QUANTO_GGML_DIR finds llama.cpp's ggml, e.g. the one
// `pip install llama-cpp-python` builds), the same rows run beside ggml's own quantizers
// (`ggml_quantize_chunk`, what llama-quantize calls, Q4_0 and Q8_0 from float32) and a third
// column gives each row's element rate over ggml's (Q8_0 for the 8-bit rows, Q4_0 for the others).
//
//   build-release/bench/bench_quantize [--benchmark_filter=...]
//   build-release/bench/bench_quantize_ggml --benchmark_repetitions=5
//       --benchmark_enable_random_interleaving=true    (one line: medians of interleaved rounds)
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <quanto/quanto.hpp>

#if defined(QUANTO_BENCH_HAVE_GGML)
#include <ggml.h>
#endif

namespace {

constexpr std::int64_t kOut = 4096, kIn = 4096;  // a Llama-3-8B attention projection

template <class T>
const quanto::tensor<T>& weight() {
  static const quanto::tensor<T> w = [] {
    quanto::tensor<T> t(quanto::shape{kOut, kIn});
    std::mt19937 rng(1);
    std::normal_distribution<float> n(0.0f, 0.02f);
    for (auto& x : t) x = T(n(rng));
    return t;
  }();
  return w;
}

template <class T>
void set_bytes(benchmark::State& state) {
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * kOut * kIn *
                          static_cast<std::int64_t>(sizeof(T)));
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * kOut * kIn);
}

quanto::quantize_options threads(const benchmark::State& state) {
  quanto::quantize_options o;
  o.parallel.threads = static_cast<int>(state.range(0));
  return o;
}

template <class T>
void BM_memcpy(benchmark::State& state) {
  const auto& w = weight<T>();
  std::vector<T> dst(w.size());
  for (auto _ : state) {
    std::memcpy(dst.data(), w.data(), w.size() * sizeof(T));
    benchmark::DoNotOptimize(dst.data());
    benchmark::ClobberMemory();
  }
  set_bytes<T>(state);
}

/// Runs a row with the vector code (Simd) or with the scalar reference alone, restoring the default.
template <bool Simd>
struct simd_scope {
  simd_scope() { quanto::set_quantize_simd(Simd); }
  ~simd_scope() { quanto::set_quantize_simd(true); }
  simd_scope(const simd_scope&) = delete;
  simd_scope& operator=(const simd_scope&) = delete;
};

template <class Q, class T, class Opt, bool Simd = true>
void BM_quantize(benchmark::State& state) {
  const auto& w = weight<T>();
  const simd_scope<Simd> mode;
  for (auto _ : state) {
    auto q = quanto::quantize_weight<Q>(w, quanto::default_scheme_t<Q>{}, Opt{}, threads(state));
    benchmark::DoNotOptimize(q.scale.data());
  }
  set_bytes<T>(state);
}

/// Dequantization into a fresh tensor (what `dequantize()` returns: its allocation and first-touch
/// page faults included).
template <class Q, class T>
void BM_dequantize(benchmark::State& state) {
  const auto q = quanto::quantize_weight<Q>(weight<T>());
  for (auto _ : state) {
    auto dq = q.dequantize({static_cast<int>(state.range(0))});
    benchmark::DoNotOptimize(dq.data());
  }
  set_bytes<T>(state);
}

/// Dequantization into a buffer written before (`dequantize_into`), as memcpy writes its own.
template <class Q, class T, bool Simd = true>
void BM_dequantize_into(benchmark::State& state) {
  const auto q = quanto::quantize_weight<Q>(weight<T>());
  quanto::tensor<T> out(q.shape());
  const simd_scope<Simd> mode;
  for (auto _ : state) {
    q.dequantize_into(out.mutable_view(), {static_cast<int>(state.range(0))});
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  set_bytes<T>(state);
}

#if defined(QUANTO_BENCH_HAVE_GGML)
/// ggml's quantizer on the float32 weight, one call for the whole matrix (one thread).
template <ggml_type Type>
void BM_ggml(benchmark::State& state) {
  const auto& w = weight<float>();
  std::vector<std::uint8_t> dst(static_cast<std::size_t>(ggml_row_size(Type, kIn)) * kOut);
  for (auto _ : state) {
    const std::size_t n = ggml_quantize_chunk(Type, w.data(), dst.data(), 0, kOut, kIn, nullptr);
    benchmark::DoNotOptimize(n);
    benchmark::ClobberMemory();
  }
  set_bytes<float>(state);
}
BENCHMARK(BM_ggml<GGML_TYPE_Q4_0>)->Name("BM_ggml_q4_0<float>")->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ggml<GGML_TYPE_Q8_0>)->Name("BM_ggml_q8_0<float>")->Unit(benchmark::kMillisecond);
#endif

/// The model dtype of a row: the template argument of BM_memcpy<T>, the second of the others.
std::string dtype_of(const std::string& name) {
  const std::size_t open = name.find('<'), close = name.find('>');
  if (open == std::string::npos || close == std::string::npos) return {};
  std::string args = name.substr(open + 1, close - open - 1);
  if (name.rfind("BM_memcpy<", 0) == 0) return args;
  const std::size_t a = args.find(", ");
  if (a == std::string::npos) return {};
  args = args.substr(a + 2);
  return args.substr(0, args.find(','));
}

/// Prints each run as usual, then a summary: GB/s and the ratio to memcpy of the same dtype.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      // With --benchmark_repetitions only the medians count; otherwise the single run.
      if (r.run_type == Run::RT_Aggregate && r.aggregate_name != "median") continue;
      const auto bytes = r.counters.find("bytes_per_second"), items = r.counters.find("items_per_second");
      if (bytes == r.counters.end() || items == r.counters.end()) continue;
      const std::string name = r.run_name.str();
      if (r.run_type != Run::RT_Aggregate && r.repetitions > 1) continue;
      rates_[name] = {static_cast<double>(bytes->second), static_cast<double>(items->second)};
      if (std::find(order_.begin(), order_.end(), name) == order_.end()) order_.push_back(name);
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::map<std::string, double> copy;
    for (const auto& [name, rate] : rates_)
      if (name.rfind("BM_memcpy<", 0) == 0) copy[dtype_of(name)] = rate.first;
    const auto ggml = [&](const char* n) { return rates_.count(n) ? rates_[n].second : 0.0; };
    const double q4 = ggml("BM_ggml_q4_0<float>"), q8 = ggml("BM_ggml_q8_0<float>");
    // the scalar reference of a row: the same name with ", false" before the closing '>'
    const auto scalar_rate = [&](const std::string& name) {
      const std::size_t close = name.find('>');
      if (close == std::string::npos) return 0.0;
      std::string ref = name.substr(0, close) + ", false" + name.substr(close);
      const std::size_t it = ref.find("/iterations:");
      if (it != std::string::npos) ref = ref.substr(0, it);
      for (const auto& [n, r] : rates_)
        if (n.rfind(ref, 0) == 0) return r.second;
      return 0.0;
    };
    std::printf("\n%-64s %8s %9s %9s %9s\n", "benchmark (argument: threads)", "GB/s", "x memcpy", "x ggml", "x scalar");
    for (const auto& name : order_) {
      const auto [rate, items] = rates_[name];
      const auto dt = dtype_of(name);
      const double base = copy.count(dt) ? copy[dt] : 0.0;
      const bool eight = name.find("qint8") != std::string::npos || name.find("qfloat8") != std::string::npos;
      const bool quant = name.rfind("BM_quantize<", 0) == 0;
      const double ref = !quant ? 0.0 : eight ? q8 : q4;
      const double scalar = scalar_rate(name);
      std::printf("%-64s %8.2f %9.3f %9s %9s\n", name.c_str(), rate / 1e9, base > 0 ? rate / base : 0.0,
                  ref > 0 ? std::to_string(items / ref).substr(0, 5).c_str() : "-",
                  scalar > 0 ? std::to_string(items / scalar).substr(0, 5).c_str() : "-");
    }
  }

 private:
  std::map<std::string, std::pair<double, double>> rates_;
  std::vector<std::string> order_;
};

using quanto::absmax_optimizer;
using quanto::bfloat16;
using quanto::hqq_optimizer;
using quanto::max_optimizer;

using quanto::float16;
using quanto::qfloat8_e4m3fn;
using quanto::qfloat8_e5m2;
using quanto::qint2;
using quanto::qint4;
using quanto::qint8;
constexpr auto ms = benchmark::kMillisecond;

BENCHMARK(BM_memcpy<float>)->Unit(ms);
BENCHMARK(BM_memcpy<bfloat16>)->Unit(ms);
BENCHMARK(BM_memcpy<float16>)->Unit(ms);
// quantize: the vector code at 1 and 2 threads, the scalar reference (name ends in "false>") beside
BENCHMARK(BM_quantize<qint8, float, absmax_optimizer>)->Arg(1)->Arg(2)->Unit(ms);
BENCHMARK(BM_quantize<qint8, float, absmax_optimizer, false>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qint8, bfloat16, absmax_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qint8, bfloat16, absmax_optimizer, false>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qint8, float16, absmax_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qfloat8_e4m3fn, float, absmax_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qfloat8_e4m3fn, bfloat16, absmax_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qfloat8_e4m3fn, bfloat16, absmax_optimizer, false>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qfloat8_e4m3fn, float16, absmax_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qfloat8_e5m2, float, absmax_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qfloat8_e5m2, bfloat16, absmax_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qfloat8_e5m2, float16, absmax_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qint4, float, max_optimizer>)->Arg(1)->Arg(2)->Unit(ms);
BENCHMARK(BM_quantize<qint4, bfloat16, max_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qint4, bfloat16, max_optimizer, false>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qint2, float, max_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qint2, bfloat16, max_optimizer>)->Arg(1)->Unit(ms);
BENCHMARK(BM_quantize<qint4, bfloat16, hqq_optimizer>)->Arg(1)->Unit(ms)->Iterations(2);
BENCHMARK(BM_quantize<qint4, bfloat16, hqq_optimizer, false>)->Arg(1)->Unit(ms)->Iterations(1);
BENCHMARK(BM_quantize<qint4, float, hqq_optimizer>)->Arg(1)->Unit(ms)->Iterations(2);
BENCHMARK(BM_quantize<qint4, float, hqq_optimizer, false>)->Arg(1)->Unit(ms)->Iterations(1);
// dequantize: into a fresh tensor, and into a buffer (every qtype x model dtype, scalar beside)
BENCHMARK(BM_dequantize<qint8, bfloat16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize<qint4, bfloat16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint8, float>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint8, bfloat16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint8, bfloat16, false>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint8, float16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qfloat8_e4m3fn, float>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qfloat8_e4m3fn, bfloat16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qfloat8_e4m3fn, bfloat16, false>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qfloat8_e4m3fn, float16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qfloat8_e5m2, float>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qfloat8_e5m2, bfloat16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qfloat8_e5m2, float16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint4, float>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint4, bfloat16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint4, bfloat16, false>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint4, float16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint2, float>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint2, bfloat16>)->Arg(1)->Unit(ms);
BENCHMARK(BM_dequantize_into<qint2, float16>)->Arg(1)->Unit(ms);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}
