// libFuzzer target: quanto::io::parse_shard_index (model.safetensors.index.json). Only
// quanto::error may leave the parser; an accepted index must name only plain shard file names,
// list each tensor once, and survive a round trip through shard_index_json unchanged.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <string_view>
#include <utility>
#include <vector>

#include "fuzz_check.hpp"
#include "quanto/io/checkpoint.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace quanto;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  io::shard_index index;
  try {
    index = io::parse_shard_index(text, "fuzz_shard_index");
  } catch (const quanto::error&) {
    return 0;  // a typed rejection; anything else escapes and crashes the fuzzer
  }
  if (index.total_size) (void)quanto_fuzz::touch(&*index.total_size);
  std::set<std::string_view> tensors;
  for (const auto& [tensor, shard] : index.weight_map) {
    QUANTO_FUZZ_CHECK(tensors.insert(tensor).second);  // one shard per tensor
    if (!tensor.empty()) (void)quanto_fuzz::touch(&tensor.back());
    // a plain file name inside the model folder, nothing else
    QUANTO_FUZZ_CHECK(!shard.empty());
    (void)quanto_fuzz::touch(&shard.back());
    QUANTO_FUZZ_CHECK(shard.find('/') == std::string::npos && shard.find('\\') == std::string::npos);
    QUANTO_FUZZ_CHECK(shard.find('\0') == std::string::npos);
    QUANTO_FUZZ_CHECK(shard != "." && shard != "..");
    QUANTO_FUZZ_CHECK(io::detail::utf8_error_offset(shard) == io::detail::npos);
  }
  // The writer must take whatever the reader gave, and give it back (sorted by tensor name).
  std::string again;
  try {
    again = io::shard_index_json(index);
  } catch (const quanto::error&) {
    QUANTO_FUZZ_FAIL("shard_index_json rejected an index that parse_shard_index accepted");
  }
  io::shard_index back;
  try {
    back = io::parse_shard_index(again, "round trip");
  } catch (const quanto::error&) {
    QUANTO_FUZZ_FAIL("parse_shard_index rejected what shard_index_json wrote");
  }
  auto sorted = index.weight_map;
  std::sort(sorted.begin(), sorted.end());
  QUANTO_FUZZ_CHECK(back.weight_map == sorted);
  QUANTO_FUZZ_CHECK(back.total_size == index.total_size);
  QUANTO_FUZZ_CHECK(back.total_parameters == index.total_parameters);
  return 0;
}
