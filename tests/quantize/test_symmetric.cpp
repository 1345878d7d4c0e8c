// Symmetric quantization (qint8, qfloat8): hand-checked values, axes, quanto's rules, errors.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <quanto/quanto.hpp>

using namespace quanto;

namespace {
template <class T>
tensor<T> make(shape s, std::initializer_list<float> v) {
  tensor<T> t(s);
  std::size_t i = 0;
  for (float x : v) t[i++] = T(x);
  return t;
}
}  // namespace

TEST(Symmetric, Qint8PerRowByHand) {
  // Row 0: absmax 127 -> scale 1; -63.5 rounds half to even -> -64. Row 1: absmax 2.54 -> scale 0.02.
  const auto w = make<float>(shape{2, 3}, {127.0f, -63.5f, 0.0f, 2.54f, -1.27f, 0.01f});
  const auto q = quantize_weight<qint8>(w);
  ASSERT_EQ(q.scale.shape(), (shape{2, 1}));
  EXPECT_EQ(q.scale[0], 1.0f);
  EXPECT_EQ(q.scale[1], 2.54f / 127.0f);
  EXPECT_EQ(q.data[0], 127);
  EXPECT_EQ(q.data[1], -64);
  EXPECT_EQ(q.data[2], 0);
  EXPECT_EQ(q.data[3], 127);
  EXPECT_EQ(q.data[4], static_cast<std::int8_t>(std::nearbyint(-1.27f / (2.54f / 127.0f))));
  EXPECT_EQ(q.data[5], 0);  // 0.01 / 0.02 = 0.5 -> 0 (ties to even)
  const auto dq = q.dequantize();
  EXPECT_EQ(dq[0], 127.0f);
  EXPECT_EQ(dq[1], -64.0f);
}

TEST(Symmetric, ClampIsAsymmetricLikeQuanto) {
  // A scale smaller than absmax/127 (as bf16 rounding can give) makes -absmax land on -128.
  const auto w = make<float>(shape{1, 2}, {-128.0f, 127.0f});
  const float s[] = {1.0f};
  const auto codes = quantize_symmetric<qint8, float>(w.view(), qaxis::none, tensor_view<const float>(s, shape{}));
  EXPECT_EQ(codes[0], -128);
  EXPECT_EQ(codes[1], 127);
  const float s2[] = {0.5f};
  const auto sat = quantize_symmetric<qint8, float>(w.view(), qaxis::none, tensor_view<const float>(s2, shape{}));
  EXPECT_EQ(sat[0], -128);
  EXPECT_EQ(sat[1], 127);
}

TEST(Symmetric, Float8SaturatesThroughTheClamp) {
  const auto w = make<float>(shape{1, 3}, {448.0f, -1000.0f, 1.0f});
  const float s[] = {1.0f};
  const auto c = quantize_symmetric<qfloat8_e4m3fn, float>(w.view(), qaxis::none, tensor_view<const float>(s, shape{}));
  EXPECT_EQ(c[0].to_bits(), 0x7E);  // 448
  EXPECT_EQ(c[1].to_bits(), 0xFE);  // -448, not NaN
  EXPECT_EQ(static_cast<float>(c[2]), 1.0f);
  const auto c5 = quantize_symmetric<qfloat8_e5m2, float>(w.view(), qaxis::none, tensor_view<const float>(s, shape{}));
  EXPECT_EQ(static_cast<float>(c5[1]), -1024.0f);
}

TEST(Symmetric, AxesAndTheSizeOneRule) {
  tensor<float> w(shape{3, 4});
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) - 5.0f;
  EXPECT_EQ(quantize_weight<qint8>(w, symmetric{qaxis::first}).scale.shape(), (shape{3, 1}));
  const auto last = quantize_weight<qint8>(w, symmetric{qaxis::last});
  ASSERT_EQ(last.scale.shape(), (shape{1, 4}));
  EXPECT_EQ(last.scale[0], 5.0f / 127.0f);  // column 0: {-5, -1, 3}
  EXPECT_EQ(last.scale[3], 6.0f / 127.0f);  // column 3: {-2, 2, 6}
  EXPECT_EQ(quantize_weight<qint8>(w, per_tensor).scale.shape(), shape{});
  // quanto: an axis of size 1 means per tensor.
  tensor<float> row(shape{1, 8});
  const auto r = quantize_weight<qint8>(row);
  EXPECT_EQ(r.axis, qaxis::none);
  EXPECT_EQ(r.scale.shape(), shape{});
}

TEST(Symmetric, ZeroRowsDequantizeExactlyWithoutNaN) {
  for (auto id : {qtype_id::qint8, qtype_id::qfloat8_e4m3fn, qtype_id::qfloat8_e5m2, qtype_id::qfloat8_e4m3fnuz}) {
    visit_qtype(id, [&]<class Q>(Q) {
      if constexpr (ByteQType<Q>) {
        const auto w = make<bfloat16>(shape{2, 3}, {0.0f, 0.0f, 0.0f, 1.0f, -2.0f, 0.5f});
        const auto q = quantize_weight<Q>(w);
        EXPECT_EQ(static_cast<float>(q.scale[0]), 0.0f);
        const auto dq = q.dequantize();
        for (std::size_t i = 0; i < 3; ++i) {
          EXPECT_FALSE(is_nan_bits(static_cast<float>(dq[i]))) << Q::name;
          EXPECT_EQ(static_cast<float>(dq[i]), 0.0f) << Q::name;
        }
      }
    });
  }
}

TEST(Symmetric, NonFiniteInputsAreRejectedByDefault) {
  auto w = make<float>(shape{2, 2}, {1.0f, 2.0f, 3.0f, 4.0f});
  w[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_THROW(quantize_weight<qint8>(w), value_error);
  w[3] = -std::numeric_limits<float>::infinity();
  EXPECT_THROW(quantize_weight<qfloat8>(w), value_error);
  // Opting into quanto's behaviour: the NaN/Inf flows into the scale.
  const auto q = quantize_weight<qint8>(w, symmetric{}, absmax_optimizer{}, {nonfinite_policy::propagate});
  EXPECT_TRUE(std::isinf(q.scale[1]));
}

TEST(Symmetric, ScaleShapeMismatchIsATypedError) {
  const auto w = make<float>(shape{2, 2}, {1, 2, 3, 4});
  const float s[] = {1.0f, 2.0f, 3.0f};
  EXPECT_THROW((quantize_symmetric<qint8, float>(w.view(), qaxis::first, tensor_view<const float>(s, shape{3, 1}))),
               shape_error);
  EXPECT_THROW((quantize_symmetric<qint8, float>(w.view(), qaxis::first, tensor_view<const float>(s, shape{1}))),
               shape_error);
  tensor<float> v(shape{4});
  EXPECT_THROW(quantize_weight<qint8>(v, symmetric{qaxis::first}), shape_error);  // 1-D per axis
}

TEST(Symmetric, ActivationsArePerTensor) {
  const auto x = make<float16>(shape{2, 2}, {-3.0f, 1.5f, 0.25f, 2.0f});
  const float16 s = activation_scale<qint8>(x.view());
  EXPECT_EQ(static_cast<float>(s), static_cast<float>(float16(3.0f / 127.0f)));
  const auto a = quantize_activation<qint8>(x.view(), s);
  EXPECT_EQ(a.data[0], -127);
  const auto dq = a.dequantize();
  EXPECT_NEAR(static_cast<float>(dq[0]), -3.0f, 0.01f);
}
