// tests/fuzz/fuzz_check.hpp: what the fuzz targets share. A broken invariant is a bug of the
// parser under test: print it and abort(), so that libFuzzer (or the replay driver) stops there
// and keeps the input.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace quanto_fuzz {

[[noreturn]] inline void fail(const char* what, const char* file, int line) {
  std::fprintf(stderr, "\nfuzz invariant broken at %s:%d: %s\n", file, line, what);
  std::fflush(stderr);
  std::abort();
}

/// Reads one byte through a volatile, so that the compiler cannot drop the read: ASan checks it.
inline unsigned char touch(const void* p) { return *static_cast<const volatile unsigned char*>(p); }

}  // namespace quanto_fuzz

#define QUANTO_FUZZ_CHECK(cond)                                  \
  do {                                                           \
    if (!(cond)) ::quanto_fuzz::fail(#cond, __FILE__, __LINE__); \
  } while (0)
#define QUANTO_FUZZ_FAIL(what) ::quanto_fuzz::fail(what, __FILE__, __LINE__)
