// Whole models against optimum-quanto: the MLP of quanto's own tests, quantized (calibrated when
// it has activations) and frozen by optimum-quanto 0.2.7 and by quanto-cpp from the same float
// weights and batches (tests/data/nn, written by tools/make_nn_fixtures.py; see its README).
// Per case:
//  * quanto-cpp's state dict equals quanto's `model.state_dict()` bit for bit: keys and their
//    order, dtypes, shapes, bytes. The calibrated activation scales are compared with a
//    relative tolerance instead (see `scale_tolerance`);
//  * the quantization map equals quanto's, and `qmap_json` writes quanto's file byte for byte;
//  * the outputs agree with quanto's (1 - cos);
//  * a float model `requantize`d from quanto's tensors and map reproduces them exactly, and its
//    output agrees with quanto's reloaded model;
//  * the state dict survives save_state_dict / read_state_dict, and the map write_qmap /
//    read_qmap, unchanged.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>
#include <quanto/io/qmap.hpp>
#include <quanto/io/safetensors.hpp>
#include <quanto/io/state_dict.hpp>
#include <quanto/nn.hpp>

#include "nn_instances.hpp"

namespace {

using namespace quanto;
namespace fs = std::filesystem;

fs::path nn_data_dir() { return fs::path(QUANTO_TEST_DATA_DIR) / "nn"; }

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The entries of `sd` whose key starts with `prefix`, the prefix removed, in their order.
nn::state_dict with_prefix(const nn::state_dict& sd, std::string_view prefix) {
  nn::state_dict out;
  for (const auto& [k, v] : sd)
    if (k.starts_with(prefix)) out.insert(k.substr(prefix.size()), v);
  return out;
}

/// One fixture case: its file, metadata and tensors.
struct nn_case {
  std::string name;
  std::map<std::string, std::string> meta;
  nn::state_dict all;       // every tensor of <case>.safetensors, in the file's order
  nn::state_dict float_sd;  // the float model (float.* of the shared model file)
  nn::state_dict quant;     // quant.*: quanto's state dict after freeze
  nn::state_dict algo;      // algo.*: algorithmic shifts of TinyGemm modules (bf16 qint4)
  nn::state_dict nostream;  // nostreamline.*: scales of a calibration with streamline=False

  static nn_case load(const std::string& name) {
    nn_case c;
    c.name = name;
    const auto file = io::safetensors_file::open(nn_data_dir() / (name + ".safetensors"));
    c.meta = file.metadata();
    c.all = io::read_state_dict(file);
    c.float_sd = with_prefix(io::read_state_dict(nn_data_dir() / c.meta.at("float_model")), "float.");
    c.quant = with_prefix(c.all, "quant.");
    c.algo = with_prefix(c.all, "algo.");
    c.nostream = with_prefix(c.all, "nostreamline.");
    return c;
  }
  bool has_activations() const { return meta.at("activations") != "none"; }
  fs::path qmap_path() const { return nn_data_dir() / (name + "_qmap.json"); }
};

/// The case names: every <case>_qmap.json in tests/data/nn.
std::vector<std::string> case_names() {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(nn_data_dir(), ec)) {
    const std::string f = e.path().filename().string();
    constexpr std::string_view suffix = "_qmap.json";
    if (f.size() > suffix.size() && f.ends_with(suffix)) out.push_back(f.substr(0, f.size() - suffix.size()));
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// quanto's test MLP: relu(input_layer) → relu(mid_layer) → softmax(output_layer, dim=-1).
template <ModelFloat T>
class MLP : public nn::module<T> {
 public:
  explicit MLP(const nn::state_dict& f)
      : input_layer(this->add("input_layer", linear(f, "input_layer"))),
        mid_layer(this->add("mid_layer", linear(f, "mid_layer"))),
        output_layer(this->add("output_layer", linear(f, "output_layer"))) {}

  nn::activation<T> forward(nn::activation<T> x) override {
    x = relu_.forward(input_layer(std::move(x)));
    x = relu_.forward(mid_layer(std::move(x)));
    return softmax_.forward(output_layer(std::move(x)));
  }
  std::string_view kind() const noexcept override { return "MLP"; }

  nn::slot<T>& input_layer;
  nn::slot<T>& mid_layer;
  nn::slot<T>& output_layer;

 private:
  static nn::Linear<T> linear(const nn::state_dict& f, const std::string& name) {
    return nn::Linear<T>(f.at(name + ".weight").to<T>(name + ".weight"), f.at(name + ".bias").to<T>(name + ".bias"));
  }
  nn::ReLU<T> relu_;
  nn::Softmax<T> softmax_;
};

/// The quantize arguments the fixture used.
nn::quantize_spec spec_of(const nn_case& c) {
  nn::quantize_spec spec;
  spec.weights = nn::qtype_arg(std::string_view{c.meta.at("weights")});
  spec.activations = nn::qtype_arg(std::string_view{c.meta.at("activations")});
  const std::string& opt = c.meta.at("optimizer");
  if (opt == "hqq") {
    // HQQ's accept/stop decisions compare float32 sums: use the order of the torch that made the file.
    const bool avx512 = c.meta.at("cpu_capability").rfind("AVX512", 0) == 0;
    spec.optimizer = hqq_optimizer{.sum_order = avx512 ? torch_sum_order::avx512 : torch_sum_order::avx2};
  } else if (opt != "default") {
    spec.optimizer = nn::optimizer_arg(std::string_view{opt});
  }
  if (!c.meta.at("exclude").empty()) spec.exclude = c.meta.at("exclude");
  return spec;
}

bool is_activation_scale(std::string_view key) {
  return key.ends_with(".input_scale") || key.ends_with(".output_scale");
}

/// The value of a 0-d (or one-element) stored tensor, widened to double.
template <ModelFloat T>
double scalar_of(const nn::stored_tensor& t, std::string_view key) {
  return quanto::model_arith::widen(t.to<T>(key)[0]);
}

/// Calibrated scales come from float matmul outputs (absmax of each module's output). quanto-cpp's
/// matmuls accumulate in another order than PyTorch's, so a scale can differ in its last bits;
/// everything else in the state dict is computed element-wise and must match exactly. 1e-5 is
/// ~80 fp32 ulps, far below any real calibration difference (a different batch, momentum or
/// statistic moves a scale by 1e-3 or more); for bf16 the bound is 2 bf16 ulps.
template <ModelFloat T>
double scale_tolerance() {
  return std::is_same_v<T, float> ? 1e-5 : 2.0 * std::ldexp(1.0, -8);
}

std::string hex_bytes(const std::vector<std::byte>& b, std::size_t at, std::size_t n) {
  std::string s;
  char buf[4];
  for (std::size_t i = at; i < at + n && i < b.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(b[i]));
    s += buf;
  }
  return s;
}

/// Expects `ours` to equal `ref` bit for bit (reporting the first differing elements).
void expect_same_tensor(const std::string& key, const nn::stored_tensor& ours, const nn::stored_tensor& ref) {
  EXPECT_EQ(ours.dtype, ref.dtype) << key << ": ours " << to_string(ours.dtype) << ", quanto " << to_string(ref.dtype);
  EXPECT_EQ(ours.shape, ref.shape) << key << ": ours " << ours.shape.to_string() << ", quanto "
                                   << ref.shape.to_string();
  if (ours.dtype != ref.dtype || !(ours.shape == ref.shape)) return;
  if (ours.bytes == ref.bytes) return;
  const std::size_t es = size_of(ref.dtype);
  std::size_t bad = 0;
  std::string first;
  for (std::size_t i = 0; i * es < ref.bytes.size(); ++i) {
    if (std::memcmp(ours.bytes.data() + i * es, ref.bytes.data() + i * es, es) == 0) continue;
    if (bad < 4)
      first += " [" + std::to_string(i) + "] ours 0x" + hex_bytes(ours.bytes, i * es, es) + " quanto 0x" +
               hex_bytes(ref.bytes, i * es, es);
    ++bad;
  }
  ADD_FAILURE() << key << ": " << bad << " of " << ref.bytes.size() / es << " elements differ:" << first;
}

/// Keys in order.
std::vector<std::string> keys_of(const nn::state_dict& sd) {
  std::vector<std::string> k;
  for (const auto& e : sd) k.push_back(e.first);
  return k;
}

struct output_stats {
  double one_minus_cos = 0, max_abs = 0;
};

template <ModelFloat T>
output_stats compare(const tensor<T>& ours, const tensor<T>& ref) {
  EXPECT_EQ(ours.shape(), ref.shape());
  output_stats s;
  double d = 0, na = 0, nb = 0;
  for (std::size_t i = 0; i < std::min(ours.size(), ref.size()); ++i) {
    const double x = quanto::model_arith::widen(ours[i]), y = quanto::model_arith::widen(ref[i]);
    d += x * y;
    na += x * x;
    nb += y * y;
    s.max_abs = std::max(s.max_abs, std::abs(x - y));
  }
  s.one_minus_cos = (na == 0 && nb == 0) ? 0.0 : 1.0 - d / std::sqrt(na * nb);
  return s;
}

/// The bound on 1 - cos between quanto-cpp's and quanto's outputs: the same model and the same
/// quantized values, so only float rounding differs (the accumulation order of the matmuls, and
/// then the odd activation code it moves across a rounding boundary).
template <ModelFloat T>
double output_bound() {
  return 1e-5;
}

std::string fmt(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

class NnFixture : public ::testing::TestWithParam<std::string> {
 protected:
  template <ModelFloat T>
  void run(const nn_case& c);

  void note(const std::string& key, const std::string& value) {
    RecordProperty(key, value);
    std::printf("    %s: %s = %s\n", GetParam().c_str(), key.c_str(), value.c_str());
  }
};

template <ModelFloat T>
void NnFixture::run(const nn_case& c) {
  const double tol = scale_tolerance<T>();
  const std::vector<tensor<T>> batches = {c.all.at("calib.0").to<T>("calib.0"), c.all.at("calib.1").to<T>("calib.1"),
                                          c.all.at("calib.2").to<T>("calib.2")};
  const tensor<T> input = c.all.at("input").to<T>("input");

  // The float model first: the same weights give quanto's float output (float rounding only).
  {
    MLP<T> fm(c.float_sd);
    const output_stats s = compare(fm(input).value, c.all.at("float_output").to<T>("float_output"));
    note("float_output.1-cos", fmt(s.one_minus_cos));
    EXPECT_LE(s.one_minus_cos, output_bound<T>());
  }

  // ---- quantize, calibrate, freeze as the fixture did ----
  MLP<T> model(c.float_sd);
  nn::quantize(model, spec_of(c));
  if (c.has_activations()) {
    nn::Calibration calibration{0.9};
    for (const tensor<T>& b : batches) (void)model(b);
  }
  nn::freeze(model);

  // ---- the state dict ----
  const nn::state_dict ours = nn::get_state_dict(model);
  EXPECT_EQ(keys_of(ours), keys_of(c.quant)) << "keys or their order differ";
  double worst_scale = 0;
  std::string streamline_affected;
  for (const auto& [key, ref] : c.quant) {
    SCOPED_TRACE(key);
    const nn::stored_tensor* mine = ours.find(key);
    if (!mine) continue;  // reported by the key comparison
    if (c.has_activations() && is_activation_scale(key)) {
      // quanto 0.2.7's Calibration(streamline=True) removes every output-quantization hook after
      // the first batch (its bookkeeping never sees a QTensor), so from the second batch on the
      // next module calibrates its input scale from the float (unquantized) input instead of
      // adopting the previous module's output scale. quanto-cpp always quantizes outputs, i.e.
      // calibrates as quanto does with streamline=False; where the two differ the fixture holds
      // both, and ours must match the streamline=False value.
      const nn::stored_tensor& nostream = c.nostream.at(key);
      const bool affected = nostream.bytes != ref.bytes;
      const double want = scalar_of<T>(affected ? nostream : ref, key);
      const double got = scalar_of<T>(*mine, key);
      const double rel = std::abs(got / want - 1.0);
      worst_scale = std::max(worst_scale, rel);
      EXPECT_NE(got, 1.0) << "not calibrated";
      EXPECT_LE(rel, tol) << "ours " << got << ", quanto " << want << (affected ? " (streamline=False)" : "");
      EXPECT_EQ(mine->dtype, ref.dtype);
      EXPECT_EQ(mine->shape, ref.shape);
      if (affected)
        streamline_affected += key + " (quanto " + fmt(scalar_of<T>(ref, key)) + ", streamline=False " + fmt(want) +
                               ", ours " + fmt(got) + ") ";
      continue;
    }
    if (const nn::stored_tensor* algo = c.algo.find(key)) {
      // TinyGemm (bf16 qint4, group 128): quanto saved the shift after a bf16 round trip through
      // its kernel layout; quanto-cpp writes the algorithmic shift (spec §3.7).
      expect_same_tensor(key + " (algorithmic)", *mine, *algo);
      std::size_t differ = 0;
      for (std::size_t i = 0; i < ref.bytes.size(); i += 2)
        differ += std::memcmp(ref.bytes.data() + i, algo->bytes.data() + i, 2) != 0;
      note(key + ".tinygemm_round_trip_differences", std::to_string(differ));
      continue;
    }
    expect_same_tensor(key, *mine, ref);
  }
  if (c.has_activations()) {
    note("calibrated_scales.max_rel_diff", fmt(worst_scale));
    if (!streamline_affected.empty()) note("scales_changed_by_quanto_streamline", streamline_affected);
  }

  // ---- the quantization map ----
  const nn::quantization_map_t qmap = nn::quantization_map(model);
  const nn::quantization_map_t ref_qmap = io::read_qmap(c.qmap_path());
  EXPECT_EQ(qmap, ref_qmap);
  const std::string ref_qmap_text = read_text(c.qmap_path());
  EXPECT_EQ(io::qmap_json(qmap), ref_qmap_text);

  // ---- the output ----
  // With activations, quanto's own model (`output`) ran with its output quantization removed by
  // streamline (see above); `nostreamline_output` is quanto's output with every hook in place and
  // the scales quanto-cpp computes, i.e. the same model.
  const tensor<T> out = model(input).value;
  const std::string ref_name = c.has_activations() ? "nostreamline_output" : "output";
  const output_stats s = compare(out, c.all.at(ref_name).to<T>(ref_name));
  note("output.1-cos", fmt(s.one_minus_cos));
  note("output.max_abs_diff", fmt(s.max_abs));
  EXPECT_LE(s.one_minus_cos, output_bound<T>()) << "vs quanto's " << ref_name << ", max abs diff " << s.max_abs;
  if (c.has_activations()) {
    const output_stats q = compare(out, c.all.at("output").to<T>("output"));
    note("output_vs_quanto_streamlined_model.1-cos", fmt(q.one_minus_cos));
  }

  // ---- requantize: a fresh float model from quanto's tensors and map ----
  {
    MLP<T> fresh(c.float_sd);
    const nn::load_result r = nn::requantize(fresh, c.quant, ref_qmap);
    EXPECT_TRUE(r.missing_keys.empty()) << "missing: " << (r.missing_keys.empty() ? "" : r.missing_keys.front());
    EXPECT_TRUE(r.unexpected_keys.empty())
        << "unexpected: " << (r.unexpected_keys.empty() ? "" : r.unexpected_keys.front());
    const nn::state_dict back = nn::get_state_dict(fresh);
    EXPECT_EQ(keys_of(back), keys_of(c.quant));
    for (const auto& [key, ref] : c.quant)
      if (const nn::stored_tensor* mine = back.find(key)) expect_same_tensor("requantized " + key, *mine, ref);
    EXPECT_EQ(nn::quantization_map(fresh), ref_qmap);
    // quanto's reloaded model (requantize in Python) has every hook in place.
    const output_stats rs = compare(fresh(input).value, c.all.at("reloaded_output").to<T>("reloaded_output"));
    note("requantized_output.1-cos", fmt(rs.one_minus_cos));
    note("requantized_output.max_abs_diff", fmt(rs.max_abs));
    EXPECT_LE(rs.one_minus_cos, output_bound<T>()) << "max abs diff " << rs.max_abs;
  }

  // ---- files: save_state_dict / read_state_dict and write_qmap / read_qmap ----
  {
    const fs::path dir = fs::path(::testing::TempDir()) / ("quanto_nn_fixture_" + c.name);
    fs::create_directories(dir);
    const fs::path st = dir / "model.safetensors", qm = dir / "quanto_qmap.json";
    io::save_state_dict(st, ours, {{"format", "pt"}});
    const auto file = io::safetensors_file::open(st);
    EXPECT_EQ(file.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
    const nn::state_dict back = io::read_state_dict(file);
    EXPECT_EQ(back.size(), ours.size());
    for (const auto& [key, t] : ours) {
      const nn::stored_tensor* b = back.find(key);
      ASSERT_NE(b, nullptr) << key;
      EXPECT_TRUE(*b == t) << key << " changed in the file round trip";
    }
    io::write_qmap(qm, qmap);
    EXPECT_EQ(read_text(qm), ref_qmap_text);
    EXPECT_EQ(io::read_qmap(qm), qmap);
    fs::remove_all(dir);
  }
}

TEST_P(NnFixture, MatchesOptimumQuanto) {
  const nn_case c = nn_case::load(GetParam());
  if (c.meta.at("dtype") == "fp32")
    run<float>(c);
  else if (c.meta.at("dtype") == "bf16")
    run<bfloat16>(c);
  else
    FAIL() << "unknown dtype " << c.meta.at("dtype");
}

INSTANTIATE_TEST_SUITE_P(Quanto, NnFixture, ::testing::ValuesIn(case_names()),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// An empty or missing tests/data/nn would otherwise pass silently.
TEST(NnFixtures, AllCasesPresent) {
  const auto names = case_names();
  EXPECT_GE(names.size(), 9u);
  for (const auto& n : names) EXPECT_TRUE(fs::exists(nn_data_dir() / (n + ".safetensors"))) << n;
}

// ---- the qmap reader and writer on their own ----

TEST(Qmap, JsonMatchesPythonJsonDump) {
  // Python: json.dump({"a": {"weights": "qint4", "activations": "none"}, ...}, f, indent=4)
  EXPECT_EQ(io::qmap_json({}), "{}");
  EXPECT_EQ(io::qmap_json({{"a", "qint4", "none"}}),
            "{\n    \"a\": {\n        \"weights\": \"qint4\",\n        \"activations\": \"none\"\n    }\n}");
  // ensure_ascii: control characters, DEL, non-ASCII (é, €, U+1F600 as a surrogate pair), quotes.
  EXPECT_EQ(io::qmap_json({{"q\"\\\t\x01\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "qint8", "qint8"}}),
            "{\n    \"q\\\"\\\\\\t\\u0001\\u007f\\u00e9\\u20ac\\ud83d\\ude00\": {\n        \"weights\": \"qint8\",\n"
            "        \"activations\": \"qint8\"\n    }\n}");
  EXPECT_THROW((void)io::qmap_json({{"a", "qint4", "none"}, {"a", "qint8", "none"}}), value_error);
  EXPECT_THROW((void)io::qmap_json({{"\xff", "qint4", "none"}}), value_error);
}

TEST(Qmap, ParsesAndKeepsOrder) {
  const auto q = io::parse_qmap(
      R"({"z": {"activations": "qint8", "weights": "qfloat8", "extra": [1, {"x": 2}]}, "a.b": {"weights": "none", "activations": "none"}})");
  ASSERT_EQ(q.size(), 2u);
  EXPECT_EQ(q[0], (nn::qmap_entry{"z", "qfloat8", "qint8"}));
  EXPECT_EQ(q[1], (nn::qmap_entry{"a.b", "none", "none"}));
  EXPECT_TRUE(io::parse_qmap("{}").empty());
  EXPECT_EQ(io::parse_qmap(io::qmap_json({{"\xc3\xa9", "qint2", "qfloat8_e5m2"}})),
            (nn::quantization_map_t{{"\xc3\xa9", "qint2", "qfloat8_e5m2"}}));
}

TEST(Qmap, TypedErrorsNameTheSourceAndModule) {
  const auto fails = [](std::string_view json, std::vector<std::string> parts) {
    try {
      (void)io::parse_qmap(json, "my_qmap.json");
      ADD_FAILURE() << "accepted: " << json;
    } catch (const io::qmap_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("my_qmap.json"), std::string::npos) << what;
      for (const auto& p : parts) EXPECT_NE(what.find(p), std::string::npos) << what << " lacks " << p;
    }
  };
  fails("[1]", {"object"});
  fails("{", {"JSON"});
  fails(R"({"m": 3})", {"'m'", "object"});
  fails(R"({"m": {"weights": "qint4"}})", {"'m'", "activations"});
  fails(R"({"m": {"activations": "none"}})", {"'m'", "weights"});
  fails(R"({"m": {"weights": 4, "activations": "none"}})", {"'m'", "weights"});
  fails(R"({"m": {"weights": "int4", "activations": "none"}})", {"'m'", "int4"});
  fails(R"({"m": {"weights": "qint4", "activations": "qint4"}})", {"'m'", "8-bit"});
  fails(R"({"m": {"weights": "qint4", "activations": "none"}, "m": {"weights": "qint8", "activations": "none"}})",
        {"twice"});
  fails(R"({"m": {"weights": "qint4", "weights": "qint8", "activations": "none"}})", {"twice"});
  static_assert(std::is_base_of_v<format_error, io::qmap_error>);
  EXPECT_THROW((void)io::read_qmap(nn_data_dir() / "no_such_qmap.json"), io::file_error);
}

}  // namespace
