// The strict JSON reader under the safetensors header, the shard index and the quantization map
// (quanto/io/json.hpp): its rules, the fault kinds, their byte offsets and depths, and the events a
// schema sees.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "quanto/io/json.hpp"

namespace io = quanto::io;

namespace {

/// Records every event as a short string; skips the value of any key named "skip".
struct recorder {
  std::vector<std::string> events;
  bool skip_next = false;

  io::json_action begin(const char* what) {
    if (skip_next) {
      skip_next = false;
      events.emplace_back(std::string("skip ") + what);
      return io::json_action::skip;
    }
    events.emplace_back(what);
    return io::json_action::enter;
  }
  io::json_action begin_object() { return begin("{"); }
  io::json_action begin_array() { return begin("["); }
  void key(std::string& k) {
    skip_next = k == "skip";
    events.push_back("key " + k);
  }
  void end_object() { events.emplace_back("}"); }
  void end_array() { events.emplace_back("]"); }
  void scalar(std::string e) {
    skip_next = false;
    events.push_back(std::move(e));
  }
  void string(std::string& s) { scalar("str " + s); }
  void number(const io::json_number& n) {
    using k = io::json_number::kind;
    switch (n.type) {
      case k::unsigned_integer:
        return scalar("u " + std::to_string(n.u));
      case k::negative_integer:
        return scalar("i " + std::to_string(n.i));
      case k::big_integer:
        return scalar("big " + std::string(n.text));
      case k::real:
        return scalar("real " + std::string(n.text));
    }
  }
  void boolean(bool b) { scalar(b ? "true" : "false"); }
  void null() { scalar("null"); }
};
static_assert(io::json_schema<recorder>);

std::vector<std::string> events_of(std::string_view text, io::json_limits limits = {}) {
  recorder r;
  io::read_json(text, r, limits);
  return r.events;
}

/// The fault `read_json` reports for `text` (fails the test when it accepts it).
io::json_error fault_of(std::string_view text, io::json_limits limits = {}) {
  recorder r;
  try {
    io::read_json(text, r, limits);
  } catch (const io::json_error& e) {
    return e;
  }
  ADD_FAILURE() << "accepted: " << text;
  return {io::json_fault::syntax, 0, 0, false, {}, "accepted"};
}

std::string nested(std::size_t levels, char open, char close) {
  return std::string(levels, open) + std::string(levels, close);
}

}  // namespace

TEST(JsonReader, EventsInTextOrder) {
  const std::vector<std::string> want = {"{", "key a", "[", "u 1",   "str x", "true", "null",
                                         "]", "key b", "{", "key c", "i -2",  "}",    "}"};
  EXPECT_EQ(events_of(R"( {"a": [1, "x", true, null], "b": {"c": -2}} )"), want);
}

TEST(JsonReader, DepthLimitCountsTheTopValueAsLevelOne) {
  EXPECT_NO_THROW(events_of(nested(64, '[', ']')));
  const auto e = fault_of(nested(65, '[', ']'));
  EXPECT_EQ(e.fault(), io::json_fault::too_deep);
  EXPECT_EQ(e.offset(), 64u);  // the bracket that opens level 65
  EXPECT_EQ(e.depth(), 64u);
  EXPECT_NE(std::string(e.what()).find("nested deeper than 64 levels"), std::string::npos) << e.what();

  std::string objects;  // {"k":{"k":...}} 65 deep
  for (int i = 0; i < 65; ++i) objects += "{\"k\":";
  objects += "1" + std::string(65, '}');
  EXPECT_EQ(fault_of(objects).fault(), io::json_fault::too_deep);

  EXPECT_EQ(fault_of(nested(3, '[', ']'), {.max_depth = 2}).offset(), 2u);
  // a million unbalanced brackets stop at the limit, not at the end of the text
  EXPECT_EQ(fault_of(std::string(1'000'000, '[')).offset(), 64u);
}

TEST(JsonReader, SkippedValuesObeyTheDepthLimitAndDuplicateRuleToo) {
  const auto deep = R"({"skip": )" + nested(64, '[', ']') + "}";
  const auto e = fault_of(deep);
  EXPECT_EQ(e.fault(), io::json_fault::too_deep);
  EXPECT_TRUE(e.in_skipped());

  const auto dup = fault_of(R"({"skip": [{"a": 1, "a": 2}]})");
  EXPECT_EQ(dup.fault(), io::json_fault::duplicate_key);
  EXPECT_TRUE(dup.in_skipped());
  EXPECT_EQ(dup.depth(), 3u);
}

TEST(JsonReader, DuplicateKeysAreRejectedAtTheSecondOccurrence) {
  const auto e = fault_of(R"({"a":1,"a":2})");
  EXPECT_EQ(e.fault(), io::json_fault::duplicate_key);
  EXPECT_EQ(e.offset(), 9u);  // the closing quote of the second "a"
  EXPECT_EQ(e.depth(), 1u);
  EXPECT_FALSE(e.in_skipped());
  EXPECT_EQ(e.detail(), "a");
  EXPECT_EQ(e.description(), "the key 'a' appears twice in one object");

  EXPECT_EQ(fault_of(R"({"a":1,"\u0061":2})").detail(), "a");  // compared after unescaping
  EXPECT_EQ(fault_of(R"({"x":{"k":1,"k":2}})").depth(), 2u);
  EXPECT_NO_THROW(events_of(R"({"k":{"k":1},"j":{"k":2},"l":[{"k":1},{"k":1}]})"));  // one key per object
  EXPECT_NO_THROW(events_of(R"({"a":1,"A":2,"a ":3,"":4})"));

  std::string many = "{";  // past the linear part of the key set
  for (int i = 0; i < 1000; ++i) many += "\"k" + std::to_string(i) + "\":0,";
  EXPECT_EQ(fault_of(many + "\"k517\":1}").detail(), "k517");
}

TEST(JsonReader, TextFaultsAndTheirOffsets) {
  const auto utf8 = fault_of("{\"a\": \"\xC0\x80\"}");  // an overlong NUL
  EXPECT_EQ(utf8.fault(), io::json_fault::not_utf8);
  EXPECT_EQ(utf8.offset(), 7u);
  EXPECT_EQ(utf8.description(), "not valid UTF-8 (byte 7)");
  EXPECT_EQ(fault_of("{\"\xED\xA0\x80\": 1}").offset(), 2u);      // a UTF-16 surrogate
  EXPECT_EQ(fault_of("{\"\xF4\x90\x80\x80\": 1}").offset(), 2u);  // above U+10FFFF
  EXPECT_EQ(fault_of("{\"a\": \"\xE2\x82\"}").offset(), 7u);      // cut short
  EXPECT_EQ(fault_of("{\"a\": 1}\xFF").fault(), io::json_fault::not_utf8);
  EXPECT_EQ(events_of("{\"\xF0\x9F\x98\x80\": \"\xC3\xA9\"}")[2], "str \xC3\xA9");  // valid UTF-8 passes through

  const auto nul = fault_of(std::string("{\"a\": 1}\0", 9));
  EXPECT_EQ(nul.fault(), io::json_fault::nul_byte);
  EXPECT_EQ(nul.offset(), 8u);

  const auto bom = fault_of("\xEF\xBB\xBF{}");
  EXPECT_EQ(bom.fault(), io::json_fault::byte_order_mark);
  EXPECT_EQ(bom.offset(), 0u);

  const auto big = fault_of("[1, 2, 3]", {.max_bytes = 8});
  EXPECT_EQ(big.fault(), io::json_fault::too_large);
  EXPECT_EQ(big.description(), "the text has 9 bytes, over the limit of 8");
  EXPECT_NO_THROW(events_of("[1, 2, 3]", {.max_bytes = 9}));

  // an escaped lone surrogate is a grammar fault (the bytes are ASCII)
  EXPECT_EQ(fault_of(R"({"a": "\ud800"})").fault(), io::json_fault::syntax);
  EXPECT_EQ(fault_of("{\"a\t\": 1}").fault(), io::json_fault::syntax);  // a raw control character
}

TEST(JsonReader, ObjectOnlyChecksTheFirstByte) {
  const io::json_limits object_only{.object_only = true};
  EXPECT_NO_THROW(events_of(" \n\t{}", object_only));
  const auto arr = fault_of("  []", object_only);
  EXPECT_EQ(arr.fault(), io::json_fault::not_an_object);
  EXPECT_EQ(arr.offset(), 2u);
  const auto empty = fault_of(" \n ", object_only);
  EXPECT_EQ(empty.fault(), io::json_fault::empty);
  EXPECT_EQ(empty.offset(), 3u);
  EXPECT_EQ(events_of("[]").size(), 2u);  // without it, any value
}

TEST(JsonReader, NumbersOutsideTheIntegerRangesAreKeptAsTheirText) {
  EXPECT_EQ(events_of("[18446744073709551615]")[1], "u 18446744073709551615");
  EXPECT_EQ(events_of("[18446744073709551616]")[1], "big 18446744073709551616");
  EXPECT_EQ(events_of("[-9223372036854775808]")[1], "i -9223372036854775808");
  EXPECT_EQ(events_of("[-9223372036854775809]")[1], "big -9223372036854775809");
  EXPECT_EQ(events_of("[-0]")[1], "i 0");
  EXPECT_EQ(events_of("[1.5]")[1], "real 1.5");
  EXPECT_EQ(events_of("[1e5]")[1], "real 1e5");
  EXPECT_EQ(events_of("[1E+2]")[1], "real 1E+2");
  for (const char* bad : {"[1e999]", "[-1e999]", "[NaN]", "[Infinity]", "[01]", "[+1]", "[.5]", "[1.]", "[0x10]"}) {
    const auto e = fault_of(bad);
    EXPECT_EQ(e.fault(), io::json_fault::syntax) << bad;
  }
}

TEST(JsonReader, OneValueAndOnlyWhitespaceAfterIt) {
  EXPECT_NO_THROW(events_of("{} \n\r\t"));
  const auto trailing = fault_of("{} x");
  EXPECT_EQ(trailing.fault(), io::json_fault::syntax);
  EXPECT_EQ(trailing.offset(), 3u);
  EXPECT_NE(trailing.description().find("near byte 4"), std::string::npos) << trailing.description();
  EXPECT_EQ(fault_of("{} {}").offset(), 3u);
  EXPECT_EQ(fault_of("{} // comment").fault(), io::json_fault::syntax);
  EXPECT_EQ(fault_of(R"({"a": 1,})").fault(), io::json_fault::syntax);
  EXPECT_EQ(fault_of("{'a': 1}").fault(), io::json_fault::syntax);
  const auto truncated = fault_of(R"({"a": [1, 2)");
  EXPECT_EQ(truncated.fault(), io::json_fault::syntax);
  EXPECT_EQ(truncated.offset(), 11u);  // the end of the text
  EXPECT_EQ(fault_of("").offset(), 0u);
}

TEST(JsonReader, SkippedValuesAreNotHandedToTheSchema) {
  EXPECT_EQ(events_of(R"({"skip": {"x": [1, {"y": 2}]}, "b": 2})"),
            (std::vector<std::string>{"{", "key skip", "skip {", "key b", "u 2", "}"}));
  EXPECT_EQ(events_of(R"({"skip": [[], [[]]], "b": [3]})"),
            (std::vector<std::string>{"{", "key skip", "skip [", "key b", "[", "u 3", "]", "}"}));
  EXPECT_EQ(events_of(R"({"skip": 1, "b": null})"),
            (std::vector<std::string>{"{", "key skip", "u 1", "key b", "null", "}"}));  // scalars are the schema's
}

TEST(JsonReader, TheErrorIsAFormatErrorWithTheOffsetInItsMessage) {
  try {
    events_of(R"({"a":1,"a":2})");
    FAIL();
  } catch (const quanto::format_error& e) {
    EXPECT_STREQ(e.what(), "quanto: JSON: the key 'a' appears twice in one object (byte 9)");
  }
}
