// One translation unit of the ODR test, compiled twice with different -march flags (see
// CMakeLists.txt): ODR_TU_NAME names its entry point. Both copies instantiate the same quantizer,
// packing and kernel templates; the per-target inline namespace must keep them apart at link time.
#include <cstdint>
#include <string>
#include <vector>

#include <quanto/kernels/matmul.hpp>
#include <quanto/quanto.hpp>

namespace qk = quanto::kernels;

std::string ODR_TU_NAME(const qk::packed_weight<quanto::qint4, quanto::bfloat16>& w, const std::vector<float>& x,
                        std::vector<float>& y) {
  qk::matmul(w, x.data(), 1, w.k, y.data(), w.n);
  return std::string(qk::native_isa::name);
}

// Quantizes, packs and runs a weight all inside this TU: the quantizers' and pack_weight's code is
// then compiled under this TU's flags (the symbol check in CMakeLists.txt finds one copy per target).
#define ODR_CAT2(a, b) a##b
#define ODR_CAT(a, b) ODR_CAT2(a, b)
std::vector<float> ODR_CAT(ODR_TU_NAME, _quantize_pack)(const quanto::tensor<quanto::bfloat16>& weight,
                                                        const std::vector<float>& x) {
  const auto q = quanto::quantize_weight<quanto::qint4>(weight.view());
  const auto p = qk::pack_weight(q);
  std::vector<float> y(static_cast<std::size_t>(p.n));
  qk::matmul<qk::dynamic_int8_activations>(p, x.data(), 1, p.k, y.data(), p.n);
  return y;
}
