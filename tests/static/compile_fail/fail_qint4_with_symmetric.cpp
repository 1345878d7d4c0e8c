// Must not compile: qint4 needs a scale and a shift (group_affine).
#include <quanto/quanto.hpp>
int main() {
  quanto::tensor<float> w(quanto::shape{4, 4});
  auto q = quanto::quantize_weight<quanto::qint4>(w, quanto::symmetric{});
  (void)q;
}
