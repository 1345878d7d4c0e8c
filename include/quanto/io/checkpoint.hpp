// quanto/io/checkpoint.hpp: Hugging Face model folders, one file or sharded, read and written.
//
// A folder holds either `model.safetensors`, or shards (`model-00001-of-00003.safetensors`, ...)
// and `model.safetensors.index.json`:
//
//   {
//     "metadata": {"total_parameters": 106816, "total_size": 427264},
//     "weight_map": {"lm_head.weight": "model-00003-of-00003.safetensors", ...}
//   }
//
// Reading (`checkpoint::open`) maps every shard (zero-copy, io/safetensors.hpp) and checks the
// folder as a whole before it returns:
//   * the index is parsed by a schema-directed SAX handler: a JSON object with a "weight_map"
//     object of strings; "metadata" and unknown keys may hold anything, but nesting is limited
//     and a key given twice at any depth is rejected (`index_error`, `duplicate_error`);
//   * a shard name must be a plain file name inside the folder: not empty, UTF-8, no NUL, no `/`
//     or `\`, not `.` or `..`, so not absolute either, and a symbolic link must not lead out of
//     the folder (`path_error`); nothing outside the folder is ever opened. One exception: in a
//     Hugging Face hub cache snapshot, `<cache>/models--<org>--<name>/snapshots/<revision>/`, the
//     files are links into `../../blobs/`, and links may lead anywhere inside the cache
//     repository folder `models--<org>--<name>` (still not out of it);
//   * every tensor of the index is in the shard the index names, every tensor of a shard is in
//     the index under that shard (so no tensor is in two shards), and "total_size", when given,
//     is the sum of the tensors' bytes (`checkpoint_error`).
//
// Writing (`save_checkpoint`) is crash-atomic for the whole folder: the shards, the extra files
// (config.json, quanto_qmap.json, ...) and then, last, the index are written and flushed (fsync)
// into a staging folder `.<name>.quanto-tmp-<pid>-<hex>` next to the target, the staging folder
// is flushed, and then it takes the target's place in one step: a rename when the target does
// not exist, an atomic exchange of the two folders (Linux renameat2 RENAME_EXCHANGE) when it does
// and `overwrite` was asked for, after which the old folder is deleted. A crash at any point
// leaves the target as the old checkpoint or the new one, never a mix (without RENAME_EXCHANGE, a
// crash between the fallback's two renames leaves the old one under its backup name, which the
// next save into the folder restores: see commit_folder); a staging folder left by
// a killed process is recognised by its name (`<pid>-s<start time>-`) and removed by the next
// save into the same parent folder, of any target, once that process provably no longer runs.
// A save stops at a stop request (`interrupt_signal`, set by SIGINT/SIGTERM handlers) between
// tensors and chunks, removes its staging folder and throws `interrupted_error`.
// Readers that still map files of the old folder keep reading the old bytes.
//
// Shards are cut as transformers cuts them (huggingface_hub's greedy split): tensors in the
// order given, a new shard when the next tensor would take the current one over
// `max_shard_size`, a tensor larger than the limit alone in its own shard. One shard is written as
// `model.safetensors` without an index. The index's bytes are transformers' (`json.dumps(index,
// indent=2, sort_keys=True)` and a newline).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/io/file.hpp"
#include "quanto/io/key_set.hpp"
#include "quanto/io/qmap.hpp"
#include "quanto/io/safetensors.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/text.hpp"

#if QUANTO_IO_POSIX
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#endif

QUANTO_BEGIN_NAMESPACE
namespace io {

/// `model.safetensors.index.json` does not follow its schema: not UTF-8 or not JSON, not an
/// object, no "weight_map" object, a shard name that is not a string, "total_size" that is not a
/// non-negative integer, nesting deeper than `max_index_depth`.
class index_error : public format_error {
 public:
  using format_error::format_error;
};

/// A shard name that would leave the model folder: `..`, an absolute path, a sub-path, an
/// embedded NUL, an empty name, or a symbolic link whose target is outside the folder.
class path_error : public format_error {
 public:
  using format_error::format_error;
};

/// The files of a folder disagree: a tensor of the index missing from its shard, a tensor of a
/// shard that the index does not list there, "total_size" not the sum of the tensor sizes, or a
/// folder with neither `model.safetensors` nor an index.
class checkpoint_error : public format_error {
 public:
  using format_error::format_error;
};

inline constexpr std::string_view single_file_name = "model.safetensors";
inline constexpr std::string_view index_file_name = "model.safetensors.index.json";
/// The largest index file read (transformers' indexes are about 100 bytes per tensor).
inline constexpr std::uint64_t max_index_size = 100'000'000;
inline constexpr std::size_t max_index_depth = 64;

/// The content of `model.safetensors.index.json`.
struct shard_index {
  std::optional<std::uint64_t> total_size;        ///< "metadata": {"total_size": ...}
  std::optional<std::uint64_t> total_parameters;  ///< "metadata": {"total_parameters": ...}
  /// tensor name -> shard file name, in the order of the file.
  std::vector<std::pair<std::string, std::string>> weight_map;
};

namespace detail {

inline std::string index_where(std::string_view source) { return "shard index " + quote(source, 512) + ": "; }

/// Throws `path_error` unless `name` is a plain file name (see the top of this file).
inline void check_shard_name(std::string_view name, std::string_view tensor, std::string_view source) {
  const auto fail = [&](const char* why) {
    throw path_error(index_where(source) + "tensor " + quote(tensor) + ": the shard name " + quote(name) + " " + why);
  };
  if (name.empty()) fail("is empty");
  if (utf8_error_offset(name) != npos) fail("is not valid UTF-8");
  if (name.find('\0') != std::string_view::npos) fail("holds a NUL byte");
  if (name.find('/') != std::string_view::npos || name.find('\\') != std::string_view::npos)
    fail("is a path, not a file name in the model folder");
  if (name == "." || name == "..") fail("names a folder, not a file in the model folder");
}

/// The folder a shard's symbolic link may lead into, for the model folder `folder` (resolved):
/// the folder itself, or, for a Hugging Face hub cache snapshot `<cache>/models--<org>--<name>/
/// snapshots/<revision>`, the cache repository folder `models--<org>--<name>` (its snapshots'
/// files are links into `../../blobs/`).
inline std::filesystem::path link_containment_folder(const std::filesystem::path& folder) {
  const auto snapshots = folder.parent_path();
  auto repo = snapshots.parent_path();
  const std::string repo_name = repo.filename().string();
  if (folder.has_filename() && snapshots.filename() == "snapshots" && repo_name.size() > 8 &&
      repo_name.rfind("models--", 0) == 0 && repo != repo.root_path())
    return repo;
  return folder;
}

/// The index's schema, one token at a time (see the top of this file).
class index_sax {
 public:
  using json = nlohmann::json;
  explicit index_sax(std::string_view source) : source_(source) {}

  shard_index index;
  bool saw_weight_map = false;

  bool null() { return scalar("null"); }
  bool boolean(bool) { return scalar("a boolean"); }
  bool number_integer(json::number_integer_t) { return scalar("a negative integer"); }
  bool number_float(json::number_float_t, const json::string_t&) { return scalar("a floating-point number"); }
  bool binary(json::binary_t&) { return scalar("binary data"); }
  bool number_unsigned(json::number_unsigned_t v) {
    if (top() == frame::metadata && (key_ == "total_size" || key_ == "total_parameters")) {
      (key_ == "total_size" ? index.total_size : index.total_parameters) = v;
      return true;
    }
    return scalar("an integer");
  }
  bool string(json::string_t& s) {
    if (top() == frame::weight_map) {
      check_shard_name(s, key_, source_);
      index.weight_map.emplace_back(std::move(key_), std::move(s));
      return true;
    }
    return scalar("a string");
  }
  bool key(json::string_t& k) {
    if (!stack_.back().keys.insert(k))
      throw duplicate_error(index_where(source_) + "the key " + quote(k) + " appears twice in one object");
    key_ = std::move(k);
    return true;
  }
  bool start_object(std::size_t) {
    if (stack_.empty()) return push(frame::root);
    if (top() == frame::root && key_ == "weight_map") {
      saw_weight_map = true;
      return push(frame::weight_map);
    }
    if (top() == frame::root && key_ == "metadata") return push(frame::metadata);
    if (top() == frame::weight_map) reject("an object");
    if (top() == frame::metadata) check_not_total("an object");
    return push(frame::skip);
  }
  bool end_object() {
    stack_.pop_back();
    return true;
  }
  bool start_array(std::size_t) {
    if (stack_.empty()) throw index_error(index_where(source_) + "the index must be a JSON object, not an array");
    if (top() == frame::weight_map) reject("an array");
    if (top() == frame::root && (key_ == "weight_map" || key_ == "metadata"))
      throw index_error(index_where(source_) + "\"" + key_ + "\" must be an object");
    if (top() == frame::metadata) check_not_total("an array");
    return push(frame::skip);
  }
  bool end_array() {
    stack_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&, const json::exception& ex) {
    throw index_error(index_where(source_) + "not valid JSON (near byte " + std::to_string(position) +
                      "): " + quote(ex.what(), 240));
  }

 private:
  enum class frame { none, root, metadata, weight_map, skip };
  struct level {
    frame kind;
    json_key_set keys;  // compact: a 100 MB index's weight_map holds every tensor name
  };
  frame top() const noexcept { return stack_.empty() ? frame::none : stack_.back().kind; }
  bool push(frame f) {
    if (stack_.size() >= max_index_depth)
      throw index_error(index_where(source_) + "JSON nested deeper than " + std::to_string(max_index_depth) +
                        " levels");
    stack_.push_back({f, {}});
    return true;
  }
  bool scalar(const char* got) {
    switch (top()) {
      case frame::none:
        throw index_error(index_where(source_) + "the index must be a JSON object (got " + got + ")");
      case frame::weight_map:
        reject(got);
      case frame::root:
        if (key_ == "weight_map" || key_ == "metadata")
          throw index_error(index_where(source_) + "\"" + key_ + "\" must be an object (got " + got + ")");
        return true;
      case frame::metadata:
        if (key_ == "total_size" || key_ == "total_parameters")
          throw index_error(index_where(source_) + "\"" + key_ + "\" must be a non-negative integer (got " + got + ")");
        return true;
      default:
        return true;  // inside an ignored value
    }
  }
  void check_not_total(const char* got) const {
    if (key_ == "total_size" || key_ == "total_parameters")
      throw index_error(index_where(source_) + "\"" + key_ + "\" must be a non-negative integer (got " + got + ")");
  }
  [[noreturn]] void reject(const char* got) const {
    throw index_error(index_where(source_) + "weight_map: the shard of tensor " + quote(key_) +
                      " must be a file name string (got " + got + ")");
  }

  std::string_view source_;
  std::vector<level> stack_;
  std::string key_;
};

}  // namespace detail

/// Parses the text of a `model.safetensors.index.json` (see the top of this file for the rules).
[[nodiscard]] inline shard_index parse_shard_index(std::string_view json, std::string_view source = "<memory>") {
  const auto where = detail::index_where(source);
  if (const auto fault = detail::json_text_fault(json, max_index_size)) throw index_error(where + *fault);
  detail::index_sax sax(source);
  nlohmann::json::sax_parse(json.begin(), json.end(), &sax, nlohmann::json::input_format_t::json, true, false);
  if (!sax.saw_weight_map) throw index_error(where + "no \"weight_map\" object");
  return std::move(sax.index);
}

/// The index as transformers writes it: `json.dumps(index, indent=2, sort_keys=True) + "\n"`
/// (metadata holds the totals that are set; names are escaped as Python's json module does).
[[nodiscard]] inline std::string shard_index_json(const shard_index& index) {
  std::string out = "{\n  \"metadata\": {";
  bool first = true;
  const auto number = [&](const char* key, const std::optional<std::uint64_t>& v) {
    if (!v) return;
    out += std::exchange(first, false) ? "\n    \"" : ",\n    \"";
    out += key;
    out += "\": " + std::to_string(*v);
  };
  number("total_parameters", index.total_parameters);
  number("total_size", index.total_size);
  out += first ? "}" : "\n  }";
  out += ",\n  \"weight_map\": {";
  std::vector<const std::pair<std::string, std::string>*> sorted;
  sorted.reserve(index.weight_map.size());
  for (const auto& e : index.weight_map) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->first < b->first; });
  for (std::size_t i = 0; i < sorted.size(); ++i) {
    out += i == 0 ? "\n    " : ",\n    ";
    detail::append_python_json_string(out, sorted[i]->first);
    out += ": ";
    detail::append_python_json_string(out, sorted[i]->second);
  }
  out += sorted.empty() ? "}" : "\n  }";
  out += "\n}\n";
  return out;
}

/// A model folder (or one safetensors file), validated as a whole (see the top of this file).
class checkpoint {
 public:
  /// One tensor of the checkpoint.
  struct entry {
    const tensor_info* info;  ///< name, dtype, shape, byte range in its shard
    std::size_t shard;        ///< index into shards()
    [[nodiscard]] const std::string& name() const noexcept { return info->name; }
  };

  /// Opens a folder (`model.safetensors.index.json` and its shards, or `model.safetensors`) or a
  /// single `.safetensors` file. Throws `file_error` when a file cannot be opened, `checkpoint_error`
  /// for a folder without a model, and the typed format errors above and of the safetensors reader.
  static checkpoint open(const std::filesystem::path& path, safetensors_file::load how = safetensors_file::load::map) {
    checkpoint c;
    std::error_code ec;
    if (!std::filesystem::is_directory(path, ec)) {
      c.folder_ = path.parent_path();
      c.names_.push_back(path.filename().string());
      c.shards_.push_back(safetensors_file::open(path, how));
      c.index_all();
      return c;
    }
    c.folder_ = path;
    const auto index_path = path / index_file_name;
    if (std::filesystem::exists(index_path, ec)) {
      c.sharded_ = true;
      c.open_sharded(index_path, how);
      return c;
    }
    const auto single = path / single_file_name;
    if (!std::filesystem::exists(single, ec))
      throw checkpoint_error("model folder " + detail::quote_path(path) + ": it holds neither " +
                             std::string(single_file_name) + " nor " + std::string(index_file_name));
    c.names_.emplace_back(single_file_name);
    c.shards_.push_back(safetensors_file::open(single, how));
    c.index_all();
    return c;
  }

  // Entries point into the shards' tables: a copy would point into the original's. Move only.
  checkpoint(const checkpoint&) = delete;
  checkpoint& operator=(const checkpoint&) = delete;
  checkpoint(checkpoint&&) noexcept = default;
  checkpoint& operator=(checkpoint&&) noexcept = default;
  ~checkpoint() = default;

  /// The folder (for a single file: the folder it is in).
  [[nodiscard]] const std::filesystem::path& folder() const noexcept { return folder_; }
  /// True when read through an index.
  [[nodiscard]] bool sharded() const noexcept { return sharded_; }
  [[nodiscard]] const std::vector<safetensors_file>& shards() const noexcept { return shards_; }
  /// File names of the shards, parallel to shards().
  [[nodiscard]] const std::vector<std::string>& shard_names() const noexcept { return names_; }
  /// The index, for a sharded folder.
  [[nodiscard]] const std::optional<shard_index>& index() const noexcept { return index_; }
  /// Every tensor: shard by shard, each in the order of its bytes.
  [[nodiscard]] const std::vector<entry>& tensors() const noexcept { return entries_; }
  /// The sum of the tensors' bytes.
  [[nodiscard]] std::uint64_t total_size() const noexcept { return total_size_; }

  [[nodiscard]] const entry* find(std::string_view name) const {
    const auto it = by_name_.find(std::string(name));
    return it == by_name_.end() ? nullptr : &entries_[it->second];
  }
  /// The tensor `name`; `missing_tensor_error` if there is none.
  [[nodiscard]] const entry& at(std::string_view name) const {
    if (const entry* e = find(name)) return *e;
    throw missing_tensor_error("model " + detail::quote_path(folder_) + ": no tensor named " + detail::quote(name));
  }
  [[nodiscard]] std::span<const std::byte> bytes(const entry& e) const { return shards_[e.shard].bytes(*e.info); }
  /// See safetensors_file::release.
  void release(const entry& e) const { shards_[e.shard].release(*e.info); }

 private:
  checkpoint() = default;

  void index_all() {
    for (std::size_t s = 0; s < shards_.size(); ++s)
      for (const tensor_info& t : shards_[s].tensors()) {
        if (!by_name_.emplace(t.name, entries_.size()).second)
          throw checkpoint_error("model " + detail::quote_path(folder_) + ": tensor " + detail::quote(t.name) +
                                 " is in more than one shard");
        entries_.push_back({&t, s});
        total_size_ += t.nbytes();
      }
  }

  void open_sharded(const std::filesystem::path& index_path, safetensors_file::load how) {
    const auto text = detail::read_whole_file(index_path);
    if (text.size > max_index_size)
      throw index_error(detail::index_where(index_path.string()) + "the index has " + std::to_string(text.size) +
                        " bytes, over the limit of " + std::to_string(max_index_size));
    index_ = parse_shard_index(std::string_view(reinterpret_cast<const char*>(text.data.get()), text.size),
                               index_path.string());
    const auto where = detail::index_where(index_path.string());
    // Shards in order of first mention; tensor -> shard, duplicates rejected.
    std::map<std::string, std::size_t, std::less<>> shard_of_name;
    std::unordered_map<std::string, std::size_t> listed;
    listed.reserve(index_->weight_map.size());
    for (const auto& [tensor, file] : index_->weight_map) {
      auto [it, fresh] = shard_of_name.try_emplace(file, names_.size());
      if (fresh) names_.push_back(file);
      if (!listed.emplace(tensor, it->second).second)
        throw duplicate_error(where + "tensor " + detail::quote(tensor) + " is listed twice");
    }
    const auto canonical_folder = std::filesystem::weakly_canonical(folder_);
    const auto links_may_reach = detail::link_containment_folder(canonical_folder);
    for (const std::string& name : names_) {
      const auto p = folder_ / name;
      std::error_code ec;
      if (std::filesystem::is_symlink(std::filesystem::symlink_status(p, ec))) {
        if (!std::filesystem::exists(p, ec))  // where a dangling link leads cannot be checked
          throw path_error(where + "the shard " + detail::quote(name) + " is a symbolic link to nothing");
        const auto target = std::filesystem::canonical(p, ec);
        const auto rel = target.lexically_relative(links_may_reach);
        if (ec || rel.empty() || *rel.begin() == ".." || rel.is_absolute())
          throw path_error(where + "the shard " + detail::quote(name) + " is a symbolic link that leads out of the " +
                           (links_may_reach == canonical_folder
                                ? std::string("folder")
                                : "hub cache repository " + detail::quote_path(links_may_reach)));
      }
      shards_.push_back(safetensors_file::open(p, how));
    }
    index_all();  // also rejects a tensor that is in two shards
    for (const entry& e : entries_) {
      const auto it = listed.find(e.name());
      if (it == listed.end())
        throw checkpoint_error(where + "tensor " + detail::quote(e.name()) + " of shard " +
                               detail::quote(names_[e.shard]) + " is not in the index");
      if (it->second != e.shard)
        throw checkpoint_error(where + "tensor " + detail::quote(e.name()) + " is in shard " +
                               detail::quote(names_[e.shard]) + " but the index puts it in " +
                               detail::quote(names_[it->second]));
    }
    for (const auto& [tensor, file] : index_->weight_map)
      if (by_name_.find(tensor) == by_name_.end())
        throw checkpoint_error(where + "tensor " + detail::quote(tensor) + " is not in its shard " +
                               detail::quote(file));
    if (index_->total_size && *index_->total_size != total_size_)
      throw checkpoint_error(where + "total_size is " + std::to_string(*index_->total_size) + " but the tensors hold " +
                             std::to_string(total_size_) + " bytes");
  }

  std::filesystem::path folder_;
  bool sharded_ = false;
  std::vector<safetensors_file> shards_;
  std::vector<std::string> names_;
  std::optional<shard_index> index_;
  std::vector<entry> entries_;
  std::unordered_map<std::string, std::size_t> by_name_;
  std::uint64_t total_size_ = 0;
};

/// How `save_checkpoint` writes a folder.
struct checkpoint_options {
  /// The most bytes of tensor data per shard; 0 = no limit (one `model.safetensors`).
  std::uint64_t max_shard_size = 0;
  /// Every shard's `__metadata__` (transformers writes {"format": "pt"}).
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
  /// Replace an existing folder (atomically); otherwise an existing target is a `file_error`.
  bool overwrite = false;
  /// Other files of the folder (name -> content), e.g. config.json and quanto_qmap.json. Names
  /// follow the shard-name rules.
  std::vector<std::pair<std::string, std::string>> extra_files;
  /// The index's "total_parameters" (transformers writes the model's parameter count, which
  /// buffers and quantized parts do not add up to); default: the tensors' element count.
  std::optional<std::uint64_t> total_parameters;
};

namespace detail {

/// The tensors of each shard, as indices into `tensors` (huggingface_hub's greedy split: a tensor
/// over the limit gets a shard of its own at once, before the shard being filled is closed).
inline std::vector<std::vector<std::size_t>> assign_shards(std::span<const tensor_to_write> tensors,
                                                           std::uint64_t max_shard_size) {
  std::vector<std::vector<std::size_t>> shards;
  std::vector<std::size_t> current;
  std::uint64_t size = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const std::uint64_t n = checked_nbytes(tensors[i].shape, tensors[i].dtype).value_or(0);
    if (max_shard_size != 0 && n > max_shard_size) {
      shards.push_back({i});
      continue;
    }
    if (max_shard_size != 0 && n > max_shard_size - size) {
      shards.push_back(std::move(current));
      current.clear();
      size = 0;
    }
    current.push_back(i);
    size += n;
  }
  if (!current.empty() || shards.empty()) shards.push_back(std::move(current));
  return shards;
}

inline std::string shard_file_name(std::size_t i, std::size_t n) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, n);
  return buf;
}

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

}  // namespace detail

/// What `save_checkpoint` wrote.
struct saved_checkpoint {
  std::vector<std::string> shard_names;
  std::uint64_t total_size = 0;
};

/// Writes a model folder (see the top of this file). `tensors` gives each tensor's name, dtype and
/// shape (their `data` spans are ignored) in the order shards are filled. For each shard,
/// `fill_shard(members, sink)` writes its tensors: `members[j]` is the index in `tensors` of the
/// shard's j-th tensor, written through `sink.write(j, data, n)` in any order and from any
/// threads (see `save_safetensors_with`). Everything that can be checked is checked before the
/// file system is touched: names, sizes, the target's existence. On any failure (an exception
/// from `fill_shard` included) the target is left as it was.
template <class FillShard>
saved_checkpoint save_checkpoint_with(const std::filesystem::path& folder, std::span<const tensor_to_write> tensors,
                                      const checkpoint_options& options, FillShard&& fill_shard) {
  const std::string what = "cannot write the model folder " + detail::quote_path(folder) + ": ";
  if (!folder.has_filename()) throw file_error(what + "not a folder name", folder);
  for (const auto& [name, content] : options.extra_files) {
    detail::check_shard_name(name, "", "<extra files>");
    if (name == index_file_name || (name.size() >= 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0))
      throw value_error(what + "the extra file " + detail::quote(name) + " would clash with a shard or the index");
  }
  (void)detail::plan_write(tensors, options.metadata, what, false);  // names, dtypes, shapes, duplicates
  detail::remove_stale_staging(folder);  // first: it may put back an old folder a crash left aside
  detail::check_folder_target(folder, options.overwrite, what);
  std::error_code ec;

  const auto assignment = detail::assign_shards(tensors, options.max_shard_size);
  const std::size_t count = assignment.size();

  if (const auto parent = folder.parent_path(); !parent.empty()) {  // like mkdir -p for the folders above
    std::filesystem::create_directories(parent, ec);
    if (ec) throw file_error(what + "cannot create the folder " + detail::quote_path(parent), parent, ec);
  }
  check_interrupt();
  std::string staging_name = detail::staging_prefix(folder) + detail::staging_owner() + detail::unique_suffix();
  const auto staging = folder.parent_path() / staging_name;
  if (!std::filesystem::create_directory(staging, ec) || ec)
    throw file_error(what + "cannot create the staging folder " + detail::quote_path(staging), staging, ec);
  struct staging_guard {
    std::filesystem::path path;
    bool keep = false;
    ~staging_guard() {
      if (keep) return;
      std::error_code ignored;
      std::filesystem::remove_all(path, ignored);
    }
  } guard{staging};

  saved_checkpoint result;
  shard_index index;
  std::uint64_t parameters = 0;
  for (std::size_t s = 0; s < count; ++s) {
    const std::string name = count == 1 ? std::string(single_file_name) : detail::shard_file_name(s, count);
    std::vector<tensor_to_write> group;
    group.reserve(assignment[s].size());
    for (const std::size_t i : assignment[s])
      group.push_back({tensors[i].name, tensors[i].dtype, tensors[i].shape, {}});
    check_interrupt();
    save_safetensors_with(staging / name, group, options.metadata,
                          [&](tensor_sink& sink) { fill_shard(std::span<const std::size_t>(assignment[s]), sink); });
    for (const tensor_to_write& t : group) {
      const std::uint64_t n = *detail::checked_nbytes(t.shape, t.dtype);
      result.total_size += n;
      parameters += n / size_of(t.dtype);
      index.weight_map.emplace_back(t.name, name);
    }
    result.shard_names.push_back(name);
  }
  for (const auto& [name, content] : options.extra_files) {
    detail::output_file f(staging / name);
    f.write(content.data(), content.size());
    f.commit();
  }
  if (count > 1) {  // the index last: a folder without it is not a sharded checkpoint
    index.total_size = result.total_size;
    index.total_parameters = options.total_parameters.value_or(parameters);
    const std::string text = shard_index_json(index);
    detail::output_file f(staging / std::string(index_file_name));
    f.write(text.data(), text.size());
    f.commit();
  }
  if (std::filesystem::is_directory(std::filesystem::symlink_status(folder, ec))) {  // keep the old folder's mode
    std::filesystem::permissions(staging, std::filesystem::status(folder, ec).permissions(),
                                 std::filesystem::perm_options::replace, ec);
  }
  detail::sync_directory(staging);
  check_interrupt();  // the last point where a stop leaves the target as it was
  detail::commit_folder(staging, folder, options.overwrite);
  guard.keep = true;
  return result;
}

/// `save_checkpoint_with` for a producer that writes one tensor after the other:
/// `produce(t, write)` writes tensor t's bytes through `write(const void*, std::size_t)`.
template <class Produce>
saved_checkpoint save_checkpoint(const std::filesystem::path& folder, std::span<const tensor_to_write> tensors,
                                 const checkpoint_options& options, Produce&& produce) {
  return save_checkpoint_with(folder, tensors, options, [&](std::span<const std::size_t> members, tensor_sink& sink) {
    for (std::size_t j = 0; j < members.size(); ++j)
      produce(tensors[members[j]], [&](const void* data, std::size_t n) { sink.write(j, data, n); });
  });
}

}  // namespace io
QUANTO_END_NAMESPACE
