// Bit-exact comparison with optimum-quanto: qint8 and the qfloat8 types (weights, activations).
#include "../support/fixtures.hpp"

using namespace quanto;
using fixtures::fixture_case;

namespace {

class Fixture8Bit : public ::testing::TestWithParam<fixture_case> {};

template <class Q>
tensor<std::uint8_t> code_bits(const tensor<typename Q::storage>& codes) {
  tensor<std::uint8_t> out(codes.shape());
  std::memcpy(out.data(), codes.data(), codes.size());
  return out;
}

template <class Q, class T>
void check_weight(const fixture_case& c) {
  const std::string& d = c.file_dtype;
  const tensor<T> w = fixtures::read<T>(d, "input." + c.input);
  const auto q = quantize_weight<Q>(w, symmetric{fixtures::to_qaxis(c.axis)});

  const tensor<T> ref_scale = fixtures::read<T>(d, c.id + ".scale");
  EXPECT_EQ(fixtures::count_bit_mismatches<T>("scale", q.scale.view(), ref_scale.view()), 0u);

  // Where a zero scale meets a zero value quanto divides 0/0: its code is implementation-defined
  // and, for float8, its dequantized value NaN. quanto-cpp gives code 0, dequantizing exactly to
  // the input (documented in docs/divergences.md). Everywhere else: bit for bit.
  const param_map pm = map_params(w.shape(), q.axis);
  const auto zero_scale = [&](std::size_t i) {
    return model_arith::widen(q.scale[static_cast<std::size_t>(pm.index(static_cast<std::int64_t>(i)))]) == 0.0f &&
           model_arith::widen(w[i]) == 0.0f;
  };
  const tensor<std::uint8_t> ours = code_bits<Q>(q.data);
  const tensor<std::uint8_t> ref = fixtures::read<std::uint8_t>(d, c.id + ".codes");
  EXPECT_EQ(fixtures::count_bit_mismatches<std::uint8_t>("codes", ours.view(), ref.view(), zero_scale), 0u);

  const tensor<T> dq = q.dequantize();
  const tensor<T> ref_dq = fixtures::read<T>(d, c.id + ".dequant");
  EXPECT_EQ(fixtures::count_bit_mismatches<T>("dequant", dq.view(), ref_dq.view(), zero_scale), 0u);
  // quanto's own codes and scale, used in place through a view, dequantize to quanto's values.
  tensor<typename Q::storage> their_codes(w.shape());
  std::memcpy(their_codes.data(), ref.data(), ref.size());
  const qbytes_weight_view<Q, T> theirs{their_codes.view(), ref_scale.view(), q.axis};
  EXPECT_NO_THROW(theirs.validate());
  const tensor<T> their_dq = theirs.dequantize();
  EXPECT_EQ(
      fixtures::count_bit_mismatches<T>("dequantize(quanto's tensors)", their_dq.view(), ref_dq.view(),
                                        [&](std::size_t i) { return is_nan_bits(static_cast<float>(ref_dq[i])); }),
      0u);

  std::size_t skipped = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    if (!zero_scale(i)) continue;
    ++skipped;
    EXPECT_EQ(static_cast<float>(dq[i]), static_cast<float>(w[i])) << "zero-scale element " << i;
    EXPECT_EQ(ours[i], 0u) << "zero-scale element " << i;
  }
  EXPECT_EQ(skipped > 0, c.nan_case) << "the fixture's nan_case flag and the zero scales disagree";
}

template <class Q, class T>
void check_activation(const fixture_case& c) {
  const std::string& d = c.file_dtype;
  const tensor<T> x = fixtures::read<T>(d, "input." + c.input);
  const tensor<T> ref_scale = fixtures::read<T>(d, c.id + ".scale");
  ASSERT_EQ(ref_scale.shape(), shape{});
  const bool saturating = c.id.ends_with("_sat");
  if (!saturating) {  // the calibration scale: absmax / qmax over the whole tensor
    const T s = activation_scale<Q>(x.view());
    EXPECT_EQ(fixtures::bits_of(s), fixtures::bits_of(ref_scale[0]));
  }
  const auto qa = quantize_activation<Q>(x.view(), ref_scale[0]);
  // 0/0 (a zero scale over a zero value): see check_weight.
  const bool zero = model_arith::widen(ref_scale[0]) == 0.0f;
  const auto zero_zero = [&](std::size_t i) { return zero && model_arith::widen(x[i]) == 0.0f; };
  const tensor<std::uint8_t> ours = code_bits<Q>(qa.data);
  const tensor<std::uint8_t> ref = fixtures::read<std::uint8_t>(d, c.id + ".codes");
  EXPECT_EQ(fixtures::count_bit_mismatches<std::uint8_t>("codes", ours.view(), ref.view(), zero_zero), 0u);
  const tensor<T> dq = qa.dequantize();
  EXPECT_EQ(fixtures::count_bit_mismatches<T>("dequant", dq.view(), fixtures::read<T>(d, c.id + ".dequant").view(),
                                              zero_zero),
            0u);
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (zero_zero(i)) {
      EXPECT_EQ(static_cast<float>(dq[i]), 0.0f) << "0/0 element " << i;
    }
  }
}

TEST_P(Fixture8Bit, MatchesOptimumQuantoBitForBit) {
  const fixture_case& c = GetParam();
  const qtype_id id = qtype_from_name(c.qtype);
  fixtures::with_model_dtype(c.file_dtype, [&]<class T>(T) {
    visit_qtype(id, [&]<class Q>(Q) {
      if constexpr (ByteQType<Q>) {
        if (c.kind == "weight")
          check_weight<Q, T>(c);
        else
          check_activation<Q, T>(c);
      }
    });
  });
}

INSTANTIATE_TEST_SUITE_P(Quanto, Fixture8Bit, ::testing::ValuesIn(fixtures::load_cases([](const fixture_case& c) {
                           return info_of(qtype_from_name(c.qtype)).bits == 8;
                         })),
                         fixtures::case_name);

}  // namespace
