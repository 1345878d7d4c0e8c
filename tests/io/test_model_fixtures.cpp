// Whole model folders against optimum-quanto's own (tests/data/models, made by
// tools/make_model_fixtures.py with QuantizedModelForCausalLM): quantize_model must write the
// very tensors quanto wrote, the single-file cases byte for byte; quanto's folders must load back
// (quantized_model) to the same dequantized weights; and a folder read and saved again must be
// byte-identical.
#include <gtest/gtest.h>

#include <quanto/io/model.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace {

namespace fs = std::filesystem;
namespace io = quanto::io;

const fs::path models = fs::path(QUANTO_TEST_DATA_DIR) / "models";

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::ostringstream s;
  s << f.rdbuf();
  return s.str();
}

struct fixture_case {
  const char* quanto_folder;  // written by optimum-quanto
  const char* float_folder;   // its float original
  quanto::qtype_id weights;
  std::optional<quanto::qtype_id> activations;
  bool exclude_lm_head;
  std::uint64_t max_shard_size;  // 0: one file (quanto's 2 GB default, for these sizes)
};

const fixture_case cases[] = {
    {"llama-f32-qint8", "llama-f32", quanto::qtype_id::qint8, std::nullopt, true, 0},
    {"llama-f32-qint4", "llama-f32", quanto::qtype_id::qint4, std::nullopt, true, 0},
    {"llama-f32-qint2", "llama-f32", quanto::qtype_id::qint2, std::nullopt, true, 0},
    {"llama-f32-qfloat8", "llama-f32", quanto::qtype_id::qfloat8_e4m3fn, std::nullopt, true, 0},
    {"llama-f32-qint8-a8", "llama-f32", quanto::qtype_id::qint8, quanto::qtype_id::qint8, true, 0},
    {"llama-bf16-qint4", "llama-bf16", quanto::qtype_id::qint4, std::nullopt, true, 0},
    {"llama-f32-qint4-lmhead", "llama-f32", quanto::qtype_id::qint4, std::nullopt, false, 0},
    {"llama-f32-qint8-sharded", "llama-f32", quanto::qtype_id::qint8, std::nullopt, true, 50'000},
};

class ModelFixtures : public ::testing::TestWithParam<fixture_case> {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("quanto_model_fixtures_" + std::to_string(::getpid()) + "_" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  io::model_quantize_options options() const {
    io::model_quantize_options o;
    o.weights = GetParam().weights;
    o.activations = GetParam().activations;
    if (!GetParam().exclude_lm_head) o.exclude.clear();
    o.max_shard_size = GetParam().max_shard_size;
    o.threads = 2;
    return o;
  }

  fs::path dir_;
};

TEST_P(ModelFixtures, QuantizeModelWritesTheTensorsOptimumQuantoWrote) {
  const fixture_case& c = GetParam();
  const fs::path out = dir_ / "out";
  const auto report = io::quantize_model(models / c.float_folder, out, options());
  const auto ours = io::checkpoint::open(out);
  const auto theirs = io::checkpoint::open(models / c.quanto_folder);
  ASSERT_EQ(ours.tensors().size(), theirs.tensors().size());
  for (const auto& t : theirs.tensors()) {
    SCOPED_TRACE(t.name());
    const auto* o = ours.find(t.name());
    ASSERT_NE(o, nullptr) << "missing from quanto-cpp's output";
    EXPECT_EQ(o->info->dtype, t.info->dtype);
    EXPECT_EQ(o->info->shape, t.info->shape);
    const auto a = ours.bytes(*o), b = theirs.bytes(t);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size()), 0) << "bytes differ";
  }
  if (c.max_shard_size == 0) {  // one file: the same bytes, header and order included
    EXPECT_EQ(slurp(out / "model.safetensors"), slurp(models / c.quanto_folder / "model.safetensors"));
  } else {
    EXPECT_GE(report.shard_names.size(), 3u);
    ASSERT_TRUE(ours.index().has_value());
    EXPECT_EQ(ours.index()->total_size, theirs.index()->total_size);
    EXPECT_EQ(ours.index()->total_parameters, theirs.index()->total_parameters);
  }
  // The quantization map: the same entries (quanto lists them in module order, which the files
  // do not record; ours are in natural name order).
  const auto qa = io::read_qmap(out / "quanto_qmap.json"),
             qb = io::read_qmap(models / c.quanto_folder / "quanto_qmap.json");
  std::set<std::tuple<std::string, std::string, std::string>> sa, sb;
  for (const auto& e : qa) sa.emplace(e.name, e.weights, e.activations);
  for (const auto& e : qb) sb.emplace(e.name, e.weights, e.activations);
  EXPECT_EQ(sa, sb);
  EXPECT_EQ(report.modules.size(), qb.size());
  // config.json: tie_word_embeddings as quanto left it.
  const auto ca = nlohmann::json::parse(slurp(out / "config.json"));
  const auto cb = nlohmann::json::parse(slurp(models / c.quanto_folder / "config.json"));
  EXPECT_EQ(ca.value("tie_word_embeddings", true), cb.value("tie_word_embeddings", true));
  EXPECT_EQ(report.untied_embeddings, !c.exclude_lm_head);
  EXPECT_TRUE(fs::exists(out / "generation_config.json"));
}

TEST_P(ModelFixtures, QuantoFoldersLoadToTheSameDequantizedWeights) {
  const fixture_case& c = GetParam();
  const auto model = io::quantized_model::open(models / c.quanto_folder);
  const auto original = io::checkpoint::open(models / c.float_folder);
  ASSERT_FALSE(model.qmap().empty());
  for (const auto& m : model.qmap()) {
    SCOPED_TRACE(m.name);
    // lm_head tied to the embedding has no float tensor of its own.
    const auto* w = original.find(m.name + ".weight");
    if (!w) w = original.find("model.embed_tokens.weight");
    ASSERT_NE(w, nullptr);
    const quanto::shape s(std::span<const std::int64_t>(w->info->shape));
    const auto loaded = model.weight(m.name, s);
    // The same weight quantized here from the float original.
    const auto raw = original.bytes(*w);
    quanto::weight_spec spec;
    spec.qtype = quanto::qtype_from_name(m.weights);
    const auto mine = [&]() -> quanto::any_qweight {
      if (w->info->dtype == quanto::dtype::f32) {
        std::vector<float> v(raw.size() / 4);
        std::memcpy(v.data(), raw.data(), raw.size());
        return quanto::quantize_weight(quanto::tensor_view<const float>(v.data(), s), spec);
      }
      std::vector<quanto::bfloat16> v(raw.size() / 2);
      std::memcpy(v.data(), raw.data(), raw.size());
      return quanto::quantize_weight(quanto::tensor_view<const quanto::bfloat16>(v.data(), s), spec);
    }();
    ASSERT_EQ(loaded.index(), mine.index());
    std::visit(
        [&](const auto& a) {
          using W = std::decay_t<decltype(a)>;
          const auto da = a.dequantize();
          const auto db = std::get<W>(mine).dequantize();
          ASSERT_EQ(da.size(), db.size());
          EXPECT_EQ(std::memcmp(da.data(), db.data(), da.size() * sizeof(*da.data())), 0);
        },
        loaded);
  }
}

TEST_P(ModelFixtures, AFolderReadAndSavedAgainIsByteIdentical) {
  const fixture_case& c = GetParam();
  const auto in = io::checkpoint::open(models / c.quanto_folder);
  std::vector<io::tensor_to_write> tensors;
  for (const auto& e : in.tensors()) tensors.push_back({e.name(), e.info->dtype, e.info->shape, {}});
  io::checkpoint_options o;
  o.max_shard_size = 0;
  const auto out = dir_ / "resaved";
  io::save_checkpoint(out, tensors, o, [&](const io::tensor_to_write& t, auto&& write) {
    const auto b = in.bytes(in.at(t.name));
    write(b.data(), b.size());
  });
  if (!in.sharded()) {
    EXPECT_EQ(slurp(out / "model.safetensors"), slurp(models / c.quanto_folder / "model.safetensors"));
  }
  const auto again = io::checkpoint::open(out);
  EXPECT_EQ(again.tensors().size(), in.tensors().size());
  EXPECT_EQ(again.total_size(), in.total_size());
}

INSTANTIATE_TEST_SUITE_P(Quanto, ModelFixtures, ::testing::ValuesIn(cases), [](const auto& info) {
  std::string n = info.param.quanto_folder;
  for (char& ch : n)
    if (ch == '-') ch = '_';
  return n;
});

TEST(ModelPlan, EmbeddingsNormsAndExcludedModulesAreLeftAlone) {
  const auto in = io::checkpoint::open(models / "llama-f32");
  io::model_quantize_options o;
  o.weights = quanto::qtype_id::qint4;
  const auto config = nlohmann::ordered_json::parse(slurp(models / "llama-f32" / "config.json"));
  auto plan = io::plan_quantization(in, &config, o);
  EXPECT_EQ(plan.size(), 14u);  // 7 Linear per layer, 2 layers; no lm_head, no embedding
  for (const auto& m : plan) {
    EXPECT_EQ(m.name.find("embed"), std::string::npos);
    EXPECT_EQ(m.name.find("norm"), std::string::npos);
  }
  o.exclude = {"*mlp*"};
  plan = io::plan_quantization(in, &config, o);
  EXPECT_EQ(plan.size(), 9u);  // 4 attention projections per layer, and lm_head from the tied embedding
  EXPECT_TRUE(std::any_of(plan.begin(), plan.end(),
                          [](const auto& m) { return m.name == "lm_head" && m.from_tied_embedding; }));
  o.exclude.clear();
  o.include = {"*.q_proj", "*.k_proj"};
  plan = io::plan_quantization(in, &config, o);
  EXPECT_EQ(plan.size(), 4u);
}

TEST(ModelPlan, NaturalOrderPutsLayer10AfterLayer9) {
  EXPECT_TRUE(io::detail::natural_less("layers.9.q", "layers.10.q"));
  EXPECT_FALSE(io::detail::natural_less("layers.10.q", "layers.9.q"));
  EXPECT_TRUE(io::detail::natural_less("a.2.b", "a.02.b"));  // equal numbers: fewer digits first
  EXPECT_TRUE(io::detail::natural_less("a", "a.b"));
  EXPECT_FALSE(io::detail::natural_less("a", "a"));
}

TEST(ModelQuantize, RefusesBadRequestsBeforeWritingAnything) {
  const auto dir = fs::temp_directory_path() / ("quanto_model_refuse_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  io::model_quantize_options o;
  o.weights = quanto::qtype_id::qint8;
  o.optimizer = quanto::optimizer_id::hqq;
  EXPECT_THROW(io::quantize_model(models / "llama-f32", dir / "a", o), quanto::unsupported_error);
  o.optimizer.reset();
  o.activations = quanto::qtype_id::qint4;
  EXPECT_THROW(io::quantize_model(models / "llama-f32", dir / "b", o), quanto::unsupported_error);
  o.activations.reset();
  EXPECT_THROW(io::quantize_model(models / "llama-f32-qint8", dir / "c", o), quanto::value_error);  // already quantized
  o.include = {"nothing"};
  EXPECT_THROW(io::quantize_model(models / "llama-f32", dir / "d", o), quanto::value_error);
  o.include.clear();
  fs::create_directories(dir / "e");
  try {
    (void)io::quantize_model(models / "llama-f32", dir / "e", o);
    ADD_FAILURE() << "an existing output was replaced without overwrite";
  } catch (const io::file_error& e) {
    EXPECT_EQ(e.code(), std::errc::file_exists);
  }
  EXPECT_THROW(io::quantize_model(dir / "no-such-model", dir / "f", o), io::file_error);
  for (const char* d : {"a", "b", "c", "d", "f"}) EXPECT_FALSE(fs::exists(dir / d)) << d;
  fs::remove_all(dir);
}

TEST(ModelQuantize, ProgressReachesEveryTensorAndByte) {
  const auto dir = fs::temp_directory_path() / ("quanto_model_progress_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  io::model_quantize_options o;
  o.weights = quanto::qtype_id::qint4;
  o.threads = 3;
  io::quantize_progress last;
  std::size_t calls = 0;
  o.progress = [&](const io::quantize_progress& p) {
    EXPECT_GE(p.tensors_done, last.tensors_done);
    last = p;
    ++calls;
  };
  const auto r = io::quantize_model(models / "llama-f32", dir, o);
  EXPECT_EQ(last.tensors_done, last.tensors_total);
  EXPECT_EQ(last.tensors_total, r.tensors_written);
  EXPECT_EQ(last.bytes_done, last.bytes_total);
  EXPECT_GT(calls, 10u);
  fs::remove_all(dir);
}

}  // namespace
