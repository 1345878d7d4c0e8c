// The NEON (dot-product) kernels against the scalar reference and the float64 product, built with an
// AArch64 cross compiler and run under qemu-aarch64 by ctest (tests/kernels/CMakeLists.txt), where
// both are installed. No GoogleTest: it prints each failure and exits non-zero.
#define KT_NO_GTEST
#include <cstdio>
#include <cstring>

#include "../matmul_support.hpp"

namespace {

using namespace kt;
int failures = 0;

void fail(const std::string& what) {
  if (++failures <= 20) std::printf("FAIL %s\n", what.c_str());
}

template <class Q, class T, class S = default_scheme_t<Q>>
void check(std::int64_t m, std::int64_t n, std::int64_t k, S scheme = {}) {
  const std::string id =
      std::string(Q::name) + " m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k);
  const auto w = make_weight<Q, T>(n, k, static_cast<unsigned>(n * 31 + k), scheme);
  const auto p = qk::pack_weight(w);
  const std::vector<float> x = random_x<float>(m * k, static_cast<unsigned>(m + 5));
  const auto ref = reference_matmul(w, x, m, nullptr);
  std::vector<float> y(static_cast<std::size_t>(m * n)), ys(y.size());
  qk::matmul<qk::exact_activations, qk::isa::neon_dot>(p, x.data(), m, k, y.data(), n);
  for (std::size_t i = 0; i < y.size(); ++i)
    if (std::fabs(y[i] - ref.y[i]) > float_bound(k, ref.magnitude[i]))
      fail("exact " + id + " output " + std::to_string(i));
  if constexpr (IntegerQType<Q>) {
    qk::matmul<qk::dynamic_int8_activations, qk::isa::neon_dot>(p, x.data(), m, k, y.data(), n);
    qk::matmul<qk::dynamic_int8_activations, qk::isa::scalar>(p, x.data(), m, k, ys.data(), n);
    for (std::size_t i = 0; i < y.size(); ++i)
      if (std::fabs(y[i] - ys[i]) > float_bound(k, ref.magnitude[i]))
        fail("dynamic " + id + " output " + std::to_string(i));
  }
  if constexpr (std::is_same_v<Q, qint8>) {
    std::vector<std::int8_t> xq(static_cast<std::size_t>(m * k));
    std::mt19937 rng(static_cast<unsigned>(k));
    for (auto& v : xq) v = static_cast<std::int8_t>(static_cast<int>(rng() % 256) - 128);
    qk::matmul_quantized<qint8, qk::isa::neon_dot>(p, xq.data(), 0.5f, m, k, y.data(), n);
    qk::matmul_quantized<qint8, qk::isa::scalar>(p, xq.data(), 0.5f, m, k, ys.data(), n);
    if (std::memcmp(y.data(), ys.data(), y.size() * sizeof(float)) != 0) fail("w8a8 not bit-identical " + id);
  }
}

}  // namespace

int main() {
  std::printf("native ISA: %s, CPU has dotprod: %d\n", std::string(qk::native_isa::name).c_str(),
              static_cast<int>(qk::cpu_supports<qk::isa::neon_dot>()));
  if (!qk::cpu_supports<qk::isa::neon_dot>()) {
    std::printf("SKIP: no dot-product extension on this CPU\n");
    return 0;
  }
  for (auto [m, n, k] :
       {std::tuple<int, int, int>{1, 1, 1}, {1, 5, 33}, {3, 17, 200}, {5, 9, 256}, {2, 33, 384}, {4, 8, 130}}) {
    check<qint8, float>(m, n, k);
    check<qint8, bfloat16>(m, n, k);
    check<qfloat8_e4m3fn, bfloat16>(m, n, k);
    check<qfloat8_e5m2, float>(m, n, k);
    check<qfloat8_e4m3fnuz, float16>(m, n, k);
    check<qint4, bfloat16>(m, n, k);
    check<qint4, float>(m, n, k, group_affine<true>{});
    check<qint2, bfloat16>(m, n, k);
  }
  check<qint4, bfloat16>(3, 12, 768, group_affine<>{32});
  check<qint4, bfloat16>(3, 12, 768, group_affine<>{96});
  check<qint2, bfloat16>(3, 12, 768, group_affine<>{64});
  check<qint2, bfloat16>(3, 12, 768, group_affine<>{32});  // not a multiple of 64: the reference runs it
  std::printf("%s: %d failures\n", failures ? "FAILED" : "PASSED", failures);
  return failures ? 1 : 0;
}
