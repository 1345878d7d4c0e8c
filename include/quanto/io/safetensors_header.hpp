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
//   * the header is parsed by a schema-directed SAX handler that stops at the first token that
//     breaks the schema; JSON nesting deeper than `max_header_depth` (64; the reference allows
//     128) is rejected;
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
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/io/key_set.hpp"
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

/// Builds the tensor table and the metadata from the header, one token at a time, and throws the
/// typed error at the first token that breaks the schema. Used through nlohmann::json::sax_parse.
class header_sax {
 public:
  using json = nlohmann::json;

  explicit header_sax(std::string_view source) : source_(source) {}

  std::vector<tensor_info> tensors;
  std::map<std::string, std::string> metadata;

  bool null() {
    if (ignored()) return true;
    if (top() == frame_kind::root && pending() == field::metadata) {  // "__metadata__": null
      done_value();
      return true;
    }
    reject("null");
  }
  bool boolean(bool) {
    if (ignored()) return true;
    reject("a boolean");
  }
  bool number_integer(json::number_integer_t v) {  // nlohmann: only negative numbers and "-0"
    if (ignored()) return true;
    reject(v < 0 ? "a negative integer" : "a signed integer (-0)");
  }
  bool number_float(json::number_float_t, const json::string_t&) {
    if (ignored()) return true;
    reject("a floating-point number or an integer too large for 64 bits");
  }
  bool binary(json::binary_t&) { reject("binary data"); }  // not produced by the JSON parser

  bool number_unsigned(json::number_unsigned_t v) {
    if (ignored()) return true;
    switch (top()) {
      case frame_kind::shape:
        if (v > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
          throw size_error(where(source_) + "tensor " + quote(name_) + ": dimension " + std::to_string(v) +
                           " exceeds 2^63 - 1");
        shape_.push_back(static_cast<std::int64_t>(v));
        return true;
      case frame_kind::offsets:
        if (offset_count_ == 2)
          throw header_error(where(source_) + "tensor " + quote(name_) + ": data_offsets has more than 2 elements");
        offsets_[offset_count_++] = v;
        return true;
      default:
        reject("an integer");
    }
  }

  bool string(json::string_t& s) {
    if (ignored()) return true;
    switch (top()) {
      case frame_kind::metadata:
        metadata.emplace(std::move(metadata_key_), std::move(s));
        return true;
      case frame_kind::entry:
        if (pending() == field::dtype) {
          const auto t = dtype_from_string(s);
          if (!t)
            throw dtype_error(where(source_) + "tensor " + quote(name_) + ": dtype " + quote(s) +
                              (is_reference_only_dtype(s)
                                   ? " is a safetensors dtype that quanto does not support"
                                   : " is not a safetensors dtype (the names are case-sensitive)"));
          dtype_ = *t;
          done_value();
          return true;
        }
        reject("a string");
      default:
        reject("a string");
    }
  }

  bool start_object(std::size_t) {
    if (stack_.empty()) {
      push(frame_kind::root);
      return true;
    }
    switch (top()) {
      case frame_kind::root:
        if (pending() == field::metadata) {
          done_value();
          push(frame_kind::metadata);
          return true;
        }
        done_value();  // pending() == field::tensor
        start_entry();
        push(frame_kind::entry);
        return true;
      case frame_kind::entry:
        if (pending() != field::unknown) break;
        done_value();
        push(frame_kind::skip_object);
        return true;
      case frame_kind::skip_object:
      case frame_kind::skip_array:
        push(frame_kind::skip_object);
        return true;
      default:
        break;
    }
    reject("an object");
  }

  bool key(json::string_t& k) {
    switch (top()) {
      case frame_kind::root:
        if (k == "__metadata__") {
          if (seen_metadata_) throw duplicate_error(where(source_) + "the header has two \"__metadata__\" keys");
          seen_metadata_ = true;
          set_pending(field::metadata);
        } else {
          name_ = std::move(k);
          set_pending(field::tensor);
        }
        return true;
      case frame_kind::metadata:
        if (metadata.count(k) != 0)
          throw duplicate_error(where(source_) + "__metadata__ has the key " + quote(k) + " twice");
        metadata_key_ = std::move(k);
        return true;
      case frame_kind::entry: {
        field f = field::unknown;
        bool* seen = nullptr;
        if (k == "dtype") {
          f = field::dtype;
          seen = &seen_dtype_;
        } else if (k == "shape") {
          f = field::shape;
          seen = &seen_shape_;
        } else if (k == "data_offsets") {
          f = field::offsets;
          seen = &seen_offsets_;
        }
        const bool dup = seen ? std::exchange(*seen, true) : !unknown_keys_.insert(k);
        if (dup)
          throw duplicate_error(where(source_) + "tensor " + quote(name_) + ": the field " + quote(k) +
                                " appears twice");
        set_pending(f);
        return true;
      }
      default:  // skip_object
        if (!stack_.back().keys.insert(k))
          throw duplicate_error(where(source_) + "tensor " + quote(name_) +
                                ": a duplicate key inside an unknown field");
        return true;
    }
  }

  bool end_object() {
    if (top() == frame_kind::entry) finish_entry();
    stack_.pop_back();
    return true;
  }

  bool start_array(std::size_t) {
    if (!stack_.empty()) {
      switch (top()) {
        case frame_kind::entry:
          if (pending() == field::shape) {
            done_value();
            shape_.clear();
            push(frame_kind::shape);
            return true;
          }
          if (pending() == field::offsets) {
            done_value();
            offset_count_ = 0;
            push(frame_kind::offsets);
            return true;
          }
          if (pending() == field::unknown) {
            done_value();
            push(frame_kind::skip_array);
            return true;
          }
          break;
        case frame_kind::skip_object:
        case frame_kind::skip_array:
          push(frame_kind::skip_array);
          return true;
        default:
          break;
      }
    }
    reject("an array");
  }

  bool end_array() {
    if (top() == frame_kind::offsets && offset_count_ != 2)
      throw header_error(where(source_) + "tensor " + quote(name_) + ": data_offsets has " +
                         std::to_string(offset_count_) + " elements, it needs exactly 2");
    stack_.pop_back();
    return true;
  }

  bool parse_error(std::size_t position, const std::string&, const json::exception& ex) {
    throw header_error(where(source_) + "the header is not valid JSON (near header byte " + std::to_string(position) +
                       "): " + quote(ex.what(), 240));
  }

 private:
  enum class frame_kind { none, root, metadata, entry, shape, offsets, skip_object, skip_array };
  // What the next value in a root or entry frame must be (set by the key before it).
  enum class field { none, metadata, tensor, dtype, shape, offsets, unknown };

  struct frame {
    frame_kind kind;
    field pending = field::none;
    json_key_set keys;  // skip_object frames only: to reject duplicate keys there too
  };

  frame_kind top() const noexcept { return stack_.empty() ? frame_kind::none : stack_.back().kind; }
  field pending() const noexcept { return stack_.back().pending; }
  void set_pending(field f) noexcept { stack_.back().pending = f; }
  void done_value() noexcept { stack_.back().pending = field::none; }

  void push(frame_kind k) {
    // (the root object is depth 1, a tensor entry 2, its shape 3)
    if (stack_.size() >= max_header_depth)
      throw header_error(where(source_) + "the header nests JSON deeper than " + std::to_string(max_header_depth) +
                         " levels");
    stack_.push_back(frame{k, field::none, {}});
  }

  /// True (and the value consumed) when the value is, or is inside, an unknown field's value.
  bool ignored() noexcept {
    switch (top()) {
      case frame_kind::skip_object:
      case frame_kind::skip_array:
        return true;
      case frame_kind::entry:
        if (pending() != field::unknown) return false;
        done_value();
        return true;
      default:
        return false;
    }
  }

  /// A value that is not what the schema wants here: says what was wanted and what came.
  [[noreturn]] void reject(const char* got) const {
    std::string want;
    switch (top()) {
      case frame_kind::none:
        want = "the header must be a JSON object";
        break;
      case frame_kind::root:
        want = pending() == field::metadata ? std::string("__metadata__ must be an object of strings")
                                            : "tensor " + quote(name_) + ": the entry must be an object";
        break;
      case frame_kind::metadata:
        want =
            "__metadata__ must map strings to strings, but the value of " + quote(metadata_key_) + " is not a string";
        break;
      case frame_kind::entry:
        want = "tensor " + quote(name_) + ": " +
               (pending() == field::dtype   ? "dtype must be a string"
                : pending() == field::shape ? "shape must be an array of non-negative integers"
                                            : "data_offsets must be an array of 2 non-negative integers");
        break;
      case frame_kind::shape:
        want = "tensor " + quote(name_) + ": shape must hold non-negative integers";
        break;
      case frame_kind::offsets:
        want = "tensor " + quote(name_) + ": data_offsets must hold non-negative integers";
        break;
      default:
        want = "unexpected value";
        break;
    }
    throw header_error(where(source_) + want + " (got " + got + ")");
  }

  void start_entry() {
    seen_dtype_ = seen_shape_ = seen_offsets_ = false;
    shape_.clear();
    offset_count_ = 0;
    unknown_keys_.clear();
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
  std::vector<frame> stack_;
  bool seen_metadata_ = false;
  std::string metadata_key_;
  // the tensor entry being read
  std::string name_;
  ::quanto::dtype dtype_{};
  std::vector<std::int64_t> shape_;
  std::uint64_t offsets_[2] = {0, 0};
  std::size_t offset_count_ = 0;
  bool seen_dtype_ = false, seen_shape_ = false, seen_offsets_ = false;
  json_key_set unknown_keys_;
};

/// Checks the header bytes before the JSON parser sees them: UTF-8, no NUL (nlohmann would stop
/// at one as if the input ended there), and an object as the first non-whitespace value (nlohmann
/// would skip a byte-order mark, which the reference rejects).
inline void check_header_bytes(std::string_view header, std::string_view source) {
  if (const auto bad = utf8_error_offset(header); bad != npos)
    throw header_error(where(source) + "the header is not valid UTF-8 (header byte " + std::to_string(bad) +
                       ", file offset " + std::to_string(bad + 8) + ")");
  if (const auto nul = header.find('\0'); nul != std::string_view::npos)
    throw header_error(where(source) + "the header holds a NUL byte (header byte " + std::to_string(nul) +
                       ", file offset " + std::to_string(nul + 8) + ")");
  const auto first = header.find_first_not_of(" \t\n\r");
  if (first == std::string_view::npos) throw header_error(where(source) + "the header is empty");
  if (header[first] != '{') {
    std::string got = "byte 0x";
    append_hex_byte(got, static_cast<unsigned char>(header[first]));
    throw header_error(where(source) + "the header must be a JSON object, but it starts with " + got +
                       (header.substr(first, 3) == "\xEF\xBB\xBF" ? " (a byte-order mark)" : "") + " at header byte " +
                       std::to_string(first));
  }
}

}  // namespace detail

}  // namespace io
QUANTO_END_NAMESPACE
