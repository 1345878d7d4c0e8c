// bench_model_io: quantizing a model larger than a few tensors, from disk to disk.
//
// Generates a Llama-shaped bf16 model of about --gb gigabytes in shards (random weights), then, in
// a child process each so that its peak resident memory is its own, runs:
//   copy      every tensor read from its mapping and written into new shards, nothing else: the
//             I/O roofline of this machine, measured in the same run;
//   qint8/qint4 with 1 and N threads.
// Prints input throughput (GB/s of input), its ratio to the copy, and peak RSS against the largest
// tensor (the goal: peak RSS <= 2 x the largest tensor + a constant, whatever the model size).
// The files are in the page cache after generation, so this measures the library, not the disk.
//
//   bench_model_io [--gb 3] [--dir /tmp/quanto-bench-model] [--threads 2] [--keep]
#include <quanto/io/model.hpp>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <random>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace io = quanto::io;

struct model_shape {
  int layers;
  std::int64_t hidden = 4096, inter = 11008, vocab = 32000;
};

/// Writes the model: bf16, shards of 1 GB, deterministic pseudo-random bits (cheap to make).
std::uint64_t write_model(const fs::path& dir, const model_shape& m) {
  std::vector<io::tensor_to_write> tensors;
  const auto add = [&](std::string name, std::vector<std::int64_t> shape) {
    tensors.push_back({std::move(name), quanto::dtype::bf16, std::move(shape), {}});
  };
  add("model.embed_tokens.weight", {m.vocab, m.hidden});
  for (int l = 0; l < m.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {m.hidden});
    add(p + "post_attention_layernorm.weight", {m.hidden});
    for (const char* n : {"q_proj", "k_proj", "v_proj", "o_proj"})
      add(p + "self_attn." + n + ".weight", {m.hidden, m.hidden});
    add(p + "mlp.gate_proj.weight", {m.inter, m.hidden});
    add(p + "mlp.up_proj.weight", {m.inter, m.hidden});
    add(p + "mlp.down_proj.weight", {m.hidden, m.inter});
  }
  add("model.norm.weight", {m.hidden});
  add("lm_head.weight", {m.vocab, m.hidden});
  io::checkpoint_options o;
  o.max_shard_size = 1'000'000'000;
  o.overwrite = true;
  o.extra_files = {{"config.json", "{\"model_type\": \"llama\", \"tie_word_embeddings\": false}\n"}};
  std::uint64_t seed = 1;
  const auto r = io::save_checkpoint(dir, tensors, o, [&](const io::tensor_to_write& t, auto&& write) {
    std::vector<std::uint16_t> chunk(1 << 20);
    std::int64_t n = 1;
    for (auto d : t.shape) n *= d;
    std::mt19937_64 rng(seed++);
    while (n > 0) {
      const auto k = static_cast<std::size_t>(std::min<std::int64_t>(n, static_cast<std::int64_t>(chunk.size())));
      for (std::size_t i = 0; i < k; i += 4) {
        const std::uint64_t x = rng();
        for (std::size_t j = 0; j < 4 && i + j < k; ++j) {
          // bf16 with exponent around 2^-7..2^-5 and a random sign/mantissa: weights of ~0.01
          const auto bits = static_cast<std::uint16_t>(x >> (16 * j));
          chunk[i + j] = static_cast<std::uint16_t>((bits & 0x807F) | ((0x78 + ((bits >> 7) & 3)) << 7));
        }
      }
      write(chunk.data(), k * 2);
      n -= static_cast<std::int64_t>(k);
    }
  });
  return r.total_size;
}

struct run_result {
  bool ok = false;
  double seconds = 0;
  double cpu_seconds = 0;  // user + system, all threads
  long max_rss_kb = 0;
};

/// Runs `body` in a child process; returns its wall time (as it reports) and peak RSS.
template <class Body>
run_result in_child(Body&& body) {
  int pipefd[2];
  if (::pipe(pipefd) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    double seconds = -1;
    try {
      seconds = body();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
    }
    (void)!::write(pipefd[1], &seconds, sizeof seconds);
    ::_exit(seconds >= 0 ? 0 : 1);
  }
  ::close(pipefd[1]);
  run_result r;
  double seconds = -1;
  if (::read(pipefd[0], &seconds, sizeof seconds) != sizeof seconds) seconds = -1;
  ::close(pipefd[0]);
  int status = 0;
  struct rusage ru {};
  ::wait4(pid, &status, 0, &ru);
  r.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && seconds >= 0;
  r.seconds = seconds;
  r.max_rss_kb = ru.ru_maxrss;
  r.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                  static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  double gb = 3;
  fs::path dir = fs::temp_directory_path() / "quanto-bench-model";
  unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  bool keep = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--gb" && i + 1 < argc)
      gb = std::stod(argv[++i]);
    else if (a == "--dir" && i + 1 < argc)
      dir = argv[++i];
    else if (a == "--threads" && i + 1 < argc)
      threads = static_cast<unsigned>(std::stoul(argv[++i]));
    else if (a == "--keep")
      keep = true;
    else {
      std::fprintf(stderr, "usage: bench_model_io [--gb 3] [--dir PATH] [--threads N] [--keep]\n");
      return 2;
    }
  }
  model_shape m{1};
  const double per_layer = 2.0 * (4.0 * 4096 * 4096 + 3.0 * 11008 * 4096) / 1e9;
  const double fixed = 2.0 * 2 * 32000 * 4096 / 1e9;
  m.layers = std::max(1, static_cast<int>((gb - fixed) / per_layer + 0.5));
  const fs::path input = dir / "float";
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t bytes = write_model(input, m);
  const double gen = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double largest = 2.0 * 32000 * 4096, largest_quantized = 2.0 * 11008 * 4096;
  std::printf(
      "model: %d layers, %.2f GB bf16 in %zu shards (written in %.1f s); largest tensor %.0f MB, largest quantized "
      "weight %.0f MB\n",
      m.layers, static_cast<double>(bytes) / 1e9, io::checkpoint::open(input).shards().size(), gen, largest / 1e6,
      largest_quantized / 1e6);
  std::printf("%-16s %7s %8s %8s %10s %10s %9s %10s %s\n", "run", "threads", "seconds", "cpu s", "input GB/s",
              "output GB", "I/O floor", "vs floor", "peak RSS MB (x largest tensor)");

  double copy_rate = 0;  // bytes copied (read and written, flushed to disk) per second
  const auto run = [&](const char* name, std::optional<quanto::qtype_id> q, unsigned t) {
    const fs::path out = dir / "out";
    const auto r = in_child([&] {
      io::model_quantize_options o;
      o.weights = q.value_or(quanto::qtype_id::qint8);
      o.threads = t;
      o.overwrite = true;
      o.max_shard_size = 1'000'000'000;
      const auto s = std::chrono::steady_clock::now();
      if (!q) {  // the roofline: read every tensor and write it again, nothing else
        const auto c = io::checkpoint::open(input);
        std::vector<io::tensor_to_write> ts;
        for (const auto& e : c.tensors()) ts.push_back({e.name(), e.info->dtype, e.info->shape, {}});
        io::checkpoint_options co;
        co.max_shard_size = o.max_shard_size;
        co.overwrite = true;
        io::save_checkpoint(out, ts, co, [&](const io::tensor_to_write& tw, auto&& write) {
          const auto& e = c.at(tw.name);
          const auto b = c.bytes(e);
          constexpr std::size_t chunk = 16 << 20;
          for (std::size_t at = 0; at < b.size(); at += chunk) {
            const std::size_t n = std::min(chunk, b.size() - at);
            write(b.data() + at, n);
            quanto::io::detail::release_pages(b.data() + at, n);
          }
        });
      } else {
        (void)io::quantize_model(input, out, o);
      }
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - s).count();
    });
    if (!r.ok) {
      std::printf("%-22s failed\n", name);
      return;
    }
    const double rate = static_cast<double>(bytes) / 1e9 / r.seconds;
    const double out_bytes = static_cast<double>(io::checkpoint::open(out).total_size());
    if (!q) copy_rate = out_bytes / r.seconds;
    // The floor: the bytes this run wrote, at the speed the copy moved bytes (read + write + fsync).
    const double floor = out_bytes / copy_rate;
    std::printf("%-16s %7u %8.2f %8.2f %10.3f %10.2f %8.2fs %10.2f %7.0f (%.2fx)\n", name, t, r.seconds, r.cpu_seconds,
                rate, out_bytes / 1e9, floor, floor / r.seconds, static_cast<double>(r.max_rss_kb) / 1e3,
                static_cast<double>(r.max_rss_kb) * 1e3 / largest);
  };
  run("copy (roofline)", std::nullopt, 1);
  run("qint8", quanto::qtype_id::qint8, 1);
  run("qint4", quanto::qtype_id::qint4, 1);
  if (threads > 1) {
    run("qint8", quanto::qtype_id::qint8, threads);
    run("qint4", quanto::qtype_id::qint4, threads);
  }
  if (!keep) fs::remove_all(dir);
  return 0;
}
