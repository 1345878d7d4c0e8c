// tests/kernels/matmul_support.hpp: weights and activations for the kernel tests, a float64
// reference computed from the FILE layout (so a kernel-layout bug cannot hide), and the error bound
// float32 accumulation is held to.
#pragma once

#ifndef KT_NO_GTEST  // the NEON check runs under qemu without GoogleTest
#include <gtest/gtest.h>
#endif

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <quanto/kernels/matmul.hpp>
#include <quanto/quanto.hpp>

#include "../support/random_weight.hpp"

namespace kt {

using namespace quanto;
namespace qk = quanto::kernels;

using quanto_test::random_weight;

template <class X>
std::vector<X> random_x(std::int64_t count, unsigned seed, float sigma = 1.0f) {
  std::vector<X> x(static_cast<std::size_t>(count));
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  for (auto& v : x) v = X(d(rng));
  return x;
}

template <class X>
double to_double(X v) {
  if constexpr (std::is_same_v<X, float>)
    return v;
  else
    return static_cast<double>(to_float(v));
}

/// The exact value of every weight element, [n][k] row-major, in float64, from the file layout:
/// scale * code (8-bit), scale * q - shift or scale * (q - zero_point) (2/4-bit).
template <class W>
std::vector<double> exact_weight(const W& w) {
  using Q = typename W::qtype;
  const std::int64_t n = w.shape()[0], k = w.shape().numel() / n;
  std::vector<double> out(static_cast<std::size_t>(n * k));
  if constexpr (ByteQType<Q>) {
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t e = 0; e < k; ++e) {
        const double s = to_double(w.scale[w.axis == qaxis::none ? 0 : static_cast<std::size_t>(r)]);
        const auto c = w.data[static_cast<std::size_t>(r * k + e)];
        double v;
        if constexpr (FloatQType<Q>)
          v = static_cast<double>(to_float(c));
        else
          v = static_cast<double>(c);
        out[static_cast<std::size_t>(r * k + e)] = s * v;
      }
  } else {
    const tensor<std::uint8_t> q = w.unpack();  // grouped rows are consecutive runs of k
    const std::int64_t gs = w.group_size ? *w.group_size : k;
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t e = 0; e < k; ++e) {
        const auto gi = static_cast<std::size_t>((r * k + e) / gs);
        const double s = to_double(w.scale[gi]);
        const double code = q[static_cast<std::size_t>(r * k + e)];
        if constexpr (std::is_same_v<typename W::shift_type, std::uint8_t>)
          out[static_cast<std::size_t>(r * k + e)] = s * (code - static_cast<double>(w.shift[gi]));
        else
          out[static_cast<std::size_t>(r * k + e)] = s * code - to_double(w.shift[gi]);
      }
  }
  return out;
}

/// The float64 product and, per output, the magnitude that bounds float32 rounding error:
/// sum_e |x_e| * (|scale * code_e| + |shift|) + |bias|.
struct reference_result {
  std::vector<double> y, magnitude;
};

template <class W, class X>
reference_result reference_matmul(const W& w, const std::vector<X>& x, std::int64_t m, const float* bias) {
  const std::int64_t n = w.shape()[0], k = w.shape().numel() / n;
  const std::vector<double> dq = exact_weight(w);
  std::vector<double> shift_abs(static_cast<std::size_t>(n * k), 0.0);
  if constexpr (LowBitQType<typename W::qtype>) {
    const std::int64_t gs = w.group_size ? *w.group_size : k;
    for (std::int64_t i = 0; i < n * k; ++i) {
      const auto gi = static_cast<std::size_t>(i / gs);
      if constexpr (std::is_same_v<typename W::shift_type, std::uint8_t>)
        shift_abs[static_cast<std::size_t>(i)] = std::fabs(to_double(w.scale[gi]) * w.shift[gi]);
      else
        shift_abs[static_cast<std::size_t>(i)] = std::fabs(to_double(w.shift[gi]));
    }
  }
  reference_result out{std::vector<double>(static_cast<std::size_t>(m * n)),
                       std::vector<double>(static_cast<std::size_t>(m * n))};
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t r = 0; r < n; ++r) {
      double acc = bias ? bias[r] : 0.0, mag = bias ? std::fabs(bias[r]) : 0.0;
      for (std::int64_t e = 0; e < k; ++e) {
        const double xv = to_double(x[static_cast<std::size_t>(i * k + e)]);
        const auto we = static_cast<std::size_t>(r * k + e);
        acc += xv * dq[we];
        mag += std::fabs(xv) * (std::fabs(dq[we]) + 2.0 * shift_abs[we]);
      }
      out.y[static_cast<std::size_t>(i * n + r)] = acc;
      out.magnitude[static_cast<std::size_t>(i * n + r)] = mag;
    }
  return out;
}

/// Float32 accumulation of k terms in any order, plus the group and epilogue steps: the classic
/// bound gamma_k = k * 2^-24 (over the magnitude), with room for the per-group steps.
inline double float_bound(std::int64_t k, double magnitude) {
  return static_cast<double>(k + 16) * std::ldexp(1.0, -24) * magnitude + 1e-30;
}

/// Quantizes a random weight with qtype Q and scheme S, for model dtype T.
template <class Q, class T, class S = default_scheme_t<Q>>
auto make_weight(std::int64_t n, std::int64_t k, unsigned seed, S scheme = {}) {
  const tensor<T> f = random_weight<T>(n, k, seed);
  return quantize_weight<Q>(f, scheme);
}

/// qk::matmul on ISA I, compiled only where I is usable (typed tests skip the others at run time).
template <class P, class I, class... A>
void matmul_on(A&&... a) {
  if constexpr (qk::UsableIsa<I>) qk::matmul<P, I>(std::forward<A>(a)...);
}
template <class QX, class I, class... A>
void matmul_quantized_on(A&&... a) {
  if constexpr (qk::UsableIsa<I>) qk::matmul_quantized<QX, I>(std::forward<A>(a)...);
}

/// The ISAs this build and this CPU can run, for typed tests.
template <class I>
bool runnable() {
  return qk::runnable<I>();
}

#ifndef KT_NO_GTEST
template <class List>
struct gtest_types;
template <class... I>
struct gtest_types<quanto::type_list<I...>> {
  using type = ::testing::Types<I...>;
};

/// The typed kernel tests run on every ISA of core/isa.hpp's list: each runs where this build and
/// CPU can, and skips with a message elsewhere (the NEON kernels also have a check under qemu).
using TestIsas = typename gtest_types<qk::isa_list>::type;

/// Base of the typed kernel tests: skips, and says so, an ISA this build or CPU cannot run;
/// prints the ISAs that do run.
template <class I>
class IsaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!runnable<I>()) GTEST_SKIP() << "ISA " << I::name << " is not compiled in or not supported by this CPU";
    std::printf("[ running ISA %s ]\n", std::string(I::name).c_str());
  }
};
#endif

}  // namespace kt
