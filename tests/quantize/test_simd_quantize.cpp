// The vector quantizers against the scalar reference (`set_quantize_simd(false)`), bit for bit:
// codes, scales, shifts and dequantized values, for every qtype × model dtype × optimizer, on
// at least 10^7 values per qtype drawn to hit the hard cases (exact ties, subnormals, ±0, constant
// and one-signed groups, random bit patterns over the whole finite range, NaN/Inf with the propagate
// policy, row lengths around the vector widths and group boundaries); and the same bits for any
// thread count.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <quanto/quanto.hpp>

namespace {

using namespace quanto;

template <class T>
std::uint32_t raw(T v) {
  if constexpr (std::is_same_v<T, float>)
    return float_to_bits(v);
  else
    return v.to_bits();
}

template <class X>
::testing::AssertionResult same_bits(const tensor<X>& a, const tensor<X>& b) {
  if (!(a.shape() == b.shape())) return ::testing::AssertionFailure() << "shapes differ";
  if (a.size() != 0 && std::memcmp(a.data(), b.data(), a.size() * sizeof(X)) != 0) {
    for (std::size_t i = 0; i < a.size(); ++i)
      if (std::memcmp(&a[i], &b[i], sizeof(X)) != 0)
        return ::testing::AssertionFailure() << "first difference at flat index " << i;
  }
  return ::testing::AssertionSuccess();
}

/// Restores the vector code at scope exit.
struct scalar_scope {
  scalar_scope() { set_quantize_simd(false); }
  ~scalar_scope() { set_quantize_simd(true); }
};

/// A finite T with random bits (any exponent: subnormals, huge values, ±0 included).
template <class T>
T random_finite(std::mt19937& rng) {
  for (;;) {
    if constexpr (std::is_same_v<T, float>) {
      const float f = bits_to_float(static_cast<std::uint32_t>(rng()));
      if (is_finite_bits(f)) return f;
    } else {
      const T t = T::from_bits(static_cast<std::uint16_t>(rng()));
      if (t.is_finite()) return t;
    }
  }
}

template <class T>
T subnormal(std::mt19937& rng) {
  if constexpr (std::is_same_v<T, float>) {
    return bits_to_float((static_cast<std::uint32_t>(rng()) & 0x807FFFFFu));
  } else if constexpr (std::is_same_v<T, bfloat16>) {
    return T::from_bits(static_cast<std::uint16_t>(rng() & 0x807Fu));
  } else {
    return T::from_bits(static_cast<std::uint16_t>(rng() & 0x83FFu));
  }
}

/// Row styles: what each row of a generated weight is made of.
enum class style { gaussian, random_bits, zeros_and_subnormals, constant, non_negative, non_positive, ties, nonfinite };
constexpr int style_count = 8;

/// Fills one row. `levels_lo/levels_hi` place the extremes so that the scale is a power of two for
/// the tie style: symmetric rows get 127 * 2^e (scale 2^e); affine rows -L * 2^e and H * 2^e.
template <class T>
void fill_row(T* row, std::size_t n, style s, std::mt19937& rng, bool affine, int bits, bool allow_nonfinite) {
  std::normal_distribution<float> g(0.0f, 0.05f);
  std::uniform_int_distribution<int> coin(0, 7);
  switch (s) {
    case style::gaussian:
      for (std::size_t i = 0; i < n; ++i) row[i] = T(g(rng));
      break;
    case style::random_bits:
      for (std::size_t i = 0; i < n; ++i) row[i] = random_finite<T>(rng);
      break;
    case style::zeros_and_subnormals:
      for (std::size_t i = 0; i < n; ++i) {
        const int c = coin(rng);
        row[i] = c < 2 ? T(0.0f) : c < 4 ? T(-0.0f) : c < 6 ? subnormal<T>(rng) : T(g(rng) * 1e-3f);
      }
      break;
    case style::constant: {
      const T v = coin(rng) < 3 ? T(0.0f) : coin(rng) < 4 ? T(-0.0f) : T(g(rng));
      for (std::size_t i = 0; i < n; ++i) row[i] = v;
      break;
    }
    case style::non_negative:
    case style::non_positive: {
      const float sign = s == style::non_negative ? 1.0f : -1.0f;
      for (std::size_t i = 0; i < n; ++i) {
        const int c = coin(rng);
        row[i] = c == 0 ? T(0.0f) : c == 1 ? T(-0.0f) : T(sign * std::abs(g(rng)));
      }
      break;
    }
    case style::ties: {
      const int e = std::uniform_int_distribution<int>(-8, 2)(rng);
      const float unit = std::ldexp(1.0f, e);
      const int L = affine ? (1 << (bits - 1)) : 127, H = affine ? (1 << (bits - 1)) - 1 : 127;
      std::uniform_int_distribution<int> k(-L, H - 1);
      for (std::size_t i = 0; i < n; ++i) row[i] = T((static_cast<float>(k(rng)) + 0.5f) * unit);
      if (n >= 2) {
        row[std::uniform_int_distribution<std::size_t>(0, n - 1)(rng)] = T(static_cast<float>(H) * unit);
        if (affine) row[std::uniform_int_distribution<std::size_t>(0, n - 1)(rng)] = T(-static_cast<float>(L) * unit);
      }
      break;
    }
    case style::nonfinite:
      for (std::size_t i = 0; i < n; ++i) row[i] = T(g(rng));
      if (allow_nonfinite && n > 0) {
        const float specials[] = {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
                                  std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity()};
        const int count = 1 + coin(rng) % 3;
        for (int c = 0; c < count; ++c)
          row[std::uniform_int_distribution<std::size_t>(0, n - 1)(rng)] = T(specials[coin(rng) % 4]);
      }
      break;
  }
}

/// A [rows, cols] weight, each "row" of `run` elements (a group or a row) of a random style.
template <class T>
tensor<T> make_weight(std::int64_t rows, std::int64_t cols, std::size_t run, std::mt19937& rng, bool affine, int bits,
                      bool nonfinite) {
  tensor<T> w(shape{rows, cols});
  std::uniform_int_distribution<int> pick(0, style_count - 1);
  for (std::size_t b = 0; b < w.size(); b += run)
    fill_row(w.data() + b, std::min(run, w.size() - b), static_cast<style>(pick(rng)), rng, affine, bits, nonfinite);
  return w;
}

struct shape_case {
  std::int64_t rows, cols;
};
// Row lengths around the vector widths (8, 16, 32 elements) and quanto's group sizes.
const shape_case kShapes[] = {{128, 2048}, {300, 1000}, {1024, 136}, {777, 33}, {4000, 8},
                              {2048, 7},   {96, 2048},  {513, 257},  {64, 31},  {3, 4096 * 3 + 5}};

/// The code whose storage byte is `b` (every bit pattern, NaN encodings included).
template <class Q>
typename Q::storage code_from_byte(std::uint8_t b) {
  if constexpr (Q::is_floating_point)
    return Q::storage::from_bits(b);
  else
    return static_cast<std::int8_t>(b);
}

template <class Q, class T>
std::int64_t check_symmetric(std::mt19937& rng) {
  std::int64_t values = 0;
  for (const auto& sc : kShapes) {
    for (qaxis axis : {qaxis::first, qaxis::last, qaxis::none}) {
      for (bool nonfinite : {false, true}) {
        const std::size_t run = axis == qaxis::first ? static_cast<std::size_t>(sc.cols) : 64;
        const tensor<T> w = make_weight<T>(sc.rows, sc.cols, run, rng, false, 8, nonfinite);
        quantize_options opt;
        opt.nonfinite = nonfinite ? nonfinite_policy::propagate : nonfinite_policy::reject;
        const auto fast = quantize_weight<Q>(w, symmetric{axis}, absmax_optimizer{}, opt);
        const tensor<T> fast_dq = fast.dequantize();
        qweight_t<Q, T, symmetric> ref;
        tensor<T> ref_dq;
        {
          scalar_scope s;
          ref = quantize_weight<Q>(w, symmetric{axis}, absmax_optimizer{}, opt);
          ref_dq = ref.dequantize();
        }
        const std::string where = std::string(Q::name) + " " + std::to_string(sc.rows) + "x" + std::to_string(sc.cols) +
                                  " axis " + to_string(axis) + (nonfinite ? " nonfinite" : "");
        EXPECT_TRUE(same_bits(fast.scale, ref.scale)) << where;
        EXPECT_TRUE(same_bits(fast.data, ref.data)) << where;
        EXPECT_TRUE(same_bits(fast_dq, ref_dq)) << where;
        values += w.numel();
        if (::testing::Test::HasFailure()) return values;
      }
    }
  }
  // Ties on a fixed power-of-two scale, every code of the storage dequantized.
  {
    const std::int64_t rows = 64, cols = 1000;
    tensor<T> w(shape{rows, cols});
    tensor<T> scale(shape{rows, 1});
    for (std::int64_t r = 0; r < rows; ++r) {
      const float unit = std::ldexp(1.0f, static_cast<int>(r % 12) - 8);
      scale[static_cast<std::size_t>(r)] = T(unit);
      for (std::int64_t c = 0; c < cols; ++c)
        w[static_cast<std::size_t>(r * cols + c)] = T((static_cast<float>(c % 300) - 150.0f + 0.5f) * unit);
    }
    const auto fast = quantize_symmetric<Q>(w.view(), qaxis::first, scale.view());
    tensor<typename Q::storage> codes(shape{rows, 256});
    for (std::size_t i = 0; i < codes.size(); ++i) codes[i] = code_from_byte<Q>(static_cast<std::uint8_t>(i));
    const auto fast_dq = dequantize_symmetric<Q, T>(codes.view(), qaxis::first, scale.view());
    scalar_scope s;
    EXPECT_TRUE(same_bits(fast, quantize_symmetric<Q>(w.view(), qaxis::first, scale.view())));
    EXPECT_TRUE(same_bits(fast_dq, dequantize_symmetric<Q, T>(codes.view(), qaxis::first, scale.view())));
    values += w.numel() + static_cast<std::int64_t>(codes.size());
  }
  return values;
}

template <class Q, class T, bool ZeroPoint, class Opt>
std::int64_t check_affine(std::mt19937& rng, Opt opt_, bool small) {
  std::int64_t values = 0;
  const std::int64_t groups[] = {auto_group, 32, 64, no_group};
  for (const auto& sc : kShapes) {
    if (small && sc.rows * sc.cols > 150000) continue;
    for (std::int64_t gs : groups) {
      for (qaxis axis : {qaxis::first, qaxis::last}) {
        const std::int64_t axis_numel = axis == qaxis::first ? sc.cols : sc.rows;
        if (gs > 0 && axis_numel % gs != 0) continue;
        if (gs == auto_group && axis == qaxis::last) continue;
        const bool nonfinite = (values / 7) % 2 == 1;
        const std::size_t run = gs > 0 ? static_cast<std::size_t>(gs) : static_cast<std::size_t>(sc.cols);
        const tensor<T> w = make_weight<T>(sc.rows, sc.cols, run, rng, true, Q::bits, nonfinite);
        quantize_options opt;
        opt.nonfinite = nonfinite ? nonfinite_policy::propagate : nonfinite_policy::reject;
        const group_affine<ZeroPoint> scheme{gs, axis};
        const auto fast = quantize_weight<Q>(w, scheme, opt_, opt);
        const tensor<T> fast_dq = fast.dequantize();
        qweight_t<Q, T, group_affine<ZeroPoint>> ref;
        tensor<T> ref_dq;
        {
          scalar_scope s;
          ref = quantize_weight<Q>(w, scheme, opt_, opt);
          ref_dq = ref.dequantize();
        }
        const std::string where = std::string(Q::name) + " " + std::string(Opt::name) + " " + std::to_string(sc.rows) +
                                  "x" + std::to_string(sc.cols) + " group " + std::to_string(gs) + " axis " +
                                  to_string(axis) + (nonfinite ? " nonfinite" : "") + (ZeroPoint ? " zero-point" : "");
        EXPECT_TRUE(same_bits(fast.scale, ref.scale)) << where;
        EXPECT_TRUE(same_bits(fast.shift, ref.shift)) << where;
        EXPECT_TRUE(same_bits(fast.packed, ref.packed)) << where;
        EXPECT_TRUE(same_bits(fast_dq, ref_dq)) << where;
        values += w.numel();
        if (::testing::Test::HasFailure()) return values;
      }
    }
  }
  return values;
}

void print_isa() {
  std::printf("[ running ISA %s ]\n",
              kernels::quantize_dispatch::compiled ? std::string(kernels::native_isa::name).c_str() : "scalar");
}

template <class Q>
void run_symmetric() {
  print_isa();
  std::mt19937 rng(Q::bits * 7 + static_cast<int>(Q::name.size()));
  std::int64_t n = 0;
  n += check_symmetric<Q, float>(rng);
  n += check_symmetric<Q, bfloat16>(rng);
  n += check_symmetric<Q, float16>(rng);
  std::printf("%s: %lld values compared\n", std::string(Q::name).c_str(), static_cast<long long>(n));
  EXPECT_GE(n, 10'000'000);
}

template <class Q>
void run_affine() {
  print_isa();
  std::mt19937 rng(Q::bits);
  std::int64_t n = 0;
  n += check_affine<Q, float, false>(rng, max_optimizer{}, false);
  n += check_affine<Q, bfloat16, false>(rng, max_optimizer{}, false);
  n += check_affine<Q, float16, false>(rng, max_optimizer{}, false);
  n += check_affine<Q, float, true>(rng, max_optimizer{}, false);
  n += check_affine<Q, bfloat16, true>(rng, max_optimizer{}, false);
  n += check_affine<Q, float16, true>(rng, max_optimizer{}, false);
  std::printf("%s: %lld values compared\n", std::string(Q::name).c_str(), static_cast<long long>(n));
  EXPECT_GE(n, 10'000'000);
}

TEST(SimdQuantize, Qint8) { run_symmetric<qint8>(); }
TEST(SimdQuantize, Qfloat8E4m3fn) { run_symmetric<qfloat8_e4m3fn>(); }
TEST(SimdQuantize, Qfloat8E5m2) { run_symmetric<qfloat8_e5m2>(); }
TEST(SimdQuantize, Qfloat8E4m3fnuz) { run_symmetric<qfloat8_e4m3fnuz>(); }
TEST(SimdQuantize, Qint4Max) { run_affine<qint4>(); }
TEST(SimdQuantize, Qint2Max) { run_affine<qint2>(); }

TEST(SimdQuantize, Hqq) {
  print_isa();
  std::mt19937 rng(3);
  std::int64_t n = 0;
  hqq_optimizer three;
  three.torch_threads = 3;
  n += check_affine<qint4, float, false>(rng, hqq_optimizer{}, true);
  n += check_affine<qint4, bfloat16, false>(rng, hqq_optimizer{}, true);
  n += check_affine<qint4, float16, false>(rng, hqq_optimizer{}, true);
  n += check_affine<qint2, float, false>(rng, hqq_optimizer{}, true);
  n += check_affine<qint4, float, false>(rng, three, true);
  n += check_affine<qint2, bfloat16, true>(rng, three, true);
  // Weights shaped like a model's (normal values, groups of 128 along rows): HQQ keeps improving
  // for many iterations here, so every iteration of the fused per-row loop is compared.
  const auto gaussian = [&]<class T>(T, std::int64_t rows, const hqq_optimizer& opt) {
    tensor<T> w(shape{rows, 2048});
    std::normal_distribution<float> g(0.0f, 0.02f);
    for (auto& x : w) x = T(g(rng));
    const auto fast = quantize_weight<qint4>(w, group_affine<>{}, opt);
    scalar_scope s;
    const auto ref = quantize_weight<qint4>(w, group_affine<>{}, opt);
    EXPECT_TRUE(same_bits(fast.shift, ref.shift)) << "gaussian " << rows;
    EXPECT_TRUE(same_bits(fast.packed, ref.packed)) << "gaussian " << rows;
    n += w.numel();
  };
  gaussian(bfloat16{}, 384, hqq_optimizer{});
  gaussian(float16{}, 256, hqq_optimizer{});
  gaussian(float{}, 96, hqq_optimizer{});
  gaussian(bfloat16{}, 128, three);
  std::printf("hqq: %lld values compared\n", static_cast<long long>(n));
  EXPECT_GE(n, 10'000'000);
}

/// The vector pow against the scalar one on every float of a range of binades and the special
/// operands, for HQQ's three exponents and others.
TEST(SimdQuantize, PowMatchesReference) {
#if QUANTO_HAS_AVX2
  const float ys[] = {-0.3f,
                      -0.30078125f,
                      -0.30004883f,
                      0.7f,
                      -1.5f,
                      3.0f,
                      5.0f,
                      -7.0f,
                      2.5f,
                      std::numeric_limits<float>::infinity(),
                      -std::numeric_limits<float>::infinity(),
                      std::numeric_limits<float>::quiet_NaN(),
                      0.0f};
  std::mt19937 rng(11);
  std::vector<float> xs;
  for (int i = 0; i < 1 << 20; ++i) xs.push_back(bits_to_float(static_cast<std::uint32_t>(rng())));
  for (std::uint32_t u = 0; u < (1u << 20); ++u)
    xs.push_back(bits_to_float(0x3E000000u + u * 3));  // dense in [0.125, 1)
  for (float s : {0.0f, -0.0f, 1.0f, -1.0f, 1e-45f, 1e38f, -2.0f, -3.0f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()})
    xs.push_back(s);
  while (xs.size() % 8 != 0) xs.push_back(0.5f);
  for (float y : ys) {
    for (std::size_t i = 0; i < xs.size(); i += 8) {
      alignas(32) float out[8];
      _mm256_store_ps(out, kernels::quantize_avx2::sleef_powf8(_mm256_loadu_ps(xs.data() + i), y));
      for (int k = 0; k < 8; ++k)
        ASSERT_EQ(float_to_bits(out[k]), float_to_bits(detail::sleef_powf_u10(xs[i + k], y)))
            << "x bits " << std::hex << float_to_bits(xs[i + k]) << " y " << y;
    }
  }
#else
  GTEST_SKIP() << "no vector pow on this target";
#endif
}

/// `dequantize_into` writes what `dequantize` returns (both groupings, zero-points, 8-bit), and a
/// buffer of another element count is a shape_error, not a write past its end.
TEST(SimdQuantize, DequantizeIntoMatchesDequantize) {
  std::mt19937 rng(9);
  const tensor<bfloat16> w = make_weight<bfloat16>(96, 256, 64, rng, true, 4, false);
  const auto check = [](const auto& q) {
    using T = typename std::decay_t<decltype(q)>::model_type;
    tensor<T> out(q.shape());
    q.dequantize_into(out.mutable_view());
    EXPECT_TRUE(same_bits(out, q.dequantize()));
    tensor<T> flat(shape{q.shape().numel()});  // any shape with the element count
    q.dequantize_into(flat.mutable_view());
    EXPECT_EQ(std::memcmp(flat.data(), out.data(), out.size() * sizeof(T)), 0);
    tensor<T> small(shape{q.shape().numel() - 1});
    EXPECT_THROW(q.dequantize_into(small.mutable_view()), shape_error);
  };
  check(quantize_weight<qint4>(w, group_affine<>{64, qaxis::first}));
  check(quantize_weight<qint4>(w, group_affine<>{32, qaxis::last}));
  check(quantize_weight<qint2>(w, group_affine<true>{64, qaxis::first}));
  check(quantize_weight<qint4>(w, group_affine<>{no_group, qaxis::last}));
  check(quantize_weight<qint8>(w, symmetric{qaxis::first}));
  check(quantize_weight<qfloat8_e5m2>(w, symmetric{qaxis::last}));
}

/// The same bits with 1, 2 and 3 threads (and the default), for each scheme.
TEST(SimdQuantize, ThreadCountDoesNotChangeBits) {
  std::mt19937 rng(5);
  const tensor<bfloat16> w = make_weight<bfloat16>(1024, 1024, 1024, rng, false, 8, false);
  const tensor<float> wf = make_weight<float>(512, 4096, 128, rng, true, 4, false);
  kernels::thread_pool pool(3);
  const auto with = [&](int t) {
    quantize_options o;
    o.parallel = {t, &pool};
    return o;
  };
  const auto q8 = quantize_weight<qint8>(w, symmetric{}, absmax_optimizer{}, with(1));
  const auto q4 = quantize_weight<qint4>(wf, group_affine<>{}, max_optimizer{}, with(1));
  const auto qh = quantize_weight<qint4>(wf, group_affine<>{}, hqq_optimizer{}, with(1));
  for (int t : {2, 3, 0}) {
    const auto a = quantize_weight<qint8>(w, symmetric{}, absmax_optimizer{}, with(t));
    EXPECT_TRUE(same_bits(a.data, q8.data));
    EXPECT_TRUE(same_bits(a.scale, q8.scale));
    EXPECT_TRUE(same_bits(a.dequantize({t, &pool}), q8.dequantize({1, &pool})));
    const auto b = quantize_weight<qint4>(wf, group_affine<>{}, max_optimizer{}, with(t));
    EXPECT_TRUE(same_bits(b.packed, q4.packed));
    EXPECT_TRUE(same_bits(b.shift, q4.shift));
    EXPECT_TRUE(same_bits(b.dequantize({t, &pool}), q4.dequantize({1, &pool})));
    const auto c = quantize_weight<qint4>(wf, group_affine<>{}, hqq_optimizer{}, with(t));
    EXPECT_TRUE(same_bits(c.packed, qh.packed));
    EXPECT_TRUE(same_bits(c.shift, qh.shift));
  }
}

}  // namespace
