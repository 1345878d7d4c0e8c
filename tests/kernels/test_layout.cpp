// The kernel layout: made from quanto's file layout and converted back bit for bit, for every qtype,
// model dtype, shift kind, group size and weight rank; bad weights are refused with typed errors.
#include <gtest/gtest.h>

#include <cstring>

#include "matmul_support.hpp"

namespace {

using namespace kt;

template <class X>
void expect_same_bits(const tensor<X>& a, const tensor<X>& b, const char* what) {
  ASSERT_EQ(a.shape(), b.shape()) << what;
  ASSERT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(X))) << what;
}

template <class Q, class T, class S = default_scheme_t<Q>>
void round_trip(const shape& s, S scheme = {}) {
  tensor<T> f(s);
  const auto src = random_weight<T>(1, s.numel(), 7);
  for (std::size_t i = 0; i < f.size(); ++i) f[i] = src[i];
  const auto w = quantize_weight<Q>(f, scheme);
  const auto p = qk::pack_weight(w);
  EXPECT_EQ(p.k_padded % qk::row_align, 0);
  const auto back = qk::unpack_weight(p);
  ASSERT_EQ(back.shape(), w.shape());
  if constexpr (ByteQType<Q>) {
    expect_same_bits(back.data, w.data, "data");
    EXPECT_EQ(back.axis, w.axis);
  } else {
    expect_same_bits(back.packed, w.packed, "packed");
    expect_same_bits(back.shift, w.shift, "shift");
    EXPECT_EQ(back.group_size, w.group_size);
  }
  expect_same_bits(back.scale, w.scale, "scale");
  // and the codes are where layout.hpp says they are
  const std::int64_t n = s[0], k = s.numel() / n;
  if constexpr (LowBitQType<Q>) {
    const auto codes = w.unpack();
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t e = 0; e < k; ++e) {
        const std::int64_t blk = e / 32, j = e % 32, bb = 32 * Q::bits / 8;
        const std::uint8_t byte = p.row(r)[blk * bb + j % bb];
        ASSERT_EQ((byte >> (Q::bits * (j / bb))) & ((1 << Q::bits) - 1), codes[static_cast<std::size_t>(r * k + e)]);
      }
  }
}

TEST(KernelLayout, RoundTripsEveryQtype) {
  for (const shape& s : {shape{1, 1}, shape{3, 7}, shape{5, 128}, shape{4, 200}, shape{6, 384}, shape{2, 4096}}) {
    round_trip<qint8, float>(s);
    round_trip<qint8, bfloat16>(s);
    round_trip<qint8, float16>(s, per_tensor);
    round_trip<qfloat8_e4m3fn, bfloat16>(s);
    round_trip<qfloat8_e5m2, float>(s);
    round_trip<qfloat8_e4m3fnuz, float16>(s);
    round_trip<qint4, float>(s);
    round_trip<qint4, bfloat16>(s);
    round_trip<qint2, float16>(s);
    round_trip<qint4, bfloat16>(s, group_affine<true>{});
    round_trip<qint2, float>(s, group_affine<>{no_group});
  }
  round_trip<qint4, bfloat16>(shape{8, 256}, group_affine<>{64});
  round_trip<qint4, bfloat16>(shape{8, 256}, group_affine<>{32});
  round_trip<qint2, bfloat16>(shape{8, 384}, group_affine<true>{96});
}

TEST(KernelLayout, ConvWeightsAreMatrices) {
  round_trip<qint8, float>(shape{8, 3, 3, 3});
  round_trip<qint4, bfloat16>(shape{16, 32, 3, 3});
  round_trip<qint4, float>(shape{4, 3, 5, 5}, group_affine<>{no_group});
  const auto w = quantize_weight<qint4>(random_weight<float>(16, 288, 3));
  EXPECT_EQ(qk::pack_weight(w).k, 288);
}

TEST(KernelLayout, RefusesWhatKernelsCannotRead) {
  const tensor<float> f = random_weight<float>(6, 96, 1);
  // axis -1 scales are per input column
  EXPECT_THROW(qk::pack_weight(quantize_weight<qint8>(f, symmetric{qaxis::last})), unsupported_error);
  EXPECT_THROW(qk::pack_weight(quantize_weight<qint4>(f, group_affine<>{no_group, qaxis::last})), unsupported_error);
  // a group that is not a multiple of 32
  EXPECT_THROW(qk::pack_weight(quantize_weight<qint4>(f, group_affine<>{48})), unsupported_error);
  // a NaN fp8 code read from a file
  auto w = quantize_weight<qfloat8_e4m3fn>(f);
  w.data[5] = float8_e4m3fn::from_bits(0x7F);
  EXPECT_THROW(qk::pack_weight(w), value_error);
  // parts that do not fit together
  auto bad = quantize_weight<qint8>(f);
  bad.scale = tensor<float>(shape{5, 1});
  EXPECT_THROW(qk::pack_weight(bad), shape_error);
  // rank 1
  const tensor<float> v(shape{8});
  EXPECT_THROW(qk::pack_weight(quantize_weight<qint8>(v)), shape_error);
}

}  // namespace
