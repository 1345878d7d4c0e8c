// Quantize / dequantize throughput per qtype and model dtype, in GB/s of float data, printed
// beside a plain memory copy of the same bytes measured in the same run: the ratio is the figure.
//
//   build-release/bench/bench_quantize [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <quanto/quanto.hpp>

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

template <class Q, class T, class Opt>
void BM_quantize(benchmark::State& state) {
  const auto& w = weight<T>();
  for (auto _ : state) {
    auto q = quanto::quantize_weight<Q>(w, quanto::default_scheme_t<Q>{}, Opt{});
    benchmark::DoNotOptimize(q.scale.data());
  }
  set_bytes<T>(state);
}

template <class Q, class T>
void BM_dequantize(benchmark::State& state) {
  const auto q = quanto::quantize_weight<Q>(weight<T>());
  for (auto _ : state) {
    auto dq = q.dequantize();
    benchmark::DoNotOptimize(dq.data());
  }
  set_bytes<T>(state);
}

/// Prints each run as usual, then a summary: GB/s and the ratio to memcpy of the same dtype.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      const auto it = r.counters.find("bytes_per_second");
      if (it != r.counters.end()) rates_.emplace_back(r.benchmark_name(), static_cast<double>(it->second));
    }
  }
  void Finalize() override {
    ConsoleReporter::Finalize();
    std::map<std::string, double> copy;
    for (const auto& [name, rate] : rates_)
      if (name.rfind("BM_memcpy<", 0) == 0) copy[name.substr(10, name.find('>') - 10)] = rate;
    std::printf("\n%-58s %10s %14s\n", "benchmark", "GB/s", "x memcpy");
    for (const auto& [name, rate] : rates_) {
      double base = 0;
      for (const auto& [dt, r] : copy)
        if (name.find(dt + ">") != std::string::npos || name.find(", " + dt) != std::string::npos) base = r;
      std::printf("%-58s %10.2f %14.3f\n", name.c_str(), rate / 1e9, base > 0 ? rate / base : 0.0);
    }
  }

 private:
  std::vector<std::pair<std::string, double>> rates_;
};

using quanto::absmax_optimizer;
using quanto::bfloat16;
using quanto::hqq_optimizer;
using quanto::max_optimizer;

BENCHMARK(BM_memcpy<float>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_memcpy<bfloat16>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize<quanto::qint8, float, absmax_optimizer>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize<quanto::qint8, bfloat16, absmax_optimizer>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize<quanto::qfloat8_e4m3fn, float, absmax_optimizer>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize<quanto::qfloat8_e4m3fn, bfloat16, absmax_optimizer>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize<quanto::qfloat8_e5m2, bfloat16, absmax_optimizer>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize<quanto::qint4, float, max_optimizer>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize<quanto::qint4, bfloat16, max_optimizer>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize<quanto::qint2, bfloat16, max_optimizer>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_quantize<quanto::qint4, bfloat16, hqq_optimizer>)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_dequantize<quanto::qint8, bfloat16>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dequantize<quanto::qfloat8_e4m3fn, bfloat16>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dequantize<quanto::qint4, bfloat16>)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_dequantize<quanto::qint2, bfloat16>)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
}
