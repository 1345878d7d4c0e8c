// The byte-level BPE tokenizer (text/bpe.hpp, io/tokenizer.hpp) against the ids Hugging Face
// `tokenizers` gives (tests/data/text/make_tokenizer_fixtures.py), and its bad input.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <quanto/io/tokenizer.hpp>
#include <quanto/text/bpe.hpp>
#include <quanto/text/pretokenize.hpp>
#include <quanto/text/unicode.hpp>
#include <quanto/text/utf8.hpp>
#include <sstream>
#include <string>
#include <vector>

namespace {

using quanto::text::bpe_tokenizer;

const std::string data_dir = std::string(QUANTO_TEST_DATA_DIR) + "/text/";

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

const nlohmann::json& cases() {
  static const nlohmann::json j = nlohmann::json::parse(slurp(data_dir + "cases.json"));
  return j;
}

class Fixture : public ::testing::TestWithParam<const char*> {};

TEST_P(Fixture, SameIdsAsTokenizers) {
  const std::string name = GetParam();
  const bpe_tokenizer tok = quanto::io::read_tokenizer(data_dir + name + ".json");
  const auto& texts = cases()["texts"];
  const auto& ids = cases()["ids"][name];
  const auto& decoded = cases()["decoded"][name];
  ASSERT_EQ(texts.size(), ids.size());
  const bool bos = name == "llama3" || name == "qwen2";
  std::size_t checked = 0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const std::string text = texts[i].get<std::string>();
    const auto expected = ids[i].get<std::vector<std::uint32_t>>();
    const auto got = tok.encode(text, false);
    ASSERT_EQ(got, expected) << "text " << i << ": " << quanto::io::detail::quote(text, 200);
    auto with = expected;
    if (bos) with.insert(with.begin(), *tok.token_to_id("<|begin_of_text|>"));
    EXPECT_EQ(tok.encode(text), with) << "text " << i;
    const std::string want = decoded[i].is_null() ? text : decoded[i].get<std::string>();
    EXPECT_EQ(tok.decode(got), want) << "text " << i;
    ++checked;
  }
  EXPECT_GT(checked, 200u);
}

INSTANTIATE_TEST_SUITE_P(Tokenizers, Fixture, ::testing::Values("gpt2", "gpt2_prefix", "llama3", "qwen2"));

TEST(Tokenizer, SkipSpecialTokensInDecode) {
  const bpe_tokenizer tok = quanto::io::read_tokenizer(data_dir + "llama3.json");
  const auto ids = tok.encode("Hi<|eot_id|> there");
  EXPECT_TRUE(tok.is_special(ids.front()));
  EXPECT_EQ(tok.decode(ids, true), "Hi there");
  EXPECT_EQ(tok.decode(ids, false), "<|begin_of_text|>Hi<|eot_id|> there");
}

TEST(Tokenizer, LongWordIsNotQuadratic) {
  // One word of 200 000 bytes: the priority queue merges it in O(n log n).
  const bpe_tokenizer tok = quanto::io::read_tokenizer(data_dir + "gpt2.json");
  const std::string word(200'000, 'a');
  const auto ids = tok.encode(word, false);
  EXPECT_EQ(tok.decode(ids), word);
  EXPECT_LT(ids.size(), word.size() / 2);
}

TEST(Tokenizer, InvalidUtf8IsTypedError) {
  const bpe_tokenizer tok = quanto::io::read_tokenizer(data_dir + "gpt2.json");
  for (const std::string& bad : {std::string("ab\xC3"), std::string("\xED\xA0\x80"), std::string("x\xC0\xAFy"),
                                 std::string("\xF4\x90\x80\x80"), std::string("ok \xFF")}) {
    try {
      (void)tok.encode(bad);
      ADD_FAILURE() << "accepted " << quanto::io::detail::quote(bad);
    } catch (const quanto::text::text_error& e) {
      EXPECT_LT(e.offset(), bad.size());
    }
  }
}

TEST(Tokenizer, UnknownIdInDecodeIsTypedError) {
  const bpe_tokenizer tok = quanto::io::read_tokenizer(data_dir + "gpt2.json");
  const std::vector<std::uint32_t> ids{1, static_cast<std::uint32_t>(tok.vocab_size())};
  EXPECT_THROW((void)tok.decode(ids), quanto::value_error);
}

TEST(Utf8, LossyAsRust) {
  using quanto::text::utf8_lossy;
  EXPECT_EQ(utf8_lossy("ab"), "ab");
  EXPECT_EQ(utf8_lossy("a\xE2\x82z"), "a\xEF\xBF\xBDz");                          // one U+FFFD for a cut sequence
  EXPECT_EQ(utf8_lossy("\xF0\x9F\x98"), "\xEF\xBF\xBD");                          // cut at the end
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong: two
  EXPECT_EQ(utf8_lossy("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: three
}

TEST(Utf8, SequenceLength) {
  using quanto::text::utf8_sequence_length;
  EXPECT_EQ(utf8_sequence_length("a", 0), 1u);
  EXPECT_EQ(utf8_sequence_length("\xC3\xA9", 0), 2u);           // é
  EXPECT_EQ(utf8_sequence_length("\xE6\xBC\xA2", 0), 3u);       // 漢
  EXPECT_EQ(utf8_sequence_length("x\xF0\x9F\x98\x80", 1), 4u);  // 😀 at offset 1
  EXPECT_EQ(utf8_sequence_length("\xC3\xA9", 1), 0u);           // a continuation byte
  EXPECT_EQ(utf8_sequence_length("\xC0\xAF", 0), 0u);           // overlong
  EXPECT_EQ(utf8_sequence_length("\xED\xA0\x80", 0), 0u);       // surrogate
  EXPECT_EQ(utf8_sequence_length("\xF4\x90\x80\x80", 0), 0u);   // above U+10FFFF
  EXPECT_EQ(utf8_sequence_length("\xE6\xBC", 0), 0u);           // cut short
}

TEST(Unicode, Classes) {
  using quanto::text::char_class;
  using quanto::text::class_of;
  EXPECT_EQ(class_of('a'), char_class::letter);
  EXPECT_EQ(class_of('7'), char_class::number);
  EXPECT_EQ(class_of(' '), char_class::space);
  EXPECT_EQ(class_of('\n'), char_class::space);
  EXPECT_EQ(class_of('_'), char_class::other);
  EXPECT_EQ(class_of(0x6F22), char_class::letter);  // 漢
  EXPECT_EQ(class_of(0x0663), char_class::number);  // ٣
  EXPECT_EQ(class_of(0x3000), char_class::space);
  EXPECT_EQ(class_of(0x0301), char_class::other);   // a combining mark is not \p{L}
  EXPECT_EQ(class_of(0x1C89), char_class::letter);  // new in Unicode 16
  EXPECT_EQ(class_of(0x10FFFF), char_class::other);
}

// ---- bad tokenizer files ----

nlohmann::json base() { return nlohmann::json::parse(slurp(data_dir + "llama3.json")); }

template <class E>
void expect_error(const std::string& text, const std::string& needle) {
  try {
    (void)quanto::io::parse_tokenizer(text, "t.json");
    ADD_FAILURE() << "accepted; expected a message with " << needle;
  } catch (const E& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("t.json"), std::string::npos) << e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "other error: " << e.what();
  }
}

TEST(TokenizerFile, NotJson) {
  using quanto::text::tokenizer_error;
  expect_error<tokenizer_error>("", "empty");
  expect_error<tokenizer_error>("{\"model\": ", "not valid JSON");
  expect_error<tokenizer_error>("[1]", "must be a JSON object");
  expect_error<tokenizer_error>("{\"a\":1,\"a\":2}", "appears twice");
  expect_error<tokenizer_error>("{\"x\": \"\xC3\"}", "UTF-8");
  expect_error<tokenizer_error>("{}", "has no \"model\"");
}

TEST(TokenizerFile, InconsistentVocabAndMerges) {
  using quanto::text::tokenizer_error;
  auto j = base();
  j["model"]["merges"].push_back({"zzq", "qzz"});
  expect_error<tokenizer_error>(j.dump(), "is not in the vocabulary");
  j = base();
  j["model"]["merges"][0] = "nospace";
  expect_error<tokenizer_error>(j.dump(), "two tokens separated by one space");
  j = base();
  j["model"]["vocab"]["zzzz"] = 5;  // an id another token has
  expect_error<tokenizer_error>(j.dump(), "two tokens have the id 5");
  j = base();
  j["model"]["vocab"]["zzzz"] = -1;
  expect_error<tokenizer_error>(j.dump(), "must be an integer");
  j = base();
  j["added_tokens"][0]["id"] = 9999;
  expect_error<tokenizer_error>(j.dump(), "has the id 9999");
  j = base();
  j["model"]["vocab"] = nlohmann::json::array();
  expect_error<tokenizer_error>(j.dump(), "\"vocab\" must be an object");
}

TEST(TokenizerFile, UnsupportedKindsAreNamed) {
  using quanto::unsupported_error;
  auto j = base();
  j["model"]["type"] = "WordPiece";
  expect_error<unsupported_error>(j.dump(), "WordPiece");
  j["model"]["type"] = "Unigram";
  expect_error<unsupported_error>(j.dump(), "Unigram");
  j = base();
  j["normalizer"] = {{"type", "NFC"}};
  expect_error<unsupported_error>(j.dump(), "NFC");
  j = base();
  j["pre_tokenizer"] = {{"type", "Metaspace"}};
  expect_error<unsupported_error>(j.dump(), "Metaspace");
  j = base();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
  expect_error<unsupported_error>(j.dump(), "Split regex");
  j = base();
  j["model"]["byte_fallback"] = true;
  expect_error<unsupported_error>(j.dump(), "byte_fallback");
  j = base();
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  expect_error<unsupported_error>(j.dump(), "RobertaProcessing");
  j = base();
  j["decoder"] = {{"type", "WordPiece"}};
  expect_error<unsupported_error>(j.dump(), "decoder");
}

}  // namespace
