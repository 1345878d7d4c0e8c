// quanto/interop/eigen.hpp: zero-copy where the Eigen memory has quanto's layout (proved by
// pointers), one copy otherwise; quantize gives the same bits as quanto::quantize_weight on the same
// values; dequantize gives quanto's values; matmul gives kernels::matmul's bits, into a new matrix,
// a Map over the caller's memory or a strided block; shape errors.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include <quanto/interop/eigen.hpp>
#include <quanto/quanto.hpp>

namespace {

using namespace quanto;
namespace qe = quanto::eigen;
namespace qk = quanto::kernels;
using RowMatrixXf = qe::row_matrix<float>;

RowMatrixXf random_matrix(Eigen::Index rows, Eigen::Index cols, unsigned seed, float sigma = 0.05f) {
  RowMatrixXf m(rows, cols);
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, sigma);
  for (Eigen::Index i = 0; i < rows; ++i)
    for (Eigen::Index j = 0; j < cols; ++j) m(i, j) = d(rng);
  return m;
}

/// The same values as a quanto tensor (an independent copy, element by element).
template <class T = float, class M>
tensor<T> to_tensor(const M& m) {
  tensor<T> t(shape{static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())});
  for (Eigen::Index i = 0; i < m.rows(); ++i)
    for (Eigen::Index j = 0; j < m.cols(); ++j) t[static_cast<std::size_t>(i * m.cols() + j)] = T(m(i, j));
  return t;
}

template <class X>
bool same_bytes(const tensor<X>& a, const tensor<X>& b) {
  return a.shape() == b.shape() && std::memcmp(a.data(), b.data(), a.size() * sizeof(X)) == 0;
}

/// Every part of two file-layout weights, byte for byte.
template <class W>
void expect_same_weight(const W& a, const W& b) {
  if constexpr (ByteQType<typename W::qtype>) {
    EXPECT_TRUE(same_bytes(a.data, b.data));
    EXPECT_TRUE(same_bytes(a.scale, b.scale));
    EXPECT_EQ(a.axis, b.axis);
  } else {
    EXPECT_TRUE(same_bytes(a.packed, b.packed));
    EXPECT_TRUE(same_bytes(a.scale, b.scale));
    EXPECT_TRUE(same_bytes(a.shift, b.shift));
    EXPECT_EQ(a.original_shape, b.original_shape);
    EXPECT_EQ(a.group_size, b.group_size);
  }
}

template <class M>
bool same_bits(const M& a, const RowMatrixXf& b) {
  if (a.rows() != b.rows() || a.cols() != b.cols()) return false;
  for (Eigen::Index i = 0; i < a.rows(); ++i)
    if (std::memcmp(&a(i, 0), &b(i, 0), static_cast<std::size_t>(a.cols()) * sizeof(float)) != 0) return false;
  return true;
}

TEST(EigenInterop, RowMajorMemoryIsViewedInPlace) {
  const RowMatrixXf w = random_matrix(8, 64, 1);
  const auto v = qe::as_tensor(w);
  EXPECT_FALSE(v.copied());
  EXPECT_EQ(v.view().data(), w.data());
  EXPECT_EQ(v.view().shape(), (shape{8, 64}));

  std::vector<float> buffer(8 * 64, 0.25f);  // someone else's memory
  const Eigen::Map<const RowMatrixXf> map(buffer.data(), 8, 64);
  EXPECT_EQ(qe::as_tensor(map).view().data(), buffer.data());
  const Eigen::Ref<const RowMatrixXf> ref(w);
  EXPECT_EQ(qe::as_tensor(ref).view().data(), w.data());
  const auto rows = qe::as_tensor(w.middleRows(2, 3));  // whole rows are contiguous
  EXPECT_FALSE(rows.copied());
  EXPECT_EQ(rows.view().data(), w.data() + 2 * 64);
  EXPECT_EQ(rows.view().shape(), (shape{3, 64}));
  const Eigen::VectorXf column = Eigen::VectorXf::LinSpaced(5, 0.0f, 1.0f);  // [5, 1] is dense
  EXPECT_EQ(qe::as_tensor(column).view().data(), column.data());

  // moving the holder keeps a copy's view valid
  auto copied = qe::as_tensor(Eigen::MatrixXf(w));
  const float* at = copied.view().data();
  auto moved = std::move(copied);
  EXPECT_EQ(moved.view().data(), at);
}

TEST(EigenInterop, OtherLayoutsAreCopiedOnceInRowMajorOrder) {
  const RowMatrixXf w = random_matrix(6, 40, 2);
  const auto check = [&](const auto& v, const RowMatrixXf& want) {
    EXPECT_TRUE(v.copied());
    ASSERT_EQ(v.view().shape(), (shape{want.rows(), want.cols()}));
    EXPECT_EQ(0, std::memcmp(v.view().data(), want.data(), v.view().size() * sizeof(float)));
  };
  const Eigen::MatrixXf col_major = w;  // Eigen's default storage: column-major
  check(qe::as_tensor(col_major), w);
  check(qe::as_tensor(w.leftCols(17)), RowMatrixXf(w.leftCols(17)));  // rows not contiguous
  check(qe::as_tensor(w * 2.0f), RowMatrixXf(w * 2.0f));              // an expression
  // ...but the transpose of a column-major matrix is row-major memory: viewed in place
  const auto t = qe::as_tensor(col_major.transpose());
  EXPECT_FALSE(t.copied());
  EXPECT_EQ(t.view().data(), col_major.data());
  EXPECT_EQ(t.view().shape(), (shape{40, 6}));
  EXPECT_EQ(t.view()[1], w(1, 0));
}

template <class Q, class S = default_scheme_t<Q>>
void quantize_matches(const RowMatrixXf& w, S scheme = {}) {
  SCOPED_TRACE(std::string(Q::name));
  const tensor<float> t = to_tensor(w);
  const auto want = quantize_weight<Q>(t, scheme);
  expect_same_weight(qe::quantize<Q>(w, scheme), want);
  expect_same_weight(qe::quantize<Q>(Eigen::MatrixXf(w), scheme), want);  // column-major: copied
  // bfloat16 model dtype, from quanto's type and from Eigen's own
  const tensor<bfloat16> tb = to_tensor<bfloat16>(w);
  const auto want16 = quantize_weight<Q>(tb, scheme);
  const Eigen::Map<const qe::row_matrix<bfloat16>> wb(tb.data(), w.rows(), w.cols());
  expect_same_weight(qe::quantize<Q>(wb, scheme), want16);
#if EIGEN_VERSION_AT_LEAST(3, 4, 0)
  const qe::row_matrix<Eigen::bfloat16> we = w.cast<Eigen::bfloat16>();
  for (std::size_t i = 0; i < tb.size(); ++i)  // Eigen rounds to nearest even too
    ASSERT_EQ(std::bit_cast<std::uint16_t>(we.data()[i]), tb[i].to_bits());
  expect_same_weight(qe::quantize<Q>(we, scheme), want16);
#endif
}

TEST(EigenInterop, QuantizeGivesQuantosBits) {
  const RowMatrixXf w = random_matrix(12, 256, 3);
  quantize_matches<qint8>(w);
  quantize_matches<qint8>(w, per_tensor);
  quantize_matches<qfloat8_e4m3fn>(w);
  quantize_matches<qint4>(w);
  quantize_matches<qint4>(w, group_affine<>{64});
  quantize_matches<qint4>(w, group_affine<true>{});
  quantize_matches<qint2>(w);
  // the result types are the library's
  static_assert(std::is_same_v<decltype(qe::quantize<qint4>(w)), qweight_t<qint4, float, group_affine<>>>);
  static_assert(std::is_same_v<decltype(qe::quantize<qint8>(Eigen::Map<const qe::row_matrix<bfloat16>>(nullptr, 0, 0))),
                               qbytes_weight<qint8, bfloat16>>);
}

TEST(EigenInterop, DequantizeGivesQuantosValues) {
  const RowMatrixXf w = random_matrix(10, 192, 4);
  const auto check = [](const auto& qw) {
    const auto dq = qw.dequantize();
    const RowMatrixXf m = qe::dequantize(qw);
    ASSERT_EQ(m.rows(), qw.shape()[0]);
    ASSERT_EQ(m.size(), static_cast<Eigen::Index>(dq.size()));
    for (std::size_t i = 0; i < dq.size(); ++i) ASSERT_EQ(m.data()[i], static_cast<float>(dq[i])) << i;
    EXPECT_TRUE(same_bits(qe::dequantize(qk::pack_weight(qw)), m));  // from the kernel layout too
  };
  check(qe::quantize<qint8>(w));
  check(qe::quantize<qint4>(w));
  check(qe::quantize<qint2>(w, group_affine<true>{}));
  const tensor<bfloat16> tb = to_tensor<bfloat16>(w);
  check(quantize_weight<qfloat8_e4m3fn>(tb));
  check(quantize_weight<qint4>(tb));
  // a conv weight [out, c, kh, kw] is [out, c*kh*kw]
  tensor<float> conv(shape{4, 3, 3, 3});
  for (std::size_t i = 0; i < conv.size(); ++i) conv[i] = static_cast<float>(i % 7) - 3.0f;
  const RowMatrixXf cm = qe::dequantize(quantize_weight<qint8>(conv));
  EXPECT_EQ(cm.rows(), 4);
  EXPECT_EQ(cm.cols(), 27);
}

TEST(EigenInterop, MatmulGivesTheKernelsBits) {
  const auto pw = qk::pack_weight(qe::quantize<qint4>(random_matrix(24, 320, 5)));
  const RowMatrixXf x = random_matrix(7, 320, 6, 1.0f);
  const Eigen::VectorXf bias = Eigen::VectorXf::LinSpaced(24, -1.0f, 1.0f);
  RowMatrixXf want(7, 24), want_b(7, 24), want_d(7, 24);
  qk::matmul(pw, x.data(), 7, 320, want.data(), 24);
  qk::matmul(pw, x.data(), 7, 320, want_b.data(), 24, bias.data());
  qk::matmul<qk::dynamic_int8_activations>(pw, x.data(), 7, 320, want_d.data(), 24);

  EXPECT_TRUE(same_bits(qe::matmul(pw, x), want));
  EXPECT_TRUE(same_bits(qe::matmul(pw, x, bias), want_b));
  EXPECT_TRUE(same_bits(qe::matmul<qk::dynamic_int8_activations>(pw, x), want_d));
  EXPECT_TRUE(same_bits(qe::matmul<qk::exact_activations, qk::isa::scalar>(pw, x), [&] {
    RowMatrixXf r(7, 24);
    qk::matmul<qk::exact_activations, qk::isa::scalar>(pw, x.data(), 7, 320, r.data(), 24);
    return r;
  }()));
  qk::matmul_options one_thread;
  one_thread.parallel.threads = 1;
  EXPECT_TRUE(same_bits(qe::matmul(pw, x, bias, one_thread), want_b));

  // column-major x: copied once by the Ref, same bits
  const Eigen::MatrixXf xc = x;
  EXPECT_TRUE(same_bits(qe::matmul(pw, xc), want));
  // a block of a wider row-major matrix: read in place with its row stride
  RowMatrixXf wide = RowMatrixXf::Constant(7, 333, 1e30f);
  wide.block(0, 5, 7, 320) = x;
  const Eigen::Ref<const RowMatrixXf> xr = wide.block(0, 5, 7, 320);
  EXPECT_EQ(xr.data(), wide.data() + 5);  // no copy
  EXPECT_EQ(xr.outerStride(), 333);
  EXPECT_TRUE(same_bits(qe::matmul(pw, xr), want));
  EXPECT_TRUE(same_bits(qe::matmul(pw, wide.middleCols(5, 320)), want));
}

TEST(EigenInterop, OutputsAreWrittenInPlace) {
  const auto pw = qk::pack_weight(qe::quantize<qint8>(random_matrix(9, 128, 7)));
  const RowMatrixXf x = random_matrix(4, 128, 8, 1.0f);
  const Eigen::VectorXf bias = Eigen::VectorXf::Constant(9, 0.5f);
  const RowMatrixXf want = qe::matmul(pw, x), want_b = qe::matmul(pw, x, bias);

  std::vector<float> buffer(4 * 9, -7.0f);  // the caller's memory
  const Eigen::Map<RowMatrixXf> y(buffer.data(), 4, 9);
  qe::matmul(pw, x, y);
  EXPECT_EQ(y.data(), buffer.data());
  EXPECT_TRUE(same_bits(y, want));
  EXPECT_EQ(0, std::memcmp(buffer.data(), want.data(), buffer.size() * sizeof(float)));
  qe::matmul(pw, x, y, bias);
  EXPECT_TRUE(same_bits(y, want_b));

  // a block of a bigger row-major matrix: its rows stay in place, the rest is untouched
  RowMatrixXf big = RowMatrixXf::Constant(6, 20, -7.0f);
  qe::matmul_into(pw, x, big.block(1, 3, 4, 9));
  EXPECT_TRUE(same_bits(big.block(1, 3, 4, 9), want));
  qe::matmul_into(pw, x, big.block(1, 3, 4, 9), bias);
  EXPECT_TRUE(same_bits(big.block(1, 3, 4, 9), want_b));
  for (Eigen::Index i = 0; i < 6; ++i)
    for (Eigen::Index j = 0; j < 20; ++j)
      if (i < 1 || i >= 5 || j < 3 || j >= 12) {
        ASSERT_EQ(big(i, j), -7.0f) << i << ", " << j;
      }
  // a strided Map over the caller's memory
  std::vector<float> strided(4 * 16, -7.0f);
  qe::matmul_into(pw, x,
                  Eigen::Map<RowMatrixXf, 0, Eigen::OuterStride<>>(strided.data(), 4, 9, Eigen::OuterStride<>(16)));
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(0, std::memcmp(strided.data() + i * 16, &want(static_cast<Eigen::Index>(i), 0), 9 * sizeof(float)));
    for (std::size_t j = 9; j < 16; ++j) EXPECT_EQ(strided[i * 16 + j], -7.0f);
  }
  // an empty batch
  EXPECT_EQ(qe::matmul(pw, RowMatrixXf(0, 128)).rows(), 0);
}

TEST(EigenInterop, WrongShapesThrow) {
  const auto pw = qk::pack_weight(qe::quantize<qint8>(random_matrix(9, 128, 7)));
  const RowMatrixXf x = random_matrix(4, 128, 8);
  EXPECT_THROW(qe::matmul(pw, random_matrix(4, 127, 1)), shape_error);
  EXPECT_THROW(qe::matmul(pw, x.transpose()), shape_error);
  EXPECT_THROW(qe::matmul(pw, x, Eigen::VectorXf(8)), shape_error);
  std::vector<float> buffer(4 * 10);
  EXPECT_THROW(qe::matmul(pw, x, Eigen::Map<RowMatrixXf>(buffer.data(), 4, 10)), shape_error);
  EXPECT_THROW(qe::matmul(pw, x, Eigen::Map<RowMatrixXf>(buffer.data(), 3, 9)), shape_error);
  RowMatrixXf y(5, 9);
  EXPECT_THROW(qe::matmul_into(pw, x, y), shape_error);
  // the quantizers' own checks still apply
  EXPECT_THROW(qe::quantize<qint4>(random_matrix(4, 128, 1), group_affine<>{48}), shape_error);
  RowMatrixXf bad = random_matrix(2, 8, 1);
  bad(1, 3) = std::numeric_limits<float>::infinity();
  EXPECT_THROW(qe::quantize<qint8>(bad), value_error);
}

}  // namespace
