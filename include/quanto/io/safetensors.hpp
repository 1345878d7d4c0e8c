// quanto/io/safetensors.hpp: a strict safetensors reader and writer.
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
//
// Writing (`serialize_safetensors` / `save_safetensors`) produces what the reference writer
// produces, byte for byte: tensors sorted by descending dtype (the reference's order, widest
// first, so every tensor is aligned to its element size), then by name; a compact header with
// `__metadata__` first (omitted when the map is empty), padded with spaces to a multiple of 8.
// Everything is validated before the file system is touched. `save_safetensors` (whole tensors in
// memory) and `save_safetensors_streamed` (tensors produced one at a time) replace the target
// crash-atomically: temporary file, fsync, rename, fsync of the folder (io/file.hpp).
//
// `safetensors_file::open` maps the file read-only by default (zero-copy: `bytes` are views of
// the page cache) and validates it before returning; `release` drops a tensor's pages again.
#pragma once

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/io/file.hpp"
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

/// One tensor to write: the bytes must be exactly numel(shape) * size_of(dtype), little-endian,
/// row-major. The span is only read during the call.
struct tensor_to_write {
  std::string name;
  ::quanto::dtype dtype{};
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;
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

/// A validated safetensors file held in memory. Immutable; copies share the bytes.
class safetensors_file {
 public:
  /// How `open` brings the bytes in: a read-only memory mapping (zero-copy: tensors are views of
  /// the page cache; the default), or a copy read into an aligned heap buffer.
  enum class load { map, read };

  /// Maps (or reads) the file and validates it. Throws `file_error` if the file cannot be opened
  /// or read, or a `quanto::format_error` subclass naming the file if it is malformed. A mapped
  /// file stays valid after the path is replaced (by `save_safetensors` or anyone who renames
  /// over it) or removed: it keeps the bytes it was opened with.
  static safetensors_file open(const std::filesystem::path& path, load how = load::map) {
    auto file = how == load::map ? detail::map_file(path) : detail::read_whole_file(path);
    auto f = from_bytes(std::move(file.data), file.size, path.string());
    f.mapped_ = file.mapped;
    return f;
  }

  /// Validates a file image already in memory (which this object then owns).
  static safetensors_file parse(std::vector<std::byte> bytes, std::string source_name = "<memory>") {
    auto owner = std::make_shared<std::vector<std::byte>>(std::move(bytes));
    const std::size_t size = owner->size();
    std::shared_ptr<const std::byte> data(owner, owner->data());
    return from_bytes(std::move(data), size, std::move(source_name));
  }

  /// The path given to `open`, or the name given to `parse`; used in every error message.
  [[nodiscard]] const std::string& source_name() const noexcept { return source_; }
  [[nodiscard]] std::uint64_t file_size() const noexcept { return size_; }
  /// N, the size of the JSON header (including its padding).
  [[nodiscard]] std::uint64_t header_size() const noexcept { return header_size_; }
  /// Offset of the data section in the file: 8 + N.
  [[nodiscard]] std::uint64_t data_offset() const noexcept { return 8 + header_size_; }
  [[nodiscard]] std::uint64_t data_size() const noexcept { return size_ - data_offset(); }

  /// Every tensor, in the order of their bytes in the file.
  [[nodiscard]] const std::vector<tensor_info>& tensors() const noexcept { return tensors_; }
  /// The `__metadata__` map (empty if the file has none).
  [[nodiscard]] const std::map<std::string, std::string>& metadata() const noexcept { return metadata_; }

  [[nodiscard]] const tensor_info* find(std::string_view name) const noexcept {
    const auto it = std::lower_bound(by_name_.begin(), by_name_.end(), name,
                                     [this](std::size_t i, std::string_view n) { return tensors_[i].name < n; });
    if (it == by_name_.end() || tensors_[*it].name != name) return nullptr;
    return &tensors_[*it];
  }
  [[nodiscard]] bool contains(std::string_view name) const noexcept { return find(name) != nullptr; }

  /// The tensor called `name`; throws `missing_tensor_error` if there is none.
  [[nodiscard]] const tensor_info& at(std::string_view name) const {
    if (const tensor_info* t = find(name)) return *t;
    throw missing_tensor_error(detail::where(source_) + "no tensor named " + detail::quote(name));
  }

  /// The raw little-endian bytes of a tensor of this file. They may be at any alignment.
  [[nodiscard]] std::span<const std::byte> bytes(const tensor_info& t) const {
    if (t.end < t.begin || t.end > data_size())
      throw offset_error(detail::where(source_) + "tensor " + detail::quote(t.name) +
                         ": this tensor_info does not describe a range of this file");
    const std::byte* data = storage_.get() + data_offset();
    return {data + t.begin, static_cast<std::size_t>(t.end - t.begin)};
  }
  [[nodiscard]] std::span<const std::byte> bytes(std::string_view name) const { return bytes(at(name)); }

  /// True when the bytes are a read-only mapping of the file (`open` with load::map, where the
  /// platform has mmap), false when they are in memory.
  [[nodiscard]] bool is_mapped() const noexcept { return mapped_; }

  /// Done with this tensor for now: on a mapped file, its whole pages leave the process's resident
  /// set (they are read from the file again if the tensor is used later, so views stay valid).
  /// Streaming a file larger than memory tensor by tensor stays within a few tensors' worth of
  /// resident memory this way. Does nothing for a file held in memory.
  void release(const tensor_info& t) const {
    if (!mapped_) return;
    const auto b = bytes(t);
    detail::release_pages(b.data(), b.size());
  }

  /// A copy of the tensor `name` as a vector of T (memcpy, so any alignment in the file is fine).
  /// Throws `missing_tensor_error` if there is no such tensor, `dtype_error` if its dtype is not
  /// `expected` or if sizeof(T) is not the size of `expected`.
  template <class T>
  requires std::is_trivially_copyable_v<T>
  [[nodiscard]] std::vector<T> read_as(std::string_view name, ::quanto::dtype expected) const {
    const tensor_info& t = at(name);
    if (t.dtype != expected)
      throw dtype_error(detail::where(source_) + "tensor " + detail::quote(name) + " has dtype " +
                        std::string(to_string(t.dtype)) + ", not " + std::string(to_string(expected)));
    if (sizeof(T) != size_of(expected))
      throw dtype_error(detail::where(source_) + "tensor " + detail::quote(name) + ": cannot read " +
                        std::string(to_string(expected)) + " (" + std::to_string(size_of(expected)) +
                        " bytes per element) into a type of " + std::to_string(sizeof(T)) + " bytes");
    const auto raw = bytes(t);
    std::vector<T> out(raw.size() / sizeof(T));
    if (!raw.empty()) std::memcpy(out.data(), raw.data(), raw.size());
    return out;
  }

 private:
  safetensors_file() = default;

  static safetensors_file from_bytes(std::shared_ptr<const std::byte> storage, std::size_t size, std::string source) {
    safetensors_file f;
    f.storage_ = std::move(storage);
    f.size_ = size;
    f.source_ = std::move(source);
    f.validate();
    return f;
  }

  /// The one validating parse path (reference `read_metadata`, steps in its order).
  void validate() {
    const auto where = detail::where(source_);
    // 1. the 8-byte prefix
    if (size_ < 8)
      throw header_error(where + "the file has " + std::to_string(size_) +
                         " bytes, fewer than the 8 of the header size");
    const auto* p = reinterpret_cast<const unsigned char*>(storage_.get());
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | p[i];
    // 2.-4. N within the limit and within the file (8 + N cannot overflow once N <= 1e8)
    if (n > max_header_size)
      throw header_error(where + "the header size N = " + std::to_string(n) + " exceeds the limit of " +
                         std::to_string(max_header_size) + " bytes");
    if (n > size_ - 8)
      throw header_error(where + "the header size N = " + std::to_string(n) + " runs past the end of the file (" +
                         std::to_string(size_) + " bytes)");
    header_size_ = n;
    // 5.-6. UTF-8 JSON object, parsed against the schema
    const std::string_view header(reinterpret_cast<const char*>(p + 8), static_cast<std::size_t>(n));
    detail::check_header_bytes(header, source_);
    detail::header_sax sax(source_);
    const bool ok = nlohmann::json::sax_parse(header.data(), header.data() + header.size(), &sax,
                                              nlohmann::json::input_format_t::json, /*strict=*/true,
                                              /*ignore_comments=*/false);
    if (!ok) throw header_error(where + "the header is not valid JSON");  // not reached: sax throws
    tensors_ = std::move(sax.tensors);
    metadata_ = std::move(sax.metadata);

    // 7. offset order (ties, i.e. empty tensors at one offset, keep their JSON order)
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const tensor_info& a, const tensor_info& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    // Duplicate names (the reference silently keeps the last one), checked before the layout so
    // that a duplicate is reported as one even when its ranges also overlap.
    by_name_.resize(tensors_.size());
    for (std::size_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
    std::sort(by_name_.begin(), by_name_.end(),
              [this](std::size_t a, std::size_t b) { return tensors_[a].name < tensors_[b].name; });
    for (std::size_t i = 1; i < by_name_.size(); ++i)
      if (tensors_[by_name_[i]].name == tensors_[by_name_[i - 1]].name)
        throw duplicate_error(where + "the tensor name " + detail::quote(tensors_[by_name_[i]].name) +
                              " appears more than once");
    // 8. exact tiling of the data section (9.-11., size and overflow, were checked per entry)
    const std::uint64_t data_len = size_ - 8 - n;  // safe: n <= size_ - 8
    std::uint64_t running = 0;
    for (const tensor_info& t : tensors_) {
      // appended piece by piece: `"[" + std::to_string(...)` trips GCC 12's false -Wrestrict (PR 105329)
      std::string range = "[";
      range += std::to_string(t.begin);
      range += ", ";
      range += std::to_string(t.end);
      range += "]";
      if (t.begin > running)
        throw offset_error(where + "tensor " + detail::quote(t.name) + ": data_offsets " + range +
                           " leave a gap: bytes " + std::to_string(running) + " to " + std::to_string(t.begin) +
                           " of the data section (file offset " + std::to_string(8 + n + running) +
                           ") belong to no tensor");
      if (t.begin < running)
        throw offset_error(where + "tensor " + detail::quote(t.name) + ": data_offsets " + range +
                           " overlap the previous tensor, which ends at " + std::to_string(running));
      if (t.end > data_len)
        throw offset_error(where + "tensor " + detail::quote(t.name) + ": data_offsets " + range +
                           " run past the end of the data section (" + std::to_string(data_len) + " bytes)");
      running = t.end;
    }
    // 12. nothing after the last tensor (a polyglot file)
    if (running != data_len)
      throw offset_error(where + std::to_string(data_len - running) +
                         " byte(s) after the last tensor, from file offset " + std::to_string(8 + n + running));
  }

  std::shared_ptr<const std::byte> storage_;
  bool mapped_ = false;
  std::uint64_t size_ = 0;
  std::uint64_t header_size_ = 0;
  std::string source_;
  std::vector<tensor_info> tensors_;
  std::vector<std::size_t> by_name_;  // indices into tensors_, sorted by name
  std::map<std::string, std::string> metadata_;
};

namespace detail {

/// The reference writer's dtype order (the declaration order of its `Dtype` enum, checked against
/// safetensors 0.8.0): tensors are written in descending order of this rank, then by name.
constexpr int write_rank(::quanto::dtype t) noexcept {
  using ::quanto::dtype;
  switch (t) {
    case dtype::boolean:
      return 0;
    case dtype::u8:
      return 1;
    case dtype::i8:
      return 2;
    case dtype::f8_e5m2:
      return 3;
    case dtype::f8_e4m3fn:
      return 4;
    case dtype::f8_e4m3fnuz:
      return 5;
    case dtype::i16:
      return 6;
    case dtype::u16:
      return 7;
    case dtype::f16:
      return 8;
    case dtype::bf16:
      return 9;
    case dtype::i32:
      return 10;
    case dtype::u32:
      return 11;
    case dtype::f32:
      return 12;
    case dtype::f64:
      return 13;
    case dtype::i64:
      return 14;
    case dtype::u64:
      return 15;
  }
  return -1;
}

/// Appends `s` as a JSON string, escaped exactly as serde_json escapes (", \, \b \f \n \r \t,
/// other control characters as \u00xx; nothing else).
inline void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t run = 0;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(s.data() + run, i - run);
    run = i + 1;
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
        out += "\\u00";
        append_hex_byte(out, c);
        break;
    }
  }
  out.append(s.data() + run, s.size() - run);
  out += '"';
}

/// Everything a write needs, validated: the padded header and the tensors in file order.
struct write_plan {
  std::string header;
  std::vector<const tensor_to_write*> order;
  std::uint64_t data_size = 0;
};

/// `with_data`: the tensors' `data` spans are what will be written, and must hold exactly
/// shape x dtype bytes; otherwise they are ignored and the sizes come from the shapes.
inline write_plan plan_write(std::span<const tensor_to_write> tensors,
                             const std::map<std::string, std::string>& metadata, const std::string& what,
                             bool with_data = true) {
  write_plan plan;
  plan.order.reserve(tensors.size());
  for (const tensor_to_write& t : tensors) {
    const auto tensor = [&] { return what + "tensor " + quote(t.name) + ": "; };  // only on error
    if (utf8_error_offset(t.name) != npos) throw header_error(tensor() + "the name is not valid UTF-8");
    if (t.name == "__metadata__") throw header_error(tensor() + "the name is reserved for the metadata");
    if (write_rank(t.dtype) < 0)
      throw dtype_error(tensor() + "invalid dtype value " + std::to_string(static_cast<int>(t.dtype)));
    for (std::int64_t d : t.shape)
      if (d < 0) throw size_error(tensor() + "shape " + shape_string(t.shape) + " has a negative dimension");
    const auto nbytes = checked_nbytes(t.shape, t.dtype);
    if (!nbytes)
      throw size_error(tensor() + "shape " + shape_string(t.shape) + " of " + std::string(to_string(t.dtype)) +
                       " overflows (more than 2^63 - 1 bytes)");
    if (with_data && *nbytes != t.data.size())
      throw size_error(tensor() + "shape " + shape_string(t.shape) + " of " + std::string(to_string(t.dtype)) +
                       " needs " + std::to_string(*nbytes) + " bytes, but the data has " +
                       std::to_string(t.data.size()));
    plan.order.push_back(&t);
  }
  {
    std::vector<std::string_view> names;
    names.reserve(tensors.size());
    for (const tensor_to_write& t : tensors) names.push_back(t.name);
    std::sort(names.begin(), names.end());
    if (const auto it = std::adjacent_find(names.begin(), names.end()); it != names.end())
      throw duplicate_error(what + "two tensors are named " + quote(*it));
  }
  for (const auto& [k, v] : metadata)
    if (utf8_error_offset(k) != npos || utf8_error_offset(v) != npos)
      throw header_error(what + "the metadata entry " + quote(k) + " is not valid UTF-8");

  std::stable_sort(plan.order.begin(), plan.order.end(), [](const tensor_to_write* a, const tensor_to_write* b) {
    const int ra = write_rank(a->dtype), rb = write_rank(b->dtype);
    return ra != rb ? ra > rb : a->name < b->name;
  });

  std::string& h = plan.header;
  {  // most headers need no escaping: reserve about what they take, to grow large ones only once
    std::size_t guess = 32;
    for (const auto& [k, v] : metadata) guess += k.size() + v.size() + 8;
    for (const tensor_to_write& t : tensors) guess += t.name.size() + 72 + 21 * t.shape.size();
    h.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(guess, max_header_size + 8)));
  }
  h += '{';
  if (!metadata.empty()) {
    h += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      if (!std::exchange(first, false)) h += ',';
      append_json_string(h, k);
      h += ':';
      append_json_string(h, v);
    }
    h += '}';
    if (h.size() > max_header_size)
      throw header_error(what + "the metadata alone exceeds the header limit of " + std::to_string(max_header_size) +
                         " bytes");
  }
  std::uint64_t offset = 0;
  for (const tensor_to_write* t : plan.order) {
    if (h.size() > 1) h += ',';
    append_json_string(h, t->name);
    h += ":{\"dtype\":\"";
    h += to_string(t->dtype);
    h += "\",\"shape\":[";
    for (std::size_t i = 0; i < t->shape.size(); ++i) {
      if (i != 0) h += ',';
      h += std::to_string(t->shape[i]);
    }
    const std::uint64_t size = *checked_nbytes(t->shape, t->dtype);
    if (size > std::numeric_limits<std::uint64_t>::max() - offset)
      throw size_error(what + "the tensors add up to more than 2^64 bytes");
    h += "],\"data_offsets\":[" + std::to_string(offset) + ',' + std::to_string(offset + size) + "]}";
    offset += size;
    if (h.size() > max_header_size)
      throw header_error(what + "the header would exceed the limit of " + std::to_string(max_header_size) + " bytes");
  }
  h += '}';
  h.append((8 - h.size() % 8) % 8, ' ');
  if (h.size() > max_header_size)  // 1e8 is a multiple of 8: padding never crosses the limit
    throw header_error(what + "the header would be " + std::to_string(h.size()) + " bytes, over the limit of " +
                       std::to_string(max_header_size));
  plan.data_size = offset;
  return plan;
}

inline void store_u64_le(std::byte* out, std::uint64_t v) noexcept {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<std::byte>((v >> (8 * i)) & 0xFFu);
}

template <class Write>
void write_prefix_and_header(const write_plan& plan, const Write& write) {
  std::byte prefix[8];
  store_u64_le(prefix, plan.header.size());
  write(prefix, 8);
  write(plan.header.data(), plan.header.size());
}

template <class Write>
void write_file_image(const write_plan& plan, const Write& write) {
  write_prefix_and_header(plan, write);
  for (const tensor_to_write* t : plan.order) write(t->data.data(), t->data.size());
}

}  // namespace detail

/// The file image of these tensors and metadata, exactly as `save_safetensors` writes it.
/// Throws (before doing anything) `size_error` if a tensor's data is not shape x dtype bytes or a
/// dimension is negative, `duplicate_error` for two tensors with one name, `header_error` for a
/// name or metadata string that is not UTF-8, a tensor named "__metadata__", or a header over
/// 100,000,000 bytes, `dtype_error` for a dtype value outside the enum.
[[nodiscard]] inline std::vector<std::byte> serialize_safetensors(
    std::span<const tensor_to_write> tensors, const std::map<std::string, std::string>& metadata = {}) {
  const detail::write_plan plan = detail::plan_write(tensors, metadata, "cannot serialize safetensors: ");
  if (plan.data_size > std::numeric_limits<std::size_t>::max() - 8 - plan.header.size())
    throw size_error("cannot serialize safetensors: the file would be too large for memory");
  const std::uint64_t total = 8 + plan.header.size() + plan.data_size;
  std::vector<std::byte> out(static_cast<std::size_t>(total));
  detail::store_u64_le(out.data(), plan.header.size());
  std::size_t at = 8;
  if (!plan.header.empty()) std::memcpy(out.data() + at, plan.header.data(), plan.header.size());
  at += plan.header.size();
  for (const tensor_to_write* t : plan.order) {
    if (!t->data.empty()) std::memcpy(out.data() + at, t->data.data(), t->data.size());
    at += t->data.size();
  }
  return out;
}

/// Writes a safetensors file crash-atomically: validates everything first (same errors as
/// `serialize_safetensors`, and nothing is created), writes a temporary file in the same folder,
/// flushes it to the disk, gives it the old file's permissions, renames it over `path` and flushes
/// the folder (io/file.hpp). After a failure or a crash `path` is the old file or the new one,
/// never a torn one; file system failures throw `file_error`.
inline void save_safetensors(const std::filesystem::path& path, std::span<const tensor_to_write> tensors,
                             const std::map<std::string, std::string>& metadata = {}) {
  const detail::write_plan plan =
      detail::plan_write(tensors, metadata, "cannot write safetensors " + detail::quote_path(path) + ": ");
  detail::replace_file(path, "safetensors", [&](const auto& write) { detail::write_file_image(plan, write); });
}

/// The header a file of these tensors would have (the `data` spans are not looked at: every
/// tensor's size comes from its shape and dtype). Same validation and errors as `save_safetensors`.
/// With `layout_of`, callers that produce tensors one at a time can learn each tensor's byte range
/// before writing anything.
[[nodiscard]] inline std::vector<tensor_info> layout_of(std::span<const tensor_to_write> tensors,
                                                        const std::map<std::string, std::string>& metadata = {}) {
  const detail::write_plan plan = detail::plan_write(tensors, metadata, "cannot lay out safetensors: ", false);
  std::vector<tensor_info> out;
  out.reserve(plan.order.size());
  std::uint64_t at = 0;
  for (const tensor_to_write* t : plan.order) {
    const std::uint64_t n = *detail::checked_nbytes(t->shape, t->dtype);
    out.push_back({t->name, t->dtype, t->shape, at, at + n});
    at += n;
  }
  return out;
}

/// Where the bytes of a file being written go, tensor by tensor and in any order: the writer
/// has laid the file out already (see `save_safetensors_with`), so each tensor's range is known
/// and every tensor can be written as soon as it is ready, from any thread.
class tensor_sink {
 public:
  /// Number of tensors, in the order the caller gave them.
  [[nodiscard]] std::size_t size() const noexcept { return ranges_.size(); }
  /// Tensor i's place in the file (begin/end relative to the data section).
  [[nodiscard]] const tensor_info& layout(std::size_t i) const { return ranges_.at(i); }
  /// Appends `n` bytes to tensor i (the i-th of the caller's list). Each tensor is written by one
  /// thread at a time; different tensors may be written concurrently. Writing more than the
  /// tensor's shape x dtype bytes is a `size_error`.
  void write(std::size_t i, const void* data, std::size_t n) {
    const tensor_info& t = ranges_.at(i);
    std::uint64_t& done = written_[i];
    if (n > t.nbytes() - done)
      throw size_error(what_ + "tensor " + detail::quote(t.name) + ": more than its " + std::to_string(t.nbytes()) +
                       " bytes were written");
    constexpr std::size_t chunk = std::size_t{16} << 20;  // a stop request is seen between chunks
    const auto* p = static_cast<const std::byte*>(data);
    for (std::size_t at = 0;;) {
      check_interrupt();
      const std::size_t k = std::min(chunk, n - at);
      file_->write_at(data_offset_ + t.begin + done, p + at, k);
      done += k;
      at += k;
      if (at == n) break;
    }
  }
  /// The bytes of tensor i written so far.
  [[nodiscard]] std::uint64_t written(std::size_t i) const { return written_.at(i); }

 private:
  template <class Fill>
  friend void save_safetensors_with(const std::filesystem::path&, std::span<const tensor_to_write>,
                                    const std::map<std::string, std::string>&, Fill&&);
  tensor_sink(detail::output_file& file, std::uint64_t data_offset, std::vector<tensor_info> ranges, std::string what)
      : file_(&file),
        data_offset_(data_offset),
        ranges_(std::move(ranges)),
        written_(ranges_.size(), 0),
        what_(std::move(what)) {}

  detail::output_file* file_;
  std::uint64_t data_offset_;
  std::vector<tensor_info> ranges_;  // in the caller's order
  std::vector<std::uint64_t> written_;
  std::string what_;
};

/// Writes a safetensors file whose tensors are produced while it is written, for files larger
/// than memory: `tensors` gives every name, dtype and shape up front (their `data` spans are
/// ignored), the header is written, and then `fill(sink)` writes each tensor's bytes through
/// `sink.write(i, data, n)`, in any order and from any number of threads (fill returns when all
/// are written). Every tensor must then be complete (`size_error` otherwise). Crash-atomic and
/// all or nothing like `save_safetensors`: an exception from `fill` propagates and leaves the
/// target as it was.
template <class Fill>
void save_safetensors_with(const std::filesystem::path& path, std::span<const tensor_to_write> tensors,
                           const std::map<std::string, std::string>& metadata, Fill&& fill) {
  const std::string what = "cannot write safetensors " + detail::quote_path(path) + ": ";
  const detail::write_plan plan = detail::plan_write(tensors, metadata, what, false);
  if (!path.has_filename()) throw file_error(what + "not a file name", path);
  std::vector<tensor_info> ranges(tensors.size());
  {
    std::uint64_t at = 0;
    for (const tensor_to_write* t : plan.order) {
      const std::uint64_t n = *detail::checked_nbytes(t->shape, t->dtype);
      ranges[static_cast<std::size_t>(t - tensors.data())] = {t->name, t->dtype, t->shape, at, at + n};
      at += n;
    }
  }
  detail::output_file tmp = detail::output_file::temporary_for(path);
  detail::write_prefix_and_header(plan, [&](const void* d, std::size_t n) { tmp.write(d, n); });
  tensor_sink sink(tmp, 8 + plan.header.size(), std::move(ranges), what);
  fill(sink);
  for (std::size_t i = 0; i < sink.size(); ++i)
    if (sink.written(i) != sink.layout(i).nbytes())
      throw size_error(what + "tensor " + detail::quote(sink.layout(i).name) + ": " + std::to_string(sink.written(i)) +
                       " of its " + std::to_string(sink.layout(i).nbytes()) + " bytes were written");
  detail::install_file(tmp, path);
}

/// `save_safetensors_with` for a producer that writes the tensors one after the other, in the
/// order of `tensors`: `produce(t, write)` writes tensor t's bytes through
/// `write(const void*, std::size_t)`, in as many calls as it likes.
template <class Produce>
void save_safetensors_streamed(const std::filesystem::path& path, std::span<const tensor_to_write> tensors,
                               const std::map<std::string, std::string>& metadata, Produce&& produce) {
  save_safetensors_with(path, tensors, metadata, [&](tensor_sink& sink) {
    for (std::size_t i = 0; i < tensors.size(); ++i)
      produce(tensors[i], [&](const void* data, std::size_t n) { sink.write(i, data, n); });
  });
}

}  // namespace io
QUANTO_END_NAMESPACE
