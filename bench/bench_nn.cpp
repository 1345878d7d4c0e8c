// The module layer's forward cost: a float Linear against QLinear frozen (int8, int4, w8a8) and
// QLinear before freeze (re-quantizing its weight on every forward), at batch 1 and 16. The figure
// is the ratio of each row to the float Linear of the same shape and batch in the same run.
//
//   build-release/bench/bench_nn [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <random>

#include <quanto/nn.hpp>

namespace {
using namespace quanto;

constexpr std::int64_t kIn = 2048, kOut = 2048;

nn::Linear<float> make_linear() {
  std::mt19937_64 rng(1);
  return nn::Linear<float>(kIn, kOut, rng);
}

tensor<float> input(std::int64_t batch) {
  std::mt19937_64 rng(2);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  tensor<float> x(shape{batch, kIn});
  for (auto& v : x) v = u(rng);
  return x;
}

template <class M>
void run(benchmark::State& state, M& m) {
  const auto x = input(state.range(0));
  for (auto _ : state) {
    auto y = m.forward(tensor<float>(x));
    benchmark::DoNotOptimize(y.value.data());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}

void BM_float_linear(benchmark::State& state) {
  auto m = make_linear();
  run(state, m);
}

template <class Q>
void BM_qlinear_frozen(benchmark::State& state) {
  nn::QLinear<Q> m(make_linear());
  m.freeze();
  run(state, m);
}

template <class Q>
void BM_qlinear_dynamic(benchmark::State& state) {
  nn::QLinear<Q> m(make_linear());
  run(state, m);
}

void BM_qlinear_w8a8_frozen(benchmark::State& state) {
  nn::QLinear<qint8> m(make_linear(), {.activations = qtype_id::qint8});
  {
    nn::Calibration c;
    (void)m.forward(input(state.range(0)));
  }
  m.freeze();
  run(state, m);
}

}  // namespace

BENCHMARK(BM_float_linear)->Arg(1)->Arg(16)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_qlinear_frozen<qint8>)->Arg(1)->Arg(16)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_qlinear_frozen<qint4>)->Arg(1)->Arg(16)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_qlinear_w8a8_frozen)->Arg(1)->Arg(16)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_qlinear_dynamic<qint8>)->Arg(1)->Arg(16)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_qlinear_dynamic<qint4>)->Arg(1)->Arg(16)->Unit(benchmark::kMicrosecond);
BENCHMARK_MAIN();
