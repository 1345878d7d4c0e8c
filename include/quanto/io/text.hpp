// quanto/io/text.hpp: strings from files made safe to print, and UTF-8 validation, shared by
// every reader and writer of quanto::io.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io::detail {

inline constexpr std::size_t npos = static_cast<std::size_t>(-1);

/// Offset of the first byte that does not start a well-formed UTF-8 sequence (Unicode table 3-7:
/// no overlongs, no surrogates, nothing above U+10FFFF), or npos if `s` is valid UTF-8.
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
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
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
      return i;
    }
    if (n - i < len || p[i + 1] < lo || p[i + 1] > hi) return i;
    for (std::size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xC0u) != 0x80u) return i;
    i += len;
  }
  return npos;
}

inline void append_hex_byte(std::string& out, unsigned char c) {
  constexpr char digits[] = "0123456789abcdef";
  out += digits[c >> 4];
  out += digits[c & 0xF];
}

/// A string from a file or a caller, made safe for an error message: quoted, control characters
/// and (if the string is not UTF-8) non-ASCII bytes escaped, and cut after about `max_bytes`.
inline std::string quote(std::string_view s, std::size_t max_bytes = 96) {
  const bool utf8 = utf8_error_offset(s) == npos;
  std::string out = "'";
  std::size_t i = 0;
  for (; i < s.size() && i < max_bytes; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\'' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c == 0x7F || (c >= 0x80 && !utf8)) {
      out += "\\x";
      append_hex_byte(out, c);
    } else {
      out += static_cast<char>(c);
    }
  }
  if (utf8)  // finish a multi-byte character rather than cut it
    for (; i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0u) == 0x80u; ++i) out += s[i];
  out += '\'';
  if (i < s.size()) out += "... (" + std::to_string(s.size()) + " bytes)";
  return out;
}

inline std::string quote_path(const std::filesystem::path& p) { return quote(p.string(), 512); }

}  // namespace io::detail
QUANTO_END_NAMESPACE
