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
// key given twice in one object (Python silently keeps the last one), at any depth, inside
// ignored keys too. A qtype may be any name quanto accepts, the alias "qfloat8" included, or
// "none"; activations must be 8-bit.
//
// The text is untrusted: it is parsed by a schema-directed SAX handler that stops at the first
// token that breaks the schema, never builds a DOM and holds only the entries and the keys of the
// objects still open. Also rejected (`qmap_error`): more than `max_qmap_size` bytes, bytes that
// are not UTF-8, a NUL byte (a JSON parser would take it for the end of the text), a byte-order
// mark (Python's json.load rejects it too), and nesting deeper than `max_qmap_depth`.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/quantization_map.hpp"
#include "quanto/io/key_set.hpp"
#include "quanto/io/safetensors.hpp"
#include "quanto/io/safetensors_error.hpp"

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

/// The largest quantization map read (the safetensors header cap; quanto writes about 80 bytes per
/// quantized module, so this is over a million modules).
inline constexpr std::uint64_t max_qmap_size = 100'000'000;
/// The deepest JSON nesting a quantization map may have: the map is level 1 and an entry level 2;
/// deeper levels can only be inside the values of ignored keys.
inline constexpr std::size_t max_qmap_depth = 64;

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
        case '"':
          out += "\\\"";
          break;
        case '\\':
          out += "\\\\";
          break;
        case '\b':
          out += "\\b";
          break;
        case '\f':
          out += "\\f";
          break;
        case '\n':
          out += "\\n";
          break;
        case '\r':
          out += "\\r";
          break;
        case '\t':
          out += "\\t";
          break;
        default:
          if (c < 0x20 || c == 0x7F)
            u4(c);  // Python escapes everything outside ' '..'~'
          else
            out += static_cast<char>(c);
      }
      continue;
    }
    // A valid multi-byte sequence (checked above): decode its code point.
    const int len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    std::uint32_t cp = c & (len == 4 ? 0x07u : len == 3 ? 0x0Fu : 0x1Fu);
    for (int k = 1; k < len; ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]) & 0x3Fu);
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
                     field + " (expected none, " + qtype_names(" or ") + ")");
  if (activations && info_of(*id).bits != 8)
    throw qmap_error(qmap_where(source) + "module " + quote(module) + ": activations " + quote(value) +
                     " are not 8-bit (quanto quantizes activations to qint8 or a qfloat8 type only)");
}

/// Builds the quantization map one JSON token at a time and throws `qmap_error` at the first
/// token that breaks the schema (see the top of this file). Used through nlohmann's sax_parse.
class qmap_sax {
 public:
  using json = nlohmann::json;

  explicit qmap_sax(std::string_view source) : source_(source) {}

  quantization_map_t entries;

  // nlohmann's type names, as the messages of the former DOM parser gave them
  bool null() { return scalar("null"); }
  bool boolean(bool) { return scalar("boolean"); }
  bool number_integer(json::number_integer_t) { return scalar("number"); }
  bool number_unsigned(json::number_unsigned_t) { return scalar("number"); }
  bool number_float(json::number_float_t, const json::string_t&) { return scalar("number"); }
  bool binary(json::binary_t&) { return scalar("binary"); }  // not produced by the JSON parser

  bool string(json::string_t& s) {
    if (skipped()) return true;
    if (depth_ != 0 && top().type == kind::entry) {  // the value of "weights" or "activations"
      const bool activations = top().pending == field::activations;
      check_qmap_qtype(s, activations, module_, source_);
      (activations ? activations_ : weights_) = std::move(s);
      top().pending = field::none;
      return true;
    }
    reject("string");
  }

  bool start_object(std::size_t) {
    if (depth_ == 0) return push(kind::root);
    if (skipped()) return push(kind::skip_object);
    if (top().type == kind::root) {  // a module's entry
      top().pending = field::none;
      has_weights_ = has_activations_ = false;
      return push(kind::entry);
    }
    reject("object");
  }

  bool start_array(std::size_t) {
    if (skipped()) return push(kind::skip_array);
    reject("array");
  }

  bool key(json::string_t& k) {
    frame& f = top();
    if (!f.keys.insert(k))
      throw qmap_error(qmap_where(source_) + "the key " + quote(k) + " appears twice in one object" +
                       (f.type == kind::root ? std::string() : " (in the entry of module " + quote(module_) + ")"));
    switch (f.type) {
      case kind::root:
        module_ = std::move(k);
        f.pending = field::module;
        break;
      case kind::entry:
        if (k == "weights") {
          f.pending = field::weights;
          has_weights_ = true;
        } else if (k == "activations") {
          f.pending = field::activations;
          has_activations_ = true;
        } else {
          f.pending = field::unknown;
        }
        break;
      default:
        break;
    }
    return true;
  }

  bool end_object() {
    if (top().type == kind::entry) {
      const char* missing = !has_weights_ ? "weights" : !has_activations_ ? "activations" : nullptr;
      if (missing) throw qmap_error(qmap_where(source_) + "module " + quote(module_) + ": no \"" + missing + "\" key");
      entries.push_back(qmap_entry{std::move(module_), std::move(weights_), std::move(activations_)});
      module_.clear();
      weights_.clear();
      activations_.clear();
    }
    --depth_;
    return true;
  }

  bool end_array() {
    --depth_;
    return true;
  }

  bool parse_error(std::size_t, const std::string&, const json::exception& ex) {
    throw qmap_error(qmap_where(source_) + "not valid JSON: " + quote(ex.what(), 240));
  }

 private:
  enum class kind : std::uint8_t { root, entry, skip_object, skip_array };
  // What the next value of a root or entry object is (set by the key before it).
  enum class field : std::uint8_t { none, module, weights, activations, unknown };

  struct frame {
    kind type = kind::root;
    field pending = field::none;
    json_key_set keys;  // the keys seen so far (objects only)
  };

  frame& top() noexcept { return frames_[depth_ - 1]; }

  bool push(kind k) {
    if (depth_ >= max_qmap_depth)
      throw qmap_error(qmap_where(source_) + "JSON nested deeper than " + std::to_string(max_qmap_depth) + " levels" +
                       (module_.empty() ? std::string() : " (in module " + quote(module_) + ")"));
    if (depth_ == frames_.size()) frames_.emplace_back();  // frames are reused, with their key buffers
    frame& f = frames_[depth_++];
    f.type = k;
    f.pending = field::none;
    f.keys.clear();
    return true;
  }

  /// True (and the value consumed) when the value is, or is inside, the value of an ignored key.
  bool skipped() noexcept {
    if (depth_ == 0) return false;
    frame& f = top();
    if (f.type == kind::skip_object || f.type == kind::skip_array) return true;
    if (f.type == kind::entry && f.pending == field::unknown) {
      f.pending = field::none;
      return true;
    }
    return false;
  }

  bool scalar(const char* type) {
    if (skipped()) return true;
    reject(type);
  }

  /// A value the schema does not allow here (`type` is what came).
  [[noreturn]] void reject(const char* type) const {
    const std::string where = qmap_where(source_);
    if (depth_ == 0) throw qmap_error(where + "expected a JSON object of modules, got " + type);
    const frame& f = frames_[depth_ - 1];
    if (f.type == kind::root)
      throw qmap_error(where + "module " + quote(module_) + ": expected an object with \"weights\" and " +
                       "\"activations\", got " + type);
    throw qmap_error(where + "module " + quote(module_) + ": \"" +
                     (f.pending == field::activations ? "activations" : "weights") +
                     "\" must be a qtype name or \"none\", got " + type);
  }

  std::string_view source_;
  std::vector<frame> frames_;
  std::size_t depth_ = 0;
  // the entry being read
  std::string module_, weights_, activations_;
  bool has_weights_ = false, has_activations_ = false;
};

}  // namespace detail

/// The quantization map as Python's `json.dump(qmap, f, indent=4)` writes it (see the file
/// comment). value_error for a module name that is not UTF-8 or that appears twice (a Python dict
/// cannot hold it twice).
[[nodiscard]] inline std::string qmap_json(const quantization_map_t& qmap) {
  if (qmap.empty()) return "{}";
  std::set<std::string_view> seen;
  std::string out = "{";
  for (std::size_t i = 0; i < qmap.size(); ++i) {
    const qmap_entry& e = qmap[i];
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
inline void write_qmap(const std::filesystem::path& path, const quantization_map_t& qmap) {
  const std::string text = qmap_json(qmap);
  detail::replace_file(path, "quantization map", [&](const auto& write) { write(text.data(), text.size()); });
}

/// Parses a quantization map (see the file comment); `source` names it in error messages.
[[nodiscard]] inline quantization_map_t parse_qmap(std::string_view json, std::string_view source = "<memory>") {
  const std::string where = detail::qmap_where(source);
  if (const auto fault = detail::json_text_fault(json, max_qmap_size)) throw qmap_error(where + *fault);
  detail::qmap_sax sax(source);
  if (!nlohmann::json::sax_parse(json.data(), json.data() + json.size(), &sax, nlohmann::json::input_format_t::json,
                                 /*strict=*/true, /*ignore_comments=*/false))
    throw qmap_error(where + "not valid JSON");  // not reached: the handler throws
  return std::move(sax.entries);
}

/// Reads and parses the quantization map at `path`. `file_error` when it cannot be read,
/// `qmap_error` (naming the file) when it is not a quantization map.
[[nodiscard]] inline quantization_map_t read_qmap(const std::filesystem::path& path) {
  const auto [bytes, size, mapped] = detail::read_whole_file(path);
  return parse_qmap(std::string_view(reinterpret_cast<const char*>(bytes.get()), size), path.string());
}

}  // namespace io
QUANTO_END_NAMESPACE
