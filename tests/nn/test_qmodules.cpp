// QLinear, QConv2d and QLayerNorm against their float twins with the dequantized weight (quanto's
// tests/nn/test_qlinear.py, test_qconv2d.py, test_qlayernorm.py), dynamic vs frozen, the memory
// freed by freeze, straight-through gradients, and the refusals.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <new>

#include "nn_support.hpp"

// ---- allocation accounting (measures what freeze frees) -------------------------------------------
namespace {
std::atomic<long long> g_live{0};
}
void* operator new(std::size_t n) {
  void* p = std::malloc(n + 16);
  if (!p) throw std::bad_alloc();
  *static_cast<std::size_t*>(p) = n;
  g_live += static_cast<long long>(n);
  return static_cast<char*>(p) + 16;
}
void operator delete(void* p) noexcept {
  if (!p) return;
  char* base = static_cast<char*>(p) - 16;
  g_live -= static_cast<long long>(*reinterpret_cast<std::size_t*>(base));
  std::free(base);
}
void operator delete(void* p, std::size_t) noexcept { operator delete(p); }
void* operator new(std::size_t n, std::align_val_t a) {
  // over-allocate so the header sits just before an aligned address
  const auto al = static_cast<std::size_t>(a);
  void* raw = std::malloc(n + al + 16);
  if (!raw) throw std::bad_alloc();
  auto addr = (reinterpret_cast<std::uintptr_t>(raw) + 16 + al - 1) & ~(al - 1);
  reinterpret_cast<void**>(addr)[-1] = raw;
  reinterpret_cast<std::size_t*>(addr)[-2] = n;
  g_live += static_cast<long long>(n);
  return reinterpret_cast<void*>(addr);
}
void operator delete(void* p, std::align_val_t) noexcept {
  if (!p) return;
  g_live -= static_cast<long long>(reinterpret_cast<std::size_t*>(p)[-2]);
  std::free(reinterpret_cast<void**>(p)[-1]);
}
void operator delete(void* p, std::size_t, std::align_val_t a) noexcept { operator delete(p, a); }

namespace {
using namespace quanto;
using nt::one_minus_cos;

template <QType Q, class T = float>
nn::Linear<T> dequantized_twin(const nn::QLinear<Q, T>& q) {
  auto w = q.qweight().dequantize();
  std::optional<tensor<T>> b;
  if (q.bias()) b = *q.bias();
  return nn::Linear<T>(std::move(w), std::move(b));
}

template <class Q>
struct QLinearTyped : ::testing::Test {};
using AllQ = ::testing::Types<qint2, qint4, qint8, qfloat8_e4m3fn, qfloat8_e5m2, qfloat8_e4m3fnuz>;
TYPED_TEST_SUITE(QLinearTyped, AllQ);

// quanto test_qlinear / check_weight_qtensor_linear: the quantized module equals the float module
// run with the dequantized weight (similar, and max error ≤ 1e-2 of the output range).
TYPED_TEST(QLinearTyped, WeightOnlyMatchesDequantizedLinear) {
  using Q = TypeParam;
  for (auto [in, out] : {std::pair<std::int64_t, std::int64_t>{256, 512}, {512, 256}, {96, 40}, {320, 33}}) {
    std::mt19937_64 rng(7);
    nn::QLinear<Q> q(nn::Linear<float>(in, out, rng));
    auto twin = dequantized_twin(q);
    const auto x = nt::random(shape{3, 5, in}, 11);
    const auto y = q.forward(x).value;
    const auto ref = twin.forward(x).value;
    EXPECT_EQ(y.shape(), (shape{3, 5, out}));
    EXPECT_LE(one_minus_cos(ref, y), nt::similar_bound<float>()) << in << "x" << out;
    EXPECT_LE(nt::rel_max_error(ref, y), 1e-2);
  }
}

TYPED_TEST(QLinearTyped, FrozenEqualsDynamicAndDropsFloatWeight) {
  using Q = TypeParam;
  std::mt19937_64 rng(3);
  nn::QLinear<Q> q(nn::Linear<float>(256, 128, rng));
  const auto x = nt::random(shape{4, 256}, 5);
  const auto dynamic = q.forward(x).value;
  const auto before = q.qweight();
  EXPECT_FALSE(q.frozen());
  EXPECT_NE(q.float_weight(), nullptr);
  q.freeze();
  EXPECT_TRUE(q.frozen());
  EXPECT_EQ(q.float_weight(), nullptr);
  ASSERT_NE(q.packed_weight(), nullptr);
  const auto frozen = q.forward(x).value;
  ASSERT_EQ(frozen.size(), dynamic.size());
  for (std::size_t i = 0; i < frozen.size(); ++i) ASSERT_EQ(frozen[i], dynamic[i]) << i;
  // the file layout read back from the kernel layout is the weight quantized before freeze
  const auto after = q.qweight();
  EXPECT_TRUE(std::equal(before.scale.begin(), before.scale.end(), after.scale.begin()));
}

TEST(QLinear, FreezeFreesMemory) {
  std::mt19937_64 rng(1);
  auto lin = std::make_unique<nn::QLinear<qint4>>(nn::Linear<float>(1024, 1024, rng));
  // The quantizers run on the global thread pool, which lives until exit: start it before
  // counting, so that only the weight's own memory is measured.
  (void)kernels::thread_pool::global();
  const long long before = g_live.load();
  lin->freeze();
  const long long after = g_live.load();
  const long long freed = before - after;
  // float weight 4 MiB out, int4 codes (0.5 MiB) + float scale/shift per group of 128 in
  const long long float_bytes = 1024LL * 1024 * 4;
  const long long packed_bytes = 1024LL * 1024 / 2 + 1024LL * 8 * 2 * 4;
  EXPECT_EQ(freed, float_bytes - packed_bytes) << "live bytes before " << before << ", after " << after;
  EXPECT_EQ(lin->weight_bytes(), static_cast<std::size_t>(packed_bytes));
}

TYPED_TEST(QLinearTyped, StraightThroughGradients) {
  using Q = TypeParam;
  std::mt19937_64 rng(9);
  nn::QLinear<Q> q(nn::Linear<float>(160, 48, rng));
  auto twin = dequantized_twin(q);
  q.train(true);
  twin.train(true);
  const auto x = nt::random(shape{6, 160}, 2);
  const auto g = nt::random(shape{6, 48}, 4);
  (void)q.forward(x);
  (void)twin.forward(x);
  const auto gx = q.backward(g), gx_ref = twin.backward(g);
  for (std::size_t i = 0; i < gx.size(); ++i) ASSERT_EQ(gx[i], gx_ref[i]) << "input grad " << i;
  // the float weight's gradient is the float module's, unchanged by quantization
  std::vector<tensor<float>> grads, ref_grads;
  q.for_each_parameter([&](std::string_view, tensor<float>&, tensor<float>& gr) { grads.push_back(gr); });
  twin.for_each_parameter([&](std::string_view, tensor<float>&, tensor<float>& gr) { ref_grads.push_back(gr); });
  ASSERT_EQ(grads.size(), 2u);
  ASSERT_EQ(ref_grads.size(), 2u);
  for (std::size_t p = 0; p < 2; ++p)
    for (std::size_t i = 0; i < grads[p].size(); ++i) ASSERT_EQ(grads[p][i], ref_grads[p][i]) << p << " " << i;
}

TEST(QLinear, BackwardNeedsTrainingForward) {
  std::mt19937_64 rng(9);
  nn::QLinear<qint8> q(nn::Linear<float>(32, 8, rng));
  (void)q.forward(nt::random(shape{2, 32}, 1));
  EXPECT_THROW((void)q.backward(nt::random(shape{2, 8}, 1)), state_error);
}

// quanto test_quantize_linear_*_activations_*: quantized inputs and outputs against the float Linear
// on the dequantized weight and dequantized input; int8 atol 1e-4, float8 5e-3 (fp32).
template <class QW, class QA>
void check_activations(double atol) {
  std::mt19937_64 rng(21);
  nn::QLinear<QW> q(nn::Linear<float>(256, 128, rng), {.activations = id_of<QA>()});
  auto twin = dequantized_twin(q);
  const auto x = nt::random(shape{4, 256}, 8);
  const auto qx = nn::to_quantized_activation<QA>(x.view(), activation_scale<QA>(x.view()));
  nn::activation<float> y;
  {
    nn::Calibration calib;
    y = q.forward(qx);
  }
  ASSERT_TRUE(y.is_quantized());
  EXPECT_EQ(*y.qtype(), id_of<QA>());
  EXPECT_EQ(q.input_scale(), qx.scale());  // an already quantized input sets the input scale
  const auto ref = twin.forward(tensor<float>(qx.value)).value;
  EXPECT_LE(one_minus_cos(ref, y.value), atol + 1e-5) << QW::name << " x " << QA::name;
}

TEST(QLinear, ActivationsInt8) {
  check_activations<qint8, qint8>(1e-4);
  check_activations<qint4, qint8>(1e-4);
  check_activations<qfloat8_e4m3fn, qint8>(1e-4);
}
TEST(QLinear, ActivationsFloat8) {
  check_activations<qint8, qfloat8_e4m3fn>(5e-3);
  check_activations<qint8, qfloat8_e5m2>(5e-3);
  check_activations<qint8, qfloat8_e4m3fnuz>(5e-3);
  check_activations<qint4, qfloat8_e4m3fn>(5e-3);
  check_activations<qfloat8_e4m3fn, qfloat8_e4m3fn>(5e-3);
}

TEST(QLinear, InputOfAnotherQtypeIsRefused) {
  std::mt19937_64 rng(2);
  nn::QLinear<qint8> q(nn::Linear<float>(32, 8, rng), {.activations = qtype_id::qint8});
  const auto x = nt::random(shape{2, 32}, 1);
  const auto fx = nn::to_quantized_activation<qfloat8_e4m3fn>(x.view(), 0.01f);
  EXPECT_THROW((void)q.forward(fx), unsupported_error);
}

TEST(QLinear, BadInputsAreTypedErrors) {
  std::mt19937_64 rng(2);
  nn::QLinear<qint4> q(nn::Linear<float>(64, 8, rng), {.activations = qtype_id::qint8});
  EXPECT_THROW((void)q.forward(nt::random(shape{2, 63}, 1)), shape_error);
  auto x = nt::random(shape{2, 64}, 1);
  x[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW((void)q.forward(x), value_error);
  // a NaN in the float weight is refused when it is re-quantized
  nn::Linear<float> bad(64, 8, rng);
  bad.weight()[5] = std::numeric_limits<float>::infinity();
  nn::QLinear<qint8> qb(std::move(bad));
  EXPECT_THROW((void)qb.forward(nt::random(shape{1, 64}, 2)), value_error);
  EXPECT_THROW(qb.freeze(), value_error);
  EXPECT_FALSE(qb.frozen());
}

TEST(QLinear, OptimizerMustFitTheQtype) {
  std::mt19937_64 rng(2);
  EXPECT_THROW(nn::QLinear<qint8>(nn::Linear<float>(32, 8, rng), {.optimizer = max_optimizer{}}), unsupported_error);
  EXPECT_THROW(nn::QLinear<qint4>(nn::Linear<float>(32, 8, rng), {.optimizer = absmax_optimizer{}}), unsupported_error);
  nn::QLinear<qint4> h(nn::Linear<float>(256, 8, rng), {.optimizer = hqq_optimizer{}});
  nn::QLinear<qint4> m(nn::Linear<float>(256, 8, rng), {});
  EXPECT_NO_THROW((void)h.forward(nt::random(shape{1, 256}, 3)));
}

// quanto: HQQ's mean absolute weight error is no worse than Max's, and the module uses it
TEST(QLinear, HqqWeightErrorNotWorseThanMax) {
  std::mt19937_64 rng(5);
  nn::Linear<float> base(256, 64, rng);
  const tensor<float> w = base.weight();
  nn::QLinear<qint4> h{nn::Linear<float>(tensor<float>(w)), {.optimizer = hqq_optimizer{}}};
  nn::QLinear<qint4> m{nn::Linear<float>(tensor<float>(w))};
  const auto err = [&](const tensor<float>& dq) {
    double e = 0;
    for (std::size_t i = 0; i < w.size(); ++i) e += std::abs(dq[i] - w[i]);
    return e / static_cast<double>(w.size());
  };
  EXPECT_LE(err(h.qweight().dequantize()), err(m.qweight().dequantize()));
  EXPECT_NE(err(h.qweight().dequantize()), err(m.qweight().dequantize()));
}

template <class T>
void check_model_dtype() {
  std::mt19937_64 rng(4);
  nn::QLinear<qint4, T> q(nn::Linear<T>(256, 64, rng));
  auto twin = dequantized_twin(q);
  const auto x = nt::random<T>(shape{3, 256}, 6);
  const auto y = q.forward(x).value;
  EXPECT_LE(one_minus_cos(twin.forward(x).value, y), nt::similar_bound<T>());
  nn::QLinear<qint8, T> q8(nn::Linear<T>(256, 64, rng), {.activations = qtype_id::qint8});
  {
    nn::Calibration c;
    (void)q8.forward(x);
  }
  EXPECT_NE(quanto::model_arith::widen(q8.output_scale()), 1.0f);
}
TEST(QLinear, Float16AndBfloat16Models) {
  check_model_dtype<float16>();
  check_model_dtype<bfloat16>();
}

// ---- QConv2d -------------------------------------------------------------------------------------------

template <class Q>
void check_qconv(double atol) {
  std::mt19937_64 rng(13);
  kernels::conv2d_params p;
  p.pad_h = p.pad_w = 1;
  nn::Conv2d<float> conv(8, 16, 3, rng, p);
  nn::QConv2d<Q> q(std::move(conv));
  nn::Conv2d<float> twin(q.qweight().dequantize(), std::nullopt, p);
  const auto x = nt::random(shape{2, 8, 12, 10}, 3);
  // twin without bias: add it through a second conv with bias copied
  const auto y = q.forward(x).value;
  auto ref = twin.forward(x).value;
  EXPECT_EQ(y.shape(), (shape{2, 16, 12, 10}));
  // the quantized module has a bias; the twin none: compare after removing it per channel
  const auto yb = q.forward(tensor<float>(shape{2, 8, 12, 10})).value;  // zero input: bias only
  for (std::size_t i = 0; i < ref.size(); ++i) ref[i] += yb[i];
  EXPECT_LE(one_minus_cos(ref, y), atol + 1e-5) << Q::name;
}
TEST(QConv2d, MatchesDequantizedConv) {
  check_qconv<qint8>(1e-4);
  check_qconv<qint4>(1e-4);
  check_qconv<qint2>(1e-4);
  check_qconv<qfloat8_e4m3fn>(1e-4);
}

TEST(QConv2d, OutputsQuantizedInputsNot) {
  std::mt19937_64 rng(13);
  nn::QConv2d<qint8> q(nn::Conv2d<float>(3, 4, 3, rng), {.activations = qtype_id::qint8});
  const auto x = nt::random(shape{1, 3, 8, 8}, 3);
  nn::activation<float> y;
  {
    nn::Calibration c;
    y = q.forward(x);
  }
  EXPECT_TRUE(y.is_quantized());
  EXPECT_NE(q.input_scale(), 1.0f);  // calibrated although not used (quanto's global input hook)
  EXPECT_NE(q.output_scale(), 1.0f);
}

TEST(QConv2d, StraightThroughGradients) {
  std::mt19937_64 rng(13);
  kernels::conv2d_params p;
  p.stride_h = 2;
  p.pad_w = 1;
  nn::QConv2d<qint4> q(nn::Conv2d<float>(4, 6, 3, rng, p));
  nn::Conv2d<float> twin(q.qweight().dequantize(), std::nullopt, p);
  q.train(true);
  twin.train(true);
  const auto x = nt::random(shape{2, 4, 9, 7}, 3);
  const auto y = q.forward(x).value;
  (void)twin.forward(x);
  const auto g = nt::random(y.shape(), 8);
  const auto gx = q.backward(g), gref = twin.backward(g);
  for (std::size_t i = 0; i < gx.size(); ++i) ASSERT_EQ(gx[i], gref[i]) << i;
}

// ---- QLayerNorm ----------------------------------------------------------------------------------------

TEST(QLayerNorm, QuantizesOutputsOnly) {
  nn::LayerNorm<float> ln(64);
  nn::LayerNorm<float> twin(64);
  nn::QLayerNorm<float> q(std::move(ln), {.activations = qtype_id::qint8});
  const auto x = nt::random(shape{5, 64}, 3, -3.0f, 3.0f);
  nn::activation<float> y;
  {
    nn::Calibration c;
    y = q.forward(x);
  }
  ASSERT_TRUE(y.is_quantized());
  EXPECT_EQ(q.weight_qtype(), std::nullopt);
  EXPECT_TRUE(q.frozen());
  const auto ref = twin.forward(x).value;
  EXPECT_LE(one_minus_cos(ref, y.value), 1e-4 + 1e-5);
  EXPECT_THROW(nn::QLayerNorm<float>(nn::LayerNorm<float>(8), {}), unsupported_error);
}

}  // namespace
