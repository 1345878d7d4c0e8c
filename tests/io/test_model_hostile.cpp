// quantize_model and checkpoint::open against real-world layouts and hostile inputs (issue 16):
// Hugging Face hub cache snapshots, outputs that would destroy the input, one-row weights,
// non-finite weights, tensors that are not quantized.
#include <gtest/gtest.h>

#include <quanto/io/model.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
namespace io = quanto::io;

class Hostile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("quanto_model_hostile_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  /// One float tensor of the model being written.
  struct tensor_spec {
    std::string name;
    quanto::dtype dtype = quanto::dtype::f32;
    std::vector<std::int64_t> shape;
  };

  /// Writes a model folder at `folder` with deterministic contents (floats in [-1, 1]).
  static void write_model(const fs::path& folder, const std::vector<tensor_spec>& specs,
                          std::uint64_t max_shard_size = 0, const std::string& config = "{}\n") {
    std::vector<std::vector<std::byte>> storage;
    std::vector<io::tensor_to_write> tensors;
    std::mt19937 rng(7);
    std::uniform_real_distribution<float> u(-1, 1);
    storage.reserve(specs.size());
    for (const auto& s : specs) {
      std::int64_t n = 1;
      for (auto d : s.shape) n *= d;
      std::vector<std::byte> b(static_cast<std::size_t>(n) * quanto::size_of(s.dtype));
      if (s.dtype == quanto::dtype::f32)
        for (std::int64_t i = 0; i < n; ++i) {
          const float v = u(rng);
          std::memcpy(b.data() + 4 * i, &v, 4);
        }
      else
        for (auto& x : b) x = static_cast<std::byte>(rng() & 0x3f);
      storage.push_back(std::move(b));
      tensors.push_back({s.name, s.dtype, s.shape, storage.back()});
    }
    io::checkpoint_options o;
    o.max_shard_size = max_shard_size;
    o.overwrite = true;
    o.extra_files = {{"config.json", config}};
    io::save_checkpoint_with(folder, tensors, o, [&](std::span<const std::size_t> members, io::tensor_sink& sink) {
      for (std::size_t j = 0; j < members.size(); ++j)
        sink.write(j, tensors[members[j]].data.data(), tensors[members[j]].data.size());
    });
  }

  static std::vector<tensor_spec> small_llama() {
    return {{"model.embed_tokens.weight", quanto::dtype::f32, {32, 16}},
            {"model.layers.0.mlp.up_proj.weight", quanto::dtype::f32, {32, 16}},
            {"model.layers.0.mlp.down_proj.weight", quanto::dtype::f32, {16, 32}},
            {"model.layers.0.input_layernorm.weight", quanto::dtype::f32, {16}},
            {"model.norm.weight", quanto::dtype::f32, {16}}};
  }

  static io::model_quantize_options opts(quanto::qtype_id q = quanto::qtype_id::qint8) {
    io::model_quantize_options o;
    o.weights = q;
    o.threads = 2;
    return o;
  }

  fs::path dir_;
};

// ---- item 2: Hugging Face hub cache snapshots ----------------------------------------------------

/// Turns the model folder `src` into a hub cache repository `<cache>/models--org--tiny` whose
/// snapshot `rev` links every file into `../../blobs/`, as huggingface_hub lays it out.
fs::path make_hub_cache(const fs::path& src, const fs::path& cache, const std::string& repo = "models--org--tiny") {
  const auto root = cache / repo;
  const auto snapshot = root / "snapshots" / "0123456789abcdef";
  fs::create_directories(root / "blobs");
  fs::create_directories(snapshot);
  fs::create_directories(root / "refs");
  std::ofstream(root / "refs" / "main") << "0123456789abcdef";
  int k = 0;
  for (const auto& f : fs::directory_iterator(src)) {
    const std::string blob = "b10b" + std::to_string(k++);
    fs::rename(f.path(), root / "blobs" / blob);
    fs::create_symlink(fs::path("..") / ".." / "blobs" / blob, snapshot / f.path().filename());
  }
  return snapshot;
}

TEST_F(Hostile, AShardedHubCacheSnapshotIsReadAndQuantized) {
  write_model(dir_ / "src", small_llama(), 2000);
  const auto snapshot = make_hub_cache(dir_ / "src", dir_ / "hub");
  const auto c = io::checkpoint::open(snapshot);
  ASSERT_TRUE(c.sharded());
  EXPECT_GT(c.shards().size(), 1u);
  const auto r = io::quantize_model(snapshot, dir_ / "out", opts());
  EXPECT_EQ(r.modules.size(), 2u);
  const auto q = io::quantized_model::open(dir_ / "out");
  EXPECT_NE(q.find("model.layers.0.mlp.up_proj"), nullptr);
  EXPECT_TRUE(fs::is_regular_file(dir_ / "out" / "config.json"));
}

TEST_F(Hostile, HubCacheLinksLeavingTheRepositoryOrOutsideTheLayoutAreRefused) {
  write_model(dir_ / "src", small_llama(), 2000);
  const auto snapshot = make_hub_cache(dir_ / "src", dir_ / "hub");
  // One shard's link now leads to a file of another repository of the cache: out of this one.
  const auto shard = io::checkpoint::open(snapshot).shard_names().back();
  const auto blob = fs::read_symlink(snapshot / shard).filename();
  fs::create_directories(dir_ / "hub" / "models--other--repo" / "blobs");
  fs::rename(dir_ / "hub" / "models--org--tiny" / "blobs" / blob,
             dir_ / "hub" / "models--other--repo" / "blobs" / blob);
  fs::remove(snapshot / shard);
  fs::create_symlink(fs::path("../../../models--other--repo/blobs") / blob, snapshot / shard);
  EXPECT_THROW((void)io::checkpoint::open(snapshot), io::path_error);
  EXPECT_THROW((void)io::quantize_model(snapshot, dir_ / "out", opts()), io::path_error);
  EXPECT_FALSE(fs::exists(dir_ / "out"));
  // The same links in a folder that is not a cache snapshot (no models--org--name above).
  write_model(dir_ / "src2", small_llama(), 2000);
  const auto not_cache = make_hub_cache(dir_ / "src2", dir_ / "plain", "org-tiny");
  EXPECT_THROW((void)io::checkpoint::open(not_cache), io::path_error);
}

// ---- item 1: an output that would destroy the input ---------------------------------------------

TEST_F(Hostile, AnOutputThatContainsTheFilesTheInputLinksToIsRefused) {
  write_model(dir_ / "src", small_llama(), 2000);
  const auto snapshot = make_hub_cache(dir_ / "src", dir_ / "hub");
  auto o = opts();
  o.overwrite = true;
  const auto blobs = dir_ / "hub" / "models--org--tiny" / "blobs";
  const auto before = std::distance(fs::directory_iterator(blobs), fs::directory_iterator{});
  EXPECT_THROW((void)io::quantize_model(snapshot, blobs, o), io::unsafe_output_error);
  EXPECT_THROW((void)io::quantize_model(snapshot, dir_ / "hub", o), io::unsafe_output_error);
  EXPECT_THROW((void)io::quantize_model(snapshot, snapshot, o), io::unsafe_output_error);
  EXPECT_EQ(std::distance(fs::directory_iterator(blobs), fs::directory_iterator{}), before);
  EXPECT_NO_THROW((void)io::checkpoint::open(snapshot));
}

// ---- item 3: one-row weights (a one-label classifier or reward `score` head) --------------------

// optimum-quanto: a weight whose axis 0 has size 1 is quantized per tensor (axis=None), so an
// 8-bit `[1, N]` weight has a 0-d `_scale` (safetensors shape []); qint2/qint4 group it first,
// and a single group (or an ungrouped row) is scaled per column by MaxOptimizer.
TEST_F(Hostile, OneRowWeightsAreQuantizedAsQuantoDoesForEveryQtype) {
  using quanto::qtype_id;
  struct want {
    std::int64_t in;
    std::vector<std::int64_t> scale_8bit, scale_lowbit;
  };
  const want cases[] = {{16, {}, {1, 16}}, {128, {}, {1, 128}}, {256, {}, {2, 1}}};
  for (const auto& c : cases)
    for (const auto q : {qtype_id::qint2, qtype_id::qint4, qtype_id::qint8, qtype_id::qfloat8_e4m3fn,
                         qtype_id::qfloat8_e4m3fnuz, qtype_id::qfloat8_e5m2}) {
      const std::string label = std::string(quanto::info_of(q).name) + " [1, " + std::to_string(c.in) + "]";
      const auto in = dir_ / ("in-" + std::to_string(c.in));
      if (!fs::exists(in))
        write_model(in, {{"model.layers.0.mlp.up_proj.weight", quanto::dtype::f32, {8, c.in}},
                         {"score.weight", quanto::dtype::f32, {1, c.in}}});
      const auto out = dir_ / ("out-" + label);
      auto o = opts(q);
      try {
        (void)io::quantize_model(in, out, o);
      } catch (const std::exception& e) {
        ADD_FAILURE() << label << ": " << e.what();
        continue;
      }
      const auto model = io::quantized_model::open(out);
      const auto& scale = model.files().at("score.weight._scale");
      EXPECT_EQ(scale.info->shape, quanto::info_of(q).bits == 8 ? c.scale_8bit : c.scale_lowbit) << label;
      // It reads back and dequantizes close to the float weight.
      const auto src = io::checkpoint::open(in);
      const auto& w = src.at("score.weight");
      const auto qw = model.weight("score", quanto::shape{1, c.in});
      std::visit(
          [&](const auto& x) {
            const auto d = x.dequantize();
            const auto raw = src.bytes(w);
            double err = 0;
            for (std::int64_t i = 0; i < c.in; ++i) {
              float f;
              std::memcpy(&f, raw.data() + 4 * i, 4);
              err = std::max(err,
                             std::abs(static_cast<double>(f) - static_cast<double>(static_cast<float>(d.data()[i]))));
            }
            EXPECT_LT(err, quanto::info_of(q).bits == 2 ? 0.7 : 0.2) << label;
          },
          qw);
    }
}

// ---- item 4: SIGINT / SIGTERM, and staging folders of dead processes ----------------------------

TEST_F(Hostile, ASignalStopsTheSaveAndRemovesTheStagingFolder) {
  write_model(dir_ / "in", small_llama());
  for (const int sig : {SIGINT, SIGTERM}) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      io::install_interrupt_handlers();
      auto o = opts();
      o.threads = 1;
      o.progress = [sig](const io::quantize_progress& p) {
        if (p.tensors_done == 2) ::raise(sig);
      };
      int code = 1;
      try {
        (void)io::quantize_model(dir_ / "in", dir_ / "out", o);
        code = 2;
      } catch (const io::interrupted_error& e) {
        code = e.signal() == sig ? 100 : 3;
      } catch (...) {
        code = 4;
      }
      ::_exit(code);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 100) << "signal " << sig;
    EXPECT_FALSE(fs::exists(dir_ / "out"));
    for (const auto& e : fs::directory_iterator(dir_))
      EXPECT_EQ(e.path().filename().string().find("quanto-tmp"), std::string::npos) << e.path();
  }
}

TEST_F(Hostile, AnySaveSweepsStagingFoldersOfProcessesThatProvablyNoLongerRun) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);  // a pid that no longer runs
  const long parent = static_cast<long>(::getppid());
  const auto start = io::detail::process_start_time(parent);
  const std::string dead = ".other.quanto-tmp-" + std::to_string(child) + "-0123456789abcdef";
  const std::string reused = ".other.quanto-tmp-" + std::to_string(parent) + "-s1-0123456789abcdef";
  const std::string alive =
      start ? ".third.quanto-tmp-" + std::to_string(parent) + "-s" + std::to_string(*start) + "-0123456789abcdef"
            : ".third.quanto-tmp-" + std::to_string(parent) + "-0123456789abcdef";
  for (const auto& n : {dead, reused, alive}) {
    fs::create_directories(dir_ / n);
    std::ofstream(dir_ / n / "model.safetensors") << std::string(1000, 'x');
  }
  write_model(dir_ / "target", small_llama());  // a save of another target in the same folder
  EXPECT_FALSE(fs::exists(dir_ / dead));
  if (start) {
    EXPECT_FALSE(fs::exists(dir_ / reused));  // the pid runs, but started at another time
  }
  EXPECT_TRUE(fs::exists(dir_ / alive));  // its process may still be writing it
}

// ---- item 5: a NaN or an infinity in a weight ---------------------------------------------------

TEST_F(Hostile, ANonFiniteWeightIsAMalformedInputNamedByFileAndTensor) {
  for (const float bad : {std::nanf(""), INFINITY}) {
    const auto in = dir_ / "in";
    write_model(in, small_llama(), 2000);
    // Poke the bad value into down_proj, in its shard.
    const auto c = io::checkpoint::open(in);
    const auto& e = c.at("model.layers.0.mlp.down_proj.weight");
    const auto file = in / c.shard_names()[e.shard];
    const auto offset = c.shards()[e.shard].data_offset() + e.info->begin + 4 * 389;
    {
      std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
      f.seekp(static_cast<std::streamoff>(offset));
      f.write(reinterpret_cast<const char*>(&bad), 4);
    }
    try {
      (void)io::quantize_model(in, dir_ / "out", opts());
      ADD_FAILURE() << "a non-finite weight was quantized";
    } catch (const quanto::format_error& err) {
      const std::string what = err.what();
      EXPECT_TRUE(dynamic_cast<const io::weight_value_error*>(&err)) << what;
      EXPECT_NE(what.find("'model.layers.0.mlp.down_proj.weight'"), std::string::npos) << what;
      EXPECT_NE(what.find(c.shard_names()[e.shard]), std::string::npos) << what;
      EXPECT_NE(what.find("flat index 389"), std::string::npos) << what;
    }
    EXPECT_FALSE(fs::exists(dir_ / "out"));
    fs::remove_all(in);
  }
}

// ---- item 7: what is not quantized, and why ------------------------------------------------------

TEST_F(Hostile, WeightsThatAreNotQuantizedAndFilesNotCopiedAreReported) {
  using quanto::dtype;
  write_model(dir_ / "in", {{"a.f64.weight", dtype::f64, {4, 4}},
                            {"a.i32.weight", dtype::i32, {4, 4}},
                            {"a.bool.weight", dtype::boolean, {4, 4}},
                            {"a.empty.weight", dtype::f32, {0, 16}},
                            {"a.empty2.weight", dtype::f32, {4, 0}},
                            {"a.norm.weight", dtype::f32, {16}},
                            {"a.conv1d.weight", dtype::f32, {4, 2, 3}},
                            {"a.linear.weight", dtype::f32, {8, 16}},
                            {"lm_head.weight", dtype::f32, {8, 16}}});
  fs::create_symlink("gone.json", dir_ / "in" / "tokenizer.json");
  fs::create_directories(dir_ / "in" / "original");
  const auto r = io::quantize_model(dir_ / "in", dir_ / "out", opts());
  ASSERT_EQ(r.modules.size(), 1u);
  std::map<std::string, std::string> got;
  for (const auto& s : r.not_quantized) got[s.name] = s.reason;
  const std::map<std::string, std::string> want = {{"a.f64.weight", "dtype F64"},   {"a.i32.weight", "dtype I32"},
                                                   {"a.bool.weight", "dtype BOOL"}, {"a.empty.weight", "empty"},
                                                   {"a.empty2.weight", "empty"},    {"a.norm.weight", "rank 1"},
                                                   {"a.conv1d.weight", "rank 3"},   {"lm_head.weight", "not selected"}};
  EXPECT_EQ(got, want);
  got.clear();
  for (const auto& s : r.not_copied) got[s.name] = s.reason;
  EXPECT_EQ(got, (std::map<std::string, std::string>{{"tokenizer.json", "a dangling link"}, {"original", "a folder"}}));
  // They are copied as they are.
  const auto out = io::checkpoint::open(dir_ / "out");
  for (const auto& [name, reason] : want) EXPECT_NE(out.find(name), nullptr) << name;
}

// ---- item 9: the two-rename fallback's window is recoverable ------------------------------------

TEST_F(Hostile, TheTwoRenameFallbackRunsAndACrashInItsWindowIsUndoneByTheNextSave) {
  const auto target = dir_ / "model";
  write_model(target, {{"old", quanto::dtype::f32, {4}}});
  // The fallback, without a crash: replaced, nothing left over.
  io::detail::commit_test_hook() = 1;
  write_model(target, {{"new", quanto::dtype::f32, {4}}});
  io::detail::commit_test_hook() = 0;
  EXPECT_NE(io::checkpoint::open(target).find("new"), nullptr);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 1);
  // A crash between the two renames: no target, the old folder under its backup name.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    io::detail::commit_test_hook() = 2;
    write_model(target, {{"newer", quanto::dtype::f32, {4}}});
    ::_exit(1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 86);
  EXPECT_FALSE(fs::exists(target));
  std::size_t backups = 0;
  for (const auto& e : fs::directory_iterator(dir_))
    backups += e.path().filename().string().rfind(".model.quanto-old-", 0) == 0;
  EXPECT_EQ(backups, 1u);
  // The next save into this folder, of another target, puts the old folder back.
  write_model(dir_ / "other", {{"x", quanto::dtype::f32, {4}}});
  ASSERT_TRUE(fs::exists(target));
  EXPECT_NE(io::checkpoint::open(target).find("new"), nullptr);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 2);  // model, other
}

}  // namespace
