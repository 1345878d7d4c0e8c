// Links a baseline x86-64 translation unit and an AVX2 one that both use the kernels: each must
// run its own ISA (no ODR merge of the two bodies), and a weight packed in one works in the other.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "../matmul_support.hpp"

std::string odr_baseline(const quanto::kernels::packed_weight<quanto::qint4, quanto::bfloat16>&,
                         const std::vector<float>&, std::vector<float>&);
std::string odr_avx2(const quanto::kernels::packed_weight<quanto::qint4, quanto::bfloat16>&, const std::vector<float>&,
                     std::vector<float>&);
std::vector<float> odr_baseline_quantize_pack(const quanto::tensor<quanto::bfloat16>&, const std::vector<float>&);
std::vector<float> odr_avx2_quantize_pack(const quanto::tensor<quanto::bfloat16>&, const std::vector<float>&);

TEST(IsaOdr, TwoTargetsLinkAndEachRunsItsOwnKernels) {
  using namespace kt;
  const auto w = make_weight<qint4, bfloat16>(37, 512, 1);
  const auto p = qk::pack_weight(w);  // packed in a third TU (this one, -march=native)
  const std::vector<float> x = random_x<float>(512, 2);
  std::vector<float> y0(37), y1(37);
  EXPECT_EQ(odr_baseline(p, x, y0), "scalar");
  if (!qk::cpu_supports<qk::isa::avx2>()) GTEST_SKIP() << "this CPU has no AVX2: only the baseline TU was run";
  EXPECT_EQ(odr_avx2(p, x, y1), "avx2");
  const auto ref = reference_matmul(w, x, 1, nullptr);
  for (std::size_t i = 0; i < y0.size(); ++i) {
    EXPECT_NEAR(y0[i], ref.y[i], float_bound(512, ref.magnitude[i]));
    EXPECT_NEAR(y1[i], ref.y[i], float_bound(512, ref.magnitude[i]));
  }
}

// Quantizing and packing in each TU, then the dynamic matmul there: pack_weight and the quantizers'
// runs are compiled once per target (the symbol checks in CMakeLists.txt fail if the copies share a
// name); the quantizers' front ends in quanto:: are not (docs/kernels.md, "ISAs"), so on an AVX2 CPU
// this checks the numbers, not which copy ran. Both give the reference's numbers up to float32
// rounding (the TUs' flags differ, so the compiler may contract the reference's a * b + c).
TEST(IsaOdr, QuantizersAndPackingRunPerTarget) {
  using namespace kt;
  const tensor<bfloat16> f = random_weight<bfloat16>(19, 256, 3);
  const std::vector<float> x = random_x<float>(256, 4);
  const auto q = quantize_weight<qint4>(f.view());
  const auto p = qk::pack_weight(q);
  std::vector<float> ref(19);
  qk::matmul<qk::dynamic_int8_activations, qk::isa::scalar>(p, x.data(), 1, 256, ref.data(), 19);
  const auto bound = reference_matmul(q, x, 1, nullptr);
  const std::vector<float> y0 = odr_baseline_quantize_pack(f, x);
  ASSERT_EQ(y0.size(), ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(y0[i], ref[i], float_bound(256, bound.magnitude[i])) << i;
  if (!qk::cpu_supports<qk::isa::avx2>()) GTEST_SKIP() << "this CPU has no AVX2: only the baseline TU was run";
  const std::vector<float> y1 = odr_avx2_quantize_pack(f, x);
  ASSERT_EQ(y1.size(), ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) EXPECT_NEAR(y1[i], ref[i], float_bound(256, bound.magnitude[i])) << i;
}
