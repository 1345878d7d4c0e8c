// quanto/io/model.hpp: quantize a whole Hugging Face model folder on disk, as
// optimum-quanto's `QuantizedModelForCausalLM.quantize(...)` + `save_pretrained(...)` would, without
// loading the model: tensors stream from memory-mapped shards into the new shards one by one.
//
//   io::quantize_model("llama-f32", "llama-qint4", {.weights = qtype_id::qint4});
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
//
// Memory stays bounded by a few tensors, not by the model: the output file is laid out first,
// then workers quantize modules in parallel and write each result at its place in the shard, and
// the input pages of a finished tensor are dropped from the resident set. The output folder
// appears atomically when everything is written (io/checkpoint.hpp).
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "quanto/core/bfloat16.hpp"
#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/float16.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/io/checkpoint.hpp"
#include "quanto/io/file.hpp"
#include "quanto/io/qmap.hpp"
#include "quanto/io/safetensors.hpp"
#include "quanto/nn/fnmatch.hpp"
#include "quanto/nn/quantize.hpp"
#include "quanto/quantize/axis.hpp"
#include "quanto/quantize/group.hpp"
#include "quanto/quantize/packing.hpp"
#include "quanto/quantize/runtime.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// An output that would destroy the input: OUTPUT is INPUT, contains INPUT, or contains a file the
/// input reads (a shard reached through a symbolic link). Paths are compared after resolving links.
/// Refused before anything is read or written, with or without `overwrite`.
class unsafe_output_error : public error {
 public:
  using error::error;
};

/// A weight of the input that cannot be quantized as it is: a NaN or an infinity in it. A
/// malformed input (a `format_error`), named by its file and tensor.
class weight_value_error : public format_error {
 public:
  using format_error::format_error;
};

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

/// What `quantize_model` did.
struct quantize_report {
  std::vector<planned_module> modules;
  /// `.weight` tensors copied unquantized (in natural name order), then input files not copied.
  std::vector<left_alone> not_quantized;
  std::vector<left_alone> not_copied;
  std::vector<std::string> shard_names;
  std::size_t tensors_written = 0;
  std::uint64_t input_bytes = 0, output_bytes = 0;
  bool untied_embeddings = false;  ///< config.json's tie_word_embeddings was set to false
  double seconds = 0;
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

/// 1.0 in a model dtype, as little-endian bytes.
inline std::vector<std::byte> one_as(::quanto::dtype t) {
  const auto bytes = [](auto v) {
    std::vector<std::byte> b(sizeof v);
    std::memcpy(b.data(), &v, sizeof v);
    return b;
  };
  if (t == ::quanto::dtype::f16) return bytes(float16::from_float(1.0f).to_bits());
  if (t == ::quanto::dtype::bf16) return bytes(bfloat16::from_float(1.0f).to_bits());
  return bytes(1.0f);
}

/// Quantizes a module's weight (from the mapped input) with quanto's module rule.
inline any_qweight quantize_module_weight(const checkpoint& in, const planned_module& m,
                                          const model_quantize_options& o) {
  const tensor_info& w = *m.weight->info;
  const auto raw = in.bytes(*m.weight);
  const shape s(std::span<const std::int64_t>(w.shape));
  weight_spec spec;
  spec.qtype = o.weights;
  spec.optimizer = o.optimizer;
  const auto run = [&]<class T>() -> any_qweight {
    try {
      if (reinterpret_cast<std::uintptr_t>(raw.data()) % alignof(T) == 0)
        return quantize_weight(tensor_view<const T>(reinterpret_cast<const T*>(raw.data()), s), spec);
      tensor<T> copy(s);  // a file whose data is not aligned for its dtype (old writers)
      if (!raw.empty()) std::memcpy(copy.data(), raw.data(), raw.size());
      return quantize_weight(copy.view(), spec);
    } catch (const value_error& e) {  // NaN/Inf: the input is at fault; say where
      std::string why = e.what();
      if (why.rfind("quanto: ", 0) == 0) why.erase(0, 8);
      throw weight_value_error("model " + quote_path(in.folder()) + ": file " +
                               quote(in.shard_names()[m.weight->shard]) + ", tensor " + quote(w.name) + ": " + why);
    }
  };
  switch (w.dtype) {
    case ::quanto::dtype::f32:
      return run.template operator()<float>();
    case ::quanto::dtype::f16:
      return run.template operator()<float16>();
    default:
      return run.template operator()<bfloat16>();
  }
}

/// The bytes and shape of one part of a quantized weight.
inline std::pair<std::span<const std::byte>, shape> part_of(const any_qweight& q, part p) {
  return std::visit(
      [&](const auto& w) -> std::pair<std::span<const std::byte>, shape> {
        const auto bytes = [](const auto& t) {
          return std::pair<std::span<const std::byte>, shape>{std::as_bytes(std::span(t.data(), t.size())), t.shape()};
        };
        if constexpr (requires { w.packed; }) {
          if (p == part::packed) return bytes(w.packed);
          if (p == part::scale) return bytes(w.scale);
          return bytes(w.shift);
        } else {
          if (p == part::data) return bytes(w.data);
          return bytes(w.scale);
        }
      },
      q);
}

/// Runs jobs 0..n-1 on `threads` workers; a job of cost c waits until the running jobs' costs
/// plus c fit in `budget` (or nothing else runs). The first exception stops the rest and is
/// rethrown.
template <class Job>
void run_jobs(std::size_t n, unsigned threads, std::uint64_t budget, const std::vector<std::uint64_t>& cost,
              Job&& job) {
  std::mutex mutex;
  std::condition_variable cv;
  std::uint64_t in_flight = 0;
  std::size_t running = 0, next = 0;
  std::exception_ptr failure;
  const auto worker = [&] {
    for (;;) {
      std::size_t i;
      {
        std::unique_lock lock(mutex);
        if (failure || next == n) return;
        i = next++;
        cv.wait(lock, [&] { return failure || running == 0 || in_flight + cost[i] <= budget; });
        if (failure) return;
        in_flight += cost[i];
        ++running;
      }
      try {
        job(i);
      } catch (...) {
        const std::lock_guard lock(mutex);
        if (!failure) failure = std::current_exception();
      }
      {
        const std::lock_guard lock(mutex);
        in_flight -= cost[i];
        --running;
      }
      cv.notify_all();
    }
  };
  const unsigned t = std::max(1u, std::min<unsigned>(threads, static_cast<unsigned>(std::max<std::size_t>(n, 1))));
  std::vector<std::thread> pool;
  pool.reserve(t - 1);
  for (unsigned k = 1; k < t; ++k) pool.emplace_back(worker);
  worker();
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
}

/// The text of a file, or nothing when there is no such regular file.
inline std::optional<std::string> read_text_if_exists(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return std::nullopt;
  const auto bytes = read_whole_file(path);
  return std::string(reinterpret_cast<const char*>(bytes.data.get()), bytes.size);
}

/// True when `p` is `folder` or lies inside it (both already resolved).
inline bool is_within(const std::filesystem::path& p, const std::filesystem::path& folder) {
  auto f = folder.begin();
  for (auto i = p.begin(); f != folder.end(); ++i, ++f) {
    if (f->empty() && std::next(f) == folder.end()) return true;  // a trailing "/" in `folder`
    if (i == p.end() || *i != *f) return false;
  }
  return true;
}

/// `path` with every symbolic link resolved (the part that does not exist is kept as written).
inline std::filesystem::path resolved(const std::filesystem::path& path) {
  std::error_code ec;
  auto r = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
  return ec ? std::filesystem::absolute(path, ec).lexically_normal() : r;
}

/// Throws `unsafe_output_error` when writing `output` (and deleting what is there) would destroy
/// the file or folder `input_file`, which `input` reads.
inline void check_not_destroying(const std::filesystem::path& input, const std::filesystem::path& input_file,
                                 const std::filesystem::path& output) {
  const auto in = resolved(input_file), out = resolved(output);
  if (in == out)
    throw unsafe_output_error("refused: the output " + quote_path(output) + " is the input " + quote_path(input) +
                              " (writing it would replace the model being read)");
  if (is_within(in, out))
    throw unsafe_output_error("refused: the output " + quote_path(output) + " contains " +
                              (input_file == input
                                   ? "the input " + quote_path(input)
                                   : quote_path(input_file) + ", which the input " + quote_path(input) + " reads") +
                              " (replacing the output would delete it)");
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

/// Quantizes the model at `input` (a folder or a .safetensors file) into the folder `output`
/// (see the top of this file). Throws, before anything is written: `unsupported_error` for an
/// optimizer or activation qtype that does not fit, `value_error` when the input is already
/// quantized (it has quanto_qmap.json) or nothing is selected, `file_error` when the output
/// exists and `overwrite` is false; the readers' typed errors for a malformed input. The output
/// folder appears only when complete.
inline quantize_report quantize_model(const std::filesystem::path& input, const std::filesystem::path& output,
                                      const model_quantize_options& o) {
  const auto start = std::chrono::steady_clock::now();
  weight_spec spec;
  spec.qtype = o.weights;
  spec.optimizer = o.optimizer;
  validate(spec);
  if (o.activations && info_of(*o.activations).bits != 8)
    throw unsupported_error("activations must be an 8-bit qtype, not " + std::string(info_of(*o.activations).name));
  std::error_code ec;
  detail::check_not_destroying(input, input, output);
  const bool input_is_folder = std::filesystem::is_directory(input, ec);
  if (input_is_folder && std::filesystem::exists(input / "quanto_qmap.json", ec))
    throw value_error("model " + detail::quote_path(input) + " is already quantized (it has quanto_qmap.json)");
  detail::remove_stale_staging(output);  // first: it may put back an old output a crash left aside
  detail::check_folder_target(output, o.overwrite, "the output folder " + detail::quote_path(output) + ": ");

  const checkpoint in = checkpoint::open(input);
  if (std::filesystem::exists(std::filesystem::symlink_status(output, ec))) {  // shards and files reached by links
    for (const auto& name : in.shard_names()) detail::check_not_destroying(input, in.folder() / name, output);
    if (input_is_folder)
      for (const auto& f : std::filesystem::directory_iterator(input, ec))
        detail::check_not_destroying(input, f.path(), output);
  }
  const auto config_text = input_is_folder ? detail::read_text_if_exists(input / "config.json") : std::nullopt;
  auto config = config_text ? std::optional(detail::parse_config(*config_text, input / "config.json")) : std::nullopt;
  quantize_report report;
  report.modules = plan_quantization(in, config ? &*config : nullptr, o, &report.not_quantized);
  if (report.modules.empty())
    throw value_error("model " + detail::quote_path(input) + ": no module is selected for quantization");

  // The output tensors: copies of everything that is not a quantized weight, then each module's parts.
  std::vector<detail::output_tensor> outs;
  {
    std::unordered_map<std::string_view, bool> quantized_weight;
    for (const planned_module& m : report.modules)
      if (!m.from_tied_embedding) quantized_weight[m.weight->name()] = true;
    for (const checkpoint::entry& e : in.tensors())
      if (!quantized_weight.count(e.name())) outs.push_back({{e.name(), e.info->dtype, e.info->shape, {}}, &e, 0, {}});
    for (std::size_t i = 0; i < report.modules.size(); ++i)
      detail::module_outputs(report.modules[i], i, o.weights, outs);
    std::stable_sort(outs.begin(), outs.end(),
                     [](const auto& a, const auto& b) { return detail::natural_less(a.layout.name, b.layout.name); });
  }
  std::vector<tensor_to_write> layouts;
  layouts.reserve(outs.size());
  for (const auto& t : outs) layouts.push_back(t.layout);

  // config.json: untie when lm_head is quantized out of a tied embedding, or quantized while tied.
  checkpoint_options co;
  co.max_shard_size = o.max_shard_size;
  co.overwrite = o.overwrite;
  if (config && config->is_object() && config->value("tie_word_embeddings", true)) {
    const bool head = std::any_of(report.modules.begin(), report.modules.end(),
                                  [](const planned_module& m) { return m.name == "lm_head"; });
    if (head) {
      (*config)["tie_word_embeddings"] = false;
      report.untied_embeddings = true;
    }
  }
  if (input_is_folder) {
    for (const auto& f : std::filesystem::directory_iterator(input)) {
      const std::string name = f.path().filename().string();
      if (name.front() == '.') continue;  // hidden files (and staging folders) are not the model's
      if (!f.is_regular_file()) {
        std::error_code link_ec;
        if (f.is_symlink(link_ec) && !f.exists(link_ec))
          report.not_copied.push_back({name, "a dangling link"});
        else
          report.not_copied.push_back({name, f.is_directory(link_ec) ? "a folder" : "not a regular file"});
        continue;
      }
      if (name == index_file_name || name == "config.json" || name.ends_with(".safetensors")) continue;
      co.extra_files.emplace_back(name, *detail::read_text_if_exists(f.path()));
    }
    std::sort(report.not_copied.begin(), report.not_copied.end(),
              [](const left_alone& a, const left_alone& b) { return a.name < b.name; });
    if (config_text)  // as it was, unless lm_head was untied
      co.extra_files.emplace_back("config.json",
                                  report.untied_embeddings ? config->dump(2, ' ', true) + "\n" : *config_text);
  }
  {
    nn::quantization_map_t qmap;
    const std::string acts = o.activations ? std::string(info_of(*o.activations).name) : "none";
    for (const planned_module& m : report.modules) qmap.push_back({m.name, std::string(info_of(o.weights).name), acts});
    co.extra_files.emplace_back("quanto_qmap.json", qmap_json(qmap));
  }
  std::sort(co.extra_files.begin(), co.extra_files.end());

  // Progress and the memory budget.
  std::uint64_t total_in = 0, largest = 0;
  for (const auto& t : outs)
    if (t.copy_of) total_in += t.copy_of->info->nbytes();
  for (const planned_module& m : report.modules) {
    total_in += m.weight->info->nbytes();
    largest = std::max(largest, m.weight->info->nbytes());
  }
  {  // transformers' total_parameters: the model's parameters (copied tensors and float weights)
    std::uint64_t params = 0;
    for (const auto& t : outs)
      if (t.copy_of) params += t.copy_of->info->numel();
    for (const planned_module& m : report.modules) params += m.weight->info->numel();
    co.total_parameters = params;
  }
  const std::uint64_t budget = o.memory_budget != 0 ? o.memory_budget : 2 * largest;
  const unsigned threads = o.threads != 0 ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  std::mutex progress_mutex;
  quantize_progress progress{0, outs.size(), 0, total_in, 0};
  const auto advance = [&](std::size_t tensors, std::uint64_t bytes) {
    const std::lock_guard lock(progress_mutex);
    progress.tensors_done += tensors;
    progress.bytes_done += bytes;
    progress.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (o.progress) o.progress(progress);
  };

  const auto saved =
      save_checkpoint_with(output, layouts, co, [&](std::span<const std::size_t> members, tensor_sink& sink) {
        // Jobs: one per copied tensor, one per module with parts in this shard (parts of one module
        // that fall into two shards are computed twice: deterministic, and rare).
        struct job {
          const checkpoint::entry* copy_of = nullptr;
          std::size_t module = 0;
          std::vector<std::pair<std::size_t, detail::part>> parts;  // (sink index, part)
        };
        std::vector<job> jobs;
        std::map<std::size_t, std::size_t> job_of_module;
        for (std::size_t j = 0; j < members.size(); ++j) {
          const auto& t = outs[members[j]];
          if (t.copy_of) {
            jobs.push_back({t.copy_of, 0, {{j, detail::part::data}}});
            continue;
          }
          auto [it, fresh] = job_of_module.try_emplace(t.module, jobs.size());
          if (fresh) jobs.push_back({nullptr, t.module, {}});
          jobs[it->second].parts.emplace_back(j, t.what);
        }
        std::vector<std::uint64_t> cost(jobs.size());
        for (std::size_t k = 0; k < jobs.size(); ++k)
          cost[k] = jobs[k].copy_of ? 0 : report.modules[jobs[k].module].weight->info->nbytes();
        detail::run_jobs(jobs.size(), threads, budget, cost, [&](std::size_t k) {
          check_interrupt();
          const job& jb = jobs[k];
          if (jb.copy_of) {  // a copy, in chunks, dropping each chunk's pages once written
            const auto bytes = in.bytes(*jb.copy_of);
            constexpr std::size_t chunk = std::size_t{16} << 20;
            for (std::size_t at = 0; at < bytes.size(); at += chunk) {
              const std::size_t n = std::min(chunk, bytes.size() - at);
              sink.write(jb.parts[0].first, bytes.data() + at, n);
              if (in.shards()[jb.copy_of->shard].is_mapped()) detail::release_pages(bytes.data() + at, n);
            }
            advance(1, bytes.size());
            return;
          }
          const planned_module& m = report.modules[jb.module];
          std::optional<any_qweight> q;
          std::size_t written = 0;
          for (const auto& [j, p] : jb.parts) {
            if (p == detail::part::input_scale || p == detail::part::output_scale) {
              const auto one = detail::one_as(m.weight->info->dtype);
              sink.write(j, one.data(), one.size());
            } else {
              if (!q) q = detail::quantize_module_weight(in, m, o);
              const auto [bytes, sh] = detail::part_of(*q, p);
              const tensor_info& want = sink.layout(j);
              if (sh.dims().size() != want.shape.size() ||
                  !std::equal(want.shape.begin(), want.shape.end(), sh.dims().begin()) || bytes.size() != want.nbytes())
                throw error("internal: " + want.name + " has shape " + sh.to_string() +
                            ", the layout expected another");
              sink.write(j, bytes.data(), bytes.size());
            }
            ++written;
          }
          if (q) in.release(*m.weight);
          advance(written, q ? m.weight->info->nbytes() : 0);
        });
      });
  report.shard_names = saved.shard_names;
  report.tensors_written = outs.size();
  report.input_bytes = in.total_size();
  report.output_bytes = saved.total_size;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

/// A quantized model folder, as optimum-quanto's `save_pretrained` (or `quantize_model`) writes
/// it: the checkpoint and its quanto_qmap.json.
class quantized_model {
 public:
  /// Throws `file_error` when quanto_qmap.json is missing (as quanto's `from_pretrained` does),
  /// and the readers' typed errors.
  static quantized_model open(const std::filesystem::path& folder) {
    const auto qmap_path = folder / "quanto_qmap.json";
    std::error_code ec;
    if (!std::filesystem::exists(qmap_path, ec))
      throw file_error("model " + detail::quote_path(folder) + " has no quanto_qmap.json: it is not a quantized model",
                       qmap_path, std::make_error_code(std::errc::no_such_file_or_directory));
    return quantized_model(checkpoint::open(folder), read_qmap(qmap_path));
  }

  [[nodiscard]] const checkpoint& files() const noexcept { return files_; }
  [[nodiscard]] const nn::quantization_map_t& qmap() const noexcept { return qmap_; }
  [[nodiscard]] const nn::qmap_entry* find(std::string_view module) const noexcept {
    for (const auto& e : qmap_)
      if (e.name == module) return &e;
    return nullptr;
  }

  /// The quantized weight of `module`, copied out of the files. `weight_shape` is the shape of
  /// the float weight: qint2/qint4 files do not record it (quanto takes it from the module), and
  /// for 8-bit qtypes it is checked against `weight._data`. Throws `missing_tensor_error`,
  /// `dtype_error` or `shape_error` when the files do not hold that weight, `unsupported_error`
  /// for a module whose weights are not quantized or an integer zero-point shift.
  [[nodiscard]] any_qweight weight(std::string_view module, const shape& weight_shape) const {
    const nn::qmap_entry* e = find(module);
    if (!e)
      throw missing_tensor_error("model " + detail::quote_path(files_.folder()) + ": module " + detail::quote(module) +
                                 " is not in quanto_qmap.json");
    if (e->weights == "none")
      throw unsupported_error("module " + detail::quote(module) + " has no quantized weight (weights: none)");
    const std::string m(module);
    const ::quanto::dtype t = files_.at(m + ".weight._scale").info->dtype;
    return visit_qtype(qtype_from_name(e->weights), [&]<class Q>(Q) -> any_qweight {
      const auto build = [&]<class T>() -> any_qweight {
        if constexpr (ByteQType<Q>) {
          qbytes_weight<Q, T> w{copy<typename Q::storage>(m + ".weight._data"), copy<T>(m + ".weight._scale"),
                                effective_axis(weight_shape, qaxis::first)};  // a one-row weight: per tensor
          if (w.data.shape() != weight_shape)
            throw shape_error(m + ".weight._data has shape " + w.data.shape().to_string() + ", the weight is " +
                              weight_shape.to_string());
          w.validate();
          return w;
        } else {
          if (files_.at(m + ".weight._shift").info->dtype != t)
            throw unsupported_error(m +
                                    ".weight._shift is not in the model dtype (an integer zero-point, written on "
                                    "Intel XPU, is not supported)");
          qbits_weight<Q, T> w{copy<std::uint8_t>(m + ".weight._data._data"),
                               copy<T>(m + ".weight._scale"),
                               copy<T>(m + ".weight._shift"),
                               weight_shape,
                               qaxis::first,
                               default_group_size(weight_shape)};
          w.validate();
          return w;
        }
      };
      switch (t) {
        case ::quanto::dtype::f32:
          return build.template operator()<float>();
        case ::quanto::dtype::f16:
          return build.template operator()<float16>();
        case ::quanto::dtype::bf16:
          return build.template operator()<bfloat16>();
        default:
          throw dtype_error(m + ".weight._scale has dtype " + std::string(to_string(t)) + ", not a model float dtype");
      }
    });
  }

 private:
  quantized_model(checkpoint c, nn::quantization_map_t q) : files_(std::move(c)), qmap_(std::move(q)) {}

  template <class X>
  tensor<X> copy(const std::string& name) const {
    const checkpoint::entry& e = files_.at(name);
    if (e.info->dtype != dtype_of<X>)
      throw dtype_error(name + " has dtype " + std::string(to_string(e.info->dtype)) + ", expected " +
                        std::string(to_string(dtype_of<X>)));
    if (e.info->shape.size() > shape::max_rank) throw shape_error(name + " has too many dimensions");
    tensor<X> t(shape(std::span<const std::int64_t>(e.info->shape)));
    const auto b = files_.bytes(e);
    if (!b.empty()) std::memcpy(t.data(), b.data(), b.size());
    return t;
  }

  checkpoint files_;
  nn::quantization_map_t qmap_;
};

}  // namespace io
QUANTO_END_NAMESPACE
