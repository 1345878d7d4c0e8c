// Hostile quantization maps (quanto_qmap.json): every malformed text gives a qmap_error whose
// message names the problem and the source, never a crash, another exception or a hang; what
// quanto writes and what Python's json module reads the same way is accepted.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "quanto/io/qmap.hpp"

namespace {

using namespace quanto;

const char* const valid_entry = R"({"weights": "qint4", "activations": "none"})";

// A map with one module "m" whose entry also holds `extra` (an unknown key and its value).
std::string with_extra(const std::string& extra) {
  return R"({"m": {"weights": "qint4", "activations": "none", "x": )" + extra + "}}";
}

// Expects a qmap_error naming the source and holding every one of `parts`.
void expect_rejected(std::string_view json, const std::vector<std::string>& parts, const char* what) {
  SCOPED_TRACE(what);
  try {
    (void)io::parse_qmap(json, "bad_qmap.json");
    ADD_FAILURE() << "accepted: " << std::string(json.substr(0, 200));
  } catch (const io::qmap_error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("bad_qmap.json"), std::string::npos) << msg;
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << msg << "\n  lacks: " << p;
    EXPECT_LT(msg.size(), 1200u) << "an error message must stay short, whatever the input";
  }
}

TEST(QmapMalformed, DeepNestingIsRejectedWithoutRecursion) {
  const std::size_t deep = 1'000'000;
  expect_rejected(std::string(deep, '['), {"expected a JSON object of modules", "got array"}, "1M [ at the root");
  expect_rejected(std::string(deep, '{'), {"not valid JSON"}, "1M { at the root");
  expect_rejected(with_extra(std::string(deep, '[') + std::string(deep, ']')), {"nested deeper than 64", "'m'"},
                  "1M balanced [ in an ignored key");
  expect_rejected(with_extra(std::string(deep, '[')), {"nested deeper than 64"}, "1M unbalanced [ in an ignored key");
  std::string objects;
  for (std::size_t i = 0; i < deep; ++i) objects += R"({"a":)";
  expect_rejected(with_extra(objects + "1" + std::string(deep, '}')), {"nested deeper than 64"},
                  "1M nested objects in an ignored key");
  // The limit itself: the map is level 1, the entry level 2, the ignored value levels 3 and up.
  const std::size_t inner = io::max_qmap_depth - 2;
  EXPECT_EQ(io::parse_qmap(with_extra(std::string(inner, '[') + std::string(inner, ']'))).size(), 1u);
  expect_rejected(with_extra(std::string(inner + 1, '[') + std::string(inner + 1, ']')), {"nested deeper"},
                  "one level over the limit");
}

TEST(QmapMalformed, DuplicateKeysAtAnyDepth) {
  const std::string e = valid_entry;
  expect_rejected("{\"m\": " + e + ", \"m\": " + e + "}", {"'m'", "twice"}, "depth 1: a module twice");
  expect_rejected("{\"m\": " + e + ", \"\\u006d\": " + e + "}", {"'m'", "twice"}, "depth 1: the same key escaped");
  expect_rejected(R"({"m": {"weights": "qint4", "weights": "qint8", "activations": "none"}})",
                  {"'weights'", "twice", "module 'm'"}, "depth 2: weights twice");
  expect_rejected(R"({"m": {"weights": "qint4", "activations": "none", "activations": "none"}})",
                  {"'activations'", "twice"}, "depth 2: activations twice, same value");
  expect_rejected(R"({"m": {"weights": "qint4", "activations": "none", "x": 1, "x": 2}})", {"'x'", "twice"},
                  "depth 2: an ignored key twice");
  expect_rejected(with_extra(R"({"a": 1, "b": 2, "a": 3})"), {"'a'", "twice"}, "depth 3: inside an ignored object");
  expect_rejected(with_extra(R"([{"a": 1}, {"b": [{"c": 1, "c": 1}]}])"), {"'c'", "twice"},
                  "depth 5: inside arrays of objects");
  // Sibling objects have their own keys: the same key in two of them is fine.
  EXPECT_EQ(io::parse_qmap(with_extra(R"([{"a": 1}, {"a": 2}, {"a": {"a": 3}}])")).size(), 1u);
}

TEST(QmapMalformed, DuplicatesAmongManyKeys) {
  // More keys than the linear search holds, so that the hash table finds the duplicate.
  std::string many = "{";
  for (int i = 0; i < 20000; ++i) many += "\"k" + std::to_string(i) + "\": " + std::to_string(i) + ", ";
  expect_rejected(with_extra(many + "\"k12345\": 0}"), {"'k12345'", "twice"}, "a duplicate after 20000 keys");
  EXPECT_EQ(io::parse_qmap(with_extra(many + "\"last\": 0}")).size(), 1u);

  std::string modules = "{";
  for (int i = 0; i < 5000; ++i) modules += "\"layer." + std::to_string(i) + "\": " + valid_entry + ", ";
  const auto q = io::parse_qmap(modules + "\"end\": " + valid_entry + "}");
  ASSERT_EQ(q.size(), 5001u);
  EXPECT_EQ(q[4321].name, "layer.4321");
  expect_rejected(modules + "\"layer.17\": " + valid_entry + "}", {"'layer.17'", "twice"}, "a module twice among 5000");
}

TEST(QmapMalformed, BytesThatAreNotJsonText) {
  expect_rejected("{\"m\xff\": {}}", {"not valid UTF-8", "byte 3"}, "a 0xFF byte");
  expect_rejected("{\"\xc0\xaf\": {}}", {"not valid UTF-8", "byte 2"}, "an overlong encoding");
  expect_rejected("{\"\xed\xa0\x80\": {}}", {"not valid UTF-8"}, "a UTF-8 encoded surrogate");
  expect_rejected("{\"m\": {\"weights\": \"qint4\xe2\x82\"}}", {"not valid UTF-8"}, "a truncated sequence");
  expect_rejected(std::string("{}\0{\"m\": 1}", 11), {"NUL byte", "byte 2"}, "a NUL after the map");
  expect_rejected(std::string("{\"m\0\": {}}", 9), {"NUL byte"}, "a NUL inside a name");
  expect_rejected("\xEF\xBB\xBF{}", {"byte-order mark"}, "a UTF-8 byte-order mark");
  expect_rejected("{\"\\ud800\": {}}", {"not valid JSON"}, "an escaped lone surrogate");
  expect_rejected("{\"m\t\": {}}", {"not valid JSON"}, "a raw control character in a string");
}

TEST(QmapMalformed, NotJson) {
  expect_rejected("", {"not valid JSON"}, "empty");
  expect_rejected(" \n\t ", {"not valid JSON"}, "whitespace only");
  expect_rejected(R"({"m": {"weights": "qint4")", {"not valid JSON"}, "truncated");
  expect_rejected("{} {}", {"not valid JSON"}, "two values");
  expect_rejected("{} x", {"not valid JSON"}, "trailing garbage");
  expect_rejected("{} // comment", {"not valid JSON"}, "a comment");
  expect_rejected(std::string("{\"m\": ") + valid_entry + ",}", {"not valid JSON"}, "a trailing comma");
  expect_rejected("{'m': {}}", {"not valid JSON"}, "single quotes");
  expect_rejected(with_extra("NaN"), {"not valid JSON"}, "NaN");
  expect_rejected(with_extra("1e999"), {"not valid JSON"}, "a number out of the double range");
  // A huge invalid token must not make a huge message.
  expect_rejected("{\"" + std::string(1'000'000, 'a') + "\\q\": 1}", {"not valid JSON"}, "1 MB bad string token");
}

TEST(QmapMalformed, WrongShapes) {
  expect_rejected("[]", {"expected a JSON object of modules, got array"}, "an array root");
  expect_rejected(R"("qint4")", {"expected a JSON object of modules, got string"}, "a string root");
  expect_rejected("1", {"expected a JSON object of modules, got number"}, "a number root");
  expect_rejected("-1.5", {"got number"}, "a float root");
  expect_rejected("null", {"got null"}, "a null root");
  expect_rejected("true", {"got boolean"}, "a boolean root");
  expect_rejected(R"({"m": "qint4"})", {"module 'm'", "expected an object", "got string"}, "a string entry");
  expect_rejected(R"({"m": ["qint4", "none"]})", {"module 'm'", "got array"}, "an array entry");
  expect_rejected(R"({"m": null})", {"module 'm'", "got null"}, "a null entry");
  expect_rejected(R"({"m": 8})", {"module 'm'", "got number"}, "a number entry");
}

TEST(QmapMalformed, FieldsOfTheWrongType) {
  expect_rejected(R"({"m": {"weights": 4, "activations": "none"}})", {"'m'", "\"weights\" must be a qtype", "number"},
                  "weights as a number");
  expect_rejected(R"({"m": {"weights": "qint4", "activations": 8}})", {"\"activations\" must be", "number"},
                  "activations as a number");
  expect_rejected(R"({"m": {"weights": -4, "activations": "none"}})", {"\"weights\"", "number"}, "negative");
  expect_rejected(R"({"m": {"weights": 4.0, "activations": "none"}})", {"\"weights\"", "number"}, "float");
  expect_rejected(R"({"m": {"weights": null, "activations": "none"}})", {"\"weights\"", "got null"}, "null");
  expect_rejected(R"({"m": {"weights": true, "activations": "none"}})", {"\"weights\"", "got boolean"}, "boolean");
  expect_rejected(R"({"m": {"weights": ["qint4"], "activations": "none"}})", {"\"weights\"", "got array"}, "array");
  expect_rejected(R"({"m": {"weights": {"qtype": "qint4"}, "activations": "none"}})", {"\"weights\"", "got object"},
                  "object");
  expect_rejected(R"({"m": {"weights": "qint4"}})", {"'m'", "no \"activations\" key"}, "activations missing");
  expect_rejected(R"({"m": {"activations": "none"}})", {"'m'", "no \"weights\" key"}, "weights missing");
  expect_rejected(R"({"m": {}})", {"'m'", "no \"weights\" key"}, "an empty entry");
  expect_rejected(R"({"m": {"Weights": "qint4", "activations": "none"}})", {"no \"weights\" key"},
                  "keys are case-sensitive");
}

TEST(QmapMalformed, QtypesQuantoDoesNotHave) {
  for (const char* bad : {"int4", "QINT4", "qint3", "qint16", "", "float8", "qint4 ", "none "}) {
    expect_rejected(std::string(R"({"m": {"weights": ")") + bad + R"(", "activations": "none"}})",
                    {"'m'", "unknown qtype", "\"weights\""}, bad);
  }
  expect_rejected(R"({"m": {"weights": "qint4", "activations": "qint16"}})", {"unknown qtype", "\"activations\""},
                  "unknown activations");
  // quanto quantizes activations to 8 bits only
  expect_rejected(R"({"m": {"weights": "qint4", "activations": "qint4"}})", {"'m'", "'qint4'", "not 8-bit"},
                  "4-bit activations");
  expect_rejected(R"({"m": {"weights": "qint8", "activations": "qint2"}})", {"'qint2'", "not 8-bit"},
                  "2-bit activations");
}

TEST(QmapMalformed, HugeInputs) {
  std::string huge(static_cast<std::size_t>(io::max_qmap_size) + 1, ' ');
  huge[0] = '{';
  huge[1] = '}';
  expect_rejected(huge, {"100000001 bytes", "over the limit"}, "one byte over the size limit");
  // 2 MB of adversarial structure inside an ignored key (empty arrays; distinct keys): accepted in
  // one pass, without a DOM.
  std::string arrays = "[";
  while (arrays.size() < 2'000'000) arrays += "[],";
  EXPECT_EQ(io::parse_qmap(with_extra(arrays + "[]]")).size(), 1u);
  std::string keys = "{";
  for (int i = 0; keys.size() < 2'000'000; ++i) keys += "\"" + std::to_string(i) + "\":0,";
  EXPECT_EQ(io::parse_qmap(with_extra(keys + "\"end\":0}")).size(), 1u);
}

TEST(QmapMalformed, AcceptedAsPythonReadsThem) {
  // what quanto writes (json.dump(indent=4)), unknown keys of every kind, whitespace around it
  const quantization_map_t qmap = {{"model.layers.0.q_proj", "qint4", "none"},
                                   {"\xc3\xa9\xf0\x9f\x98\x80", "qfloat8", "qint8"},
                                   {"", "qint2", "qfloat8_e4m3fnuz"},
                                   {std::string("a\0b", 3), "none", "qfloat8_e5m2"}};
  EXPECT_EQ(io::parse_qmap(io::qmap_json(qmap)), qmap);
  EXPECT_EQ(io::parse_qmap(" \r\n\t" + io::qmap_json(qmap) + "\n\n  "), qmap);
  const auto q =
      io::parse_qmap(R"({"z": {"x": null, "y": [1, -2, 3.5e3, true, false, {"a": {"b": []}}], "activations": "qint8",)"
                     R"( "weights": "qfloat8_e4m3fn", "w": {}}, "a": {"weights": "none", "activations": "none"}})");
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0], (qmap_entry{"z", "qfloat8_e4m3fn", "qint8"}));
  EXPECT_EQ(q[1], (qmap_entry{"a", "none", "none"}));
  EXPECT_TRUE(io::parse_qmap("{}").empty());
  EXPECT_TRUE(io::parse_qmap(" { } ").empty());
}

TEST(QmapMalformed, EveryPrefixAndEveryByteFlip) {
  const std::string full = io::qmap_json({{"model.layers.0.self_attn.q_proj", "qint4", "none"},
                                          {"model.layers.0.mlp.down_proj", "qfloat8", "qint8"},
                                          {"lm_head", "qint8", "qfloat8_e5m2"}});
  const auto expected = io::parse_qmap(full);
  for (std::size_t n = 0; n <= full.size(); ++n) {
    try {
      const auto q = io::parse_qmap(std::string_view(full).substr(0, n));
      EXPECT_EQ(n, full.size()) << "a strict prefix of " << n << " bytes was accepted";
      EXPECT_EQ(q, expected);
    } catch (const io::qmap_error&) {
      EXPECT_LT(n, full.size());
    }
  }
  // every byte replaced by every value that matters to the lexer, and random mutations: a valid
  // map or a qmap_error (any other exception fails the test)
  const std::string interesting = std::string("\0\x01\x7f\x80\xff\"\\{}[],: 0-1e.tfnu", 24);
  std::size_t accepted = 0;
  for (std::size_t i = 0; i < full.size(); ++i)
    for (char c : interesting) {
      std::string mutated = full;
      mutated[i] = c;
      try {
        (void)io::parse_qmap(mutated);
        ++accepted;
      } catch (const io::qmap_error&) {
      }
    }
  EXPECT_GT(accepted, 0u);
  std::mt19937 rng(12345);
  for (int round = 0; round < 5000; ++round) {
    std::string mutated = full;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < edits; ++k) {
      const std::size_t at = rng() % mutated.size();
      switch (rng() % 3) {
        case 0:
          mutated[at] = interesting[rng() % interesting.size()];
          break;
        case 1:
          mutated.erase(at, 1 + rng() % 8);
          break;
        default:
          mutated.insert(at, mutated.substr(rng() % mutated.size(), 1 + rng() % 16));
          break;
      }
      if (mutated.empty()) mutated = "{";
    }
    try {
      (void)io::parse_qmap(mutated);
    } catch (const io::qmap_error&) {
    }
  }
}

// The messages the former DOM parser gave, unchanged.
TEST(QmapMalformed, MessagesOfTheFormerParser) {
  expect_rejected("[1]", {"object"}, "array");
  expect_rejected("{", {"JSON"}, "truncated");
  expect_rejected(R"({"m": 3})", {"'m'", "object"}, "number entry");
  expect_rejected(R"({"m": {"weights": "int4", "activations": "none"}})", {"'m'", "int4"}, "unknown qtype");
  expect_rejected(R"({"m": {"weights": "qint4", "activations": "qint4"}})", {"'m'", "8-bit"}, "4-bit activations");
  try {
    (void)io::parse_qmap(R"({"m": {"weights": "qint4", "activations": "none"}, "m": {}})", "x.json");
    ADD_FAILURE();
  } catch (const io::qmap_error& e) {
    EXPECT_STREQ(e.what(), "quanto: quantization map 'x.json': the key 'm' appears twice in one object");
  }
  static_assert(std::is_base_of_v<format_error, io::qmap_error>);
}

TEST(QmapKeySet, SipHashReferenceVectors) {
  // SipHash-2-4, key 00 01 .. 0f (the paper's appendix and its reference test vectors)
  const std::uint64_t k0 = 0x0706050403020100ull, k1 = 0x0f0e0d0c0b0a0908ull;
  std::string msg;
  EXPECT_EQ(io::detail::siphash24(k0, k1, msg), 0x726fdb47dd0e0e31ull);
  for (int i = 0; i < 15; ++i) msg += static_cast<char>(i);
  EXPECT_EQ(io::detail::siphash24(k0, k1, msg), 0xa129ca6149be45e5ull);
}

TEST(QmapKeySet, FindsEveryDuplicate) {
  io::detail::json_key_set keys;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 50000; ++i) ASSERT_TRUE(keys.insert("key" + std::to_string(i))) << i;
    ASSERT_TRUE(keys.insert(""));
    ASSERT_TRUE(keys.insert(std::string("\0", 1)));
    EXPECT_EQ(keys.size(), 50002u);
    for (int i = 0; i < 50000; i += 7) ASSERT_FALSE(keys.insert("key" + std::to_string(i))) << i;
    EXPECT_FALSE(keys.insert(""));
    EXPECT_FALSE(keys.insert(std::string("\0", 1)));
    keys.clear();
    EXPECT_EQ(keys.size(), 0u);
  }
}

}  // namespace
