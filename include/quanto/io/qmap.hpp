// quanto/io/qmap.hpp: optimum-quanto's quantization map file (`quanto_qmap.json`), which says for
// each quantized module which weight and activation qtypes it had, so that `requantize` can
// rebuild the modules before loading their state dict.
//
//   {
//       "model.layers.0.self_attn.q_proj": {
//           "weights": "qint4",
//           "activations": "none"
//       }
//   }
//
// `qmap_json` / `write_qmap` produce exactly the bytes Python's `json.dump(qmap, f, indent=4)`
// writes (what `QuantizedModelForCausalLM.save_pretrained` does): four-space indentation, ", "
// never at a line end, ": " after keys, non-ASCII and control characters as \uXXXX escapes
// (lower-case hex, surrogate pairs above U+FFFF), no newline at the end. Entries keep the map's
// order; within an entry "weights" comes before "activations".
//
// `parse_qmap` / `read_qmap` accept any JSON with that structure and keep the file's order.
// Like quanto they ignore other keys inside an entry. Unlike Python's json module they reject a
// key given twice in one object (Python silently keeps the last one). A qtype may be any name
// quanto accepts, the alias "qfloat8" included, or "none"; activations must be 8-bit.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/io/safetensors.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/nn/quantize.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// A quantization map that is not one: not JSON, not an object of objects, a module whose entry
/// lacks "weights" or "activations" or gives something other than a string there, a qtype name
/// quanto does not know, non-8-bit activations, or a key given twice in one object. The message
/// names the file (or the source name given to `parse_qmap`) and the module.
class qmap_error : public format_error {
 public:
  using format_error::format_error;
};

namespace detail {

inline std::string qmap_where(std::string_view source) { return "quantization map " + quote(source, 512) + ": "; }

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
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20 || c == 0x7F) u4(c);  // Python escapes everything outside ' '..'~'
          else out += static_cast<char>(c);
      }
      continue;
    }
    // A valid multi-byte sequence (checked above): decode its code point.
    const int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    std::uint32_t cp = c & (len == 4 ? 0x07u : len == 3 ? 0x0Fu : 0x1Fu);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]) & 0x3Fu);
    i += static_cast<std::size_t>(len);
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

/// Checks one qtype field of an entry: "none" or a name quanto accepts (8-bit for activations).
inline void check_qmap_qtype(std::string_view value, bool activations, const std::string& module,
                             std::string_view source) {
  const char* field = activations ? "\"activations\"" : "\"weights\"";
  if (value == "none") return;
  const auto id = find_qtype(value);
  if (!id)
    throw qmap_error(qmap_where(source) + "module " + quote(module) + ": unknown qtype " + quote(value) + " in " +
                     field + " (expected none, qint2, qint4, qint8, qfloat8, qfloat8_e4m3fn, qfloat8_e5m2 or "
                     "qfloat8_e4m3fnuz)");
  if (activations && info_of(*id).bits != 8)
    throw qmap_error(qmap_where(source) + "module " + quote(module) + ": activations " + quote(value) +
                     " are not 8-bit (quanto quantizes activations to qint8 or a qfloat8 type only)");
}


}  // namespace detail

/// The quantization map as Python's `json.dump(qmap, f, indent=4)` writes it (see the file
/// comment). value_error for a module name that is not UTF-8 or that appears twice (a Python dict
/// cannot hold it twice).
[[nodiscard]] inline std::string qmap_json(const nn::quantization_map_t& qmap) {
  if (qmap.empty()) return "{}";
  std::set<std::string_view> seen;
  std::string out = "{";
  for (std::size_t i = 0; i < qmap.size(); ++i) {
    const nn::qmap_entry& e = qmap[i];
    if (!seen.insert(e.name).second)
      throw value_error("quantization map: module " + detail::quote(e.name) + " appears twice");
    out += i == 0 ? "\n    " : ",\n    ";
    detail::append_python_json_string(out, e.name);
    out += ": {\n        \"weights\": ";
    detail::append_python_json_string(out, e.weights);
    out += ",\n        \"activations\": ";
    detail::append_python_json_string(out, e.activations);
    out += "\n    }";
  }
  out += "\n}";
  return out;
}

/// Writes `qmap_json(qmap)` to `path` (replacing it whole, through a temporary file in the same
/// folder). `file_error` when the file system fails.
inline void write_qmap(const std::filesystem::path& path, const nn::quantization_map_t& qmap) {
  const std::string text = qmap_json(qmap);
  detail::replace_file(path, "quantization map", [&](const auto& write) { write(text.data(), text.size()); });
}

/// Parses a quantization map (see the file comment); `source` names it in error messages.
[[nodiscard]] inline nn::quantization_map_t parse_qmap(std::string_view json, std::string_view source = "<memory>") {
  using ordered = nlohmann::ordered_json;
  // Duplicate keys: one set of keys per open object.
  std::vector<std::set<std::string>> open_objects;
  const ordered::parser_callback_t check_duplicates = [&](int, ordered::parse_event_t event, ordered& parsed) {
    switch (event) {
      case ordered::parse_event_t::object_start: open_objects.emplace_back(); break;
      case ordered::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case ordered::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get<std::string>()).second)
          throw qmap_error(detail::qmap_where(source) + "the key " + detail::quote(parsed.get<std::string>()) +
                           " appears twice in one object");
        break;
      default: break;
    }
    return true;
  };
  ordered doc;
  try {
    doc = ordered::parse(json.begin(), json.end(), check_duplicates);
  } catch (const ordered::exception& e) {
    throw qmap_error(detail::qmap_where(source) + "not valid JSON: " + e.what());
  }
  if (!doc.is_object())
    throw qmap_error(detail::qmap_where(source) + "expected a JSON object of modules, got " + doc.type_name());
  nn::quantization_map_t out;
  out.reserve(doc.size());
  for (const auto& [module, entry] : doc.items()) {
    const std::string name = module;
    if (!entry.is_object())
      throw qmap_error(detail::qmap_where(source) + "module " + detail::quote(name) +
                       ": expected an object with \"weights\" and \"activations\", got " + entry.type_name());
    const auto field = [&](const char* key) {
      const auto it = entry.find(key);
      if (it == entry.end())
        throw qmap_error(detail::qmap_where(source) + "module " + detail::quote(name) + ": no \"" + key + "\" key");
      if (!it->is_string())
        throw qmap_error(detail::qmap_where(source) + "module " + detail::quote(name) + ": \"" + key +
                         "\" must be a qtype name or \"none\", got " + it->type_name());
      return it->template get<std::string>();
    };
    nn::qmap_entry e{name, field("weights"), field("activations")};
    detail::check_qmap_qtype(e.weights, false, name, source);
    detail::check_qmap_qtype(e.activations, true, name, source);
    out.push_back(std::move(e));
  }
  return out;
}

/// Reads and parses the quantization map at `path`. `file_error` when it cannot be read,
/// `qmap_error` (naming the file) when it is not a quantization map.
[[nodiscard]] inline nn::quantization_map_t read_qmap(const std::filesystem::path& path) {
  const auto [bytes, size, mapped] = detail::read_whole_file(path);
  return parse_qmap(std::string_view(reinterpret_cast<const char*>(bytes.get()), size), path.string());
}

}  // namespace io
QUANTO_END_NAMESPACE
