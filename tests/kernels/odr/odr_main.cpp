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
