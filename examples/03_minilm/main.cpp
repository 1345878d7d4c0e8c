// Example 03: all-MiniLM-L6-v2 sentence embeddings, float and quantized, with the library's modules.
//
//   minilm MODEL_DIR [options]          the table: every configuration's accuracy, size and speed
//   minilm MODEL_DIR --check            tokenizer ids and float embeddings against the reference
//   minilm MODEL_DIR --embed TEXT...    prints the cosine similarity of the given sentences
//
// MODEL_DIR is what tools/fetch_minilm.py places (config.json, vocab.txt, model.safetensors).
// Options:
//   --sentences FILE      evaluation sentences, one per line   (default: the example's data/sentences.txt)
//   --calibration FILE    calibration sentences                (default: data/calibration.txt)
//   --gptq-calibration FILE  sentences GPTQ calibrates on (default: data/gptq_calibration.txt, 128
//                         sentences in neither of the two files above)
//   --reference FILE      sentence-transformers' embeddings and Hugging Face's token ids
//                         (default: MODEL_DIR/reference.safetensors; tools/minilm_reference.py writes it)
//   --configs a,b,...     configurations to run (default: all but the calibrated-weight ones; see
//                         `configs` below: w2max and the gptq ones run when named)
//   --quanto-weights DIR  DIR/<config>/model.safetensors written by optimum-quanto: compare weights
//   --quanto-threads N    the torch.set_num_threads that optimum-quanto quantized with (default 2, as
//                         bench/minilm_optimum_quanto.py): HQQ reproduces PyTorch's sums for that count
//   --speed-sentences N   sentences timed per pass (default 64; 0 = all); --passes P (default 3)
//   --json FILE           write the results as JSON
//   --quick               fewer sentences and one pass (a smoke test)
//
// Threads: QUANTO_NUM_THREADS (default: all cores).
#include "bert.hpp"
#include "wordpiece.hpp"

#include <quanto/io/safetensors.hpp>
#include <quanto/io/state_dict.hpp>
#include <quanto/nn.hpp>
#include <quanto/nn/gptq.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#ifndef QUANTO_MINILM_DATA_DIR
#define QUANTO_MINILM_DATA_DIR "data"
#endif

namespace fs = std::filesystem;
using namespace minilm;

namespace {

/// A configuration of the table: weights, activations and optimizer as quanto's names ("gptq":
/// the calibrated method, nn::quantize_calibrated). `on_request`: only run when --configs names it
/// (optimum-quanto has no counterpart, so the two-sided table leaves it out).
struct run_config {
  std::string name, weights, activations, optimizer;
  bool on_request = false;
};
const std::vector<run_config> configs = {
    {"f32", "none", "none", ""},
    {"w8", "qint8", "none", ""},
    {"w8a8", "qint8", "qint8", ""},
    {"fp8", "qfloat8_e4m3fn", "none", ""},
    {"w8fp8a", "qfloat8_e4m3fn", "qfloat8_e4m3fn", ""},
    {"w4max", "qint4", "none", "max"},
    {"w4hqq", "qint4", "none", "hqq"},
    {"w2hqq", "qint2", "none", "hqq"},
    {"w2max", "qint2", "none", "max", true},
    {"w4gptq", "qint4", "none", "gptq", true},
    {"w2gptq", "qint2", "none", "gptq", true},
    {"w4gptqao", "qint4", "none", "gptq-ao", true},  // act-order with static groups
    {"w2gptqao", "qint2", "none", "gptq-ao", true},
    {"w4gptqac", "qint4", "none", "gptq-ao-clip", true},  // act-order and the clip search of each group
    {"w2gptqac", "qint2", "none", "gptq-ao-clip", true},
};

double cosine(const float* a, const float* b, std::int64_t d);

/// Spearman's rank correlation between the pairwise cosine similarities of two embedding sets
/// (all pairs i < j): how well the quantized model keeps the float model's ranking of pairs.
double spearman_pairs(const tensor<float>& a, const tensor<float>& b) {
  const std::int64_t n = a.shape()[0], d = a.shape()[1];
  std::vector<double> x, y;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = i + 1; j < n; ++j) {
      x.push_back(cosine(a.data() + i * d, a.data() + j * d, d));
      y.push_back(cosine(b.data() + i * d, b.data() + j * d, d));
    }
  const auto ranks = [](const std::vector<double>& v) {  // average ranks for ties
    std::vector<std::size_t> idx(v.size());
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    std::sort(idx.begin(), idx.end(), [&](std::size_t p, std::size_t q) { return v[p] < v[q]; });
    std::vector<double> r(v.size());
    for (std::size_t s = 0; s < idx.size();) {
      std::size_t e = s;
      while (e + 1 < idx.size() && v[idx[e + 1]] == v[idx[s]]) ++e;
      for (std::size_t k = s; k <= e; ++k) r[idx[k]] = 0.5 * static_cast<double>(s + e);
      s = e + 1;
    }
    return r;
  };
  const std::vector<double> rx = ranks(x), ry = ranks(y);
  const double m = 0.5 * static_cast<double>(rx.size() - 1);
  double sxy = 0, sxx = 0, syy = 0;
  for (std::size_t i = 0; i < rx.size(); ++i) {
    sxy += (rx[i] - m) * (ry[i] - m);
    sxx += (rx[i] - m) * (rx[i] - m);
    syy += (ry[i] - m) * (ry[i] - m);
  }
  return sxy / std::sqrt(sxx * syy);
}

std::vector<std::string> read_lines(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

bert_config read_config(const fs::path& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path.string());
  const nlohmann::json j = nlohmann::json::parse(in);
  if (j.value("model_type", "") != "bert") throw quanto::unsupported_error(path.string() + ": not a BERT model");
  if (j.value("hidden_act", "gelu") != "gelu")
    throw quanto::unsupported_error(path.string() + ": hidden_act must be gelu");
  if (j.value("position_embedding_type", "absolute") != "absolute")
    throw quanto::unsupported_error(path.string() + ": only absolute position embeddings are supported");
  bert_config c;
  c.vocab_size = j.at("vocab_size").get<std::int64_t>();
  c.hidden = j.at("hidden_size").get<std::int64_t>();
  c.layers = j.at("num_hidden_layers").get<std::int64_t>();
  c.heads = j.at("num_attention_heads").get<std::int64_t>();
  c.intermediate = j.at("intermediate_size").get<std::int64_t>();
  c.max_positions = j.at("max_position_embeddings").get<std::int64_t>();
  c.type_vocab = j.value("type_vocab_size", std::int64_t{2});
  c.layer_norm_eps = j.value("layer_norm_eps", 1e-12f);
  return c;
}

/// Token ids of several sentences, packed one after another.
struct token_batch {
  std::vector<std::int64_t> ids, lengths;
  void append(const std::vector<std::int64_t>& seq) {
    ids.insert(ids.end(), seq.begin(), seq.end());
    lengths.push_back(static_cast<std::int64_t>(seq.size()));
  }
};

/// Embeddings [N, d] of `seqs`, run `batch` sequences at a time.
tensor<float> embed_all(bert_model& model, const std::vector<std::vector<std::int64_t>>& seqs, std::size_t batch) {
  const std::int64_t d = model.config().hidden;
  tensor<float> out(shape{static_cast<std::int64_t>(seqs.size()), d});
  for (std::size_t b = 0; b < seqs.size(); b += batch) {
    token_batch tb;
    for (std::size_t s = b; s < std::min(seqs.size(), b + batch); ++s) tb.append(seqs[s]);
    const tensor<float> e = model.embed(tb.ids, tb.lengths);
    std::copy(e.data(), e.data() + e.size(), out.data() + static_cast<std::int64_t>(b) * d);
  }
  return out;
}

double cosine(const float* a, const float* b, std::int64_t d) {
  double ab = 0, aa = 0, bb = 0;
  for (std::int64_t e = 0; e < d; ++e) {
    ab += static_cast<double>(a[e]) * b[e];
    aa += static_cast<double>(a[e]) * a[e];
    bb += static_cast<double>(b[e]) * b[e];
  }
  return ab / std::sqrt(aa * bb);
}

/// For each sentence, the index of its nearest other sentence (cosine).
std::vector<std::int64_t> nearest_neighbours(const tensor<float>& e) {
  const std::int64_t n = e.shape()[0], d = e.shape()[1];
  std::vector<std::int64_t> nn_index(static_cast<std::size_t>(n), -1);
  for (std::int64_t i = 0; i < n; ++i) {
    double best = -2.0;
    for (std::int64_t j = 0; j < n; ++j) {
      if (j == i) continue;
      const double c = cosine(e.data() + i * d, e.data() + j * d, d);
      if (c > best) best = c, nn_index[static_cast<std::size_t>(i)] = j;
    }
  }
  return nn_index;
}

std::unique_ptr<bert_model> load_model(const bert_config& c, const quanto::nn::state_dict& weights) {
  auto model = std::make_unique<bert_model>(c);
  quanto::nn::load_state_dict(*model, weights, /*strict=*/true);
  return model;
}

struct timing {
  double batch1 = 0, batch32 = 0;  // sentences per second
};

/// Sentences per second at batch 1 and 32 over the first `count` sentences: the median of `passes`.
timing measure_speed(bert_model& model, const std::vector<std::vector<std::int64_t>>& seqs, std::size_t count,
                     int passes) {
  const std::vector<std::vector<std::int64_t>> sub(seqs.begin(), seqs.begin() + static_cast<std::ptrdiff_t>(count));
  const auto rate = [&](std::size_t batch) {
    (void)embed_all(
        model,
        std::vector(sub.begin(), sub.begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(sub.size(), 8))),
        batch);  // warm-up
    std::vector<double> r;
    for (int p = 0; p < passes; ++p) {
      const auto t0 = std::chrono::steady_clock::now();
      (void)embed_all(model, sub, batch);
      const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
      r.push_back(static_cast<double>(sub.size()) / dt.count());
    }
    std::sort(r.begin(), r.end());
    return r[r.size() / 2];
  };
  return {rate(1), rate(32)};
}

/// Whether every quantized weight tensor of `ours` equals quanto's bit for bit; also the largest
/// relative difference of the activation scales (those depend on the float forward's rounding).
struct weight_comparison {
  bool equal = true;
  std::size_t tensors = 0;
  std::string first_difference;
  double max_scale_rel = 0.0;
};
weight_comparison compare_with_quanto(const quanto::nn::state_dict& ours, const fs::path& file) {
  const quanto::nn::state_dict theirs = quanto::io::read_state_dict(file);
  weight_comparison r;
  for (const auto& [key, t] : ours) {
    const bool is_weight = key.find("weight._") != std::string::npos;
    const bool is_scale = key.ends_with("input_scale") || key.ends_with("output_scale");
    if (!is_weight && !is_scale) continue;
    const quanto::nn::stored_tensor* q = theirs.find(key);
    if (!q) {
      if (r.equal) r.first_difference = key + " is missing from quanto's file";
      r.equal = false;
      continue;
    }
    if (is_weight) {
      ++r.tensors;
      if (!(q->dtype == t.dtype && q->shape == t.shape && q->bytes == t.bytes)) {
        if (r.equal) r.first_difference = key;
        r.equal = false;
      }
    } else if (t.dtype == quanto::dtype::f32 && q->dtype == t.dtype) {
      float a = 0, b = 0;
      std::memcpy(&a, t.bytes.data(), 4);
      std::memcpy(&b, q->bytes.data(), 4);
      r.max_scale_rel =
          std::max(r.max_scale_rel, std::abs(static_cast<double>(a) - b) / std::abs(static_cast<double>(b)));
    }
  }
  return r;
}

std::string option(std::vector<std::string>& args, const std::string& name, std::string fallback = "") {
  for (std::size_t i = 0; i + 1 < args.size(); ++i)
    if (args[i] == name) {
      std::string v = args[i + 1];
      args.erase(args.begin() + static_cast<std::ptrdiff_t>(i), args.begin() + static_cast<std::ptrdiff_t>(i) + 2);
      return v;
    }
  return fallback;
}
bool flag(std::vector<std::string>& args, const std::string& name) {
  const auto it = std::find(args.begin(), args.end(), name);
  if (it == args.end()) return false;
  args.erase(it);
  return true;
}

std::vector<double> loadavg() {
  std::ifstream in("/proc/loadavg");
  double a = 0, b = 0, c = 0;
  in >> a >> b >> c;
  return {a, b, c};
}

std::string compiler_version() {
#if defined(__clang__)
  return "clang " __clang_version__;
#elif defined(__GNUC__)
  return "gcc " __VERSION__;
#else
  return "unknown";
#endif
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

int usage() {
  std::fprintf(stderr,
               "usage: minilm MODEL_DIR [--check] [--embed TEXT...] [--configs a,b] [--sentences F] [--calibration F]\n"
               "              [--gptq-calibration F]\n"
               "              [--reference F] [--quanto-weights DIR] [--quanto-threads N] [--speed-sentences N] "
               "[--passes P] [--json F] [--quick]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") return usage();
  try {
    const fs::path model_dir = args[0];
    args.erase(args.begin());
    const fs::path data = QUANTO_MINILM_DATA_DIR;
    const fs::path sentences_file = option(args, "--sentences", (data / "sentences.txt").string());
    const fs::path calibration_file = option(args, "--calibration", (data / "calibration.txt").string());
    const fs::path gptq_calibration_file = option(args, "--gptq-calibration", (data / "gptq_calibration.txt").string());
    const fs::path reference_file = option(args, "--reference", (model_dir / "reference.safetensors").string());
    const std::string quanto_weights = option(args, "--quanto-weights");
    const int quanto_threads = std::stoi(option(args, "--quanto-threads", "2"));
    const std::string json_file = option(args, "--json");
    const std::string config_list = option(args, "--configs");
    const bool quick = flag(args, "--quick");
    const int passes = std::stoi(option(args, "--passes", quick ? "1" : "3"));
    std::size_t speed_sentences = std::stoul(option(args, "--speed-sentences", quick ? "16" : "64"));
    const bool check = flag(args, "--check");
    const bool embed_mode = flag(args, "--embed");
    if (!embed_mode && !args.empty()) {
      std::fprintf(stderr, "minilm: unknown argument '%s'\n", args[0].c_str());
      return usage();
    }

    if (!fs::exists(model_dir / "model.safetensors")) {
      std::fprintf(stderr, "minilm: %s has no model.safetensors: run tools/fetch_minilm.py first\n",
                   model_dir.string().c_str());
      return 77;  // ctest: skipped (the weights are not part of the repository)
    }
    const std::vector<double> load_before = loadavg();
    const bert_config cfg = read_config(model_dir / "config.json");
    const wordpiece_tokenizer tok = wordpiece_tokenizer::from_file((model_dir / "vocab.txt").string());
    const quanto::nn::state_dict float_weights = quanto::io::read_state_dict(model_dir / "model.safetensors");

    if (embed_mode) {  // the user's own sentences: their pairwise cosine similarity
      if (args.empty()) return usage();
      auto model = load_model(cfg, float_weights);
      std::vector<std::vector<std::int64_t>> seqs;
      for (const auto& s : args) seqs.push_back(tok.encode(s));
      const tensor<float> e = embed_all(*model, seqs, seqs.size());
      for (std::size_t i = 0; i < seqs.size(); ++i) {
        for (std::size_t j = 0; j < seqs.size(); ++j)
          std::printf("%8.4f", cosine(e.data() + static_cast<std::int64_t>(i) * cfg.hidden,
                                      e.data() + static_cast<std::int64_t>(j) * cfg.hidden, cfg.hidden));
        std::printf("   %s\n", args[i].c_str());
      }
      return 0;
    }

    std::vector<std::string> sentences = read_lines(sentences_file);
    const std::vector<std::string> calibration = read_lines(calibration_file);
    if (quick) sentences.resize(std::min<std::size_t>(sentences.size(), 48));
    std::vector<std::vector<std::int64_t>> seqs, calib, gptq_calib;
    for (const auto& s : sentences) seqs.push_back(tok.encode(s));
    for (const auto& s : calibration) calib.push_back(tok.encode(s));
    if (fs::exists(gptq_calibration_file))
      for (const auto& s : read_lines(gptq_calibration_file)) gptq_calib.push_back(tok.encode(s));
    if (speed_sentences == 0 || speed_sentences > seqs.size()) speed_sentences = seqs.size();
    const std::int64_t d = cfg.hidden;

    auto float_model = load_model(cfg, float_weights);
    const tensor<float> float_emb = embed_all(*float_model, seqs, 32);

    // ---- the reference: Hugging Face's token ids and sentence-transformers' embeddings --------
    int failures = 0;
    if (check || fs::exists(reference_file)) {
      const auto ref = quanto::io::read_state_dict(reference_file);
      const tensor<std::int64_t> ids = ref.at("input_ids").to<std::int64_t>("input_ids");
      const tensor<std::int64_t> lens = ref.at("lengths").to<std::int64_t>("lengths");
      const tensor<float> emb = ref.at("embeddings").to<float>("embeddings");
      if (ids.shape()[0] < static_cast<std::int64_t>(seqs.size()) || emb.shape()[1] != d)
        throw quanto::shape_error("the reference does not cover these sentences");
      std::size_t id_mismatch = 0;
      double cos_min = 1.0, cos_sum = 0.0;
      for (std::size_t s = 0; s < seqs.size(); ++s) {
        const auto len = static_cast<std::size_t>(lens[s]);
        const std::int64_t* row = ids.data() + static_cast<std::int64_t>(s) * ids.shape()[1];
        if (len != seqs[s].size() || !std::equal(seqs[s].begin(), seqs[s].end(), row)) {
          if (id_mismatch++ < 3)
            std::fprintf(stderr, "token ids differ from Hugging Face's: %s\n", sentences[s].c_str());
        }
        const double c = cosine(float_emb.data() + static_cast<std::int64_t>(s) * d,
                                emb.data() + static_cast<std::int64_t>(s) * d, d);
        cos_min = std::min(cos_min, c);
        cos_sum += c;
      }
      std::printf(
          "reference: %zu sentences, token ids equal Hugging Face's for %zu, float cosine to "
          "sentence-transformers mean %.8f min %.8f\n",
          seqs.size(), seqs.size() - id_mismatch, cos_sum / static_cast<double>(seqs.size()), cos_min);
      if (id_mismatch != 0) ++failures;
      if (!(cos_min >= 0.99999)) ++failures;
      if (check) {
        std::printf(failures == 0 ? "check: PASSED\n" : "check: FAILED\n");
        return failures == 0 ? 0 : 1;
      }
    }

    // ---- the table ------------------------------------------------------------------------------
    std::vector<run_config> chosen;
    for (const auto& c : configs)
      if ((config_list.empty() && !c.on_request) ||
          ("," + config_list + ",").find("," + c.name + ",") != std::string::npos)
        chosen.push_back(c);
    if (chosen.empty()) throw quanto::value_error("--configs names no known configuration");
    const std::vector<std::int64_t> float_nn = nearest_neighbours(float_emb);

    nlohmann::json results = nlohmann::json::array();
    std::printf("%-8s %-15s %-15s %-6s %12s %12s %8s %9s %8s %10s %10s %10s %s\n", "config", "weights", "activations",
                "opt", "cos mean", "cos min", "top-1 %", "spearman", "quant s", "MB", "sent/s b1", "sent/s b32",
                "weights = quanto");
    for (const run_config& rc : chosen) {
      auto model = load_model(cfg, float_weights);
      const auto q0 = std::chrono::steady_clock::now();
      std::optional<quanto::nn::calibrated_report> gptq_report;
      if (rc.optimizer.starts_with("gptq")) {
        // GPTQ on every encoder Linear, calibrated on sentences disjoint from the evaluation set,
        // 32 at a time; the pooler, which sentence embeddings never run, is quantized as quanto does.
        if (gptq_calib.empty()) throw quanto::value_error("no GPTQ calibration sentences (--gptq-calibration)");
        quanto::nn::gptq method;
        method.options.act_order = rc.optimizer.starts_with("gptq-ao");
        if (rc.optimizer.ends_with("-clip")) method.options.clip_steps = 20;
        gptq_report =
            quanto::nn::quantize_calibrated(*model, {.weights = rc.weights, .method = method, .exclude = "pooler.*"},
                                            [&] { (void)embed_all(*model, gptq_calib, 32); });
        quanto::nn::quantize(*model, {.weights = rc.weights});
        quanto::nn::freeze(*model);
      } else if (rc.weights != "none") {
        quanto::nn::quantize_spec spec{.weights = rc.weights, .activations = rc.activations};
        if (rc.optimizer == "hqq")
          spec.optimizer = quanto::hqq_optimizer{.torch_threads = quanto_threads};
        else if (!rc.optimizer.empty())
          spec.optimizer = rc.optimizer;
        quanto::nn::quantize(*model, spec);
        if (rc.activations != "none") {
          quanto::nn::Calibration calibrate;  // quanto's momentum 0.9, one sentence at a time
          for (const auto& s : calib)
            (void)model->embed(s, std::vector<std::int64_t>{static_cast<std::int64_t>(s.size())});
        }
        quanto::nn::freeze(*model);
      }
      const double quantize_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - q0).count();
      const tensor<float> emb = embed_all(*model, seqs, 32);
      const double spearman = spearman_pairs(float_emb, emb);
      double cmin = 1.0, csum = 0.0;
      for (std::int64_t s = 0; s < emb.shape()[0]; ++s) {
        const double c = cosine(emb.data() + s * d, float_emb.data() + s * d, d);
        cmin = std::min(cmin, c);
        csum += c;
      }
      const std::vector<std::int64_t> q_nn = nearest_neighbours(emb);
      std::size_t agree = 0;
      for (std::size_t i = 0; i < q_nn.size(); ++i) agree += q_nn[i] == float_nn[i];
      const quanto::nn::state_dict sd = quanto::nn::get_state_dict(*model);
      const timing t = measure_speed(*model, seqs, speed_sentences, passes);
      std::optional<weight_comparison> cmp;
      const fs::path quanto_file = fs::path(quanto_weights) / rc.name / "model.safetensors";
      if (!quanto_weights.empty() && rc.weights != "none" && fs::exists(quanto_file))
        cmp = compare_with_quanto(sd, quanto_file);

      std::size_t linear_bytes = 0;  // what the Linear weights take (the embedding tables dominate the total)
      for (const auto& [key, t] : sd)
        if (key.find("weight") != std::string::npos && key.find("embeddings") == std::string::npos &&
            key.find("LayerNorm") == std::string::npos)
          linear_bytes += t.bytes.size();
      const double n = static_cast<double>(emb.shape()[0]);
      const auto null_if_none = [](const std::string& v) { return v == "none" ? nlohmann::json() : nlohmann::json(v); };
      nlohmann::json row = {{"config", rc.name},
                            {"weights", null_if_none(rc.weights)},
                            {"activations", null_if_none(rc.activations)},
                            {"optimizer", rc.weights == "none"   ? nlohmann::json()
                                          : rc.optimizer.empty() ? nlohmann::json("absmax")
                                                                 : nlohmann::json(rc.optimizer)},
                            {"cosine_mean", csum / n},
                            {"cosine_min", cmin},
                            {"top1_agreement", 100.0 * static_cast<double>(agree) / n},
                            {"spearman_pairs", spearman},
                            {"quantize_seconds", quantize_seconds},
                            {"model_bytes", sd.nbytes()},
                            {"linear_weight_bytes", linear_bytes},
                            {"sps_batch1", t.batch1},
                            {"sps_batch32", t.batch32},
                            {"threads", quanto::kernels::thread_pool::global().size()}};
      if (gptq_report) {
        row["calibration_sentences"] = gptq_calib.size();
        row["calibration_passes"] = gptq_report->calibration_passes;
        double gptq_math = 0.0;
        for (const auto& m : gptq_report->modules) gptq_math += m.seconds;
        row["gptq_modules"] = gptq_report->modules.size();
        row["gptq_math_seconds"] = gptq_math;
      }
      if (cmp) {
        row["weights_equal_quanto"] = cmp->equal;
        row["weight_tensors_compared"] = cmp->tensors;
        if (!cmp->equal) row["first_difference"] = cmp->first_difference;
        if (rc.activations != "none") row["activation_scale_max_rel_diff"] = cmp->max_scale_rel;
      }
      results.push_back(row);
      std::printf("%-8s %-15s %-15s %-6s %12.8f %12.8f %8.2f %9.6f %8.2f %10.2f %10.1f %10.1f %s\n", rc.name.c_str(),
                  rc.weights.c_str(), rc.activations.c_str(), rc.optimizer.empty() ? "-" : rc.optimizer.c_str(),
                  csum / n, cmin, 100.0 * static_cast<double>(agree) / n, spearman, quantize_seconds,
                  static_cast<double>(sd.nbytes()) / 1e6, t.batch1, t.batch32,
                  cmp ? (cmp->equal ? ("yes (" + std::to_string(cmp->tensors) + " tensors)").c_str()
                                    : ("NO: " + cmp->first_difference).c_str())
                      : "-");
      std::fflush(stdout);
      if (cmp && !cmp->equal) ++failures;
    }

    if (!json_file.empty()) {
      const int threads = quanto::kernels::thread_pool::global().size();
      const nlohmann::json doc = {
          {"tool", "quanto-cpp"},
          {"model", "sentence-transformers/all-MiniLM-L6-v2"},
          {"machine",
           {{"cpu", cpu_model()},
            {"logical_cpus", std::thread::hardware_concurrency()},
            {"loadavg_before", load_before},
            {"loadavg_after", loadavg()}}},
          {"versions",
           {{"quanto-cpp", "0.1.0"},
            {"compiler", compiler_version()},
            {"parallel", std::string(quanto::kernels::parallel_backend())}}},
          {"threads", threads},
          {"passes", passes},
          {"n_sentences", seqs.size()},
          {"n_calibration", calib.size()},
          {"n_gptq_calibration", gptq_calib.size()},
          {"speed_sentences", speed_sentences},
          {"speed_sentences_batch32", speed_sentences},
          {"accuracy_batch", 32},
          {"timing",
           "forward + mean pooling + L2 normalisation from pre-tokenized ids (tokenization not timed); "
           "median of the timed passes, after the untimed accuracy pass; a batch of 32 is packed "
           "(no padding tokens)"},
          {"calibration",
           "each calibration sentence alone, in file order, inside nn::Calibration (momentum 0.9); "
           "outputs stay quantized (no streamline, docs/divergences.md 7)"},
          {"configs", results}};
      std::ofstream(json_file) << doc.dump(2) << "\n";
    }
    return failures == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minilm: %s\n", e.what());
    return 1;
  }
}
