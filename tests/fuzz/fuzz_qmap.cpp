// libFuzzer target: quanto::io::parse_qmap (quanto_qmap.json). Only quanto::error may leave the
// parser; an accepted map must hold valid qtypes and unique names, and must survive a round trip
// through qmap_json (what quanto writes) unchanged.
#include <cstddef>
#include <cstdint>
#include <set>
#include <string_view>

#include "fuzz_check.hpp"
#include "quanto/io/qmap.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace quanto;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  quantization_map_t qmap;
  try {
    qmap = io::parse_qmap(text, "fuzz_qmap");
  } catch (const quanto::error&) {
    return 0;  // a typed rejection; anything else escapes and crashes the fuzzer
  }
  std::set<std::string_view> names;
  for (const qmap_entry& e : qmap) {
    QUANTO_FUZZ_CHECK(names.insert(e.name).second);
    if (!e.name.empty()) (void)quanto_fuzz::touch(&e.name.back());
    QUANTO_FUZZ_CHECK(e.weights == "none" || find_qtype(e.weights).has_value());
    if (e.activations != "none") {
      const auto a = find_qtype(e.activations);
      QUANTO_FUZZ_CHECK(a.has_value() && info_of(*a).bits == 8);
    }
  }
  // The writer must take whatever the reader gave, and give it back unchanged.
  std::string again;
  try {
    again = io::qmap_json(qmap);
  } catch (const quanto::error&) {
    QUANTO_FUZZ_FAIL("qmap_json rejected a map that parse_qmap accepted");
  }
  try {
    QUANTO_FUZZ_CHECK(io::parse_qmap(again, "round trip") == qmap);
  } catch (const quanto::error&) {
    QUANTO_FUZZ_FAIL("parse_qmap rejected what qmap_json wrote");
  }
  return 0;
}
