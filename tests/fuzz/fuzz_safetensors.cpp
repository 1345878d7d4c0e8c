// libFuzzer target: quanto::io::safetensors_file::parse. Only quanto::error may leave the parser.
// An accepted file must describe exactly what the reader promises: every tensor's bytes lie inside
// the data section and are numel x dtype size long, the ranges are pairwise disjoint and tile the
// data section, names are unique, every view reads the input's own bytes (its first and last byte
// are read, so ASan checks them), and the writer rewrites the file into one the reader gives back
// the same tensors from.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "quanto/io/safetensors.hpp"

namespace {

using namespace quanto;

// numel x element size with every product checked; nullopt when it does not fit in 64 bits
std::optional<std::uint64_t> expected_bytes(const io::tensor_info& t) {
  std::uint64_t n = size_of(t.dtype);
  for (const std::int64_t d : t.shape) {
    QUANTO_FUZZ_CHECK(d >= 0);
    if (__builtin_mul_overflow(n, static_cast<std::uint64_t>(d), &n)) return std::nullopt;
  }
  return n;
}

// A copy through read_as<T> for the T of the dtype's size; must equal the raw bytes.
template <class T>
void check_read_as(const io::safetensors_file& f, const io::tensor_info& t, std::span<const std::byte> raw) {
  const std::vector<T> copy = f.read_as<T>(t.name, t.dtype);
  QUANTO_FUZZ_CHECK(copy.size() * sizeof(T) == raw.size());
  QUANTO_FUZZ_CHECK(raw.empty() || std::memcmp(copy.data(), raw.data(), raw.size()) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::byte> bytes(size);
  if (size != 0) std::memcpy(bytes.data(), data, size);
  std::optional<io::safetensors_file> file;
  try {
    file.emplace(io::safetensors_file::parse(std::move(bytes), "fuzz_safetensors"));
  } catch (const quanto::error&) {
    return 0;  // a typed rejection; anything else escapes and crashes the fuzzer
  }
  const io::safetensors_file& f = *file;
  QUANTO_FUZZ_CHECK(f.file_size() == size);
  QUANTO_FUZZ_CHECK(f.header_size() <= io::max_header_size);
  QUANTO_FUZZ_CHECK(f.data_offset() == 8 + f.header_size() && f.data_offset() <= size);
  QUANTO_FUZZ_CHECK(f.data_offset() + f.data_size() == size);
  const std::uint64_t data_start = f.data_offset();

  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  std::set<std::string_view> names;
  for (const io::tensor_info& t : f.tensors()) {
    QUANTO_FUZZ_CHECK(names.insert(t.name).second);
    QUANTO_FUZZ_CHECK(t.begin <= t.end && t.end <= f.data_size());
    const auto want = expected_bytes(t);
    QUANTO_FUZZ_CHECK(want.has_value() && *want == t.end - t.begin && t.nbytes() == *want);
    QUANTO_FUZZ_CHECK(f.find(t.name) == &t && &f.at(t.name) == &t);
    const std::span<const std::byte> view = f.bytes(t);
    QUANTO_FUZZ_CHECK(view.size() == t.nbytes());
    if (!view.empty()) {  // the view reads the input's own bytes, first and last
      QUANTO_FUZZ_CHECK(quanto_fuzz::touch(view.data()) == data[data_start + t.begin]);
      QUANTO_FUZZ_CHECK(quanto_fuzz::touch(view.data() + view.size() - 1) == data[data_start + t.end - 1]);
    }
    switch (size_of(t.dtype)) {
      case 1:
        check_read_as<std::uint8_t>(f, t, view);
        break;
      case 2:
        check_read_as<std::uint16_t>(f, t, view);
        break;
      case 4:
        check_read_as<std::uint32_t>(f, t, view);
        break;
      case 8:
        check_read_as<std::uint64_t>(f, t, view);
        break;
      default:
        QUANTO_FUZZ_FAIL("a dtype of an unexpected size");
    }
    ranges.emplace_back(t.begin, t.end);
  }
  // pairwise disjoint, and together exactly the data section (no gap, no trailing byte)
  std::sort(ranges.begin(), ranges.end());
  std::uint64_t running = 0;
  for (const auto& [b, e] : ranges) {
    QUANTO_FUZZ_CHECK(b == running);
    running = e;
  }
  QUANTO_FUZZ_CHECK(running == f.data_size());
  for (const auto& [k, v] : f.metadata()) {
    if (!k.empty()) (void)quanto_fuzz::touch(&k.back());
    if (!v.empty()) (void)quanto_fuzz::touch(&v.back());
  }

  // The writer takes what the reader gave and writes a file the reader gives back unchanged.
  std::vector<io::tensor_to_write> out;
  for (const io::tensor_info& t : f.tensors()) out.push_back({t.name, t.dtype, t.shape, f.bytes(t)});
  std::vector<std::byte> image;
  try {
    image = io::serialize_safetensors(out, f.metadata());
  } catch (const quanto::error&) {
    QUANTO_FUZZ_FAIL("serialize_safetensors rejected tensors that parse accepted");
  }
  std::optional<io::safetensors_file> back;
  try {
    back.emplace(io::safetensors_file::parse(std::move(image), "round trip"));
  } catch (const quanto::error&) {
    QUANTO_FUZZ_FAIL("parse rejected what serialize_safetensors wrote");
  }
  QUANTO_FUZZ_CHECK(back->tensors().size() == f.tensors().size());
  QUANTO_FUZZ_CHECK(back->metadata() == f.metadata());
  for (const io::tensor_info& t : f.tensors()) {
    const io::tensor_info* u = back->find(t.name);
    QUANTO_FUZZ_CHECK(u != nullptr && u->dtype == t.dtype && u->shape == t.shape);
    const auto a = f.bytes(t), b = back->bytes(*u);
    QUANTO_FUZZ_CHECK(a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size()) == 0));
  }
  return 0;
}
