// Must not compile: int is not a qtype.
#include <quanto/quanto.hpp>
int main() {
  quanto::tensor<float> w(quanto::shape{4, 4});
  auto q = quanto::quantize_weight<int>(w);
  (void)q;
}
