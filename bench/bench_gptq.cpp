// GPTQ on one 4096×4096 layer with 2048 calibration tokens, on one thread: the Hessian
// accumulation, the quantization (dampening, Cholesky, triangular inverse, the column loop with its
// rank-128 lazy updates) at qint4 g128 and qint2 g128, and, as the yardstick, the same layer's own
// float forward (nn::Linear<float>, [2048, 4096] · [4096, 4096]ᵀ) in the same run. The figure is
// the ratio of the GPTQ rows (Hessian + quantize) to the float forward row.
//
//   QUANTO_NUM_THREADS=1 build-release/bench/bench_gptq --benchmark_repetitions=3
//     --benchmark_enable_random_interleaving=true       (one command line)
//
// (`--benchmark_filter=/1024` runs the same rows at 1024×1024 and 512 tokens, a quick check.)
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <vector>

#include <quanto/nn.hpp>
#include <quanto/quantize/gptq.hpp>

#include "../tests/support/correlated_inputs.hpp"

namespace {
using namespace quanto;

constexpr kernels::parallel_options one_thread{1, nullptr};

struct problem {
  std::int64_t k, tokens;
  tensor<float> w, x;
};

/// Correlated activations (a few latent factors, per-feature gains) and a Gaussian weight.
const problem& get(std::int64_t k) {
  static std::vector<std::unique_ptr<problem>> cache;
  for (const auto& p : cache)
    if (p->k == k) return *p;
  const std::int64_t tokens = k / 2;
  auto p = std::make_unique<problem>(problem{k, tokens, tensor<float>(shape{k, k}), tensor<float>(shape{tokens, k})});
  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  for (auto& v : p->w) v = 0.02f * nd(rng);
  quanto_test::fill_correlated(p->x.data(), tokens, k, 32, 1.0f, rng, rng);
  cache.push_back(std::move(p));
  return *cache.back();
}

void BM_gptq_hessian(benchmark::State& state) {
  const problem& p = get(state.range(0));
  for (auto _ : state) {
    gptq_hessian h(p.k);
    h.add(p.x.data(), p.tokens, one_thread);
    benchmark::DoNotOptimize(h.samples());
  }
}

template <class Q>
void BM_gptq_quantize(benchmark::State& state) {
  const problem& p = get(state.range(0));
  gptq_hessian h(p.k);
  h.add(p.x.data(), p.tokens, one_thread);
  const std::vector<double> m = h.matrix();
  gptq_options opt;
  opt.parallel = one_thread;
  for (auto _ : state) {
    auto r = gptq_quantize<Q>(p.w.view(), std::span<const double>(m), group_affine<>{.group_size = 128}, opt);
    benchmark::DoNotOptimize(r.weight.packed.data());
  }
}

void BM_float_linear_forward(benchmark::State& state) {
  const problem& p = get(state.range(0));
  nn::Linear<float> layer(tensor<float>(p.w));
  for (auto _ : state) {
    auto y = layer.forward(tensor<float>(p.x));
    benchmark::DoNotOptimize(y.value.data());
  }
}

}  // namespace

BENCHMARK(BM_gptq_hessian)->Arg(4096)->Arg(1024)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_TEMPLATE(BM_gptq_quantize, qint4)->Arg(4096)->Arg(1024)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK_TEMPLATE(BM_gptq_quantize, qint2)->Arg(4096)->Arg(1024)->Unit(benchmark::kMillisecond)->Iterations(1);
BENCHMARK(BM_float_linear_forward)->Arg(4096)->Arg(1024)->Unit(benchmark::kMillisecond)->Iterations(1);

BENCHMARK_MAIN();
