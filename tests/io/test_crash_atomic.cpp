// Crash-atomic writing (quanto/io/file.hpp, safetensors.hpp, checkpoint.hpp), tested from outside:
//   * kill -9: a child process saves a multi-shard checkpoint over an existing one with different
//     content and is killed at spread-out moments of the save; the folder then always opens as
//     exactly the old or exactly the new checkpoint (tensor hashes and file listing), what is left
//     behind is recognisable, and the next save removes it;
//   * write failures (RLIMIT_FSIZE: EFBIG) give file_error and leave the old file or folder
//     byte-identical, without temporary files;
//   * a replaced file keeps its permissions and owner; a new one gets the umask's;
//   * a file mapped for reading is saved over while the mapping is alive: the mapping keeps the
//     old bytes;
//   * under strace: every fsync of a file comes before its rename, and the folder is flushed after.
//
// Environment: QUANTO_CRASH_TRIALS (default 40) and QUANTO_CRASH_MB (default 4) size the kill
// test for a long run.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <random>
#include <regex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/io/checkpoint.hpp"
#include "quanto/io/safetensors.hpp"

namespace {

namespace fs = std::filesystem;
namespace io = quanto::io;
using quanto::dtype;

// ---- helpers ----------------------------------------------------------------------------------

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

/// Everything under `root`: relative path -> content ("dir" for folders).
std::map<std::string, std::string> tree(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it)
    out[fs::relative(it->path(), root).string()] = it->is_directory() ? "dir" : "file:" + slurp(it->path());
  return out;
}

std::size_t env_or(const char* name, std::size_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return static_cast<std::size_t>(std::strtoull(v, nullptr, 10));
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

/// A 64-bit hash of a byte stream fed in pieces whose sizes are multiples of 8 (the last one
/// excepted).
struct hasher {
  std::uint64_t h = 0xcbf29ce484222325ull;
  void update(std::span<const std::byte> b) {
    std::size_t i = 0;
    for (; i + 8 <= b.size(); i += 8) {
      std::uint64_t w;
      std::memcpy(&w, b.data() + i, 8);
      h = (h ^ w) * 0x100000001b3ull;
    }
    for (; i < b.size(); ++i) h = (h ^ static_cast<std::uint64_t>(b[i])) * 0x100000001b3ull;
  }
  [[nodiscard]] std::uint64_t digest() const { return splitmix64(h); }
};

/// Runs `f` in a forked child and returns its exit code (100 + signal if it was killed).
int in_child(const std::function<int()>& f) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    int code = 99;
    try {
      code = f();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: unexpected exception: %s\n", e.what());
      code = 98;
    } catch (...) {
      code = 97;
    }
    std::fflush(nullptr);
    ::_exit(code);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("quanto_test_crash_" + std::to_string(rd()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

// ---- the checkpoint of the kill test ---------------------------------------------------------

/// Two versions (0 and 1) of one model: the same tensor names and shapes, different bytes and a
/// different cut into shards, so that a mix of the two shows in the hashes or in the files.
struct two_versions {
  std::vector<io::tensor_to_write> tensors;  // names, dtypes, shapes (no data)
  std::uint64_t total = 0;
  std::uint64_t max_shard[2] = {0, 0};
  std::vector<std::uint64_t> hashes[2];  // per tensor
  std::vector<std::string> files[2];     // the folder's listing
  std::vector<std::uint64_t> chunk;      // a buffer for the producer

  explicit two_versions(std::uint64_t bytes) {
    const std::size_t count = 12;
    std::uint64_t weight_sum = 0;
    for (std::size_t i = 0; i < count; ++i) weight_sum += i % 3 + 1;
    for (std::size_t i = 0; i < count; ++i) {
      const std::uint64_t size = std::max<std::uint64_t>(bytes * (i % 3 + 1) / weight_sum / 256 * 256, 256);
      tensors.push_back({"model.layers." + std::to_string(i) + ".weight",
                         dtype::f32,
                         {static_cast<std::int64_t>(size / 256), 64},
                         {}});
      total += size;
    }
    tensors.push_back({"model.norm.bias", dtype::bf16, {8}, {}});
    total += 16;
    max_shard[0] = total / 3 + 1;  // 3 or 4 shards
    max_shard[1] = total / 5;      // 5 or more
    chunk.resize(1 << 17);         // 1 MiB
    for (int v = 0; v < 2; ++v)
      for (std::size_t t = 0; t < tensors.size(); ++t) {
        hasher h;
        produce(v, t, [&](const void* p, std::size_t n) { h.update({static_cast<const std::byte*>(p), n}); });
        hashes[v].push_back(h.digest());
      }
  }
  /// Tensor t of version v, through write(data, n) in 1 MiB pieces.
  template <class Write>
  void produce(int v, std::size_t t, const Write& write) {
    const std::uint64_t n = *io::detail::checked_nbytes(tensors[t].shape, tensors[t].dtype);
    const std::uint64_t seed = ((static_cast<std::uint64_t>(v) + 1) << 56) ^ (static_cast<std::uint64_t>(t) << 40);
    for (std::uint64_t at = 0; at < n;) {
      const std::uint64_t bytes = std::min<std::uint64_t>(n - at, chunk.size() * 8);
      for (std::uint64_t k = 0; k < (bytes + 7) / 8; ++k) chunk[k] = splitmix64(seed ^ (at / 8 + k));
      write(chunk.data(), static_cast<std::size_t>(bytes));
      at += bytes;
    }
  }
  io::saved_checkpoint save(const fs::path& folder, int v) {
    io::checkpoint_options options;
    options.max_shard_size = max_shard[v];
    options.overwrite = true;
    return io::save_checkpoint(folder, tensors, options, [&](const io::tensor_to_write& t, const auto& write) {
      produce(v, static_cast<std::size_t>(&t - tensors.data()), write);
    });
  }
  /// Which version the folder holds: 0 or 1; -1 for a mix (the message says what).
  int version_of(const fs::path& folder, std::string& why) const {
    const auto c = io::checkpoint::open(folder);
    int seen = -2;
    for (std::size_t t = 0; t < tensors.size(); ++t) {
      const auto* e = c.find(tensors[t].name);
      if (!e) {
        why = "tensor " + tensors[t].name + " is missing";
        return -1;
      }
      hasher h;
      h.update(c.bytes(*e));
      const std::uint64_t d = h.digest();
      const int v = d == hashes[0][t] ? 0 : d == hashes[1][t] ? 1 : -1;
      if (v < 0 || (seen >= 0 && v != seen)) {
        why = "tensor " + tensors[t].name + " is from " + (v < 0 ? "neither version" : "the other version");
        return -1;
      }
      seen = v;
    }
    if (c.tensors().size() != tensors.size()) {
      why = "extra tensors";
      return -1;
    }
    if (listing(folder) != files[seen]) {
      why = "the files of the folder are not those of version " + std::to_string(seen);
      return -1;
    }
    return seen;
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void sleep_for_seconds(double s) {
  if (s <= 0) return;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(s);
  ts.tv_nsec = static_cast<long>((s - static_cast<double>(ts.tv_sec)) * 1e9);
  while (::clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &ts) == EINTR) {
  }
}

class CrashAtomic : public TempDir {};

TEST_F(CrashAtomic, KillNineDuringACheckpointSaveLeavesTheOldOrTheNewCheckpoint) {
  const std::size_t trials = env_or("QUANTO_CRASH_TRIALS", 40);
  const std::size_t megabytes = env_or("QUANTO_CRASH_MB", 4);
  const auto t_start = std::chrono::steady_clock::now();
  two_versions model(static_cast<std::uint64_t>(megabytes) << 20);
  const fs::path folder = dir_ / "model";

  // Each version once, to learn its files (and to check each has at least 3 shards).
  for (int v = 1; v >= 0; --v) {
    const auto saved = model.save(folder, v);
    ASSERT_GE(saved.shard_names.size(), 3u);
    model.files[v] = listing(folder);
  }
  ASSERT_NE(model.files[0], model.files[1]);

  // How long one save takes in a child, from fork to exit (median of three).
  int state = 0;
  std::vector<double> durations;
  for (int i = 0; i < 3; ++i) {
    const int target = 1 - state;
    const auto t0 = std::chrono::steady_clock::now();
    ASSERT_EQ(in_child([&] {
                model.save(folder, target);
                return 0;
              }),
              0);
    durations.push_back(seconds_since(t0));
    state = target;
  }
  std::sort(durations.begin(), durations.end());
  const double duration = durations[1];

  std::mt19937_64 rng(env_or("QUANTO_CRASH_SEED", 20240611));
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  // outcomes: [old/new][staging left behind or not]
  std::size_t seen[2][2] = {{0, 0}, {0, 0}};
  std::size_t finished = 0;
  for (std::size_t trial = 0; trial < trials; ++trial) {
    std::string why;
    ASSERT_EQ(model.version_of(folder, why), state) << why;
    const int target = 1 - state;
    // Kill moments spread evenly over 1.2 x the duration of a save (early, middle, late, after).
    const double delay = (static_cast<double>(trial) + unit(rng)) / static_cast<double>(trials) * 1.2 * duration;
    std::fflush(nullptr);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int code = 0;
      try {
        model.save(folder, target);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "child: %s\n", e.what());
        code = 1;
      }
      ::_exit(code);
    }
    sleep_for_seconds(delay);
    ::kill(pid, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    const bool completed = WIFEXITED(status);
    if (completed) {
      ASSERT_EQ(WEXITSTATUS(status), 0) << "the child's save failed";
      ++finished;
    } else {
      ASSERT_EQ(WTERMSIG(status), SIGKILL);
    }

    // What is left next to the folder is recognisable: the killed process's staging folder.
    const std::string prefix = ".model.quanto-tmp-" + std::to_string(pid) + "-";
    bool left = false;
    for (const auto& name : listing(dir_)) {
      if (name == "model") continue;
      EXPECT_EQ(name.rfind(prefix, 0), 0u) << "trial " << trial << ": unexpected leftover " << name;
      left = true;
    }
    // The folder is exactly the old or exactly the new checkpoint.
    int now = -1;
    try {
      now = model.version_of(folder, why);
    } catch (const std::exception& e) {
      why = e.what();
    }
    ASSERT_GE(now, 0) << "trial " << trial << " (kill after " << delay << " s of a " << duration << " s save): " << why;
    if (completed) {
      EXPECT_EQ(now, target) << "trial " << trial;
    }
    ++seen[now == target][left];

    // A normal save then works and removes what the killed one left.
    const int next = static_cast<int>(trial % 2);
    model.save(folder, next);
    EXPECT_EQ(listing(dir_), std::vector<std::string>{"model"}) << "trial " << trial;
    state = next;
    if (::testing::Test::HasFatalFailure()) return;
  }
  {
    std::string why;
    ASSERT_EQ(model.version_of(folder, why), state) << why;
  }

  std::cout << "[ crash    ] " << trials << " kills of a " << megabytes << " MiB save (" << model.tensors.size()
            << " tensors, " << model.files[0].size() - 1 << " or " << model.files[1].size() - 1 << " shards) lasting "
            << duration << " s; after the kill: old " << seen[0][0] << " + " << seen[0][1] << " with staging left, new "
            << seen[1][0] << " + " << seen[1][1] << " with the old folder left to delete; " << finished
            << " saves had finished; " << seconds_since(t_start) << " s in all\n";
  if (trials >= 10) {
    EXPECT_GT(seen[0][0] + seen[0][1], 0u) << "no kill landed before the commit";
    EXPECT_GT(seen[1][0] + seen[1][1], 0u) << "no kill landed after the commit";
  }
}

// ---- write failures ---------------------------------------------------------------------------

/// In a child with RLIMIT_FSIZE = `limit` (SIGXFSZ ignored, so writes fail with EFBIG), runs `f`:
/// 0 = it threw file_error with EFBIG; 1 = file_error with another code; 2 = another error;
/// 3 = no error.
int run_with_file_size_limit(std::uint64_t limit, const std::function<void()>& f) {
  return in_child([&] {
    ::signal(SIGXFSZ, SIG_IGN);
    rlimit r{};
    r.rlim_cur = r.rlim_max = static_cast<rlim_t>(limit);
    if (::setrlimit(RLIMIT_FSIZE, &r) != 0) return 4;
    try {
      f();
      return 3;
    } catch (const io::file_error& e) {
      if (e.code() == std::errc::file_too_large) return 0;
      std::fprintf(stderr, "child: %s\n", e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child: %s\n", e.what());
      return 2;
    }
  });
}

class WriteFailure : public TempDir {};

TEST_F(WriteFailure, SaveSafetensorsOverALargerFile) {
  const std::uint64_t limit = 64 << 10;
  const auto path = dir_ / "model.safetensors";
  const std::vector<std::uint8_t> old_bytes(256 << 10, 0x5A);  // the old file is over the limit
  io::save_safetensors(
      path,
      std::vector<io::tensor_to_write>{
          {"old", dtype::u8, {static_cast<std::int64_t>(old_bytes.size())}, std::as_bytes(std::span(old_bytes))}});
  const std::string before = slurp(path);
  ASSERT_GT(before.size(), limit);

  // Sizes: far over the limit (fails in fwrite), and just over it (the tail is still in the stdio
  // buffer: fails in the flush before fsync).
  for (const std::size_t n : {std::size_t{512} << 10, std::size_t{limit}}) {
    const std::vector<std::uint8_t> data(n, 0xA5);
    const std::vector<io::tensor_to_write> ts = {
        {"new", dtype::u8, {static_cast<std::int64_t>(n)}, std::as_bytes(std::span(data))}};
    EXPECT_EQ(run_with_file_size_limit(limit, [&] { io::save_safetensors(path, ts); }), 0) << n;
    EXPECT_EQ(slurp(path), before) << n;
    EXPECT_EQ(listing(dir_), std::vector<std::string>{"model.safetensors"}) << n;
    // Streamed (fwrite) and laid out (pwrite) writers.
    EXPECT_EQ(run_with_file_size_limit(limit,
                                       [&] {
                                         io::save_safetensors_streamed(
                                             path, ts, {}, [&](const io::tensor_to_write& t, const auto& w) {
                                               w(t.data.data(), t.data.size());
                                             });
                                       }),
              0)
        << n;
    EXPECT_EQ(run_with_file_size_limit(limit,
                                       [&] {
                                         io::save_safetensors_with(path, ts, {}, [&](io::tensor_sink& sink) {
                                           sink.write(0, data.data(), data.size());
                                         });
                                       }),
              0)
        << n;
    EXPECT_EQ(slurp(path), before) << n;
    EXPECT_EQ(listing(dir_), std::vector<std::string>{"model.safetensors"}) << n;
  }
  // Control: under the limit the same child succeeds.
  const std::vector<std::uint8_t> small(1000, 1);
  EXPECT_EQ(run_with_file_size_limit(limit,
                                     [&] {
                                       io::save_safetensors(
                                           path, std::vector<io::tensor_to_write>{
                                                     {"s", dtype::u8, {1000}, std::as_bytes(std::span(small))}});
                                     }),
            3);
  EXPECT_EQ(listing(dir_), std::vector<std::string>{"model.safetensors"});
  EXPECT_NE(slurp(path), before);
}

TEST_F(WriteFailure, SaveCheckpointOverAnExistingFolder) {
  const std::uint64_t limit = 64 << 10;
  const auto folder = dir_ / "model";
  two_versions model(1 << 20);  // 1 MiB: shards of about 350 KB and 200 KB, over the limit
  model.save(folder, 0);
  const auto before = tree(dir_);
  // A shard over the limit.
  EXPECT_EQ(run_with_file_size_limit(limit, [&] { model.save(folder, 1); }), 0);
  EXPECT_EQ(tree(dir_), before);
  // Shards that fit, then an extra file that does not: the failure comes after every shard.
  const std::vector<std::uint8_t> small(1000, 7);
  const std::vector<io::tensor_to_write> ts = {{"a", dtype::u8, {1000}, std::as_bytes(std::span(small))},
                                               {"b", dtype::u8, {1000}, std::as_bytes(std::span(small))},
                                               {"c", dtype::u8, {1000}, std::as_bytes(std::span(small))}};
  io::checkpoint_options options;
  options.max_shard_size = 1000;
  options.overwrite = true;
  options.extra_files = {{"config.json", std::string(limit + 1, ' ')}};
  const auto write_all = [](const io::tensor_to_write& t, const auto& w) { w(t.data.data(), t.data.size()); };
  EXPECT_EQ(run_with_file_size_limit(limit, [&] { io::save_checkpoint(folder, ts, options, write_all); }), 0);
  EXPECT_EQ(tree(dir_), before);
  // A new folder: nothing is created.
  EXPECT_EQ(run_with_file_size_limit(limit, [&] { io::save_checkpoint(dir_ / "new", ts, options, write_all); }), 0);
  EXPECT_EQ(tree(dir_), before);
  // Control: with a config that fits, the same save succeeds.
  options.extra_files = {{"config.json", "{}"}};
  EXPECT_EQ(run_with_file_size_limit(limit, [&] { io::save_checkpoint(folder, ts, options, write_all); }), 3);
  EXPECT_EQ(listing(folder), (std::vector<std::string>{
                                 "config.json", "model-00001-of-00003.safetensors", "model-00002-of-00003.safetensors",
                                 "model-00003-of-00003.safetensors", "model.safetensors.index.json"}));
  EXPECT_EQ(listing(dir_), std::vector<std::string>{"model"});
}

// ---- permissions ------------------------------------------------------------------------------

/// Sets the umask for the life of the object.
struct umask_scope {
  explicit umask_scope(mode_t m) : old(::umask(m)) {}
  ~umask_scope() { ::umask(old); }
  mode_t old;
};

mode_t mode_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::stat(p.c_str(), &st), 0) << p;
  return st.st_mode & 07777;
}

class Permissions : public TempDir {
 protected:
  void save(const fs::path& p, std::uint8_t fill) {
    const std::vector<std::uint8_t> data(100, fill);
    io::save_safetensors(p, std::vector<io::tensor_to_write>{{"t", dtype::u8, {100}, std::as_bytes(std::span(data))}});
  }
};

TEST_F(Permissions, AReplacedFileKeepsItsModeAndOwner) {
  const umask_scope scope(022);
  const auto path = dir_ / "model.safetensors";
  for (const mode_t mode : {0640, 0600, 0644, 0604, 0444, 0660, 0755}) {
    save(path, 1);
    ASSERT_EQ(::chmod(path.c_str(), mode), 0);
    save(path, 2);
    EXPECT_EQ(mode_of(path), mode) << std::oct << mode;
    EXPECT_EQ(io::safetensors_file::open(path).bytes("t")[0], std::byte{2});
    fs::remove(path);
  }
  if (::geteuid() == 0) {  // the owner can be kept only by root
    save(path, 1);
    ASSERT_EQ(::chown(path.c_str(), 4321, 8765), 0);
    ASSERT_EQ(::chmod(path.c_str(), 0640), 0);
    save(path, 2);
    struct stat st {};
    ASSERT_EQ(::stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 4321u);
    EXPECT_EQ(st.st_gid, 8765u);
    EXPECT_EQ(st.st_mode & 07777, 0640u);
  }
}

TEST_F(Permissions, ANewFileGetsTheUmaskDefault) {
  for (const mode_t mask : {022, 077, 027, 002, 0}) {
    const umask_scope scope(mask);
    const auto path = dir_ / ("m" + std::to_string(mask) + ".safetensors");
    save(path, 1);
    EXPECT_EQ(mode_of(path), 0666 & ~mask) << std::oct << mask;
  }
}

// A model folder that only its owner may read stays so when it is saved over.
TEST_F(Permissions, AReplacedCheckpointFolderKeepsItsMode) {
  const umask_scope scope(022);
  const auto folder = dir_ / "model";
  two_versions model(64 << 10);
  model.save(folder, 0);
  ASSERT_EQ(::chmod(folder.c_str(), 0700), 0);
  model.save(folder, 1);
  EXPECT_EQ(mode_of(folder), 0700u);
  ASSERT_EQ(::chmod(folder.c_str(), 0750), 0);
  model.save(folder, 0);
  EXPECT_EQ(mode_of(folder), 0750u);
}

// ---- same-path read -> modify -> save ------------------------------------------------------------

class SamePath : public TempDir {};

TEST_F(SamePath, TheOldMappingKeepsTheOldBytes) {
  const auto path = dir_ / "model.safetensors";
  std::vector<float> w(1 << 18);  // 1 MiB
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.5f;
  const std::vector<io::tensor_to_write> ts = {{"w", dtype::f32, {512, 512}, std::as_bytes(std::span(w))}};
  io::save_safetensors(path, ts, {{"format", "pt"}});
  const std::string original = slurp(path);

  for (const auto how : {io::safetensors_file::load::map, io::safetensors_file::load::read}) {
    const auto old = io::safetensors_file::open(path, how);
    EXPECT_EQ(old.is_mapped(), how == io::safetensors_file::load::map);
    // Read the old tensor while writing the new one to the same path: w -> -w, as f16 halves.
    std::vector<io::tensor_to_write> modified = {{"w", dtype::f32, {512, 512}, {}}, {"extra", dtype::u8, {3}, {}}};
    io::save_safetensors_streamed(path, modified, {{"format", "pt"}, {"v", "2"}},
                                  [&](const io::tensor_to_write& t, const auto& write) {
                                    if (t.name == "extra") {
                                      const std::uint8_t e[3] = {1, 2, 3};
                                      write(e, 3);
                                      return;
                                    }
                                    const auto src = old.bytes("w");
                                    std::vector<std::byte> row(2048);
                                    for (std::size_t at = 0; at < src.size(); at += row.size()) {
                                      std::memcpy(row.data(), src.data() + at, row.size());
                                      for (std::size_t k = 3; k < row.size(); k += 4) row[k] ^= std::byte{0x80};
                                      write(row.data(), row.size());
                                    }
                                  });
    // The old object still reads the old bytes, every one of them (no SIGBUS, no zero-fill).
    EXPECT_EQ(old.read_as<float>("w", dtype::f32), w);
    EXPECT_FALSE(old.contains("extra"));
    // A fresh open reads the new file.
    const auto fresh = io::safetensors_file::open(path);
    EXPECT_EQ(fresh.metadata().at("v"), "2");
    const auto neg = fresh.read_as<float>("w", dtype::f32);
    ASSERT_EQ(neg.size(), w.size());
    for (std::size_t i = 1; i < w.size(); i += 997) EXPECT_EQ(neg[i], -w[i]) << i;
    // Back to the original for the next round, again over a live mapping (of the new file).
    io::save_safetensors(path, ts, {{"format", "pt"}});
    EXPECT_EQ(fresh.read_as<float>("w", dtype::f32), neg);
    EXPECT_EQ(slurp(path), original);
  }
  EXPECT_EQ(listing(dir_), std::vector<std::string>{"model.safetensors"});
}

// ---- strace: the order of fsync and rename ----------------------------------------------------------

/// The work the traced helper does: each kind of replacement once.
void strace_helper(const fs::path& dir) {
  const std::vector<std::uint8_t> data(4096, 3);
  const auto bytes = std::as_bytes(std::span(data));
  const std::vector<io::tensor_to_write> one = {{"t", dtype::u8, {4096}, bytes}};
  const std::vector<io::tensor_to_write> three = {
      {"a", dtype::u8, {4096}, bytes}, {"b", dtype::u8, {4096}, bytes}, {"c", dtype::u8, {4096}, bytes}};
  io::save_safetensors(dir / "file.safetensors", one);  // new
  io::save_safetensors(dir / "file.safetensors", one);  // replaced
  io::checkpoint_options options;
  options.max_shard_size = 4096;
  options.extra_files = {{"config.json", "{}"}};
  const auto write_all = [](const io::tensor_to_write& t, const auto& w) { w(t.data.data(), t.data.size()); };
  io::save_checkpoint(dir / "ckpt", three, options, write_all);  // new
  options.overwrite = true;
  io::save_checkpoint(dir / "ckpt", three, options, write_all);  // replaced
}

// When the test binary runs with QUANTO_CRASH_STRACE_HELPER=<folder>, it does the helper's work
// and exits before main (before gtest sees the command line).
[[maybe_unused]] const bool strace_helper_ran = [] {
  const char* dir = std::getenv("QUANTO_CRASH_STRACE_HELPER");
  if (!dir) return false;
  int code = 0;
  try {
    strace_helper(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "strace helper: %s\n", e.what());
    code = 1;
  }
  std::fflush(nullptr);
  std::_Exit(code);
}();

struct sys_event {
  enum kind_t { fsync, rename } kind;
  std::string a, b;  // fsync: the path of the fd; rename: from, to
  std::string flags;
  std::size_t line;
};

class Strace : public TempDir {};

TEST_F(Strace, FsyncOfTheFileBeforeTheRenameAndOfTheFolderAfter) {
  if (std::system("command -v strace >/dev/null 2>&1") != 0) GTEST_SKIP() << "strace is not installed";
  if (std::system("strace -qq -e trace=none true >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "strace cannot trace processes here (ptrace not permitted)";
  const fs::path self = fs::read_symlink("/proc/self/exe");
  const fs::path log = dir_ / "strace.log";
  const fs::path work = dir_ / "work";
  fs::create_directories(work);
  const std::string command =
      "QUANTO_CRASH_STRACE_HELPER='" + work.string() +
      "' strace -f -y -qq -e signal=none -e trace=fsync,fdatasync,rename,renameat,renameat2 -o '" + log.string() +
      "' '" + self.string() + "'";
  ASSERT_EQ(std::system(command.c_str()), 0) << command << "\n" << slurp(log);

  // Parse the log.
  const std::regex fsync_re(R"re((?:fsync|fdatasync)\(\d+<([^>]*)>\)\s*=\s*0)re");
  const std::regex rename_re(R"re(rename\("([^"]*)", "([^"]*)"\)\s*=\s*0)re");
  const std::regex renameat_re(R"re(renameat2?\([^,]*, "([^"]*)", [^,]*, "([^"]*)"(?:, ([A-Z_|0-9]+))?\)\s*=\s*0)re");
  std::vector<sys_event> events;
  {
    std::ifstream in(log);
    std::string line;
    std::size_t n = 0;
    std::smatch m;
    while (std::getline(in, line)) {
      ++n;
      if (std::regex_search(line, m, fsync_re))
        events.push_back({sys_event::fsync, m[1], "", "", n});
      else if (std::regex_search(line, m, renameat_re))
        events.push_back({sys_event::rename, m[1], m[2], m[3], n});
      else if (std::regex_search(line, m, rename_re))
        events.push_back({sys_event::rename, m[1], m[2], "", n});
      else if (line.find("rename") != std::string::npos || line.find("fsync") != std::string::npos)
        ADD_FAILURE() << "unparsed or failed call: " << line;
    }
  }
  const auto absolute = [&](const std::string& p) {
    return fs::path(p).is_absolute() ? fs::path(p).lexically_normal() : (work / p).lexically_normal();
  };
  std::size_t file_renames = 0, folder_commits = 0, exchanges = 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    const sys_event& e = events[i];
    if (e.kind != sys_event::rename) continue;
    const fs::path from = absolute(e.a), to = absolute(e.b);
    const std::string name = from.filename().string();
    const bool staging = name.find(".quanto-tmp-") != std::string::npos;
    ASSERT_TRUE(staging || (name.rfind('.', 0) == 0 && name.find(".tmp-") != std::string::npos))
        << "line " << e.line << ": a rename of something that is not a temporary: " << e.a;
    // Before: the renamed file (or folder) itself was flushed.
    bool flushed_before = false;
    for (std::size_t k = 0; k < i; ++k)
      if (events[k].kind == sys_event::fsync && absolute(events[k].a) == from) flushed_before = true;
    EXPECT_TRUE(flushed_before) << "line " << e.line << ": " << e.a << " renamed without an fsync of it before";
    if (staging) {
      // Every shard of the staging folder and its index were flushed before it took the place.
      std::size_t inside = 0;
      for (std::size_t k = 0; k < i; ++k)
        if (events[k].kind == sys_event::fsync && absolute(events[k].a).parent_path() == from) ++inside;
      EXPECT_GE(inside, 5u) << "line " << e.line << ": 3 shards, the index and config.json";
      ++folder_commits;
      if (e.flags.find("RENAME_EXCHANGE") != std::string::npos) ++exchanges;
    } else {
      ++file_renames;
    }
    // After: the next fsync is the folder that holds the new name.
    std::string next;
    for (std::size_t k = i + 1; k < events.size() && next.empty(); ++k)
      if (events[k].kind == sys_event::fsync) next = events[k].a;
    EXPECT_EQ(absolute(next), to.parent_path()) << "line " << e.line << ": after renaming to " << e.b;
  }
  EXPECT_EQ(file_renames, 2u + 3u + 3u);  // 2 single files, 3 shards twice
  EXPECT_EQ(folder_commits, 2u);
  EXPECT_EQ(exchanges, 1u);  // the second checkpoint save swaps the folders (Linux)
  if (HasFailure()) std::cout << slurp(log);
}

}  // namespace
