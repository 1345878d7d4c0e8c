// Tests of quanto/io/checkpoint.hpp: the shard index (`model.safetensors.index.json`) parser with a
// matrix of malformed indexes, each rejected with its own error type; the index writer against
// the bytes Python's json module writes; model folders read as a whole (missing, extra and
// doubled tensors, total_size, shards that do not exist or that are symbolic links leaving the
// folder); and model folders written as transformers writes them, replaced atomically.
#include <gtest/gtest.h>

#include <type_traits>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <ostream>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/io/checkpoint.hpp"

namespace {

namespace fs = std::filesystem;
namespace io = quanto::io;
using quanto::dtype;
using namespace std::string_literals;

// ---- helpers ----------------------------------------------------------------------------------

enum class outcome { ok, index, path, duplicate, checkpoint, file, value, format, other };

const char* name_of(outcome o) {
  switch (o) {
    case outcome::ok:
      return "accepted";
    case outcome::index:
      return "index_error";
    case outcome::path:
      return "path_error";
    case outcome::duplicate:
      return "duplicate_error";
    case outcome::checkpoint:
      return "checkpoint_error";
    case outcome::file:
      return "file_error";
    case outcome::value:
      return "value_error";
    case outcome::format:
      return "another format_error";
    case outcome::other:
      return "another exception";
  }
  return "?";
}
void PrintTo(outcome o, std::ostream* os) { *os << name_of(o); }

/// Runs `f` and says which error it threw (the message goes to *what).
template <class F>
outcome outcome_of(F&& f, std::string* what = nullptr) {
  const auto note = [&](const std::exception& e) {
    if (what) *what = e.what();
  };
  try {
    f();
    return outcome::ok;
  } catch (const io::index_error& e) {
    note(e);
    return outcome::index;
  } catch (const io::path_error& e) {
    note(e);
    return outcome::path;
  } catch (const io::duplicate_error& e) {
    note(e);
    return outcome::duplicate;
  } catch (const io::checkpoint_error& e) {
    note(e);
    return outcome::checkpoint;
  } catch (const io::file_error& e) {
    note(e);
    return outcome::file;
  } catch (const quanto::value_error& e) {
    note(e);
    return outcome::value;
  } catch (const quanto::format_error& e) {
    note(e);
    return outcome::format;
  } catch (const std::exception& e) {
    note(e);
    return outcome::other;
  }
}

outcome parse_outcome(std::string_view text, std::string* what = nullptr) {
  return outcome_of([&] { (void)io::parse_shard_index(text, "case.index.json"); }, what);
}

/// An index whose weight_map maps tensor "t" to `value` (JSON text).
std::string with_shard(std::string_view value) { return R"({"weight_map": {"t": )" + std::string(value) + "}}"; }
/// An index with this metadata (JSON text) and an empty weight_map.
std::string with_metadata(std::string_view value) {
  return R"({"metadata": )" + std::string(value) + R"(, "weight_map": {}})";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_text(const fs::path& p, std::string_view text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  ASSERT_TRUE(out.good()) << p;
}

/// Everything under `root`: relative path -> "file:" + content, "dir", or "link:" + target.
std::map<std::string, std::string> tree(const fs::path& root) {
  std::map<std::string, std::string> out;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    const auto rel = fs::relative(it->path(), root).string();
    if (it->is_symlink())
      out[rel] = "link:" + fs::read_symlink(it->path()).string();
    else if (it->is_directory())
      out[rel] = "dir";
    else
      out[rel] = "file:" + slurp(it->path());
  }
  return out;
}

std::vector<std::string> listing(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

/// checkpoint_options without designated initializers (-Wmissing-field-initializers).
io::checkpoint_options options(std::uint64_t max_shard_size, bool overwrite = false,
                               std::vector<std::pair<std::string, std::string>> extra_files = {}) {
  io::checkpoint_options o;
  o.max_shard_size = max_shard_size;
  o.overwrite = overwrite;
  o.extra_files = std::move(extra_files);
  return o;
}

/// u8 tensors: name -> bytes.
using named_bytes = std::vector<std::pair<std::string, std::vector<std::uint8_t>>>;

std::vector<io::tensor_to_write> as_tensors(const named_bytes& ts) {
  std::vector<io::tensor_to_write> out;
  for (const auto& [name, b] : ts)
    out.push_back({name, dtype::u8, {static_cast<std::int64_t>(b.size())}, std::as_bytes(std::span(b))});
  return out;
}

void write_shard(const fs::path& p, const named_bytes& ts) { io::save_safetensors(p, as_tensors(ts)); }

std::vector<std::uint8_t> bytes_of(std::span<const std::byte> s) {
  std::vector<std::uint8_t> out(s.size());
  if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
  return out;
}

/// A scratch folder per test, removed afterwards.
class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("quanto_test_checkpoint_" + std::to_string(rd()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }
  fs::path dir_;
};

// ---- parse_shard_index: malformed indexes --------------------------------------------------------

struct bad_index {
  const char* label;
  std::string text;
  outcome expected;
};

std::vector<bad_index> malformed_indexes() {
  std::vector<bad_index> cases = {
      // weight_map values that are not plain file names in the folder
      {"shard ../x", with_shard(R"("../x")"), outcome::path},
      {"shard ../model.safetensors", with_shard(R"("../model.safetensors")"), outcome::path},
      {"shard /etc/passwd", with_shard(R"("/etc/passwd")"), outcome::path},
      {"shard a/b", with_shard(R"("a/b")"), outcome::path},
      {"shard a/ (trailing slash)", with_shard(R"("a/")"), outcome::path},
      {"shard a\\b", with_shard(R"("a\\b")"), outcome::path},
      {"shard \\\\server\\x", with_shard(R"("\\\\server\\x")"), outcome::path},
      {"shard a\\/b (escaped slash)", with_shard(R"("a\/b")"), outcome::path},
      {"shard empty", with_shard(R"("")"), outcome::path},
      {"shard .", with_shard(R"(".")"), outcome::path},
      {"shard ..", with_shard(R"("..")"), outcome::path},
      {"shard with an escaped NUL", with_shard(R"("a\u0000.safetensors")"), outcome::path},
      {"shard that is only an escaped NUL", with_shard(R"("\u0000")"), outcome::path},
      // bytes that are not UTF-8, and escapes that are not Unicode
      {"non-UTF-8 byte in a shard name", with_shard("\"x\xff.safetensors\""), outcome::index},
      {"non-UTF-8 byte in a tensor name", "{\"weight_map\": {\"t\xfe\": \"a.safetensors\"}}", outcome::index},
      {"overlong UTF-8 '/' (C0 AF)",
       with_shard("\"a\xc0\xaf"
                  "b\""),
       outcome::index},
      {"UTF-8 encoded surrogate", with_shard("\"a\xed\xa0\x80\""), outcome::index},
      {"truncated UTF-8 sequence at the end", with_shard("\"a\"") + "\xe2\x82", outcome::index},
      {"lone surrogate escape", with_shard(R"("a\ud800")"), outcome::index},
      {"a raw NUL byte inside a string", with_shard("\"a\0b\""s), outcome::index},
      {"a raw NUL byte after the object", with_shard(R"("a")") + "\0"s, outcome::index},
      {"a raw NUL byte before the object", "\0"s + with_shard(R"("a")"), outcome::index},
      // weight_map values that are not strings
      {"shard is a number", with_shard("5"), outcome::index},
      {"shard is a negative number", with_shard("-1"), outcome::index},
      {"shard is a float", with_shard("1.5"), outcome::index},
      {"shard is null", with_shard("null"), outcome::index},
      {"shard is true", with_shard("true"), outcome::index},
      {"shard is an object", with_shard(R"({"file": "a.safetensors"})"), outcome::index},
      {"shard is an array", with_shard(R"(["a.safetensors"])"), outcome::index},
      {"shard is an empty array", with_shard("[]"), outcome::index},
      // weight_map missing or not an object
      {"no weight_map", R"({"metadata": {"total_size": 0}})", outcome::index},
      {"empty object", "{}", outcome::index},
      {"weight_map only nested deeper", R"({"x": {"weight_map": {}}})", outcome::index},
      {"weight_map only inside metadata", R"({"metadata": {"weight_map": {}}})", outcome::index},
      {"weight_map is an array", R"({"weight_map": []})", outcome::index},
      {"weight_map is an array of pairs", R"({"weight_map": [["t", "a.safetensors"]]})", outcome::index},
      {"weight_map is null", R"({"weight_map": null})", outcome::index},
      {"weight_map is a string", R"({"weight_map": "a.safetensors"})", outcome::index},
      {"weight_map is a number", R"({"weight_map": 0})", outcome::index},
      {"weight_map is false", R"({"weight_map": false})", outcome::index},
      // total_size (and total_parameters) not a non-negative integer
      {"total_size negative", with_metadata(R"({"total_size": -1})"), outcome::index},
      {"total_size -0", with_metadata(R"({"total_size": -0})"), outcome::index},
      {"total_size float", with_metadata(R"({"total_size": 1.0})"), outcome::index},
      {"total_size exponent", with_metadata(R"({"total_size": 1e3})"), outcome::index},
      {"total_size string", with_metadata(R"({"total_size": "5"})"), outcome::index},
      {"total_size 2^64", with_metadata(R"({"total_size": 18446744073709551616})"), outcome::index},
      {"total_size 1e30", with_metadata(R"({"total_size": 1e30})"), outcome::index},
      {"total_size null", with_metadata(R"({"total_size": null})"), outcome::index},
      {"total_size true", with_metadata(R"({"total_size": true})"), outcome::index},
      {"total_parameters negative", with_metadata(R"({"total_parameters": -5})"), outcome::index},
      {"total_parameters float", with_metadata(R"({"total_parameters": 0.5})"), outcome::index},
      // metadata not an object
      {"metadata is a number", with_metadata("5"), outcome::index},
      {"metadata is an array", with_metadata("[]"), outcome::index},
      {"metadata is a string", with_metadata(R"("total_size")"), outcome::index},
      {"metadata is null", with_metadata("null"), outcome::index},
      // duplicate keys at every depth
      {"duplicate weight_map (depth 1)", R"({"weight_map": {}, "weight_map": {}})", outcome::duplicate},
      {"duplicate metadata (depth 1)", R"({"metadata": {}, "metadata": {}, "weight_map": {}})", outcome::duplicate},
      {"duplicate unknown key (depth 1)", R"({"x": 1, "weight_map": {}, "x": 1})", outcome::duplicate},
      {"duplicate tensor, two shards (depth 2)", R"({"weight_map": {"t": "a.safetensors", "t": "b.safetensors"}})",
       outcome::duplicate},
      {"duplicate tensor, same shard (depth 2)",
       R"({"weight_map": {"t": "a.safetensors", "u": "a.safetensors", "t": "a.safetensors"}})", outcome::duplicate},
      {"duplicate total_size (depth 2)", with_metadata(R"({"total_size": 1, "total_size": 1})"), outcome::duplicate},
      {"duplicate key in an unknown object (depth 2)", R"({"x": {"k": 1, "k": 2}, "weight_map": {}})",
       outcome::duplicate},
      {"duplicate key inside metadata (depth 3)", with_metadata(R"({"extra": {"k": 1, "k": 2}})"), outcome::duplicate},
      {"duplicate key in an object in an array (depth 3)", R"({"x": [{"k": 1, "k": 2}], "weight_map": {}})",
       outcome::duplicate},
      {"duplicate key deep inside metadata (depth 5)", with_metadata(R"({"a": {"b": {"c": {"k": [], "k": []}}}})"),
       outcome::duplicate},
      // not an object at the root
      {"root is an array", R"([{"weight_map": {}}])", outcome::index},
      {"root is an empty array", "[]", outcome::index},
      {"root is a number", "5", outcome::index},
      {"root is a negative number", "-5", outcome::index},
      {"root is a float", "0.5", outcome::index},
      {"root is a string", R"("weight_map")", outcome::index},
      {"root is null", "null", outcome::index},
      {"root is true", "true", outcome::index},
      // not JSON
      {"empty text", "", outcome::index},
      {"only whitespace", " \n\t ", outcome::index},
      {"truncated", R"({"weight_map": {"t": "a.safetensors")", outcome::index},
      {"trailing garbage", R"({"weight_map": {}} x)", outcome::index},
      {"two objects", R"({"weight_map": {}}{"weight_map": {}})", outcome::index},
      {"trailing comma", R"({"weight_map": {"t": "a.safetensors",}})", outcome::index},
      {"single quotes", R"({'weight_map': {}})", outcome::index},
      {"a comment", "{\"weight_map\": {}} // c", outcome::index},
      {"NaN", with_metadata(R"({"total_size": NaN})"), outcome::index},
      {"unquoted key", R"({weight_map: {}})", outcome::index},
      {"control character in a string", with_shard("\"a\x01.safetensors\""), outcome::index},
  };
  // Nesting far past the limit: rejected at the limit, without recursion or a DOM.
  const std::size_t million = 1'000'000;
  cases.push_back({"1,000,000 nested '[' at the root", std::string(million, '['), outcome::index});
  cases.push_back({"1,000,000 nested '[' in an unknown key", R"({"x": )" + std::string(million, '['), outcome::index});
  cases.push_back(
      {"1,000,000 nested '[' in metadata", R"({"metadata": {"x": )" + std::string(million, '['), outcome::index});
  {
    std::string deep;
    for (std::size_t i = 0; i < million; ++i) deep += R"({"a":)";
    cases.push_back({"1,000,000 nested objects", deep, outcome::index});
  }
  {
    std::string balanced =
        R"({"x": )" + std::string(million, '[') + std::string(million, ']') + R"(, "weight_map": {}})";
    cases.push_back({"1,000,000 nested '[' closed again", balanced, outcome::index});
  }
  // Exactly one level over the limit (the root object counts as one level).
  cases.push_back({"nesting one level over max_index_depth",
                   R"({"x": )" + std::string(io::max_index_depth, '[') + std::string(io::max_index_depth, ']') +
                       R"(, "weight_map": {}})",
                   outcome::index});
  return cases;
}

TEST(ShardIndexParse, MalformedIndexesAreRejectedWithTheirErrorType) {
  const auto cases = malformed_indexes();
  EXPECT_GE(cases.size(), 80u);
  for (const bad_index& c : cases) {
    std::string what;
    const outcome got = parse_outcome(c.text, &what);
    EXPECT_EQ(got, c.expected) << c.label << ": expected " << name_of(c.expected) << ", got " << name_of(got) << " ("
                               << what << ")";
    if (got != outcome::ok) {
      // Every message says which file it is about, and stays short even for a 1 MB input.
      EXPECT_NE(what.find("case.index.json"), std::string::npos) << c.label << ": " << what;
      EXPECT_LT(what.size(), 2000u) << c.label;
    }
  }
}

TEST(ShardIndexParse, ErrorsNameTheTensorAndTheShard) {
  std::string what;
  ASSERT_EQ(parse_outcome(R"({"weight_map": {"model.layers.0.weight": "../../etc/passwd"}})", &what), outcome::path);
  EXPECT_NE(what.find("model.layers.0.weight"), std::string::npos) << what;
  EXPECT_NE(what.find("../../etc/passwd"), std::string::npos) << what;
  ASSERT_EQ(parse_outcome(R"({"weight_map": {"w": "a.safetensors", "w": "b.safetensors"}})", &what),
            outcome::duplicate);
  EXPECT_NE(what.find("'w'"), std::string::npos) << what;
  // A NUL in a name is printed escaped, not cut off.
  ASSERT_EQ(parse_outcome(with_shard(R"("evil\u0000.safetensors")"), &what), outcome::path);
  EXPECT_NE(what.find("evil\\x00.safetensors"), std::string::npos) << what;
}

TEST(ShardIndexParse, SizeLimit) {
  // Over max_index_size: rejected before it is parsed (an index that is valid JSON apart from its
  // size: trailing whitespace).
  std::string big = R"({"weight_map": {}})";
  big.resize(io::max_index_size + 1, ' ');
  std::string what;
  EXPECT_EQ(parse_outcome(big, &what), outcome::index) << what;
  EXPECT_NE(what.find("100000000"), std::string::npos) << what;
}

// ---- parse_shard_index: accepted indexes ---------------------------------------------------------

TEST(ShardIndexParse, ATransformersIndex) {
  const auto index = io::parse_shard_index(R"({
  "metadata": {
    "total_parameters": 106816,
    "total_size": 427264
  },
  "weight_map": {
    "lm_head.weight": "model-00002-of-00002.safetensors",
    "model.embed_tokens.weight": "model-00001-of-00002.safetensors"
  }
}
)");
  EXPECT_EQ(index.total_size, 427264u);
  EXPECT_EQ(index.total_parameters, 106816u);
  using wm = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(index.weight_map, (wm{{"lm_head.weight", "model-00002-of-00002.safetensors"},
                                  {"model.embed_tokens.weight", "model-00001-of-00002.safetensors"}}));
}

TEST(ShardIndexParse, AcceptedEdgeCases) {
  using wm = std::vector<std::pair<std::string, std::string>>;
  // An empty weight_map, no metadata.
  {
    const auto index = io::parse_shard_index(R"({"weight_map": {}})");
    EXPECT_TRUE(index.weight_map.empty());
    EXPECT_FALSE(index.total_size.has_value());
    EXPECT_FALSE(index.total_parameters.has_value());
  }
  // Unknown keys anywhere, holding anything (even a "weight_map" key or a bad total_size, which
  // only count at their own place); metadata with nested objects and arrays; metadata after
  // weight_map; whitespace around the object.
  {
    const auto index = io::parse_shard_index(
        " \n\t\r{\"format\": \"pt\", \"n\": [1, -2, 3.5, null, true, {\"weight_map\": 5}],\n"
        " \"weight_map\": {\"b\": \"b.safetensors\", \"a\": \"a.safetensors\"},\n"
        " \"extra\": {\"weight_map\": [], \"metadata\": 5, \"total_size\": -1, \"deep\": {\"x\": {}}},\n"
        " \"metadata\": {\"format\": \"pt\", \"total_size\": 12, \"nested\": {\"total_size\": \"no\", "
        "\"list\": [{\"a\": {}}, [], \"s\"]}, \"total_parameters\": 3, \"mixed\": [-1, 1e300, null]}\n"
        "} \n");
    EXPECT_EQ(index.weight_map, (wm{{"b", "b.safetensors"}, {"a", "a.safetensors"}}));  // file order
    EXPECT_EQ(index.total_size, 12u);
    EXPECT_EQ(index.total_parameters, 3u);
  }
  // The same key in different objects is not a duplicate.
  EXPECT_EQ(parse_outcome(R"({"metadata": {"k": {"k": {"k": 1}}}, "k": {"k": 2}, "weight_map": {"k": "k"}})"),
            outcome::ok);
  // Names: unicode (escaped or not), escapes, an empty tensor name, dots and spaces in shard names.
  {
    const auto index = io::parse_shard_index(
        "{\"weight_map\": {\"\\u00e9\\ud83d\\ude00\": \"caf\xc3\xa9.safetensors\", \"\": \"...safetensors\", "
        "\"a\\\"b\\\\c\\n\": \". x .\", \"\\u0000\": \"model.safetensors\"}}");
    EXPECT_EQ(index.weight_map, (wm{{"\xc3\xa9\xf0\x9f\x98\x80", "caf\xc3\xa9.safetensors"},
                                    {"", "...safetensors"},
                                    {"a\"b\\c\n", ". x ."},
                                    {"\0"s, "model.safetensors"}}));
  }
  // The integer limits.
  EXPECT_EQ(io::parse_shard_index(with_metadata(R"({"total_size": 0})")).total_size, 0u);
  EXPECT_EQ(io::parse_shard_index(with_metadata(R"({"total_size": 18446744073709551615})")).total_size, UINT64_MAX);
  // Nesting just under the limit.
  EXPECT_EQ(parse_outcome(R"({"x": )" + std::string(io::max_index_depth - 1, '[') +
                          std::string(io::max_index_depth - 1, ']') + R"(, "weight_map": {}})"),
            outcome::ok);
}

// A total_size that is an object or an array is not a non-negative integer either: it must not be
// skipped as if it were an unknown value (the checkpoint would then skip the total_size check).
TEST(ShardIndexParse, TotalSizeThatIsAnObjectOrAnArrayIsRejected) {
  EXPECT_EQ(parse_outcome(with_metadata(R"({"total_size": {}})")), outcome::index);
  EXPECT_EQ(parse_outcome(with_metadata(R"({"total_size": [427264]})")), outcome::index);
  EXPECT_EQ(parse_outcome(with_metadata(R"({"total_parameters": {"n": 1}})")), outcome::index);
  EXPECT_EQ(parse_outcome(with_metadata(R"({"total_parameters": []})")), outcome::index);
}

// ---- shard_index_json ---------------------------------------------------------------------------

// The expected strings come from Python 3.11:
//   json.dumps(index, indent=2, sort_keys=True) + "\n"
TEST(ShardIndexJson, MatchesPythonJsonDumpsByteForByte) {
  io::shard_index index;
  index.total_size = 427264;
  index.total_parameters = 106816;
  index.weight_map = {
      {"model.embed_tokens.weight", "model-00001-of-00002.safetensors"},
      {"lm_head.weight", "model-00002-of-00002.safetensors"},
      {"mod\xc3\xa8le.\xe6\x9d\x83\xe9\x87\x8d.\xf0\x9f\x98\x80", "model-00002-of-00002.safetensors"},
      {"quote\"back\\slash\ttab\nnl\x01"
       "ctl\x7f"
       "del\xe2\x80\xa8",
       "model-00001-of-00002.safetensors"},
      {"Z", "shard \xc3\xa9.safetensors"},
      {"\xc3\xa9", "a.safetensors"},
      {"z", "b.safetensors"},
  };
  const std::string expected =
      "{\n  \"metadata\": {\n    \"total_parameters\": 106816,\n    \"total_size\": 427264\n  },\n"
      "  \"weight_map\": {\n"
      "    \"Z\": \"shard \\u00e9.safetensors\",\n"
      "    \"lm_head.weight\": \"model-00002-of-00002.safetensors\",\n"
      "    \"model.embed_tokens.weight\": \"model-00001-of-00002.safetensors\",\n"
      "    \"mod\\u00e8le.\\u6743\\u91cd.\\ud83d\\ude00\": \"model-00002-of-00002.safetensors\",\n"
      "    \"quote\\\"back\\\\slash\\ttab\\nnl\\u0001ctl\\u007fdel\\u2028\": \"model-00001-of-00002.safetensors\",\n"
      "    \"z\": \"b.safetensors\",\n"
      "    \"\\u00e9\": \"a.safetensors\"\n"
      "  }\n}\n";
  EXPECT_EQ(io::shard_index_json(index), expected);

  // Parsing it gives the index back (in sorted order, the order of the file).
  const auto again = io::parse_shard_index(io::shard_index_json(index));
  EXPECT_EQ(again.total_size, index.total_size);
  EXPECT_EQ(again.total_parameters, index.total_parameters);
  auto sorted = index.weight_map;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(again.weight_map, sorted);
  EXPECT_EQ(io::shard_index_json(again), expected);
}

TEST(ShardIndexJson, EmptyAndPartialMetadata) {
  // json.dumps({"metadata": {}, "weight_map": {}}, indent=2, sort_keys=True)
  EXPECT_EQ(io::shard_index_json({}), "{\n  \"metadata\": {},\n  \"weight_map\": {}\n}\n");
  io::shard_index only_size;
  only_size.total_size = 0;
  EXPECT_EQ(io::shard_index_json(only_size),
            "{\n  \"metadata\": {\n    \"total_size\": 0\n  },\n  \"weight_map\": {}\n}\n");
  io::shard_index only_parameters;
  only_parameters.total_parameters = UINT64_MAX;
  only_parameters.weight_map = {{"t", "m.safetensors"}};
  EXPECT_EQ(io::shard_index_json(only_parameters),
            "{\n  \"metadata\": {\n    \"total_parameters\": 18446744073709551615\n  },\n"
            "  \"weight_map\": {\n    \"t\": \"m.safetensors\"\n  }\n}\n");
  for (const auto& index : {io::shard_index{}, only_size, only_parameters}) {
    const auto again = io::parse_shard_index(io::shard_index_json(index));
    EXPECT_EQ(again.total_size, index.total_size);
    EXPECT_EQ(again.total_parameters, index.total_parameters);
    EXPECT_EQ(again.weight_map, index.weight_map);
  }
}

TEST(ShardIndexJson, RoundTripsGeneratedIndexes) {
  std::mt19937 rng(1234);
  const std::vector<std::string> pieces = {"a",
                                           "Z",
                                           ".",
                                           "_",
                                           "0",
                                           " ",
                                           "\"",
                                           "\\",
                                           "\n",
                                           "\x01",
                                           "\x7f",
                                           "\xc3\xa9",
                                           "\xe2\x80\xa8",
                                           "\xef\xbf\xbf",
                                           "\xf0\x9f\x98\x80",
                                           "/",
                                           "\0"s};
  for (int round = 0; round < 200; ++round) {
    io::shard_index index;
    if (rng() % 2) index.total_size = (std::uint64_t{rng()} << 32) | rng();
    if (rng() % 2) index.total_parameters = rng();
    std::set<std::string> names;
    const std::size_t n = rng() % 12;
    for (std::size_t i = 0; i < n; ++i) {
      std::string name;
      for (std::size_t k = rng() % 6; k > 0; --k) name += pieces[rng() % pieces.size()];
      if (!names.insert(name).second) continue;
      std::string shard = "model-" + std::to_string(rng() % 5) + (rng() % 2 ? "\xc3\xa9" : "") + ".safetensors";
      index.weight_map.emplace_back(name, shard);
    }
    const std::string text = io::shard_index_json(index);
    const auto again = io::parse_shard_index(text);
    auto sorted = index.weight_map;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(again.weight_map, sorted) << text;
    EXPECT_EQ(again.total_size, index.total_size);
    EXPECT_EQ(again.total_parameters, index.total_parameters);
    EXPECT_EQ(io::shard_index_json(again), text);
    // ASCII only, like Python's ensure_ascii.
    EXPECT_TRUE(std::all_of(text.begin(), text.end(), [](char c) { return c >= 0x20 || c == '\n'; })) << text;
  }
}

// ---- checkpoint::open ---------------------------------------------------------------------------

class CheckpointOpen : public TempDir {
 protected:
  void SetUp() override {
    TempDir::SetUp();
    model_ = dir_ / "model";
    fs::create_directories(model_);
  }
  /// a.safetensors {x: 4 bytes, y: 2 bytes}, b.safetensors {z: 3 bytes}.
  void write_good_shards() {
    write_shard(model_ / "a.safetensors", {{"x", {1, 2, 3, 4}}, {"y", {5, 6}}});
    write_shard(model_ / "b.safetensors", {{"z", {7, 8, 9}}});
  }
  void write_index(std::string_view weight_map, std::string_view metadata = R"({"total_size": 9})") {
    write_text(model_ / std::string(io::index_file_name),
               R"({"metadata": )" + std::string(metadata) + R"(, "weight_map": )" + std::string(weight_map) + "}");
  }
  outcome open_outcome(std::string* what = nullptr) {
    return outcome_of([&] { (void)io::checkpoint::open(model_); }, what);
  }
  static constexpr const char* good_map = R"({"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors"})";
  fs::path model_;
};

TEST_F(CheckpointOpen, AShardedFolder) {
  write_good_shards();
  write_index(good_map);
  for (const auto how : {io::safetensors_file::load::map, io::safetensors_file::load::read}) {
    const auto c = io::checkpoint::open(model_, how);
    EXPECT_TRUE(c.sharded());
    EXPECT_EQ(c.folder(), model_);
    EXPECT_EQ(c.shard_names(), (std::vector<std::string>{"a.safetensors", "b.safetensors"}));
    ASSERT_EQ(c.shards().size(), 2u);
    EXPECT_EQ(c.shards()[0].is_mapped(), how == io::safetensors_file::load::map);
    EXPECT_EQ(c.tensors().size(), 3u);
    EXPECT_EQ(c.total_size(), 9u);
    ASSERT_TRUE(c.index().has_value());
    EXPECT_EQ(c.index()->total_size, 9u);
    EXPECT_EQ(bytes_of(c.bytes(c.at("x"))), (std::vector<std::uint8_t>{1, 2, 3, 4}));
    EXPECT_EQ(bytes_of(c.bytes(c.at("z"))), (std::vector<std::uint8_t>{7, 8, 9}));
    EXPECT_EQ(c.at("z").shard, 1u);
    EXPECT_EQ(c.find("w"), nullptr);
    EXPECT_THROW((void)c.at("w"), io::missing_tensor_error);
  }
  // Without total_size, and with unknown metadata: fine too.
  write_index(good_map, R"({"format": "pt"})");
  EXPECT_EQ(open_outcome(), outcome::ok);
}

// A checkpoint's entries point into its shards' tables, so it cannot be copied (a copy would
// point into the original's); a moved-to checkpoint stays valid after the original is gone.
static_assert(!std::is_copy_constructible_v<io::checkpoint> && std::is_nothrow_move_constructible_v<io::checkpoint>);
TEST_F(CheckpointOpen, AMovedCheckpointOutlivesTheOriginal) {
  write_good_shards();
  write_index(good_map);
  std::optional<io::checkpoint> copy;
  {
    auto original = io::checkpoint::open(model_);
    copy.emplace(std::move(original));
  }
  const auto& e = copy->at("y");
  const auto& own = copy->shards()[e.shard].tensors();
  const bool points_into_copy = !own.empty() && e.info >= own.data() && e.info < own.data() + own.size();
  ASSERT_TRUE(points_into_copy) << "the entries point into the destroyed original's tensor tables";
  EXPECT_EQ(e.name(), "y");
  EXPECT_EQ(bytes_of(copy->bytes(e)), (std::vector<std::uint8_t>{5, 6}));
}

TEST_F(CheckpointOpen, TheIndexAndTheShardsMustAgree) {
  write_good_shards();
  std::string what;
  // A tensor of the index missing from its shard.
  write_index(R"({"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors", "w": "b.safetensors"})");
  EXPECT_EQ(open_outcome(&what), outcome::checkpoint) << what;
  EXPECT_NE(what.find("'w'"), std::string::npos) << what;
  // A tensor of a shard missing from the index.
  write_index(R"({"x": "a.safetensors", "z": "b.safetensors"})", R"({"total_size": 7})");
  EXPECT_EQ(open_outcome(&what), outcome::checkpoint) << what;
  EXPECT_NE(what.find("'y'"), std::string::npos) << what;
  // The index puts a tensor in the wrong shard.
  write_index(R"({"x": "a.safetensors", "y": "b.safetensors", "z": "b.safetensors"})");
  EXPECT_EQ(open_outcome(&what), outcome::checkpoint) << what;
  EXPECT_NE(what.find("'y'"), std::string::npos) << what;
  // total_size is not the sum of the tensors.
  write_index(good_map, R"({"total_size": 10})");
  EXPECT_EQ(open_outcome(&what), outcome::checkpoint) << what;
  write_index(good_map, R"({"total_size": 0})");
  EXPECT_EQ(open_outcome(&what), outcome::checkpoint) << what;
  // A tensor in two shards (the index names one of them).
  write_shard(model_ / "b.safetensors", {{"z", {7, 8, 9}}, {"y", {5, 6}}});
  write_index(good_map, R"({"total_size": 11})");
  EXPECT_EQ(open_outcome(&what), outcome::checkpoint) << what;
  EXPECT_NE(what.find("'y'"), std::string::npos) << what;
  write_index(good_map, R"({})");
  EXPECT_EQ(open_outcome(&what), outcome::checkpoint) << what;
  // A tensor listed twice in the index.
  write_shard(model_ / "b.safetensors", {{"z", {7, 8, 9}}});
  write_index(R"({"x": "a.safetensors", "y": "a.safetensors", "z": "b.safetensors", "y": "b.safetensors"})");
  EXPECT_EQ(open_outcome(&what), outcome::duplicate) << what;
  // Back to consistent.
  write_index(good_map);
  EXPECT_EQ(open_outcome(&what), outcome::ok) << what;
}

TEST_F(CheckpointOpen, FilesThatCannotBeOpenedOrParsed) {
  write_good_shards();
  std::string what;
  // A shard that does not exist.
  write_index(R"({"x": "a.safetensors", "y": "a.safetensors", "z": "c.safetensors"})");
  ASSERT_EQ(open_outcome(&what), outcome::file) << what;
  try {
    (void)io::checkpoint::open(model_);
  } catch (const io::file_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    EXPECT_EQ(e.path(), model_ / "c.safetensors");
  }
  // A shard that is a folder.
  fs::create_directory(model_ / "c.safetensors");
  EXPECT_EQ(open_outcome(&what), outcome::file) << what;
  // A shard that is not a safetensors file: its own format error.
  write_text(model_ / "bad.safetensors", "not safetensors");
  write_index(R"({"x": "a.safetensors", "y": "a.safetensors", "z": "bad.safetensors"})");
  EXPECT_EQ(open_outcome(&what), outcome::format) << what;
  EXPECT_NE(what.find("bad.safetensors"), std::string::npos) << what;
  // A malformed index, with the path of the index in the message.
  write_text(model_ / std::string(io::index_file_name), R"({"weight_map": {"x": "../a.safetensors"}})");
  EXPECT_EQ(open_outcome(&what), outcome::path) << what;
  EXPECT_NE(what.find(std::string(io::index_file_name)), std::string::npos) << what;
  write_text(model_ / std::string(io::index_file_name), "[]");
  EXPECT_EQ(open_outcome(&what), outcome::index) << what;
  write_text(model_ / std::string(io::index_file_name), "");
  EXPECT_EQ(open_outcome(&what), outcome::index) << what;
  // An index that is a folder.
  fs::remove(model_ / std::string(io::index_file_name));
  fs::create_directory(model_ / std::string(io::index_file_name));
  EXPECT_EQ(open_outcome(&what), outcome::file) << what;
}

TEST_F(CheckpointOpen, AFolderWithoutAModel) {
  std::string what;
  EXPECT_EQ(open_outcome(&what), outcome::checkpoint) << what;
  EXPECT_NE(what.find("model.safetensors"), std::string::npos) << what;
  write_shard(model_ / "model-00001-of-00001.safetensors", {{"x", {1}}});  // shards but no index
  write_text(model_ / "config.json", "{}");
  EXPECT_EQ(open_outcome(&what), outcome::checkpoint) << what;
  // A path that does not exist at all: the file cannot be opened.
  EXPECT_EQ(outcome_of([&] { (void)io::checkpoint::open(dir_ / "absent"); }), outcome::file);
}

TEST_F(CheckpointOpen, OneFileFolderAndOneFile) {
  write_shard(model_ / "model.safetensors", {{"x", {1, 2}}, {"y", {3}}});
  {
    const auto c = io::checkpoint::open(model_);
    EXPECT_FALSE(c.sharded());
    EXPECT_FALSE(c.index().has_value());
    EXPECT_EQ(c.folder(), model_);
    EXPECT_EQ(c.shard_names(), std::vector<std::string>{"model.safetensors"});
    EXPECT_EQ(c.tensors().size(), 2u);
    EXPECT_EQ(c.total_size(), 3u);
    EXPECT_EQ(bytes_of(c.bytes(c.at("x"))), (std::vector<std::uint8_t>{1, 2}));
  }
  // Any .safetensors file, given by its path.
  write_shard(dir_ / "weights.safetensors", {{"w", {9, 9, 9}}});
  {
    const auto c = io::checkpoint::open(dir_ / "weights.safetensors");
    EXPECT_FALSE(c.sharded());
    EXPECT_EQ(c.folder(), dir_);
    EXPECT_EQ(c.shard_names(), std::vector<std::string>{"weights.safetensors"});
    EXPECT_EQ(bytes_of(c.bytes(c.at("w"))), (std::vector<std::uint8_t>{9, 9, 9}));
  }
  // A shard of a sharded folder, opened alone, is just a file.
  write_good_shards();
  EXPECT_EQ(io::checkpoint::open(model_ / "b.safetensors").tensors().size(), 1u);
}

TEST_F(CheckpointOpen, SymbolicLinksOutOfTheFolderAreRejected) {
  write_good_shards();
  write_shard(dir_ / "outside.safetensors", {{"z", {7, 8, 9}}});  // a valid shard, but outside
  fs::remove(model_ / "b.safetensors");
  std::string what;
  // Absolute target.
  fs::create_symlink(dir_ / "outside.safetensors", model_ / "b.safetensors");
  write_index(good_map);
  EXPECT_EQ(open_outcome(&what), outcome::path) << what;
  EXPECT_NE(what.find("b.safetensors"), std::string::npos) << what;
  // Relative target.
  fs::remove(model_ / "b.safetensors");
  fs::create_symlink("../outside.safetensors", model_ / "b.safetensors");
  EXPECT_EQ(open_outcome(&what), outcome::path) << what;
  // A link to a link inside the folder that leads out.
  fs::remove(model_ / "b.safetensors");
  fs::create_symlink("hop.safetensors", model_ / "b.safetensors");
  fs::create_symlink("../outside.safetensors", model_ / "hop.safetensors");
  EXPECT_EQ(open_outcome(&what), outcome::path) << what;
  // A link to the parent's copy of a sibling folder, e.g. "../model2/b.safetensors".
  fs::create_directories(dir_ / "model2");
  write_shard(dir_ / "model2" / "b.safetensors", {{"z", {7, 8, 9}}});
  fs::remove(model_ / "b.safetensors");
  fs::create_symlink("../model2/b.safetensors", model_ / "b.safetensors");
  EXPECT_EQ(open_outcome(&what), outcome::path) << what;
  // A link to the folder's own parent.
  fs::remove(model_ / "b.safetensors");
  fs::create_symlink("..", model_ / "b.safetensors");
  EXPECT_EQ(open_outcome(&what), outcome::path) << what;
}

TEST_F(CheckpointOpen, SymbolicLinksInsideTheFolderAreAccepted) {
  write_good_shards();
  fs::create_directories(model_ / "blobs");
  fs::rename(model_ / "b.safetensors", model_ / "blobs" / "0123abcd");
  write_index(good_map);
  std::string what;
  // Relative, into a subfolder (like a snapshot pointing at its blobs).
  fs::create_symlink("blobs/0123abcd", model_ / "b.safetensors");
  EXPECT_EQ(open_outcome(&what), outcome::ok) << what;
  // Absolute, inside.
  fs::remove(model_ / "b.safetensors");
  fs::create_symlink(model_ / "blobs" / "0123abcd", model_ / "b.safetensors");
  EXPECT_EQ(open_outcome(&what), outcome::ok) << what;
  // Out and back in again.
  fs::remove(model_ / "b.safetensors");
  fs::create_symlink("../model/blobs/0123abcd", model_ / "b.safetensors");
  EXPECT_EQ(open_outcome(&what), outcome::ok) << what;
  // A chain of links that stays inside.
  fs::remove(model_ / "b.safetensors");
  fs::create_symlink("hop", model_ / "b.safetensors");
  fs::create_symlink("blobs/0123abcd", model_ / "hop");
  EXPECT_EQ(open_outcome(&what), outcome::ok) << what;
  // The folder itself reached through a link: the shards are inside the folder it leads to.
  fs::create_directory_symlink("model", dir_ / "alias");
  const auto c = io::checkpoint::open(dir_ / "alias");
  EXPECT_EQ(bytes_of(c.bytes(c.at("z"))), (std::vector<std::uint8_t>{7, 8, 9}));
}

// A dangling link that leads out of the folder leads out of the folder all the same: path_error,
// and no open() of a path outside (which would open whatever appears there in the meantime).
TEST_F(CheckpointOpen, ADanglingLinkOutOfTheFolderIsAPathError) {
  write_good_shards();
  write_index(good_map);
  fs::remove(model_ / "b.safetensors");
  fs::create_symlink("../not-yet-there.safetensors", model_ / "b.safetensors");
  std::string what;
  EXPECT_EQ(open_outcome(&what), outcome::path) << what;
  fs::remove(model_ / "b.safetensors");
  fs::create_symlink("/nonexistent-quanto-dir/b.safetensors", model_ / "b.safetensors");
  EXPECT_EQ(open_outcome(&what), outcome::path) << what;
}

// The containment check happens before anything is opened: the link leads to a FIFO outside the
// folder, which would block an open() forever (no writer). A child process tries to open the
// checkpoint under an alarm; it must come back with path_error at once.
TEST_F(CheckpointOpen, AnEscapingShardIsRejectedBeforeAnyShardIsOpened) {
  write_good_shards();
  ASSERT_EQ(::mkfifo((dir_ / "outside.fifo").c_str(), 0600), 0) << std::strerror(errno);
  fs::remove(model_ / "b.safetensors");
  fs::create_symlink("../outside.fifo", model_ / "b.safetensors");
  // The escaping shard is listed last, after a good one.
  write_index(good_map);
  const auto run = [&]() -> int {
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::alarm(10);
      int code = 1;
      try {
        (void)io::checkpoint::open(model_);
        code = 3;
      } catch (const io::path_error&) {
        code = 0;
      } catch (...) {
        code = 2;
      }
      ::_exit(code);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) return 100 + WTERMSIG(status);  // SIGALRM: it blocked in open()
    return WEXITSTATUS(status);
  };
  EXPECT_EQ(run(), 0) << "100 + SIGALRM means open() blocked on the FIFO outside the folder";
  // Control: the same FIFO inside the folder is opened (and blocks) — the check above is what
  // kept the outside one from being opened.
  fs::remove(model_ / "b.safetensors");
  ASSERT_EQ(::mkfifo((model_ / "b.safetensors").c_str(), 0600), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    itimerval quarter{};
    quarter.it_value.tv_usec = 250'000;
    ::setitimer(ITIMER_REAL, &quarter, nullptr);
    try {
      (void)io::checkpoint::open(model_);
    } catch (...) {
    }
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) << "status " << status;
}

// ---- save_checkpoint ----------------------------------------------------------------------------

class CheckpointSave : public TempDir {
 protected:
  void SetUp() override {
    TempDir::SetUp();
    model_ = dir_ / "model";
  }
  /// Saves u8 tensors (their bytes from `ts`) with save_checkpoint.
  io::saved_checkpoint save(const named_bytes& ts, io::checkpoint_options options) {
    const auto tensors = as_tensors(ts);
    return io::save_checkpoint(model_, tensors, options, [&](const io::tensor_to_write& t, const auto& write) {
      write(t.data.data(), t.data.size());
    });
  }
  /// What is next to the model folder: only the folder itself (no staging folders left).
  std::vector<std::string> siblings() const { return listing(dir_); }
  fs::path model_;
};

named_bytes sized(const std::vector<std::pair<std::string, std::size_t>>& sizes, std::uint8_t salt = 0) {
  named_bytes out;
  for (const auto& [name, n] : sizes) {
    std::vector<std::uint8_t> b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 7 + name.size() + salt);
    out.emplace_back(name, std::move(b));
  }
  return out;
}

void expect_checkpoint_holds(const fs::path& folder, const named_bytes& ts) {
  const auto c = io::checkpoint::open(folder);
  EXPECT_EQ(c.tensors().size(), ts.size());
  for (const auto& [name, b] : ts) {
    const auto* e = c.find(name);
    ASSERT_NE(e, nullptr) << name;
    EXPECT_EQ(bytes_of(c.bytes(*e)), b) << name;
  }
}

// huggingface_hub 2.4's split_torch_state_dict_into_shards(max_shard_size=100) on uint8 tensors of
// these sizes gives these shards, and transformers 5.23 writes this index for them
// (total_parameters = num_parameters(), here one per byte).
TEST_F(CheckpointSave, ShardsAreCutAsTransformersCutsThem) {
  const auto ts =
      sized({{"a", 40}, {"b", 40}, {"big", 200}, {"c", 40}, {"d", 60}, {"e", 30}, {"f", 100}, {"g", 1}, {"h", 101}});
  const auto saved = save(ts, options(100, false));
  const std::vector<std::string> names = {"model-00001-of-00007.safetensors", "model-00002-of-00007.safetensors",
                                          "model-00003-of-00007.safetensors", "model-00004-of-00007.safetensors",
                                          "model-00005-of-00007.safetensors", "model-00006-of-00007.safetensors",
                                          "model-00007-of-00007.safetensors"};
  EXPECT_EQ(saved.shard_names, names);
  EXPECT_EQ(saved.total_size, 612u);
  auto files = names;
  files.emplace_back(io::index_file_name);
  std::sort(files.begin(), files.end());
  EXPECT_EQ(listing(model_), files);
  EXPECT_EQ(siblings(), std::vector<std::string>{"model"});
  EXPECT_EQ(slurp(model_ / std::string(io::index_file_name)),
            "{\n  \"metadata\": {\n    \"total_parameters\": 612,\n    \"total_size\": 612\n  },\n  \"weight_map\": {\n"
            "    \"a\": \"model-00002-of-00007.safetensors\",\n    \"b\": \"model-00002-of-00007.safetensors\",\n"
            "    \"big\": \"model-00001-of-00007.safetensors\",\n    \"c\": \"model-00003-of-00007.safetensors\",\n"
            "    \"d\": \"model-00003-of-00007.safetensors\",\n    \"e\": \"model-00004-of-00007.safetensors\",\n"
            "    \"f\": \"model-00005-of-00007.safetensors\",\n    \"g\": \"model-00007-of-00007.safetensors\",\n"
            "    \"h\": \"model-00006-of-00007.safetensors\"\n  }\n}\n");
  // Each shard holds its tensors and transformers' metadata.
  const std::map<std::string, std::vector<std::string>> members = {
      {names[0], {"big"}}, {names[1], {"a", "b"}}, {names[2], {"c", "d"}}, {names[3], {"e"}},
      {names[4], {"f"}},   {names[5], {"h"}},      {names[6], {"g"}}};
  for (const auto& [shard, expected] : members) {
    const auto f = io::safetensors_file::open(model_ / shard);
    std::vector<std::string> got;
    for (const auto& t : f.tensors()) got.push_back(t.name);
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, expected) << shard;
    EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}})) << shard;
  }
  expect_checkpoint_holds(model_, ts);
  const auto c = io::checkpoint::open(model_);
  EXPECT_TRUE(c.sharded());
  EXPECT_EQ(c.total_size(), 612u);
}

TEST_F(CheckpointSave, OneShardIsModelSafetensorsWithoutAnIndex) {
  const auto ts = sized({{"a", 50}, {"b", 50}});
  // The shard is exactly full: still one.
  auto saved = save(ts, options(100, false));
  EXPECT_EQ(saved.shard_names, std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(listing(model_), std::vector<std::string>{"model.safetensors"});
  expect_checkpoint_holds(model_, ts);
  EXPECT_FALSE(io::checkpoint::open(model_).sharded());
  // No limit.
  saved = save(ts, options(0, true));
  EXPECT_EQ(saved.shard_names, std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(listing(model_), std::vector<std::string>{"model.safetensors"});
  // One tensor larger than the limit.
  saved = save(sized({{"huge", 1000}}), options(10, true));
  EXPECT_EQ(saved.shard_names, std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(listing(model_), std::vector<std::string>{"model.safetensors"});
  // One byte over: two shards and an index.
  saved = save(sized({{"a", 50}, {"b", 51}}), options(100, true));
  EXPECT_EQ(saved.shard_names,
            (std::vector<std::string>{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"}));
  EXPECT_EQ(listing(model_),
            (std::vector<std::string>{"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                      "model.safetensors.index.json"}));
  EXPECT_EQ(siblings(), std::vector<std::string>{"model"});
}

TEST_F(CheckpointSave, TotalParametersCountsElements) {
  const std::vector<float> w(10, 1.0f);
  const std::vector<std::uint16_t> b(3, 0x3F80);
  const std::vector<io::tensor_to_write> ts = {{"w", dtype::f32, {2, 5}, std::as_bytes(std::span(w))},
                                               {"b", dtype::bf16, {3}, std::as_bytes(std::span(b))}};
  io::save_checkpoint(model_, ts, options(40, false),
                      [](const io::tensor_to_write& t, const auto& write) { write(t.data.data(), t.data.size()); });
  const auto index = io::parse_shard_index(slurp(model_ / std::string(io::index_file_name)));
  EXPECT_EQ(index.total_size, 46u);
  EXPECT_EQ(index.total_parameters, 13u);
  const auto c = io::checkpoint::open(model_);
  EXPECT_EQ(c.shards()[c.at("w").shard].read_as<float>("w", dtype::f32), w);
}

TEST_F(CheckpointSave, ExtraFilesAreWrittenAndChecked) {
  const auto ts = sized({{"a", 4}});
  const std::string config = "{\"model_type\": \"llama\"}\n";
  save(ts, options(0, false, {{"config.json", config}, {"quanto_qmap.json", "{}"}}));
  EXPECT_EQ(listing(model_), (std::vector<std::string>{"config.json", "model.safetensors", "quanto_qmap.json"}));
  EXPECT_EQ(slurp(model_ / "config.json"), config);
  // Bad names are refused before anything is written.
  fs::remove_all(model_);
  EXPECT_EQ(outcome_of([&] { save(ts, options(0, false, {{"../config.json", "{}"}})); }), outcome::path);
  EXPECT_EQ(outcome_of([&] { save(ts, options(0, false, {{"", "{}"}})); }), outcome::path);
  EXPECT_EQ(outcome_of([&] { save(ts, options(0, false, {{"a/b.json", "{}"}})); }), outcome::path);
  EXPECT_EQ(outcome_of([&] { save(ts, options(0, false, {{"model.safetensors", ""}})); }), outcome::value);
  EXPECT_EQ(outcome_of([&] { save(ts, options(0, false, {{"model.safetensors.index.json", "{}"}})); }), outcome::value);
  // So are bad tensors.
  EXPECT_EQ(outcome_of([&] { save(sized({{"a", 4}, {"a", 5}}), {}); }), outcome::duplicate);
  EXPECT_TRUE(listing(dir_).empty());
}

TEST_F(CheckpointSave, AnExistingFolderIsKeptUnlessOverwriteIsAsked) {
  const auto old_ts = sized({{"a", 60}, {"b", 60}, {"c", 60}});
  save(old_ts, options(100, false, {{"notes.txt", "old"}}));
  const auto before = tree(dir_);
  ASSERT_EQ(listing(model_).size(), 5u);  // 3 shards, the index, notes.txt

  const auto new_ts = sized({{"x", 10}}, 1);
  std::string what;
  ASSERT_EQ(outcome_of([&] { save(new_ts, {}); }, &what), outcome::file) << what;
  try {
    save(new_ts, {});
  } catch (const io::file_error& e) {
    EXPECT_EQ(e.code(), std::errc::file_exists);
  }
  EXPECT_EQ(tree(dir_), before);

  // A file in the way, with or without overwrite.
  write_text(dir_ / "file", "keep");
  const auto as_file = [&](bool overwrite) {
    const auto tensors = as_tensors(new_ts);
    io::save_checkpoint(dir_ / "file", tensors, options(0, overwrite),
                        [](const io::tensor_to_write& t, const auto& write) { write(t.data.data(), t.data.size()); });
  };
  EXPECT_EQ(outcome_of([&] { as_file(false); }), outcome::file);
  EXPECT_EQ(outcome_of([&] { as_file(true); }, &what), outcome::file) << what;
  EXPECT_EQ(slurp(dir_ / "file"), "keep");
  EXPECT_EQ(listing(dir_), (std::vector<std::string>{"file", "model"}));
  fs::remove(dir_ / "file");

  // overwrite: the whole folder is replaced (the old shards, index and notes are gone).
  save(new_ts, options(0, true));
  EXPECT_EQ(listing(model_), std::vector<std::string>{"model.safetensors"});
  expect_checkpoint_holds(model_, new_ts);
  EXPECT_EQ(siblings(), std::vector<std::string>{"model"});
  // And back to a sharded one.
  save(old_ts, options(100, true, {{"notes.txt", "old"}}));
  EXPECT_EQ(tree(dir_), before);
}

TEST_F(CheckpointSave, AFailedSaveLeavesTheOldFolderAndNoStagingFolder) {
  const auto old_ts = sized({{"a", 60}, {"b", 60}, {"c", 60}});
  save(old_ts, options(100, false));
  const auto before = tree(dir_);
  const auto new_ts = sized({{"a", 60}, {"b", 60}, {"c", 60}}, 9);
  const auto tensors = as_tensors(new_ts);
  // The producer throws in the second shard.
  struct producer_failed : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  const auto throwing = [&](const io::tensor_to_write& t, const auto& write) {
    if (t.name == "b") {
      write(t.data.data(), 10);
      throw producer_failed("no");
    }
    write(t.data.data(), t.data.size());
  };
  EXPECT_THROW(io::save_checkpoint(model_, tensors, options(100, true), throwing), producer_failed);
  EXPECT_EQ(tree(dir_), before);
  // A producer that writes too little.
  const auto short_write = [&](const io::tensor_to_write& t, const auto& write) {
    write(t.data.data(), t.data.size() - (t.name == "c" ? 1 : 0));
  };
  EXPECT_THROW(io::save_checkpoint(model_, tensors, options(100, true), short_write), io::size_error);
  EXPECT_EQ(tree(dir_), before);
  // Or too much.
  const auto long_write = [&](const io::tensor_to_write& t, const auto& write) {
    write(t.data.data(), t.data.size());
    if (t.name == "a") write(t.data.data(), 1);
  };
  EXPECT_THROW(io::save_checkpoint(model_, tensors, options(100, true), long_write), io::size_error);
  EXPECT_EQ(tree(dir_), before);
  // No old folder: nothing is created.
  const auto other = dir_ / "other";
  EXPECT_THROW(io::save_checkpoint(other, tensors, options(100, false), throwing), producer_failed);
  EXPECT_EQ(tree(dir_), before);
  // The save then works.
  io::save_checkpoint(model_, tensors, options(100, true),
                      [](const io::tensor_to_write& t, const auto& write) { write(t.data.data(), t.data.size()); });
  expect_checkpoint_holds(model_, new_ts);
  EXPECT_EQ(siblings(), std::vector<std::string>{"model"});
}

TEST_F(CheckpointSave, StaleStagingFoldersOfDeadProcessesAreRemoved) {
  // A pid that is surely dead: a child that has exited and been reaped.
  const pid_t dead = ::fork();
  if (dead == 0) ::_exit(0);
  ASSERT_GT(dead, 0);
  ASSERT_EQ(::waitpid(dead, nullptr, 0), dead);
  const std::string me = std::to_string(::getpid());
  const std::string gone = std::to_string(dead);
  const std::vector<std::string> stale = {".model.quanto-tmp-" + gone + "-0123456789abcdef",
                                          ".model.quanto-tmp-" + gone + "-fedcba9876543210-old",
                                          ".other.quanto-tmp-" + gone + "-0123456789abcdef"};  // any target's
  const std::vector<std::string> kept = {
      ".model.quanto-tmp-" + me + "-0123456789abcdef",  // alive: this process
      ".model.quanto-tmp-1-0123456789abcdef",           // alive: init
      ".model.quanto-tmp-abc-0123456789abcdef",         // not a pid
      ".model.quanto-tmp-" + gone,                      // not the pattern (no "-")
      ".model.quanto-tmp--5-0123456789abcdef",          // not a pid
      ".model.tmp-0123456789abcdef",                    // a file's temporary name, not a folder's
  };
  for (const auto& n : stale) {
    fs::create_directories(dir_ / n / "sub");
    write_text(dir_ / n / "model.safetensors", "partial");
  }
  for (const auto& n : kept) {
    fs::create_directories(dir_ / n);
    write_text(dir_ / n / "model.safetensors", "partial");
  }
  const auto ts = sized({{"a", 8}});
  save(ts, {});
  auto expected = kept;
  expected.emplace_back("model");
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(siblings(), expected);
  for (const auto& n : kept) EXPECT_EQ(slurp(dir_ / n / "model.safetensors"), "partial") << n;
  // Also when the save replaces an existing folder.
  for (const auto& n : stale) fs::create_directories(dir_ / n);
  save(ts, options(0, true));
  EXPECT_EQ(siblings(), expected);
  expect_checkpoint_holds(model_, ts);
}

TEST_F(CheckpointSave, AReaderOfTheOldFolderKeepsReadingTheOldBytes) {
  const auto old_ts = sized({{"a", 60}, {"b", 60}, {"c", 60}});
  save(old_ts, options(100, false));
  const auto old = io::checkpoint::open(model_);
  // Read -> modify -> save to the same folder, reading the old tensors while writing.
  const auto tensors = as_tensors(old_ts);
  io::save_checkpoint(model_, tensors, options(130, true), [&](const io::tensor_to_write& t, const auto& write) {
    std::vector<std::uint8_t> b = bytes_of(old.bytes(old.at(t.name)));
    for (auto& x : b) x = static_cast<std::uint8_t>(x ^ 0xFF);
    write(b.data(), b.size());
  });
  for (const auto& [name, b] : old_ts) EXPECT_EQ(bytes_of(old.bytes(old.at(name))), b) << name;
  named_bytes flipped = old_ts;
  for (auto& [name, b] : flipped)
    for (auto& x : b) x = static_cast<std::uint8_t>(x ^ 0xFF);
  expect_checkpoint_holds(model_, flipped);
  EXPECT_EQ(io::checkpoint::open(model_).shard_names().size(), 2u);
}

}  // namespace

namespace {
// Python's json module (what transformers reads the index with) rejects a byte-order mark;
// nlohmann would skip it, so the parser checks for it first.
TEST(ShardIndexParse, AByteOrderMarkIsRejected) {
  std::string what;
  EXPECT_EQ(parse_outcome("\xEF\xBB\xBF{\"weight_map\": {}}", &what), outcome::index) << what;
  EXPECT_NE(what.find("byte-order mark"), std::string::npos) << what;
}
}  // namespace
