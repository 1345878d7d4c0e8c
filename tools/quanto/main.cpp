// quanto: the command-line tool. Quantizes Hugging Face model folders as optimum-quanto would
// (`quanto quantize`), and shows what a folder holds (`quanto inspect`). See `quanto --help` and
// docs/files.md. Exit codes (also in --help) are part of the interface scripts rely on.
#include <quanto/io/model.hpp>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <signal.h>
#include <unistd.h>

namespace {

namespace fs = std::filesystem;
namespace io = quanto::io;

// ---- exit codes ---------------------------------------------------------------------------------
enum exit_code : int {
  ok = 0,
  internal = 1,     // a bug, or an error of no known kind
  usage = 2,        // bad command line
  exists = 3,       // the output exists and --force was not given
  bad_model = 4,    // a malformed input: safetensors, index, quanto_qmap.json, config.json
  file_system = 5,  // a file could not be opened, read, created, written or renamed
  unsupported = 6,  // a request that cannot be done: an unsupported combination, nothing selected,
                    // an input that is already quantized
  refused = 7,      // OUTPUT would destroy INPUT (it is INPUT, or contains it)
};

constexpr std::string_view exit_codes_help =
    "Exit codes:\n"
    "  0  success\n"
    "  1  internal error\n"
    "  2  usage error (unknown option, missing or bad argument)\n"
    "  3  the output exists (pass --force to replace it)\n"
    "  4  malformed input (safetensors, index, quanto_qmap.json or config.json)\n"
    "  5  file system error (cannot open, read, create, write or rename)\n"
    "  6  unsupported request (qtype/optimizer combination, nothing selected, already quantized)\n"
    "  7  refused: OUTPUT is INPUT or contains it (replacing OUTPUT would destroy the input)\n"
    "  130, 143  interrupted by SIGINT (Ctrl-C) or SIGTERM: the unfinished output is removed\n";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

constexpr std::string_view main_help =
    "quanto: quantize Hugging Face models exactly as optimum-quanto does\n"
    "\n"
    "Usage:\n"
    "  quanto quantize INPUT OUTPUT --weights QTYPE [options]   quantize a model folder\n"
    "  quanto quantize --demo [OUTPUT]                          quantize a small built-in model\n"
    "  quanto inspect PATH [--against FLOAT_PATH]               list the tensors of a model\n"
    "  quanto --version\n"
    "\n"
    "Run `quanto COMMAND --help` for the options of a command.\n";

constexpr std::string_view quantize_help =
    "Usage: quanto quantize INPUT OUTPUT --weights QTYPE [options]\n"
    "       quanto quantize --demo [OUTPUT] [options]\n"
    "\n"
    "Quantizes the Linear weights of the model at INPUT (a Hugging Face folder with\n"
    "model.safetensors or shards and model.safetensors.index.json, or one .safetensors file)\n"
    "and writes a folder that optimum-quanto's QuantizedModelForCausalLM.from_pretrained loads:\n"
    "the tensors optimum-quanto would write, quanto_qmap.json, and the input's other files.\n"
    "OUTPUT is created when everything is written (atomically); an existing OUTPUT is refused\n"
    "unless --force is given.\n"
    "\n"
    "Options (long only; -h is --help; put -- before a path that starts with -):\n"
    "  --weights QTYPE        qint2, qint4, qint8, qfloat8 (= qfloat8_e4m3fn), qfloat8_e5m2,\n"
    "                         qfloat8_e4m3fnuz (required, except with --demo: qint4)\n"
    "  --activations QTYPE    none (default), qint8, qfloat8, qfloat8_e5m2, ... (recorded in\n"
    "                         quanto_qmap.json; the scales are 1.0 until calibrated)\n"
    "  --optimizer NAME       max (default for qint2/qint4) or hqq; 8-bit qtypes use absmax\n"
    "  --include PATTERN      quantize only modules matching one of these fnmatch patterns\n"
    "                         (repeatable; default: all)\n"
    "  --exclude PATTERN      leave modules matching these patterns (repeatable; replaces the\n"
    "                         default, which is lm_head)\n"
    "  --no-default-exclude   do not exclude lm_head (a tied lm_head is then quantized from the\n"
    "                         input embedding and config.json is untied, as quanto does)\n"
    "  --threads N            worker threads (default: one per hardware thread)\n"
    "  --max-shard-size SIZE  largest shard, e.g. 2GB (default, as quanto), 500MB, 1GiB, or bytes;\n"
    "                         0 writes one model.safetensors\n"
    "  --force                replace OUTPUT if it exists\n"
    "  --quiet                no progress bar and no summary (errors are still printed)\n"
    "  --verbose              list each .weight tensor left unquantized and each input file\n"
    "                         not copied, with the reason (the summary gives counts)\n"
    "  --demo                 quantize a small built-in random model (written next to OUTPUT,\n"
    "                         default ./quanto-demo) and show its quantization error\n"
    "\n"
    "Embeddings and norms are never quantized; a module counts as a Linear when it has a float\n"
    "'<module>.weight' of rank 2 (rank 4: Conv2d). The summary says which '.weight' tensors were\n"
    "left unquantized (dtype, rank, empty, embedding, not selected) and which input files were\n"
    "not copied (dangling links, folders, other non-regular files).\n";

constexpr std::string_view inspect_help =
    "Usage: quanto inspect PATH [--against FLOAT_PATH]\n"
    "\n"
    "Lists the tensors of a model folder or a .safetensors file: name, shape, dtype, bytes. For\n"
    "a quantized folder (with quanto_qmap.json) it lists each quantized module with its qtype\n"
    "and, with --against, the quantization error of its weight against the float model at\n"
    "FLOAT_PATH as a signal-to-quantization-noise ratio (SQNR, in dB; higher is better).\n";

// ---- small helpers -------------------------------------------------------------------------------

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

/// "2GB", "500MB", "1GiB", "123" (bytes), as huggingface_hub parses max_shard_size.
std::uint64_t parse_size(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
  if (i == 0) throw usage_error("bad size '" + std::string(s) + "' (expected e.g. 2GB, 500MB, 1GiB or a byte count)");
  std::uint64_t n = 0;
  for (std::size_t k = 0; k < i; ++k) {
    const std::uint64_t d = static_cast<std::uint64_t>(s[k] - '0');
    if (n > (UINT64_MAX - d) / 10) throw usage_error("size '" + std::string(s) + "' is too large");
    n = n * 10 + d;
  }
  std::string unit(s.substr(i));
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static const std::map<std::string, std::uint64_t> units = {{"", 1},
                                                             {"B", 1},
                                                             {"KB", 1000},
                                                             {"MB", 1000'000},
                                                             {"GB", 1000'000'000},
                                                             {"TB", 1000'000'000'000},
                                                             {"KIB", 1ull << 10},
                                                             {"MIB", 1ull << 20},
                                                             {"GIB", 1ull << 30},
                                                             {"TIB", 1ull << 40}};
  const auto it = units.find(unit);
  if (it == units.end())
    throw usage_error("bad size unit in '" + std::string(s) + "' (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB)");
  if (n != 0 && it->second > UINT64_MAX / n) throw usage_error("size '" + std::string(s) + "' is too large");
  return n * it->second;
}

quanto::qtype_id parse_qtype(std::string_view name, const char* option) {
  try {
    return quanto::qtype_from_name(name);
  } catch (const quanto::error&) {
    throw usage_error(std::string(option) + ": unknown qtype '" + std::string(name) +
                      "' (qint2, qint4, qint8, qfloat8, qfloat8_e4m3fn, qfloat8_e5m2, qfloat8_e4m3fnuz)");
  }
}

/// Command-line arguments: options with values, flags, positionals.
struct args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> values;
  std::vector<std::string> flags;

  static args parse(int argc, char** argv, int first, const std::vector<std::string>& with_value,
                    const std::vector<std::string>& flag_names) {
    args a;
    bool options_end = false;
    for (int i = first; i < argc; ++i) {
      std::string s = argv[i];
      if (!options_end && s == "--") {  // everything after "--" is a path, even "-x"
        options_end = true;
        continue;
      }
      if (!options_end && s == "-h") s = "--help";
      if (!options_end && s.size() > 1 && s[0] == '-' && s.rfind("--", 0) != 0)  // "-x", "-o7"
        throw usage_error("unknown option '" + s +
                          "' (options are long, e.g. --force; use -- before a path that starts with -)");
      if (!options_end && s.size() > 2 && s.rfind("--", 0) == 0) {
        std::string name = s, value;
        bool inline_value = false;
        if (const auto eq = s.find('='); eq != std::string::npos) {
          name = s.substr(0, eq);
          value = s.substr(eq + 1);
          inline_value = true;
        }
        if (std::find(with_value.begin(), with_value.end(), name) != with_value.end()) {
          if (!inline_value) {
            if (i + 1 >= argc) throw usage_error(name + " needs a value");
            value = argv[++i];
          }
          a.values[name].push_back(value);
        } else if (std::find(flag_names.begin(), flag_names.end(), name) != flag_names.end() && !inline_value) {
          a.flags.push_back(name);
        } else {
          throw usage_error("unknown option '" + s + "'");
        }
      } else {
        a.positional.push_back(s);
      }
    }
    return a;
  }
  bool flag(const std::string& f) const { return std::find(flags.begin(), flags.end(), f) != flags.end(); }
  std::optional<std::string> one(const std::string& name) const {
    const auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    if (it->second.size() > 1) throw usage_error(name + " given more than once");
    return it->second.front();
  }
  std::vector<std::string> all(const std::string& name) const {
    const auto it = values.find(name);
    return it == values.end() ? std::vector<std::string>{} : it->second;
  }
};

/// A one-line progress bar on a terminal: tensors, bytes, rate, ETA; redrawn at most 10 times a second.
class progress_bar {
 public:
  explicit progress_bar(bool enabled) : enabled_(enabled) {}
  void operator()(const io::quantize_progress& p) {
    if (!enabled_) return;
    const bool last = p.tensors_done == p.tensors_total;
    if (!last && p.seconds - drawn_at_ < 0.1) return;
    drawn_at_ = p.seconds;
    const double frac = p.bytes_total ? static_cast<double>(p.bytes_done) / static_cast<double>(p.bytes_total) : 1.0;
    constexpr int width = 28;
    const int filled = static_cast<int>(frac * width);
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    const double rate = p.seconds > 0 ? static_cast<double>(p.bytes_done) / p.seconds : 0;
    char eta[32] = "";
    if (rate > 0 && !last)
      std::snprintf(eta, sizeof eta, "  ETA %.0fs",
                    static_cast<double>(p.bytes_total - std::min(p.bytes_done, p.bytes_total)) / rate);
    std::fprintf(stderr, "\r[%s] %zu/%zu tensors  %s / %s  %s/s%s\033[K", bar.c_str(), p.tensors_done, p.tensors_total,
                 human_bytes(static_cast<double>(p.bytes_done)).c_str(),
                 human_bytes(static_cast<double>(p.bytes_total)).c_str(), human_bytes(rate).c_str(), eta);
    if (last) std::fputc('\n', stderr);
    std::fflush(stderr);
  }

 private:
  bool enabled_;
  double drawn_at_ = -1;
};

// ---- the built-in demo model ---------------------------------------------------------------------

/// A small Llama-shaped float32 model with random weights (deterministic): 4 layers, hidden 256,
/// MLP 768, vocabulary 2048, tied embeddings.
void write_demo_model(const fs::path& folder) {
  constexpr int hidden = 256, inter = 768, layers = 4, vocab = 2048, heads = 8, kv_heads = 4;
  constexpr int head_dim = hidden / heads;
  std::mt19937_64 rng(20261123);
  const auto normal = [&] {  // Box-Muller from raw 64-bit draws: the same numbers everywhere
    const double u1 = (static_cast<double>(rng() >> 11) + 1.0) / 9007199254740993.0;
    const double u2 = static_cast<double>(rng() >> 11) / 9007199254740992.0;
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
  };
  std::vector<std::vector<float>> storage;
  std::vector<io::tensor_to_write> tensors;
  const auto add = [&](std::string name, std::vector<std::int64_t> shape, float stddev, float mean = 0) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<float> v(static_cast<std::size_t>(n));
    for (float& x : v) x = stddev == 0 ? mean : mean + stddev * static_cast<float>(normal());
    storage.push_back(std::move(v));
    tensors.push_back(
        {std::move(name), quanto::dtype::f32, std::move(shape), std::as_bytes(std::span(storage.back()))});
  };
  storage.reserve(4 + layers * 9);
  add("model.embed_tokens.weight", {vocab, hidden}, 0.02f);
  for (int l = 0; l < layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {hidden}, 0, 1);
    add(p + "post_attention_layernorm.weight", {hidden}, 0, 1);
    add(p + "self_attn.q_proj.weight", {heads * head_dim, hidden}, 0.02f);
    add(p + "self_attn.k_proj.weight", {kv_heads * head_dim, hidden}, 0.02f);
    add(p + "self_attn.v_proj.weight", {kv_heads * head_dim, hidden}, 0.02f);
    add(p + "self_attn.o_proj.weight", {hidden, heads * head_dim}, 0.02f);
    add(p + "mlp.gate_proj.weight", {inter, hidden}, 0.02f);
    add(p + "mlp.up_proj.weight", {inter, hidden}, 0.02f);
    add(p + "mlp.down_proj.weight", {hidden, inter}, 0.02f);
  }
  add("model.norm.weight", {hidden}, 0, 1);
  const std::string config =
      "{\n  \"architectures\": [\n    \"LlamaForCausalLM\"\n  ],\n  \"hidden_act\": \"silu\",\n"
      "  \"hidden_size\": " +
      std::to_string(hidden) + ",\n  \"intermediate_size\": " + std::to_string(inter) +
      ",\n  \"max_position_embeddings\": 256,\n  \"model_type\": \"llama\",\n  \"num_attention_heads\": " +
      std::to_string(heads) + ",\n  \"num_hidden_layers\": " + std::to_string(layers) +
      ",\n  \"num_key_value_heads\": " + std::to_string(kv_heads) +
      ",\n  \"rms_norm_eps\": 1e-06,\n  \"tie_word_embeddings\": true,\n  \"torch_dtype\": \"float32\",\n"
      "  \"vocab_size\": " +
      std::to_string(vocab) + "\n}\n";
  io::checkpoint_options o;
  o.overwrite = true;
  o.extra_files = {{"config.json", config}};
  io::save_checkpoint_with(folder, tensors, o, [&](std::span<const std::size_t> members, io::tensor_sink& sink) {
    for (std::size_t j = 0; j < members.size(); ++j)
      sink.write(j, tensors[members[j]].data.data(), tensors[members[j]].data.size());
  });
}

// ---- inspect --------------------------------------------------------------------------------------

/// 10 log10(sum x^2 / sum (x - q)^2) over the float original and the dequantized weight.
double sqnr_db(const quanto::any_qweight& q, const io::checkpoint& original, const io::checkpoint::entry& w) {
  const auto raw = original.bytes(w);
  const std::size_t n = raw.size() / quanto::size_of(w.info->dtype);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::byte* p = raw.data() + i * quanto::size_of(w.info->dtype);
    if (w.info->dtype == quanto::dtype::f32) {
      std::memcpy(&x[i], p, 4);
    } else {
      std::uint16_t b;
      std::memcpy(&b, p, 2);
      x[i] = w.info->dtype == quanto::dtype::f16 ? static_cast<float>(quanto::float16::from_bits(b))
                                                 : static_cast<float>(quanto::bfloat16::from_bits(b));
    }
  }
  return std::visit(
      [&](const auto& qw) {
        const auto d = qw.dequantize();
        double signal = 0, noise = 0;
        for (std::size_t i = 0; i < n; ++i) {
          const double a = x[i], e = a - static_cast<double>(static_cast<float>(d.data()[i]));
          signal += a * a;
          noise += e * e;
        }
        return noise == 0 ? INFINITY : 10 * std::log10(signal / noise);
      },
      q);
}

int inspect(int argc, char** argv) {
  const args a = args::parse(argc, argv, 2, {"--against"}, {"--help"});
  if (a.flag("--help")) {
    std::cout << inspect_help << "\n" << exit_codes_help;
    return ok;
  }
  if (a.positional.size() != 1) throw usage_error("inspect needs exactly one PATH (see quanto inspect --help)");
  const fs::path path = a.positional[0];
  std::error_code ec;
  const bool quantized = fs::is_directory(path, ec) && fs::exists(path / "quanto_qmap.json", ec);
  const auto against = a.one("--against");
  if (against && !quantized) throw usage_error("--against needs a quantized PATH (a folder with quanto_qmap.json)");

  if (!quantized) {
    const auto c = io::checkpoint::open(path);
    std::printf("%-60s %-18s %-12s %12s\n", "tensor", "shape", "dtype", "bytes");
    for (const auto& e : c.tensors())
      std::printf("%-60s %-18s %-12s %12llu\n", e.name().c_str(), io::detail::shape_string(e.info->shape).c_str(),
                  std::string(quanto::to_string(e.info->dtype)).c_str(),
                  static_cast<unsigned long long>(e.info->nbytes()));
    std::printf("%zu tensors in %zu file(s), %s\n", c.tensors().size(), c.shards().size(),
                human_bytes(static_cast<double>(c.total_size())).c_str());
    return ok;
  }

  const auto model = io::quantized_model::open(path);
  std::optional<io::checkpoint> original;
  if (against) original = io::checkpoint::open(*against);
  // Tensors that belong to a quantized module are reported once, per module.
  std::map<std::string, std::uint64_t> module_bytes;
  std::map<std::string, bool> owned;
  for (const auto& m : model.qmap())
    for (const char* part :
         {".weight._data", ".weight._data._data", ".weight._scale", ".weight._shift", ".input_scale", ".output_scale"})
      if (const auto* e = model.files().find(m.name + part)) {
        module_bytes[m.name] += e->info->nbytes();
        owned[e->name()] = true;
      }
  std::vector<const io::checkpoint::entry*> others;
  for (const auto& e : model.files().tensors())
    if (!owned.count(e.name())) others.push_back(&e);
  std::printf("%-52s %-16s %-14s %-12s %12s%s\n", "module", "weight shape", "weights", "activations", "bytes",
              against ? "   SQNR (dB)" : "");
  double sum_db = 0;
  std::size_t counted = 0;
  for (const auto& m : model.qmap()) {
    std::string shape = "?";
    std::string db;
    if (const auto* d = model.files().find(m.name + ".weight._data");
        d && m.weights != "none" && d->info->dtype != quanto::dtype::u8)
      shape = io::detail::shape_string(d->info->shape);
    if (original && m.weights != "none") {
      const auto& w = original->at(m.name + ".weight");
      shape = io::detail::shape_string(w.info->shape);
      const double v =
          sqnr_db(model.weight(m.name, quanto::shape(std::span<const std::int64_t>(w.info->shape))), *original, w);
      char buf[32];
      std::snprintf(buf, sizeof buf, "   %9.2f", v);
      db = buf;
      if (std::isfinite(v)) sum_db += v, ++counted;
    }
    std::printf("%-52s %-16s %-14s %-12s %12llu%s\n", m.name.c_str(), shape.c_str(), m.weights.c_str(),
                m.activations.c_str(), static_cast<unsigned long long>(module_bytes[m.name]), db.c_str());
  }
  std::printf("\n%-52s %-16s %-14s %12s\n", "other tensor", "shape", "dtype", "bytes");
  for (const auto* e : others)
    std::printf("%-52s %-16s %-14s %12llu\n", e->name().c_str(), io::detail::shape_string(e->info->shape).c_str(),
                std::string(quanto::to_string(e->info->dtype)).c_str(),
                static_cast<unsigned long long>(e->info->nbytes()));
  std::printf("\n%zu quantized modules, %zu other tensors, %s in %zu file(s)", model.qmap().size(), others.size(),
              human_bytes(static_cast<double>(model.files().total_size())).c_str(), model.files().shards().size());
  if (original)
    std::printf("; float original %s (%.2fx smaller); mean weight SQNR %.2f dB",
                human_bytes(static_cast<double>(original->total_size())).c_str(),
                static_cast<double>(original->total_size()) / static_cast<double>(model.files().total_size()),
                counted ? sum_db / static_cast<double>(counted) : 0.0);
  std::printf("\n");
  return ok;
}

// ---- quantize -------------------------------------------------------------------------------------

/// "not quantized (copied as they are): 9 .weight tensors: 5 rank 1, 2 an embedding, ..."; with
/// `verbose`, one line per tensor or file after it.
void print_left_alone(const std::vector<io::left_alone>& items, const char* what, const char* noun, bool verbose) {
  if (items.empty()) return;
  std::vector<std::pair<std::string, std::size_t>> counts;  // reasons in order of first appearance
  for (const auto& i : items) {
    auto it = std::find_if(counts.begin(), counts.end(), [&](const auto& c) { return c.first == i.reason; });
    if (it == counts.end())
      counts.emplace_back(i.reason, 1);
    else
      ++it->second;
  }
  std::string line =
      std::string(what) + ": " + std::to_string(items.size()) + " " + noun + (items.size() == 1 ? "" : "s") + " (";
  for (std::size_t k = 0; k < counts.size(); ++k)
    line += (k ? ", " : "") + std::to_string(counts[k].second) + " " + counts[k].first;
  line += verbose ? ")" : "; --verbose lists them)";
  std::printf("%s\n", line.c_str());
  if (verbose)
    for (const auto& i : items) std::printf("  %-60s %s\n", i.name.c_str(), i.reason.c_str());
}

int quantize(int argc, char** argv) {
  const args a = args::parse(
      argc, argv, 2,
      {"--weights", "--activations", "--optimizer", "--include", "--exclude", "--threads", "--max-shard-size"},
      {"--help", "--force", "--quiet", "--verbose", "--demo", "--no-default-exclude"});
  if (a.flag("--help")) {
    std::cout << quantize_help << "\n" << exit_codes_help;
    return ok;
  }
  const bool demo = a.flag("--demo");
  fs::path input, output;
  if (demo) {
    if (a.positional.size() > 1) throw usage_error("quantize --demo takes at most one OUTPUT");
    output = a.positional.empty() ? fs::path("quanto-demo") : fs::path(a.positional[0]);
  } else {
    if (a.positional.size() != 2) throw usage_error("quantize needs INPUT and OUTPUT (see quanto quantize --help)");
    input = a.positional[0];
    output = a.positional[1];
  }
  io::model_quantize_options o;
  const auto weights = a.one("--weights");
  if (!weights && !demo) throw usage_error("quantize needs --weights (qint2, qint4, qint8, qfloat8, ...)");
  o.weights = weights ? parse_qtype(*weights, "--weights") : quanto::qtype_id::qint4;
  if (const auto acts = a.one("--activations"); acts && *acts != "none")
    o.activations = parse_qtype(*acts, "--activations");
  if (const auto opt = a.one("--optimizer")) {
    if (*opt != "max" && *opt != "hqq" && *opt != "absmax")
      throw usage_error("--optimizer: unknown optimizer '" + *opt + "' (max or hqq)");
    o.optimizer = quanto::optimizer_from_name(*opt);
  }
  o.include = a.all("--include");
  if (a.values.count("--exclude"))
    o.exclude = a.all("--exclude");
  else if (a.flag("--no-default-exclude"))
    o.exclude.clear();
  if (a.values.count("--exclude") && a.flag("--no-default-exclude"))
    throw usage_error("--exclude and --no-default-exclude do not go together");
  if (const auto t = a.one("--threads")) {
    char* end = nullptr;
    const long v = std::strtol(t->c_str(), &end, 10);
    if (end == t->c_str() || *end != '\0' || v < 1 || v > 1024)
      throw usage_error("--threads needs a number from 1 to 1024");
    o.threads = static_cast<unsigned>(v);
  }
  if (const auto s = a.one("--max-shard-size")) o.max_shard_size = parse_size(*s);
  o.overwrite = a.flag("--force");
  const bool quiet = a.flag("--quiet");
  const bool verbose = a.flag("--verbose");
  if (quiet && verbose) throw usage_error("--quiet and --verbose do not go together");
  progress_bar bar(!quiet && ::isatty(2) != 0);
  // For the contract test only: raise a signal once N tensors are written ("N:INT" or "N:TERM").
  std::size_t raise_after = 0;
  int raise_signal = 0;
  if (const char* t = std::getenv("QUANTO_TEST_SIGNAL_AFTER")) {
    raise_after = std::strtoull(t, nullptr, 10);
    raise_signal = std::strstr(t, ":TERM") ? SIGTERM : SIGINT;
  }
  // Once only: the handlers reset themselves (SA_RESETHAND), so a second raise from a later progress
  // call (another worker, before the writers reach their next check) would kill the process outright.
  std::atomic<bool> raised{false};
  o.progress = [&bar, &raised, raise_after, raise_signal](const io::quantize_progress& p) {
    bar(p);
    if (raise_signal != 0 && p.tensors_done >= raise_after && !raised.exchange(true)) ::raise(raise_signal);
  };
  io::install_interrupt_handlers();  // Ctrl-C / SIGTERM: stop, remove the staging folder, exit 130 / 143

  fs::path demo_input;
  if (demo) {
    demo_input = output.parent_path() / (output.filename().string() + "-float");
    write_demo_model(demo_input);
    input = demo_input;
    o.overwrite = true;  // the demo folders are the tool's own
    if (!quiet) std::printf("demo: a random Llama-shaped float32 model written to %s\n", demo_input.string().c_str());
  }
  const auto report = io::quantize_model(input, output, o);
  if (!quiet) {
    std::printf(
        "quantized %zu modules to %s: %s -> %s (%.2fx) in %zu file(s), %.2f s (%s/s)\n", report.modules.size(),
        std::string(quanto::info_of(o.weights).name).c_str(),
        human_bytes(static_cast<double>(report.input_bytes)).c_str(),
        human_bytes(static_cast<double>(report.output_bytes)).c_str(),
        static_cast<double>(report.input_bytes) / static_cast<double>(std::max<std::uint64_t>(report.output_bytes, 1)),
        report.shard_names.size(), report.seconds,
        human_bytes(static_cast<double>(report.input_bytes) / std::max(report.seconds, 1e-9)).c_str());
    if (report.untied_embeddings) std::printf("config.json: tie_word_embeddings set to false (lm_head is quantized)\n");
    print_left_alone(report.not_quantized, "not quantized (copied as they are)", ".weight tensor", verbose);
    print_left_alone(report.not_copied, "not copied", "input file", verbose);
    std::printf("written to %s\n", output.string().c_str());
  }
  if (demo && !quiet) {
    std::printf("\n");
    std::string in = demo_input.string(), out = output.string();
    char* inspect_argv[] = {argv[0], const_cast<char*>("inspect"), out.data(), const_cast<char*>("--against"),
                            in.data()};
    return inspect(5, inspect_argv);
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc < 2 || std::string_view(argv[1]) == "--help" || std::string_view(argv[1]) == "-h") {
      std::cout << main_help << "\n" << exit_codes_help;
      return argc < 2 ? usage : ok;
    }
    const std::string_view command = argv[1];
    if (command == "--version") {
      if (argc > 2) throw usage_error("--version takes no arguments (got '" + std::string(argv[2]) + "')");
      std::cout << "quanto " << QUANTO_VERSION_MAJOR << "." << QUANTO_VERSION_MINOR << "." << QUANTO_VERSION_PATCH
                << "\n";
      return ok;
    }
    if (command == "quantize") return quantize(argc, argv);
    if (command == "inspect") return inspect(argc, argv);
    throw usage_error("unknown command '" + std::string(command) + "' (quantize or inspect; see quanto --help)");
  } catch (const io::interrupted_error& e) {
    std::cerr << e.what() << ": stopped; the unfinished output was removed and OUTPUT was left as it was\n";
    return 128 + e.signal();
  } catch (const io::unsafe_output_error& e) {
    std::cerr << e.what() << "\n";
    return refused;
  } catch (const usage_error& e) {
    std::cerr << "quanto: " << e.what() << "\n";
    return usage;
  } catch (const io::file_error& e) {
    std::cerr << e.what() << "\n";
    return e.code() == std::errc::file_exists ? exists : file_system;
  } catch (const quanto::format_error& e) {
    std::cerr << e.what() << "\n";
    return bad_model;
  } catch (const quanto::unsupported_error& e) {
    std::cerr << e.what() << "\n";
    return unsupported;
  } catch (const quanto::value_error& e) {
    std::cerr << e.what() << "\n";
    return unsupported;
  } catch (const quanto::shape_error& e) {
    std::cerr << e.what() << "\n";
    return bad_model;
  } catch (const std::exception& e) {
    std::cerr << "quanto: internal error: " << e.what() << "\n";
    return internal;
  }
}
