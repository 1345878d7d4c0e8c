// quanto/io/safetensors_header.hpp: the safetensors header: what it describes (`tensor_info`, the
// limits, the checked size arithmetic) and its strict parser, shared by the file view
// (io/safetensors_file.hpp) and the writer (io/safetensors_writer.hpp).
//
// Format (https://github.com/huggingface/safetensors, README "Format"):
//   [8 bytes]  N, u64 little-endian: the size of the header
//   [N bytes]  the header: a UTF-8 JSON object
//              {"__metadata__": {"k": "v", ...},
//               "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}, ...}
//   [rest]     the data section; BEGIN/END are relative to its start, END is one past the end.
//
// Reading (`safetensors_file::open` / `parse`) validates the whole file in one place before it
// returns; there is no unvalidated view. It enforces every rule of the reference reader
// (safetensors/src/tensor.rs, `read_metadata` + `Metadata::validate`) and is stricter where the
// reference is loose. The differences from the reference, all deliberate:
//   * a duplicate key at any level is rejected (`duplicate_error`): a tensor name (the reference
//     keeps the last one), a metadata key (the reference keeps the last one), a field of a tensor
//     entry, or a key inside an ignored unknown field;
//   * the header is read by the strict JSON reader (io/json.hpp) against a schema that stops at
//     the first token that breaks it; JSON nesting deeper than `max_header_depth` (64; the
//     reference allows 128) is rejected;
//   * a dimension above 2^63 - 1, or a shape whose product (zero dimensions counted as 1) times
//     the element size exceeds 2^63 - 1 bytes, is rejected (`size_error`) even when another
//     dimension is 0 and the tensor is empty: the reference accepts e.g. [0, 2^64 - 1], whose
//     strides no consumer can compute;
//   * dtypes that safetensors knows but quanto::dtype does not (F4, F6_E2M3, F6_E3M2, F8_E8M0,
//     F8_E5M2FNUZ, C64) are rejected with a `dtype_error` that says so.
// Accepted as the reference accepts them: leading and trailing JSON whitespace around the object
// (but no NUL padding and no byte-order mark), tensors listed in any JSON order, unknown fields in
// a tensor entry (ignored), `"__metadata__": null` (no metadata), empty tensor names, escaped NULs
// in names, rank-0 tensors (one element), tensors with a zero dimension (BEGIN == END), and data
// at any alignment (nothing here reinterprets a pointer into the file: copy out with `read_as`).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/io/json.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/text.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// The largest header (N) a file may declare, as in the reference (decimal 100 MB).
inline constexpr std::uint64_t max_header_size = 100'000'000;

/// The deepest JSON nesting the header may have. A well-formed header has depth 3 (the object,
/// a tensor entry, its shape); deeper nesting can only occur inside ignored unknown fields.
inline constexpr std::size_t max_header_depth = 64;

/// One tensor of a file, as its header describes it (validated).
struct tensor_info {
  std::string name;
  ::quanto::dtype dtype{};
  std::vector<std::int64_t> shape;  ///< row-major; empty for a rank-0 tensor
  std::uint64_t begin = 0;          ///< byte offsets relative to the start of the data section
  std::uint64_t end = 0;

  /// Number of elements: the product of the shape (1 for rank 0, 0 with a zero dimension).
  [[nodiscard]] std::uint64_t numel() const noexcept {
    std::uint64_t n = 1;
    for (std::int64_t d : shape) n *= static_cast<std::uint64_t>(d);
    return n;
  }
  /// Number of bytes: END - BEGIN, which the reader has checked equals numel() * size_of(dtype).
  [[nodiscard]] std::uint64_t nbytes() const noexcept { return end - begin; }
};

namespace detail {

inline std::string shape_string(std::span<const std::int64_t> shape) {
  std::string out = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i == 16) {
      out += ", ... (rank " + std::to_string(shape.size()) + ")";
      break;
    }
    if (i != 0) out += ", ";
    out += std::to_string(shape[i]);
  }
  return out + "]";
}

/// Byte size of a shape, with every intermediate product checked. Zero dimensions are counted as
/// 1 in the check, so that every stride of the tensor fits in int64 even when it is empty.
/// nullopt: a negative dimension, or a product that exceeds 2^63 - 1 bytes.
inline std::optional<std::uint64_t> checked_nbytes(std::span<const std::int64_t> shape, ::quanto::dtype t) noexcept {
  constexpr auto limit = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  std::uint64_t product = size_of(t);  // over the non-zero dimensions, times the element size
  bool empty = false;
  for (std::int64_t d : shape) {
    if (d < 0) return std::nullopt;
    if (d == 0) {
      empty = true;
      continue;
    }
    const auto u = static_cast<std::uint64_t>(d);
    if (product > limit / u) return std::nullopt;
    product *= u;
  }
  return empty ? 0 : product;
}

/// safetensors dtype strings the reference reader accepts but quanto::dtype does not have.
inline bool is_reference_only_dtype(std::string_view s) noexcept {
  constexpr std::string_view names[] = {"F4", "F6_E2M3", "F6_E3M2", "F8_E8M0", "C64", "F8_E5M2FNUZ"};
  return std::find(std::begin(names), std::end(names), s) != std::end(names);
}

/// Prefix of every message about a file or an in-memory buffer.
inline std::string where(std::string_view source) { return "safetensors " + quote(source, 512) + ": "; }

/// The header's schema on the strict JSON reader (io/json.hpp): builds the tensor table and the
/// metadata one event at a time, and throws the typed error at the first event that breaks it.
class header_schema {
 public:
  explicit header_schema(std::string_view source) : source_(source) {}

  std::vector<tensor_info> tensors;
  std::map<std::string, std::string> metadata;

  json_action begin_object() {
    switch (at_) {
      case place::none:
        at_ = place::root;
        return json_action::enter;
      case place::root:
        if (pending_ == field::metadata) {
          pending_ = field::none;
          at_ = place::metadata;
          return json_action::enter;
        }
        pending_ = field::none;  // field::tensor
        start_entry();
        at_ = place::entry;
        return json_action::enter;
      case place::entry:
        if (pending_ != field::unknown) break;
        pending_ = field::none;
        return json_action::skip;
      default:
        break;
    }
    reject("an object");
  }

  json_action begin_array() {
    if (at_ == place::entry) {
      const field f = std::exchange(pending_, field::none);
      if (f == field::unknown) return json_action::skip;
      if (f == field::shape) {
        shape_.clear();
        at_ = place::shape;
        return json_action::enter;
      }
      if (f == field::offsets) {
        offset_count_ = 0;
        at_ = place::offsets;
        return json_action::enter;
      }
      pending_ = f;  // (for the message)
    }
    reject("an array");
  }

  void key(std::string& k) {  // (the reader has rejected a key given twice)
    switch (at_) {
      case place::root:
        if (k == "__metadata__") {
          pending_ = field::metadata;
        } else {
          name_ = std::move(k);
          pending_ = field::tensor;
        }
        return;
      case place::metadata:
        metadata_key_ = std::move(k);
        return;
      default:  // place::entry
        if (k == "dtype") {
          pending_ = field::dtype;
          seen_dtype_ = true;
        } else if (k == "shape") {
          pending_ = field::shape;
          seen_shape_ = true;
        } else if (k == "data_offsets") {
          pending_ = field::offsets;
          seen_offsets_ = true;
        } else {
          pending_ = field::unknown;
        }
        return;
    }
  }

  void end_object() {
    if (at_ == place::entry) finish_entry();
    at_ = at_ == place::root ? place::none : place::root;
  }

  void end_array() {
    if (at_ == place::offsets && offset_count_ != 2)
      throw header_error(where(source_) + "tensor " + quote(name_) + ": data_offsets has " +
                         std::to_string(offset_count_) + " elements, it needs exactly 2");
    at_ = place::entry;
  }

  void null() {
    if (ignored()) return;
    if (at_ == place::root && pending_ == field::metadata) {  // "__metadata__": null
      pending_ = field::none;
      return;
    }
    reject("null");
  }
  void boolean(bool) {
    if (ignored()) return;
    reject("a boolean");
  }

  void number(const json_number& n) {
    if (ignored()) return;
    if (n.type == json_number::kind::negative_integer) reject(n.i < 0 ? "a negative integer" : "a signed integer (-0)");
    if (n.type != json_number::kind::unsigned_integer)
      reject("a floating-point number or an integer too large for 64 bits");
    const std::uint64_t v = n.u;
    switch (at_) {
      case place::shape:
        if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          throw size_error(where(source_) + "tensor " + quote(name_) + ": dimension " + std::to_string(v) +
                           " exceeds 2^63 - 1");
        shape_.push_back(static_cast<std::int64_t>(v));
        return;
      case place::offsets:
        if (offset_count_ == 2)
          throw header_error(where(source_) + "tensor " + quote(name_) + ": data_offsets has more than 2 elements");
        offsets_[offset_count_++] = v;
        return;
      default:
        reject("an integer");
    }
  }

  void string(std::string& s) {
    if (ignored()) return;
    if (at_ == place::metadata) {
      metadata.emplace(std::move(metadata_key_), std::move(s));
      return;
    }
    if (at_ == place::entry && pending_ == field::dtype) {
      const auto t = dtype_from_string(s);
      if (!t)
        throw dtype_error(where(source_) + "tensor " + quote(name_) + ": dtype " + quote(s) +
                          (is_reference_only_dtype(s) ? " is a safetensors dtype that quanto does not support"
                                                      : " is not a safetensors dtype (the names are case-sensitive)"));
      dtype_ = *t;
      pending_ = field::none;
      return;
    }
    reject("a string");
  }

  /// A fault the reader found, in this format's words and error types.
  [[noreturn]] void fail(const json_error& e) const {
    const std::string w = where(source_);
    const std::string at = std::to_string(e.offset()), file_at = std::to_string(e.offset() + 8);
    switch (e.fault()) {
      case json_fault::not_utf8:
        throw header_error(w + "the header is not valid UTF-8 (header byte " + at + ", file offset " + file_at + ")");
      case json_fault::nul_byte:
        throw header_error(w + "the header holds a NUL byte (header byte " + at + ", file offset " + file_at + ")");
      case json_fault::empty:
        throw header_error(w + "the header is empty");
      case json_fault::byte_order_mark:
      case json_fault::not_an_object: {
        const auto c = static_cast<unsigned char>(header_[e.offset()]);
        std::string got = "byte 0x";
        append_hex_byte(got, c);
        throw header_error(w + "the header must be a JSON object, but it starts with " + got +
                           (header_.substr(e.offset(), 3) == "\xEF\xBB\xBF" ? " (a byte-order mark)" : "") +
                           " at header byte " + at);
      }
      case json_fault::syntax:
        throw header_error(w + "the header is not valid JSON (near header byte " + std::to_string(e.offset() + 1) +
                           "): " + quote(e.detail(), 240));
      case json_fault::too_deep:
        throw header_error(w + "the header nests JSON deeper than " + std::to_string(max_header_depth) + " levels");
      case json_fault::duplicate_key:
        if (e.in_skipped())
          throw duplicate_error(w + "tensor " + quote(name_) + ": a duplicate key inside an unknown field");
        if (at_ == place::entry)
          throw duplicate_error(w + "tensor " + quote(name_) + ": the field " + quote(e.detail()) + " appears twice");
        if (at_ == place::metadata)
          throw duplicate_error(w + "__metadata__ has the key " + quote(e.detail()) + " twice");
        if (e.detail() == "__metadata__") throw duplicate_error(w + "the header has two \"__metadata__\" keys");
        throw duplicate_error(w + "the tensor name " + quote(e.detail()) + " appears more than once");
      default:  // too_large: N was checked against the same limit before
        throw header_error(w + "the header " + e.description());
    }
  }

  void set_header(std::string_view header) noexcept { header_ = header; }

 private:
  // Where the reader is: the header object, `__metadata__`, a tensor entry, its shape or offsets.
  enum class place { none, root, metadata, entry, shape, offsets };
  // What the next value in the header object or an entry must be (set by the key before it).
  enum class field { none, metadata, tensor, dtype, shape, offsets, unknown };

  /// True (and the value consumed) when a scalar is the value of an entry's unknown field.
  bool ignored() noexcept {
    if (at_ != place::entry || pending_ != field::unknown) return false;
    pending_ = field::none;
    return true;
  }

  /// A value that is not what the schema wants here: says what was wanted and what came.
  [[noreturn]] void reject(const char* got) const {
    std::string want;
    switch (at_) {
      case place::none:
        want = "the header must be a JSON object";
        break;
      case place::root:
        want = pending_ == field::metadata ? std::string("__metadata__ must be an object of strings")
                                           : "tensor " + quote(name_) + ": the entry must be an object";
        break;
      case place::metadata:
        want =
            "__metadata__ must map strings to strings, but the value of " + quote(metadata_key_) + " is not a string";
        break;
      case place::entry:
        want = "tensor " + quote(name_) + ": " +
               (pending_ == field::dtype   ? "dtype must be a string"
                : pending_ == field::shape ? "shape must be an array of non-negative integers"
                                           : "data_offsets must be an array of 2 non-negative integers");
        break;
      case place::shape:
        want = "tensor " + quote(name_) + ": shape must hold non-negative integers";
        break;
      case place::offsets:
        want = "tensor " + quote(name_) + ": data_offsets must hold non-negative integers";
        break;
    }
    throw header_error(where(source_) + want + " (got " + got + ")");
  }

  void start_entry() {
    seen_dtype_ = seen_shape_ = seen_offsets_ = false;
    shape_.clear();
    offset_count_ = 0;
  }

  void finish_entry() {
    const char* missing = !seen_dtype_ ? "dtype" : !seen_shape_ ? "shape" : !seen_offsets_ ? "data_offsets" : nullptr;
    if (missing) throw header_error(where(source_) + "tensor " + quote(name_) + ": missing field '" + missing + "'");
    const auto nbytes = checked_nbytes(shape_, dtype_);
    if (!nbytes)
      throw size_error(where(source_) + "tensor " + quote(name_) + ": shape " + shape_string(shape_) + " of " +
                       std::string(to_string(dtype_)) + " overflows (more than 2^63 - 1 bytes)");
    const std::uint64_t b = offsets_[0], e = offsets_[1];
    if (e < b)
      throw offset_error(where(source_) + "tensor " + quote(name_) + ": data_offsets [" + std::to_string(b) + ", " +
                         std::to_string(e) + "] ends before it begins");
    if (e - b != *nbytes)
      throw size_error(where(source_) + "tensor " + quote(name_) + ": shape " + shape_string(shape_) + " of " +
                       std::string(to_string(dtype_)) + " needs " + std::to_string(*nbytes) +
                       " bytes, but data_offsets [" + std::to_string(b) + ", " + std::to_string(e) + "] span " +
                       std::to_string(e - b));
    tensors.push_back(tensor_info{std::move(name_), dtype_, std::move(shape_), b, e});
    name_.clear();
    shape_.clear();
  }

  std::string_view source_;
  std::string_view header_;
  place at_ = place::none;
  field pending_ = field::none;
  std::string metadata_key_;
  // the tensor entry being read
  std::string name_;
  ::quanto::dtype dtype_{};
  std::vector<std::int64_t> shape_;
  std::uint64_t offsets_[2] = {0, 0};
  std::size_t offset_count_ = 0;
  bool seen_dtype_ = false, seen_shape_ = false, seen_offsets_ = false;
};

/// The tensors and the metadata of a header (its N bytes, padding included), validated against
/// the schema; `source` names the file in the messages.
struct parsed_header {
  std::vector<tensor_info> tensors;  ///< in the order of the JSON text
  std::map<std::string, std::string> metadata;
};
inline parsed_header parse_header(std::string_view header, std::string_view source) {
  header_schema schema(source);
  schema.set_header(header);
  try {
    read_json(header, schema, json_limits{max_header_size, max_header_depth, /*object_only=*/true});
  } catch (const json_error& e) {
    schema.fail(e);
  }
  return {std::move(schema.tensors), std::move(schema.metadata)};
}

}  // namespace detail

}  // namespace io
QUANTO_END_NAMESPACE
