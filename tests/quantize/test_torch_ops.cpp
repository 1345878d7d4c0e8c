// quanto-cpp's float sums and HQQ's pow against PyTorch's own (tests/data/torch_ops.safetensors,
// made by tools/make_torch_op_fixtures.py): the same bits, for row, column and full sums of every
// length class, and for pow on tensors whose last elements leave PyTorch's vector loop; and the
// same for PyTorch running several threads (tests/data/torch_threads.safetensors).
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include <quanto/io/safetensors.hpp>
#include <quanto/quantize/optimizers.hpp>
#include <quanto/quantize/qtensor.hpp>
#include <quanto/quantize/torch_sum.hpp>

using namespace quanto;

namespace {
std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }
}  // namespace

TEST(TorchSum, MatchesPyTorchBitForBit) {
  const auto f = io::safetensors_file::open(std::filesystem::path(QUANTO_TEST_DATA_DIR) / "torch_ops.safetensors");
  const auto order =
      f.metadata().at("cpu_capability").rfind("AVX512", 0) == 0 ? torch_sum_order::avx512 : torch_sum_order::avx2;
  const auto cases = nlohmann::json::parse(f.metadata().at("cases"));
  ASSERT_GT(cases.size(), 10u);
  for (const std::string name : cases) {
    SCOPED_TRACE(name);
    const auto& info = f.at(name + ".input");
    const std::int64_t rows = info.shape[0], cols = info.shape[1];
    const auto x = f.read_as<float>(name + ".input", dtype::f32);
    const auto ref_rows = f.read_as<float>(name + ".rows", dtype::f32);
    const auto ref_cols = f.read_as<float>(name + ".cols", dtype::f32);
    const auto ref_all = f.read_as<float>(name + ".all", dtype::f32);
    const auto r = torch_sum_rows(x.data(), rows, cols, order);
    const auto c = torch_sum_cols(x.data(), rows, cols, order);
    for (std::size_t i = 0; i < r.size(); ++i) EXPECT_EQ(bits(r[i]), bits(ref_rows[i])) << "row " << i;
    for (std::size_t i = 0; i < c.size(); ++i) EXPECT_EQ(bits(c[i]), bits(ref_cols[i])) << "column " << i;
    EXPECT_EQ(bits(torch_sum_all(x.data(), rows * cols, order)), bits(ref_all[0]));
  }
}

TEST(TorchSum, OrderMattersSoTheTestCanFail) {
  // A naive left-to-right sum differs from PyTorch's for long rows of mixed magnitudes.
  const auto f = io::safetensors_file::open(std::filesystem::path(QUANTO_TEST_DATA_DIR) / "torch_ops.safetensors");
  const auto x = f.read_as<float>("s11_1x20000.input", dtype::f32);
  float naive = 0.0f;
  for (float v : x) naive += v;
  EXPECT_NE(bits(naive), bits(f.read_as<float>("s11_1x20000.all", dtype::f32)[0]));
}

namespace {
template <class T>
void check_pow(const io::safetensors_file& f, const std::string& name, torch_sum_order order,
               std::size_t& tail_differs) {
  const auto x = f.read_as<T>(name + ".input", dtype_of<T>);
  const auto ref = f.read_as<T>(name + ".output", dtype_of<T>);
  const double py_exponent = 0.7 - 1.0;  // HQQ's lp_norm - 1, a Python float
  const T exponent = model_arith::narrow<T>(static_cast<float>(py_exponent));
  const std::size_t tail = detail::pow_tail_begin<T>(x.size(), order);
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float vec = static_cast<float>(detail::t_pow(x[i], exponent));
    const float ours = i < tail ? vec : detail::t_pow_tail(static_cast<float>(x[i]), py_exponent);
    EXPECT_EQ(bits(ours), bits(static_cast<float>(ref[i]))) << name << "[" << i << "]";
    if (i >= tail && bits(vec) != bits(static_cast<float>(ref[i]))) ++tail_differs;
  }
}
}  // namespace

TEST(TorchPow, MatchesPyTorchIncludingTheScalarTail) {
  const auto f = io::safetensors_file::open(std::filesystem::path(QUANTO_TEST_DATA_DIR) / "torch_ops.safetensors");
  const auto order =
      f.metadata().at("cpu_capability").rfind("AVX512", 0) == 0 ? torch_sum_order::avx512 : torch_sum_order::avx2;
  std::size_t tail_differs = 0;
  for (const std::string name : nlohmann::json::parse(f.metadata().at("pow_cases"))) {
    if (name.starts_with("pow_fp32"))
      check_pow<float>(f, name, order, tail_differs);
    else if (name.starts_with("pow_fp16"))
      check_pow<float16>(f, name, order, tail_differs);
    else
      check_pow<bfloat16>(f, name, order, tail_differs);
  }
  // The tail really takes another path: the vectorized result would be wrong there.
  EXPECT_GT(tail_differs, 0u);
}

// ---- PyTorch's intra-op threads (tests/data/torch_threads.safetensors, made by
// tools/make_torch_thread_fixtures.py). Over 32768 elements PyTorch splits its work between
// threads: full sums become two-pass reductions over per-thread chunks, and each chunk of an
// element-wise op has its own scalar tail. HQQ's early stop compares such sums, so a reference
// quantized with 2 threads can stop at another iteration (MiniLM's layer.4 query weight, qint2).

namespace {
io::safetensors_file open_threads_fixture() {
  return io::safetensors_file::open(std::filesystem::path(QUANTO_TEST_DATA_DIR) / "torch_threads.safetensors");
}

torch_sum_order threads_fixture_order(const io::safetensors_file& f) {
  return f.metadata().at("cpu_capability").rfind("AVX512", 0) == 0 ? torch_sum_order::avx512 : torch_sum_order::avx2;
}

/// The twin of make_torch_thread_fixtures.py's `values`: SplitMix64 of (seed, i), a 24-bit signed
/// integer times 2^-(20 + e), exact in float32.
std::vector<float> splitmix_values(std::uint64_t seed, std::size_t n, bool wide) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t z = seed + (static_cast<std::uint64_t>(i) + 1) * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const auto k = static_cast<std::int64_t>(z >> 40) - (std::int64_t{1} << 23);
    const int e = wide ? static_cast<int>(z & 15) : 8;
    v[i] = static_cast<float>(std::ldexp(static_cast<double>(k), -(20 + e)));
  }
  return v;
}
}  // namespace

TEST(TorchSum, FullSumFollowsPyTorchThreadChunks) {
  const auto f = open_threads_fixture();
  const auto order = threads_fixture_order(f);
  std::size_t thread_dependent = 0;
  for (const std::int64_t n : {32768, 32769, 65543, 147456, 300001}) {
    const auto x = splitmix_values(static_cast<std::uint64_t>(n), static_cast<std::size_t>(n), true);
    const float one = f.read_as<float>("sum.n" + std::to_string(n) + ".t1", dtype::f32)[0];
    EXPECT_EQ(bits(torch_sum_all(x.data(), n, order)), bits(one)) << n;
    for (const int t : {1, 2, 3, 4, 5, 8}) {
      const float ref = f.read_as<float>("sum.n" + std::to_string(n) + ".t" + std::to_string(t), dtype::f32)[0];
      EXPECT_EQ(bits(torch_sum_all(x.data(), n, order, t)), bits(ref)) << n << " elements, " << t << " threads";
      thread_dependent += bits(ref) != bits(one);
    }
  }
  EXPECT_GT(thread_dependent, 0u);  // the thread count really changes PyTorch's sums
}

TEST(TorchSum, RowAndColumnSumsDoNotDependOnPyTorchThreads) {
  const auto f = open_threads_fixture();
  const auto order = threads_fixture_order(f);
  if (order != torch_sum_order::avx2) GTEST_SKIP() << "AVX-512 splits columns at other boundaries";
  for (const auto& [r, c] : {std::pair<std::int64_t, std::int64_t>{1152, 128}, {300, 200}, {64, 1000}}) {
    const auto x = splitmix_values(static_cast<std::uint64_t>(r * c + 7), static_cast<std::size_t>(r * c), true);
    const auto rows = torch_sum_rows(x.data(), r, c, order);
    const auto cols = torch_sum_cols(x.data(), r, c, order);
    const std::string shape = std::to_string(r) + "x" + std::to_string(c);
    for (const int t : {1, 2, 3}) {
      const auto ref_rows = f.read_as<float>("rows." + shape + ".t" + std::to_string(t), dtype::f32);
      const auto ref_cols = f.read_as<float>("cols." + shape + ".t" + std::to_string(t), dtype::f32);
      for (std::size_t i = 0; i < rows.size(); ++i) EXPECT_EQ(bits(rows[i]), bits(ref_rows[i])) << shape << " t" << t;
      for (std::size_t i = 0; i < cols.size(); ++i) EXPECT_EQ(bits(cols[i]), bits(ref_cols[i])) << shape << " t" << t;
    }
  }
}

TEST(TorchPow, ScalarTailAtEveryPyTorchThreadChunk) {
  const auto f = open_threads_fixture();
  const auto order = threads_fixture_order(f);
  const double py_exponent = 0.7 - 1.0;
  const float exponent = static_cast<float>(py_exponent);
  std::size_t tails_inside = 0;
  for (const std::size_t n : {65539u, 100003u}) {
    auto x = splitmix_values(n + 11, n, false);
    for (std::size_t i = 0; i < n; ++i) x[i] = i % 29 == 0 ? 0.0f : std::fabs(x[i]);
    for (const int t : {1, 2, 3}) {
      const std::string name = "pow.n" + std::to_string(n) + ".t" + std::to_string(t);
      const auto index = f.read_as<std::int64_t>(name + ".index", dtype::i64);
      const auto ref = f.read_as<float>(name + ".output", dtype::f32);
      const detail::pow_tail_map<float> in_tail(n, order, t);
      for (std::size_t k = 0; k < index.size(); ++k) {
        const auto i = static_cast<std::size_t>(index[k]);
        const bool tail = in_tail(i);
        const float ours = tail ? detail::t_pow_tail(x[i], py_exponent) : detail::t_pow(x[i], exponent);
        EXPECT_EQ(bits(ours), bits(ref[k])) << name << "[" << i << "]" << (tail ? " (tail)" : "");
        tails_inside += tail && i < detail::pow_tail_begin<float>(n, order);
      }
    }
  }
  EXPECT_GT(tails_inside, 0u);  // some tails sit at chunk ends inside the tensor
}

TEST(HqqOptimizer, MatchesQuantoRunWithSeveralPyTorchThreads) {
  // 256x256 float32, qint2, groups of 128, HqqOptimizer(iters=100): with 2 or 3 threads PyTorch's
  // mean absolute error differs by an ulp at one iteration, and quanto keeps another shift.
  const auto f = open_threads_fixture();
  const auto order = threads_fixture_order(f);
  tensor<float> w(shape{256, 256});
  const auto v = splitmix_values(18, w.size(), false);
  std::copy(v.begin(), v.end(), w.data());
  std::vector<float> one_thread;
  for (const int t : {1, 2, 3}) {
    SCOPED_TRACE(std::to_string(t) + " threads");
    const auto q = quantize_weight<qint2>(w, group_affine<>{},
                                          hqq_optimizer{.iters = 100, .sum_order = order, .torch_threads = t});
    const auto ref_shift = f.read_as<float>("hqq.t" + std::to_string(t) + ".shift", dtype::f32);
    const auto ref_data = f.read_as<std::uint8_t>("hqq.t" + std::to_string(t) + ".data", dtype::u8);
    ASSERT_EQ(q.shift.size(), ref_shift.size());
    ASSERT_EQ(q.packed.size(), ref_data.size());
    std::size_t shift_diff = 0, data_diff = 0;
    for (std::size_t i = 0; i < ref_shift.size(); ++i) shift_diff += bits(q.shift[i]) != bits(ref_shift[i]);
    for (std::size_t i = 0; i < ref_data.size(); ++i) data_diff += q.packed[i] != ref_data[i];
    EXPECT_EQ(shift_diff, 0u);
    EXPECT_EQ(data_diff, 0u);
    if (t == 1)
      one_thread = ref_shift;
    else
      EXPECT_NE(one_thread, ref_shift);  // the case really depends on the thread count
  }
}
