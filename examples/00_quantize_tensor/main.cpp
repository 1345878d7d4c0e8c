// Example 00: quantize weight tensors with every qtype and optimizer, as optimum-quanto would,
// and print what each costs in bytes and in error.
//
//   quantize_tensor                    a built-in set of Llama-like weights (no files needed)
//   quantize_tensor model.safetensors  every 2-D/4-D float tensor of a safetensors file
//   quantize_tensor --quick            a smaller built-in set (used as a test)
#include <quanto/quanto.hpp>

#ifdef QUANTO_EXAMPLE_WITH_IO
#include <quanto/io/safetensors.hpp>
#endif

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

namespace {

struct named_weight {
  std::string name;
  quanto::tensor<quanto::bfloat16> w;
};

/// Weights shaped like a transformer layer's: normal values with a few outlier input channels.
std::vector<named_weight> builtin_weights(bool quick) {
  const std::int64_t d = quick ? 256 : 1024, ff = quick ? 704 : 2816;
  const std::pair<const char*, quanto::shape> layers[] = {{"layers.0.self_attn.q_proj.weight", quanto::shape{d, d}},
                                                          {"layers.0.mlp.up_proj.weight", quanto::shape{ff, d}},
                                                          {"layers.0.mlp.down_proj.weight", quanto::shape{d, ff}},
                                                          {"conv.weight", quanto::shape{64, 32, 3, 3}}};
  std::mt19937 rng(2024);
  std::vector<named_weight> out;
  for (const auto& [name, s] : layers) {
    quanto::tensor<quanto::bfloat16> w(s);
    std::normal_distribution<float> n(0.0f, 0.02f);
    const std::int64_t in = s.numel() / s[0];
    for (std::size_t i = 0; i < w.size(); ++i) {
      const bool outlier = (static_cast<std::int64_t>(i) % in) % 97 == 13;  // a few hot input channels
      w[i] = quanto::bfloat16(n(rng) * (outlier ? 8.0f : 1.0f));
    }
    out.push_back({name, std::move(w)});
  }
  return out;
}

#ifdef QUANTO_EXAMPLE_WITH_IO
std::vector<named_weight> file_weights(const char* path) {
  const auto f = quanto::io::safetensors_file::open(path);
  std::vector<named_weight> out;
  for (const auto& info : f.tensors()) {
    if (info.shape.size() != 2 && info.shape.size() != 4) continue;
    const quanto::shape s{std::span<const std::int64_t>(info.shape)};
    quanto::tensor<quanto::bfloat16> w(s);
    const auto raw = f.bytes(info);
    if (info.dtype == quanto::dtype::bf16) {
      std::memcpy(w.data(), raw.data(), raw.size());
    } else if (info.dtype == quanto::dtype::f16 || info.dtype == quanto::dtype::f32) {
      for (std::size_t i = 0; i < w.size(); ++i) {
        float v;
        if (info.dtype == quanto::dtype::f32)
          std::memcpy(&v, raw.data() + 4 * i, 4);
        else {
          quanto::float16 h;
          std::memcpy(&h, raw.data() + 2 * i, 2);
          v = static_cast<float>(h);
        }
        w[i] = quanto::bfloat16(v);
      }
    } else {
      continue;
    }
    out.push_back({info.name, std::move(w)});
  }
  return out;
}
#endif

/// Signal-to-quantization-noise ratio in dB.
double sqnr_db(const quanto::tensor<quanto::bfloat16>& w, const quanto::tensor<quanto::bfloat16>& dq) {
  double signal = 0, noise = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const double x = static_cast<float>(w[i]), e = x - static_cast<float>(dq[i]);
    signal += x * x;
    noise += e * e;
  }
  return noise == 0 ? INFINITY : 10.0 * std::log10(signal / noise);
}

template <class QW>
std::size_t stored_bytes(const QW& q) {
  if constexpr (requires { q.packed; })
    return q.packed.size() + q.scale.size() * 2 + q.shift.size() * sizeof(q.shift[0]);
  else
    return q.data.size() + q.scale.size() * 2;
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  std::vector<named_weight> weights;
  try {
    if (argc > 1 && !quick) {
#ifdef QUANTO_EXAMPLE_WITH_IO
      weights = file_weights(argv[1]);
#else
      std::fprintf(stderr, "this build has no file I/O (install nlohmann-json3-dev and reconfigure)\n");
      return 2;
#endif
    } else {
      weights = builtin_weights(quick);
    }
  } catch (const quanto::error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }

  struct config {
    const char* label;
    quanto::weight_spec spec;
  };
  std::vector<config> configs;
  for (quanto::qtype_id id : quanto::all_qtypes) {
    quanto::weight_spec s;
    s.qtype = id;
    configs.push_back({"", s});
    if (quanto::info_of(id).bits < 8) {
      s.optimizer = quanto::optimizer_id::hqq;
      configs.push_back({"", s});
    }
  }

  int failures = 0;
  std::printf("%-36s %-17s %-7s %10s %12s %9s %9s\n", "tensor", "qtype", "optim", "bf16 bytes", "quant bytes",
              "SQNR dB", "ms");
  for (const auto& nw : weights) {
    for (const auto& c : configs) {
      const auto t0 = std::chrono::steady_clock::now();
      quanto::any_qweight q;
      try {
        q = quanto::quantize_weight(quanto::any_float_view(nw.w.view()), c.spec);
      } catch (const quanto::error& e) {  // e.g. NaN in a weight: report it, go on with the next
        std::fprintf(stderr, "%s: %s\n", nw.name.c_str(), e.what());
        ++failures;
        break;
      }
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
      std::visit(
          [&](const auto& qw) {
            const auto dq = qw.dequantize();
            quanto::tensor<quanto::bfloat16> dqb(dq.shape());
            for (std::size_t i = 0; i < dq.size(); ++i) dqb[i] = quanto::bfloat16(static_cast<float>(dq[i]));
            const auto info = quanto::info_of(c.spec.qtype);
            const char* opt = c.spec.optimizer ? (c.spec.optimizer == quanto::optimizer_id::hqq ? "hqq" : "max")
                                               : (info.bits == 8 ? "absmax" : "max");
            std::printf("%-36s %-17s %-7s %10zu %12zu %9.2f %9.1f\n", nw.name.c_str(), std::string(info.name).c_str(),
                        opt, nw.w.size() * 2, stored_bytes(qw), sqnr_db(nw.w, dqb), ms);
          },
          q);
    }
  }
  return failures == 0 ? 0 : 1;
}
