// quanto/io/safetensors_file.hpp: a validated safetensors file, mapped or in memory.
//
// `safetensors_file::open` maps the file read-only by default (zero-copy: `bytes` are views of
// the page cache) and validates it before returning, in one place (`validate`, the reference
// reader's steps in its order; the header rules are in io/safetensors_header.hpp): there is no
// unvalidated view. `release` drops a tensor's pages again. Data may be at any alignment (nothing
// here reinterprets a pointer into the file: copy out with `read_as`).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/io/file.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/safetensors_header.hpp"
#include "quanto/io/text.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

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
    auto parsed = detail::parse_header(header, source_);
    tensors_ = std::move(parsed.tensors);
    metadata_ = std::move(parsed.metadata);

    // 7. offset order (ties, i.e. empty tensors at one offset, keep their JSON order)
    std::stable_sort(tensors_.begin(), tensors_.end(), [](const tensor_info& a, const tensor_info& b) {
      return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
    });
    // The names are unique: the JSON reader rejects a key given twice (the reference silently
    // keeps the last tensor of a name), before the layout, so a duplicate is reported as one even
    // when its ranges also overlap.
    by_name_.resize(tensors_.size());
    for (std::size_t i = 0; i < by_name_.size(); ++i) by_name_[i] = i;
    std::sort(by_name_.begin(), by_name_.end(),
              [this](std::size_t a, std::size_t b) { return tensors_[a].name < tensors_[b].name; });
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

}  // namespace io
QUANTO_END_NAMESPACE
