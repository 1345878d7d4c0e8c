// Must not compile: the absmax optimizer is symmetric (quanto: "shift must be specified").
#include <quanto/quanto.hpp>
int main() {
  quanto::tensor<float> w(quanto::shape{4, 4});
  auto q = quanto::quantize_weight<quanto::qint4>(w, quanto::group_affine<>{}, quanto::absmax_optimizer{});
  (void)q;
}
