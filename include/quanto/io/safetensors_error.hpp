// quanto/io/safetensors_error.hpp: the typed errors of the safetensors reader and writer.
//
// One class per class of fault. Every fault in a file's bytes derives from `quanto::format_error`
// (catch that to catch any malformed file); a failure of the file system itself (open, read,
// write, rename) is an `io::file_error`, which derives from `quanto::error` only.
#pragma once

#include <filesystem>
#include <string>
#include <system_error>
#include <utility>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// The header itself is unusable: the file is shorter than 8 bytes, the header size N is over
/// the 100,000,000-byte limit or runs past the end of the file, the header is not UTF-8, not
/// JSON, not an object, nested too deeply, or does not follow the schema (a field missing or of
/// the wrong JSON type, `__metadata__` not a map of strings, `data_offsets` not exactly two
/// non-negative integers). On write: a name or metadata string that is not UTF-8, a tensor
/// named `__metadata__`, or a header that would exceed the limit.
class header_error : public format_error {
 public:
  using format_error::format_error;
};

/// A dtype string that is not a safetensors dtype quanto supports ("u8", "Q4_0", "F8_E8M0"),
/// or, in `read_as`, a tensor whose dtype is not the one the caller asked for.
class dtype_error : public format_error {
 public:
  using format_error::format_error;
};

/// The byte ranges do not tile the data section exactly: a gap, an overlap, END < BEGIN, a range
/// past the end of the file, or bytes after the last tensor (a polyglot file).
class offset_error : public format_error {
 public:
  using format_error::format_error;
};

/// A shape that does not fit the bytes: shape x dtype size differs from END - BEGIN (or, on
/// write, from the length of the data given), a negative dimension, or a size computation that
/// would overflow.
class size_error : public format_error {
 public:
  using format_error::format_error;
};

/// The same key twice at any level of the header: a tensor name, `__metadata__`, a metadata key,
/// or a field of one tensor entry. On write: two tensors with the same name.
class duplicate_error : public format_error {
 public:
  using format_error::format_error;
};

/// A tensor looked up by name (`safetensors_file::at`, `read_as`) that the file does not hold.
class missing_tensor_error : public format_error {
 public:
  using format_error::format_error;
};

/// The file system failed: a file could not be opened, read, created, written or renamed.
/// Carries the path and the system's error code (which may be empty when there is none).
class file_error : public error {
 public:
  file_error(const std::string& what, std::filesystem::path path, std::error_code code = {})
      : error(code ? what + ": " + code.message() : what), path_(std::move(path)), code_(code) {}

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] std::error_code code() const noexcept { return code_; }

 private:
  std::filesystem::path path_;
  std::error_code code_;
};

/// A save stopped because the process was asked to stop (SIGINT, SIGTERM: see
/// `install_interrupt_handlers` in io/file.hpp). Thrown between tensors and between chunks of a
/// tensor; the staging files are removed on the way out and the target is left as it was.
class interrupted_error : public error {
 public:
  explicit interrupted_error(int signal)
      : error(std::string("interrupted by ") + (signal == 2    ? "SIGINT"
                                                : signal == 15 ? "SIGTERM"
                                                               : "a signal")),
        signal_(signal) {}
  /// The signal's number (2: SIGINT, 15: SIGTERM).
  [[nodiscard]] int signal() const noexcept { return signal_; }

 private:
  int signal_;
};

}  // namespace io
QUANTO_END_NAMESPACE
