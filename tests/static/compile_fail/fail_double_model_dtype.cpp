// Must not compile: double is not a model dtype (float, float16, bfloat16).
#include <quanto/quanto.hpp>
int main() {
  quanto::tensor<double> w(quanto::shape{4, 4});
  auto q = quanto::quantize_weight<quanto::qint8>(w.view());
  (void)q;
}
