// Must not compile: qint8 is symmetric; group_affine is for qint2/qint4.
#include <quanto/quanto.hpp>
int main() {
  quanto::tensor<float> w(quanto::shape{4, 4});
  auto q = quanto::quantize_weight<quanto::qint8>(w, quanto::group_affine<>{});
  (void)q;
}
