// quanto/io/checkpoint_writer.hpp: a Hugging Face model folder written, sharded, crash-atomically.
//
// `save_checkpoint` writes the shards, the extra files (config.json, quanto_qmap.json, ...) and
// then, last, the index into a staging folder and commits it in the target's place in one step
// (io/folder_commit.hpp): a crash at any point leaves the target as the old checkpoint or the new
// one, never a mix.
// A save stops at a stop request (`interrupt_signal`, set by SIGINT/SIGTERM handlers) between
// tensors and chunks, removes its staging folder and throws `interrupted_error`.
//
// Shards are cut as transformers cuts them (huggingface_hub's greedy split): tensors in the
// order given, a new shard when the next tensor would take the current one over
// `max_shard_size`, a tensor larger than the limit alone in its own shard. One shard is written as
// `model.safetensors` without an index (io/shard_index.hpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/io/file.hpp"
#include "quanto/io/folder_commit.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/safetensors_header.hpp"
#include "quanto/io/safetensors_writer.hpp"
#include "quanto/io/shard_index.hpp"
#include "quanto/io/text.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

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
