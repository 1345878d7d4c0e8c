// tests/support/fixtures.hpp: reads the reference fixtures that tools/make_fixtures.py wrote with
// the real optimum-quanto (tests/data/quanto_<dtype>.safetensors) and compares bit for bit.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include <quanto/io/safetensors.hpp>
#include <quanto/quanto.hpp>

namespace fixtures {

struct fixture_case {
  std::string file_dtype;  // fp32 | fp16 | bf16
  std::string id, kind, input, qtype;
  std::optional<std::string> optimizer;
  std::optional<int> axis;
  std::optional<std::int64_t> group_size;
  bool nan_case = false;
  std::string cpu_capability;
};

/// gtest prints parameters; keep it readable.
inline void PrintTo(const fixture_case& c, std::ostream* os) { *os << c.file_dtype << "/" << c.id; }

inline std::filesystem::path data_file(const std::string& dtype) {
  return std::filesystem::path(QUANTO_TEST_DATA_DIR) / ("quanto_" + dtype + ".safetensors");
}

/// One open file per dtype, kept for the whole test run.
inline const quanto::io::safetensors_file& file(const std::string& dtype) {
  static std::map<std::string, std::unique_ptr<quanto::io::safetensors_file>> cache;
  auto& slot = cache[dtype];
  if (!slot)
    slot = std::make_unique<quanto::io::safetensors_file>(quanto::io::safetensors_file::open(data_file(dtype)));
  return *slot;
}

/// Every case of the three files, filtered by `keep`.
template <class Keep>
std::vector<fixture_case> load_cases(Keep keep) {
  std::vector<fixture_case> out;
  for (const std::string dtype : {"fp32", "fp16", "bf16"}) {
    const auto& f = file(dtype);
    const auto& meta = f.metadata();
    const auto cases = nlohmann::json::parse(meta.at("cases"));
    for (const auto& c : cases) {
      fixture_case fc;
      fc.file_dtype = dtype;
      fc.id = c.at("id");
      fc.kind = c.at("kind");
      fc.input = c.at("input");
      fc.qtype = c.at("qtype");
      if (!c.at("optimizer").is_null()) fc.optimizer = c.at("optimizer").get<std::string>();
      if (!c.at("axis").is_null()) fc.axis = c.at("axis").get<int>();
      if (!c.at("group_size").is_null()) fc.group_size = c.at("group_size").get<std::int64_t>();
      fc.nan_case = c.value("nan_case", false);
      fc.cpu_capability = meta.count("cpu_capability") ? meta.at("cpu_capability") : "AVX2";
      if (keep(fc)) out.push_back(fc);
    }
  }
  return out;
}

inline std::string case_name(const ::testing::TestParamInfo<fixture_case>& info) {
  return info.param.file_dtype + "_" + info.param.id;
}

/// A tensor of the file as a quanto tensor of element type X (dtype checked).
template <class X>
quanto::tensor<X> read(const std::string& dtype, const std::string& name) {
  const auto& f = file(dtype);
  const auto& info = f.at(name);
  if (quanto::size_of(info.dtype) != sizeof(X)) throw std::runtime_error("element size mismatch for " + name);
  const auto raw = f.bytes(info);
  quanto::tensor<X> t{quanto::shape(std::span<const std::int64_t>(info.shape))};
  if (!raw.empty()) std::memcpy(t.data(), raw.data(), raw.size());
  return t;
}

inline bool has(const std::string& dtype, const std::string& name) { return file(dtype).find(name) != nullptr; }

template <class X>
auto bits_of(const X& x) {
  if constexpr (sizeof(X) == 1) {
    std::uint8_t b;
    std::memcpy(&b, &x, 1);
    return b;
  } else if constexpr (sizeof(X) == 2) {
    std::uint16_t b;
    std::memcpy(&b, &x, 2);
    return b;
  } else {
    std::uint32_t b;
    std::memcpy(&b, &x, 4);
    return b;
  }
}

/// Counts elements whose bits differ (shapes must match); reports the first few.
template <class X, class Skip>
std::size_t count_bit_mismatches(const char* what, quanto::tensor_view<const X> ours, quanto::tensor_view<const X> ref,
                                 Skip skip) {
  EXPECT_EQ(ours.shape(), ref.shape()) << what << ": ours " << ours.shape().to_string() << " vs quanto "
                                       << ref.shape().to_string();
  if (!(ours.shape() == ref.shape())) return ref.size();
  std::size_t bad = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (skip(i)) continue;
    if (bits_of(ours[i]) != bits_of(ref[i])) {
      if (bad < 5)
        ADD_FAILURE() << what << "[" << i << "]: ours 0x" << std::hex << +bits_of(ours[i]) << " vs quanto 0x"
                      << +bits_of(ref[i]) << std::dec;
      ++bad;
    }
  }
  return bad;
}
template <class X>
std::size_t count_bit_mismatches(const char* what, quanto::tensor_view<const X> ours,
                                 quanto::tensor_view<const X> ref) {
  return count_bit_mismatches(what, ours, ref, [](std::size_t) { return false; });
}

/// Calls f(T{}) with the model dtype of a file.
template <class F>
void with_model_dtype(const std::string& dtype, F&& f) {
  if (dtype == "fp32")
    f(float{});
  else if (dtype == "fp16")
    f(quanto::float16{});
  else
    f(quanto::bfloat16{});
}

inline quanto::qaxis to_qaxis(std::optional<int> a) {
  if (!a) return quanto::qaxis::none;
  return *a == 0 ? quanto::qaxis::first : quanto::qaxis::last;
}

inline quanto::torch_sum_order sum_order(const fixture_case& c) {
  return c.cpu_capability.rfind("AVX512", 0) == 0 ? quanto::torch_sum_order::avx512 : quanto::torch_sum_order::avx2;
}

}  // namespace fixtures
