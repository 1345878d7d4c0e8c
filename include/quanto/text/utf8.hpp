// quanto/text/utf8.hpp: UTF-8 as the tokenizer reads and writes it: validation (Unicode table 3-7),
// decoding of text already validated, encoding of one code point, and the lossy conversion of a
// byte string to text that Rust's `String::from_utf8_lossy` does (what Hugging Face `tokenizers`
// returns from decode).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE
namespace text {

/// Returned by `utf8_error_offset` for valid UTF-8.
inline constexpr std::size_t utf8_valid = static_cast<std::size_t>(-1);

namespace detail {

/// The length of the well-formed sequence at `p[i]` (1 to 4), or, when there is none, 0 and in
/// `bad` the length of its maximal valid prefix (at least 1): what one U+FFFD replaces.
inline std::size_t utf8_sequence(const unsigned char* p, std::size_t n, std::size_t i, std::size_t& bad) noexcept {
  const unsigned c = p[i];
  bad = 1;
  if (c < 0x80) return 1;
  std::size_t len = 0;
  unsigned lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c == 0xE0) {
    len = 3, lo = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    len = 3;
  } else if (c == 0xED) {
    len = 3, hi = 0x9F;
  } else if (c == 0xF0) {
    len = 4, lo = 0x90;
  } else if (c >= 0xF1 && c <= 0xF3) {
    len = 4;
  } else if (c == 0xF4) {
    len = 4, hi = 0x8F;
  } else {
    return 0;
  }
  if (i + 1 >= n || p[i + 1] < lo || p[i + 1] > hi) return 0;
  for (std::size_t k = 2; k < len; ++k) {
    if (i + k >= n || (p[i + k] & 0xC0u) != 0x80u) {
      bad = k;
      return 0;
    }
  }
  return len;
}

}  // namespace detail

/// The length (1 to 4) of the well-formed UTF-8 sequence that starts at `s[i]` (`i < s.size()`),
/// or 0 when none starts there.
inline std::size_t utf8_sequence_length(std::string_view s, std::size_t i) noexcept {
  std::size_t bad = 0;
  return detail::utf8_sequence(reinterpret_cast<const unsigned char*>(s.data()), s.size(), i, bad);
}

/// Offset of the first byte that does not start a well-formed UTF-8 sequence (Unicode table 3-7:
/// no overlongs, no surrogates, nothing above U+10FFFF), or `utf8_valid`.
inline std::size_t utf8_error_offset(std::string_view s) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  std::size_t i = 0;
  while (i < n) {
    for (std::uint64_t w; n - i >= 8; i += 8) {  // ASCII fast path, 8 bytes at a time
      std::memcpy(&w, p + i, 8);
      if ((w & 0x8080808080808080ull) != 0) break;
    }
    if (i == n) break;
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    std::size_t bad = 0;
    const std::size_t len = detail::utf8_sequence(p, n, i, bad);
    if (len == 0) return i;
    i += len;
  }
  return utf8_valid;
}

/// The code point at `p[i]` of valid UTF-8, its length in `len`.
inline std::uint32_t decode_utf8(const unsigned char* p, std::size_t i, std::size_t& len) noexcept {
  const unsigned c = p[i];
  if (c < 0x80) {
    len = 1;
    return c;
  }
  if (c < 0xE0) {
    len = 2;
    return ((c & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
  }
  if (c < 0xF0) {
    len = 3;
    return ((c & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
  }
  len = 4;
  return ((c & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) | ((p[i + 2] & 0x3Fu) << 6) | (p[i + 3] & 0x3Fu);
}

/// Appends code point `cp` (at most U+10FFFF, not a surrogate) as UTF-8.
inline void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// `bytes` as text, each ill-formed part (the maximal prefix of a sequence that could have been
/// well formed, or one byte) replaced by U+FFFD, as Rust's `String::from_utf8_lossy` does.
inline std::string utf8_lossy(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::string out;
  out.reserve(n);
  std::size_t run = 0, i = 0;
  while (i < n) {
    std::size_t bad = 0;
    const std::size_t len = detail::utf8_sequence(p, n, i, bad);
    if (len != 0) {
      i += len;
      continue;
    }
    out.append(bytes.data() + run, i - run);
    out += "\xEF\xBF\xBD";
    i += bad;
    run = i;
  }
  out.append(bytes.data() + run, n - run);
  return out;
}

}  // namespace text
QUANTO_END_NAMESPACE
