// quanto/io/model_plan.hpp: what `quantize_model` (io/model_run.hpp) does to a model folder, decided
// before anything runs: the modules it quantizes, the tensors it writes for each, and the options.
//
// What is quantized. The folder has no module types, only tensor names, so a module counts as a
// Linear (or Conv2d) when it has a float `<module>.weight` of rank 2 (or 4) and is not an
// embedding (its last name part contains "embed", or is "wte", "wpe" or "shared": quanto never
// quantizes nn.Embedding). Of those, the ones the include/exclude fnmatch patterns select, as
// quanto selects them; the default excludes "lm_head", as quanto's LLM recipes do. Norms are never
// quantized (quanto replaces nn.LayerNorm only when activations are quantized, and only for the
// output scale: that case is not covered here, see docs/files.md).
//
// What is written, per quantized module: `weight._data` + `weight._scale` (8-bit qtypes) or
// `weight._data._data` + `weight._scale` + `weight._shift` (qint2/qint4), and the 0-d
// `input_scale` / `output_scale` (1.0: nothing is calibrated, as in quanto's `quantize`), all
// bit-identical to what optimum-quanto computes (the same kernels as `quantize_weight`). Every
// other tensor is copied byte for byte. The shards are cut as transformers cuts them (default
// 2 GB: quanto's `save_pretrained`), each with {"format": "pt"} metadata; `quanto_qmap.json` lists
// the modules in natural name order (quanto uses the module order, which the files do not record:
// the content is the same). config.json is copied, with `tie_word_embeddings` set to false when
// lm_head is quantized out of a tied embedding (quanto does that too); the folder's other files
// (generation_config.json, tokenizer files, ...) are copied as they are.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/io/checkpoint_reader.hpp"
#include "quanto/io/safetensors_header.hpp"
#include "quanto/io/safetensors_writer.hpp"
#include "quanto/io/text.hpp"
#include "quanto/nn/fnmatch.hpp"
#include "quanto/quantize/axis.hpp"
#include "quanto/quantize/group.hpp"
#include "quanto/quantize/optimizers.hpp"
#include "quanto/quantize/packing.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// Where `quantize_model` stands (passed to the progress callback).
struct quantize_progress {
  std::size_t tensors_done = 0, tensors_total = 0;  ///< output tensors written
  std::uint64_t bytes_done = 0, bytes_total = 0;    ///< input bytes consumed
  double seconds = 0;
};

struct model_quantize_options {
  qtype_id weights = qtype_id::qint8;
  std::optional<qtype_id> activations;    ///< recorded in the qmap; scales are 1.0
  std::optional<optimizer_id> optimizer;  ///< default: absmax (8-bit), max (qint2/qint4)
  std::vector<std::string> include;       ///< fnmatch patterns on module names; empty = all
  std::vector<std::string> exclude = {"lm_head"};
  unsigned threads = 0;                          ///< 0: one per hardware thread
  std::uint64_t max_shard_size = 2'000'000'000;  ///< quanto's save_pretrained default ("2GB"); 0 = one file
  bool overwrite = false;                        ///< replace an existing output folder (atomically)
  /// Input bytes being quantized at once, at most (a module whose weight is larger still runs,
  /// alone); 0: twice the largest weight.
  std::uint64_t memory_budget = 0;
  /// Called from the worker threads (one at a time) after each tensor.
  std::function<void(const quantize_progress&)> progress;
};

/// One module the plan quantizes.
struct planned_module {
  std::string name;                           ///< e.g. "model.layers.0.self_attn.q_proj"
  const checkpoint::entry* weight = nullptr;  ///< the float weight it is quantized from
  bool from_tied_embedding = false;           ///< lm_head made from the tied input embedding
};

/// A tensor or file of the input that `quantize_model` left as it was, and why.
struct left_alone {
  std::string name;  ///< the tensor (e.g. "model.norm.weight") or the file of the input folder
  /// Why, in a few words that group alike cases: "rank 1", "dtype F64", "empty", "an embedding",
  /// "not selected" for a `.weight` tensor that is copied unquantized; "a dangling link" or "not
  /// a regular file" or "a folder" for an entry of the input folder that is not copied.
  std::string reason;
};

namespace detail {

/// "a.b10" after "a.b9": names compared with their digit runs as numbers.
inline bool natural_less(std::string_view a, std::string_view b) noexcept {
  std::size_t i = 0, j = 0;
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      std::size_t ie = i, je = j;
      while (ie < a.size() && digit(a[ie])) ++ie;
      while (je < b.size() && digit(b[je])) ++je;
      std::size_t is = i, js = j;  // skip leading zeros
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      if (const int c = a.substr(is, ie - is).compare(b.substr(js, je - js)); c != 0) return c < 0;
      if (ie - i != je - j) return ie - i < je - j;
      i = ie, j = je;
      continue;
    }
    if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
    ++i, ++j;
  }
  return a.size() - i < b.size() - j;
}

inline std::string_view last_part(std::string_view module) {
  const auto dot = module.rfind('.');
  return dot == std::string_view::npos ? module : module.substr(dot + 1);
}

/// quanto never quantizes nn.Embedding; in a folder they are known by name only.
inline bool is_embedding_name(std::string_view module) {
  const auto last = last_part(module);
  return last.find("embed") != std::string_view::npos || last == "wte" || last == "wpe" || last == "shared";
}

inline bool is_model_float(::quanto::dtype t) noexcept {
  return t == ::quanto::dtype::f32 || t == ::quanto::dtype::f16 || t == ::quanto::dtype::bf16;
}

/// The part of a quantized module an output tensor holds.
enum class part { data, packed, scale, shift, input_scale, output_scale };

inline const char* part_suffix(part p) {
  switch (p) {
    case part::data:
      return ".weight._data";
    case part::packed:
      return ".weight._data._data";
    case part::scale:
      return ".weight._scale";
    case part::shift:
      return ".weight._shift";
    case part::input_scale:
      return ".input_scale";
    case part::output_scale:
      return ".output_scale";
  }
  return "";
}

/// One output tensor: a copy of an input tensor, or a part of a quantized module.
struct output_tensor {
  tensor_to_write layout;
  const checkpoint::entry* copy_of = nullptr;
  std::size_t module = 0;
  part what = part::data;
};

/// The output tensors of one module (quanto's layout; see the top of this file).
inline void module_outputs(const planned_module& m, std::size_t index, qtype_id q, std::vector<output_tensor>& out) {
  const tensor_info& w = *m.weight->info;
  const shape s(std::span<const std::int64_t>(w.shape));
  const qtype_info info = info_of(q);
  const auto add = [&](part p, ::quanto::dtype t, const shape& sh) {
    const auto dims = sh.dims();
    out.push_back(
        {{m.name + part_suffix(p), t, std::vector<std::int64_t>(dims.begin(), dims.end()), {}}, nullptr, index, p});
  };
  // quanto's rule: along an axis 0 of size 1 (a one-row weight, or a single group) the axis becomes
  // None: one 0-d scale for 8-bit qtypes, and per-column scales and shifts (MaxOptimizer reduces
  // over every dim but the last) for qint2/qint4.
  if (info.bits == 8) {
    add(part::data, info.storage, s);
    add(part::scale, w.dtype, map_params(s, effective_axis(s, qaxis::first)).param_shape);
  } else {
    const auto gs = default_group_size(s);
    const shape cs = gs ? grouped_shape(s, qaxis::first, *gs) : s;
    const qaxis axis = effective_axis(cs, qaxis::first) == qaxis::none ? qaxis::last : qaxis::first;
    add(part::packed, ::quanto::dtype::u8, packed_shape(cs, info.bits));
    add(part::scale, w.dtype, map_params(cs, axis).param_shape);
    add(part::shift, w.dtype, map_params(cs, axis).param_shape);
  }
  add(part::input_scale, w.dtype, shape{});
  add(part::output_scale, w.dtype, shape{});
}

/// Parses config.json (bounded nesting; values deeper than 32 levels are dropped unread).
inline nlohmann::ordered_json parse_config(const std::string& text, const std::filesystem::path& path) {
  try {
    return nlohmann::ordered_json::parse(
        text, [](int depth, nlohmann::ordered_json::parse_event_t, nlohmann::ordered_json&) { return depth <= 32; });
  } catch (const nlohmann::json::exception& e) {
    throw format_error("config " + quote_path(path) + ": not valid JSON: " + quote(e.what(), 240));
  }
}

}  // namespace detail

/// The modules `quantize_model` would quantize in the checkpoint `in` (see the top of this
/// file), in natural name order. `config`: the folder's config.json, if any (for tied embeddings).
[[nodiscard]] inline std::vector<planned_module> plan_quantization(const checkpoint& in,
                                                                   const nlohmann::ordered_json* config,
                                                                   const model_quantize_options& o,
                                                                   std::vector<left_alone>* skipped = nullptr) {
  const auto selected = [&](std::string_view module) {
    if (!o.include.empty() && !nn::fnmatch_any(module, o.include)) return false;
    return !nn::fnmatch_any(module, o.exclude);
  };
  std::vector<planned_module> modules;
  for (const checkpoint::entry& e : in.tensors()) {
    const std::string& n = e.name();
    if (n.size() <= 7 || !n.ends_with(".weight")) continue;
    const std::string module = n.substr(0, n.size() - 7);
    const auto rank = e.info->shape.size();
    std::string why;
    if (!detail::is_model_float(e.info->dtype))
      why = "dtype " + std::string(to_string(e.info->dtype));
    else if (rank != 2 && rank != 4)
      why = "rank " + std::to_string(rank);
    else if (e.info->numel() == 0)
      why = "empty";
    else if (detail::is_embedding_name(module))
      why = "an embedding";
    else if (!selected(module))
      why = "not selected";
    if (why.empty())
      modules.push_back({module, &e, false});
    else if (skipped)
      skipped->push_back({n, std::move(why)});
  }
  if (skipped)
    std::sort(skipped->begin(), skipped->end(),
              [](const left_alone& a, const left_alone& b) { return detail::natural_less(a.name, b.name); });
  // lm_head tied to the input embedding and absent from the files: quanto quantizes it from the
  // shared weight (and saves it untied).
  const bool tied = config && config->is_object() && config->value("tie_word_embeddings", true);
  if (tied && selected("lm_head") && !in.find("lm_head.weight")) {
    const checkpoint::entry* source = nullptr;
    std::size_t candidates = 0;
    std::optional<std::int64_t> vocab;
    if (const auto it = config->find("vocab_size"); it != config->end() && it->is_number_integer())
      vocab = it->get<std::int64_t>();
    for (const checkpoint::entry& e : in.tensors()) {
      const std::string& n = e.name();
      if (!n.ends_with(".weight")) continue;
      const auto module = std::string_view(n).substr(0, n.size() - 7);
      if (!detail::is_embedding_name(module) || e.info->shape.size() != 2 || !detail::is_model_float(e.info->dtype))
        continue;
      const auto last = detail::last_part(module);
      if (last == "wpe" || last.find("position") != std::string_view::npos) continue;
      if (vocab && e.info->shape[0] != *vocab) continue;
      source = &e;
      ++candidates;
    }
    if (candidates == 1)
      modules.push_back({"lm_head", source, true});
    else if (candidates > 1)
      throw value_error("model " + detail::quote_path(in.folder()) +
                        ": lm_head is tied to an input embedding, but several tensors could be it; exclude lm_head");
  }
  std::sort(modules.begin(), modules.end(),
            [](const planned_module& a, const planned_module& b) { return detail::natural_less(a.name, b.name); });
  return modules;
}

}  // namespace io
QUANTO_END_NAMESPACE
