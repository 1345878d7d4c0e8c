// quanto/nn/fnmatch.hpp: shell-style matching of module names, as Python's fnmatch.fnmatchcase.
// optimum-quanto's `quantize(model, include=..., exclude=...)` selects modules by matching their
// dotted names ("encoder.layer.0.attention.query") with `fnmatch.fnmatch`, which on POSIX is
// `fnmatchcase`. This is a byte-for-byte reimplementation of CPython 3.11's rules, quirks
// included, without building a regular expression: `*` matches any run of characters (dots and
// slashes too), `?` one character, `[...]` / `[!...]` one character of (not of) a set. There is no
// escaping: a backslash is an ordinary character.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {
namespace detail {

/// Whether byte `c` belongs to the bracket expression whose text between `[` and `]` is `body`
/// (never empty: the parser always takes a leading `]`, or `!]`, into the body).
///
/// CPython (fnmatch.translate) treats a `-` as a range operator when it is not the first member
/// (nor right after a leading `!`), not the last character, and not right after the upper end of
/// the previous range; every other character is literal. A reversed range such as `z-a` is
/// dropped together with both of its ends. The regex class is then built from what is left, and
/// only there is a leading `!` read as negation; so a dropped range can expose a `!` that negates
/// (`[z-a!b]` is "not b"), and an exposed `!-x` turns into `^-x`, where `-` is a literal
/// (`[z-a!-#]` is "neither - nor #"). A set with nothing left matches nothing; `!` alone matches
/// any character.
constexpr bool fnmatch_set_contains(std::string_view body, unsigned char c) noexcept {
  const std::size_t size = body.size();
  std::size_t range_from = body[0] == '!' ? 2 : 1;  // the first index where `-` can be an operator
  bool at_start = true;                             // nothing kept yet, `!` not seen
  bool negate = false;
  bool has_members = false;
  bool found = false;
  std::size_t i = 0;
  while (i < size) {
    const bool is_range = i + 2 < size && body[i + 1] == '-' && i + 1 >= range_from;
    if (is_range) {
      const auto lo = static_cast<unsigned char>(body[i]);
      const auto hi = static_cast<unsigned char>(body[i + 2]);
      range_from = i + 4;
      i += 3;
      if (lo > hi) continue;  // an empty range vanishes, ends and all
      if (at_start && lo == '!') {
        negate = true;  // "!-hi" became the regex class "^-hi"
        found = found || c == '-' || c == hi;
      } else {
        found = found || (lo <= c && c <= hi);
      }
    } else {
      const auto ch = static_cast<unsigned char>(body[i]);
      i += 1;
      if (at_start && ch == '!') {
        negate = true;
        at_start = false;
        continue;
      }
      found = found || c == ch;
    }
    at_start = false;
    has_members = true;
  }
  if (at_start) return false;               // every member dropped: the set matches nothing
  if (negate && !has_members) return true;  // "!" alone: any character
  return found != negate;
}

/// One past the `]` that closes the bracket expression opening at `pattern[open]`, or 0 when that
/// `[` is unclosed and therefore a literal. `last_close` is `pattern.rfind(']')`: knowing it keeps
/// an unclosed `[` from costing a scan to the end of the pattern every time it is visited.
constexpr std::size_t fnmatch_set_end(std::string_view pattern, std::size_t open, std::size_t last_close) noexcept {
  std::size_t j = open + 1;
  if (j < pattern.size() && pattern[j] == '!') ++j;
  if (j < pattern.size() && pattern[j] == ']') ++j;
  if (last_close == std::string_view::npos || last_close < j) return 0;
  return pattern.find(']', j) + 1;
}

/// Matches the single-character pattern element at `pattern[at]` (anything but `*`) against `c`.
/// Returns the index just past the element when it matches, 0 when it does not.
constexpr std::size_t fnmatch_step(std::string_view pattern, std::size_t at, std::size_t last_close, char c) noexcept {
  const char p = pattern[at];
  if (p == '?') return at + 1;
  if (p == '[') {
    const std::size_t end = fnmatch_set_end(pattern, at, last_close);
    if (end != 0) {
      return fnmatch_set_contains(pattern.substr(at + 1, end - at - 2), static_cast<unsigned char>(c)) ? end : 0;
    }
  }
  return p == c ? at + 1 : 0;
}

}  // namespace detail

/// Python's `fnmatch.fnmatchcase(name, pattern)`: whether the whole of `name` matches the shell
/// pattern. Bytes are compared as bytes (no case folding, no Unicode awareness).
///   `*`      any run of characters, empty included (dots and slashes included)
///   `?`      exactly one character
///   `[seq]`  one character of seq; `a-z` is a range; a `]` right after `[` or `[!` is a member
///   `[!seq]` one character not in seq
/// An unclosed `[` is a literal `[`, a reversed range adds nothing to its set (`[z-a]` matches no
/// character; detail::fnmatch_set_contains lists CPython's quirks), and a backslash is an ordinary
/// character. Runs in O(|name| * |pattern|) time and constant space (greedy matching
/// that only ever backtracks to the last `*`), so patterns like "a*a*a*a*b" stay cheap.
constexpr bool fnmatch(std::string_view name, std::string_view pattern) noexcept {
  constexpr std::size_t none = std::string_view::npos;
  const std::size_t last_close = pattern.rfind(']');
  std::size_t p = 0;          // next pattern element
  std::size_t n = 0;          // next name character
  std::size_t star_p = none;  // pattern index just past the last `*` seen
  std::size_t star_n = 0;     // name index that `*` is currently assumed to stop at
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      while (p < pattern.size() && pattern[p] == '*') ++p;
      star_p = p;
      star_n = n;
      continue;
    }
    if (p < pattern.size()) {
      const std::size_t next = detail::fnmatch_step(pattern, p, last_close, name[n]);
      if (next != 0) {
        p = next;
        ++n;
        continue;
      }
    }
    if (star_p == none) return false;
    // Let the last `*` swallow one more character and retry what follows it. Earlier stars
    // never need revisiting: the segments between stars have fixed lengths.
    p = star_p;
    n = ++star_n;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

/// Whether `name` matches at least one of `patterns` (quanto's `any(fnmatch(name, pattern) for
/// pattern in include)`); false for an empty list.
inline bool fnmatch_any(std::string_view name, std::span<const std::string> patterns) noexcept {
  for (const std::string& pattern : patterns) {
    if (fnmatch(name, pattern)) return true;
  }
  return false;
}

}  // namespace nn
QUANTO_END_NAMESPACE
