// Run-time selection: names to types, one dispatch point, typed errors for bad combinations.
#include <gtest/gtest.h>

#include <quanto/quanto.hpp>

using namespace quanto;

namespace {
tensor<bfloat16> weight() {
  tensor<bfloat16> w(shape{8, 256});
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = bfloat16(static_cast<float>((i * 7919) % 257) / 128.0f - 1.0f);
  return w;
}
}  // namespace

TEST(Runtime, DispatchesToTheSameInstantiations) {
  const auto w = weight();
  weight_spec spec;
  spec.qtype = qtype_from_name("qint4");
  spec.optimizer = optimizer_from_name("hqq");
  const any_qweight r = quantize_weight(any_float_view(w.view()), spec);
  const auto* q = std::get_if<qbits_weight<qint4, bfloat16>>(&r);
  ASSERT_NE(q, nullptr);
  const auto direct = quantize_weight<qint4>(w, group_affine<>{}, hqq_optimizer{});
  ASSERT_EQ(q->packed.size(), direct.packed.size());
  for (std::size_t i = 0; i < direct.packed.size(); ++i) EXPECT_EQ(q->packed[i], direct.packed[i]);
  for (std::size_t i = 0; i < direct.shift.size(); ++i) EXPECT_EQ(q->shift[i].to_bits(), direct.shift[i].to_bits());

  spec = {};
  spec.qtype = qtype_from_name("qfloat8");
  const any_qweight f = quantize_weight(any_float_view(w.view()), spec);
  EXPECT_TRUE((std::holds_alternative<qbytes_weight<qfloat8_e4m3fn, bfloat16>>(f)));

  spec = {};
  spec.qtype = qtype_id::qint2;
  spec.zero_point = true;
  const any_qweight z = quantize_weight(any_float_view(w.view()), spec);
  EXPECT_TRUE((std::holds_alternative<qbits_weight<qint2, bfloat16, std::uint8_t>>(z)));
}

TEST(Runtime, RejectsCombinationsQuantoRejects) {
  const auto w = weight();
  const any_float_view v(w.view());
  weight_spec s;
  s.qtype = qtype_id::qint4;
  s.optimizer = optimizer_id::absmax;  // quanto: "shift must be specified"
  EXPECT_THROW(quantize_weight(v, s), unsupported_error);
  s = {};
  s.qtype = qtype_id::qint8;
  s.optimizer = optimizer_id::max;  // quanto: "shift cannot be specified"
  EXPECT_THROW(quantize_weight(v, s), unsupported_error);
  s = {};
  s.qtype = qtype_id::qfloat8_e5m2;
  s.group_size = 128;
  EXPECT_THROW(quantize_weight(v, s), unsupported_error);
  s = {};
  s.qtype = qtype_id::qint8;
  s.zero_point = true;
  EXPECT_THROW(quantize_weight(v, s), unsupported_error);
  EXPECT_THROW(optimizer_from_name("awq"), unsupported_error);
  EXPECT_THROW(qtype_from_name("qint16"), unsupported_error);
}

TEST(Runtime, EveryQtypeAndDtypeQuantizes) {
  const auto wb = weight();
  tensor<float> wf(wb.shape());
  tensor<float16> wh(wb.shape());
  for (std::size_t i = 0; i < wb.size(); ++i) {
    wf[i] = static_cast<float>(wb[i]);
    wh[i] = float16(wf[i]);
  }
  for (const any_float_view& v : {any_float_view(wf.view()), any_float_view(wh.view()), any_float_view(wb.view())}) {
    for (qtype_id id : all_qtypes) {
      weight_spec s;
      s.qtype = id;
      const any_qweight q = quantize_weight(v, s);
      std::visit([&](const auto& qw) { EXPECT_EQ(qw.dequantize().shape(), wb.shape()); }, q);
    }
  }
}

// The optimizer tables derived from the one `optimizers` list.
TEST(Runtime, OptimizerTablesAreDerivedFromTheOptimizersList) {
  std::size_t position = 0;
  for_each_type(optimizers{}, [&]<class O>(O) {
    const auto id = static_cast<optimizer_id>(position);
    EXPECT_EQ(optimizer_id_of<O>(), id);
    EXPECT_EQ(to_string(id), O::name);
    EXPECT_EQ(optimizer_from_name(O::name), id);
    EXPECT_TRUE(visit_optimizer(id, []<class V>(V) { return std::is_same_v<V, O>; }));
    ++position;
  });
  EXPECT_EQ(position, optimizers::size);
  EXPECT_EQ(optimizer_names(), "absmax, max or hqq");
  EXPECT_FALSE(find_optimizer("Max").has_value());
  EXPECT_THROW(to_string(static_cast<optimizer_id>(3)), unsupported_error);
}
