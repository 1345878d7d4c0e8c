// Tests of quanto/io/safetensors.hpp: round trips, the exact bytes the writer produces, a matrix of
// malformed files each rejected with its own error type, accepted edge cases, a file written by
// the reference (Python safetensors 0.8.0), and writes that fail without touching the target.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "quanto/io/safetensors.hpp"

namespace {

namespace fs = std::filesystem;
namespace io = quanto::io;
using quanto::dtype;
using namespace std::string_literals;

// ---- helpers ----------------------------------------------------------------------------------

std::vector<std::byte> to_bytes(std::string_view s) {
  std::vector<std::byte> out(s.size());
  if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
  return out;
}

std::string to_string(std::span<const std::byte> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

std::string le64(std::uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return out;
}

/// A file image: the 8-byte N (the header's length unless given), the header, the data.
std::vector<std::byte> image(std::string_view header, std::string_view data = {}) {
  return to_bytes(le64(header.size()) + std::string(header) + std::string(data));
}
std::vector<std::byte> image_with_n(std::uint64_t n, std::string_view rest) {
  return to_bytes(le64(n) + std::string(rest));
}

template <class T>
std::span<const std::byte> as_bytes_of(const std::vector<T>& v) {
  return std::as_bytes(std::span<const T>(v));
}

enum class outcome { ok, header, dtype, offset, size, duplicate, missing, file, other };

const char* name_of(outcome o) {
  switch (o) {
    case outcome::ok:
      return "accepted";
    case outcome::header:
      return "header_error";
    case outcome::dtype:
      return "dtype_error";
    case outcome::offset:
      return "offset_error";
    case outcome::size:
      return "size_error";
    case outcome::duplicate:
      return "duplicate_error";
    case outcome::missing:
      return "missing_tensor_error";
    case outcome::file:
      return "file_error";
    case outcome::other:
      return "another exception";
  }
  return "?";
}

/// Runs `f` and says which error it threw (the message goes to *what).
template <class F>
outcome outcome_of(F&& f, std::string* what = nullptr) {
  const auto note = [&](const std::exception& e) {
    if (what) *what = e.what();
  };
  try {
    f();
    return outcome::ok;
  } catch (const io::header_error& e) {
    note(e);
    return outcome::header;
  } catch (const io::dtype_error& e) {
    note(e);
    return outcome::dtype;
  } catch (const io::offset_error& e) {
    note(e);
    return outcome::offset;
  } catch (const io::size_error& e) {
    note(e);
    return outcome::size;
  } catch (const io::duplicate_error& e) {
    note(e);
    return outcome::duplicate;
  } catch (const io::missing_tensor_error& e) {
    note(e);
    return outcome::missing;
  } catch (const io::file_error& e) {
    note(e);
    return outcome::file;
  } catch (const std::exception& e) {
    note(e);
    return outcome::other;
  }
}

outcome parse_outcome(std::vector<std::byte> bytes, std::string* what = nullptr) {
  return outcome_of([&] { (void)io::safetensors_file::parse(std::move(bytes), "case.safetensors"); }, what);
}

const char* const U8_1 = R"("dtype":"U8","shape":[1],"data_offsets":[0,1])";  // a valid 1-byte entry

std::string with_unknown_field(std::string_view value) {
  return std::string(R"({"a":{)") + U8_1 + R"(,"x":)" + std::string(value) + "}}";
}

// ---- the malformed-file matrix ----------------------------------------------------------------

struct bad_case {
  std::string label;
  std::vector<std::byte> file;
  outcome want;
};

std::vector<bad_case> malformed_cases() {
  using o = outcome;
  const std::string big62 = "2305843009213693951";  // 2^61 - 1
  std::vector<bad_case> c;
  const auto add = [&](std::string label, std::vector<std::byte> file, outcome want) {
    c.push_back({std::move(label), std::move(file), want});
  };
  // 1-4: the size prefix
  add("empty file", {}, o::header);
  add("7 bytes", to_bytes("\x02\0\0\0\0\0\0"), o::header);
  add("N = 100,000,001", image_with_n(100'000'001, "{}"), o::header);
  add("N = 2^64 - 1", image_with_n(~0ull, "{}"), o::header);
  add("N = 2^64 - 8", image_with_n(~0ull - 7, "{}"), o::header);
  add("N past the end", image_with_n(16, "{}      "), o::header);
  add("N = 0", image_with_n(0, ""), o::header);
  // 5: UTF-8
  add("invalid UTF-8 byte 0xFF in a key", image("{\"\xff\":{}}"), o::header);
  add("overlong UTF-8 (C0 AF)", image("{\"\xc0\xaf\":{}}"), o::header);
  add("UTF-8-encoded surrogate (ED A0 80)", image("{\"\xed\xa0\x80\":{}}"), o::header);
  add("truncated UTF-8 sequence at the end", image("{}\xe2\x82"), o::header);
  // 6: JSON syntax and shape of the document
  add("not JSON", image("hello"), o::header);
  add("header is an array", image("[]"), o::header);
  add("header is a string", image("\"{}\""), o::header);
  add("header is a number", image("1"), o::header);
  add("header is only spaces", image("        "), o::header);
  add("UTF-8 byte-order mark before {", image("\xef\xbb\xbf{}"), o::header);
  add("NUL padding", image(std::string_view("{}\0\0\0\0\0\0", 8)), o::header);
  add("NUL then garbage", image(std::string_view("{}\0garbage", 10)), o::header);
  add("trailing garbage after the object", image("{} x"), o::header);
  add("two objects", image("{}{}"), o::header);
  add("unterminated object", image("{\"a\":"), o::header);
  add("JSON comment", image("{/* c */}"), o::header);
  add("single quotes", image("{'a':1}"), o::header);
  add("raw control character in a string", image("{\"a\x01\":{}}"), o::header);
  add("lone surrogate escape", image(R"({"\ud800":{)" + std::string(U8_1) + "}}", "x"), o::header);
  add("1,000,000 nested [", image(std::string(1'000'000, '[') + std::string(1'000'000, ']')), o::header);
  add("1,000,000 nested { in an unknown field",
      image(
          [] {
            std::string s = std::string(R"({"a":{)") + U8_1 + ",";
            for (int i = 0; i < 1'000'000; ++i) s += "\"x\":{";
            return s;
          }(),
          "x"),
      o::header);
  add("63 nested [ in an unknown field (depth 65)",
      image(with_unknown_field(std::string(63, '[') + std::string(63, ']')), "x"), o::header);
  // the schema of a tensor entry
  add("entry is a number", image(R"({"a":1})"), o::header);
  add("entry is an array", image(R"({"a":[]})"), o::header);
  add("entry is null", image(R"({"a":null})"), o::header);
  add("missing dtype", image(R"({"a":{"shape":[1],"data_offsets":[0,1]}})", "x"), o::header);
  add("missing shape", image(R"({"a":{"dtype":"U8","data_offsets":[0,1]}})", "x"), o::header);
  add("missing data_offsets", image(R"({"a":{"dtype":"U8","shape":[1]}})", "x"), o::header);
  add("dtype is a number", image(R"({"a":{"dtype":5,"shape":[1],"data_offsets":[0,1]}})", "x"), o::header);
  add("shape is a number", image(R"({"a":{"dtype":"U8","shape":1,"data_offsets":[0,1]}})", "x"), o::header);
  add("shape is an object", image(R"({"a":{"dtype":"U8","shape":{},"data_offsets":[0,1]}})", "x"), o::header);
  add("shape [-1]", image(R"({"a":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", "x"), o::header);
  add("shape [-0]", image(R"({"a":{"dtype":"U8","shape":[-0],"data_offsets":[0,0]}})"), o::header);
  add("shape [1.0]", image(R"({"a":{"dtype":"U8","shape":[1.0],"data_offsets":[0,1]}})", "x"), o::header);
  add("shape [1e0]", image(R"({"a":{"dtype":"U8","shape":[1e0],"data_offsets":[0,1]}})", "x"), o::header);
  add("shape [[1]]", image(R"({"a":{"dtype":"U8","shape":[[1]],"data_offsets":[0,1]}})", "x"), o::header);
  add("shape [\"1\"]", image(R"({"a":{"dtype":"U8","shape":["1"],"data_offsets":[0,1]}})", "x"), o::header);
  add("shape [null]", image(R"({"a":{"dtype":"U8","shape":[null],"data_offsets":[0,1]}})", "x"), o::header);
  add("offsets [-1,3]", image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[-1,3]}})", "xxxx"), o::header);
  add("offsets [0.0,4]", image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0.0,4]}})", "xxxx"), o::header);
  add("offsets [0,1e30]", image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,1e30]}})", "xxxx"), o::header);
  add("offsets [0,2^64]", image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,18446744073709551616]}})", "xxxx"),
      o::header);
  add("offsets [0,-0]", image(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,-0]}})"), o::header);
  add("offsets [0,4,8] (3 items)", image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4,8]}})", "xxxx"),
      o::header);
  add("offsets [0] (1 item)", image(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0]}})"), o::header);
  add("offsets [] (0 items)", image(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[]}})"), o::header);
  add("offsets as a string", image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":"0,4"}})", "xxxx"), o::header);
  add("offsets as an object", image(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":{"0":0}}})", "x"), o::header);
  // __metadata__
  add("__metadata__ value 1 (not a string)", image(R"({"__metadata__":{"k":1}})"), o::header);
  add("__metadata__ value an object", image(R"({"__metadata__":{"k":{}}})"), o::header);
  add("__metadata__ value null", image(R"({"__metadata__":{"k":null}})"), o::header);
  add("__metadata__ is a string", image(R"({"__metadata__":"x"})"), o::header);
  add("__metadata__ is an array", image(R"({"__metadata__":[]})"), o::header);
  add("__metadata__ holding a tensor-like entry",
      image(R"({"__metadata__":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"), o::header);
  // dtypes
  add("dtype \"u8\" (lowercase)", image(R"({"a":{"dtype":"u8","shape":[1],"data_offsets":[0,1]}})", "x"), o::dtype);
  add("dtype \"Q4_0\"", image(R"({"a":{"dtype":"Q4_0","shape":[1],"data_offsets":[0,1]}})", "x"), o::dtype);
  add("dtype \"\"", image(R"({"a":{"dtype":"","shape":[1],"data_offsets":[0,1]}})", "x"), o::dtype);
  add("dtype \"F32 \"", image(R"({"a":{"dtype":"F32 ","shape":[1],"data_offsets":[0,4]}})", "xxxx"), o::dtype);
  add("dtype F8_E8M0 (safetensors has it, quanto does not)",
      image(R"({"a":{"dtype":"F8_E8M0","shape":[1],"data_offsets":[0,1]}})", "x"), o::dtype);
  add("dtype F4", image(R"({"a":{"dtype":"F4","shape":[2],"data_offsets":[0,1]}})", "x"), o::dtype);
  // duplicates
  add("duplicate tensor, identical entries", image(std::string(R"({"a":{)") + U8_1 + R"(},"a":{)" + U8_1 + "}}", "x"),
      o::duplicate);
  add("duplicate tensor, differing dtype and shape (last-wins would read I8 [2,2])",
      image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
            R"("a":{"dtype":"I8","shape":[2,2],"data_offsets":[0,4]}})",
            "xxxx"),
      o::duplicate);
  add("duplicate tensor whose survivor would leave a gap",
      image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
            R"("a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})",
            "xxxx"),
      o::duplicate);
  add("duplicate __metadata__", image(R"({"__metadata__":{},"__metadata__":{}})"), o::duplicate);
  add("duplicate metadata key", image(R"({"__metadata__":{"k":"1","k":"2"}})"), o::duplicate);
  add("duplicate dtype field", image(R"({"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "x"),
      o::duplicate);
  add("duplicate data_offsets field",
      image(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"data_offsets":[0,1]}})", "x"), o::duplicate);
  add("duplicate unknown field", image(with_unknown_field(R"(1,"x":2)"), "x"), o::duplicate);
  add("duplicate key inside an unknown field", image(with_unknown_field(R"({"k":1,"k":2})"), "x"), o::duplicate);
  // 8: the layout of the data section
  add("gap between tensors",
      image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
            R"("b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})",
            std::string(12, 'x')),
      o::offset);
  add("first tensor not at 0", image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})", "xxxxxxxx"),
      o::offset);
  add("overlapping tensors",
      image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
            R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
            "xxxxxx"),
      o::offset);
  add("two tensors on the same bytes",
      image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
            R"("b":{"dtype":"I8","shape":[4],"data_offsets":[0,4]}})",
            "xxxx"),
      o::offset);
  add("END < BEGIN", image(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[4,2]}})", "xxxx"), o::offset);
  add("one trailing byte (polyglot)", image(std::string("{\"a\":{") + U8_1 + "}}", "xy"), o::offset);
  add("trailing bytes after an empty header", image("{}", "polyglot"), o::offset);
  add("one byte missing", image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}})", "xxx"), o::offset);
  add("offsets far past the end",
      image(R"({"a":{"dtype":"U8","shape":[4],)"
            R"("data_offsets":[18446744073709551611,18446744073709551615]}})",
            "xxxx"),
      o::offset);
  add("8 tensors of 2^61 - 1 bytes (END sums to 2^64 - 8)", image([&] {
        std::string s = "{";
        for (unsigned i = 0; i < 8; ++i) {
          const auto b = std::to_string(i * 2305843009213693951ull),
                     e = std::to_string((i + 1) * 2305843009213693951ull);
          s += (i ? "," : "") + std::string("\"t") + std::to_string(i) + R"(":{"dtype":"U8","shape":[)" + big62 +
               R"(],"data_offsets":[)" + b + "," + e + "]}";
        }
        return s + "}";
      }()),
      o::offset);
  add("largest legal dimension, bytes missing",
      image(R"({"a":{"dtype":"U8","shape":[9223372036854775807],)"
            R"("data_offsets":[0,9223372036854775807]}})",
            "x"),
      o::offset);
  // 9-11: sizes
  add("size mismatch: F32 [2] on 4 bytes", image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "xxxx"),
      o::size);
  add("size mismatch: [0,4] on 4 bytes", image(R"({"a":{"dtype":"U8","shape":[0,4],"data_offsets":[0,4]}})", "xxxx"),
      o::size);
  add("size mismatch: [] (1 element) on 0 bytes", image(R"({"a":{"dtype":"U8","shape":[],"data_offsets":[0,0]}})"),
      o::size);
  add("shape product wraps to 0 mod 2^64 ([2^32, 2^32])",
      image(R"({"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,0]}})"), o::size);
  add("bytes wrap to 0 mod 2^64 (F64 [2^61])",
      image(R"({"a":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,0]}})"), o::size);
  add("shape product overflows (3 x 2^62)",
      image(R"({"a":{"dtype":"U8","shape":[3,4611686018427387904],"data_offsets":[0,0]}})"), o::size);
  add("dimension 2^63", image(R"({"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,0]}})"), o::size);
  add("dimension 2^64 - 1 next to a zero (stricter than the reference)",
      image(R"({"a":{"dtype":"U8","shape":[0,18446744073709551615],"data_offsets":[0,0]}})"), o::size);
  add("empty F32 tensor whose strides overflow (stricter than the reference)",
      image(R"({"a":{"dtype":"F32","shape":[0,9223372036854775807],"data_offsets":[0,0]}})"), o::size);
  return c;
}

TEST(SafetensorsRead, MalformedFilesAreRejectedWithTheirErrorType) {
  const auto cases = malformed_cases();
  ASSERT_GE(cases.size(), 60u);
  for (const bad_case& c : cases) {
    std::string what;
    const outcome got = parse_outcome(c.file, &what);
    EXPECT_EQ(got, c.want) << c.label << ": expected " << name_of(c.want) << ", got " << name_of(got) << " (" << what
                           << ")";
    if (got != outcome::ok) {
      EXPECT_NE(what.find("case.safetensors"), std::string::npos) << c.label << ": " << what;
      EXPECT_LT(what.size(), 2000u) << c.label << ": the message must stay short";
    }
  }
}

TEST(SafetensorsRead, EveryTruncationIsRejectedAndEveryByteFlipIsHandled) {
  const std::vector<float> w = {1.0f, 2.0f, 3.0f};
  const std::vector<std::uint16_t> h = {7, 8};
  const std::vector<io::tensor_to_write> ts = {{"w", dtype::f32, {3}, as_bytes_of(w)},
                                               {"h", dtype::bf16, {2}, as_bytes_of(h)}};
  const auto file = io::serialize_safetensors(ts, {{"k", "v"}});
  ASSERT_EQ(parse_outcome(file), outcome::ok);
  for (std::size_t len = 0; len < file.size(); ++len) {
    const outcome got =
        parse_outcome(std::vector<std::byte>(file.begin(), file.begin() + static_cast<std::ptrdiff_t>(len)));
    EXPECT_NE(got, outcome::ok) << "prefix of " << len << " bytes";
    EXPECT_NE(got, outcome::other) << "prefix of " << len << " bytes";
  }
  // Every single-byte change of the prefix and the header: a typed error, or a valid parse whose
  // ranges lie inside the file.
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | std::to_integer<std::uint64_t>(file[static_cast<std::size_t>(i)]);
  for (std::size_t pos = 0; pos < 8 + n; ++pos) {
    for (unsigned v : {0x00u, 0x20u, 0x22u, 0x2Cu, 0x30u, 0x39u, 0x5Bu, 0x7Bu, 0x7Du, 0x80u, 0xFFu}) {
      auto bad = file;
      bad[pos] = static_cast<std::byte>(v);
      std::string what;
      outcome got = outcome::ok;
      try {
        const auto f = io::safetensors_file::parse(bad);
        for (const auto& t : f.tensors()) {
          const auto b = f.bytes(t);
          ASSERT_EQ(b.size(), t.numel() * quanto::size_of(t.dtype));
          if (!b.empty()) (void)(b.front() == b.back());
        }
      } catch (const quanto::format_error&) {
        got = outcome::header;  // any typed format error is fine here
      } catch (const std::exception& e) {
        got = outcome::other;
        what = e.what();
      }
      EXPECT_NE(got, outcome::other) << "byte " << pos << " = " << v << ": " << what;
    }
  }
}

TEST(SafetensorsRead, Utf8ValidationFollowsUnicodeTable3_7) {
  using io::detail::utf8_error_offset;
  constexpr auto valid = io::detail::npos;
  EXPECT_EQ(utf8_error_offset(""), valid);
  EXPECT_EQ(utf8_error_offset("plain ASCII, longer than the 8-byte fast path"), valid);
  EXPECT_EQ(utf8_error_offset("\xc3\xa9\xe6\x9d\x83\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"), valid);  // ..U+10FFFF
  EXPECT_EQ(utf8_error_offset("1234567\xc3\xa9"), valid);           // a character across the fast path's 8 bytes
  EXPECT_EQ(utf8_error_offset("\xed\x9f\xbf\xee\x80\x80"), valid);  // U+D7FF, U+E000
  EXPECT_EQ(utf8_error_offset("12345678\xff"), 8u);
  EXPECT_EQ(utf8_error_offset("1234567\xc3"), 7u);  // truncated
  EXPECT_EQ(utf8_error_offset("a\x80"), 1u);        // lone continuation byte
  EXPECT_EQ(utf8_error_offset("\xe6\x9d"
                              "A"),
            0u);                                         // bad continuation
  EXPECT_EQ(utf8_error_offset("\xc1\xbf"), 0u);          // overlong, 2 bytes
  EXPECT_EQ(utf8_error_offset("\xe0\x9f\xbf"), 0u);      // overlong, 3 bytes
  EXPECT_EQ(utf8_error_offset("\xf0\x8f\xbf\xbf"), 0u);  // overlong, 4 bytes
  EXPECT_EQ(utf8_error_offset("\xed\xa0\x80"), 0u);      // U+D800, a surrogate
  EXPECT_EQ(utf8_error_offset("\xf4\x90\x80\x80"), 0u);  // above U+10FFFF
  EXPECT_EQ(utf8_error_offset("\xf5\x80\x80\x80"), 0u);
}

// ---- accepted edge cases ----------------------------------------------------------------------

TEST(SafetensorsRead, EmptyHeaders) {
  for (std::string_view h :
       {"{}", "{}      ", "  \n\t\r{}", "{}\t\r\n ", R"({"__metadata__":null})", R"({"__metadata__":{}})", " { } "}) {
    const auto f = io::safetensors_file::parse(image(h));
    EXPECT_TRUE(f.tensors().empty()) << h;
    EXPECT_TRUE(f.metadata().empty()) << h;
    EXPECT_EQ(f.header_size(), h.size());
    EXPECT_EQ(f.data_offset(), 8 + h.size());
    EXPECT_EQ(f.data_size(), 0u);
  }
}

TEST(SafetensorsRead, RankZeroAndEmptyTensors) {
  const auto f =
      io::safetensors_file::parse(image(R"({"b":{"dtype":"U8","shape":[0],"data_offsets":[1,1]},)"
                                        R"("a":{"dtype":"U8","shape":[],"data_offsets":[0,1]},)"
                                        R"("c":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]},)"
                                        R"("d":{"dtype":"U8","shape":[0,9223372036854775807],"data_offsets":[1,1]}})",
                                        "\x2a"));
  ASSERT_EQ(f.tensors().size(), 4u);
  // offset order; ties (c before a at 0, b before d at 1) in JSON order
  EXPECT_EQ(f.tensors()[0].name, "c");
  EXPECT_EQ(f.tensors()[1].name, "a");
  EXPECT_EQ(f.tensors()[2].name, "b");
  EXPECT_EQ(f.tensors()[3].name, "d");
  const auto& a = f.at("a");
  EXPECT_TRUE(a.shape.empty());
  EXPECT_EQ(a.numel(), 1u);
  EXPECT_EQ(f.read_as<std::uint8_t>("a", dtype::u8), std::vector<std::uint8_t>{42});
  EXPECT_EQ(f.at("c").numel(), 0u);
  EXPECT_EQ(f.at("c").shape, (std::vector<std::int64_t>{0, 4}));
  EXPECT_TRUE(f.read_as<float>("c", dtype::f32).empty());
  EXPECT_TRUE(f.bytes("b").empty());
  EXPECT_EQ(f.at("d").shape[1], INT64_MAX);
}

TEST(SafetensorsRead, OffsetOrderNotJsonOrderAndUnalignedData) {
  // A 106-byte header: the data section starts at file offset 114 and the F32 at 115, misaligned
  // (the in-memory buffer itself is at least 8-aligned).
  const std::string header = R"({"y":{"dtype":"F32","shape":[1],"data_offsets":[1,5]},)"
                             R"("x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  float v = -1.5f;
  std::string data = "\x07" + std::string(reinterpret_cast<const char*>(&v), 4);
  const auto f = io::safetensors_file::parse(image(header, data));
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[0].name, "x");
  EXPECT_EQ(f.tensors()[1].name, "y");
  EXPECT_EQ(f.tensors()[1].begin, 1u);
  EXPECT_EQ(f.tensors()[1].end, 5u);
  EXPECT_NE(reinterpret_cast<std::uintptr_t>(f.bytes("y").data()) % 4, 0u);
  EXPECT_EQ(f.read_as<float>("y", dtype::f32), std::vector<float>{-1.5f});
}

TEST(SafetensorsRead, UnknownFieldsAreIgnored) {
  for (std::string_view value :
       {"1", "-1", "1.5", "null", "true", "\"s\"", "[]", "{}", R"({"k":[1,{"z":null}]})", "[[[[[[[[[[1]]]]]]]]]]"}) {
    const auto f = io::safetensors_file::parse(image(with_unknown_field(value), "x"));
    ASSERT_EQ(f.tensors().size(), 1u) << value;
    EXPECT_EQ(f.tensors()[0].dtype, dtype::u8);
  }
  // The deepest nesting allowed: the root, the entry, then 62 arrays (depth 64).
  EXPECT_EQ(parse_outcome(image(with_unknown_field(std::string(62, '[') + std::string(62, ']')), "x")), outcome::ok);
  static_assert(io::max_header_depth == 64);
}

TEST(SafetensorsRead, NamesAndMetadataAreDecoded) {
  const auto f = io::safetensors_file::parse(image(R"({"__metadata__":{"format":"pt","q\"\\\n":"\u00e9\t"},)"
                                                   R"("":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                                   R"("a\u0000b":{"dtype":"U8","shape":[1],"data_offsets":[1,2]},)"
                                                   R"("\u00e9\u6743":{"dtype":"U8","shape":[1],"data_offsets":[2,3]}})",
                                                   "xyz"));
  EXPECT_EQ(f.metadata().size(), 2u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("q\"\\\n"), "\xc3\xa9\t");
  ASSERT_NE(f.find(""), nullptr);
  EXPECT_EQ(f.find("")->begin, 0u);
  ASSERT_NE(f.find(std::string_view("a\0b", 3)), nullptr);
  EXPECT_EQ(f.find(std::string_view("a\0b", 3))->begin, 1u);
  EXPECT_EQ(f.find("a"), nullptr);
  ASSERT_NE(f.find("\xc3\xa9\xe6\x9d\x83"), nullptr);
  EXPECT_EQ(to_string(f.bytes("\xc3\xa9\xe6\x9d\x83")), "z");
}

TEST(SafetensorsRead, LookupErrors) {
  const auto f = io::safetensors_file::parse(image(std::string("{\"a\":{") + U8_1 + "}}", "x"), "mem.st");
  EXPECT_TRUE(f.contains("a"));
  EXPECT_FALSE(f.contains("b"));
  std::string what;
  EXPECT_EQ(outcome_of([&] { (void)f.at("missing\nname"); }, &what), outcome::missing);
  EXPECT_NE(what.find("mem.st"), std::string::npos) << what;
  EXPECT_NE(what.find("'missing\\x0aname'"), std::string::npos) << what;  // control characters escaped
  EXPECT_EQ(outcome_of([&] { (void)f.read_as<std::int8_t>("a", dtype::i8); }, &what), outcome::dtype);
  EXPECT_NE(what.find("has dtype U8, not I8"), std::string::npos) << what;
  EXPECT_EQ(outcome_of([&] { (void)f.read_as<std::uint16_t>("a", dtype::u8); }), outcome::dtype);
  EXPECT_EQ(outcome_of([&] { (void)f.read_as<std::uint8_t>("b", dtype::u8); }), outcome::missing);
  io::tensor_info foreign{"z", dtype::u8, {4}, 0, 4};
  EXPECT_EQ(outcome_of([&] { (void)f.bytes(foreign); }), outcome::offset);
}

TEST(SafetensorsRead, HeaderSizeLimitIsExactly100MB) {
  std::string what;
  EXPECT_EQ(parse_outcome(image_with_n(100'000'001, "{}"), &what), outcome::header);
  EXPECT_NE(what.find("exceeds the limit"), std::string::npos) << what;
  EXPECT_EQ(parse_outcome(image_with_n(100'000'000, "{}"), &what), outcome::header);
  EXPECT_NE(what.find("runs past the end"), std::string::npos) << what;  // not over the limit
  static_assert(io::max_header_size == 100'000'000);
}

TEST(SafetensorsRead, MessagesNameTheFileTheTensorAndTheOffset) {
  std::string what;
  EXPECT_EQ(parse_outcome(image("{}", "polyglot!"), &what), outcome::offset);
  EXPECT_NE(what.find("9 byte(s) after the last tensor, from file offset 10"), std::string::npos) << what;
  EXPECT_EQ(parse_outcome(image(R"({"w.0":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "xxxx"), &what),
            outcome::size);
  EXPECT_NE(what.find("tensor 'w.0'"), std::string::npos) << what;
  EXPECT_NE(what.find("needs 8 bytes"), std::string::npos) << what;
  EXPECT_EQ(parse_outcome(image(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                R"("b":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})",
                                "xxxx"),
                          &what),
            outcome::offset);
  EXPECT_NE(what.find("tensor 'b'"), std::string::npos) << what;
  EXPECT_NE(what.find("gap"), std::string::npos) << what;
  EXPECT_EQ(parse_outcome(image("{\"\xff\"}"), &what), outcome::header);
  EXPECT_NE(what.find("header byte 2, file offset 10"), std::string::npos) << what;
  EXPECT_EQ(parse_outcome(image(R"({"a":{"dtype":"Q4_0","shape":[1],"data_offsets":[0,1]}})", "x"), &what),
            outcome::dtype);
  EXPECT_NE(what.find("'Q4_0'"), std::string::npos) << what;
  EXPECT_EQ(parse_outcome(image(R"({"a":{"dtype":"F8_E8M0","shape":[1],"data_offsets":[0,1]}})", "x"), &what),
            outcome::dtype);
  EXPECT_NE(what.find("quanto does not support"), std::string::npos) << what;
  // A hostile name is cut short in messages.
  EXPECT_EQ(
      parse_outcome(
          image("{\"" + std::string(5000, 'n') + R"(":{"dtype":"U8","shape":[1],"data_offsets":[0,2]}})", "xx"), &what),
      outcome::size);
  EXPECT_LT(what.size(), 400u) << what;
}

// ---- the writer -------------------------------------------------------------------------------

TEST(SafetensorsWrite, ExactBytesOfTheReferenceWriterTestVectors) {
  // Vectors of the reference's own tests (safetensors/src/tensor.rs: test_serialization,
  // test_empty, test_serialization_forced_alignement).
  const std::vector<float> v = {0.0f, 1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
  const std::string data = "\0\0\0\0\0\0\x80\x3f\0\0\0\x40\0\0\x40\x40\0\0\x80\x40\0\0\xa0\x40"s;
  {
    const std::vector<io::tensor_to_write> ts = {{"attn.0", dtype::f32, {1, 2, 3}, as_bytes_of(v)}};
    EXPECT_EQ(to_string(io::serialize_safetensors(ts)),
              le64(64) + R"({"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}})" + data);
  }
  {
    const std::vector<io::tensor_to_write> ts = {{"attn0", dtype::f32, {1, 1, 2, 3}, as_bytes_of(v)}};
    EXPECT_EQ(to_string(io::serialize_safetensors(ts)),
              le64(72) + R"({"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}})" + "       " + data);
  }
  EXPECT_EQ(to_string(io::serialize_safetensors({})), le64(8) + "{}      ");
  EXPECT_EQ(to_string(io::serialize_safetensors({}, {{"framework", "pt"}})),
            le64(40) + R"({"__metadata__":{"framework":"pt"}})" + "     ");
}

TEST(SafetensorsWrite, ExactBytesOfASmallFile) {
  const std::vector<float> w = {1.0f, -2.0f};
  const std::vector<std::uint8_t> b = {1, 2, 3};
  // Given in name order; written widest dtype first: w (F32) then b (U8).
  const std::vector<io::tensor_to_write> ts = {{"b", dtype::u8, {3}, as_bytes_of(b)},
                                               {"w", dtype::f32, {2}, as_bytes_of(w)}};
  const std::string header = R"({"__metadata__":{"k":"v"},"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}})";
  ASSERT_EQ(header.size(), 132u);
  const std::string expected = std::string("\x88\0\0\0\0\0\0\0", 8) + header + "    " +
                               std::string("\x00\x00\x80\x3f\x00\x00\x00\xc0\x01\x02\x03", 11);
  EXPECT_EQ(to_string(io::serialize_safetensors(ts, {{"k", "v"}})), expected);
}

TEST(SafetensorsWrite, JsonEscapingMatchesTheReference) {
  const std::vector<std::uint8_t> b = {9};
  const std::string name = std::string("q\"\\/\b\f\n\r\t\x01\x1f\x7f\xc3\xa9", 14);
  const std::vector<io::tensor_to_write> ts = {{name, dtype::u8, {}, as_bytes_of(b)}};
  const auto bytes = io::serialize_safetensors(ts, {{"m\x02", "v\x7f"}});
  const std::string s = to_string(bytes);
  EXPECT_NE(s.find(R"({"__metadata__":{"m\u0002":"v)"
                   "\x7f"
                   R"("},"q\"\\/\b\f\n\r\t\u0001\u001f)"
                   "\x7f\xc3\xa9"
                   R"(":{)"),
            std::string::npos)
      << s;
  const auto f = io::safetensors_file::parse(bytes);
  ASSERT_EQ(f.tensors().size(), 1u);
  EXPECT_EQ(f.tensors()[0].name, name);
  EXPECT_EQ(f.metadata().at("m\x02"), "v\x7f");
}

/// Deterministic pseudo-random bytes.
std::vector<std::byte> noise(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng() & 0xFF);
  return out;
}

constexpr std::array all_dtypes = {dtype::boolean, dtype::u8,        dtype::i8,      dtype::u16,
                                   dtype::i16,     dtype::u32,       dtype::i32,     dtype::u64,
                                   dtype::i64,     dtype::f16,       dtype::bf16,    dtype::f32,
                                   dtype::f64,     dtype::f8_e4m3fn, dtype::f8_e5m2, dtype::f8_e4m3fnuz};

TEST(SafetensorsWrite, RoundTripEveryDtype) {
  std::vector<std::vector<std::byte>> storage;
  std::vector<io::tensor_to_write> ts;
  const std::vector<std::vector<std::int64_t>> shapes = {{}, {3}, {2, 3}, {1, 0, 5}, {2, 1, 2, 1}};
  unsigned seed = 1;
  for (dtype t : all_dtypes) {
    for (std::size_t s = 0; s < shapes.size(); ++s) {
      std::uint64_t numel = 1;
      for (auto d : shapes[s]) numel *= static_cast<std::uint64_t>(d);
      storage.push_back(noise(numel * quanto::size_of(t), seed++));
      ts.push_back({std::string(quanto::to_string(t)) + "/" + std::to_string(s), t, shapes[s], storage.back()});
    }
  }
  const auto bytes = io::serialize_safetensors(ts, {{"format", "pt"}, {"quanto", "0.1"}});
  const auto f = io::safetensors_file::parse(bytes);
  ASSERT_EQ(f.tensors().size(), ts.size());
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"quanto", "0.1"}}));
  EXPECT_EQ(f.data_offset() % 8, 0u);
  for (const auto& t : ts) {
    const auto* info = f.find(t.name);
    ASSERT_NE(info, nullptr) << t.name;
    EXPECT_EQ(info->dtype, t.dtype) << t.name;
    EXPECT_EQ(info->shape, t.shape) << t.name;
    const auto got = f.bytes(*info);
    ASSERT_EQ(got.size(), t.data.size()) << t.name;
    EXPECT_TRUE(std::equal(got.begin(), got.end(), t.data.begin())) << t.name;
    // each tensor is aligned to its element size within the file
    EXPECT_EQ((f.data_offset() + info->begin) % quanto::size_of(t.dtype), 0u) << t.name;
  }
  // Written in descending dtype order then by name, with no gaps.
  std::uint64_t running = 0;
  for (std::size_t i = 0; i < f.tensors().size(); ++i) {
    const auto& t = f.tensors()[i];
    EXPECT_EQ(t.begin, running);
    running = t.end;
    if (i > 0) {
      const auto& p = f.tensors()[i - 1];
      EXPECT_GE(quanto::size_of(p.dtype), quanto::size_of(t.dtype)) << p.name << " before " << t.name;
    }
  }
  // Typed reads of a few dtypes.
  const auto find_bytes = [&](const std::string& n) { return f.bytes(n); };
  const auto f32 = f.read_as<float>("F32/2", dtype::f32);
  ASSERT_EQ(f32.size(), 6u);
  EXPECT_EQ(std::memcmp(f32.data(), find_bytes("F32/2").data(), 24), 0);
  EXPECT_EQ(f.read_as<std::uint16_t>("BF16/1", dtype::bf16).size(), 3u);
  EXPECT_EQ(f.read_as<std::uint8_t>("F8_E4M3/0", dtype::f8_e4m3fn).size(), 1u);
  EXPECT_EQ(f.read_as<std::uint8_t>("F8_E5M2/4", dtype::f8_e5m2).size(), 4u);
  EXPECT_TRUE(f.read_as<double>("F64/3", dtype::f64).empty());
  // Writing what was read gives the same bytes again.
  std::vector<io::tensor_to_write> again;
  for (const auto& t : f.tensors()) again.push_back({t.name, t.dtype, t.shape, f.bytes(t)});
  EXPECT_EQ(io::serialize_safetensors(again, f.metadata()), bytes);
}

TEST(SafetensorsWrite, InvalidInputIsRejectedBeforeAnythingIsWritten) {
  const std::vector<std::uint8_t> four = {1, 2, 3, 4};
  const auto d = as_bytes_of(four);
  const auto ser = [](std::vector<io::tensor_to_write> ts, std::map<std::string, std::string> m = {}) {
    return [ts = std::move(ts), m = std::move(m)] { (void)io::serialize_safetensors(ts, m); };
  };
  EXPECT_EQ(outcome_of(ser({{"a", dtype::f32, {2}, d}})), outcome::size);
  EXPECT_EQ(outcome_of(ser({{"a", dtype::u8, {5}, d}})), outcome::size);
  EXPECT_EQ(outcome_of(ser({{"a", dtype::u8, {-4}, d}})), outcome::size);
  EXPECT_EQ(outcome_of(ser({{"a", dtype::u8, {-1, -4}, d}})), outcome::size);
  EXPECT_EQ(outcome_of(ser({{"a", dtype::u8, {INT64_MAX, 2}, d}})), outcome::size);
  EXPECT_EQ(outcome_of(ser({{"a", dtype::u8, {2, 2}, d}, {"a", dtype::i8, {4}, d}})), outcome::duplicate);
  EXPECT_EQ(outcome_of(ser({{"a", dtype::u8, {4}, d}, {"b", dtype::u8, {4}, d}, {"a", dtype::u8, {4}, d}})),
            outcome::duplicate);
  EXPECT_EQ(outcome_of(ser({{"__metadata__", dtype::u8, {4}, d}})), outcome::header);
  EXPECT_EQ(outcome_of(ser({{"bad\xff", dtype::u8, {4}, d}})), outcome::header);
  EXPECT_EQ(outcome_of(ser({{"a", static_cast<dtype>(200), {4}, d}})), outcome::dtype);
  EXPECT_EQ(outcome_of(ser({}, {{"k", "\xc0\xaf"}})), outcome::header);
  EXPECT_EQ(outcome_of(ser({}, {{"\xed\xa0\x80", "v"}})), outcome::header);
  // The same data under two names is fine (each gets its own bytes in the file).
  EXPECT_EQ(outcome_of(ser({{"a", dtype::u8, {4}, d}, {"b", dtype::u8, {4}, d}})), outcome::ok);
  // Empty names are allowed, as in the reference.
  EXPECT_EQ(outcome_of(ser({{"", dtype::u8, {4}, d}})), outcome::ok);
}

TEST(SafetensorsWrite, HeaderLimit) {
  // `{"__metadata__":{"k":"` + value + `"}}` is 25 + value bytes.
  std::map<std::string, std::string> metadata{{"k", std::string(100'000'000 - 25, 'v')}};
  EXPECT_EQ(io::serialize_safetensors({}, metadata).size(), 8u + 100'000'000u);
  metadata["k"] += 'v';
  EXPECT_EQ(outcome_of([&] { (void)io::serialize_safetensors({}, metadata); }), outcome::header);
}

// ---- files ------------------------------------------------------------------------------------

class SafetensorsFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device rd;
    dir_ = fs::temp_directory_path() / ("quanto_test_safetensors_" + std::to_string(rd()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }
  fs::path dir_;
};

TEST_F(SafetensorsFiles, SaveThenOpen) {
  const std::vector<float> w = {1.0f, 2.0f, 3.0f, 4.0f};
  const std::vector<io::tensor_to_write> ts = {{"w", dtype::f32, {2, 2}, as_bytes_of(w)}};
  const auto path = dir_ / "model.safetensors";
  io::save_safetensors(path, ts, {{"format", "pt"}});
  EXPECT_EQ(listing(), std::vector<std::string>{"model.safetensors"});
  EXPECT_EQ(to_bytes(slurp(path)), io::serialize_safetensors(ts, {{"format", "pt"}}));
  const auto f = io::safetensors_file::open(path);
  EXPECT_EQ(f.source_name(), path.string());
  EXPECT_EQ(f.file_size(), fs::file_size(path));
  EXPECT_EQ(f.read_as<float>("w", dtype::f32), w);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  // The buffer is aligned, so a well-formed file's tensors are aligned in memory too.
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(f.bytes("w").data()) % 8, 0u);
  // Overwriting replaces the file.
  const std::vector<std::uint8_t> b = {5};
  io::save_safetensors(path, std::vector<io::tensor_to_write>{{"b", dtype::u8, {1}, as_bytes_of(b)}});
  const auto g = io::safetensors_file::open(path);
  EXPECT_EQ(g.tensors().size(), 1u);
  EXPECT_EQ(g.at("b").dtype, dtype::u8);
  EXPECT_EQ(listing(), std::vector<std::string>{"model.safetensors"});
}

TEST_F(SafetensorsFiles, OpenErrorsNameTheFile) {
  std::string what;
  EXPECT_EQ(outcome_of([&] { (void)io::safetensors_file::open(dir_ / "absent.safetensors"); }, &what), outcome::file);
  EXPECT_NE(what.find("absent.safetensors"), std::string::npos) << what;
  try {
    (void)io::safetensors_file::open(dir_ / "absent.safetensors");
  } catch (const io::file_error& e) {
    EXPECT_EQ(e.code(), std::errc::no_such_file_or_directory);
    EXPECT_EQ(e.path(), dir_ / "absent.safetensors");
  }
  EXPECT_EQ(outcome_of([&] { (void)io::safetensors_file::open(dir_); }), outcome::file);
  // A malformed file on disk: a format error naming the path.
  {
    std::ofstream(dir_ / "bad.safetensors", std::ios::binary) << le64(2) << "{}"
                                                              << "x";
  }
  EXPECT_EQ(outcome_of([&] { (void)io::safetensors_file::open(dir_ / "bad.safetensors"); }, &what), outcome::offset);
  EXPECT_NE(what.find("bad.safetensors"), std::string::npos) << what;
  { std::ofstream(dir_ / "empty.safetensors", std::ios::binary); }
  EXPECT_EQ(outcome_of([&] { (void)io::safetensors_file::open(dir_ / "empty.safetensors"); }), outcome::header);
}

TEST_F(SafetensorsFiles, FailedWritesLeaveTheTargetUntouchedAndNoTempFiles) {
  const auto path = dir_ / "model.safetensors";
  const std::vector<std::uint8_t> four = {1, 2, 3, 4};
  const auto d = as_bytes_of(four);
  const std::vector<io::tensor_to_write> bad_size = {{"a", dtype::f32, {2}, d}};
  const std::vector<io::tensor_to_write> dup = {{"a", dtype::u8, {4}, d}, {"a", dtype::u8, {4}, d}};

  // No target yet: nothing is created.
  EXPECT_EQ(outcome_of([&] { io::save_safetensors(path, bad_size); }), outcome::size);
  EXPECT_EQ(outcome_of([&] { io::save_safetensors(path, dup); }), outcome::duplicate);
  EXPECT_TRUE(listing().empty());

  // An existing target keeps its bytes.
  io::save_safetensors(path, std::vector<io::tensor_to_write>{{"ok", dtype::u8, {4}, d}});
  const std::string before = slurp(path);
  EXPECT_EQ(outcome_of([&] { io::save_safetensors(path, bad_size); }), outcome::size);
  EXPECT_EQ(outcome_of([&] { io::save_safetensors(path, dup, {{"k", "\xff"}}); }), outcome::duplicate);
  EXPECT_EQ(outcome_of([&] { io::save_safetensors(path, {}, {{"k", "\xff"}}); }), outcome::header);
  EXPECT_EQ(slurp(path), before);
  EXPECT_EQ(listing(), std::vector<std::string>{"model.safetensors"});

  // The rename fails (the target is a non-empty folder): the temporary file is removed.
  fs::create_directories(dir_ / "folder.safetensors" / "inside");
  EXPECT_EQ(outcome_of([&] { io::save_safetensors(dir_ / "folder.safetensors", {}); }), outcome::file);
  EXPECT_EQ(listing(), (std::vector<std::string>{"folder.safetensors", "model.safetensors"}));
  EXPECT_TRUE(fs::is_directory(dir_ / "folder.safetensors" / "inside"));

  // The folder does not exist: nothing is created anywhere.
  EXPECT_EQ(outcome_of([&] { io::save_safetensors(dir_ / "nope" / "m.safetensors", {}); }), outcome::file);
  EXPECT_FALSE(fs::exists(dir_ / "nope"));
  // Not a file name.
  EXPECT_EQ(outcome_of([&] { io::save_safetensors(dir_ / "", {}); }), outcome::file);
  EXPECT_EQ(listing(), (std::vector<std::string>{"folder.safetensors", "model.safetensors"}));
}

// ---- a file written by the reference ------------------------------------------------------------

TEST(SafetensorsReference, ReadsAFileWrittenByPythonSafetensorsAndWritesItBackIdentically) {
#ifndef QUANTO_TEST_DATA_DIR
  GTEST_SKIP() << "QUANTO_TEST_DATA_DIR is not defined";
#else
  // tools/make_io_fixture.py wrote this with safetensors 0.8.0.
  const fs::path path = fs::path(QUANTO_TEST_DATA_DIR) / "io" / "python_small.safetensors";
  const auto f = io::safetensors_file::open(path);
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  // The reference's order: I64, F32, BF16, F16, F8_E4M3, F8_E5M2, I8, U8, BOOL.
  std::vector<std::string> names;
  for (const auto& t : f.tensors()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"idx", "weight", "bias", "scale", "f8", "f8b", "q", "empty", "mask"}));
  EXPECT_EQ(f.read_as<std::int64_t>("idx", dtype::i64), (std::vector<std::int64_t>{-1, std::int64_t{1} << 40}));
  EXPECT_EQ(f.at("weight").shape, (std::vector<std::int64_t>{2, 3}));
  EXPECT_EQ(f.read_as<float>("weight", dtype::f32), (std::vector<float>{0.0f, 0.5f, 1.0f, 1.5f, -2.0f, 3.25f}));
  EXPECT_EQ(f.read_as<std::uint16_t>("bias", dtype::bf16), (std::vector<std::uint16_t>{0x3F80, 0x4000, 0xC040}));
  EXPECT_TRUE(f.at("scale").shape.empty());
  EXPECT_EQ(f.read_as<std::uint16_t>("scale", dtype::f16), std::vector<std::uint16_t>{0x3C00});
  EXPECT_EQ(f.read_as<std::int8_t>("q", dtype::i8), (std::vector<std::int8_t>{-128, -1, 0, 127}));
  EXPECT_EQ(f.read_as<std::uint8_t>("f8", dtype::f8_e4m3fn), (std::vector<std::uint8_t>{0x38, 0x40, 0xB8, 0x7E}));
  EXPECT_EQ(f.read_as<std::uint8_t>("f8b", dtype::f8_e5m2), (std::vector<std::uint8_t>{0x3C, 0xC0}));
  EXPECT_EQ(f.at("empty").shape, (std::vector<std::int64_t>{0, 3}));
  EXPECT_EQ(f.at("empty").begin, f.at("empty").end);
  EXPECT_EQ(f.read_as<std::uint8_t>("mask", dtype::boolean), (std::vector<std::uint8_t>{1, 0, 1}));

  std::vector<io::tensor_to_write> again;
  for (const auto& t : f.tensors()) again.push_back({t.name, t.dtype, t.shape, f.bytes(t)});
  std::reverse(again.begin(), again.end());  // the input order does not matter
  std::ifstream in(path, std::ios::binary);
  const std::string original{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  EXPECT_EQ(to_string(io::serialize_safetensors(again, f.metadata())), original);
#endif
}

// Duplicate-key detection in a header must stay compact: a header of millions of keys (here in
// an unknown field, where every key is kept to reject a repeat) used to cost a std::set node per
// key, about 7x the header's bytes. A forked child opens such a header and reports its peak
// resident growth per header byte.
TEST(SafetensorsRead, DuplicateKeyDetectionStaysCompact) {
#if defined(__SANITIZE_ADDRESS__)
  constexpr bool address_sanitizer = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  constexpr bool address_sanitizer = true;
#else
  constexpr bool address_sanitizer = false;
#endif
#else
  constexpr bool address_sanitizer = false;
#endif
  if (address_sanitizer) {
    // ASan's redzones, quarantine and shadow pages make the resident size no measure of what the
    // reader allocates; the plain build checks the bound.
    GTEST_SKIP() << "peak resident size is not meaningful under AddressSanitizer";
  }
  std::string header = R"({"t":{"dtype":"U8","shape":[0],"data_offsets":[0,0],"x":{)";
  constexpr int keys = 2'000'000;
  for (int i = 0; i < keys; ++i) {
    header += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":0";
  }
  header += "}}}";
  const auto path = std::filesystem::temp_directory_path() / ("quanto_big_header_" + std::to_string(::getpid()));
  {
    std::ofstream f(path, std::ios::binary);
    const std::uint64_t n = header.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f.write(header.data(), static_cast<std::streamsize>(n));
  }
  const std::size_t header_size = header.size();
  std::string().swap(header);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    rusage before{}, after{};
    ::getrusage(RUSAGE_SELF, &before);
    int code = 250;
    try {
      const auto f = io::safetensors_file::open(path);
      ::getrusage(RUSAGE_SELF, &after);
      const double growth = static_cast<double>(after.ru_maxrss - before.ru_maxrss) * 1024.0;
      code = static_cast<int>(std::min(200.0, 10.0 * growth / static_cast<double>(header_size)));
    } catch (...) {
      code = 251;
    }
    ::_exit(code);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  std::filesystem::remove(path);
  ASSERT_TRUE(WIFEXITED(status));
  const int tenths = WEXITSTATUS(status);
  ASSERT_LT(tenths, 250) << "the header was not read";
  EXPECT_LT(tenths, 50) << "peak growth " << tenths / 10.0 << "x the header's " << header_size << " bytes";
}

}  // namespace
