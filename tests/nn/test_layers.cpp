// The float modules (Linear, Conv2d, LayerNorm, ReLU, GELU, Softmax) against independent
// double-precision references written here as naive loops: forward values; backward gradients
// against central finite differences taken on those double references (not on the float modules,
// whose rounding would swamp the differences); gradient accumulation and zero_grad; the
// training-mode state backward needs; shape and unsupported-configuration errors; cross_entropy;
// sgd with and without momentum on a Sequential; float16 / bfloat16 Linear forwards.
//
// Only the float-module headers are included (not quanto/nn.hpp and nn_support.hpp): the test does
// not need the quantized modules, it compiles much faster without them, and qmodules.hpp does not
// build with clang 14 (a lambda capturing structured bindings), which the sanitizer build uses.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <functional>
#include <iomanip>
#include <limits>
#include <map>
#include <numbers>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "quanto/nn/layers.hpp"
#include "quanto/nn/train.hpp"
#include "quanto/nn/tree.hpp"

namespace {
using namespace quanto;
using dvec = std::vector<double>;
using i64 = std::int64_t;

namespace nt {
/// Uniform values in [lo, hi), rounded to T (as tests/nn/nn_support.hpp's nt::random).
template <class T = float>
tensor<T> random(quanto::shape s, std::uint64_t seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  tensor<T> t(s);
  for (auto& v : t) v = quanto::model_arith::narrow<T>(u(rng));
  return t;
}
}  // namespace nt

std::size_t sz(i64 v) { return static_cast<std::size_t>(v); }

template <class T>
double dbl(T v) {
  return static_cast<double>(quanto::model_arith::widen(v));
}

template <class T>
dvec to_d(const tensor<T>& t) {
  dvec out(t.size());
  for (std::size_t i = 0; i < t.size(); ++i) out[i] = dbl(t[i]);
  return out;
}

double dot(const dvec& a, const dvec& b) {
  double s = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

double max_abs(const dvec& v) {
  double m = 0.0;
  for (double e : v) m = std::max(m, std::abs(e));
  return m;
}

/// d loss / d v by central differences (v is perturbed in place and restored).
dvec numeric_grad(dvec& v, const std::function<double()>& loss, double h = 1e-5) {
  dvec g(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    const double keep = v[i];
    v[i] = keep + h;
    const double up = loss();
    v[i] = keep - h;
    const double down = loss();
    v[i] = keep;
    g[i] = (up - down) / (2.0 * h);
  }
  return g;
}

/// |got[i] - ref[i]| <= tol[i] for every i (NaN fails); reports the first few offenders.
::testing::AssertionResult within(const dvec& got, const dvec& ref, const dvec& tol) {
  if (got.size() != ref.size() || got.size() != tol.size())
    return ::testing::AssertionFailure() << "size mismatch: got " << got.size() << ", ref " << ref.size() << ", tol "
                                         << tol.size();
  std::ostringstream msg;
  msg << std::setprecision(10);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double err = std::abs(got[i] - ref[i]);
    if (!(err <= tol[i])) {
      if (bad < 6)
        msg << "\n  [" << i << "] got " << got[i] << ", ref " << ref[i] << ", err " << err << ", tol " << tol[i];
      ++bad;
    }
  }
  if (bad)
    return ::testing::AssertionFailure() << bad << " of " << got.size() << " elements out of tolerance" << msg.str();
  return ::testing::AssertionSuccess();
}

/// The forward tolerance: rel · (Σ |terms|) + abs, per element.
dvec forward_tol(const dvec& mag, double rel = 1e-5, double abs = 1e-6) {
  dvec t(mag.size());
  for (std::size_t i = 0; i < mag.size(); ++i) t[i] = rel * mag[i] + abs;
  return t;
}

/// The gradient tolerance: rtol relative, with a floor of rtol/10 of the largest reference element
/// (float32 cancellation in elements that are nearly zero).
dvec grad_tol(const dvec& ref, double rtol = 1e-3) {
  const double floor = 0.1 * rtol * max_abs(ref);
  dvec t(ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) t[i] = rtol * std::abs(ref[i]) + floor + 1e-9;
  return t;
}

dvec zeros_like(const dvec& v) { return dvec(v.size(), 0.0); }

/// The gradients a module accumulated, by parameter name (copies).
template <class M>
std::map<std::string, tensor<float>> grads_of(M& m) {
  std::map<std::string, tensor<float>> out;
  m.for_each_parameter([&](std::string_view name, auto&, tensor<float>& g) { out.emplace(std::string(name), g); });
  return out;
}

template <class M>
std::vector<std::string> parameter_names(M& m) {
  std::vector<std::string> out;
  m.for_each_parameter([&](std::string_view name, auto&, tensor<float>&) { out.emplace_back(name); });
  return out;
}

// ---- double references ------------------------------------------------------------------------------

/// Outputs and, per output, the sum of the magnitudes of the terms that made it.
struct ref_out {
  dvec y, mag;
};

/// y[r, j] = Σ_e x[r, e] w[j, e] + b[j]; x [rows, in], w [out, in].
ref_out linear_ref(const dvec& x, const dvec& w, const dvec* b, i64 in, i64 out) {
  const std::size_t rows = x.size() / sz(in);
  ref_out r{dvec(rows * sz(out)), dvec(rows * sz(out))};
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < sz(out); ++j) {
      double s = b ? (*b)[j] : 0.0;
      double m = std::abs(s);
      for (std::size_t e = 0; e < sz(in); ++e) {
        const double t = x[i * sz(in) + e] * w[j * sz(in) + e];
        s += t;
        m += std::abs(t);
      }
      r.y[i * sz(out) + j] = s;
      r.mag[i * sz(out) + j] = m;
    }
  return r;
}

/// One convolution configuration: input [n, c, h, w], weight [o, c, kh, kw].
struct conv_case {
  i64 n, c, h, w;
  i64 o, kh, kw;
  i64 sh, sw, ph, pw, dh, dw;
  bool bias;

  kernels::conv2d_params params() const {
    return {.stride_h = sh, .stride_w = sw, .pad_h = ph, .pad_w = pw, .dilation_h = dh, .dilation_w = dw};
  }
  i64 oh() const { return (h + 2 * ph - dh * (kh - 1) - 1) / sh + 1; }
  i64 ow() const { return (w + 2 * pw - dw * (kw - 1) - 1) / sw + 1; }
  quanto::shape input_shape() const { return {n, c, h, w}; }
  quanto::shape weight_shape() const { return {o, c, kh, kw}; }
  quanto::shape output_shape() const { return {n, o, oh(), ow()}; }
  std::string describe() const {
    std::ostringstream s;
    s << "input [" << n << "," << c << "," << h << "," << w << "] weight [" << o << "," << c << "," << kh << "," << kw
      << "] stride (" << sh << "," << sw << ") pad (" << ph << "," << pw << ") dilation (" << dh << "," << dw
      << ") bias " << bias;
    return s.str();
  }
};

/// PyTorch's cross-correlation, directly from its definition.
ref_out conv_ref(const dvec& x, const dvec& w, const dvec* b, const conv_case& k) {
  const i64 OH = k.oh(), OW = k.ow();
  const std::size_t total = sz(k.n * k.o * OH * OW);
  ref_out r{dvec(total), dvec(total)};
  for (i64 n = 0; n < k.n; ++n)
    for (i64 o = 0; o < k.o; ++o)
      for (i64 oy = 0; oy < OH; ++oy)
        for (i64 ox = 0; ox < OW; ++ox) {
          double s = b ? (*b)[sz(o)] : 0.0;
          double m = std::abs(s);
          for (i64 c = 0; c < k.c; ++c)
            for (i64 i = 0; i < k.kh; ++i)
              for (i64 j = 0; j < k.kw; ++j) {
                const i64 iy = oy * k.sh - k.ph + i * k.dh;
                const i64 ix = ox * k.sw - k.pw + j * k.dw;
                if (iy < 0 || iy >= k.h || ix < 0 || ix >= k.w) continue;
                const double t =
                    x[sz(((n * k.c + c) * k.h + iy) * k.w + ix)] * w[sz(((o * k.c + c) * k.kh + i) * k.kw + j)];
                s += t;
                m += std::abs(t);
              }
          const std::size_t at = sz(((n * k.o + o) * OH + oy) * OW + ox);
          r.y[at] = s;
          r.mag[at] = m;
        }
  return r;
}

/// Layer norm over rows of n: (x - mean) / √(var + eps) · w + b, var biased.
ref_out layer_norm_ref(const dvec& x, i64 n, const dvec* w, const dvec* b, double eps) {
  const std::size_t N = sz(n), rows = x.size() / N;
  ref_out r{dvec(x.size()), dvec(x.size())};
  for (std::size_t row = 0; row < rows; ++row) {
    const double* xr = x.data() + row * N;
    double mean = 0.0;
    for (std::size_t j = 0; j < N; ++j) mean += xr[j];
    mean /= static_cast<double>(N);
    double var = 0.0;
    for (std::size_t j = 0; j < N; ++j) var += (xr[j] - mean) * (xr[j] - mean);
    var /= static_cast<double>(N);
    const double rstd = 1.0 / std::sqrt(var + eps);
    for (std::size_t j = 0; j < N; ++j) {
      const double wj = w ? (*w)[j] : 1.0, bj = b ? (*b)[j] : 0.0;
      r.y[row * N + j] = (xr[j] - mean) * rstd * wj + bj;
      r.mag[row * N + j] = (std::abs(xr[j]) + std::abs(mean)) * rstd * std::abs(wj) + std::abs(bj);
    }
  }
  return r;
}

double gelu_ref(double x, bool tanh_form) {
  if (tanh_form) {
    const double k = std::sqrt(2.0 / std::numbers::pi);
    return 0.5 * x * (1.0 + std::tanh(k * (x + 0.044715 * x * x * x)));
  }
  return 0.5 * x * (1.0 + std::erf(x / std::numbers::sqrt2));
}

dvec gelu_ref(const dvec& x, bool tanh_form) {
  dvec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = gelu_ref(x[i], tanh_form);
  return y;
}

dvec softmax_ref(const dvec& x, i64 n) {
  const std::size_t N = sz(n), rows = x.size() / N;
  dvec y(x.size());
  for (std::size_t r = 0; r < rows; ++r) {
    double mx = -std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < N; ++j) mx = std::max(mx, x[r * N + j]);
    double sum = 0.0;
    for (std::size_t j = 0; j < N; ++j) sum += (y[r * N + j] = std::exp(x[r * N + j] - mx));
    for (std::size_t j = 0; j < N; ++j) y[r * N + j] /= sum;
  }
  return y;
}

dvec relu_ref(const dvec& x) {
  dvec y(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) y[i] = x[i] > 0.0 ? x[i] : 0.0;
  return y;
}

std::optional<tensor<float>> maybe(bool on, const tensor<float>& t) {
  return on ? std::optional<tensor<float>>(t) : std::nullopt;
}

// ---- Linear ---------------------------------------------------------------------------------------

TEST(NnLinear, ForwardMatchesDoubleReference) {
  const i64 in = 7, out = 5;
  const auto w = nt::random<float>({out, in}, 1);
  const auto b = nt::random<float>({out}, 2);
  const auto x = nt::random<float>({2, 3, in}, 3, -2.0f, 2.0f);
  for (bool with_bias : {false, true}) {
    SCOPED_TRACE(with_bias ? "bias" : "no bias");
    nn::Linear<float> lin(w, maybe(with_bias, b));
    EXPECT_EQ(lin.in_features(), in);
    EXPECT_EQ(lin.out_features(), out);
    EXPECT_EQ(lin.has_bias(), with_bias);
    const tensor<float> y = lin.forward(x).value;
    ASSERT_EQ(y.shape(), (quanto::shape{2, 3, out}));
    const dvec bd = to_d(b);
    const ref_out r = linear_ref(to_d(x), to_d(w), with_bias ? &bd : nullptr, in, out);
    EXPECT_TRUE(within(to_d(y), r.y, forward_tol(r.mag)));
  }
}

void check_linear_backward(bool with_bias) {
  const i64 in = 7, out = 5;
  const auto w = nt::random<float>({out, in}, 11);
  const auto b = nt::random<float>({out}, 12);
  const auto x = nt::random<float>({2, 3, in}, 13);
  const auto g = nt::random<float>({2, 3, out}, 14);
  nn::Linear<float> lin(w, maybe(with_bias, b));
  lin.train(true);
  (void)lin.forward(x);
  const tensor<float> gx = lin.backward(g);
  ASSERT_EQ(gx.shape(), x.shape());

  dvec xd = to_d(x), wd = to_d(w), bd = to_d(b);
  const dvec gd = to_d(g);
  auto loss = [&] { return dot(gd, linear_ref(xd, wd, with_bias ? &bd : nullptr, in, out).y); };
  const dvec ref_x = numeric_grad(xd, loss), ref_w = numeric_grad(wd, loss);
  EXPECT_TRUE(within(to_d(gx), ref_x, grad_tol(ref_x))) << "input gradient";

  const auto grads = grads_of(lin);
  ASSERT_EQ(grads.count("weight"), 1u);
  ASSERT_EQ(grads.at("weight").shape(), w.shape());
  EXPECT_TRUE(within(to_d(grads.at("weight")), ref_w, grad_tol(ref_w))) << "weight gradient";
  if (with_bias) {
    const dvec ref_b = numeric_grad(bd, loss);
    ASSERT_EQ(grads.count("bias"), 1u);
    ASSERT_EQ(grads.at("bias").shape(), b.shape());
    EXPECT_TRUE(within(to_d(grads.at("bias")), ref_b, grad_tol(ref_b))) << "bias gradient";
  } else {
    EXPECT_EQ(grads.count("bias"), 0u);
  }
}

TEST(NnLinear, BackwardMatchesFiniteDifferencesWithBias) { check_linear_backward(true); }
TEST(NnLinear, BackwardMatchesFiniteDifferencesWithoutBias) { check_linear_backward(false); }

TEST(NnLinear, ParameterNamesFollowPyTorch) {
  std::mt19937_64 rng(5);
  nn::Linear<float> with(4, 3, rng), without(4, 3, rng, false);
  EXPECT_EQ(parameter_names(with), (std::vector<std::string>{"weight", "bias"}));
  EXPECT_EQ(parameter_names(without), (std::vector<std::string>{"weight"}));
  // PyTorch's default init: U(-1/√in, 1/√in)
  for (float v : with.weight()) EXPECT_LE(std::abs(v), 0.5f);
  ASSERT_NE(with.bias(), nullptr);
  for (float v : *with.bias()) EXPECT_LE(std::abs(v), 0.5f);
  EXPECT_EQ(without.bias(), nullptr);
}

// ---- Conv2d ---------------------------------------------------------------------------------------

void check_conv_forward(const conv_case& k, std::uint64_t seed) {
  SCOPED_TRACE(k.describe());
  const auto w = nt::random<float>(k.weight_shape(), seed);
  const auto b = nt::random<float>({k.o}, seed + 1);
  const auto x = nt::random<float>(k.input_shape(), seed + 2, -2.0f, 2.0f);
  nn::Conv2d<float> conv(w, maybe(k.bias, b), k.params());
  EXPECT_EQ(conv.in_channels(), k.c);
  EXPECT_EQ(conv.out_channels(), k.o);
  const tensor<float> y = conv.forward(x).value;
  ASSERT_EQ(y.shape(), k.output_shape());
  const dvec bd = to_d(b);
  const ref_out r = conv_ref(to_d(x), to_d(w), k.bias ? &bd : nullptr, k);
  EXPECT_TRUE(within(to_d(y), r.y, forward_tol(r.mag)));
}

TEST(NnConv2d, ForwardMatchesDoubleReference) {
  const conv_case cases[] = {
      // n  c  h  w   o kh kw  sh sw ph pw dh dw bias
      {2, 3, 7, 6, 5, 3, 2, 1, 1, 0, 0, 1, 1, true},  {2, 3, 7, 6, 5, 3, 2, 2, 1, 1, 0, 1, 1, true},
      {2, 3, 7, 6, 5, 3, 2, 1, 1, 0, 2, 2, 1, false},  // first output column sees only padding
      {2, 3, 9, 8, 5, 3, 2, 2, 3, 1, 1, 2, 2, true},  {2, 3, 5, 6, 4, 1, 1, 2, 2, 0, 0, 1, 1, true},
      {1, 2, 4, 4, 3, 4, 4, 1, 1, 0, 0, 1, 1, true},  // kernel as large as the image: one output pixel
  };
  std::uint64_t seed = 100;
  for (const auto& k : cases) check_conv_forward(k, seed += 10);
}

void check_conv_backward(const conv_case& k, std::uint64_t seed) {
  SCOPED_TRACE(k.describe());
  const auto w = nt::random<float>(k.weight_shape(), seed);
  const auto b = nt::random<float>({k.o}, seed + 1);
  const auto x = nt::random<float>(k.input_shape(), seed + 2);
  const auto g = nt::random<float>(k.output_shape(), seed + 3);
  nn::Conv2d<float> conv(w, maybe(k.bias, b), k.params());
  conv.train(true);
  ASSERT_EQ(conv.forward(x).value.shape(), k.output_shape());
  const tensor<float> gx = conv.backward(g);
  ASSERT_EQ(gx.shape(), x.shape());

  dvec xd = to_d(x), wd = to_d(w), bd = to_d(b);
  const dvec gd = to_d(g);
  auto loss = [&] { return dot(gd, conv_ref(xd, wd, k.bias ? &bd : nullptr, k).y); };
  const dvec ref_x = numeric_grad(xd, loss), ref_w = numeric_grad(wd, loss);
  EXPECT_TRUE(within(to_d(gx), ref_x, grad_tol(ref_x))) << "input gradient";

  const auto grads = grads_of(conv);
  ASSERT_EQ(grads.count("weight"), 1u);
  ASSERT_EQ(grads.at("weight").shape(), w.shape());
  EXPECT_TRUE(within(to_d(grads.at("weight")), ref_w, grad_tol(ref_w))) << "weight gradient";
  if (k.bias) {
    const dvec ref_b = numeric_grad(bd, loss);
    ASSERT_EQ(grads.count("bias"), 1u);
    EXPECT_TRUE(within(to_d(grads.at("bias")), ref_b, grad_tol(ref_b))) << "bias gradient";
  } else {
    EXPECT_EQ(grads.count("bias"), 0u);
  }
}

TEST(NnConv2d, BackwardMatchesFiniteDifferencesPlain) {
  check_conv_backward({2, 3, 7, 6, 5, 3, 2, 1, 1, 0, 0, 1, 1, true}, 200);
}

TEST(NnConv2d, BackwardMatchesFiniteDifferencesStride2Pad1Dilation2) {
  // rows and columns 0, 2, 4, ... are never read (their input gradient must be zero)
  const conv_case k{2, 3, 8, 9, 4, 3, 3, 2, 2, 1, 1, 2, 2, true};
  check_conv_backward(k, 300);
  const auto w = nt::random<float>(k.weight_shape(), 1);
  nn::Conv2d<float> conv(w, std::nullopt, k.params());
  conv.train(true);
  (void)conv.forward(nt::random<float>(k.input_shape(), 2));
  const tensor<float> gx = conv.backward(nt::random<float>(k.output_shape(), 3));
  for (i64 n = 0; n < k.n; ++n)
    for (i64 c = 0; c < k.c; ++c)
      for (i64 y = 0; y < k.h; y += 2)
        for (i64 x = 0; x < k.w; ++x) EXPECT_EQ(gx[sz(((n * k.c + c) * k.h + y) * k.w + x)], 0.0f);
}

TEST(NnConv2d, BackwardMatchesFiniteDifferencesMixedStrideNoBias) {
  check_conv_backward({2, 3, 7, 6, 5, 3, 2, 2, 1, 0, 1, 1, 2, false}, 400);
}

// ---- LayerNorm -------------------------------------------------------------------------------------

struct ln_case {
  bool affine, bias;
  float eps;
};

TEST(NnLayerNorm, DefaultsArePyTorchs) {
  nn::LayerNorm<float> ln(6);
  EXPECT_EQ(ln.normalized_size(), 6);
  EXPECT_EQ(ln.eps(), 1e-5f);
  ASSERT_NE(ln.weight(), nullptr);
  ASSERT_NE(ln.bias(), nullptr);
  for (float v : *ln.weight()) EXPECT_EQ(v, 1.0f);
  for (float v : *ln.bias()) EXPECT_EQ(v, 0.0f);
  EXPECT_EQ(parameter_names(ln), (std::vector<std::string>{"weight", "bias"}));
  nn::LayerNorm<float> plain(6, 1e-5f, false);
  EXPECT_EQ(plain.weight(), nullptr);
  EXPECT_EQ(plain.bias(), nullptr);
  EXPECT_TRUE(parameter_names(plain).empty());
  nn::LayerNorm<float> no_bias(6, 1e-5f, true, false);
  EXPECT_NE(no_bias.weight(), nullptr);
  EXPECT_EQ(no_bias.bias(), nullptr);
  EXPECT_EQ(parameter_names(no_bias), (std::vector<std::string>{"weight"}));
}

TEST(NnLayerNorm, ForwardMatchesDoubleReference) {
  const i64 n = 8;
  const ln_case cases[] = {{true, true, 1e-3f}, {true, true, 0.1f}, {true, false, 1e-5f}, {false, false, 1e-5f}};
  // an offset, so that the mean matters; one row nearly constant, so that eps matters
  auto x = nt::random<float>({2, 3, n}, 31, -1.0f, 3.0f);
  for (i64 j = 0; j < n; ++j) x[sz(n + j)] = 2.0f + 0.01f * static_cast<float>(j);
  const auto w = nt::random<float>({n}, 32, 0.5f, 1.5f);
  const auto b = nt::random<float>({n}, 33);
  for (const auto& c : cases) {
    SCOPED_TRACE(::testing::Message() << "affine " << c.affine << " bias " << c.bias << " eps " << c.eps);
    nn::LayerNorm<float> ln(n, c.eps, c.affine, c.bias);
    if (c.affine) *ln.weight() = w;
    if (c.bias) *ln.bias() = b;
    const tensor<float> y = ln.forward(x).value;
    ASSERT_EQ(y.shape(), x.shape());
    const dvec wd = to_d(w), bd = to_d(b);
    const ref_out r =
        layer_norm_ref(to_d(x), n, c.affine ? &wd : nullptr, c.bias ? &bd : nullptr, static_cast<double>(c.eps));
    EXPECT_TRUE(within(to_d(y), r.y, forward_tol(r.mag)));
  }
}

void check_layer_norm_backward(const ln_case& c, std::uint64_t seed) {
  SCOPED_TRACE(::testing::Message() << "affine " << c.affine << " bias " << c.bias << " eps " << c.eps);
  const i64 n = 8;
  const auto x = nt::random<float>({2, 3, n}, seed, -1.0f, 3.0f);
  const auto w = nt::random<float>({n}, seed + 1, 0.5f, 1.5f);
  const auto b = nt::random<float>({n}, seed + 2);
  const auto g = nt::random<float>({2, 3, n}, seed + 3);
  nn::LayerNorm<float> ln(n, c.eps, c.affine, c.bias);
  if (c.affine) *ln.weight() = w;
  if (c.bias) *ln.bias() = b;
  ln.train(true);
  (void)ln.forward(x);
  const tensor<float> gx = ln.backward(g);
  ASSERT_EQ(gx.shape(), x.shape());

  dvec xd = to_d(x), wd = to_d(w), bd = to_d(b);
  const dvec gd = to_d(g);
  const double eps = static_cast<double>(c.eps);
  auto loss = [&] { return dot(gd, layer_norm_ref(xd, n, c.affine ? &wd : nullptr, c.bias ? &bd : nullptr, eps).y); };
  const dvec ref_x = numeric_grad(xd, loss);
  EXPECT_TRUE(within(to_d(gx), ref_x, grad_tol(ref_x))) << "input gradient";
  const auto grads = grads_of(ln);
  if (c.affine) {
    const dvec ref_w = numeric_grad(wd, loss);
    ASSERT_EQ(grads.count("weight"), 1u);
    EXPECT_TRUE(within(to_d(grads.at("weight")), ref_w, grad_tol(ref_w))) << "weight gradient";
  }
  if (c.bias) {
    const dvec ref_b = numeric_grad(bd, loss);
    ASSERT_EQ(grads.count("bias"), 1u);
    EXPECT_TRUE(within(to_d(grads.at("bias")), ref_b, grad_tol(ref_b))) << "bias gradient";
  }
  EXPECT_EQ(grads.size(), static_cast<std::size_t>(c.affine) + static_cast<std::size_t>(c.bias));
}

TEST(NnLayerNorm, BackwardMatchesFiniteDifferences) {
  check_layer_norm_backward({true, true, 1e-3f}, 500);
  check_layer_norm_backward({true, false, 0.1f}, 510);
  check_layer_norm_backward({false, false, 1e-5f}, 520);
}

// ---- element-wise ----------------------------------------------------------------------------------

tensor<float> gelu_input() {
  auto x = nt::random<float>({4, 25}, 41, -6.0f, 6.0f);
  const float special[] = {0.0f, -0.75f, 1e-4f, -1e-4f, 3.0f, -3.0f, 2.0f, -2.0f, 0.5f, -0.5f};
  for (std::size_t i = 0; i < std::size(special); ++i) x[i] = special[i];
  return x;
}

TEST(NnGELU, ForwardMatchesFormulaInDouble) {
  const auto x = gelu_input();
  const dvec xd = to_d(x);
  for (bool tanh_form : {false, true}) {
    SCOPED_TRACE(tanh_form ? "tanh" : "erf");
    nn::GELU<float> gelu(tanh_form);
    const tensor<float> y = gelu.forward(x).value;
    ASSERT_EQ(y.shape(), x.shape());
    const dvec ref = gelu_ref(xd, tanh_form);
    dvec tol(ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) tol[i] = 1e-6 * (std::abs(xd[i]) + std::abs(ref[i])) + 1e-12;
    EXPECT_TRUE(within(to_d(y), ref, tol));
    // the two forms differ by far more than this tolerance somewhere in the input (up to about
    // 1e-4 near |x| = 2), so each check really tells the form asked for from the other
    const dvec other = gelu_ref(xd, !tanh_form);
    double separation = 0.0;
    for (std::size_t i = 0; i < ref.size(); ++i)
      separation = std::max(separation, std::abs(other[i] - ref[i]) / tol[i]);
    EXPECT_GT(separation, 10.0);
  }
}

TEST(NnGELU, BackwardMatchesFiniteDifferences) {
  const auto x = gelu_input();
  const auto g = nt::random<float>(x.shape(), 42);
  for (bool tanh_form : {false, true}) {
    SCOPED_TRACE(tanh_form ? "tanh" : "erf");
    nn::GELU<float> gelu(tanh_form);
    gelu.train(true);
    (void)gelu.forward(x);
    const tensor<float> gx = gelu.backward(g);
    ASSERT_EQ(gx.shape(), x.shape());
    dvec xd = to_d(x);
    const dvec gd = to_d(g);
    const dvec ref = numeric_grad(xd, [&] { return dot(gd, gelu_ref(xd, tanh_form)); });
    EXPECT_TRUE(within(to_d(gx), ref, grad_tol(ref)));
  }
}

// functional::erf_fast (GELU's erf) against erf in double: a sweep over the float bit patterns of
// [-6, 6] (every 31st pattern, and every pattern near where its two fits meet and near where it
// reaches 1), in ulps of the reference's float binade and absolutely.
TEST(NnGELU, ErfFastErrorBoundOverFloatSweep) {
  double max_ulp = 0.0, max_abs = 0.0;
  float worst = 0.0f;
  std::size_t count = 0, not_odd = 0;
  auto check = [&](float x) {
    ++count;
    const double ref = std::erf(static_cast<double>(x));
    const float got = nn::functional::erf_fast(x);
    if (!(nn::functional::erf_fast(-x) == -got)) ++not_odd;
    const float fref = static_cast<float>(std::abs(ref));
    const double ulp =
        fref < std::numeric_limits<float>::min() ? std::ldexp(1.0, -149) : std::ldexp(1.0, std::ilogb(fref) - 23);
    const double err = std::abs(static_cast<double>(got) - ref);
    if (err / ulp > max_ulp) {
      max_ulp = err / ulp;
      worst = x;
    }
    max_abs = std::max(max_abs, err);
  };
  const auto bits = [](float v) { return std::bit_cast<std::uint32_t>(v); };
  for (std::uint32_t b = 0; b <= bits(6.0f); b += 31) check(std::bit_cast<float>(b));
  for (float centre : {0.921875f, 3.92f})
    for (std::uint32_t b = bits(centre) - (1u << 17); b <= bits(centre) + (1u << 17); ++b)
      check(std::bit_cast<float>(b));
  EXPECT_GT(count, std::size_t{35'000'000});
  EXPECT_EQ(not_odd, 0u);
  // measured over every float in [-6, 6]: 1.13 ulp, 6.7e-8 with FMA; 1.44 ulp, 8.6e-8 without
  EXPECT_LE(max_ulp, 1.5) << "at x = " << worst;
  EXPECT_LE(max_abs, 1e-7);
}

TEST(NnGELU, ErfFastSpecialValues) {
  using nn::functional::erf_fast;
  constexpr float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isnan(erf_fast(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(erf_fast(-std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(erf_fast(inf), 1.0f);
  EXPECT_EQ(erf_fast(-inf), -1.0f);
  EXPECT_EQ(erf_fast(0.0f), 0.0f);
  EXPECT_FALSE(std::signbit(erf_fast(0.0f)));
  EXPECT_EQ(erf_fast(-0.0f), 0.0f);
  EXPECT_TRUE(std::signbit(erf_fast(-0.0f)));
  for (float big : {3.93f, 4.0f, 10.0f, 1e30f, std::numeric_limits<float>::max()}) {
    EXPECT_EQ(erf_fast(big), 1.0f) << big;
    EXPECT_EQ(erf_fast(-big), -1.0f) << big;
  }
  const float tiny = std::numeric_limits<float>::denorm_min() * 1000.0f;
  EXPECT_EQ(erf_fast(tiny), static_cast<float>(std::erf(static_cast<double>(tiny))));
  // the GELU built on it (gelu(-inf) is NaN, -inf · 0, as PyTorch's)
  EXPECT_EQ(nn::functional::gelu(inf), inf);
  EXPECT_EQ(nn::functional::gelu(-10.0f), -0.0f);
  EXPECT_TRUE(std::isnan(nn::functional::gelu(std::numeric_limits<float>::quiet_NaN())));
}

// functional::exp_nonpositive (the erf's tail, softmax scores) against exp in double, every 31st
// float bit pattern of [-87, 0], and its edges.
TEST(NnFunctional, ExpNonpositiveErrorBoundAndEdges) {
  using nn::functional::exp_nonpositive;
  double max_ulp = 0.0;
  float worst = 0.0f;
  const auto bits = [](float v) { return std::bit_cast<std::uint32_t>(v); };
  for (std::uint32_t b = bits(-0.0f); b <= bits(-87.0f); b += 31) {
    const float y = std::bit_cast<float>(b);
    const double ref = std::exp(static_cast<double>(y));
    const double ulp = std::ldexp(1.0, std::ilogb(static_cast<float>(ref)) - 23);
    const double err = std::abs(static_cast<double>(exp_nonpositive(y)) - ref) / ulp;
    if (err > max_ulp) {
      max_ulp = err;
      worst = y;
    }
  }
  // measured over every float in [-87, 0]: 1.05 ulp with FMA, 1.34 without
  EXPECT_LE(max_ulp, 1.5) << "at y = " << worst;
  constexpr float inf = std::numeric_limits<float>::infinity();
  EXPECT_EQ(exp_nonpositive(0.0f), 1.0f);
  EXPECT_EQ(exp_nonpositive(-0.0f), 1.0f);
  EXPECT_FLOAT_EQ(exp_nonpositive(-1.0f), static_cast<float>(std::exp(-1.0)));
  EXPECT_EQ(exp_nonpositive(-87.5f), 0.0f);
  EXPECT_EQ(exp_nonpositive(-1e30f), 0.0f);
  EXPECT_EQ(exp_nonpositive(-inf), 0.0f);
  EXPECT_TRUE(std::isnan(exp_nonpositive(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(exp_nonpositive(5.0f), 1.0f);  // outside the range: clamped to 0
}

TEST(NnSoftmax, ForwardRowsSumToOneAndMatchDouble) {
  const i64 n = 7;
  auto x = nt::random<float>({3, 4, n}, 51, -4.0f, 4.0f);
  for (i64 j = 0; j < n; ++j) x[sz(j)] += 100.0f;  // exp(100) overflows float: needs the max subtracted
  nn::Softmax<float> sm;
  const tensor<float> y = sm.forward(x).value;
  ASSERT_EQ(y.shape(), x.shape());
  const dvec ref = softmax_ref(to_d(x), n);
  dvec tol(ref.size());
  for (std::size_t i = 0; i < ref.size(); ++i) tol[i] = 4e-6 * ref[i] + 1e-9;
  EXPECT_TRUE(within(to_d(y), ref, tol));
  for (std::size_t r = 0; r < y.size() / sz(n); ++r) {
    double s = 0.0;
    for (std::size_t j = 0; j < sz(n); ++j) s += dbl(y[r * sz(n) + j]);
    EXPECT_NEAR(s, 1.0, 2e-6) << "row " << r;
  }
}

TEST(NnSoftmax, BackwardMatchesFiniteDifferences) {
  const i64 n = 6;
  const auto x = nt::random<float>({2, 3, n}, 52, -3.0f, 3.0f);
  const auto g = nt::random<float>(x.shape(), 53);
  nn::Softmax<float> sm;
  sm.train(true);
  (void)sm.forward(x);
  const tensor<float> gx = sm.backward(g);
  ASSERT_EQ(gx.shape(), x.shape());
  dvec xd = to_d(x);
  const dvec gd = to_d(g);
  const dvec ref = numeric_grad(xd, [&] { return dot(gd, softmax_ref(xd, n)); });
  EXPECT_TRUE(within(to_d(gx), ref, grad_tol(ref)));
}

TEST(NnReLU, ForwardIsMaxWithZeroAndKeepsNaN) {
  auto x = nt::random<float>({3, 10}, 61);
  x[0] = std::numeric_limits<float>::quiet_NaN();
  x[1] = 0.0f;
  x[2] = -std::numeric_limits<float>::infinity();
  x[3] = std::numeric_limits<float>::infinity();
  nn::ReLU<float> relu;
  const tensor<float> y = relu.forward(x).value;
  ASSERT_EQ(y.shape(), x.shape());
  EXPECT_TRUE(std::isnan(y[0]));
  for (std::size_t i = 1; i < x.size(); ++i) EXPECT_EQ(y[i], x[i] > 0.0f ? x[i] : 0.0f) << i;
}

TEST(NnReLU, BackwardMatchesFiniteDifferencesAwayFromZero) {
  auto x = nt::random<float>({3, 10}, 62);
  for (auto& v : x) v = v >= 0.0f ? v + 0.05f : v - 0.05f;
  const auto g = nt::random<float>(x.shape(), 63);
  nn::ReLU<float> relu;
  relu.train(true);
  (void)relu.forward(x);
  const tensor<float> gx = relu.backward(g);
  ASSERT_EQ(gx.shape(), x.shape());
  dvec xd = to_d(x);
  const dvec gd = to_d(g);
  const dvec ref = numeric_grad(xd, [&] { return dot(gd, relu_ref(xd)); });
  EXPECT_TRUE(within(to_d(gx), ref, grad_tol(ref)));
  std::size_t passed = 0;
  for (std::size_t i = 0; i < x.size(); ++i) passed += x[i] > 0.0f;
  EXPECT_GT(passed, 0u);
  EXPECT_LT(passed, x.size());
}

// ---- a chain through Sequential -----------------------------------------------------------------------

TEST(NnSequential, ChainedBackwardMatchesFiniteDifferences) {
  const auto w0 = nt::random<float>({6, 7}, 71), b0 = nt::random<float>({6}, 72);
  const auto w1 = nt::random<float>({4, 6}, 73), b1 = nt::random<float>({4}, 74);
  const auto x = nt::random<float>({5, 7}, 75, -2.0f, 2.0f);
  const auto g = nt::random<float>({5, 4}, 76);
  nn::Sequential<float> seq(nn::Linear<float>(w0, b0), nn::GELU<float>(), nn::LayerNorm<float>(6),
                            nn::Linear<float>(w1, b1));
  std::vector<std::string> names;
  nn::for_each_parameter<float>(
      seq, [&](const std::string& name, tensor<float>&, tensor<float>&) { names.push_back(name); });
  EXPECT_EQ(names, (std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"}));

  nn::train<float>(seq, true);
  const tensor<float> y = seq.forward(x).value;
  const tensor<float> gx = seq.backward(g);
  ASSERT_EQ(y.shape(), (quanto::shape{5, 4}));
  ASSERT_EQ(gx.shape(), x.shape());

  dvec xd = to_d(x), w0d = to_d(w0);
  const dvec b0d = to_d(b0), w1d = to_d(w1), b1d = to_d(b1), gd = to_d(g);
  auto chain = [&] {
    const dvec h = gelu_ref(linear_ref(xd, w0d, &b0d, 7, 6).y, false);
    return linear_ref(layer_norm_ref(h, 6, nullptr, nullptr, 1e-5).y, w1d, &b1d, 6, 4).y;
  };
  const dvec ref_y = chain();
  dvec tol(ref_y.size());
  for (std::size_t i = 0; i < ref_y.size(); ++i) tol[i] = 1e-4 * (std::abs(ref_y[i]) + 1.0);
  EXPECT_TRUE(within(to_d(y), ref_y, tol)) << "forward";

  auto loss = [&] { return dot(gd, chain()); };
  const dvec ref_x = numeric_grad(xd, loss), ref_w0 = numeric_grad(w0d, loss);
  EXPECT_TRUE(within(to_d(gx), ref_x, grad_tol(ref_x))) << "input gradient";
  std::optional<tensor<float>> gw0;
  nn::for_each_parameter<float>(seq, [&](const std::string& name, tensor<float>&, tensor<float>& gr) {
    if (name == "0.weight") gw0 = gr;
  });
  ASSERT_TRUE(gw0.has_value());
  EXPECT_TRUE(within(to_d(*gw0), ref_w0, grad_tol(ref_w0))) << "first weight gradient";

  nn::zero_grad<float>(seq);
  nn::for_each_parameter<float>(seq, [&](const std::string& name, tensor<float>& v, tensor<float>& gr) {
    EXPECT_EQ(gr.size(), v.size()) << name;
    for (float e : gr) EXPECT_EQ(e, 0.0f) << name;
  });
}

// ---- accumulation, zero_grad, training state ---------------------------------------------------------

template <class M>
void check_accumulation(M& m, const tensor<float>& x, const tensor<float>& g) {
  EXPECT_NO_THROW(m.zero_grad());  // before any gradient exists
  m.train(true);
  (void)m.forward(x);
  const tensor<float> gx1 = m.backward(g);
  const auto once = grads_of(m);
  ASSERT_FALSE(once.empty());
  const tensor<float> gx2 = m.backward(g);  // the cached input is still there
  EXPECT_TRUE(within(to_d(gx2), to_d(gx1), zeros_like(to_d(gx1)))) << "the input gradient does not accumulate";
  const auto twice = grads_of(m);
  ASSERT_EQ(twice.size(), once.size());
  for (const auto& [name, g1] : once) {
    dvec ref = to_d(g1);
    for (double& v : ref) v *= 2.0;
    const double big = max_abs(ref);
    ASSERT_GT(big, 0.0) << name;
    dvec tol(ref.size());
    for (std::size_t i = 0; i < ref.size(); ++i) tol[i] = 1e-5 * (std::abs(ref[i]) + big);
    EXPECT_TRUE(within(to_d(twice.at(name)), ref, tol)) << name << " after two backward calls";
  }
  m.zero_grad();
  for (const auto& [name, gz] : grads_of(m)) {
    EXPECT_EQ(gz.shape(), once.at(name).shape()) << name;
    for (float v : gz) EXPECT_EQ(v, 0.0f) << name;
  }
  (void)m.backward(g);
  for (const auto& [name, g3] : grads_of(m))
    EXPECT_TRUE(within(to_d(g3), to_d(once.at(name)), zeros_like(to_d(g3)))) << name << " after zero_grad";
}

TEST(NnTraining, LinearGradientsAccumulateAndZeroGradClears) {
  nn::Linear<float> lin(nt::random<float>({5, 7}, 81), nt::random<float>({5}, 82));
  check_accumulation(lin, nt::random<float>({4, 7}, 83), nt::random<float>({4, 5}, 84));
}

TEST(NnTraining, Conv2dGradientsAccumulateAndZeroGradClears) {
  const conv_case k{2, 3, 8, 9, 4, 3, 3, 2, 2, 1, 1, 2, 2, true};
  nn::Conv2d<float> conv(nt::random<float>(k.weight_shape(), 85), nt::random<float>({k.o}, 86), k.params());
  check_accumulation(conv, nt::random<float>(k.input_shape(), 87), nt::random<float>(k.output_shape(), 88));
}

TEST(NnTraining, LayerNormGradientsAccumulateAndZeroGradClears) {
  nn::LayerNorm<float> ln(8);
  *ln.weight() = nt::random<float>({8}, 89, 0.5f, 1.5f);
  *ln.bias() = nt::random<float>({8}, 90);
  check_accumulation(ln, nt::random<float>({3, 8}, 91), nt::random<float>({3, 8}, 92));
}

/// backward needs a forward in training mode; train(false) drops what it cached.
template <class M>
void check_needs_training_forward(M m, const tensor<float>& x, const tensor<float>& g) {
  EXPECT_THROW((void)m.backward(g), state_error) << "no forward yet";
  (void)m.forward(x);
  EXPECT_THROW((void)m.backward(g), state_error) << "forward in evaluation mode";
  m.train(true);
  (void)m.forward(x);
  EXPECT_NO_THROW((void)m.backward(g));
  m.train(false);
  EXPECT_THROW((void)m.backward(g), state_error) << "after train(false)";
  m.train(true);
  EXPECT_THROW((void)m.backward(g), state_error) << "train(true) alone restores nothing";
}

TEST(NnTraining, BackwardNeedsATrainingForward) {
  {
    SCOPED_TRACE("Linear");
    check_needs_training_forward(nn::Linear<float>(nt::random<float>({5, 7}, 1), nt::random<float>({5}, 2)),
                                 nt::random<float>({4, 7}, 3), nt::random<float>({4, 5}, 4));
  }
  {
    SCOPED_TRACE("Conv2d");
    const conv_case k{1, 2, 5, 5, 3, 3, 3, 1, 1, 1, 1, 1, 1, true};
    check_needs_training_forward(
        nn::Conv2d<float>(nt::random<float>(k.weight_shape(), 5), nt::random<float>({k.o}, 6), k.params()),
        nt::random<float>(k.input_shape(), 7), nt::random<float>(k.output_shape(), 8));
  }
  const auto x = nt::random<float>({3, 8}, 9), g = nt::random<float>({3, 8}, 10);
  {
    SCOPED_TRACE("LayerNorm");
    check_needs_training_forward(nn::LayerNorm<float>(8), x, g);
  }
  {
    SCOPED_TRACE("ReLU");
    check_needs_training_forward(nn::ReLU<float>(), x, g);
  }
  {
    SCOPED_TRACE("GELU");
    check_needs_training_forward(nn::GELU<float>(), x, g);
  }
  {
    SCOPED_TRACE("Softmax");
    check_needs_training_forward(nn::Softmax<float>(), x, g);
  }
}

// ---- errors ------------------------------------------------------------------------------------------

TEST(NnErrors, LinearShapes) {
  EXPECT_THROW(nn::Linear<float>(nt::random<float>({5}, 1)), shape_error);
  EXPECT_THROW(nn::Linear<float>(nt::random<float>({5, 7}, 1), nt::random<float>({4}, 2)), shape_error);
  nn::Linear<float> lin(nt::random<float>({5, 7}, 1), nt::random<float>({5}, 2));
  EXPECT_THROW((void)lin.forward(nt::random<float>({4, 6}, 3)), shape_error);
  EXPECT_THROW((void)lin.forward(nt::random<float>({2, 7, 4}, 3)), shape_error);
  lin.train(true);
  (void)lin.forward(nt::random<float>({4, 7}, 3));
  EXPECT_THROW((void)lin.backward(nt::random<float>({4, 6}, 4)), shape_error) << "wrong last dimension";
  EXPECT_THROW((void)lin.backward(nt::random<float>({3, 5}, 4)), shape_error) << "fewer rows than the input";
  EXPECT_THROW((void)lin.backward(nt::random<float>({6, 5}, 4)), shape_error) << "more rows than the input";
  EXPECT_THROW((void)lin.backward(nt::random<float>({2, 2, 5}, 4)), shape_error) << "same count, other shape";
  // the failed calls left no gradient behind, and a right one still works
  for (const auto& [name, gr] : grads_of(lin))
    for (float v : gr) EXPECT_EQ(v, 0.0f) << name;
  EXPECT_EQ(lin.backward(nt::random<float>({4, 5}, 4)).shape(), (quanto::shape{4, 7}));
}

TEST(NnErrors, Conv2dShapesAndGroups) {
  const conv_case k{2, 3, 7, 6, 5, 3, 2, 1, 1, 0, 0, 1, 1, true};
  EXPECT_THROW(nn::Conv2d<float>(nt::random<float>({5, 3, 3}, 1)), shape_error);
  EXPECT_THROW(nn::Conv2d<float>(nt::random<float>(k.weight_shape(), 1), nt::random<float>({4}, 2)), shape_error);
  kernels::conv2d_params grouped = k.params();
  grouped.groups = 3;
  EXPECT_THROW(nn::Conv2d<float>(nt::random<float>(k.weight_shape(), 1), std::nullopt, grouped), unsupported_error);
  std::mt19937_64 rng(3);
  EXPECT_THROW(nn::Conv2d<float>(3, 6, 3, rng, grouped), unsupported_error);

  nn::Conv2d<float> conv(nt::random<float>(k.weight_shape(), 1), nt::random<float>({k.o}, 2), k.params());
  EXPECT_THROW((void)conv.forward(nt::random<float>({2, 2, 7, 6}, 3)), shape_error) << "channels";
  EXPECT_THROW((void)conv.forward(nt::random<float>({3, 7, 6}, 3)), shape_error) << "rank";
  EXPECT_THROW((void)conv.forward(nt::random<float>({2, 3, 2, 6}, 3)), shape_error) << "smaller than the kernel";
  conv.train(true);
  (void)conv.forward(nt::random<float>(k.input_shape(), 3));
  const quanto::shape good = k.output_shape();
  std::vector<i64> dims(good.dims().begin(), good.dims().end());
  dims[3] += 1;
  EXPECT_THROW((void)conv.backward(nt::random<float>(quanto::shape(std::span<const i64>(dims)), 4)), shape_error);
  EXPECT_NO_THROW((void)conv.backward(nt::random<float>(k.output_shape(), 4)));
}

TEST(NnErrors, LayerNormAndElementwiseShapes) {
  EXPECT_THROW(nn::LayerNorm<float>(0), shape_error);
  nn::LayerNorm<float> ln(8);
  EXPECT_THROW((void)ln.forward(nt::random<float>({3, 7}, 1)), shape_error);
  ln.train(true);
  (void)ln.forward(nt::random<float>({3, 8}, 1));
  EXPECT_THROW((void)ln.backward(nt::random<float>({3, 7}, 2)), shape_error);
  EXPECT_THROW((void)ln.backward(nt::random<float>({4, 8}, 2)), shape_error);

  const auto x = nt::random<float>({3, 8}, 3), g = nt::random<float>({3, 7}, 4);
  nn::ReLU<float> relu;
  nn::GELU<float> gelu;
  nn::Softmax<float> sm;
  relu.train(true);
  gelu.train(true);
  sm.train(true);
  (void)relu.forward(x);
  (void)gelu.forward(x);
  (void)sm.forward(x);
  EXPECT_THROW((void)relu.backward(g), shape_error);
  EXPECT_THROW((void)gelu.backward(g), shape_error);
  EXPECT_THROW((void)sm.backward(g), shape_error);
}

// ---- cross_entropy and sgd -------------------------------------------------------------------------------

TEST(NnTrain, CrossEntropyMatchesDoubleReference) {
  auto logits = nt::random<float>({4, 5}, 101, -3.0f, 3.0f);
  logits[7] = 200.0f;  // would overflow a float exp
  const std::vector<i64> labels{0, 3, 4, 1};
  const auto out = nn::cross_entropy<float>(logits.view(), labels);
  ASSERT_EQ(out.grad.shape(), logits.shape());

  const dvec l = to_d(logits);
  const dvec p = softmax_ref(l, 5);
  double loss = 0.0;
  dvec grad(l.size());
  for (std::size_t i = 0; i < 4; ++i) {
    double mx = -std::numeric_limits<double>::infinity();
    for (std::size_t j = 0; j < 5; ++j) mx = std::max(mx, l[i * 5 + j]);
    double s = 0.0;
    for (std::size_t j = 0; j < 5; ++j) s += std::exp(l[i * 5 + j] - mx);
    const auto y = static_cast<std::size_t>(labels[i]);
    loss += mx + std::log(s) - l[i * 5 + y];
    for (std::size_t j = 0; j < 5; ++j) grad[i * 5 + j] = (p[i * 5 + j] - (j == y ? 1.0 : 0.0)) / 4.0;
  }
  loss /= 4.0;
  EXPECT_NEAR(out.loss, loss, 1e-12 * (1.0 + std::abs(loss)));
  dvec tol(grad.size());
  for (std::size_t i = 0; i < grad.size(); ++i) tol[i] = 1.2e-7 * std::abs(grad[i]) + 1e-30;
  EXPECT_TRUE(within(to_d(out.grad), grad, tol));
  // and against finite differences of the double loss
  dvec ld = l;
  auto ce = [&] {
    double s = 0.0;
    for (std::size_t i = 0; i < 4; ++i) {
      double mx = -std::numeric_limits<double>::infinity();
      for (std::size_t j = 0; j < 5; ++j) mx = std::max(mx, ld[i * 5 + j]);
      double z = 0.0;
      for (std::size_t j = 0; j < 5; ++j) z += std::exp(ld[i * 5 + j] - mx);
      s += mx + std::log(z) - ld[i * 5 + static_cast<std::size_t>(labels[i])];
    }
    return s / 4.0;
  };
  const dvec fd = numeric_grad(ld, ce);
  EXPECT_TRUE(within(to_d(out.grad), fd, grad_tol(fd)));
}

TEST(NnTrain, CrossEntropyRejectsBadLabelsAndShapes) {
  const auto logits = nt::random<float>({2, 3}, 102);
  const std::vector<i64> negative{0, -1}, too_big{3, 0}, too_few{1};
  EXPECT_THROW((void)nn::cross_entropy<float>(logits.view(), negative), value_error);
  EXPECT_THROW((void)nn::cross_entropy<float>(logits.view(), too_big), value_error);
  EXPECT_THROW((void)nn::cross_entropy<float>(logits.view(), too_few), shape_error);
  const auto flat = nt::random<float>({6}, 103);
  const std::vector<i64> six(6, 0);
  EXPECT_THROW((void)nn::cross_entropy<float>(flat.view(), six), shape_error);
}

struct snapshot {
  std::string name;
  tensor<float> value, grad;
};

std::vector<snapshot> snapshot_of(nn::module<float>& m) {
  std::vector<snapshot> out;
  nn::for_each_parameter<float>(m, [&](const std::string& name, tensor<float>& v, tensor<float>& g) {
    out.push_back({name, v, g});
  });
  return out;
}

TEST(NnTrain, SgdStepIsWeightMinusLrTimesGradThenZeroesGrads) {
  nn::Sequential<float> seq(nn::Linear<float>(nt::random<float>({3, 4}, 111), nt::random<float>({3}, 112)));
  nn::train<float>(seq, true);
  (void)seq.forward(nt::random<float>({5, 4}, 113));
  (void)seq.backward(nt::random<float>({5, 3}, 114));
  const auto before = snapshot_of(seq);
  ASSERT_EQ(before.size(), 2u);
  EXPECT_EQ(before[0].name, "0.weight");
  EXPECT_EQ(before[1].name, "0.bias");
  // lr a power of two, so lr·g is exact and the expected value is the same with or without a
  // fused multiply-add: w - lr·g rounded once
  const float lr = 0.25f;
  nn::sgd<float> opt(static_cast<double>(lr));
  opt.step(seq);
  const auto after = snapshot_of(seq);
  ASSERT_EQ(after.size(), before.size());
  for (std::size_t p = 0; p < before.size(); ++p) {
    SCOPED_TRACE(before[p].name);
    ASSERT_EQ(before[p].grad.size(), before[p].value.size());
    for (std::size_t i = 0; i < before[p].value.size(); ++i) {
      ASSERT_NE(before[p].grad[i], 0.0f);
      EXPECT_EQ(after[p].value[i], before[p].value[i] - lr * before[p].grad[i]) << i;
      EXPECT_EQ(after[p].grad[i], 0.0f) << i;
    }
  }
  // a second step with the gradients zeroed changes nothing
  opt.step(seq);
  const auto again = snapshot_of(seq);
  for (std::size_t p = 0; p < after.size(); ++p)
    for (std::size_t i = 0; i < after[p].value.size(); ++i) EXPECT_EQ(again[p].value[i], after[p].value[i]);
}

TEST(NnTrain, SgdLeavesParametersWithoutGradientsAlone) {
  nn::Sequential<float> seq(nn::Linear<float>(nt::random<float>({3, 4}, 121), nt::random<float>({3}, 122)));
  const auto before = snapshot_of(seq);
  nn::sgd<float>(0.5).step(seq);
  const auto after = snapshot_of(seq);
  for (std::size_t p = 0; p < before.size(); ++p)
    for (std::size_t i = 0; i < before[p].value.size(); ++i) EXPECT_EQ(after[p].value[i], before[p].value[i]);
}

TEST(NnTrain, SgdMomentumFollowsPyTorchsRule) {
  nn::Sequential<float> seq(nn::Linear<float>(nt::random<float>({3, 4}, 131), nt::random<float>({3}, 132)));
  const auto w0 = snapshot_of(seq);
  const double lr = 0.1, m = 0.9;
  // two gradients, set by hand
  std::map<std::string, dvec> g1, g2;
  std::uint64_t seed = 133;
  for (const auto& s : w0) {
    g1[s.name] = to_d(nt::random<float>(s.value.shape(), seed++));
    g2[s.name] = to_d(nt::random<float>(s.value.shape(), seed++));
  }
  auto set_grads = [&](std::map<std::string, dvec>& gs) {
    nn::for_each_parameter<float>(seq, [&](const std::string& name, tensor<float>& v, tensor<float>& g) {
      g = tensor<float>(v.shape());
      for (std::size_t i = 0; i < g.size(); ++i) g[i] = static_cast<float>(gs.at(name)[i]);
    });
  };
  nn::sgd<float> opt(lr, m);
  set_grads(g1);
  opt.step(seq);
  set_grads(g2);
  opt.step(seq);
  const auto w2 = snapshot_of(seq);
  // PyTorch: v1 = g1; w1 = w0 - lr v1; v2 = m v1 + g2; w2 = w1 - lr v2 (in double here)
  for (std::size_t p = 0; p < w0.size(); ++p) {
    SCOPED_TRACE(w0[p].name);
    const dvec& a = g1.at(w0[p].name);
    const dvec& b = g2.at(w0[p].name);
    for (std::size_t i = 0; i < a.size(); ++i) {
      const double v1 = a[i], v2 = m * v1 + b[i];
      const double expected = dbl(w0[p].value[i]) - lr * v1 - lr * v2;
      const double plain = dbl(w0[p].value[i]) - lr * a[i] - lr * b[i];
      EXPECT_NEAR(dbl(w2[p].value[i]), expected, 1e-6 * (1.0 + std::abs(expected))) << i;
      // the momentum term is far from negligible: plain SGD would land elsewhere
      if (std::abs(a[i]) > 0.1) {
        EXPECT_GT(std::abs(plain - expected), 1e-3);
      }
      EXPECT_EQ(w2[p].grad[i], 0.0f);
    }
  }
}

TEST(NnTrain, SgdRejectsBadHyperparameters) {
  EXPECT_THROW(nn::sgd<float>(0.0), value_error);
  EXPECT_THROW(nn::sgd<float>(-0.1), value_error);
  EXPECT_THROW(nn::sgd<float>(0.1, 1.0), value_error);
  EXPECT_THROW(nn::sgd<float>(0.1, -0.5), value_error);
}

// ---- float16 / bfloat16 -------------------------------------------------------------------------------

/// A Linear in a 16-bit model dtype: float32 accumulation rounded once, so within half an ulp of
/// the dtype (unit roundoff u) of the exact result, plus the float32 accumulation error.
template <class T>
void check_low_precision_linear(double u) {
  const i64 in = 64, out = 6;
  const auto w = nt::random<T>({out, in}, 141);
  const auto b = nt::random<T>({out}, 142);
  const auto x = nt::random<T>({3, in}, 143);
  nn::Linear<T> lin(w, b);
  const tensor<T> y = lin.forward(x).value;
  ASSERT_EQ(y.shape(), (quanto::shape{3, out}));
  const dvec bd = to_d(b);
  const ref_out r = linear_ref(to_d(x), to_d(w), &bd, in, out);
  dvec tol(r.y.size());
  for (std::size_t i = 0; i < tol.size(); ++i) tol[i] = u * std::abs(r.y[i]) + 2e-6 * r.mag[i] + 3e-8;
  EXPECT_TRUE(within(to_d(y), r.y, tol));
}

TEST(NnLowPrecision, Float16LinearForward) { check_low_precision_linear<float16>(std::ldexp(1.0, -11)); }
TEST(NnLowPrecision, BFloat16LinearForward) { check_low_precision_linear<bfloat16>(std::ldexp(1.0, -8)); }

}  // namespace
