// Example 03: BERT's uncased word-piece tokenizer (what `BertTokenizer(do_lower_case=True)` and the
// fast tokenizer's BertNormalizer + BertPreTokenizer + WordPiece do), from the model's vocab.txt.
//
// Text is cleaned (NUL, U+FFFD and control characters dropped, whitespace made a space), CJK
// ideographs get spaces around them, everything is lower-cased and stripped of accents, split on
// whitespace and on punctuation (each punctuation character is a token), and each word is split
// greedily into the longest vocabulary pieces from its start ("##" marks a piece that continues a
// word); a word with no split, or longer than 100 characters, becomes [UNK].
//
// Unicode coverage, stated plainly: ASCII is exact. Lower-casing and accent stripping are exact for
// Latin-1 Supplement, Latin Extended-A, combining diacritics, and basic Greek and Cyrillic capitals;
// whitespace, control and punctuation classes cover Latin-1, General Punctuation, CJK symbols and
// fullwidth forms. Other scripts pass through unchanged (Python's full Unicode tables would be
// needed for them). `minilm --check` compares the ids with Hugging Face's on every sentence.
#pragma once

#include <quanto/text/utf8.hpp>

#include <cstdint>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace minilm {

/// One Unicode scalar value per element; each byte that does not start a well-formed sequence
/// decodes to U+FFFD (then dropped). The UTF-8 rules are the library's (quanto/text/utf8.hpp).
inline std::vector<char32_t> decode_utf8(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (std::size_t i = 0; i < s.size();) {
    std::size_t len = quanto::text::utf8_sequence_length(s, i);
    if (len == 0) {
      out.push_back(0xFFFD);
      ++i;
      continue;
    }
    out.push_back(quanto::text::decode_utf8(p, i, len));
    i += len;
  }
  return out;
}

using quanto::text::append_utf8;

namespace unicode {

/// Unicode category Zs, plus the ASCII whitespace BERT counts.
inline bool is_whitespace(char32_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

/// Categories C* (control, format, private use) that BERT's cleaning drops; tab/newline/CR are
/// whitespace instead.
inline bool is_control(char32_t c) {
  if (c == '\t' || c == '\n' || c == '\r') return false;
  return c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0xAD || (c >= 0x200B && c <= 0x200F) ||
         (c >= 0x202A && c <= 0x202E) || (c >= 0x2060 && c <= 0x2064) || c == 0xFEFF || (c >= 0xE000 && c <= 0xF8FF);
}

/// ASCII non-alphanumeric printable characters (BERT counts them all, `$` and `^` included) and
/// the punctuation (category P*) of Latin-1, General Punctuation, CJK symbols and fullwidth forms.
inline bool is_punctuation(char32_t c) {
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  switch (c) {
    case 0xA1:
    case 0xA7:
    case 0xAB:
    case 0xB6:
    case 0xB7:
    case 0xBB:
    case 0xBF:
      return true;
    default:
      break;
  }
  if (c >= 0x2010 && c <= 0x2027) return true;
  if (c >= 0x2030 && c <= 0x205E) return c != 0x2044 && c != 0x2052;  // fraction slash, minus: Sm
  if ((c >= 0x3001 && c <= 0x3003) || (c >= 0x3008 && c <= 0x3011) || (c >= 0x3014 && c <= 0x301F)) return true;
  if (c >= 0xFF01 && c <= 0xFF0F) return c != 0xFF04 && c != 0xFF0B;  // fullwidth $ and + are S*
  return false;
}

/// The CJK ideograph blocks BERT puts spaces around.
inline bool is_cjk(char32_t c) {
  return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
         (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
         (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/// Combining diacritical marks (category Mn), which accent stripping removes after NFD.
inline bool is_combining_mark(char32_t c) {
  return (c >= 0x0300 && c <= 0x036F) || (c >= 0x1AB0 && c <= 0x1AFF) || (c >= 0x1DC0 && c <= 0x1DFF) ||
         (c >= 0x20D0 && c <= 0x20FF) || (c >= 0xFE20 && c <= 0xFE2F);
}

/// Python's `str.lower()` for the covered blocks (the others are returned unchanged).
inline char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if ((c >= 0xC0 && c <= 0xDE) && c != 0xD7) return c + 32;
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x130) return 'i';  // İ lowers to "i̇", whose dot accent stripping removes anyway
    if (c == 0x178) return 0xFF;
    if (c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
    const bool odd_pairs = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (odd_pairs) return (c % 2 == 1) ? c + 1 : c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2) return c + 32;  // Greek capitals
  if (c >= 0x410 && c <= 0x42F) return c + 32;                // Cyrillic А..Я
  if (c >= 0x400 && c <= 0x40F) return c + 80;                // Cyrillic Ѐ..Џ
  return c;
}

/// The base letter NFD leaves once the combining mark is dropped, for lower-case letters of
/// Latin-1 Supplement and Latin Extended-A; the letter itself when it has no canonical
/// decomposition (æ, ð, ø, þ, ß, đ, ħ, ł, ŋ, œ, ŧ, ...).
inline char32_t strip_accent(char32_t c) {
  if (c >= 0xE0 && c <= 0xFF) {
    // à..ÿ: one entry per code point, '.' where the letter stands as it is
    static constexpr std::string_view base = "aaaaaa.ceeeeiiii.nooooo..uuuuy.y";
    const char b = base[c - 0xE0];
    return b == '.' ? c : static_cast<char32_t>(b);
  }
  if (c >= 0x100 && c <= 0x17F) {
    // Latin Extended-A, capitals and small letters alike; '.' = no decomposition
    static constexpr std::string_view base =
        "aaaaaaccccccccdd..eeeeeeeeeegggggggghh..iiiiiiiii...jjkk.llllll....nnnnnn...oooooo..rrrrrrsssssssstttt.."
        "uuuuuuuuuuuuwwyyyzzzzzz.";
    const char b = base[c - 0x100];
    return b == '.' ? c : static_cast<char32_t>(b);
  }
  return c;
}

}  // namespace unicode

/// BERT's uncased word-piece tokenizer over a vocabulary (one token per line, id = line number).
class wordpiece_tokenizer {
 public:
  static wordpiece_tokenizer from_file(const std::string& vocab_path) {
    std::ifstream in(vocab_path, std::ios::binary);
    if (!in) throw std::runtime_error("cannot open the vocabulary " + vocab_path);
    std::vector<std::string> tokens;
    std::string line;
    while (std::getline(in, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      tokens.push_back(line);
    }
    return wordpiece_tokenizer(std::move(tokens));
  }

  explicit wordpiece_tokenizer(std::vector<std::string> tokens) : tokens_(std::move(tokens)) {
    for (std::size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], static_cast<std::int64_t>(i));
    cls_ = special("[CLS]");
    sep_ = special("[SEP]");
    unk_ = special("[UNK]");
    pad_ = special("[PAD]");
  }

  std::size_t size() const noexcept { return tokens_.size(); }
  std::int64_t pad_id() const noexcept { return pad_; }
  const std::string& token(std::int64_t id) const { return tokens_.at(static_cast<std::size_t>(id)); }

  /// The ids of `text` as the model sees them: [CLS] pieces… [SEP], at most `max_length` in all.
  std::vector<std::int64_t> encode(std::string_view text, std::size_t max_length = 256) const {
    std::vector<std::int64_t> ids{cls_};
    for (const std::u32string& word : basic_tokenize(text)) {
      word_pieces(word, ids);
      if (ids.size() >= max_length - 1) break;
    }
    if (ids.size() > max_length - 1) ids.resize(max_length - 1);
    ids.push_back(sep_);
    return ids;
  }

  /// Cleaning, CJK spacing, lower-casing, accent stripping, whitespace and punctuation splitting.
  std::vector<std::u32string> basic_tokenize(std::string_view text) const {
    std::vector<std::u32string> words;
    std::u32string cur;
    const auto flush = [&] {
      if (!cur.empty()) words.push_back(std::move(cur));
      cur.clear();
    };
    for (char32_t c : decode_utf8(text)) {
      if (c == 0 || c == 0xFFFD || unicode::is_control(c)) continue;
      if (unicode::is_whitespace(c)) {
        flush();
        continue;
      }
      c = unicode::to_lower(c);
      if (unicode::is_combining_mark(c)) continue;
      c = unicode::strip_accent(c);
      if (unicode::is_punctuation(c) || unicode::is_cjk(c)) {
        flush();
        words.push_back(std::u32string(1, c));
        continue;
      }
      cur += c;
    }
    flush();
    return words;
  }

 private:
  std::int64_t special(const char* name) const {
    const auto it = ids_.find(name);
    if (it == ids_.end()) throw std::runtime_error(std::string("the vocabulary has no ") + name + " token");
    return it->second;
  }

  /// Greedy longest-match-first pieces of one word, appended to `ids`; [UNK] when it cannot split.
  void word_pieces(const std::u32string& word, std::vector<std::int64_t>& ids) const {
    constexpr std::size_t max_chars = 100;
    if (word.size() > max_chars) {
      ids.push_back(unk_);
      return;
    }
    const std::size_t first = ids.size();
    std::size_t start = 0;
    std::string piece;
    while (start < word.size()) {
      std::size_t end = word.size();
      std::int64_t found = -1;
      for (; end > start; --end) {
        piece.assign(start > 0 ? "##" : "");
        for (std::size_t k = start; k < end; ++k) append_utf8(piece, word[k]);
        if (const auto it = ids_.find(piece); it != ids_.end()) {
          found = it->second;
          break;
        }
      }
      if (found < 0) {
        ids.resize(first);
        ids.push_back(unk_);
        return;
      }
      ids.push_back(found);
      start = end;
    }
  }

  std::vector<std::string> tokens_;
  std::unordered_map<std::string, std::int64_t> ids_;
  std::int64_t cls_ = 0, sep_ = 0, unk_ = 0, pad_ = 0;
};

}  // namespace minilm
