// bench/cuda/bench_cuda_matmul.cu: the quanto::cuda matmuls on Llama-3-8B's linear shapes against
// cuBLAS float16/bfloat16 at the same shape (docs/cuda.md, "Benchmark").
//
//   bench_cuda_matmul [--json FILE] [--samples N] [--m 1,2,4,...] [--quick] [--sweep-split]
//
// --sweep-split also times the fused kernels at fixed splits of k (1, 2, 4, 8, 16): the data to
// check the automatic choice (plan_launch in src/cuda/mma_kernel.cuh) against.
//
// Method: the device's read bandwidth is measured first in the same run (a streaming read kernel
// and a device-to-device copy, 2 GiB each); every kernel is warmed up, then timed with CUDA events
// over batches that cycle through enough copies of the weight to exceed 3x the L2 cache (so no
// call finds its weight in L2), median of N batches. Inputs are random (never zeros). Each row
// prints the time, the effective bandwidth of the fewest bytes the call must move (weight + scales
// + x + y) as a percentage of the measured read bandwidth, and the speed-up over cuBLAS at the
// same shape. The issue's targets are checked at the end.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <quanto/cuda/cuda.hpp>

namespace {

namespace qc = quanto::cuda;

#define BENCH_CHECK(call)                                                                         \
  do {                                                                                            \
    const cudaError_t e_ = (call);                                                                \
    if (e_ != cudaSuccess) {                                                                      \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      std::exit(1);                                                                               \
    }                                                                                             \
  } while (0)
#define BENCH_CUBLAS(call)                                                                       \
  do {                                                                                           \
    const cublasStatus_t s_ = (call);                                                            \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                           \
      std::fprintf(stderr, "%s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, #call, int(s_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

struct options {
  std::string json;
  int samples = 50;
  std::vector<int> ms{1, 2, 4, 8, 16, 32, 64, 128};
  bool quick = false;
  bool sweep_split = false;  ///< also time w4a16 / w8a16 with split_k = 1, 2, 4, 8, 16 (float16)
};

/// Reads `words` 16-byte words; the XOR of everything is stored only if it equals a value it never
/// has, so that the loads cannot be removed.
__global__ void read_kernel(const uint4* __restrict__ p, std::size_t words, unsigned* sink) {
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < words;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    const uint4 v = __ldcs(p + i);
    acc.x ^= v.x, acc.y ^= v.y, acc.z ^= v.z, acc.w ^= v.w;
  }
  if ((acc.x ^ acc.y ^ acc.z ^ acc.w) == 0x9E3779B9u) *sink = acc.x;
}

__global__ void fill_random_kernel(unsigned* p, std::size_t words, unsigned seed) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < words;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    unsigned x = static_cast<unsigned>(i) * 0x9E3779B1u ^ seed;  // xorshift-multiply hash
    x ^= x >> 16, x *= 0x7FEB352Du, x ^= x >> 15, x *= 0x846CA68Bu, x ^= x >> 16;
    p[i] = x;
  }
}

/// Makes random bytes valid e4m3fn codes: the two NaN patterns (0x7F, 0xFF) lose their lowest bit.
__global__ void no_fp8_nan_kernel(unsigned char* p, std::size_t bytes) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < bytes;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x)
    if ((p[i] & 0x7Fu) == 0x7Fu) p[i] = static_cast<unsigned char>(p[i] & 0xFEu);
}

/// Random 16-bit floats of moderate magnitude: sign, exponent in [-8, 0), random mantissa.
__global__ void fill_floats_kernel(unsigned short* p, std::size_t count, unsigned seed, bool bf16) {
  for (std::size_t i = blockIdx.x * static_cast<std::size_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<std::size_t>(gridDim.x) * blockDim.x) {
    unsigned x = static_cast<unsigned>(i) * 0x9E3779B1u ^ seed;
    x ^= x >> 16, x *= 0x7FEB352Du, x ^= x >> 15, x *= 0x846CA68Bu, x ^= x >> 16;
    const unsigned sign = x >> 31, e = (x >> 8) & 7u;
    p[i] = bf16 ? static_cast<unsigned short>(sign << 15 | (127u - 8u + e) << 7 | (x & 0x7Fu))
                : static_cast<unsigned short>(sign << 15 | (15u - 8u + e) << 10 | (x & 0x3FFu));
  }
}

struct buffer {
  void* p = nullptr;
  std::size_t bytes = 0;
  explicit buffer(std::size_t b = 0) : bytes(b) {
    if (b) BENCH_CHECK(cudaMalloc(&p, b));
  }
  ~buffer() {
    if (p) cudaFree(p);
  }
  buffer(buffer&& o) noexcept : p(o.p), bytes(o.bytes) { o.p = nullptr, o.bytes = 0; }
  buffer& operator=(buffer&&) = delete;
  buffer(const buffer&) = delete;
};

void random_bytes(buffer& b, unsigned seed) {
  fill_random_kernel<<<1024, 256>>>(static_cast<unsigned*>(b.p), b.bytes / 4, seed);
  BENCH_CHECK(cudaGetLastError());
}
void random_floats(buffer& b, unsigned seed, qc::dtype t) {
  fill_floats_kernel<<<1024, 256>>>(static_cast<unsigned short*>(b.p), b.bytes / 2, seed, t == qc::dtype::bfloat16);
  BENCH_CHECK(cudaGetLastError());
}

/// Median time of one call in microseconds: `call(i)` runs on copy i % copies; each sample times
/// `copies` calls (at least 4) between two events.
double time_us(const std::function<void(int)>& call, int copies, int samples, cudaStream_t s) {
  const int batch = std::max(copies, 4);
  for (int i = 0; i < 2 * batch; ++i) call(i % copies);  // warm-up: modules, handles, plans
  BENCH_CHECK(cudaStreamSynchronize(s));
  cudaEvent_t a, b;
  BENCH_CHECK(cudaEventCreate(&a));
  BENCH_CHECK(cudaEventCreate(&b));
  std::vector<double> t;
  for (int r = 0; r < samples; ++r) {
    BENCH_CHECK(cudaEventRecord(a, s));
    for (int i = 0; i < batch; ++i) call(i % copies);
    BENCH_CHECK(cudaEventRecord(b, s));
    BENCH_CHECK(cudaEventSynchronize(b));
    float ms = 0;
    BENCH_CHECK(cudaEventElapsedTime(&ms, a, b));
    t.push_back(1000.0 * ms / batch);
  }
  BENCH_CHECK(cudaEventDestroy(a));
  BENCH_CHECK(cudaEventDestroy(b));
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

struct record {
  std::string kernel, dtype;
  long n, k, m;
  double us, bytes, gbps, pct_hbm, baseline_us, speedup;
};

int copies_for(std::size_t bytes_per_copy, std::size_t l2) {
  return static_cast<int>(std::max<std::size_t>(2, (3 * l2 + bytes_per_copy - 1) / bytes_per_copy));
}

}  // namespace

int main(int argc, char** argv) {
  options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--json" && i + 1 < argc)
      opt.json = argv[++i];
    else if (a == "--samples" && i + 1 < argc)
      opt.samples = std::max(5, std::atoi(argv[++i]));
    else if (a == "--quick")
      opt.quick = true;
    else if (a == "--sweep-split")
      opt.sweep_split = true;
    else if (a == "--m" && i + 1 < argc) {
      opt.ms.clear();
      for (std::string v = argv[++i]; !v.empty();) {
        const auto c = v.find(',');
        opt.ms.push_back(std::atoi(v.substr(0, c).c_str()));
        v = c == std::string::npos ? "" : v.substr(c + 1);
      }
    } else {
      std::fprintf(stderr, "usage: %s [--json FILE] [--samples N] [--m 1,2,4,...] [--quick] [--sweep-split]\n",
                   argv[0]);
      return 2;
    }
  }
  if (qc::device_count() == 0) {
    std::printf("no CUDA device\n");
    return 77;
  }
  qc::context ctx;
  cudaStream_t s;
  BENCH_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  cublasHandle_t blas;
  BENCH_CUBLAS(cublasCreate(&blas));
  BENCH_CUBLAS(cublasSetStream(blas, s));
  const std::size_t l2 = ctx.l2_bytes();
  std::printf("device: %s (compute capability %d, %d SMs, L2 %zu MiB)\n", ctx.name().c_str(), ctx.compute_capability(),
              ctx.sm_count(), l2 >> 20);

  // ---- the bandwidth ceiling, measured now ----
  double read_gbps = 0, copy_gbps = 0;
  {
    const std::size_t bytes = std::size_t{2} << 30;
    buffer src(bytes), dst(bytes), sink(64);
    random_bytes(src, 1);
    const double read_us = time_us(
        [&](int) {
          read_kernel<<<ctx.sm_count() * 8, 512, 0, s>>>(static_cast<const uint4*>(src.p), bytes / 16,
                                                         static_cast<unsigned*>(sink.p));
        },
        1, 20, s);
    const double copy_us =
        time_us([&](int) { BENCH_CHECK(cudaMemcpyAsync(dst.p, src.p, bytes, cudaMemcpyDeviceToDevice, s)); }, 1, 20, s);
    read_gbps = static_cast<double>(bytes) / read_us / 1e3;
    copy_gbps = 2.0 * static_cast<double>(bytes) / copy_us / 1e3;
  }
  const double hbm = std::max(read_gbps, copy_gbps);
  std::printf(
      "measured bandwidth: read kernel %.0f GB/s, device-to-device copy %.0f GB/s (read + write); reference %.0f "
      "GB/s\n\n",
      read_gbps, copy_gbps, hbm);

  struct shape_t {
    const char* name;
    long n, k;
  };
  std::vector<shape_t> shapes{{"mlp.gate/up", 14336, 4096}, {"mlp.down", 4096, 14336}};
  if (!opt.quick) shapes.insert(shapes.begin(), {{"attn.q/o", 4096, 4096}, {"attn.k/v", 1024, 4096}});

  std::vector<record> out;
  std::printf("%-12s %-14s %-5s %6s %6s %5s %10s %8s %7s %11s %8s\n", "shape", "kernel", "type", "n", "k", "m",
              "time[us]", "GB/s", "%HBM", "cuBLAS[us]", "speedup");
  const int max_m = *std::max_element(opt.ms.begin(), opt.ms.end());
  for (const auto& sh : shapes) {
    const long n = sh.n, k = sh.k;
    for (const qc::dtype type : {qc::dtype::float16, qc::dtype::bfloat16}) {
      const char* tname = type == qc::dtype::float16 ? "f16" : "bf16";
      // weights: cuBLAS dense, w4a16 (codes + (scale, shift) per group of 128), w8a16 int8 / fp8
      const std::size_t dense_bytes = static_cast<std::size_t>(n * k) * 2;
      const std::size_t w4_codes = static_cast<std::size_t>(n * k) / 2,
                        w4_meta = static_cast<std::size_t>(n * (k / 128)) * 4;
      const std::size_t w8_codes = static_cast<std::size_t>(n * k), w8_scale = static_cast<std::size_t>(n) * 2;
      const int dense_copies = copies_for(dense_bytes, l2), w4_copies = copies_for(w4_codes + w4_meta, l2),
                w8_copies = copies_for(w8_codes + w8_scale, l2);
      std::vector<buffer> dense, w4c, w4m, w8c, w8s;
      for (int c = 0; c < dense_copies; ++c) {
        dense.emplace_back(dense_bytes);
        random_floats(dense.back(), 10u + c, type);
      }
      for (int c = 0; c < w4_copies; ++c) {
        w4c.emplace_back(w4_codes);
        random_bytes(w4c.back(), 20u + c);
        w4m.emplace_back(w4_meta);
        random_floats(w4m.back(), 30u + c, type);
      }
      for (int c = 0; c < w8_copies; ++c) {
        w8c.emplace_back(w8_codes);
        random_bytes(w8c.back(), 40u + c);
        no_fp8_nan_kernel<<<1024, 256>>>(static_cast<unsigned char*>(w8c.back().p),
                                         w8c.back().bytes);  // valid as int8 and e4m3fn
        BENCH_CHECK(cudaGetLastError());
        w8s.emplace_back(w8_scale);
        random_floats(w8s.back(), 50u + c, type);
      }
      buffer x(static_cast<std::size_t>(max_m * k) * 2), y(static_cast<std::size_t>(max_m * n) * 2),
          xq(static_cast<std::size_t>(max_m * k));
      random_floats(x, 60, type);
      random_bytes(xq, 61);
      no_fp8_nan_kernel<<<1024, 256>>>(static_cast<unsigned char*>(xq.p), xq.bytes);
      BENCH_CHECK(cudaGetLastError());
      // one workspace for every call: the largest any of them asks for (or any swept split needs)
      std::size_t ws_bytes = std::size_t{1} << 20;
      for (const int m : opt.ms)
        ws_bytes =
            std::max({ws_bytes, qc::w4a16_workspace_bytes(ctx, m, n, k), qc::w8a16_workspace_bytes(ctx, m, n, k),
                      qc::cublaslt_workspace_bytes(ctx, m, n),
                      m <= 4 ? qc::w4a16_workspace_bytes(ctx, m, n, k, {0, qc::w4a16_path::gemv, 0}) : std::size_t{0},
                      opt.sweep_split ? std::size_t{16} * static_cast<std::size_t>(m * n) * 4 : std::size_t{0}});
      buffer ws(ws_bytes);
      const qc::workspace wsv{ws.p, ws.bytes};
      BENCH_CHECK(cudaDeviceSynchronize());

      for (const int m : opt.ms) {
        const cudaDataType_t ct = type == qc::dtype::float16 ? CUDA_R_16F : CUDA_R_16BF;
        const float one = 1.0f, zero = 0.0f;
        const double base = time_us(
            [&](int c) {
              BENCH_CUBLAS(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(n), m, static_cast<int>(k),
                                        &one, dense[c].p, ct, static_cast<int>(k), x.p, ct, static_cast<int>(k), &zero,
                                        y.p, ct, static_cast<int>(n), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
            },
            dense_copies, opt.samples, s);
        const double io = 2.0 * m * (k + n);  // x and y bytes
        auto report = [&](const char* kernel, double us, double weight_bytes) {
          const double bytes = weight_bytes + io;
          record r{kernel, tname,    n, k, m, us, bytes, bytes / us / 1e3, 100.0 * bytes / us / 1e3 / hbm,
                   base,   base / us};
          std::printf("%-12s %-14s %-5s %6ld %6ld %5d %10.2f %8.0f %6.1f%% %11.2f %7.2fx\n", sh.name, kernel, tname, n,
                      k, m, us, r.gbps, r.pct_hbm, base, r.speedup);
          out.push_back(r);
        };
        report("cublas_dense", base, static_cast<double>(dense_bytes));

        auto w4 = [&](qc::w4a16_path path, int split = 0) {
          qc::matmul_options o;
          o.path = path;
          o.split_k = split;
          return time_us(
              [&](int c) {
                qc::w4a16_matmul(ctx, qc::w4a16_device{w4c[c].p, w4m[c].p, n, k, 128, false}, type, x.p, m, k, y.p, n,
                                 nullptr, s, wsv, o);
              },
              w4_copies, opt.samples, s);
        };
        report("w4a16_mma", w4(qc::w4a16_path::mma), static_cast<double>(w4_codes + w4_meta));
        if (m <= 4) report("w4a16_gemv", w4(qc::w4a16_path::gemv), static_cast<double>(w4_codes + w4_meta));
        for (const qc::code_type code : {qc::code_type::int8, qc::code_type::float8_e4m3fn}) {
          const double us = time_us(
              [&](int c) {
                qc::w8a16_matmul(ctx, qc::w8a16_device{w8c[c].p, w8s[c].p, n, k, code}, type, x.p, m, k, y.p, n,
                                 nullptr, s, wsv);
              },
              w8_copies, opt.samples, s);
          report(code == qc::code_type::int8 ? "w8a16_int8" : "w8a16_fp8", us,
                 static_cast<double>(w8_codes + w8_scale));
        }
        if (opt.sweep_split && type == qc::dtype::float16)
          for (const int split : {1, 2, 4, 8, 16}) {
            report(("w4a16_split" + std::to_string(split)).c_str(), w4(qc::w4a16_path::mma, split),
                   static_cast<double>(w4_codes + w4_meta));
            qc::matmul_options o;
            o.split_k = split;
            const double us = time_us(
                [&](int c) {
                  qc::w8a16_matmul(ctx, qc::w8a16_device{w8c[c].p, w8s[c].p, n, k, qc::code_type::int8}, type, x.p, m,
                                   k, y.p, n, nullptr, s, wsv, o);
                },
                w8_copies, opt.samples, s);
            report(("w8a16_split" + std::to_string(split)).c_str(), us, static_cast<double>(w8_codes + w8_scale));
          }
        // cuBLASLt w8a8 and fp8 x fp8 (weights in the file layout: the same bytes as w8a16's codes)
        const double i8 = time_us(
            [&](int c) {
              qc::int8_matmul_cublaslt(
                  ctx, qc::qbytes_device{w8c[c].p, w8s[c].p, n, k, qc::code_type::int8, qc::scale_axis::row}, type,
                  xq.p, 0.01f, m, k, y.p, n, nullptr, s, wsv);
            },
            w8_copies, opt.samples, s);
        report("int8_cublaslt", i8, static_cast<double>(w8_codes + w8_scale) - 1.0 * m * k);
        if (ctx.compute_capability() >= 89) {
          try {
            const double f8 = time_us(
                [&](int c) {
                  qc::fp8_matmul_cublaslt(
                      ctx,
                      qc::qbytes_device{w8c[c].p, w8s[c].p, n, k, qc::code_type::float8_e4m3fn, qc::scale_axis::row},
                      type, xq.p, 0.01f, m, k, y.p, n, nullptr, s, wsv);
                },
                w8_copies, opt.samples, s);
            report("fp8_cublaslt", f8, static_cast<double>(w8_codes + w8_scale) - 1.0 * m * k);
          } catch (const quanto::unsupported_error& e) {
            std::printf("%-12s %-14s %-5s %6ld %6ld %5d   not run: %s\n", sh.name, "fp8_cublaslt", tname, n, k, m,
                        e.what());
          }
        }
      }
      BENCH_CHECK(cudaStreamSynchronize(s));
    }
  }

  // ---- the issue's targets (H100) ----
  auto find = [&](const char* kernel, const char* t, long n, long m) -> const record* {
    for (const auto& r : out)
      if (r.kernel == kernel && r.dtype == t && r.n == n && r.m == m) return &r;
    return nullptr;
  };
  std::printf("\ntargets (Llama-3-8B MLP, H100):\n");
  int missed = 0;
  auto target = [&](const char* what, const record* r, double value, double want) {
    if (!r) return;
    const bool ok = value >= want;
    missed += !ok;
    std::printf("  %-58s %8.2f (want >= %.2f)  %s\n", what, value, want, ok ? "met" : "MISSED");
  };
  for (const long n : {14336L, 4096L}) {
    const std::string shape = n == 14336 ? "14336x4096" : "4096x14336";
    const record* r1 = find("w4a16_mma", "f16", n, 1);
    const record* g1 = find("w4a16_gemv", "f16", n, 1);
    const record* best1 = (g1 && r1 && g1->us < r1->us) ? g1 : r1;
    if (best1) {
      target(("w4a16 m=1 " + shape + " % of HBM").c_str(), best1, best1->pct_hbm, 80.0);
      target(("w4a16 m=1 " + shape + " speed-up vs cuBLAS f16").c_str(), best1, best1->speedup, 3.0);
    }
    if (const record* r = find("w4a16_mma", "f16", n, 16))
      target(("w4a16 m=16 " + shape + " speed-up vs cuBLAS f16").c_str(), r, r->speedup, 2.5);
    if (const record* r = find("w8a16_int8", "f16", n, 1))
      target(("w8a16 int8 m=1 " + shape + " speed-up vs cuBLAS f16").c_str(), r, r->speedup, 1.7);
    for (const int m : opt.ms)
      if (m >= 128)
        if (const record* r = find("fp8_cublaslt", "bf16", n, m))
          target(("fp8 cuBLASLt m=" + std::to_string(m) + " " + shape + " speed-up vs cuBLAS bf16").c_str(), r,
                 r->speedup, 1.5);
  }

  if (!opt.json.empty()) {
    FILE* f = std::fopen(opt.json.c_str(), "w");
    if (!f) {
      std::perror(opt.json.c_str());
      return 1;
    }
    std::fprintf(f,
                 "{\n  \"device\": \"%s\",\n  \"compute_capability\": %d,\n  \"sm_count\": %d,\n  \"l2_bytes\": %zu,\n",
                 ctx.name().c_str(), ctx.compute_capability(), ctx.sm_count(), l2);
    std::fprintf(
        f,
        "  \"read_gbps\": %.1f,\n  \"copy_gbps\": %.1f,\n  \"hbm_gbps\": %.1f,\n  \"samples\": %d,\n  \"results\": [\n",
        read_gbps, copy_gbps, hbm, opt.samples);
    for (std::size_t i = 0; i < out.size(); ++i) {
      const auto& r = out[i];
      std::fprintf(f,
                   "    {\"kernel\": \"%s\", \"dtype\": \"%s\", \"n\": %ld, \"k\": %ld, \"m\": %ld, \"us\": %.3f, "
                   "\"bytes\": %.0f, "
                   "\"gbps\": %.1f, \"pct_hbm\": %.2f, \"baseline_us\": %.3f, \"speedup\": %.3f}%s\n",
                   r.kernel.c_str(), r.dtype.c_str(), r.n, r.k, r.m, r.us, r.bytes, r.gbps, r.pct_hbm, r.baseline_us,
                   r.speedup, i + 1 < out.size() ? "," : "");
    }
    std::fprintf(f, "  ],\n  \"targets_missed\": %d\n}\n", missed);
    std::fclose(f);
    std::printf("\nwrote %s\n", opt.json.c_str());
  }
  BENCH_CUBLAS(cublasDestroy(blas));
  BENCH_CHECK(cudaStreamDestroy(s));
  return 0;
}
