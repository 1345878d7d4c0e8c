// Bit-exact comparison with optimum-quanto: qint2 and qint4 weights (Max, Max with zero-point,
// HQQ), packed bytes included.
#include "../support/fixtures.hpp"

using namespace quanto;
using fixtures::fixture_case;

namespace {

class FixtureLowBit : public ::testing::TestWithParam<fixture_case> {};

template <class X>
tensor<X> grouped(const tensor<X>& t, qaxis axis, std::optional<std::int64_t> gs) {
  if (!gs) return t;
  return group(t.view(), axis, *gs);
}

template <class Q, class T, bool ZeroPoint, class Optimizer>
void check(const fixture_case& c, const Optimizer& optimizer) {
  using Shift = std::conditional_t<ZeroPoint, std::uint8_t, T>;
  const std::string& d = c.file_dtype;
  const tensor<T> w = fixtures::read<T>(d, "input." + c.input);
  const qaxis axis = fixtures::to_qaxis(c.axis);
  group_affine<ZeroPoint> scheme{c.group_size ? *c.group_size : no_group, axis};
  if (axis == qaxis::first) {  // the module path: quanto's own rule must give the fixture's size
    const auto rule = default_group_size(w.shape());
    EXPECT_EQ(rule, c.group_size);
    scheme.group_size = auto_group;
  }
  const auto q = quantize_weight<Q>(w, scheme, optimizer);
  EXPECT_EQ(q.group_size, c.group_size);

  const tensor<T> ref_scale = fixtures::read<T>(d, c.id + ".scale");
  const tensor<Shift> ref_shift = fixtures::read<Shift>(d, c.id + ".shift");
  EXPECT_EQ(fixtures::count_bit_mismatches<T>("scale", q.scale.view(), ref_scale.view()), 0u);
  EXPECT_EQ(fixtures::count_bit_mismatches<Shift>("shift", q.shift.view(), ref_shift.view()), 0u);

  // 0/0 in quantize_affine (a zero scale where x + shift, or x for a zero-point, is zero):
  // quanto's code is implementation-defined there; quanto-cpp's is 0 (docs/divergences.md).
  const tensor<T> wg = grouped(w, axis, q.group_size);
  const param_map pm = broadcast_params(wg.shape(), q.scale.shape());
  const auto zero_zero = [&](std::size_t i) {
    const auto j = static_cast<std::size_t>(pm.index(static_cast<std::int64_t>(i)));
    if (model_arith::widen(q.scale[j]) != 0.0f) return false;
    if constexpr (ZeroPoint)
      return model_arith::widen(wg[i]) == 0.0f;
    else
      return model_arith::widen(model_arith::t_add(wg[i], q.shift[j])) == 0.0f;
  };

  const tensor<std::uint8_t> ref_packed = fixtures::read<std::uint8_t>(d, c.id + ".packed");
  const tensor<std::uint8_t> ref_codes = fixtures::read<std::uint8_t>(d, c.id + ".codes");
  const tensor<std::uint8_t> codes = q.unpack();
  EXPECT_EQ(fixtures::count_bit_mismatches<std::uint8_t>("codes", codes.view(), ref_codes.view(), zero_zero), 0u);
  bool any_zero_zero = false;
  for (std::size_t i = 0; i < codes.size(); ++i) any_zero_zero = any_zero_zero || zero_zero(i);
  if (!any_zero_zero)  // the packed bytes then hold no implementation-defined code
    EXPECT_EQ(fixtures::count_bit_mismatches<std::uint8_t>("packed", q.packed.view(), ref_packed.view()), 0u);
  else
    EXPECT_EQ(q.packed.shape(), ref_packed.shape());
  // Unpacking quanto's own bytes gives quanto's codes: our unpack reads their layout.
  EXPECT_EQ(fixtures::count_bit_mismatches<std::uint8_t>(
                "unpack(quanto packed)", unpack(ref_packed.view(), Q::bits, q.codes_shape()).view(), ref_codes.view()),
            0u);

  // quanto's own tensors, used in place through a view (as from a mapped file), dequantize to
  // quanto's values: our reader of its layout agrees with its writer.
  const qbits_weight_view<Q, T, Shift> theirs{ref_packed.view(), ref_scale.view(), ref_shift.view(), w.shape(), axis,
                                              q.group_size};
  EXPECT_NO_THROW(theirs.validate());
  const tensor<T> their_dq = theirs.dequantize();
  EXPECT_EQ(fixtures::count_bit_mismatches<T>("dequantize(quanto's tensors)", their_dq.view(),
                                              fixtures::read<T>(d, c.id + ".dequant").view()),
            0u);

  const tensor<T> dq = grouped(q.dequantize(), axis, q.group_size);
  const tensor<T> ref_dq = grouped(fixtures::read<T>(d, c.id + ".dequant"), axis, q.group_size);
  EXPECT_EQ(fixtures::count_bit_mismatches<T>("dequant", dq.view(), ref_dq.view(), zero_zero), 0u);
}

TEST_P(FixtureLowBit, MatchesOptimumQuantoBitForBit) {
  const fixture_case& c = GetParam();
  fixtures::with_model_dtype(c.file_dtype, [&]<class T>(T) {
    visit_qtype(qtype_from_name(c.qtype), [&]<class Q>(Q) {
      if constexpr (LowBitQType<Q>) {
        if (c.optimizer == "max")
          check<Q, T, false>(c, max_optimizer{});
        else if (c.optimizer == "max_zeropoint")
          check<Q, T, true>(c, max_optimizer{});
        else if (c.optimizer == "hqq")
          check<Q, T, false>(c, hqq_optimizer{.sum_order = fixtures::sum_order(c)});
        else
          FAIL() << "unknown optimizer in fixture";
      }
    });
  });
}

INSTANTIATE_TEST_SUITE_P(Quanto, FixtureLowBit, ::testing::ValuesIn(fixtures::load_cases([](const fixture_case& c) {
                           return info_of(qtype_from_name(c.qtype)).bits < 8;
                         })),
                         fixtures::case_name);

}  // namespace
