// Must not compile: the max optimizer is affine (quanto: "shift cannot be specified").
#include <quanto/quanto.hpp>
int main() {
  quanto::tensor<float> w(quanto::shape{4, 4});
  auto q = quanto::quantize_weight<quanto::qint8>(w, quanto::symmetric{}, quanto::max_optimizer{});
  (void)q;
}
