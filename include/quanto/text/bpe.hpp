// quanto/text/bpe.hpp: a byte-level BPE tokenizer that gives the ids Hugging Face `tokenizers`
// gives for GPT-2 and Llama-3 style tokenizer.json files (io/tokenizer.hpp reads those into a
// `bpe_spec`). encode(text):
//   1. the text must be UTF-8 (`text_error` with the offset of the first bad byte otherwise);
//   2. added tokens are matched first, leftmost-longest, those with `normalized` false over the
//      whole text, then those with `normalized` true in what is left between (there is no
//      normalizer, so the two passes see the same text); `lstrip` / `rstrip` take the spaces next
//      to a match with it, `single_word` keeps only matches with no letter, digit or '_' on
//      either side. A match is its token's id;
//   3. the pre-tokenizer splits each stretch between added tokens: the optional Split regex
//      (`split`, text/pretokenize.hpp), then on each piece ByteLevel: a space before it
//      (`add_prefix_space`, if it does not start with one) and its own GPT-2 regex
//      (`byte_level_regex`);
//   4. each resulting word, as bytes, goes through BPE: with `ignore_merges` a word that is a
//      token is that token; otherwise each byte is the token of its byte-level character (a byte
//      without one: the unknown token, consecutive ones fused with `fuse_unk`, or dropped
//      without an unknown token, as `tokenizers` does), and merges apply lowest rank first, the
//      leftmost of equal ranks first, from a priority queue over a linked list of symbols
//      (O(n log n) in the word's length). The ids of a word are cached for the rest of the call;
//   5. with `add_special_tokens`, the template's ids go before and after (TemplateProcessing's
//      single template).
// decode(ids) maps each token back to bytes as the ByteLevel decoder does (a token whose
// characters are all byte-level characters is those bytes, any other is its own UTF-8) and
// returns them with each ill-formed part replaced by U+FFFD. decode(encode(s, false)) == s for
// every UTF-8 `s`.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/text/pretokenize.hpp"
#include "quanto/text/unicode.hpp"
#include "quanto/text/utf8.hpp"

QUANTO_BEGIN_NAMESPACE
namespace text {

/// A tokenizer whose parts do not fit together: a merge of tokens that are not in the vocabulary
/// (or whose concatenation is not), two tokens with one id, an added token whose id is not the
/// one `tokenizers` gives it, an empty token.
class tokenizer_error : public format_error {
 public:
  using format_error::format_error;
};

/// Text that cannot be encoded: not UTF-8. `offset` is the first byte that does not start a
/// well-formed sequence.
class text_error : public value_error {
 public:
  text_error(const std::string& what, std::size_t offset) : value_error(what), offset_(offset) {}
  [[nodiscard]] std::size_t offset() const noexcept { return offset_; }

 private:
  std::size_t offset_;
};

/// A token matched in the text before pre-tokenization (tokenizer.json's "added_tokens").
struct added_token {
  std::uint32_t id = 0;
  std::string content;
  bool single_word = false, lstrip = false, rstrip = false, normalized = false, special = false;
};

/// What a byte-level BPE tokenizer is made of; the tokens of `vocab` and `merges` are written in
/// byte-level characters, as tokenizer.json has them.
struct bpe_spec {
  std::vector<std::pair<std::string, std::uint32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;  ///< in rank order
  std::vector<added_token> added_tokens;                    ///< in the file's order
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool ignore_merges = false;
  // the pre-tokenizer: [Split(split, Isolated)], then ByteLevel(add_prefix_space, byte_level_regex)
  std::optional<split_regex> split;
  bool add_prefix_space = false;
  bool byte_level_regex = true;
  /// The decoder is ByteLevel (false: none, and `decode` throws unsupported_error).
  bool byte_level_decoder = true;
  /// TemplateProcessing's single template: the special tokens' ids before and after the text.
  std::vector<std::uint32_t> template_prefix, template_suffix;
};

namespace detail {

/// GPT-2's bytes_to_unicode: the printable bytes ('!'..'~', U+00A1..U+00AC, U+00AE..U+00FF) are
/// their own code point, the other 68 take U+0100 onwards in byte order.
inline constexpr auto byte_to_char = [] {
  std::array<std::uint32_t, 256> t{};
  std::uint32_t next = 256;
  for (std::uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    t[b] = printable ? b : next++;
  }
  return t;
}();

/// The byte of byte-level character `cp`, or -1.
constexpr int char_to_byte(std::uint32_t cp) noexcept {
  if (cp < 256) return byte_to_char[cp] == cp ? static_cast<int>(cp) : -1;
  if (cp >= 256 + 68) return -1;
  for (std::uint32_t b = 0; b < 256; ++b)
    if (byte_to_char[b] == cp) return static_cast<int>(b);
  return -1;
}

inline constexpr auto char_to_byte_table = [] {
  std::array<std::int16_t, 256 + 68> t{};
  for (std::uint32_t c = 0; c < t.size(); ++c) t[c] = static_cast<std::int16_t>(char_to_byte(c));
  return t;
}();

/// The bytes a token's byte-level characters stand for, or nullopt when one of them is not a
/// byte-level character. `token` must be UTF-8.
inline std::optional<std::string> byte_level_bytes(std::string_view token) {
  std::string out;
  out.reserve(token.size());
  const auto* p = reinterpret_cast<const unsigned char*>(token.data());
  for (std::size_t i = 0; i < token.size();) {
    std::size_t len = 0;
    const std::uint32_t c = decode_utf8(p, i, len);
    i += len;
    const int b = c < char_to_byte_table.size() ? char_to_byte_table[c] : -1;
    if (b < 0) return std::nullopt;
    out += static_cast<char>(b);
  }
  return out;
}

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

template <class V>
using string_map = std::unordered_map<std::string, V, string_hash, std::equal_to<>>;

inline bool is_word_char(std::uint32_t cp) noexcept {
  const char_class c = class_of(cp);
  return c == char_class::letter || c == char_class::number || cp == '_';
}

}  // namespace detail

/// Byte-level BPE as `tokenizers` runs it (see the top of this file). Immutable once built:
/// `encode` and `decode` may run on several threads at once.
class bpe_tokenizer {
 public:
  /// Checks `spec` (tokenizer_error) and builds the tables.
  explicit bpe_tokenizer(const bpe_spec& spec) { build(spec); }

  /// The ids of `text` (UTF-8, else text_error), with the template's special tokens around them
  /// when `add_special_tokens`.
  [[nodiscard]] std::vector<std::uint32_t> encode(std::string_view text, bool add_special_tokens = true) const {
    if (const std::size_t bad = utf8_error_offset(text); bad != utf8_valid)
      throw text_error("tokenizer: the text is not UTF-8 (invalid byte at offset " + std::to_string(bad) + ")", bad);
    std::vector<std::uint32_t> out;
    out.reserve(text.size() / 3 + 8);
    if (add_special_tokens) out.insert(out.end(), template_prefix_.begin(), template_prefix_.end());
    encoder e{*this, out};
    split_added(text, 0, text.size(), /*normalized=*/false, e);
    if (add_special_tokens) out.insert(out.end(), template_suffix_.begin(), template_suffix_.end());
    return out;
  }

  /// The text of `ids` (see the top of this file), leaving out special tokens when
  /// `skip_special_tokens`. value_error for an id that is no token's; unsupported_error for a
  /// tokenizer without the ByteLevel decoder.
  [[nodiscard]] std::string decode(std::span<const std::uint32_t> ids, bool skip_special_tokens = false) const {
    if (!byte_level_decoder_)
      throw unsupported_error("tokenizer: decode needs the ByteLevel decoder, and this tokenizer has none");
    std::string bytes;
    for (const std::uint32_t id : ids) {
      if (id >= tokens_.size() || !present_[id])
        throw value_error("tokenizer: token id " + std::to_string(id) + " is not in the vocabulary (" +
                          std::to_string(tokens_.size()) + " ids)");
      if (skip_special_tokens && special_[id]) continue;
      bytes += bytes_of_[id];
    }
    return utf8_lossy(bytes);
  }

  /// One more than the largest id (vocabulary and added tokens).
  [[nodiscard]] std::size_t vocab_size() const noexcept { return tokens_.size(); }
  /// The id of a token (vocabulary or added), written as tokenizer.json writes it.
  [[nodiscard]] std::optional<std::uint32_t> token_to_id(std::string_view token) const {
    const auto it = ids_.find(token);
    if (it == ids_.end()) return std::nullopt;
    return it->second;
  }
  /// The token of `id` as tokenizer.json writes it; value_error for an id that is no token's.
  [[nodiscard]] const std::string& id_to_token(std::uint32_t id) const {
    if (id >= tokens_.size() || !present_[id])
      throw value_error("tokenizer: token id " + std::to_string(id) + " is not in the vocabulary");
    return tokens_[id];
  }
  /// True for the id of an added token marked special.
  [[nodiscard]] bool is_special(std::uint32_t id) const noexcept { return id < special_.size() && special_[id]; }

 private:
  static constexpr std::uint32_t none = 0xFFFFFFFFu;

  struct merge_value {
    std::uint32_t rank, id;
  };
  struct trie {
    std::unordered_map<std::uint64_t, std::uint32_t> edges;  // (node << 8 | byte) -> node
    std::vector<std::uint32_t> token;                        // node -> index in added_, or none
    std::array<bool, 256> first{};                           // bytes that start a token
    bool empty = true;
  };
  struct symbol {
    std::uint32_t id;
    std::int32_t prev, next;
    bool alive;
  };
  struct queued {
    std::uint32_t rank, pos, id;
    bool operator>(const queued& o) const noexcept { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };

  /// What one encode call keeps: the output, the word cache, scratch buffers.
  struct encoder {
    const bpe_tokenizer& t;
    std::vector<std::uint32_t>& out;
    detail::string_map<std::pair<std::uint32_t, std::uint32_t>> cache{};  // word -> [begin, end) in cached
    std::vector<std::uint32_t> cached{};
    detail::decoded_text split_scratch{}, byte_level_scratch{};
    std::vector<symbol> symbols{};
    std::vector<queued> heap{};
    std::string word{};
  };

  [[noreturn]] static void fail(const std::string& what) { throw tokenizer_error("tokenizer: " + what); }

  static std::uint64_t pair_key(std::uint32_t a, std::uint32_t b) noexcept {
    return (static_cast<std::uint64_t>(a) << 32) | b;
  }

  /// Records `token` as id `id`; returns its bytes when all its characters are byte-level ones.
  std::optional<std::string> set_token(std::uint32_t id, const std::string& token) {
    if (id >= 0x7FFFFFFFu) fail("token id " + std::to_string(id) + " is too large");
    if (id >= tokens_.size()) {
      tokens_.resize(id + 1);
      present_.resize(id + 1, false);
      special_.resize(id + 1, false);
      bytes_of_.resize(id + 1);
    }
    if (present_[id] && tokens_[id] != token)
      fail("two tokens have the id " + std::to_string(id) + ": '" + tokens_[id] + "' and '" + token + "'");
    present_[id] = true;
    tokens_[id] = token;
    auto bytes = detail::byte_level_bytes(token);
    bytes_of_[id] = bytes ? *bytes : token;
    return bytes;
  }

  void build(const bpe_spec& spec) {
    for (const auto& [token, id] : spec.vocab) {
      if (token.empty()) fail("the vocabulary has an empty token (id " + std::to_string(id) + ")");
      if (utf8_error_offset(token) != utf8_valid) fail("a token of the vocabulary is not UTF-8");
      if (!ids_.emplace(token, id).second) fail("the token '" + token + "' appears twice in the vocabulary");
      if (auto bytes = set_token(id, token)) {
        if (bytes->size() == 1) byte_id_[static_cast<unsigned char>((*bytes)[0])] = id;
        by_bytes_.emplace(std::move(*bytes), id);
      }
    }
    const std::size_t model_size = spec.vocab.size();
    for (std::size_t r = 0; r < spec.merges.size(); ++r) {
      const auto& [a, b] = spec.merges[r];
      const auto ia = ids_.find(a), ib = ids_.find(b), ic = ids_.find(a + b);
      const char* missing = ia == ids_.end() ? "its first token" : ib == ids_.end() ? "its second token" : nullptr;
      if (missing == nullptr && ic == ids_.end()) missing = "the merged token";
      if (missing)
        fail("merge " + std::to_string(r) + " ('" + a + "' '" + b + "'): " + missing + " is not in the vocabulary");
      merges_.insert_or_assign(pair_key(ia->second, ib->second),
                               merge_value{static_cast<std::uint32_t>(r), ic->second});  // the last one wins
    }
    if (spec.unk_token) {
      const auto it = ids_.find(*spec.unk_token);
      if (it == ids_.end()) fail("the unknown token '" + *spec.unk_token + "' is not in the vocabulary");
      unk_ = it->second;
    }
    // Added tokens: a token of the vocabulary keeps its id; another takes the next id as
    // `tokenizers`' AddedVocabulary numbers them, which must be the one the file gives.
    std::optional<std::uint32_t> max_added;
    for (const added_token& a : spec.added_tokens) {
      if (a.content.empty()) fail("an added token is empty (id " + std::to_string(a.id) + ")");
      if (utf8_error_offset(a.content) != utf8_valid) fail("an added token is not UTF-8");
      std::uint32_t id = 0;
      if (const auto it = ids_.find(a.content); it != ids_.end()) {
        id = it->second;
      } else {
        const auto n = static_cast<std::uint32_t>(model_size);
        id = !max_added ? n : (*max_added >= n || n == 0) ? *max_added + 1 : n;
        ids_.emplace(a.content, id);
      }
      if (id != a.id)
        fail("the added token '" + a.content + "' has the id " + std::to_string(a.id) + ", but it is token " +
             std::to_string(id) + " of the vocabulary and added tokens");
      max_added = max_added ? std::max(*max_added, id) : id;
      set_token(id, a.content);
      if (a.special) special_[id] = true;
      trie& t = a.normalized ? normalized_ : plain_;
      add_to_trie(t, a.content, static_cast<std::uint32_t>(added_.size()));
      added_.push_back(a);
    }
    for (const auto* ids : {&spec.template_prefix, &spec.template_suffix})
      for (const std::uint32_t id : *ids)
        if (id >= tokens_.size() || !present_[id])
          fail("the template's token id " + std::to_string(id) + " is unknown");
    template_prefix_ = spec.template_prefix;
    template_suffix_ = spec.template_suffix;
    fuse_unk_ = spec.fuse_unk;
    ignore_merges_ = spec.ignore_merges;
    split_ = spec.split;
    add_prefix_space_ = spec.add_prefix_space;
    byte_level_regex_ = spec.byte_level_regex;
    byte_level_decoder_ = spec.byte_level_decoder;
  }

  static void add_to_trie(trie& t, std::string_view s, std::uint32_t index) {
    if (t.token.empty()) t.token.push_back(none);
    std::uint32_t node = 0;
    for (const char ch : s) {
      const auto key = (static_cast<std::uint64_t>(node) << 8) | static_cast<unsigned char>(ch);
      const auto [it, added] = t.edges.emplace(key, static_cast<std::uint32_t>(t.token.size()));
      if (added) t.token.push_back(none);
      node = it->second;
    }
    if (t.token[node] == none) t.token[node] = index;  // the first of two equal contents wins
    t.first[static_cast<unsigned char>(s[0])] = true;
    t.empty = false;
  }

  /// The longest token of `t` at `text[i]`: its index in added_ and its end, or none.
  static std::pair<std::uint32_t, std::size_t> longest_at(const trie& t, std::string_view text, std::size_t i) {
    std::pair<std::uint32_t, std::size_t> best{none, 0};
    std::uint32_t node = 0;
    for (std::size_t k = i; k < text.size(); ++k) {
      const auto it = t.edges.find((static_cast<std::uint64_t>(node) << 8) | static_cast<unsigned char>(text[k]));
      if (it == t.edges.end()) break;
      node = it->second;
      if (t.token[node] != none) best = {t.token[node], k + 1};
    }
    return best;
  }

  /// The code point that ends at `end` / starts at `begin` of valid UTF-8 `s`.
  static std::uint32_t cp_before(std::string_view s, std::size_t end) noexcept {
    std::size_t b = end - 1;
    while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0u) == 0x80u) --b;
    std::size_t len = 0;
    return decode_utf8(reinterpret_cast<const unsigned char*>(s.data()), b, len);
  }
  static std::uint32_t cp_at(std::string_view s, std::size_t begin, std::size_t& len) noexcept {
    return decode_utf8(reinterpret_cast<const unsigned char*>(s.data()), begin, len);
  }

  /// Matches the added tokens of one pass in text[begin, end); the stretches between go to the
  /// normalized pass (after the plain one) or to the pre-tokenizer.
  // NOLINTBEGIN(misc-no-recursion): two levels at most (the plain pass calls the normalized one)
  void split_added(std::string_view text, std::size_t begin, std::size_t end, bool normalized, encoder& e) const {
    const trie& t = normalized ? normalized_ : plain_;
    const auto rest = [&](std::size_t a, std::size_t b) {
      if (a >= b) return;
      if (!normalized)
        split_added(text, a, b, true, e);
      else
        pre_tokenize(text.substr(a, b - a), e);
    };
    if (t.empty) return rest(begin, end);
    std::size_t done = begin;  // the end of the last match taken (its rstrip included)
    for (std::size_t i = begin; i < end;) {
      if (!t.first[static_cast<unsigned char>(text[i])]) {
        ++i;
        continue;
      }
      const auto [index, stop0] = longest_at(t, text.substr(0, end), i);
      if (index == none) {
        ++i;
        continue;
      }
      const added_token& a = added_[index];
      std::size_t start = i, stop = stop0;
      i = stop0;                   // the next match is looked for after this one, its rstrip not skipped
      if (start < done) continue;  // inside the spaces a previous rstrip took
      if (a.single_word) {
        std::size_t len = 0;
        const bool left = start == begin || !detail::is_word_char(cp_before(text, start));
        const bool right = stop == end || !detail::is_word_char(cp_at(text, stop, len));
        if (!left || !right) continue;
      }
      if (a.lstrip) {
        std::size_t s = start;
        while (s > done && class_of(cp_before(text, s)) == char_class::space) {
          --s;
          while (s > done && (static_cast<unsigned char>(text[s]) & 0xC0u) == 0x80u) --s;
        }
        start = s;
      }
      if (a.rstrip) {
        std::size_t len = 0;
        while (stop < end && class_of(cp_at(text, stop, len)) == char_class::space) stop += len;
      }
      rest(done, start);
      e.out.push_back(a.id);
      done = stop;
    }
    rest(done, end);
  }
  // NOLINTEND(misc-no-recursion)

  /// The pre-tokenizer on one stretch between added tokens: Split, then ByteLevel.
  void pre_tokenize(std::string_view s, encoder& e) const {
    if (split_)
      split_pieces(s, *split_, e.split_scratch, [&](std::string_view piece) { byte_level(piece, e); });
    else
      byte_level(s, e);
  }

  void byte_level(std::string_view piece, encoder& e) const {
    if (add_prefix_space_ && !piece.starts_with(' ')) {
      std::string spaced = " ";
      spaced += piece;
      byte_level_split(spaced, e);
    } else {
      byte_level_split(piece, e);
    }
  }

  void byte_level_split(std::string_view piece, encoder& e) const {
    if (byte_level_regex_)
      split_pieces(piece, split_regex::gpt2, e.byte_level_scratch, [&](std::string_view w) { bpe_word(w, e); });
    else
      bpe_word(piece, e);
  }

  /// BPE on one word (its bytes), through the cache.
  void bpe_word(std::string_view word, encoder& e) const {
    if (word.empty()) return;
    if (ignore_merges_) {
      if (const auto it = by_bytes_.find(word); it != by_bytes_.end()) {
        e.out.push_back(it->second);
        return;
      }
    }
    if (const auto it = e.cache.find(word); it != e.cache.end()) {
      e.out.insert(e.out.end(), e.cached.begin() + it->second.first, e.cached.begin() + it->second.second);
      return;
    }
    const std::size_t from = e.out.size();
    merge_word(word, e);
    if (e.cache.size() < cache_capacity) {
      const auto b = static_cast<std::uint32_t>(e.cached.size());
      e.cached.insert(e.cached.end(), e.out.begin() + static_cast<std::ptrdiff_t>(from), e.out.end());
      e.cache.emplace(std::string(word), std::pair{b, static_cast<std::uint32_t>(e.cached.size())});
    }
  }

  void merge_word(std::string_view word, encoder& e) const {
    auto& sy = e.symbols;
    sy.clear();
    bool last_unk = false;
    for (const char ch : word) {
      const std::uint32_t id = byte_id_[static_cast<unsigned char>(ch)];
      if (id != none) {
        sy.push_back(symbol{id, 0, 0, true});
        last_unk = false;
      } else if (unk_ != none) {
        if (!(fuse_unk_ && last_unk)) sy.push_back(symbol{unk_, 0, 0, true});
        last_unk = true;
      }  // else dropped, as `tokenizers` drops a character it has no token for
    }
    const auto n = static_cast<std::int32_t>(sy.size());
    for (std::int32_t i = 0; i < n; ++i) {
      sy[static_cast<std::size_t>(i)].prev = i - 1;
      sy[static_cast<std::size_t>(i)].next = i + 1 < n ? i + 1 : -1;
    }
    auto& heap = e.heap;
    heap.clear();
    const auto push = [&](std::uint32_t a, std::uint32_t b, std::int32_t pos) {
      const auto it = merges_.find(pair_key(a, b));
      if (it == merges_.end()) return;
      heap.push_back(queued{it->second.rank, static_cast<std::uint32_t>(pos), it->second.id});
      std::push_heap(heap.begin(), heap.end(), std::greater<>{});
    };
    for (std::int32_t i = 0; i + 1 < n; ++i)
      push(sy[static_cast<std::size_t>(i)].id, sy[static_cast<std::size_t>(i) + 1].id, i);
    while (!heap.empty()) {
      std::pop_heap(heap.begin(), heap.end(), std::greater<>{});
      const queued top = heap.back();
      heap.pop_back();
      symbol& s = sy[top.pos];
      if (!s.alive || s.next < 0) continue;
      symbol& right = sy[static_cast<std::size_t>(s.next)];
      // As `tokenizers`: a queued merge applies if its pair still merges into the same token.
      const auto it = merges_.find(pair_key(s.id, right.id));
      if (it == merges_.end() || it->second.id != top.id) continue;
      s.id = top.id;
      right.alive = false;
      s.next = right.next;
      if (s.next >= 0) sy[static_cast<std::size_t>(s.next)].prev = static_cast<std::int32_t>(top.pos);
      if (s.prev >= 0) push(sy[static_cast<std::size_t>(s.prev)].id, s.id, s.prev);
      if (s.next >= 0) push(s.id, sy[static_cast<std::size_t>(s.next)].id, static_cast<std::int32_t>(top.pos));
    }
    for (std::int32_t i = n > 0 ? 0 : -1; i >= 0; i = sy[static_cast<std::size_t>(i)].next)
      e.out.push_back(sy[static_cast<std::size_t>(i)].id);
  }

  static constexpr std::size_t cache_capacity = 10'000;  // as `tokenizers`' BPE cache

  std::vector<std::string> tokens_;             // id -> token as written
  std::vector<std::string> bytes_of_;           // id -> what the ByteLevel decoder makes of it
  std::vector<bool> present_, special_;         // id -> is a token / is a special added token
  detail::string_map<std::uint32_t> ids_;       // token as written -> id (vocabulary and added)
  detail::string_map<std::uint32_t> by_bytes_;  // the vocabulary's byte-level tokens, as bytes -> id
  std::array<std::uint32_t, 256> byte_id_ = [] {
    std::array<std::uint32_t, 256> a{};
    a.fill(none);
    return a;
  }();
  std::unordered_map<std::uint64_t, merge_value> merges_;
  std::vector<added_token> added_;
  trie plain_, normalized_;
  std::vector<std::uint32_t> template_prefix_, template_suffix_;
  std::uint32_t unk_ = none;
  bool fuse_unk_ = false, ignore_merges_ = false;
  std::optional<split_regex> split_;
  bool add_prefix_space_ = false, byte_level_regex_ = true, byte_level_decoder_ = true;
};

}  // namespace text
QUANTO_END_NAMESPACE
