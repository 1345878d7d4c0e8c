// quanto/io/text.hpp: strings from files made safe to print, and UTF-8 validation, shared by
// every reader and writer of quanto::io.
#pragma once

#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include "quanto/core/config.hpp"
#include "quanto/text/utf8.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io::detail {

inline constexpr std::size_t npos = static_cast<std::size_t>(-1);

/// UTF-8 validation is the text layer's (text/utf8.hpp); its "valid" is this npos.
using text::utf8_error_offset;
static_assert(text::utf8_valid == npos);

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
