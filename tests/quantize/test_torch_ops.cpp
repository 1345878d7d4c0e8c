// quanto-cpp's float sums and HQQ's pow against PyTorch's own (tests/data/torch_ops.safetensors,
// made by tools/make_torch_op_fixtures.py): the same bits, for row, column and full sums of every
// length class, and for pow on tensors whose last elements leave PyTorch's vector loop.
#include <gtest/gtest.h>

#include <bit>
#include <filesystem>
#include <nlohmann/json.hpp>

#include <quanto/io/safetensors.hpp>
#include <quanto/quantize/optimizers.hpp>
#include <quanto/quantize/torch_sum.hpp>

using namespace quanto;

namespace {
std::uint32_t bits(float f) { return std::bit_cast<std::uint32_t>(f); }
}  // namespace

TEST(TorchSum, MatchesPyTorchBitForBit) {
  const auto f = io::safetensors_file::open(std::filesystem::path(QUANTO_TEST_DATA_DIR) / "torch_ops.safetensors");
  const auto order = f.metadata().at("cpu_capability").rfind("AVX512", 0) == 0 ? torch_sum_order::avx512
                                                                                : torch_sum_order::avx2;
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
void check_pow(const io::safetensors_file& f, const std::string& name, torch_sum_order order, std::size_t& tail_differs) {
  const auto x = f.read_as<T>(name + ".input", dtype_of<T>);
  const auto ref = f.read_as<T>(name + ".output", dtype_of<T>);
  const double py_exponent = 0.7 - 1.0;  // HQQ's lp_norm - 1, a Python float
  const T exponent = detail::narrow<T>(static_cast<float>(py_exponent));
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
  const auto order = f.metadata().at("cpu_capability").rfind("AVX512", 0) == 0 ? torch_sum_order::avx512
                                                                                : torch_sum_order::avx2;
  std::size_t tail_differs = 0;
  for (const std::string name : nlohmann::json::parse(f.metadata().at("pow_cases"))) {
    if (name.starts_with("pow_fp32")) check_pow<float>(f, name, order, tail_differs);
    else if (name.starts_with("pow_fp16")) check_pow<float16>(f, name, order, tail_differs);
    else check_pow<bfloat16>(f, name, order, tail_differs);
  }
  // The tail really takes another path: the vectorized result would be wrong there.
  EXPECT_GT(tail_differs, 0u);
}
