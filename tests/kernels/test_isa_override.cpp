// QUANTO_KERNEL_ISA overrides the compile-time choice: this TU is built with
// -DQUANTO_KERNEL_ISA=scalar on an AVX2 build, and its default matmul must be the reference's.
#include <gtest/gtest.h>

#include <cstring>

#include "matmul_support.hpp"

namespace {

using namespace kt;

TEST(IsaOverride, MacroSelectsTheNamedIsa) {
  static_assert(std::is_same_v<qk::native_isa, qk::isa::scalar>, "QUANTO_KERNEL_ISA=scalar was not honoured");
  const auto p = qk::pack_weight(make_weight<qint4, bfloat16>(17, 512, 1));
  const std::vector<float> x = random_x<float>(3 * 512, 2);
  std::vector<float> y_default(3 * 17), y_scalar(3 * 17);
  qk::matmul(p, x.data(), 3, 512, y_default.data(), 17);
  qk::matmul<qk::exact_activations, qk::isa::scalar>(p, x.data(), 3, 512, y_scalar.data(), 17);
  EXPECT_EQ(0, std::memcmp(y_default.data(), y_scalar.data(), y_default.size() * sizeof(float)));
  std::printf("[ native ISA with QUANTO_KERNEL_ISA=scalar: %s (the compiler targets %s) ]\n",
              std::string(qk::native_isa::name).c_str(), std::string(qk::target_isa::name).c_str());
}

}  // namespace
