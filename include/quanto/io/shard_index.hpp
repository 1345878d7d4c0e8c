// quanto/io/shard_index.hpp: `model.safetensors.index.json`, the index of a sharded Hugging Face
// model folder, read strictly and written as transformers writes it. A sharded folder holds
// `model-00001-of-00003.safetensors`, ... and this index:
//
//   {
//     "metadata": {"total_parameters": 106816, "total_size": 427264},
//     "weight_map": {"lm_head.weight": "model-00003-of-00003.safetensors", ...}
//   }
//
// Reading (`parse_shard_index`): the index is read by the strict JSON reader (io/json.hpp)
// against its schema: a JSON object with a "weight_map" object of strings; "metadata" and unknown
// keys may hold anything, but nesting is limited and a key given twice at any depth is rejected
// (`index_error`, `duplicate_error`). A shard name must be a plain file name inside the folder: not empty, UTF-8,
// no NUL, no `/` or `\`, not `.` or `..`, so not absolute either (`path_error`).
//
// Writing (`shard_index_json`): the index's bytes are transformers' (`json.dumps(index, indent=2,
// sort_keys=True)` and a newline).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/io/json.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/text.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// `model.safetensors.index.json` does not follow its schema: not UTF-8 or not JSON, not an
/// object, no "weight_map" object, a shard name that is not a string, "total_size" that is not a
/// non-negative integer, nesting deeper than `max_index_depth`.
class index_error : public format_error {
 public:
  using format_error::format_error;
};

/// A shard name that would leave the model folder: `..`, an absolute path, a sub-path, an
/// embedded NUL, an empty name, or a symbolic link whose target is outside the folder.
class path_error : public format_error {
 public:
  using format_error::format_error;
};

inline constexpr std::string_view single_file_name = "model.safetensors";
inline constexpr std::string_view index_file_name = "model.safetensors.index.json";
/// The largest index file read (transformers' indexes are about 100 bytes per tensor).
inline constexpr std::uint64_t max_index_size = 100'000'000;
inline constexpr std::size_t max_index_depth = 64;

/// The content of `model.safetensors.index.json`.
struct shard_index {
  std::optional<std::uint64_t> total_size;        ///< "metadata": {"total_size": ...}
  std::optional<std::uint64_t> total_parameters;  ///< "metadata": {"total_parameters": ...}
  /// tensor name -> shard file name, in the order of the file.
  std::vector<std::pair<std::string, std::string>> weight_map;
};

namespace detail {

inline std::string index_where(std::string_view source) { return "shard index " + quote(source, 512) + ": "; }

/// Throws `path_error` unless `name` is a plain file name (see the top of this file).
inline void check_shard_name(std::string_view name, std::string_view tensor, std::string_view source) {
  const auto fail = [&](const char* why) {
    throw path_error(index_where(source) + "tensor " + quote(tensor) + ": the shard name " + quote(name) + " " + why);
  };
  if (name.empty()) fail("is empty");
  if (utf8_error_offset(name) != npos) fail("is not valid UTF-8");
  if (name.find('\0') != std::string_view::npos) fail("holds a NUL byte");
  if (name.find('/') != std::string_view::npos || name.find('\\') != std::string_view::npos)
    fail("is a path, not a file name in the model folder");
  if (name == "." || name == "..") fail("names a folder, not a file in the model folder");
}

/// The index's schema on the strict JSON reader (io/json.hpp; see the top of this file).
class index_schema {
 public:
  explicit index_schema(std::string_view source) : source_(source) {}

  shard_index index;
  bool saw_weight_map = false;

  json_action begin_object() {
    if (at_ == place::none) return enter(place::root);
    if (at_ == place::root && key_ == "weight_map") {
      saw_weight_map = true;
      return enter(place::weight_map);
    }
    if (at_ == place::root && key_ == "metadata") return enter(place::metadata);
    if (at_ == place::weight_map) reject("an object");
    if (at_ == place::metadata) check_not_total("an object");
    return json_action::skip;
  }
  json_action begin_array() {
    if (at_ == place::none) throw index_error(index_where(source_) + "the index must be a JSON object, not an array");
    if (at_ == place::weight_map) reject("an array");
    if (at_ == place::root && (key_ == "weight_map" || key_ == "metadata"))
      throw index_error(index_where(source_) + "\"" + key_ + "\" must be an object");
    if (at_ == place::metadata) check_not_total("an array");
    return json_action::skip;
  }
  void key(std::string& k) { key_ = std::move(k); }  // (the reader has rejected a key given twice)
  void end_object() { at_ = at_ == place::root ? place::none : place::root; }
  void end_array() {}  // (arrays are always skipped)

  void null() { scalar("null"); }
  void boolean(bool) { scalar("a boolean"); }
  void number(const json_number& n) {
    if (n.type == json_number::kind::negative_integer) return scalar("a negative integer");
    if (n.type != json_number::kind::unsigned_integer) return scalar("a floating-point number");
    if (at_ == place::metadata && (key_ == "total_size" || key_ == "total_parameters")) {
      (key_ == "total_size" ? index.total_size : index.total_parameters) = n.u;
      return;
    }
    scalar("an integer");
  }
  void string(std::string& s) {
    if (at_ == place::weight_map) {
      check_shard_name(s, key_, source_);
      index.weight_map.emplace_back(std::move(key_), std::move(s));
      return;
    }
    scalar("a string");
  }

  /// A fault the reader found, in this format's words and error types.
  [[noreturn]] void fail(const json_error& e) const {
    const std::string w = index_where(source_);
    if (e.fault() == json_fault::duplicate_key) throw duplicate_error(w + e.description());
    throw index_error(w + e.description());
  }

 private:
  enum class place { none, root, metadata, weight_map };

  json_action enter(place p) noexcept {
    at_ = p;
    return json_action::enter;
  }
  void scalar(const char* got) const {
    switch (at_) {
      case place::none:
        throw index_error(index_where(source_) + "the index must be a JSON object (got " + got + ")");
      case place::weight_map:
        reject(got);
      case place::root:
        if (key_ == "weight_map" || key_ == "metadata")
          throw index_error(index_where(source_) + "\"" + key_ + "\" must be an object (got " + got + ")");
        return;  // an unknown key's value: ignored
      case place::metadata:
        check_not_total(got);
        return;
    }
  }
  void check_not_total(const char* got) const {
    if (key_ == "total_size" || key_ == "total_parameters")
      throw index_error(index_where(source_) + "\"" + key_ + "\" must be a non-negative integer (got " + got + ")");
  }
  [[noreturn]] void reject(const char* got) const {
    throw index_error(index_where(source_) + "weight_map: the shard of tensor " + quote(key_) +
                      " must be a file name string (got " + got + ")");
  }

  std::string_view source_;
  place at_ = place::none;
  std::string key_;
};

}  // namespace detail

/// Parses the text of a `model.safetensors.index.json` (see the top of this file for the rules).
[[nodiscard]] inline shard_index parse_shard_index(std::string_view json, std::string_view source = "<memory>") {
  detail::index_schema schema(source);
  try {
    read_json(json, schema, json_limits{max_index_size, max_index_depth});
  } catch (const json_error& e) {
    schema.fail(e);
  }
  if (!schema.saw_weight_map) throw index_error(detail::index_where(source) + "no \"weight_map\" object");
  return std::move(schema.index);
}

/// The index as transformers writes it: `json.dumps(index, indent=2, sort_keys=True) + "\n"`
/// (metadata holds the totals that are set; names are escaped as Python's json module does).
[[nodiscard]] inline std::string shard_index_json(const shard_index& index) {
  std::string out = "{\n  \"metadata\": {";
  bool first = true;
  const auto number = [&](const char* key, const std::optional<std::uint64_t>& v) {
    if (!v) return;
    out += std::exchange(first, false) ? "\n    \"" : ",\n    \"";
    out += key;
    out += "\": " + std::to_string(*v);
  };
  number("total_parameters", index.total_parameters);
  number("total_size", index.total_size);
  out += first ? "}" : "\n  }";
  out += ",\n  \"weight_map\": {";
  std::vector<const std::pair<std::string, std::string>*> sorted;
  sorted.reserve(index.weight_map.size());
  for (const auto& e : index.weight_map) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    out += i == 0 ? "\n    " : ",\n    ";
    detail::append_python_json_string(out, sorted[i]->first);
    out += ": ";
    detail::append_python_json_string(out, sorted[i]->second);
  }
  out += sorted.empty() ? "}" : "\n  }";
  out += "\n}\n";
  return out;
}

}  // namespace io
QUANTO_END_NAMESPACE
