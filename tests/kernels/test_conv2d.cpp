// conv2d on the matmul kernels, on every ISA this machine runs: within the float32 accumulation
// bound of a float64 direct convolution computed from the FILE layout of the weight (exact
// scale * code values), for every qtype kind, float/bfloat16 model dtypes and activations, strides,
// padding, dilation, 1x1 and rectangular kernels, non-square images, several images, multi-tile
// images; bit for bit the matmul on an explicit im2col; the same bits for any tile size and thread
// count; shape errors.
#include <gtest/gtest.h>

#include <cstring>

#include <quanto/kernels/conv2d.hpp>

#include "matmul_support.hpp"

namespace {

using namespace kt;

template <class I>
class Conv2d : public IsaTest<I> {};
TYPED_TEST_SUITE(Conv2d, TestIsas);

/// One convolution: input [n, c, h, w], weight [out, c, kh, kw], parameters, bias or not.
struct conv_case {
  std::int64_t n, c, h, w, out, kh, kw;
  qk::conv2d_params p{};
  bool bias = true;
  std::string name() const {
    return "x[" + std::to_string(n) + "," + std::to_string(c) + "," + std::to_string(h) + "," + std::to_string(w) +
           "] w[" + std::to_string(out) + "," + std::to_string(c) + "," + std::to_string(kh) + "," +
           std::to_string(kw) + "] stride " + std::to_string(p.stride_h) + "x" + std::to_string(p.stride_w) + " pad " +
           std::to_string(p.pad_h) + "x" + std::to_string(p.pad_w) + " dilation " + std::to_string(p.dilation_h) + "x" +
           std::to_string(p.dilation_w) + (bias ? " bias" : " no bias") + " tile " + std::to_string(p.tile_pixels);
  }
};

qk::conv2d_params params(std::int64_t sh, std::int64_t sw, std::int64_t ph, std::int64_t pw, std::int64_t dh = 1,
                         std::int64_t dw = 1) {
  return {.stride_h = sh, .stride_w = sw, .pad_h = ph, .pad_w = pw, .dilation_h = dh, .dilation_w = dw};
}

/// A random conv weight [out, c, kh, kw] quantized with qtype Q.
template <class Q, class T, class S = default_scheme_t<Q>>
auto make_conv_weight(const conv_case& cc, unsigned seed, S scheme = {}) {
  tensor<T> f = random_weight<T>(cc.out, cc.c * cc.kh * cc.kw, seed);
  f.reshape(shape{cc.out, cc.c, cc.kh, cc.kw});
  return quantize_weight<Q>(f, scheme);
}

/// The float64 direct convolution, [n, out, oh, ow], and the per-output magnitude bounding the
/// float32 error (as matmul_support's reference_matmul: sum |x| (|w| + 2 |shift|) + |bias|).
template <class W, class X>
reference_result reference_conv(const W& w, const std::vector<X>& x, const conv_case& cc, std::int64_t oh_n,
                                std::int64_t ow_n, const float* bias) {
  const std::int64_t K = cc.c * cc.kh * cc.kw;
  const std::vector<double> dq = exact_weight(w);  // [out][K], K in (c, kh, kw) order
  std::vector<double> shift_abs(dq.size(), 0.0);
  if constexpr (LowBitQType<typename W::qtype>) {
    const std::int64_t gs = w.group_size ? *w.group_size : K;
    for (std::size_t i = 0; i < dq.size(); ++i) {
      const auto gi = static_cast<std::size_t>(static_cast<std::int64_t>(i) / gs);
      if constexpr (std::is_same_v<typename W::shift_type, std::uint8_t>)
        shift_abs[i] = std::fabs(to_double(w.scale[gi]) * w.shift[gi]);
      else
        shift_abs[i] = std::fabs(to_double(w.shift[gi]));
    }
  }
  const auto total = static_cast<std::size_t>(cc.n * cc.out * oh_n * ow_n);
  reference_result r{std::vector<double>(total), std::vector<double>(total)};
  const qk::conv2d_params& p = cc.p;
  for (std::int64_t b = 0; b < cc.n; ++b)
    for (std::int64_t o = 0; o < cc.out; ++o)
      for (std::int64_t oh = 0; oh < oh_n; ++oh)
        for (std::int64_t ow = 0; ow < ow_n; ++ow) {
          double acc = bias ? bias[o] : 0.0, mag = bias ? std::fabs(bias[o]) : 0.0;
          for (std::int64_t c = 0; c < cc.c; ++c)
            for (std::int64_t kh = 0; kh < cc.kh; ++kh)
              for (std::int64_t kw = 0; kw < cc.kw; ++kw) {
                const std::int64_t ih = oh * p.stride_h - p.pad_h + kh * p.dilation_h;
                const std::int64_t iw = ow * p.stride_w - p.pad_w + kw * p.dilation_w;
                if (ih < 0 || ih >= cc.h || iw < 0 || iw >= cc.w) continue;
                const double xv = to_double(x[static_cast<std::size_t>(((b * cc.c + c) * cc.h + ih) * cc.w + iw)]);
                const auto we = static_cast<std::size_t>(o * K + (c * cc.kh + kh) * cc.kw + kw);
                acc += xv * dq[we];
                mag += std::fabs(xv) * (std::fabs(dq[we]) + 2.0 * shift_abs[we]);
              }
          const auto at = static_cast<std::size_t>(((b * cc.out + o) * oh_n + oh) * ow_n + ow);
          r.y[at] = acc;
          r.magnitude[at] = mag;
        }
  return r;
}

/// conv2d<exact, I> on one case, every output against the bound.
template <class I, class Q, class T, class X = float, class S = default_scheme_t<Q>>
void check(const conv_case& cc, S scheme = {}) {
  if constexpr (qk::UsableIsa<I>) {
    SCOPED_TRACE(std::string(Q::name) + " " + cc.name());
    const auto w = make_conv_weight<Q, T>(cc, static_cast<unsigned>(cc.out * 31 + cc.c * 7 + cc.kh), scheme);
    const auto pw = qk::pack_weight(w);
    const std::vector<X> x = random_x<X>(cc.n * cc.c * cc.h * cc.w, static_cast<unsigned>(cc.h * 13 + cc.w));
    std::vector<float> bias;
    if (cc.bias) bias = random_x<float>(cc.out, 11);
    const tensor_view<const X> xv(x.data(), shape{cc.n, cc.c, cc.h, cc.w});
    const tensor<X> y = qk::conv2d<qk::exact_activations, I>(pw, xv, std::span<const float>(bias), cc.p);
    const std::int64_t oh = (cc.h + 2 * cc.p.pad_h - cc.p.dilation_h * (cc.kh - 1) - 1) / cc.p.stride_h + 1;
    const std::int64_t ow = (cc.w + 2 * cc.p.pad_w - cc.p.dilation_w * (cc.kw - 1) - 1) / cc.p.stride_w + 1;
    ASSERT_EQ(y.shape(), (shape{cc.n, cc.out, oh, ow}));
    const auto ref = reference_conv(w, x, cc, oh, ow, cc.bias ? bias.data() : nullptr);
    const std::int64_t K = cc.c * cc.kh * cc.kw;
    for (std::size_t i = 0; i < y.size(); ++i) {
      const double want = ref.y[i];
      double bound = float_bound(K, ref.magnitude[i]);
      if constexpr (!std::is_same_v<X, float>)
        bound += std::fabs(want) * (std::is_same_v<X, bfloat16> ? 1.0 / 256 : 1.0 / 2048);
      ASSERT_NEAR(to_double(y[i]), want, bound) << "output " << i;
    }
  }
}

/// The cases: strides, padding, dilation, 1x1 and rectangular kernels, non-square images, N = 2,
/// channel counts that are not multiples of anything, a kernel that overhangs a tiny image.
std::vector<conv_case> cases() {
  std::vector<conv_case> v;
  v.push_back({2, 3, 7, 9, 8, 3, 3, params(1, 1, 1, 1), true});          // same padding, non-square
  v.push_back({1, 5, 11, 8, 6, 3, 3, params(2, 2, 1, 1), false});        // stride 2, pad 1
  v.push_back({2, 3, 10, 10, 4, 3, 3, params(1, 1, 2, 2, 2, 2), true});  // dilation 2
  v.push_back({1, 5, 9, 6, 7, 3, 3, params(1, 1, 0, 0, 2, 2), false});   // dilation 2, no padding
  v.push_back({2, 7, 5, 6, 12, 1, 1, params(1, 1, 0, 0), true});         // 1x1
  v.push_back({1, 3, 9, 7, 5, 1, 1, params(2, 2, 0, 0), false});         // 1x1 stride 2
  v.push_back({1, 3, 12, 13, 5, 5, 3, params(2, 1, 2, 0, 1, 3), true});  // rectangular, mixed
  v.push_back({2, 5, 2, 3, 3, 3, 3, params(1, 1, 1, 1), true});          // kernel overhangs the image
  v.push_back({1, 3, 20, 19, 4, 3, 3, params(1, 1, 1, 1), true});        // 380 pixels: two tiles
  v.push_back({2, 3, 20, 19, 4, 3, 3, params(1, 1, 1, 1), false});       // 380 pixels in tiles of 7
  v.back().p.tile_pixels = 7;
  return v;
}

template <class I, class T, class X>
void every_qtype() {
  for (const conv_case& cc : cases()) {
    check<I, qint8, T, X>(cc);
    check<I, qfloat8_e4m3fn, T, X>(cc);
    check<I, qint4, T, X>(cc);
    check<I, qint2, T, X>(cc);
  }
}

TYPED_TEST(Conv2d, FloatWeightsFloatInput) { every_qtype<TypeParam, float, float>(); }
TYPED_TEST(Conv2d, Bfloat16WeightsFloatInput) { every_qtype<TypeParam, bfloat16, float>(); }
TYPED_TEST(Conv2d, Bfloat16WeightsBfloat16Input) { every_qtype<TypeParam, bfloat16, bfloat16>(); }
TYPED_TEST(Conv2d, FloatWeightsBfloat16Input) { every_qtype<TypeParam, float, bfloat16>(); }

TYPED_TEST(Conv2d, GroupedAndZeroPointWeights) {
  using I = TypeParam;
  const conv_case wide{2, 32, 6, 7, 10, 3, 3, params(1, 2, 1, 1), true};  // K = 288: groups of 96
  check<I, qint4, bfloat16>(wide);
  check<I, qint2, bfloat16>(wide);
  check<I, qint4, float>(wide, group_affine<>{32});
  check<I, qint4, bfloat16>(wide, group_affine<true>{});
  check<I, qint8, bfloat16, bfloat16>(wide);
}

/// The receptive fields of the test's own im2col, [pixels, K] per image.
template <class X>
std::vector<X> test_im2col(const std::vector<X>& x, const conv_case& cc, std::int64_t b, std::int64_t oh_n,
                           std::int64_t ow_n) {
  const std::int64_t K = cc.c * cc.kh * cc.kw;
  std::vector<X> cols(static_cast<std::size_t>(oh_n * ow_n * K), X(0.0f));
  for (std::int64_t oh = 0; oh < oh_n; ++oh)
    for (std::int64_t ow = 0; ow < ow_n; ++ow)
      for (std::int64_t c = 0; c < cc.c; ++c)
        for (std::int64_t kh = 0; kh < cc.kh; ++kh)
          for (std::int64_t kw = 0; kw < cc.kw; ++kw) {
            const std::int64_t ih = oh * cc.p.stride_h - cc.p.pad_h + kh * cc.p.dilation_h;
            const std::int64_t iw = ow * cc.p.stride_w - cc.p.pad_w + kw * cc.p.dilation_w;
            if (ih < 0 || ih >= cc.h || iw < 0 || iw >= cc.w) continue;
            cols[static_cast<std::size_t>((oh * ow_n + ow) * K + (c * cc.kh + kh) * cc.kw + kw)] =
                x[static_cast<std::size_t>(((b * cc.c + c) * cc.h + ih) * cc.w + iw)];
          }
  return cols;
}

/// conv2d is exactly the matmul of the im2col rows (both policies), whatever the tile size and the
/// thread count.
template <class I, class P, class W>
void same_bits_as_matmul(const W& w, const conv_case& cc) {
  if constexpr (qk::UsableIsa<I>) {
    SCOPED_TRACE(cc.name());
    const auto pw = qk::pack_weight(w);
    const std::vector<float> x = random_x<float>(cc.n * cc.c * cc.h * cc.w, 5);
    const std::vector<float> bias = random_x<float>(cc.out, 6);
    const tensor_view<const float> xv(x.data(), shape{cc.n, cc.c, cc.h, cc.w});
    const auto g = qk::conv2d_shape(pw.original_shape, xv.shape(), cc.p);
    const std::int64_t pixels = g.pixels(), K = g.patch();
    std::vector<float> want(static_cast<std::size_t>(cc.n * cc.out * pixels));
    for (std::int64_t b = 0; b < cc.n; ++b) {
      const std::vector<float> cols = test_im2col(x, cc, b, g.out_h, g.out_w);
      std::vector<float> y(static_cast<std::size_t>(pixels * cc.out));
      qk::matmul<P, I>(pw, cols.data(), pixels, K, y.data(), cc.out, bias.data());
      for (std::int64_t o = 0; o < cc.out; ++o)
        for (std::int64_t t = 0; t < pixels; ++t)
          want[static_cast<std::size_t>((b * cc.out + o) * pixels + t)] = y[static_cast<std::size_t>(t * cc.out + o)];
    }
    // A matmul output may depend on m in its last bits: below m = 5 the AVX2 kernel computes rows
    // in register tiles of up to 4 whose accumulation order depends on the tile's height, from 5 on
    // its panel kernels do not depend on m. Tiles that are multiples of 4 and at least 8 (a last
    // tile under 5 rows is joined to the one before) keep the whole image's arithmetic; the scalar
    // reference does not depend on m at all.
    std::vector<std::int64_t> tiles{8, 12, 64, 256, 100000};
    if constexpr (std::is_same_v<I, qk::isa::scalar>) tiles.insert(tiles.end(), {1, 7});
    for (std::int64_t tile : tiles)
      for (int threads : {1, 2, 3}) {
        qk::conv2d_params p = cc.p;
        p.tile_pixels = tile;
        qk::matmul_options opt;
        opt.parallel.threads = threads;
        const tensor<float> got = qk::conv2d<P, I>(pw, xv, std::span<const float>(bias), p, opt);
        ASSERT_EQ(got.size(), want.size());
        ASSERT_EQ(0, std::memcmp(got.data(), want.data(), want.size() * sizeof(float)))
            << "tile " << tile << ", " << threads << " threads";
      }
  }
}

TYPED_TEST(Conv2d, SameBitsAsMatmulOnIm2colForAnyTileAndThreads) {
  using I = TypeParam;
  const conv_case a{2, 5, 9, 11, 20, 3, 3, params(2, 1, 1, 2, 1, 2), true};
  same_bits_as_matmul<I, qk::exact_activations>(make_conv_weight<qint4, bfloat16>(a, 1), a);
  same_bits_as_matmul<I, qk::dynamic_int8_activations>(make_conv_weight<qint4, bfloat16>(a, 1), a);
  same_bits_as_matmul<I, qk::exact_activations>(make_conv_weight<qfloat8_e4m3fn, float>(a, 2), a);
  const conv_case b{1, 32, 17, 16, 24, 3, 3, params(1, 1, 1, 1), true};  // 272 pixels, grouped qint4
  same_bits_as_matmul<I, qk::exact_activations>(make_conv_weight<qint4, bfloat16>(b, 3), b);
  same_bits_as_matmul<I, qk::dynamic_int8_activations>(make_conv_weight<qint8, float>(b, 4), b);
}

TYPED_TEST(Conv2d, PointerEntryPointMixedTypes) {
  using I = TypeParam;
  if constexpr (qk::UsableIsa<I>) {
    const conv_case cc{2, 3, 8, 6, 5, 3, 3, params(1, 1, 1, 1), true};
    const auto pw = qk::pack_weight(make_conv_weight<qint8, bfloat16>(cc, 9));
    const std::vector<bfloat16> x = random_x<bfloat16>(cc.n * cc.c * cc.h * cc.w, 3);
    const std::vector<float> bias = random_x<float>(cc.out, 4);
    const tensor_view<const bfloat16> xv(x.data(), shape{cc.n, cc.c, cc.h, cc.w});
    const tensor<bfloat16> y16 = qk::conv2d<qk::exact_activations, I>(pw, xv, std::span<const float>(bias), cc.p);
    std::vector<float> y32(y16.size(), -1.0f);
    qk::conv2d<qk::exact_activations, I>(pw, x.data(), cc.n, cc.h, cc.w, y32.data(), bias.data(), cc.p);
    // the float output rounds to the bfloat16 output: one rounding, after the bias
    for (std::size_t i = 0; i < y32.size(); ++i) ASSERT_EQ(bfloat16(y32[i]).to_bits(), y16[i].to_bits()) << i;
  }
}

TEST(Conv2dApi, ShapesAndErrors) {
  const conv_case cc{1, 3, 6, 5, 4, 3, 3, params(1, 1, 1, 1), true};
  const auto pw = qk::pack_weight(make_conv_weight<qint8, float>(cc, 1));
  const tensor<float> x(shape{1, 3, 6, 5});
  const auto run = [&](const qk::conv2d_params& p, shape xs = shape{1, 3, 6, 5}) {
    const tensor<float> in(xs);
    return qk::conv2d(pw, in.view(), {}, p);
  };
  EXPECT_EQ(run(cc.p).shape(), (shape{1, 4, 6, 5}));
  EXPECT_EQ(run(params(2, 3, 0, 0)).shape(), (shape{1, 4, 2, 1}));
  EXPECT_EQ(run(params(1, 1, 0, 0, 2, 2)).shape(), (shape{1, 4, 2, 1}));
  EXPECT_EQ(run(cc.p, shape{0, 3, 6, 5}).shape(), (shape{0, 4, 6, 5}));  // an empty batch

  EXPECT_THROW(run(params(0, 1, 0, 0)), shape_error);
  EXPECT_THROW(run(params(1, -2, 0, 0)), shape_error);
  EXPECT_THROW(run(params(1, 1, -1, 0)), shape_error);
  EXPECT_THROW(run(params(1, 1, 0, 0, 0, 1)), shape_error);
  EXPECT_THROW(run(params(1, 1, 0, 0, 1, -1)), shape_error);
  EXPECT_THROW(run(params(1, 1, 0, 0, 3, 1)), shape_error);                // dilated kernel 7 rows > 6
  EXPECT_THROW(run(params(1, 1, 0, 0), shape{1, 3, 2, 5}), shape_error);   // output height 0
  EXPECT_THROW(run(params(1, 1, std::int64_t{1} << 62, 0)), shape_error);  // overflow
  EXPECT_THROW(run(params(1, 1, 0, 0, std::int64_t{1} << 62, 1)), shape_error);
  EXPECT_THROW(run(cc.p, shape{1, 4, 6, 5}), shape_error);  // channels
  EXPECT_THROW(run(cc.p, shape{3, 6, 5}), shape_error);     // rank
  qk::conv2d_params g = cc.p;
  g.groups = 3;
  EXPECT_THROW(run(g), unsupported_error);
  qk::conv2d_params t = cc.p;
  t.tile_pixels = 0;
  EXPECT_THROW(run(t), shape_error);
  EXPECT_THROW(qk::conv2d(pw, x.view(), std::vector<float>(3), cc.p), shape_error);  // bias size
  std::vector<float> y(200);
  EXPECT_THROW(qk::conv2d(pw, x.data(), -1, 6, 5, y.data(), nullptr, cc.p), shape_error);
  // a linear weight is not a conv weight
  const auto linear = qk::pack_weight(make_weight<qint8, float>(4, 27, 1));
  EXPECT_THROW(qk::conv2d(linear, x.view(), {}, cc.p), shape_error);
  EXPECT_THROW(qk::conv2d(linear, x.data(), 1, 6, 5, y.data(), nullptr, cc.p), shape_error);
  // the error names the problem
  try {
    run(params(1, 1, 0, 0), shape{1, 3, 2, 5});
    FAIL() << "no throw";
  } catch (const shape_error& e) {
    EXPECT_NE(std::string(e.what()).find("output height"), std::string::npos) << e.what();
  }
}

}  // namespace
