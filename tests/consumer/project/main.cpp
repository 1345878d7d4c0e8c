// Uses the installed headers: quantize a small weight to qint4 and check the round trip.
#include <quanto/quanto.hpp>

#include <cmath>
#include <cstdio>

int main() {
  quanto::tensor<float> w(quanto::shape{8, 256});
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = std::sin(0.1f * static_cast<float>(i));
  const auto q = quanto::quantize_weight<quanto::qint4>(w);
  const auto dq = q.dequantize();
  float worst = 0;
  for (std::size_t i = 0; i < w.size(); ++i) worst = std::fmax(worst, std::fabs(dq[i] - w[i]));
  std::printf("consumer: qint4 group %lld, max abs error %g\n", static_cast<long long>(*q.group_size), worst);
  return worst <= 2.0f / 15.0f ? 0 : 1;  // half a step of the widest possible group range
}
