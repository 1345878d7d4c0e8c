// The README's "Use" block, line for line (on a smaller weight), and the claims its comments make.
#include <gtest/gtest.h>

#include <type_traits>

#include <quanto/quanto.hpp>

TEST(Readme, UseBlockDoesWhatItSays) {
  quanto::tensor<quanto::bfloat16> w(quanto::shape{64, 4096});
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = quanto::bfloat16(static_cast<float>((i * 37) % 101) / 50.0f - 1.0f);

  auto q8 = quanto::quantize_weight<quanto::qint8>(w);    // int8 codes + per-row scale
  auto f8 = quanto::quantize_weight<quanto::qfloat8>(w);  // e4m3fn codes + per-row scale
  auto q4 = quanto::quantize_weight<quanto::qint4>(w);    // packed codes, scale + shift per group of 128
  auto h2 = quanto::quantize_weight<quanto::qint2>(w, quanto::group_affine<>{}, quanto::hqq_optimizer{});
  auto zp = quanto::quantize_weight<quanto::qint4>(w, quanto::group_affine</*ZeroPoint=*/true>{});
  auto w2 = q4.dequantize();  // back to bfloat16, as quanto would

  static_assert(std::is_same_v<decltype(q8.data)::value_type, std::int8_t>);
  EXPECT_EQ(q8.scale.shape(), (quanto::shape{64, 1}));
  static_assert(std::is_same_v<decltype(f8.data)::value_type, quanto::float8_e4m3fn>);
  EXPECT_EQ(f8.scale.shape(), (quanto::shape{64, 1}));
  EXPECT_EQ(q4.group_size, 128);
  EXPECT_EQ(q4.scale.shape(), (quanto::shape{64 * 4096 / 128, 1}));
  EXPECT_EQ(q4.packed.size(), w.size() / 2);
  EXPECT_EQ(h2.packed.size(), w.size() / 4);
  static_assert(std::is_same_v<decltype(zp.shift)::value_type, std::uint8_t>);
  static_assert(std::is_same_v<decltype(w2), quanto::tensor<quanto::bfloat16>>);
  EXPECT_EQ(w2.shape(), w.shape());
}
