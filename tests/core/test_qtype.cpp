// qtypes: compile-time traits as in optimum-quanto's qtype table, run-time lookup by name.
#include <gtest/gtest.h>

#include <quanto/core/qtype.hpp>

using namespace quanto;

// The table of optimum-quanto's qtype.py (spec §1), checked at compile time.
static_assert(qint2::bits == 2 && qint2::qmin == -2 && qint2::qmax == 1);
static_assert(qint4::bits == 4 && qint4::qmin == -8 && qint4::qmax == 7);
static_assert(qint8::bits == 8 && qint8::qmin == -128 && qint8::qmax == 127);
static_assert(qfloat8_e4m3fn::qmax == 448.0f && qfloat8_e4m3fn::qmin == -448.0f);
static_assert(qfloat8_e4m3fnuz::qmax == 240.0f && qfloat8_e4m3fnuz::qmin == -240.0f);
static_assert(qfloat8_e5m2::qmax == 57344.0f && qfloat8_e5m2::qmin == -57344.0f);
static_assert(std::is_same_v<qfloat8, qfloat8_e4m3fn>);
static_assert(qfloat8::name == "qfloat8_e4m3fn");
static_assert(std::is_same_v<qint8::storage, std::int8_t> && std::is_same_v<qint4::storage, std::uint8_t>);
static_assert(std::is_same_v<qfloat8_e5m2::storage, float8_e5m2>);
static_assert(QType<qint4> && LowBitQType<qint4> && !ByteQType<qint4> && IntegerQType<qint4>);
static_assert(ByteQType<qfloat8_e4m3fnuz> && FloatQType<qfloat8_e4m3fnuz> && !LowBitQType<qfloat8>);
static_assert(!QType<int> && !QType<float> && !QType<float8_e4m3fn>);
static_assert(ModelFloat<float> && ModelFloat<bfloat16> && ModelFloat<float16> && !ModelFloat<double>);
static_assert(find_qtype("qfloat8") == qtype_id::qfloat8_e4m3fn);
static_assert(!find_qtype("qint3").has_value() && !find_qtype("QINT8").has_value());

TEST(QType, RuntimeInfoMatchesCompileTimeTraits) {
  for (qtype_id id : all_qtypes) {
    visit_qtype(id, [&]<class Q>(Q) {
      const qtype_info info = info_of(id);
      EXPECT_EQ(info.id, id);
      EXPECT_EQ(info.name, Q::name);
      EXPECT_EQ(info.bits, Q::bits);
      EXPECT_EQ(info.is_floating_point, Q::is_floating_point);
      EXPECT_EQ(info.qmin, static_cast<double>(Q::qmin));
      EXPECT_EQ(info.qmax, static_cast<double>(Q::qmax));
      EXPECT_EQ(qtype_from_name(info.name), id) << info.name;
    });
  }
}

TEST(QType, CanonicalNamesAreQuantosQmapNames) {
  EXPECT_EQ(to_string(qtype_id::qint2), "qint2");
  EXPECT_EQ(to_string(qtype_id::qint4), "qint4");
  EXPECT_EQ(to_string(qtype_id::qint8), "qint8");
  EXPECT_EQ(to_string(qtype_id::qfloat8_e4m3fn), "qfloat8_e4m3fn");
  EXPECT_EQ(to_string(qtype_id::qfloat8_e5m2), "qfloat8_e5m2");
  EXPECT_EQ(to_string(qtype_id::qfloat8_e4m3fnuz), "qfloat8_e4m3fnuz");
  // "qfloat8" is an alias for lookup only; the canonical name is written back.
  EXPECT_EQ(to_string(qtype_from_name("qfloat8")), "qfloat8_e4m3fn");
}

TEST(QType, StorageDtypes) {
  EXPECT_EQ(info_of(qtype_id::qint8).storage, dtype::i8);
  EXPECT_EQ(info_of(qtype_id::qint4).storage, dtype::u8);
  EXPECT_EQ(info_of(qtype_id::qfloat8_e4m3fn).storage, dtype::f8_e4m3fn);
  EXPECT_EQ(info_of(qtype_id::qfloat8_e5m2).storage, dtype::f8_e5m2);
  EXPECT_EQ(info_of(qtype_id::qfloat8_e4m3fnuz).storage, dtype::f8_e4m3fnuz);
}

TEST(QType, UnknownNameIsATypedError) {
  EXPECT_THROW(qtype_from_name("int4"), unsupported_error);
  EXPECT_THROW(qtype_from_name(""), unsupported_error);
  try {
    qtype_from_name("qint3");
    FAIL();
  } catch (const unsupported_error& e) {
    EXPECT_NE(std::string(e.what()).find("qint3"), std::string::npos);
  }
}

TEST(DType, SafetensorsNamesRoundTrip) {
  for (auto t :
       {dtype::boolean, dtype::u8, dtype::i8, dtype::u16, dtype::i16, dtype::u32, dtype::i32, dtype::u64, dtype::i64,
        dtype::f16, dtype::bf16, dtype::f32, dtype::f64, dtype::f8_e4m3fn, dtype::f8_e5m2, dtype::f8_e4m3fnuz})
    EXPECT_EQ(dtype_from_string(to_string(t)), t);
  EXPECT_EQ(to_string(dtype::f8_e4m3fn), "F8_E4M3");
  EXPECT_EQ(to_string(dtype::bf16), "BF16");
  EXPECT_FALSE(dtype_from_string("f32").has_value());  // case-sensitive, as the reference
  EXPECT_EQ(size_of(dtype::bf16), 2u);
  EXPECT_EQ(size_of(dtype::f8_e5m2), 1u);
  EXPECT_EQ(size_of(dtype::i64), 8u);
}

// The tables derived from the one `qtypes` list: ids are positions, visit_qtype reaches each type,
// all_qtypes follows the list, and the message names come from it.
TEST(QType, TablesAreDerivedFromTheQtypesList) {
  static_assert(qtypes::size == all_qtypes.size());
  static_assert(std::is_same_v<type_at_t<2, qtypes>, qint8>);
  static_assert(index_of_v<qfloat8_e5m2, qtypes> == 4);
  static_assert(id_of<const qint4>() == qtype_id::qint4);
  std::size_t position = 0;
  for_each_type(qtypes{}, [&]<class Q>(Q) {
    const qtype_id id = all_qtypes[position];
    EXPECT_EQ(id, id_of<Q>());
    EXPECT_EQ(static_cast<std::size_t>(id), position);
    EXPECT_EQ(visit_qtype(id, []<class V>(V) { return V::name; }), Q::name);
    EXPECT_EQ(find_qtype(Q::name), id);
    ++position;
  });
  EXPECT_EQ(position, qtypes::size);
  EXPECT_EQ(qtype_names(), "qint2, qint4, qint8, qfloat8, qfloat8_e4m3fn, qfloat8_e5m2, qfloat8_e4m3fnuz");
  EXPECT_EQ(qtype_names(" or "), "qint2, qint4, qint8, qfloat8, qfloat8_e4m3fn, qfloat8_e5m2 or qfloat8_e4m3fnuz");
  EXPECT_THROW(visit_qtype(static_cast<qtype_id>(6), [](auto q) { return decltype(q)::bits; }), unsupported_error);
}
