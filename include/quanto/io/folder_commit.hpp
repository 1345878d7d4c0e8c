// quanto/io/folder_commit.hpp: a folder written in full, then put in its target's place in one step.
//
// The files are written and flushed (fsync) into a staging folder `.<name>.quanto-tmp-<pid>-<hex>`
// next to the target, the staging folder is flushed, and then it takes the target's place
// (`commit_folder`): a rename when the target does not exist, an atomic exchange of the two
// folders (Linux renameat2 RENAME_EXCHANGE) when it does and `overwrite` was asked for, after which
// the old folder is deleted. A crash at any point leaves the target as the old folder or the new
// one, never a mix (without RENAME_EXCHANGE, a crash between the fallback's two renames leaves the
// old one under its backup name, which the next save into the folder restores: see
// commit_folder); a staging folder left by a killed process is recognised by its name
// (`<pid>-s<start time>-`) and removed by the next save into the same parent folder, of any
// target, once that process provably no longer runs (`remove_stale_staging`). Readers that still
// map files of the old folder keep reading the old bytes. Used by `save_checkpoint`
// (io/checkpoint_writer.hpp) and `quantize_model` (io/model_run.hpp).
#pragma once

#include <cerrno>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

#include "quanto/core/config.hpp"
#include "quanto/io/file.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/text.hpp"

#if QUANTO_IO_POSIX
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#endif

QUANTO_BEGIN_NAMESPACE
namespace io::detail {

inline std::string staging_prefix(const std::filesystem::path& target) {
  return "." + target.filename().string().substr(0, 64) + ".quanto-tmp-";
}

/// When the process `pid` started (clock ticks since boot, Linux's /proc/<pid>/stat field 22);
/// nothing where that cannot be read.
inline std::optional<std::uint64_t> process_start_time(long pid) {
#if defined(__linux__)
  std::FILE* f = std::fopen(("/proc/" + std::to_string(pid) + "/stat").c_str(), "r");
  if (!f) return std::nullopt;
  char buf[1024];
  const std::size_t n = std::fread(buf, 1, sizeof buf - 1, f);
  std::fclose(f);
  buf[n] = '\0';
  const char* p = std::strrchr(buf, ')');  // the command name may hold spaces and parentheses
  if (!p) return std::nullopt;
  ++p;
  for (int field = 3; field < 22; ++field) {  // p is before field 3 (the state)
    while (*p == ' ') ++p;
    while (*p && *p != ' ') ++p;
  }
  char* end = nullptr;
  const unsigned long long v = std::strtoull(p, &end, 10);
  if (end == p) return std::nullopt;
  return v;
#else
  (void)pid;
  return std::nullopt;
#endif
}

/// This process's part of a staging folder's name: `<pid>-s<start time>-` (`<pid>-` where the
/// start time cannot be read).
inline std::string staging_owner() {
#if QUANTO_IO_POSIX
  const long pid = static_cast<long>(::getpid());
  static const auto start = process_start_time(pid);
  return std::to_string(pid) + "-" + (start ? "s" + std::to_string(*start) + "-" : "");
#else
  return "0-";
#endif
}

inline constexpr std::string_view staging_marker = ".quanto-tmp-";
/// The old folder's name while the two-rename fallback replaces it: `.<target>.quanto-old-<owner><hex>`
/// (the whole target name: a run that finds it with no target restores it under that name).
inline constexpr std::string_view backup_marker = ".quanto-old-";

/// For tests: 1 makes `commit_folder` use the two-rename fallback even where RENAME_EXCHANGE
/// works; 2 also ends the process (`_exit(86)`) between the two renames, as a crash would.
inline int& commit_test_hook() noexcept {
  static int hook = 0;
  return hook;
}

/// True when the staging folder `name` (`.<target>.quanto-tmp-<pid>-[s<start>-]<hex>...`) was
/// left by a process that provably no longer runs: no process has its pid (kill gives ESRCH), or
/// the process with that pid started at another time (the pid was reused).
inline bool staging_is_dead(std::string_view name, std::string_view marker = staging_marker) {
#if QUANTO_IO_POSIX
  if (name.empty() || name.front() != '.') return false;
  const auto at = name.rfind(marker);
  if (at == std::string_view::npos) return false;
  const std::string rest(name.substr(at + marker.size()));
  char* end = nullptr;
  const long pid = std::strtol(rest.c_str(), &end, 10);
  if (pid <= 0 || end == rest.c_str() || *end != '-') return false;
  if (pid == static_cast<long>(::getpid())) return false;  // ours (another save of this process)
  if (::kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  if (end[1] != 's') return false;  // alive, and no start time to compare
  char* end2 = nullptr;
  const unsigned long long start = std::strtoull(end + 2, &end2, 10);
  if (end2 == end + 2 || *end2 != '-') return false;
  const auto now = process_start_time(pid);
  return now && *now != start;
#else
  (void)name;
  (void)marker;
  return false;
#endif
}

/// Removes the staging folders in `target`'s parent folder, of any target, left by processes
/// that provably no longer run (`staging_is_dead`): a save killed by SIGKILL or a crash.
inline void remove_stale_staging(const std::filesystem::path& target) {
  const auto parent = target.parent_path().empty() ? std::filesystem::path(".") : target.parent_path();
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(parent, ec)) {
    const std::string name = e.path().filename().string();
    std::error_code ignored;
    if (staging_is_dead(name, backup_marker)) {
      // The old folder of a replacement that stopped between its two renames (see commit_folder):
      // restored when the target is missing, else the new folder is in place and this is removed.
      const auto at = name.rfind(backup_marker);
      const auto target_path = parent / name.substr(1, at - 1);
      if (at > 1 && !std::filesystem::exists(std::filesystem::symlink_status(target_path, ignored))) {
        std::filesystem::rename(e.path(), target_path, ignored);
        if (!ignored) sync_directory(parent);
        continue;
      }
      std::filesystem::remove_all(e.path(), ignored);
      continue;
    }
    if (!staging_is_dead(name)) continue;
    std::filesystem::remove_all(e.path(), ignored);
  }
}

/// Checks, before anything is written, that a model folder can be saved at `target`: an existing
/// target must be a real folder (not a file, not a symbolic link: the link would be replaced, not
/// what it leads to) and `overwrite` must be set; the nearest existing folder above it must be a
/// folder this process may write into. Throws `file_error` (`file_exists` for an existing target
/// without `overwrite`).
inline void check_folder_target(const std::filesystem::path& target, bool overwrite, const std::string& what) {
  std::error_code ec;
  const auto st = std::filesystem::symlink_status(target, ec);
  if (std::filesystem::exists(st)) {
    if (!overwrite) throw file_error(what + "it already exists", target, std::make_error_code(std::errc::file_exists));
    if (std::filesystem::is_symlink(st))
      throw file_error(
          what + "it is a symbolic link; only a real folder is replaced (remove the link or name its target)", target,
          std::make_error_code(std::errc::not_a_directory));
    if (!std::filesystem::is_directory(st))
      throw file_error(what + "it is a file, not a folder; only a model folder is replaced", target,
                       std::make_error_code(std::errc::not_a_directory));
  }
  auto above = target.parent_path();
  if (above.empty()) above = ".";
  for (;;) {  // the nearest existing folder above: create_directories starts there
    const auto s = std::filesystem::status(above, ec);
    if (std::filesystem::exists(s)) {
      if (!std::filesystem::is_directory(s))
        throw file_error(what + quote_path(above) + " is not a folder", above,
                         std::make_error_code(std::errc::not_a_directory));
      break;
    }
    if (!above.has_parent_path() || above.parent_path() == above) break;
    above = above.parent_path();
  }
#if QUANTO_IO_POSIX
  if (std::filesystem::exists(above, ec) && ::access(above.c_str(), W_OK | X_OK) != 0)
    throw file_error(what + "the folder " + quote_path(above) + " is not writable", above, last_errno());
#endif
}

/// Puts the finished staging folder in `target`'s place (see the top of this file).
inline void commit_folder(const std::filesystem::path& staging, const std::filesystem::path& target, bool overwrite) {
  std::error_code ec;
  const bool exists = std::filesystem::exists(std::filesystem::symlink_status(target, ec));
  if (!exists) {
    std::filesystem::rename(staging, target, ec);
    if (ec) throw file_error("cannot move the new model folder into place at " + quote_path(target), target, ec);
  } else {
    if (!overwrite)
      throw file_error("the model folder " + quote_path(target) + " already exists", target,
                       std::make_error_code(std::errc::file_exists));
    if (!std::filesystem::is_directory(std::filesystem::symlink_status(target, ec)))
      throw file_error("cannot replace " + quote_path(target) + ": it is not a folder", target,
                       std::make_error_code(std::errc::not_a_directory));
    bool exchanged = false;
#if defined(RENAME_EXCHANGE)
    errno = 0;
    if (commit_test_hook() != 0) {
      // (the fallback below, as on a file system without RENAME_EXCHANGE)
    } else if (::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, target.c_str(), RENAME_EXCHANGE) == 0) {
      exchanged = true;
    } else if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) {
      throw file_error("cannot swap the new model folder into place at " + quote_path(target), target, last_errno());
    }
#endif
    if (!exchanged) {
      // No atomic exchange here: two renames. A crash between them leaves the old folder under
      // its backup name and the new one under `staging`, both complete, and no target: the next
      // save into this folder (remove_stale_staging) puts the old folder back.
      const auto aside = staging.parent_path() / ("." + target.filename().string() + std::string(backup_marker) +
                                                  staging_owner() + unique_suffix());
      std::filesystem::rename(target, aside, ec);
      if (ec) throw file_error("cannot move the old model folder " + quote_path(target) + " aside", target, ec);
      sync_directory(target.parent_path());
#if QUANTO_IO_POSIX
      if (commit_test_hook() == 2) ::_exit(86);
#endif
      std::filesystem::rename(staging, target, ec);
      if (ec) {
        std::error_code ignored;
        std::filesystem::rename(aside, target, ignored);
        throw file_error("cannot move the new model folder into place at " + quote_path(target), target, ec);
      }
      sync_directory(target.parent_path());
      std::filesystem::remove_all(aside, ec);
      return;
    }
  }
  sync_directory(target.parent_path());
  if (exists) std::filesystem::remove_all(staging, ec);  // the old folder, now under the staging name
}

}  // namespace io::detail
QUANTO_END_NAMESPACE
