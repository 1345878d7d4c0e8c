// bench_json: the three readers of JSON from untrusted files (safetensors header, shard index,
// quantization map, all on io/json.hpp's strict reader) beside nlohmann's own validating parse of
// the same bytes (`nlohmann::json::accept`, no handler: the floor of the lexer they share). Bytes
// per second of JSON text; the ratio to the `accept` row is the cost of the schemas and the
// reader's rules (UTF-8, depth, duplicate keys).
//
//   build-release/bench/bench_json --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
#include <benchmark/benchmark.h>

#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "quanto/io/checkpoint.hpp"
#include "quanto/io/qmap.hpp"
#include "quanto/io/safetensors.hpp"

namespace {

namespace io = quanto::io;

constexpr int tensors = 50'000;  // a 70B model has about 1'000 weights per layer group; this is a large file

std::string name_of(int i) {
  return "model.layers." + std::to_string(i / 8) + ".mlp.proj_" + std::to_string(i % 8) + ".weight";
}

const std::vector<std::byte>& safetensors_image() {
  static const auto image = [] {
    static std::vector<std::string> names;
    static const std::vector<std::byte> data(4);
    std::vector<io::tensor_to_write> ts;
    for (int i = 0; i < tensors; ++i) names.push_back(name_of(i));
    for (int i = 0; i < tensors; ++i) ts.push_back({names[i], quanto::dtype::f32, {1}, data});
    return io::serialize_safetensors(ts, {{"format", "pt"}});
  }();
  return image;
}

std::string_view header_of(const std::vector<std::byte>& image) {
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(image[static_cast<std::size_t>(i)]);
  return {reinterpret_cast<const char*>(image.data()) + 8, static_cast<std::size_t>(n)};
}

const std::string& index_text() {
  static const std::string text = [] {
    io::shard_index index;
    for (int i = 0; i < tensors; ++i)
      index.weight_map.emplace_back(name_of(i), "model-0000" + std::to_string(1 + i % 4) + "-of-00004.safetensors");
    index.total_size = 4ull * tensors;
    return io::shard_index_json(index);
  }();
  return text;
}

const std::string& qmap_text() {
  static const std::string text = [] {
    quanto::quantization_map_t q;
    for (int i = 0; i < tensors; ++i) q.push_back({name_of(i), "qint4", "none"});
    return io::qmap_json(q);
  }();
  return text;
}

void accept_floor(benchmark::State& state, std::string_view text) {
  for (auto _ : state) benchmark::DoNotOptimize(nlohmann::json::accept(text.begin(), text.end()));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}

void BM_safetensors_accept(benchmark::State& state) { accept_floor(state, header_of(safetensors_image())); }
void BM_safetensors_parse(benchmark::State& state) {
  const auto& image = safetensors_image();
  for (auto _ : state) {
    state.PauseTiming();
    std::vector<std::byte> copy = image;  // parse takes ownership
    state.ResumeTiming();
    benchmark::DoNotOptimize(io::safetensors_file::parse(std::move(copy)).tensors().size());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * header_of(image).size()));
}

void BM_shard_index_accept(benchmark::State& state) { accept_floor(state, index_text()); }
void BM_shard_index_parse(benchmark::State& state) {
  const std::string& text = index_text();
  for (auto _ : state) benchmark::DoNotOptimize(io::parse_shard_index(text).weight_map.size());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}

void BM_qmap_accept(benchmark::State& state) { accept_floor(state, qmap_text()); }
void BM_qmap_parse(benchmark::State& state) {
  const std::string& text = qmap_text();
  for (auto _ : state) benchmark::DoNotOptimize(io::parse_qmap(text).size());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * text.size()));
}

BENCHMARK(BM_safetensors_accept)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_safetensors_parse)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_shard_index_accept)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_shard_index_parse)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_qmap_accept)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_qmap_parse)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
