// quanto/io/state_dict.hpp: state dicts (`nn::state_dict`) to and from safetensors files, the
// form optimum-quanto's models are saved in (`safetensors.torch.save_file(model.state_dict())`,
// or transformers' `save_pretrained`).
//
//   io::save_state_dict("model.safetensors", nn::get_state_dict(model));
//   nn::load_state_dict(model, io::read_state_dict(io::safetensors_file::open("model.safetensors")));
//
// The bytes travel unchanged in both directions: dtypes, shapes (rank 0 included: quanto's
// `input_scale` / `output_scale`) and little-endian element bytes. The writer orders the tensors
// as the safetensors reference writer does (by dtype, then by name), so a state dict read back
// from a file written here holds the same keys and tensors, in that file's order.
#pragma once

#include <filesystem>
#include <map>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/shape.hpp"
#include "quanto/io/safetensors.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/nn/state_dict.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// Every tensor of `file`, in the file's order (the order of their bytes), as a state dict.
/// Throws `size_error` (naming the file and tensor) for a tensor of rank above
/// `quanto::shape::max_rank`, which no quanto module stores.
[[nodiscard]] inline nn::state_dict read_state_dict(const safetensors_file& file) {
  nn::state_dict sd;
  for (const tensor_info& t : file.tensors()) {
    if (t.shape.size() > ::quanto::shape::max_rank)
      throw size_error(detail::where(file.source_name()) + "tensor " + detail::quote(t.name) + " has rank " +
                       std::to_string(t.shape.size()) + ", more than the " + std::to_string(::quanto::shape::max_rank) +
                       " a state dict tensor may have");
    const auto raw = file.bytes(t);
    nn::stored_tensor st{t.dtype, ::quanto::shape(std::span<const std::int64_t>(t.shape)),
                         std::vector<std::byte>(raw.begin(), raw.end())};
    sd.insert(t.name, std::move(st));  // names are unique: the reader rejects duplicates
  }
  return sd;
}

/// `read_state_dict(safetensors_file::open(path))`.
[[nodiscard]] inline nn::state_dict read_state_dict(const std::filesystem::path& path) {
  return read_state_dict(safetensors_file::open(path));
}

/// Writes `sd` as a safetensors file through `save_safetensors` (same validation and errors, and
/// the same all-or-nothing replacement of `path`). `metadata` becomes the file's `__metadata__`
/// (transformers writes {"format": "pt"}).
inline void save_state_dict(const std::filesystem::path& path, const nn::state_dict& sd,
                            const std::map<std::string, std::string>& metadata = {}) {
  std::vector<tensor_to_write> tensors;
  tensors.reserve(sd.size());
  for (const auto& [key, t] : sd) {
    const auto dims = t.shape.dims();
    tensors.push_back(
        {key, t.dtype, std::vector<std::int64_t>(dims.begin(), dims.end()), std::span<const std::byte>(t.bytes)});
  }
  save_safetensors(path, tensors, metadata);
}

}  // namespace io
QUANTO_END_NAMESPACE
