// quanto/text/unicode.hpp: the character classes of the pre-tokenizers' regexes (\p{L}, \p{N},
// \s and the rest), looked up in the generated tables (text/unicode_tables.hpp, Unicode 16.0 as
// the Oniguruma of Hugging Face `tokenizers` 0.23 has them).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <iterator>

#include "quanto/core/config.hpp"
#include "quanto/text/unicode_tables.hpp"

QUANTO_BEGIN_NAMESPACE
namespace text {

/// What a code point is to the regexes: a letter (\p{L}: general category L*), a number (\p{N}:
/// N*), white space (\s: U+0009..U+000D, U+0085, Zs, Zl, Zp) or none of them.
enum class char_class : std::uint8_t { other = 0, letter = 1, number = 2, space = 3 };

namespace detail {

constexpr char_class class_from_runs(std::uint32_t cp) noexcept {
  const std::uint32_t key = (cp << 2) | 3u;
  const auto* it = std::upper_bound(std::begin(unicode_class_runs), std::end(unicode_class_runs), key);
  return static_cast<char_class>(*(it - 1) & 3u);
}

inline constexpr auto ascii_classes = [] {
  std::array<char_class, 128> t{};
  for (std::uint32_t c = 0; c < 128; ++c) t[c] = class_from_runs(c);
  return t;
}();

}  // namespace detail

/// The class of code point `cp` (at most U+10FFFF).
constexpr char_class class_of(std::uint32_t cp) noexcept {
  return cp < 128 ? detail::ascii_classes[cp] : detail::class_from_runs(cp);
}

}  // namespace text
QUANTO_END_NAMESPACE
