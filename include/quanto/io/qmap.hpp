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
// The text is untrusted: it is read by the strict JSON reader (io/json.hpp) against a schema
// that stops at the first token that breaks it, never builds a DOM and holds only the entries and
// the keys of the objects still open. Also rejected (`qmap_error`): more than `max_qmap_size` bytes, bytes that
// are not UTF-8, a NUL byte (a JSON parser would take it for the end of the text), a byte-order
// mark (Python's json.load rejects it too), and nesting deeper than `max_qmap_depth`.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/quantization_map.hpp"
#include "quanto/io/file.hpp"
#include "quanto/io/json.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/text.hpp"

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

/// The quantization map's schema on the strict JSON reader (io/json.hpp): builds the map one
/// event at a time and throws `qmap_error` at the first that breaks it (see the top of this file).
class qmap_schema {
 public:
  explicit qmap_schema(std::string_view source) : source_(source) {}

  quantization_map_t entries;

  json_action begin_object() {
    if (at_ == place::none) {
      at_ = place::root;
      return json_action::enter;
    }
    if (skipped()) return json_action::skip;
    if (at_ == place::root) {  // a module's entry
      has_weights_ = has_activations_ = false;
      pending_ = field::none;
      at_ = place::entry;
      return json_action::enter;
    }
    reject("object");
  }
  json_action begin_array() {
    if (skipped()) return json_action::skip;
    reject("array");
  }

  void key(std::string& k) {  // (the reader has rejected a key given twice)
    if (at_ == place::root) {
      module_ = std::move(k);
      pending_ = field::module;
    } else if (k == "weights") {
      pending_ = field::weights;
      has_weights_ = true;
    } else if (k == "activations") {
      pending_ = field::activations;
      has_activations_ = true;
    } else {
      pending_ = field::unknown;
    }
  }

  void end_object() {
    if (at_ == place::root) {
      at_ = place::none;
      return;
    }
    const char* missing = !has_weights_ ? "weights" : !has_activations_ ? "activations" : nullptr;
    if (missing) throw qmap_error(qmap_where(source_) + "module " + quote(module_) + ": no \"" + missing + "\" key");
    entries.push_back(qmap_entry{std::move(module_), std::move(weights_), std::move(activations_)});
    module_.clear();
    weights_.clear();
    activations_.clear();
    pending_ = field::none;
    at_ = place::root;
  }
  void end_array() {}  // (arrays are always skipped)

  // the type names of nlohmann's DOM, which the messages have always used
  void null() { scalar("null"); }
  void boolean(bool) { scalar("boolean"); }
  void number(const json_number&) { scalar("number"); }

  void string(std::string& s) {
    if (skipped()) return;
    if (at_ == place::entry) {  // the value of "weights" or "activations"
      const bool activations = pending_ == field::activations;
      check_qmap_qtype(s, activations, module_, source_);
      (activations ? activations_ : weights_) = std::move(s);
      pending_ = field::none;
      return;
    }
    reject("string");
  }

  /// A fault the reader found, in this format's words.
  [[noreturn]] void fail(const json_error& e) const {
    const std::string w = qmap_where(source_);
    switch (e.fault()) {
      case json_fault::syntax:
        throw qmap_error(w + "not valid JSON: " + quote(e.detail(), 240));
      case json_fault::too_deep:
        throw qmap_error(w + e.description() +
                         (module_.empty() ? std::string() : " (in module " + quote(module_) + ")"));
      case json_fault::duplicate_key:
        throw qmap_error(w + e.description() +
                         (e.depth() <= 1 ? std::string() : " (in the entry of module " + quote(module_) + ")"));
      default:
        throw qmap_error(w + e.description());
    }
  }

 private:
  enum class place : std::uint8_t { none, root, entry };
  // What the next value of the map or an entry is (set by the key before it).
  enum class field : std::uint8_t { none, module, weights, activations, unknown };

  /// True (and the value consumed) when the value is that of an entry's ignored key.
  bool skipped() noexcept {
    if (at_ != place::entry || pending_ != field::unknown) return false;
    pending_ = field::none;
    return true;
  }

  void scalar(const char* type) {
    if (skipped()) return;
    reject(type);
  }

  /// A value the schema does not allow here (`type` is what came).
  [[noreturn]] void reject(const char* type) const {
    const std::string where = qmap_where(source_);
    if (at_ == place::none) throw qmap_error(where + "expected a JSON object of modules, got " + type);
    if (at_ == place::root)
      throw qmap_error(where + "module " + quote(module_) + ": expected an object with \"weights\" and " +
                       "\"activations\", got " + type);
    throw qmap_error(where + "module " + quote(module_) + ": \"" +
                     (pending_ == field::activations ? "activations" : "weights") +
                     "\" must be a qtype name or \"none\", got " + type);
  }

  std::string_view source_;
  place at_ = place::none;
  field pending_ = field::none;
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
  detail::qmap_schema schema(source);
  try {
    read_json(json, schema, json_limits{max_qmap_size, max_qmap_depth});
  } catch (const json_error& e) {
    schema.fail(e);
  }
  return std::move(schema.entries);
}

/// Reads and parses the quantization map at `path`. `file_error` when it cannot be read,
/// `qmap_error` (naming the file) when it is not a quantization map.
[[nodiscard]] inline quantization_map_t read_qmap(const std::filesystem::path& path) {
  const auto [bytes, size, mapped] = detail::read_whole_file(path);
  return parse_qmap(std::string_view(reinterpret_cast<const char*>(bytes.get()), size), path.string());
}

}  // namespace io
QUANTO_END_NAMESPACE
