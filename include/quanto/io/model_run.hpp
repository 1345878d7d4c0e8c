// quanto/io/model_run.hpp: quantize a whole Hugging Face model folder on disk, as
// optimum-quanto's `QuantizedModelForCausalLM.quantize(...)` + `save_pretrained(...)` would, without
// loading the model: tensors stream from memory-mapped shards into the new shards one by one.
//
//   io::quantize_model("llama-f32", "llama-qint4", {.weights = qtype_id::qint4});
//
// What is quantized and written is planned first (io/model_plan.hpp).
//
// Memory stays bounded by a few tensors, not by the model: the output file is laid out first,
// then workers quantize modules in parallel and write each result at its place in the shard, and
// the input pages of a finished tensor are dropped from the resident set. The output folder
// appears atomically when everything is written (io/checkpoint.hpp).
// The workers are io/work_queue.hpp's (which says why they are not kernels/parallel.hpp's).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
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
#include "quanto/core/quantization_map.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/io/checkpoint_reader.hpp"
#include "quanto/io/checkpoint_writer.hpp"
#include "quanto/io/file.hpp"
#include "quanto/io/folder_commit.hpp"
#include "quanto/io/model_plan.hpp"
#include "quanto/io/qmap.hpp"
#include "quanto/io/safetensors_header.hpp"
#include "quanto/io/safetensors_writer.hpp"
#include "quanto/io/text.hpp"
#include "quanto/io/work_queue.hpp"
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

}  // namespace detail

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
    quantization_map_t qmap;
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

}  // namespace io
QUANTO_END_NAMESPACE
