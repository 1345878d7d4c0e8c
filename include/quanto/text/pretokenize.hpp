// quanto/text/pretokenize.hpp: the regexes byte-level BPE tokenizers split text with before BPE,
// matched by hand (no regex engine), with the semantics of Hugging Face `tokenizers`'
// Oniguruma: leftmost alternative first, greedy repeats that back off.
//
//   gpt2    the ByteLevel pre-tokenizer's own regex (GPT-2, RoBERTa, ...):
//             's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   llama3  the Split pre-tokenizer of Llama 3 (and, with \p{N} alone, Qwen2's `qwen2`):
//             (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//             ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// Every character is matched by one alternative of each, so the pieces cover the text: with the
// "Isolated" behaviour of the Split pre-tokenizer a piece is a match. The case-insensitive
// contractions of llama3 follow Oniguruma's case folding, in which U+017F LATIN SMALL LETTER LONG
// S is an 's' (checked against `tokenizers` by tests/data/text/make_tokenizer_fixtures.py).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/text/unicode.hpp"
#include "quanto/text/utf8.hpp"

QUANTO_BEGIN_NAMESPACE
namespace text {

/// Which of the known pre-tokenizer regexes splits the text.
enum class split_regex : std::uint8_t { gpt2, llama3, qwen2 };

/// The known regexes as tokenizer.json files write them, for recognising a Split pre-tokenizer.
inline constexpr std::string_view gpt2_pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view llama3_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
inline constexpr std::string_view qwen2_pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

namespace detail {

/// A text as code points with their classes and byte offsets (`offset[n]` is the text's size).
struct decoded_text {
  std::vector<std::uint32_t> cp;
  std::vector<char_class> cls;
  std::vector<std::size_t> offset;

  /// `s` must be valid UTF-8.
  void assign(std::string_view s) {
    cp.clear();
    cls.clear();
    offset.clear();
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    for (std::size_t i = 0; i < s.size();) {
      std::size_t len = 0;
      const std::uint32_t c = decode_utf8(p, i, len);
      cp.push_back(c);
      cls.push_back(class_of(c));
      offset.push_back(i);
      i += len;
    }
    offset.push_back(s.size());
  }
  [[nodiscard]] std::size_t size() const noexcept { return cp.size(); }
};

/// The end of the run of class `k` that starts at `i`.
inline std::size_t run_end(const decoded_text& t, std::size_t i, char_class k) noexcept {
  while (i < t.size() && t.cls[i] == k) ++i;
  return i;
}

inline bool is_crlf(std::uint32_t c) noexcept { return c == '\r' || c == '\n'; }

/// \s+(?!\S)|\s+ at `i` (a space): the run less its last character when a non-space follows and
/// the run has two or more.
inline std::size_t space_run(const decoded_text& t, std::size_t i) noexcept {
  const std::size_t e = run_end(t, i, char_class::space);
  return e == t.size() || e - i == 1 ? e : e - 1;
}

/// 's|'t|'re|'ve|'m|'ll|'d at `i`, case-sensitive or with Oniguruma's case folding: the match's
/// end, or 0.
inline std::size_t contraction(const decoded_text& t, std::size_t i, bool fold) noexcept {
  if (t.cp[i] != '\'' || i + 1 >= t.size()) return 0;
  const auto lower = [&](std::size_t k) -> std::uint32_t {
    const std::uint32_t c = t.cp[k];
    if (!fold) return c;
    if (c >= 'A' && c <= 'Z') return c + 32;
    return c == 0x17F ? 's' : c;  // LATIN SMALL LETTER LONG S folds to 's'
  };
  const std::uint32_t a = lower(i + 1);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
  if (i + 2 >= t.size()) return 0;
  const std::uint32_t b = lower(i + 2);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
  return 0;
}

/// The end of the gpt2 regex's match at `i`.
inline std::size_t gpt2_match(const decoded_text& t, std::size_t i) noexcept {
  if (const std::size_t e = contraction(t, i, false)) return e;
  const char_class c0 = t.cls[i];
  if (t.cp[i] == ' ' && i + 1 < t.size() && t.cls[i + 1] != char_class::space)
    return run_end(t, i + 1, t.cls[i + 1]);  // ' ?\p{L}+', ' ?\p{N}+' or ' ?[^\s\p{L}\p{N}]+'
  if (c0 != char_class::space) return run_end(t, i, c0);
  return space_run(t, i);
}

/// The end of the llama3 (qwen2: `max_digits` 1) regex's match at `i`.
inline std::size_t llama3_match(const decoded_text& t, std::size_t i, std::size_t max_digits) noexcept {
  if (const std::size_t e = contraction(t, i, true)) return e;
  const std::size_t n = t.size();
  const char_class c0 = t.cls[i];
  // [^\r\n\p{L}\p{N}]?\p{L}+
  if (c0 == char_class::letter) return run_end(t, i, char_class::letter);
  if (c0 != char_class::number && !is_crlf(t.cp[i]) && i + 1 < n && t.cls[i + 1] == char_class::letter)
    return run_end(t, i + 1, char_class::letter);
  // \p{N}{1,3}
  if (c0 == char_class::number) {
    std::size_t e = i;
    while (e < n && e - i < max_digits && t.cls[e] == char_class::number) ++e;
    return e;
  }
  //  ?[^\s\p{L}\p{N}]+[\r\n]*
  std::size_t s = i;
  if (t.cp[i] == ' ' && i + 1 < n && t.cls[i + 1] == char_class::other) s = i + 1;
  if (t.cls[s] == char_class::other) {
    std::size_t e = run_end(t, s, char_class::other);
    while (e < n && is_crlf(t.cp[e])) ++e;
    return e;
  }
  // \s*[\r\n]+ : up to the last CR or LF of the run of spaces
  const std::size_t e = run_end(t, i, char_class::space);
  for (std::size_t k = e; k > i; --k)
    if (is_crlf(t.cp[k - 1])) return k;
  return space_run(t, i);
}

}  // namespace detail

/// Splits `s` (valid UTF-8) into the matches of `regex`, calling `piece(std::string_view)` on each
/// in order. `scratch` holds the decoded text between calls.
template <class F>
void split_pieces(std::string_view s, split_regex regex, detail::decoded_text& scratch, F&& piece) {
  scratch.assign(s);
  const std::size_t n = scratch.size();
  for (std::size_t i = 0; i < n;) {
    const std::size_t e = regex == split_regex::gpt2     ? detail::gpt2_match(scratch, i)
                          : regex == split_regex::llama3 ? detail::llama3_match(scratch, i, 3)
                                                         : detail::llama3_match(scratch, i, 1);
    piece(s.substr(scratch.offset[i], scratch.offset[e] - scratch.offset[i]));
    i = e;
  }
}

}  // namespace text
QUANTO_END_NAMESPACE
