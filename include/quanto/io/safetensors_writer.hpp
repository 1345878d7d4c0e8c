// quanto/io/safetensors_writer.hpp: safetensors files written as the reference writer writes them.
//
// Writing (`serialize_safetensors` / `save_safetensors`) produces what the reference writer
// produces, byte for byte: tensors sorted by descending dtype (the reference's order, widest
// first, so every tensor is aligned to its element size), then by name; a compact header with
// `__metadata__` first (omitted when the map is empty), padded with spaces to a multiple of 8.
// Everything is validated before the file system is touched. `save_safetensors` (whole tensors in
// memory) and `save_safetensors_streamed` (tensors produced one at a time) replace the target
// crash-atomically: temporary file, fsync, rename, fsync of the folder (io/file.hpp).
// `save_safetensors_with` lays the file out first and lets its tensors be written in any order,
// from any thread (`tensor_sink`), for files larger than memory.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/io/file.hpp"
#include "quanto/io/json.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/safetensors_header.hpp"
#include "quanto/io/text.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// One tensor to write: the bytes must be exactly numel(shape) * size_of(dtype), little-endian,
/// row-major. The span is only read during the call.
struct tensor_to_write {
  std::string name;
  ::quanto::dtype dtype{};
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;
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
