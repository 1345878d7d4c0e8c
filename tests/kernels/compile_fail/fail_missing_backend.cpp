// Must not compile: avx512_vnni is in the ISA list but has no kernels, so reaching its backend (the
// one door to ISA code) fails with quanto's static_assert rather than an obscure lookup error.
#include <cstdint>

#include <quanto/kernels/matmul.hpp>

int main() {
  float x[32] = {};
  std::int8_t q[32];
  std::int32_t sum = 0;
  return static_cast<int>(quanto::kernels::backend<quanto::kernels::isa::avx512_vnni>::quantize_block(x, 32, q, sum));
}
