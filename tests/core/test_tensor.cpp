// Shapes, owning tensors (aligned, deep copies) and views (no copies), with typed shape errors.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include <quanto/core/bfloat16.hpp>
#include <quanto/core/tensor.hpp>

using namespace quanto;

TEST(Shape, NumelRankAndAxes) {
  const shape s{16, 4, 3, 3};
  EXPECT_EQ(s.rank(), 4u);
  EXPECT_EQ(s.numel(), 576);
  EXPECT_EQ(s.dim(-1), 3);
  EXPECT_EQ(s.dim(0), 16);
  EXPECT_EQ(s.normalize_axis(-1), 3u);
  EXPECT_THROW((void)s.dim(4), shape_error);
  EXPECT_THROW((void)s.dim(-5), shape_error);
  EXPECT_EQ(shape{}.numel(), 1);  // a scalar
  EXPECT_EQ((shape{0, 7}.numel()), 0);
  EXPECT_EQ((shape{2, 3}.to_string()), "[2, 3]");
}

TEST(Shape, RejectsNegativeDimsOverflowAndTooManyDims) {
  EXPECT_THROW((shape{-1, 2}), shape_error);
  const std::int64_t big = std::int64_t{1} << 40;
  EXPECT_THROW((shape{big, big}), shape_error);  // 2^80 elements
  EXPECT_NO_THROW((shape{0, big, big}));         // zero elements, no overflow
  EXPECT_THROW((shape{1, 1, 1, 1, 1, 1, 1, 1, 1}), shape_error);
}

TEST(Tensor, OwningStorageIsZeroedAlignedAndDeepCopied) {
  tensor<float> a(shape{3, 5});
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(a.data()) % QUANTO_BUFFER_ALIGNMENT, 0u);
  for (float v : a) EXPECT_EQ(v, 0.0f);
  a[7] = 2.5f;
  tensor<float> b = a;
  b[7] = -1.0f;
  EXPECT_EQ(a[7], 2.5f);
  EXPECT_NE(a.data(), b.data());
  tensor<float> c = std::move(b);
  EXPECT_EQ(c[7], -1.0f);
}

TEST(Tensor, ViewsUseMemoryInPlace) {
  std::vector<bfloat16> external(12, bfloat16(1.5f));
  tensor_view<bfloat16> v(external.data(), shape{3, 4});
  v[5] = bfloat16(-2.0f);
  EXPECT_EQ(static_cast<float>(external[5]), -2.0f);
  tensor_view<const bfloat16> cv = v;
  EXPECT_EQ(cv.data(), external.data());
  EXPECT_EQ(cv.reshape(shape{12}).shape(), shape{12});
  EXPECT_THROW((void)cv.reshape(shape{5}), shape_error);
  EXPECT_THROW((tensor_view<const bfloat16>(std::span<const bfloat16>(external), shape{5, 5})), shape_error);
}

TEST(Tensor, ConstructionFromValuesChecksTheCount) {
  const std::vector<float> vals{1, 2, 3, 4, 5, 6};
  tensor<float> t(shape{2, 3}, vals);
  EXPECT_EQ(t[4], 5.0f);
  EXPECT_THROW((tensor<float>(shape{2, 2}, vals)), shape_error);
  EXPECT_THROW(t.reshape(shape{4}), shape_error);
  t.reshape(shape{3, 2});
  EXPECT_EQ(t.shape(), (shape{3, 2}));
}

TEST(Tensor, EmptyAndScalar) {
  tensor<std::uint8_t> e(shape{0, 4});
  EXPECT_EQ(e.size(), 0u);
  EXPECT_TRUE(e.span().empty());
  tensor<float> s{shape{}};
  EXPECT_EQ(s.size(), 1u);
  s[0] = 3.0f;
  EXPECT_EQ(s.view()[0], 3.0f);
}
