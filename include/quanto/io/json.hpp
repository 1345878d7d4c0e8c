// quanto/io/json.hpp: the one strict JSON reader under every JSON format quanto::io reads from an
// untrusted file: safetensors headers (io/safetensors_header.hpp), shard indexes
// (io/shard_index.hpp), quantization maps (io/qmap.hpp) and tokenizer.json (io/tokenizer.hpp, on
// `json_tree_schema`). Each format is a thin schema on it: a
// handler of the events below that checks its structure and builds its result; what they all need
// is enforced here, once, for all of them:
//   * the text: at most `max_bytes`; UTF-8 (Unicode table 3-7: no overlongs, no surrogates,
//     nothing above U+10FFFF); no NUL byte (a parser would take it for the end of the text); no
//     byte-order mark (Python's json module, which writes and reads these files, rejects it);
//     with `object_only`, an object as the first non-whitespace byte;
//   * the grammar: RFC 8259, one value with only whitespace around it: no comments, no trailing
//     commas, no NaN, no lone surrogate escapes, no number outside the double range (nlohmann's
//     lexer and parser, fed one byte at a time);
//   * nesting: at most `max_depth` levels, the top value being level 1;
//   * keys: no key twice in one object, at any depth (io/key_set.hpp: compact, and not slowed down
//     by crafted keys);
//   * values the schema skips are read under the same rules, but not handed to it.
// A fault found here is a `json_error`: what it is (`json_fault`), the byte offset where it was
// found, and the depth. Each format catches it and says it in its own words and its own error
// type (`header_error`, `index_error`, `qmap_error`, `duplicate_error`), which are what its users
// see; `json_error::description` is the wording the index and the qmap share.
//
// The JSON strings the formats write are here too: `append_json_string` escapes as serde_json
// (the safetensors writer), `append_python_json_string` as Python's json.dumps (the index and the
// qmap).
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/io/key_set.hpp"
#include "quanto/io/text.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// What broke the rules of the strict reader.
enum class json_fault : std::uint8_t {
  too_large,        ///< more than `max_bytes` (offset: `max_bytes`)
  not_utf8,         ///< offset: the first byte that does not start a well-formed sequence
  nul_byte,         ///< offset: the NUL
  byte_order_mark,  ///< offset: 0
  empty,            ///< `object_only`: nothing but whitespace (offset: the text's size)
  not_an_object,    ///< `object_only`: offset: the first byte that is not whitespace
  syntax,           ///< not JSON: offset: the byte where the parser stopped (the size at an unexpected end)
  too_deep,         ///< offset: the `{` or `[` that opens level `max_depth` + 1
  duplicate_key,    ///< offset: the closing quote of the second occurrence
};

/// A JSON text that breaks the reader's rules. `offset` is a byte offset into the text; `depth`
/// the nesting level where the fault is (0 outside any value, 1 in the top value); `detail` the
/// key for `duplicate_key`, the parser's message for `syntax`, empty otherwise.
class json_error : public format_error {
 public:
  json_error(json_fault fault, std::size_t offset, std::size_t depth, bool in_skipped, std::string detail,
             std::string description)
      : format_error("JSON: " + description + " (byte " + std::to_string(offset) + ")"),
        fault_(fault),
        offset_(offset),
        depth_(depth),
        in_skipped_(in_skipped),
        detail_(std::move(detail)),
        description_(std::move(description)) {}

  [[nodiscard]] json_fault fault() const noexcept { return fault_; }
  [[nodiscard]] std::size_t offset() const noexcept { return offset_; }
  [[nodiscard]] std::size_t depth() const noexcept { return depth_; }
  /// True when the fault is inside a value the schema skipped.
  [[nodiscard]] bool in_skipped() const noexcept { return in_skipped_; }
  [[nodiscard]] const std::string& detail() const noexcept { return detail_; }
  /// The fault in a few words, without "quanto: " and without the offset for most faults (the
  /// wording the shard index and the quantization map give after their prefix).
  [[nodiscard]] const std::string& description() const noexcept { return description_; }

 private:
  json_fault fault_;
  std::size_t offset_, depth_;
  bool in_skipped_;
  std::string detail_, description_;
};

/// What the reader enforces besides the grammar.
struct json_limits {
  std::uint64_t max_bytes = 100'000'000;
  std::size_t max_depth = 64;
  /// The first non-whitespace byte must open an object (before anything is parsed).
  bool object_only = false;
};

/// A number as the text wrote it.
struct json_number {
  enum class kind : std::uint8_t {
    unsigned_integer,  ///< 0 ... 2^64 - 1, in `u`
    negative_integer,  ///< -2^63 ... -1, and -0, in `i` (-0 is 0 here)
    big_integer,       ///< an integer outside both ranges (`text`)
    real,              ///< a fraction or an exponent (`text`; `real` its value)
  };
  kind type = kind::unsigned_integer;
  std::uint64_t u = 0;
  std::int64_t i = 0;
  double real_value = 0;
  std::string_view text;  ///< big_integer and real: the token
};

/// A schema's answer when an object or an array begins: hand me its contents, or skip it whole.
enum class json_action : bool { enter, skip };

/// What a format gives the reader. Each callback throws the format's error to reject what it sees.
/// Keys arrive checked for duplicates; every callback of a skipped value is left out (its `end_*`
/// too).
template <class S>
concept json_schema = requires(S& s, std::string& str, const json_number& n, bool b) {
  { s.begin_object() } -> std::same_as<json_action>;
  { s.begin_array() } -> std::same_as<json_action>;
  s.key(str);
  s.end_object();
  s.end_array();
  s.string(str);
  s.number(n);
  s.boolean(b);
  s.null();
};

namespace detail {

[[noreturn]] inline void text_fault(json_fault f, std::size_t at, std::string description) {
  throw json_error(f, at, 0, false, {}, std::move(description));
}

/// The text checks of `read_json`, before the parser sees the text.
inline void check_json_text(std::string_view text, const json_limits& limits) {
  if (text.size() > limits.max_bytes)
    text_fault(json_fault::too_large, static_cast<std::size_t>(limits.max_bytes),
               "the text has " + std::to_string(text.size()) + " bytes, over the limit of " +
                   std::to_string(limits.max_bytes));
  if (const auto bad = utf8_error_offset(text); bad != npos)
    text_fault(json_fault::not_utf8, bad, "not valid UTF-8 (byte " + std::to_string(bad) + ")");
  if (const auto nul = text.find('\0'); nul != std::string_view::npos)
    text_fault(json_fault::nul_byte, nul, "holds a NUL byte (byte " + std::to_string(nul) + ")");
  if (text.starts_with("\xEF\xBB\xBF"))
    text_fault(json_fault::byte_order_mark, 0, "starts with a UTF-8 byte-order mark, which JSON does not allow");
  if (!limits.object_only) return;
  const auto first = text.find_first_not_of(" \t\n\r");
  if (first == std::string_view::npos) text_fault(json_fault::empty, text.size(), "the text is empty");
  if (text[first] != '{') {
    std::string got = "byte 0x";
    append_hex_byte(got, static_cast<unsigned char>(text[first]));
    text_fault(json_fault::not_an_object, first,
               "must be a JSON object, but it starts with " + got + " at byte " + std::to_string(first));
  }
}

/// The text as nlohmann's input, one byte at a time, recording the last byte it handed out (for
/// the offsets of the faults found between tokens).
class tracking_iterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  tracking_iterator() = default;
  tracking_iterator(const char* p, const char** last) noexcept : p_(p), last_(last) {}
  reference operator*() const noexcept {
    *last_ = p_;
    return *p_;
  }
  tracking_iterator& operator++() noexcept {
    ++p_;
    return *this;
  }
  tracking_iterator operator++(int) noexcept {
    tracking_iterator old = *this;
    ++p_;
    return old;
  }
  friend bool operator==(const tracking_iterator& a, const tracking_iterator& b) noexcept { return a.p_ == b.p_; }

 private:
  const char* p_ = nullptr;
  const char** last_ = nullptr;
};

/// nlohmann's SAX events, checked (depth, duplicate keys) and passed on to the schema. With
/// `Track`, the input is a `tracking_iterator` range and the faults found here carry their offset;
/// without it (the first pass: plain pointers, which the lexer reads fastest) they carry `npos`.
template <class Schema, bool Track>
class json_reader {
 public:
  using json = nlohmann::json;

  json_reader(Schema& schema, std::string_view text, const json_limits& limits) noexcept
      : schema_(schema), text_(text), limits_(limits), last_(text.data()) {}

  const char** last_read() noexcept { return &last_; }

  bool null() {
    if (!skipping()) schema_.null();
    return true;
  }
  bool boolean(bool b) {
    if (!skipping()) schema_.boolean(b);
    return true;
  }
  bool number_unsigned(json::number_unsigned_t v) {
    if (!skipping()) schema_.number(json_number{json_number::kind::unsigned_integer, v, 0, 0, {}});
    return true;
  }
  bool number_integer(json::number_integer_t v) {  // nlohmann: negative numbers and "-0" only
    if (!skipping()) schema_.number(json_number{json_number::kind::negative_integer, 0, v, 0, {}});
    return true;
  }
  bool number_float(json::number_float_t v, const json::string_t& token) {
    if (skipping()) return true;
    const bool integer = token.find_first_of(".eE") == std::string::npos;  // too large for 64 bits
    schema_.number(json_number{integer ? json_number::kind::big_integer : json_number::kind::real, 0, 0, v, token});
    return true;
  }
  bool string(json::string_t& s) {
    if (!skipping()) schema_.string(s);
    return true;
  }
  bool binary(json::binary_t&) {  // not produced by the JSON parser
    throw fault(json_fault::syntax, offset(), "binary", "not valid JSON (binary data)");
  }

  bool start_object(std::size_t) { return open(true); }
  bool start_array(std::size_t) { return open(false); }
  bool end_object() { return close(true); }
  bool end_array() { return close(false); }

  bool key(json::string_t& k) {
    if (!levels_[depth_ - 1].keys.insert(k))
      throw fault(json_fault::duplicate_key, offset(), k, "the key " + quote(k) + " appears twice in one object");
    if (!skipping()) schema_.key(k);
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const json::exception& ex) {
    // `position` counts the bytes the lexer read, the one it stopped at included (or the end).
    const std::size_t at = position == 0 ? 0 : position - 1;
    throw fault(json_fault::syntax, at, ex.what(),
                "not valid JSON (near byte " + std::to_string(position) + "): " + quote(ex.what(), 240));
  }

 private:
  struct level {
    json_key_set keys;  // objects only; kept from one use to the next, with its buffer
  };

  bool skipping() const noexcept { return skip_from_ != 0; }
  std::size_t offset() const noexcept {
    if constexpr (Track) {
      return static_cast<std::size_t>(last_ - text_.data());
    } else {
      return npos;
    }
  }

  json_error fault(json_fault f, std::size_t at, std::string detail, std::string description) const {
    return {f, at, depth_, skipping(), std::move(detail), std::move(description)};
  }

  bool open(bool object) {
    if (depth_ >= limits_.max_depth)
      throw fault(json_fault::too_deep, offset(), {},
                  "JSON nested deeper than " + std::to_string(limits_.max_depth) + " levels");
    if (!skipping()) {
      const json_action a = object ? schema_.begin_object() : schema_.begin_array();
      if (a == json_action::skip) skip_from_ = depth_ + 1;
    }
    if (depth_ == levels_.size()) levels_.emplace_back();
    levels_[depth_++].keys.clear();
    return true;
  }

  bool close(bool object) {
    const bool told = !skipping();
    if (skip_from_ == depth_) skip_from_ = 0;  // the end of the skipped value itself
    --depth_;
    if (told) {
      if (object)
        schema_.end_object();
      else
        schema_.end_array();
    }
    return true;
  }

  Schema& schema_;
  std::string_view text_;
  json_limits limits_;
  const char* last_;
  std::vector<level> levels_;
  std::size_t depth_ = 0;
  std::size_t skip_from_ = 0;  // the level of the value being skipped; 0: none
};

}  // namespace detail

namespace detail {

/// Enters every value and keeps nothing: the second pass of `read_json`.
struct json_null_schema {
  json_action begin_object() noexcept { return json_action::enter; }
  json_action begin_array() noexcept { return json_action::enter; }
  void key(std::string&) noexcept {}
  void end_object() noexcept {}
  void end_array() noexcept {}
  void string(std::string&) noexcept {}
  void number(const json_number&) noexcept {}
  void boolean(bool) noexcept {}
  void null() noexcept {}
};

/// Builds a nlohmann tree from the strict reader's events, for a format whose schema is easier
/// to check on a tree than on events (io/tokenizer.hpp); the reader has already rejected
/// duplicate keys, bad UTF-8 and too deep nesting.
class json_tree_schema {
 public:
  nlohmann::json root;

  json_action begin_object() {
    nlohmann::json* p = place();
    *p = nlohmann::json::object();
    open_.push_back(p);
    return json_action::enter;
  }
  json_action begin_array() {
    nlohmann::json* p = place();
    *p = nlohmann::json::array();
    open_.push_back(p);
    return json_action::enter;
  }
  void key(std::string& k) { key_ = std::move(k); }
  void end_object() { open_.pop_back(); }
  void end_array() { open_.pop_back(); }
  void string(std::string& s) { *place() = std::move(s); }
  void number(const json_number& n) {
    switch (n.type) {
      case json_number::kind::unsigned_integer:
        *place() = n.u;
        break;
      case json_number::kind::negative_integer:
        *place() = n.i;
        break;
      default:
        *place() = n.real_value;
    }
  }
  void boolean(bool b) { *place() = b; }
  void null() { *place() = nullptr; }

 private:
  // The slot of the next value: the root, the pending key of the open object, or a new element of
  // the open array (pointers into an array stay valid: only its last element is ever open).
  nlohmann::json* place() {
    if (open_.empty()) return &root;
    nlohmann::json& top = *open_.back();
    if (top.is_object()) return &top[key_];
    top.push_back(nullptr);
    return &top.back();
  }
  std::vector<nlohmann::json*> open_;
  std::string key_;
};

template <class Schema, class Iterator>
void sax_parse(Iterator first, Iterator last, json_reader<Schema, !std::is_pointer_v<Iterator>>& reader,
               std::size_t size) {
  if (!nlohmann::json::sax_parse(first, last, &reader, nlohmann::json::input_format_t::json, /*strict=*/true,
                                 /*ignore_comments=*/false))
    throw json_error(json_fault::syntax, size, 0, false, {}, "not valid JSON");  // not reached: the reader throws
}

}  // namespace detail

/// Reads `text` into `schema` under `limits` (see the top of this file). Throws `json_error` for a
/// fault of the reader's rules, and whatever the schema throws.
///
/// The text is parsed once, from plain pointers. A too deep nesting or a duplicate key found there
/// has no offset yet: the text is then parsed again up to that fault with a null schema (depth and
/// duplicate keys do not depend on what the schema skips) through an iterator that records each
/// byte it hands out, which gives the offset. Only a rejected text pays for the second pass.
template <json_schema Schema>
void read_json(std::string_view text, Schema& schema, const json_limits& limits = {}) {
  detail::check_json_text(text, limits);
  try {
    detail::json_reader<Schema, false> reader(schema, text, limits);
    detail::sax_parse(text.data(), text.data() + text.size(), reader, text.size());
  } catch (const json_error& first) {
    if (first.offset() != detail::npos) throw;
    detail::json_null_schema null;
    detail::json_reader<detail::json_null_schema, true> tracked(null, text, limits);
    try {
      detail::sax_parse(detail::tracking_iterator(text.data(), tracked.last_read()),
                        detail::tracking_iterator(text.data() + text.size(), tracked.last_read()), tracked,
                        text.size());
    } catch (const json_error& again) {
      throw json_error(first.fault(), again.offset(), first.depth(), first.in_skipped(), first.detail(),
                       first.description());
    }
    throw;  // not reached: the same text breaks the same rule again
  }
}

namespace detail {

/// The two-character escape JSON has for `c` (", \, \b, \f, \n, \r, \t), or nullptr: serde_json and
/// Python's json.dumps both use these, and write other characters they escape as \u codes.
inline const char* json_short_escape(unsigned char c) noexcept {
  switch (c) {
    case '"':
      return "\\\"";
    case '\\':
      return "\\\\";
    case '\b':
      return "\\b";
    case '\f':
      return "\\f";
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    default:
      return nullptr;
  }
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes (", \, \b \f \n \r \t,
/// other control characters as \u00xx; nothing else).
inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
    if (const char* e = json_short_escape(c)) {
      out += e;
    } else {
      out += "\\u00";
      append_hex_byte(out, c);
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

/// Appends `s` as Python's `json.dumps(s)` (ensure_ascii=True) writes it. `s` must be UTF-8
/// (a Python str always is); value_error otherwise.
inline void append_python_json_string(std::string& out, std::string_view s) {
  if (const std::size_t bad = utf8_error_offset(s); bad != npos)
    throw value_error("quantization map: the name " + quote(s) + " is not UTF-8 (invalid byte at offset " +
                      std::to_string(bad) + ")");
  const auto u4 = [&out](std::uint32_t v) {
    static constexpr char hex[] = "0123456789abcdef";
    out += "\\u";
    for (int shift = 12; shift >= 0; shift -= 4) out += hex[(v >> shift) & 0xFu];
  };
  out += '"';
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      if (const char* e = json_short_escape(c))
        out += e;
      else if (c < 0x20 || c == 0x7F)
        u4(c);  // Python escapes everything outside ' '..'~'
      else
        out += static_cast<char>(c);
      continue;
    }
    std::size_t len = 0;  // a valid multi-byte sequence (checked above)
    const std::uint32_t cp = text::decode_utf8(reinterpret_cast<const unsigned char*>(s.data()), i, len);
    i += len;
    if (cp < 0x10000) {
      u4(cp);
    } else {
      const std::uint32_t v = cp - 0x10000;
      u4(0xD800 + (v >> 10));
      u4(0xDC00 + (v & 0x3FF));
    }
  }
  out += '"';
}

}  // namespace detail
}  // namespace io
QUANTO_END_NAMESPACE
