// One translation unit of the ODR test, compiled twice with different -march flags (see
// CMakeLists.txt): ODR_TU_NAME names its entry point. Both copies instantiate the same kernel
// templates; the per-target inline namespace must keep them apart at link time.
#include <cstdint>
#include <string>
#include <vector>

#include <quanto/kernels/matmul.hpp>

namespace qk = quanto::kernels;

std::string ODR_TU_NAME(const qk::packed_weight<quanto::qint4, quanto::bfloat16>& w, const std::vector<float>& x,
                        std::vector<float>& y) {
  qk::matmul(w, x.data(), 1, w.k, y.data(), w.n);
  return std::string(qk::native_isa::name);
}
