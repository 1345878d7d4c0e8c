// A main() for the fuzz targets where libFuzzer is not available (GCC, MSVC): runs
// LLVMFuzzerTestOneInput once over every file given, or over every file in the folders given
// (recursively, in sorted order). Each input is copied into a buffer of exactly its size, so
// that AddressSanitizer sees any read past its end. Exit status 0 when every input ran; a broken
// invariant or an escaped exception aborts, as under libFuzzer.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <system_error>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    const fs::path arg = argv[i];
    std::error_code ec;
    if (fs::is_directory(arg, ec)) {
      for (const auto& e : fs::recursive_directory_iterator(arg))
        if (e.is_regular_file()) inputs.push_back(e.path());
    } else if (fs::is_regular_file(arg, ec)) {
      inputs.push_back(arg);
    } else {
      std::fprintf(stderr, "replay: %s is neither a file nor a folder\n", argv[i]);
      return 2;
    }
  }
  std::sort(inputs.begin(), inputs.end());
  if (inputs.empty()) {
    std::fprintf(stderr, "usage: %s <corpus file or folder>...  (no inputs found)\n", argv[0]);
    return 2;
  }
  for (const fs::path& p : inputs) {
    std::ifstream in(p, std::ios::binary);
    const std::vector<char> content((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "replay: cannot read %s\n", p.string().c_str());
      return 2;
    }
    // exactly `size` bytes on the heap (a zero-size input gets a one-byte allocation it may not read)
    const std::unique_ptr<std::uint8_t[]> buf(new std::uint8_t[content.empty() ? 1 : content.size()]);
    std::copy(content.begin(), content.end(), buf.get());
    std::fprintf(stderr, "replay: %s (%zu bytes)\n", p.string().c_str(), content.size());
    LLVMFuzzerTestOneInput(buf.get(), content.size());
  }
  std::fprintf(stderr, "replay: %zu inputs, no crash\n", inputs.size());
  return 0;
}
