// quanto/io/checkpoint_reader.hpp: a Hugging Face model folder, one file or sharded, opened and
// checked as a whole (`checkpoint::open`).
//
// `checkpoint::open` maps every shard (zero-copy, io/safetensors_file.hpp) and checks the folder as a
// whole before it returns:
//   * the index follows its schema (io/shard_index.hpp);
//   * a shard's symbolic link must not lead out of the folder (`path_error`); nothing outside the
//     folder is ever opened. One exception: in a Hugging Face hub cache snapshot,
//     `<cache>/models--<org>--<name>/snapshots/<revision>/`, the files are links into
//     `../../blobs/`, and links may lead anywhere inside the cache repository folder
//     `models--<org>--<name>` (still not out of it);
//   * every tensor of the index is in the shard the index names, every tensor of a shard is in
//     the index under that shard (so no tensor is in two shards), and "total_size", when given,
//     is the sum of the tensors' bytes (`checkpoint_error`).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
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
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/safetensors_file.hpp"
#include "quanto/io/safetensors_header.hpp"
#include "quanto/io/shard_index.hpp"
#include "quanto/io/text.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// The files of a folder disagree: a tensor of the index missing from its shard, a tensor of a
/// shard that the index does not list there, "total_size" not the sum of the tensor sizes, or a
/// folder with neither `model.safetensors` nor an index.
class checkpoint_error : public format_error {
 public:
  using format_error::format_error;
};

namespace detail {

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

}  // namespace detail

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

}  // namespace io
QUANTO_END_NAMESPACE
