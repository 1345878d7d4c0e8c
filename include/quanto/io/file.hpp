// quanto/io/file.hpp: the file-system layer under every quanto::io reader and writer.
//
// Reading: `map_file` maps a file read-only (POSIX mmap; elsewhere it reads the file into an
// aligned buffer), so a reader validates the bytes in place and hands out views of them without a
// copy. `release_pages` drops the pages of a range the caller is done with, so that streaming a
// model larger than memory through a mapping keeps the resident set bounded.
//
// Writing is crash-atomic: `replace_file` writes a fresh temporary file in the target's folder
// (created exclusively), flushes it to the disk (fsync), gives it the permissions of the file it
// replaces, renames it over the target and then flushes the folder itself (fsync of the
// directory, without which the rename may not survive a power cut). After a crash at any point
// the target is either the old file or the new one, never a torn or zero-filled file. A reader
// that still maps the old file keeps reading the old bytes: rename replaces the name, not the
// inode. Leftover temporary files are named ".<target>.tmp-<16 hex digits>".
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
#include <memory>
#include <mutex>
#include <new>
#include <random>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "quanto/core/config.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/text.hpp"

#if defined(__unix__) || defined(__APPLE__)
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#define QUANTO_IO_POSIX 1
#else
#define QUANTO_IO_POSIX 0
#endif

QUANTO_BEGIN_NAMESPACE
namespace io {

/// The signal that asked this process to stop (0: none). Set by the handlers of
/// `install_interrupt_handlers` (a lock-free atomic store: async-signal-safe), read by the writers
/// between tensors and chunks (`check_interrupt`). A program may also set it itself.
inline std::atomic<int>& interrupt_signal() noexcept {
  static std::atomic<int> signal{0};
  static_assert(std::atomic<int>::is_always_lock_free);
  return signal;
}

/// Throws `interrupted_error` when a stop was asked for.
inline void check_interrupt() {
  if (const int s = interrupt_signal().load(std::memory_order_relaxed)) throw interrupted_error(s);
}

/// Installs handlers for SIGINT and SIGTERM that only record the signal: the save in progress
/// stops at its next check, removes its staging files and throws `interrupted_error`. The
/// handlers reset themselves (SA_RESETHAND), so a second signal ends the process at once.
inline void install_interrupt_handlers() {
#if QUANTO_IO_POSIX
  struct sigaction sa {};
  sa.sa_handler = [](int s) { interrupt_signal().store(s, std::memory_order_relaxed); };
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  ::sigaction(SIGINT, &sa, nullptr);
  ::sigaction(SIGTERM, &sa, nullptr);
#endif
}

}  // namespace io

namespace io::detail {

inline std::error_code last_errno() noexcept { return {errno, std::generic_category()}; }

inline std::FILE* open_file(const std::filesystem::path& p, const char* mode) {
#ifdef _WIN32
  std::wstring wmode(mode, mode + std::strlen(mode));
  return ::_wfopen(p.c_str(), wmode.c_str());
#else
  return std::fopen(p.c_str(), mode);
#endif
}

struct file_closer {
  std::FILE* f = nullptr;
  ~file_closer() {
    if (f) std::fclose(f);
  }
};

struct aligned_delete {
  void operator()(std::byte* p) const noexcept { ::operator delete (p, std::align_val_t{QUANTO_BUFFER_ALIGNMENT}); }
};

/// The bytes of a whole file, in memory that lives as long as the shared pointer.
struct file_bytes {
  std::shared_ptr<const std::byte> data;
  std::size_t size = 0;
  bool mapped = false;  ///< a read-only file mapping (release_pages applies), or a heap copy
};

/// Reads a whole file into a buffer aligned to QUANTO_BUFFER_ALIGNMENT.
inline file_bytes read_whole_file(const std::filesystem::path& path) {
  errno = 0;
  file_closer file{open_file(path, "rb")};
  if (!file.f) throw file_error("cannot open " + quote_path(path), path, last_errno());
  std::error_code ec;
  const std::uintmax_t size = std::filesystem::file_size(path, ec);
  if (ec) throw file_error("cannot read the size of " + quote_path(path), path, ec);
  if (size > std::numeric_limits<std::size_t>::max())
    throw file_error("the file " + quote_path(path) + " is too large for this machine", path);
  const auto n = static_cast<std::size_t>(size);
  std::shared_ptr<std::byte> buffer(
      static_cast<std::byte*>(::operator new (n == 0 ? 1 : n, std::align_val_t{QUANTO_BUFFER_ALIGNMENT})),
      aligned_delete{});
  std::size_t got = 0;
  while (got < n) {
    const std::size_t r = std::fread(buffer.get() + got, 1, n - got, file.f);
    if (r == 0) break;
    got += r;
  }
  if (got != n) {
    if (std::ferror(file.f)) throw file_error("cannot read " + quote_path(path), path, last_errno());
    throw file_error("the file " + quote_path(path) + " shrank while it was read", path);
  }
  if (std::fgetc(file.f) != EOF) throw file_error("the file " + quote_path(path) + " grew while it was read", path);
  return {std::shared_ptr<const std::byte>(std::move(buffer)), n, false};
}

/// Maps a regular file read-only (private mapping: nothing is ever written through it). Where
/// there is no mmap, or for an empty file, reads it instead. Not a regular file (a folder, a
/// FIFO, a device): `file_error`. A file that another process truncates while it is mapped is
/// outside what any mmap reader can defend against (the reference reader too): do not do that.
inline file_bytes map_file(const std::filesystem::path& path) {
#if QUANTO_IO_POSIX
  int fd = -1;
  do {
    errno = 0;
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) throw file_error("cannot open " + quote_path(path), path, last_errno());
  struct fd_closer {
    int fd;
    ~fd_closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) throw file_error("cannot read the size of " + quote_path(path), path, last_errno());
  if (!S_ISREG(st.st_mode))
    throw file_error(
        "cannot open " + quote_path(path) + ": not a regular file", path,
        std::make_error_code(S_ISDIR(st.st_mode) ? std::errc::is_a_directory : std::errc::invalid_argument));
  if (st.st_size <= 0) return {std::make_shared<const std::byte>(), 0, false};
  if (static_cast<std::uintmax_t>(st.st_size) > std::numeric_limits<std::size_t>::max())
    throw file_error("the file " + quote_path(path) + " is too large for this machine", path);
  const auto n = static_cast<std::size_t>(st.st_size);
  void* p = ::mmap(nullptr, n, PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) throw file_error("cannot map " + quote_path(path), path, last_errno());
  const auto* bytes = static_cast<const std::byte*>(p);
  return {std::shared_ptr<const std::byte>(bytes, [n](const std::byte* q) { ::munmap(const_cast<std::byte*>(q), n); }),
          n, true};
#else
  return read_whole_file(path);
#endif
}

/// Tells the kernel that the whole pages inside [p, p + n) of a read-only file mapping are not
/// needed for now: they leave the resident set, and are read from the file again if touched.
/// Only for memory from `map_file` with `mapped == true` (on other memory it would lose data).
inline void release_pages([[maybe_unused]] const std::byte* p, [[maybe_unused]] std::size_t n) noexcept {
#if QUANTO_IO_POSIX
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<std::uintptr_t>(p) + page - 1) / page * page;
  const auto end = (reinterpret_cast<std::uintptr_t>(p) + n) / page * page;
  // NOLINTNEXTLINE(performance-no-int-to-ptr): the page-aligned address madvise needs
  if (end > begin) (void)::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
#endif
}

/// 16 hex digits that differ between calls, threads and processes.
inline std::string unique_suffix() {
  static std::atomic<std::uint64_t> counter{0};
  std::uint64_t r = static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  try {
    std::random_device rd;
    r ^= (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
  } catch (...) {  // no entropy source: the clock and the counter still make names unique here
  }
  const std::uint64_t c = counter.fetch_add(1);
  r ^= (c << 40) ^ (c << 17) ^ c;  // (no wrapping arithmetic: clean under -fsanitize=integer)
  std::string s;
  for (int i = 15; i >= 0; --i) s += "0123456789abcdef"[(r >> (4 * i)) & 0xF];
  return s;
}

/// A fresh name in the target's folder: ".<target name>.tmp-<16 hex digits>".
inline std::filesystem::path temp_path_for(const std::filesystem::path& target) {
  return target.parent_path() / ("." + target.filename().string().substr(0, 64) + ".tmp-" + unique_suffix());
}

/// Flushes a folder's entries (new names, renames) to the disk. A no-op where folders cannot be
/// opened (not POSIX). Throws `file_error`.
inline void sync_directory(const std::filesystem::path& dir) {
#if QUANTO_IO_POSIX
  const auto d = dir.empty() ? std::filesystem::path(".") : dir;
  const int fd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw file_error("cannot open the folder " + quote_path(d) + " to flush it", d, last_errno());
  const int r = ::fsync(fd);
  const auto ec = last_errno();
  ::close(fd);
  // Some file systems cannot fsync a folder (EINVAL): nothing more can be done there.
  if (r != 0 && ec != std::errc::invalid_argument) throw file_error("cannot flush the folder " + quote_path(d), d, ec);
#else
  (void)dir;
#endif
}

/// A file being written: created exclusively (never someone else's file), removed again unless
/// `commit` flushed it to the disk. `write` throws `file_error` (with the system's reason: ENOSPC,
/// EIO, ...).
class output_file {
 public:
  /// Creates `path`; file_error if it exists or cannot be created.
  explicit output_file(std::filesystem::path path) : path_(std::move(path)) {
    errno = 0;
    f_ = open_file(path_, "wbx");
    if (!f_) throw file_error("cannot create " + quote_path(path_), path_, last_errno());
  }
  /// Creates a fresh temporary file next to `target` (see temp_path_for).
  static output_file temporary_for(const std::filesystem::path& target) {
    for (int attempt = 0;; ++attempt) {
      try {
        return output_file(temp_path_for(target));
      } catch (const file_error& e) {
        if (e.code() != std::errc::file_exists || attempt == 16) throw;
      }
    }
  }
  output_file(output_file&& o) noexcept
      : path_(std::move(o.path_)),
        f_(std::exchange(o.f_, nullptr)),
        committed_(std::exchange(o.committed_, true)),
        written_(o.written_),
        flushed_(o.flushed_.load()) {}
  output_file& operator=(output_file&&) = delete;
  ~output_file() {
    if (f_) std::fclose(f_);
    if (!committed_) {
      std::error_code ec;
      std::filesystem::remove(path_, ec);
    }
  }

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] std::uint64_t bytes_written() const noexcept { return written_; }

  void write(const void* data, std::size_t n) {
    if (n == 0) return;
    errno = 0;
    if (std::fwrite(data, 1, n, f_) != n) throw file_error("cannot write " + quote_path(path_), path_, last_errno());
    written_ += n;
  }

  /// Writes `n` bytes at `offset` (past the end: the file grows; bytes never written read as 0).
  /// Safe to call from several threads at once for disjoint ranges; anything written with
  /// `write` before is flushed first, by the first call.
  void write_at(std::uint64_t offset, const void* data, std::size_t n) {
    if (n == 0) return;
#if QUANTO_IO_POSIX
    if (!flushed_.load(std::memory_order_acquire)) {
      const std::lock_guard lock(mutex_);
      if (!flushed_.load(std::memory_order_relaxed)) {
        if (std::fflush(f_) != 0) throw file_error("cannot write " + quote_path(path_), path_, last_errno());
        flushed_.store(true, std::memory_order_release);
      }
    }
    const int fd = ::fileno(f_);
    const auto* p = static_cast<const char*>(data);
    while (n != 0) {
      if (offset > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()))
        throw file_error("cannot write " + quote_path(path_) + ": offset too large", path_);
      const ::ssize_t r = ::pwrite(fd, p, n, static_cast<off_t>(offset));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        throw file_error("cannot write " + quote_path(path_), path_,
                         r < 0 ? last_errno() : std::make_error_code(std::errc::io_error));
      p += r;
      n -= static_cast<std::size_t>(r);
      offset += static_cast<std::uint64_t>(r);
    }
#else
    const std::lock_guard lock(mutex_);
    if (std::fseek(f_, static_cast<long>(offset), SEEK_SET) != 0 || std::fwrite(data, 1, n, f_) != n)
      throw file_error("cannot write " + quote_path(path_), path_, last_errno());
    std::fseek(f_, 0, SEEK_END);
#endif
  }

  /// Gives the file the permission bits of `like` (the file it is about to replace), and its
  /// owner and group where the process may (root); a missing `like` changes nothing.
  void copy_permissions_of([[maybe_unused]] const std::filesystem::path& like) {
#if QUANTO_IO_POSIX
    struct stat st {};
    if (::stat(like.c_str(), &st) != 0) return;
    const int fd = ::fileno(f_);
    if (::fchmod(fd, st.st_mode & 07777) != 0)
      throw file_error("cannot set the permissions of " + quote_path(path_), path_, last_errno());
    (void)::fchown(fd, st.st_uid, st.st_gid);  // EPERM unless root: the new file keeps ours
#endif
  }

  /// Flushes the data to the disk and closes the file, which then stays. Throws `file_error`.
  void commit() {
    errno = 0;
    if (std::fflush(f_) != 0) throw file_error("cannot write " + quote_path(path_), path_, last_errno());
#if QUANTO_IO_POSIX
    if (::fsync(::fileno(f_)) != 0)
      throw file_error("cannot flush " + quote_path(path_) + " to the disk", path_, last_errno());
#endif
    errno = 0;
    if (std::fclose(std::exchange(f_, nullptr)) != 0)
      throw file_error("cannot write " + quote_path(path_), path_, last_errno());
    committed_ = true;
  }

 private:
  std::filesystem::path path_;
  std::FILE* f_ = nullptr;
  bool committed_ = false;
  std::uint64_t written_ = 0;
  std::atomic<bool> flushed_{false};
  std::mutex mutex_;
};

/// The last steps of a crash-atomic write: `tmp` (complete) gets the permissions of the file it
/// replaces, is flushed to the disk and renamed over `path`, and the folder is flushed.
inline void install_file(output_file& tmp, const std::filesystem::path& path) {
  tmp.copy_permissions_of(path);
  tmp.commit();
  std::error_code ec;
  std::filesystem::rename(tmp.path(), path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp.path(), ignored);
    throw file_error("cannot rename the temporary file over " + quote_path(path), path, ec);
  }
  sync_directory(path.parent_path());
}

/// Writes a file all or nothing (see the top of this file): `fill(write)` writes the contents
/// through `write(data, bytes)`; then fsync, the old file's permissions, rename over `path`,
/// fsync of the folder. On any failure `path` is left as it was and the temporary file is
/// removed; file system failures throw `file_error`. `what` names the kind of file in messages.
template <class Fill>
void replace_file(const std::filesystem::path& path, std::string_view what, Fill&& fill) {
  if (!path.has_filename())
    throw file_error("cannot write " + std::string(what) + " " + quote_path(path) + ": not a file name", path);
  output_file tmp = output_file::temporary_for(path);
  const auto write = [&](const void* data, std::size_t n) { tmp.write(data, n); };
  fill(write);
  install_file(tmp, path);
}

}  // namespace io::detail
QUANTO_END_NAMESPACE
