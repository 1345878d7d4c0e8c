// The GPU kernels of quanto::cuda against the CPU (ctest label `gpu`; exits 77 — skipped — when there
// is no CUDA device). Every kernel is compared with a float64 product of the library's own
// dequantized weight, within the error of float32 accumulation plus one rounding to the output type;
// one-hot activations must reproduce the dequantized weight exactly (the layout); outputs are
// poisoned (NaN bytes) before each call and the rows and columns around the output must stay
// poisoned (nothing unwritten, nothing written outside); m in {1, 2, 3, 4, 5, 8, 16, 33, 128}.
// QUANTO_GPU_TEST_QUICK=1 runs fewer shapes (for compute-sanitizer).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <quanto/cuda/cuda.hpp>
#include <quanto/quanto.hpp>

#include "../support/random_weight.hpp"

namespace {

using namespace quanto;
namespace qc = quanto::cuda;

bool quick() {
  const char* v = std::getenv("QUANTO_GPU_TEST_QUICK");
  return v && *v && *v != '0';
}

qc::context& ctx() {
  static qc::context c;
  return c;
}

const std::vector<std::int64_t>& batch_sizes() {
  static const std::vector<std::int64_t> all{1, 2, 3, 4, 5, 8, 16, 33, 128}, few{1, 3, 16, 33};
  return quick() ? few : all;
}

template <class T>
constexpr double unit_roundoff = std::is_same_v<T, float16> ? 0x1p-11 : 0x1p-8;  // of the output type
template <class T>
constexpr double smallest_normal = std::is_same_v<T, float16> ? 0x1p-14 : 0x1p-126;

template <class T>
std::vector<T> random_values(std::size_t count, unsigned seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<T> v(count);
  for (auto& x : v) x = T(d(rng));
  return v;
}

using quanto_test::random_weight;

template <class X>
qc::device_buffer to_device(const std::vector<X>& v) {
  qc::device_buffer b(v.size() * sizeof(X));
  b.upload(v.data(), v.size() * sizeof(X));
  return b;
}
template <class X>
qc::device_buffer to_device(const tensor<X>& v) {
  qc::device_buffer b(v.size() * sizeof(X));
  b.upload(v.data(), v.size() * sizeof(X));
  return b;
}

/// Activations [m, k] with row stride ldx = k + 8 (16-byte aligned rows, padding never read), and an
/// output buffer of (m + 2) rows of ldy = n + 8 filled with NaN bytes.
template <class T>
struct problem {
  std::int64_t m, n, k, ldx, ldy;
  std::vector<T> x, bias;
  qc::device_buffer dx, dy, dbias;
  bool with_bias;

  problem(std::int64_t m_, std::int64_t n_, std::int64_t k_, unsigned seed, bool bias_ = true, std::int64_t pad_x = 8)
      : m(m_), n(n_), k(k_), ldx(k_ + pad_x), ldy(n_ + 8), with_bias(bias_) {
    x = random_values<T>(static_cast<std::size_t>(m * ldx), seed);
    bias = random_values<T>(static_cast<std::size_t>(n), seed + 1, 0.5f);
    dx = to_device(x);
    dbias = to_device(bias);
    dy = qc::device_buffer(static_cast<std::size_t>((m + 2) * ldy) * sizeof(T));
  }
  void one_hot(const std::vector<std::int64_t>& positions) {
    for (auto& v : x) v = T(0.0f);
    for (std::int64_t i = 0; i < m; ++i)
      x[static_cast<std::size_t>(i * ldx + positions[static_cast<std::size_t>(i)])] = T(1.0f);
    dx = to_device(x);
    with_bias = false;
  }
  void poison() { dy.fill(0xFF); }
  const void* bias_ptr() const { return with_bias ? dbias.data() : nullptr; }

  /// Downloads y; checks that everything outside [m, n] kept its poison.
  std::vector<T> result(const std::string& what) const {
    std::vector<T> all(static_cast<std::size_t>((m + 2) * ldy));
    dy.download(all.data(), all.size() * sizeof(T));
    int outside = 0;
    for (std::int64_t i = 0; i < m + 2; ++i)
      for (std::int64_t j = 0; j < ldy; ++j) {
        if ((i >= m || j >= n) && all[static_cast<std::size_t>(i * ldy + j)].to_bits() != 0xFFFF && ++outside <= 5)
          ADD_FAILURE() << what << ": wrote outside y at (" << i << ", " << j << ")";
      }
    return all;
  }
};

/// The value of an 8-bit code (int8 or float8).
template <class C>
double code_value(C c) {
  if constexpr (std::is_same_v<C, std::int8_t>)
    return c;
  else
    return to_float(c);
}

/// Compares y with the float64 product of x and the dequantized weight wdq [n, k] (plus bias):
/// |y - ref| <= u_T |ref| + acc_eps * sum |x w| (+ the smallest normal, for results near zero).
template <class T>
void expect_matmul(const problem<T>& p, const std::vector<T>& y, const tensor<T>& wdq, double acc_eps,
                   const std::string& what) {
  double err2 = 0, ref2 = 0;
  int failures = 0;
  for (std::int64_t i = 0; i < p.m; ++i)
    for (std::int64_t j = 0; j < p.n; ++j) {
      double ref = 0, mag = 0;
      for (std::int64_t e = 0; e < p.k; ++e) {
        const double prod = static_cast<double>(to_float(p.x[static_cast<std::size_t>(i * p.ldx + e)])) *
                            static_cast<double>(to_float(wdq[static_cast<std::size_t>(j * p.k + e)]));
        ref += prod;
        mag += std::fabs(prod);
      }
      if (p.with_bias) {
        ref += to_float(p.bias[static_cast<std::size_t>(j)]);
        mag += std::fabs(to_float(p.bias[static_cast<std::size_t>(j)]));
      }
      const double got = to_float(y[static_cast<std::size_t>(i * p.ldy + j)]);
      const double bound = unit_roundoff<T> * std::fabs(ref) + acc_eps * mag + smallest_normal<T>;
      if (!(std::fabs(got - ref) <= bound) && ++failures <= 5)
        ADD_FAILURE() << what << ": y[" << i << ", " << j << "] = " << got << ", float64 reference " << ref
                      << " (bound " << bound << ")";
      err2 += (got - ref) * (got - ref);
      ref2 += ref * ref;
    }
  EXPECT_EQ(failures, 0) << what;
  EXPECT_LT(std::sqrt(err2 / std::max(ref2, 1e-300)), 4 * unit_roundoff<T>) << what << ": relative L2 error";
}

/// float32 accumulation of exact products over k terms (tensor cores may truncate: twice the bound).
double fp32_accumulation(std::int64_t k) { return static_cast<double>(2 * k + 32) * 0x1p-24; }

template <class W>
std::vector<std::int64_t> one_hot_positions(std::int64_t m, std::int64_t k, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::int64_t> pos(static_cast<std::size_t>(m));
  for (auto& v : pos) v = static_cast<std::int64_t>(rng() % static_cast<unsigned>(k));
  return pos;
}

/// One-hot rows: y[i, j] must be the dequantized weight at (j, k_i), exactly.
template <class T>
void expect_one_hot(const problem<T>& p, const std::vector<T>& y, const tensor<T>& wdq,
                    const std::vector<std::int64_t>& pos, const std::string& what) {
  int failures = 0;
  for (std::int64_t i = 0; i < p.m; ++i)
    for (std::int64_t j = 0; j < p.n; ++j) {
      const float got = to_float(y[static_cast<std::size_t>(i * p.ldy + j)]);
      const float want = to_float(wdq[static_cast<std::size_t>(j * p.k + pos[static_cast<std::size_t>(i)])]);
      if (!(got == want) && ++failures <= 5)
        ADD_FAILURE() << what << ": one-hot y[" << i << ", " << j << "] = " << got << ", weight (" << j << ", "
                      << pos[static_cast<std::size_t>(i)] << ") = " << want;
    }
  EXPECT_EQ(failures, 0) << what;
}

// ---- dequantization on the GPU is quanto's, bit for bit ----------------------------------------------

template <class T, class W>
void expect_same_dequantization(const W& w, const qc::qbits_device& view, const std::string& what) {
  const auto n = view.n, k = view.k;
  qc::device_buffer out(static_cast<std::size_t>(n * k) * sizeof(T));
  qc::dequantize(ctx(), view, qc::dtype_of<T>, out.data(), nullptr);
  std::vector<T> got(static_cast<std::size_t>(n * k));
  out.download(got.data(), got.size() * sizeof(T));
  const tensor<T> want = w.dequantize();
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(got[i].to_bits(), want[i].to_bits()) << what << " element " << i;
}

template <class T, class Shift>
void dequantize_qbits_case(std::int64_t n, std::int64_t k, std::int64_t group, unsigned seed) {
  using S = std::conditional_t<std::is_same_v<Shift, std::uint8_t>, group_affine<true>, group_affine<false>>;
  for (int bits : {2, 4}) {
    const auto f = random_weight<T>(n, k, seed);
    auto run = [&](const auto& w) {
      const auto packed = to_device(w.packed), scale = to_device(w.scale), shift = to_device(w.shift);
      qc::qbits_device v{packed.data(),
                         scale.data(),
                         shift.data(),
                         bits,
                         n,
                         k,
                         w.group_size ? *w.group_size : 0,
                         std::is_same_v<Shift, std::uint8_t>};
      expect_same_dequantization<T>(
          w, v, "qint" + std::to_string(bits) + " [" + std::to_string(n) + ", " + std::to_string(k) + "]");
    };
    if (bits == 2)
      run(quantize_weight<qint2>(f, S{group}));
    else
      run(quantize_weight<qint4>(f, S{group}));
  }
}

TEST(CudaDequantize, QbitsMatchQuanto) {
  dequantize_qbits_case<float16, float16>(64, 256, auto_group, 1);
  dequantize_qbits_case<bfloat16, bfloat16>(100, 200, no_group, 2);
  dequantize_qbits_case<bfloat16, std::uint8_t>(64, 384, 96, 3);
  dequantize_qbits_case<float16, std::uint8_t>(7, 4096, auto_group, 4);
}

TEST(CudaDequantize, QbytesMatchQuanto) {
  auto run = [](const auto& w, qc::code_type code, qc::scale_axis axis, const std::string& what) {
    using W = std::decay_t<decltype(w)>;
    using T = typename W::model_type;
    const auto data = to_device(w.data), scale = to_device(w.scale);
    const std::int64_t n = w.shape()[0], k = w.shape().numel() / n;
    qc::device_buffer out(static_cast<std::size_t>(n * k) * sizeof(T));
    qc::dequantize(ctx(), qc::qbytes_device{data.data(), scale.data(), n, k, code, axis}, qc::dtype_of<T>, out.data(),
                   nullptr);
    std::vector<T> got(static_cast<std::size_t>(n * k));
    out.download(got.data(), got.size() * sizeof(T));
    const tensor<T> want = w.dequantize();
    for (std::size_t i = 0; i < got.size(); ++i)
      ASSERT_EQ(got[i].to_bits(), want[i].to_bits()) << what << " element " << i;
  };
  const auto f = random_weight<float16>(96, 200, 5);
  const auto b = random_weight<bfloat16>(96, 200, 6);
  run(quantize_weight<qint8>(f), qc::code_type::int8, qc::scale_axis::row, "qint8 rows");
  run(quantize_weight<qint8>(b, per_tensor), qc::code_type::int8, qc::scale_axis::tensor, "qint8 tensor");
  run(quantize_weight<qint8>(b, symmetric{qaxis::last}), qc::code_type::int8, qc::scale_axis::column, "qint8 columns");
  run(quantize_weight<qfloat8_e4m3fn>(f), qc::code_type::float8_e4m3fn, qc::scale_axis::row, "e4m3fn");
  run(quantize_weight<qfloat8_e5m2>(b), qc::code_type::float8_e5m2, qc::scale_axis::row, "e5m2");
}

// ---- the fused kernels --------------------------------------------------------------------------------

template <class T, class Shift>
void w4a16_case(std::int64_t n, std::int64_t k, std::int64_t group, unsigned seed) {
  using S = std::conditional_t<std::is_same_v<Shift, std::uint8_t>, group_affine<true>, group_affine<false>>;
  const auto q = quantize_weight<qint4>(random_weight<T>(n, k, seed), S{group});
  ASSERT_TRUE(qc::w4a16_supports(q));
  const auto packed = qc::repack_w4a16(q);
  const auto dev = qc::upload(packed);
  const tensor<T> wdq = q.dequantize();
  const std::string base = std::string(std::is_same_v<T, float16> ? "f16" : "bf16") + (packed.zero_point ? " zp" : "") +
                           " [" + std::to_string(n) + ", " + std::to_string(k) + "] group " +
                           std::to_string(packed.group);
  for (const std::int64_t m : batch_sizes()) {
    std::vector<qc::matmul_options> options{
        {}, qc::matmul_options{1, qc::w4a16_path::mma, 0}, qc::matmul_options{3, qc::w4a16_path::mma, 0}};
    if (m <= 4) options.push_back(qc::matmul_options{0, qc::w4a16_path::gemv, 0});
    for (const auto& opt : options) {
      const std::string what = base + " m " + std::to_string(m) + " split " + std::to_string(opt.split_k) +
                               (opt.path == qc::w4a16_path::gemv ? " gemv" : "");
      problem<T> p(m, n, k, seed + static_cast<unsigned>(m));
      p.poison();
      qc::w4a16_matmul(ctx(), dev.view, qc::dtype_of<T>, p.dx.data(), m, p.ldx, p.dy.data(), p.ldy, p.bias_ptr(),
                       nullptr, {}, opt);
      qc::synchronize();
      expect_matmul(p, p.result(what), wdq, fp32_accumulation(k), what);
      // one-hot activations: the layout, exactly
      const auto pos = one_hot_positions<T>(m, k, seed + 7);
      p.one_hot(pos);
      p.poison();
      qc::w4a16_matmul(ctx(), dev.view, qc::dtype_of<T>, p.dx.data(), m, p.ldx, p.dy.data(), p.ldy, nullptr, nullptr,
                       {}, opt);
      qc::synchronize();
      expect_one_hot(p, p.result(what + " one-hot"), wdq, pos, what);
    }
  }
}

TEST(CudaW4A16, MatchesTheReference) {
  w4a16_case<float16, float16>(128, 512, 128, 11);
  w4a16_case<bfloat16, bfloat16>(192, 256, 64, 12);
  w4a16_case<float16, std::uint8_t>(64, 384, 96, 13);
  if (quick()) return;
  w4a16_case<bfloat16, std::uint8_t>(320, 1024, 128, 14);
  w4a16_case<float16, float16>(64, 144, no_group, 15);  // one group per row, k = 9 * 16
  w4a16_case<bfloat16, bfloat16>(256, 2048, 32, 16);
}

// ---- random bit patterns: the fused decode is quanto's dequantization on any input ---------------

/// Random bits of T below `limit` in magnitude: every exponent down to the subnormals, both signs.
template <class T>
T random_bits_below(std::mt19937& rng, float limit) {
  for (;;) {
    const auto v = T::from_bits(static_cast<std::uint16_t>(rng()));
    if (v.is_finite() && std::fabs(to_float(v)) < limit) return v;
  }
}

/// One-hot rows through a kernel against the library's dequantization of a weight whose codes,
/// scales and shifts are random bits (subnormal to large, negative; bounded so that no weight is
/// inf — a 0 · inf elsewhere in the column would make the sum NaN). Equal values; a subnormal
/// weight that comes out as zero is counted apart (tensor cores that flush subnormal inputs) and
/// reported, not failed.
template <class T, class Run>
void expect_random_bits_one_hot(const tensor<T>& wdq, std::int64_t n, std::int64_t k, const Run& run,
                                const std::string& what) {
  const std::int64_t m = 16;
  problem<T> p(m, n, k, 91);
  const auto pos = one_hot_positions<T>(m, k, 92);
  p.one_hot(pos);
  p.poison();
  run(p);
  qc::synchronize();
  const auto y = p.result(what);
  int failures = 0, flushed = 0;
  for (std::int64_t i = 0; i < p.m; ++i)  // the rows the run computed
    for (std::int64_t j = 0; j < n; ++j) {
      const float got = to_float(y[static_cast<std::size_t>(i * p.ldy + j)]);
      const float want = to_float(wdq[static_cast<std::size_t>(j * k + pos[static_cast<std::size_t>(i)])]);
      if (got == want) continue;
      if (got == 0.0f && std::fabs(want) < smallest_normal<T>) {
        ++flushed;
        continue;
      }
      if (++failures <= 5) ADD_FAILURE() << what << ": y[" << i << ", " << j << "] = " << got << ", weight " << want;
    }
  EXPECT_EQ(failures, 0) << what;
  if (flushed)
    std::printf("note: %s: %d subnormal weights came out as 0 (the tensor cores flush subnormal inputs)\n",
                what.c_str(), flushed);
}

template <class T, class Shift>
void w4a16_random_bits(unsigned seed) {
  const std::int64_t n = 128, k = 256, group = 64;
  std::mt19937 rng(seed);
  qbits_weight<qint4, T, Shift> w;
  w.original_shape = shape{n, k};
  w.group_size = group;
  tensor<std::uint8_t> codes(w.codes_shape());
  for (auto& c : codes) c = static_cast<std::uint8_t>(rng() & 0xF);
  w.packed = pack(codes.view(), 4);
  w.scale = tensor<T>(shape{n * k / group, 1});
  w.shift = tensor<Shift>(shape{n * k / group, 1});
  const float limit = std::is_same_v<T, float16> ? 2048.0f : 1e30f;  // |scale * 15| + |shift| stays finite
  for (std::size_t i = 0; i < w.scale.size(); ++i) {
    w.scale[i] = random_bits_below<T>(rng, limit);
    if constexpr (std::is_same_v<Shift, std::uint8_t>)
      w.shift[i] = static_cast<std::uint8_t>(rng() % 16);
    else
      w.shift[i] = random_bits_below<T>(rng, 16 * limit);
  }
  const auto dev = qc::upload(qc::repack_w4a16(w));
  const std::string what = std::string("w4a16 random bits ") + (std::is_same_v<T, float16> ? "f16" : "bf16") +
                           (std::is_same_v<Shift, std::uint8_t> ? " zp" : "");
  for (const auto path : {qc::w4a16_path::mma, qc::w4a16_path::gemv}) {
    const std::int64_t m_run = path == qc::w4a16_path::gemv ? 4 : 16;
    expect_random_bits_one_hot<T>(
        w.dequantize(), n, k,
        [&](problem<T>& p) {
          qc::w4a16_matmul(ctx(), dev.view, qc::dtype_of<T>, p.dx.data(), m_run, p.ldx, p.dy.data(), p.ldy, nullptr,
                           nullptr, {}, qc::matmul_options{0, path, 0});
          p.m = m_run;  // only these rows were computed
        },
        what + (path == qc::w4a16_path::gemv ? " gemv" : " mma"));
  }
}

template <class Q, class T>
void w8a16_random_bits(unsigned seed) {
  const std::int64_t n = 128, k = 256;
  std::mt19937 rng(seed);
  qbytes_weight<Q, T> w;
  w.data = tensor<typename Q::storage>(shape{n, k});
  for (auto& c : w.data) {
    auto b = static_cast<std::uint8_t>(rng());
    if (std::is_same_v<Q, qfloat8_e4m3fn> && (b & 0x7F) == 0x7F) b = 0;
    c = std::bit_cast<typename Q::storage>(b);
  }
  w.scale = tensor<T>(shape{n, 1});
  const float limit = std::is_same_v<T, float16> ? 128.0f : 1e30f;  // |scale * 448| stays finite
  for (auto& v : w.scale) v = random_bits_below<T>(rng, limit);
  const auto dev = qc::upload(qc::repack_w8a16(w));
  const std::string what = std::string("w8a16 random bits ") + (std::is_same_v<Q, qint8> ? "int8 " : "e4m3fn ") +
                           (std::is_same_v<T, float16> ? "f16" : "bf16");
  expect_random_bits_one_hot<T>(
      w.dequantize(), n, k,
      [&](problem<T>& p) {
        qc::w8a16_matmul(ctx(), dev.view, qc::dtype_of<T>, p.dx.data(), p.m, p.ldx, p.dy.data(), p.ldy, nullptr,
                         nullptr);
      },
      what);
}

TEST(CudaFused, RandomBitsDecodeExactly) {
  w4a16_random_bits<float16, float16>(101);
  w4a16_random_bits<bfloat16, bfloat16>(102);
  w4a16_random_bits<float16, std::uint8_t>(103);
  w4a16_random_bits<bfloat16, std::uint8_t>(104);
  w8a16_random_bits<qint8, float16>(105);
  w8a16_random_bits<qint8, bfloat16>(106);
  w8a16_random_bits<qfloat8_e4m3fn, float16>(107);
  w8a16_random_bits<qfloat8_e4m3fn, bfloat16>(108);
}

TEST(CudaW4A16, LlamaShapeSmallBatch) {
  if (quick()) GTEST_SKIP() << "quick mode";
  for (const auto& [n, k] : {std::pair<std::int64_t, std::int64_t>{4096, 14336}, {14336, 4096}}) {
    const auto q = quantize_weight<qint4>(random_weight<float16>(n, k, 21));
    const auto dev = qc::upload(qc::repack_w4a16(q));
    const tensor<float16> wdq = q.dequantize();
    for (const std::int64_t m : {1, 4}) {
      problem<float16> p(m, n, k, 22);
      p.poison();
      qc::w4a16_matmul(ctx(), dev.view, qc::dtype::float16, p.dx.data(), m, p.ldx, p.dy.data(), p.ldy, p.bias_ptr(),
                       nullptr);
      qc::synchronize();
      expect_matmul(p, p.result("llama"), wdq, fp32_accumulation(k),
                    "llama [" + std::to_string(n) + ", " + std::to_string(k) + "] m " + std::to_string(m));
    }
  }
}

template <class Q, class T>
void w8a16_case(std::int64_t n, std::int64_t k, qaxis axis, unsigned seed) {
  const auto q = quantize_weight<Q>(random_weight<T>(n, k, seed), symmetric{axis});
  const auto dev = qc::upload(qc::repack_w8a16(q));
  const tensor<T> wdq = q.dequantize();
  const std::string base = std::string(std::is_same_v<Q, qint8> ? "qint8" : "e4m3fn") +
                           (std::is_same_v<T, float16> ? " f16" : " bf16") + " [" + std::to_string(n) + ", " +
                           std::to_string(k) + "]";
  for (const std::int64_t m : batch_sizes())
    for (const int split : {0, 1, 4}) {
      const std::string what = base + " m " + std::to_string(m) + " split " + std::to_string(split);
      const qc::matmul_options opt{split, qc::w4a16_path::automatic, 0};
      problem<T> p(m, n, k, seed + static_cast<unsigned>(m));
      p.poison();
      qc::w8a16_matmul(ctx(), dev.view, qc::dtype_of<T>, p.dx.data(), m, p.ldx, p.dy.data(), p.ldy, p.bias_ptr(),
                       nullptr, {}, opt);
      qc::synchronize();
      expect_matmul(p, p.result(what), wdq, fp32_accumulation(k), what);
      const auto pos = one_hot_positions<T>(m, k, seed + 9);
      p.one_hot(pos);
      p.poison();
      qc::w8a16_matmul(ctx(), dev.view, qc::dtype_of<T>, p.dx.data(), m, p.ldx, p.dy.data(), p.ldy, nullptr, nullptr,
                       {}, opt);
      qc::synchronize();
      expect_one_hot(p, p.result(what + " one-hot"), wdq, pos, what);
    }
}

TEST(CudaW8A16, MatchesTheReference) {
  w8a16_case<qint8, float16>(128, 512, qaxis::first, 31);
  w8a16_case<qfloat8_e4m3fn, bfloat16>(192, 256, qaxis::first, 32);
  if (quick()) return;
  w8a16_case<qint8, bfloat16>(256, 1024, qaxis::none, 33);
  w8a16_case<qfloat8_e4m3fn, float16>(320, 2048, qaxis::first, 34);
}

TEST(CudaFused, RunsAreDeterministicAndWorkspacesWork) {
  const std::int64_t n = 256, k = 4096, m = 5;
  const auto q = quantize_weight<qint4>(random_weight<bfloat16>(n, k, 41));
  const auto dev = qc::upload(qc::repack_w4a16(q));
  problem<bfloat16> p(m, n, k, 42);
  const std::size_t need = qc::w4a16_workspace_bytes(ctx(), m, n, k);
  qc::device_buffer ws(std::max<std::size_t>(need, 16));
  p.poison();
  qc::w4a16_matmul(ctx(), dev.view, qc::dtype::bfloat16, p.dx.data(), m, p.ldx, p.dy.data(), p.ldy, p.bias_ptr(),
                   nullptr, {ws.data(), ws.size()});
  const auto first = p.result("first");
  for (int run = 0; run < 3; ++run) {
    p.poison();
    qc::w4a16_matmul(ctx(), dev.view, qc::dtype::bfloat16, p.dx.data(), m, p.ldx, p.dy.data(), p.ldy, p.bias_ptr(),
                     nullptr);
    EXPECT_EQ(0, std::memcmp(first.data(), p.result("again").data(), first.size() * 2)) << "run " << run;
  }
  // a workspace too small for the chosen split limits the split: still right
  qc::device_buffer small(16);
  p.poison();
  qc::w4a16_matmul(ctx(), dev.view, qc::dtype::bfloat16, p.dx.data(), m, p.ldx, p.dy.data(), p.ldy, p.bias_ptr(),
                   nullptr, {small.data(), small.size()});
  expect_matmul(p, p.result("small workspace"), q.dequantize(), fp32_accumulation(k), "small workspace");
}

TEST(CudaFused, RefusesWhatItDoesNotTake) {
  const auto q = quantize_weight<qint4>(random_weight<float16>(128, 256, 51));
  const auto dev = qc::upload(qc::repack_w4a16(q));
  problem<float16> p(4, 128, 256, 52);
  const auto* x = static_cast<const unsigned char*>(p.dx.data());
  EXPECT_THROW(
      qc::w4a16_matmul(ctx(), dev.view, qc::dtype::float16, x + 2, 4, p.ldx, p.dy.data(), p.ldy, nullptr, nullptr),
      unsupported_error);  // misaligned activations
  EXPECT_THROW(qc::w4a16_matmul(ctx(), dev.view, qc::dtype::float16, x, 4, 100, p.dy.data(), p.ldy, nullptr, nullptr),
               shape_error);
  auto bad = dev.view;
  bad.n = 100;
  EXPECT_THROW(qc::w4a16_matmul(ctx(), bad, qc::dtype::float16, x, 4, p.ldx, p.dy.data(), p.ldy, nullptr, nullptr),
               unsupported_error);
  qc::matmul_options gemv{0, qc::w4a16_path::gemv, 0};
  problem<float16> big(8, 128, 256, 53);
  EXPECT_THROW(qc::w4a16_matmul(ctx(), dev.view, qc::dtype::float16, big.dx.data(), 8, big.ldx, big.dy.data(), big.ldy,
                                nullptr, nullptr, {}, gemv),
               unsupported_error);
  // m = 0 does nothing
  p.poison();
  qc::w4a16_matmul(ctx(), dev.view, qc::dtype::float16, x, 0, p.ldx, p.dy.data(), p.ldy, nullptr, nullptr);
  qc::synchronize();
}

// ---- the fallback: shapes the fused kernels refuse ----------------------------------------------------

template <class T, class W>
void fallback_case(const W& q, const std::string& what) {
  const std::int64_t n = q.shape()[0], k = q.shape().numel() / n;
  const tensor<T> wdq = q.dequantize();
  for (const std::int64_t m : batch_sizes()) {
    problem<T> p(m, n, k, 61 + static_cast<unsigned>(m));
    p.poison();
    if constexpr (LowBitQType<typename W::qtype>) {
      const auto packed = to_device(q.packed), scale = to_device(q.scale), shift = to_device(q.shift);
      const qc::qbits_device v{packed.data(),
                               scale.data(),
                               shift.data(),
                               W::qtype::bits,
                               n,
                               k,
                               q.group_size ? *q.group_size : 0,
                               std::is_same_v<typename W::shift_type, std::uint8_t>};
      qc::dequantize_matmul_fallback(ctx(), v, qc::dtype_of<T>, p.dx.data(), m, p.ldx, p.dy.data(), p.ldy, p.bias_ptr(),
                                     nullptr);
    } else {
      const auto data = to_device(q.data), scale = to_device(q.scale);
      const auto code = std::is_same_v<typename W::qtype, qint8>            ? qc::code_type::int8
                        : std::is_same_v<typename W::qtype, qfloat8_e4m3fn> ? qc::code_type::float8_e4m3fn
                                                                            : qc::code_type::float8_e5m2;
      const auto axis = q.axis == qaxis::first  ? qc::scale_axis::row
                        : q.axis == qaxis::none ? qc::scale_axis::tensor
                                                : qc::scale_axis::column;
      qc::dequantize_matmul_fallback(ctx(), qc::qbytes_device{data.data(), scale.data(), n, k, code, axis},
                                     qc::dtype_of<T>, p.dx.data(), m, p.ldx, p.dy.data(), p.ldy, p.bias_ptr(), nullptr);
    }
    qc::synchronize();
    expect_matmul(p, p.result(what), wdq, fp32_accumulation(k), what + " m " + std::to_string(m));
  }
}

TEST(CudaFallback, OddShapes) {
  fallback_case<float16>(quantize_weight<qint4>(random_weight<float16>(100, 200, 71)), "qint4 [100, 200] per row");
  fallback_case<bfloat16>(quantize_weight<qint4>(random_weight<bfloat16>(72, 160, 72)), "qint4 [72, 160] group 32");
  fallback_case<float16>(quantize_weight<qint2>(random_weight<float16>(66, 384, 73), group_affine<true>{}),
                         "qint2 zp [66, 384]");
  fallback_case<bfloat16>(quantize_weight<qint8>(random_weight<bfloat16>(65, 33, 74), symmetric{qaxis::last}),
                          "qint8 columns [65, 33]");
  fallback_case<float16>(quantize_weight<qfloat8_e5m2>(random_weight<float16>(130, 96, 75)), "e5m2 [130, 96]");
}

// ---- cuBLASLt int8 and float8 -------------------------------------------------------------------------

template <class Q, class T>
void lt_case(std::int64_t n, std::int64_t k, unsigned seed) {
  constexpr bool fp8 = std::is_same_v<Q, qfloat8_e4m3fn>;
  if (fp8 && ctx().compute_capability() < 89) GTEST_SKIP() << "float8 needs compute capability 8.9";
  const auto q = quantize_weight<Q>(random_weight<T>(n, k, seed));
  const auto data = to_device(q.data), scale = to_device(q.scale);
  const qc::qbytes_device w{
      data.data(), scale.data(), n, k, fp8 ? qc::code_type::float8_e4m3fn : qc::code_type::int8, qc::scale_axis::row};
  for (const std::int64_t m : batch_sizes()) {
    const std::string what = std::string(fp8 ? "fp8" : "int8") + " m " + std::to_string(m);
    problem<T> p(m, n, k, seed + static_cast<unsigned>(m), true, 16);
    // quantized activations: the codes of x with one scale (quanto's quantize_activation)
    const tensor<T> xf(shape{m, p.ldx}, std::span<const T>(p.x));
    const T xs = activation_scale<Q>(xf.view());
    const auto xq = quantize_activation<Q>(xf.view(), xs);
    const auto dxq = to_device(xq.data);
    const float x_scale = to_float(xs);
    p.poison();
    if constexpr (fp8) {
      try {
        qc::fp8_matmul_cublaslt(ctx(), w, qc::dtype_of<T>, dxq.data(), x_scale, m, p.ldx, p.dy.data(), p.ldy,
                                p.bias_ptr(), nullptr);
      } catch (const unsupported_error& e) {
        // cuBLASLt's float8 kernels may want m to be a multiple of 16: then the API says so
        EXPECT_NE(m % 16, 0) << e.what();
        std::printf("note: %s (m = %lld): %s\n", what.c_str(), static_cast<long long>(m), e.what());
        continue;
      }
    } else
      qc::int8_matmul_cublaslt(ctx(), w, qc::dtype_of<T>, dxq.data(), x_scale, m, p.ldx, p.dy.data(), p.ldy,
                               p.bias_ptr(), nullptr);
    qc::synchronize();
    const auto y = p.result(what);
    // the reference: codes times codes in float64, times both scales, plus the bias
    int failures = 0;
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double acc = 0, mag = 0;
        for (std::int64_t e = 0; e < k; ++e) {
          const double xv = code_value(xq.data[static_cast<std::size_t>(i * p.ldx + e)]);
          const double wv = code_value(q.data[static_cast<std::size_t>(j * k + e)]);
          acc += xv * wv;
          mag += std::fabs(xv * wv);
        }
        const double s = static_cast<double>(x_scale) * to_float(q.scale[static_cast<std::size_t>(j)]);
        const double b = to_float(p.bias[static_cast<std::size_t>(j)]);
        const double want = acc * s + b;
        const double got = to_float(y[static_cast<std::size_t>(i * p.ldy + j)]);
        // int8: an exact int32 product and a float32 epilogue; fp8: float32-class accumulation on the tensor cores
        const double eps = fp8 ? 0x1p-10 : 0x1p-20;
        const double bound =
            unit_roundoff<T> * std::fabs(want) + eps * mag * std::fabs(s) + 0x1p-20 * std::fabs(b) + smallest_normal<T>;
        if (!(std::fabs(got - want) <= bound) && ++failures <= 5)
          ADD_FAILURE() << what << ": y[" << i << ", " << j << "] = " << got << ", float64 reference " << want;
      }
    EXPECT_EQ(failures, 0) << what;
  }
}

TEST(CudaCublasLt, Int8) {
  lt_case<qint8, float16>(256, 1024, 81);
  lt_case<qint8, bfloat16>(192, 512, 82);
}

TEST(CudaCublasLt, Float8) {
  lt_case<qfloat8_e4m3fn, bfloat16>(256, 1024, 83);
  lt_case<qfloat8_e4m3fn, float16>(128, 512, 84);
}

}  // namespace

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
#ifdef GTEST_FLAG_GET
  const bool listing = GTEST_FLAG_GET(list_tests);
#else
  const bool listing = ::testing::GTEST_FLAG(list_tests);
#endif
  if (listing) return RUN_ALL_TESTS();
  if (qc::device_count() == 0) {
    std::printf("no CUDA device: the GPU tests are skipped\n");
    return 77;  // ctest SKIP_RETURN_CODE
  }
  std::printf("[ device %s, compute capability %d, %d SMs ]\n", ctx().name().c_str(), ctx().compute_capability(),
              ctx().sm_count());
  return RUN_ALL_TESTS();
}
