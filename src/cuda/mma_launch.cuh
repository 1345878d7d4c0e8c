// src/cuda/mma_launch.cuh: the host side of the fused kernels — configurations (one instantiation
// of mma_kernel.cuh's templates each), the split of k, launches and the split-k reduction.
#pragma once

#include <algorithm>

#include "common.cuh"
#include "mma_kernel.cuh"

QUANTO_BEGIN_NAMESPACE
namespace cuda::detail {

inline constexpr int mma_stages = 4;

/// One instantiation of the mma kernel: MT m16 blocks and NT n64 tiles per warp, WK x WN warps.
template <class T, dev::wcode C, int MT, int NT, int WK, int WN>
struct mma_config {
  static constexpr int threads = WK * WN * 32;
  static constexpr int smem = dev::mma_smem_bytes<C, MT, NT, WK, WN, mma_stages>();
  static constexpr int rows = 16 * MT;       ///< m per block
  static constexpr int cols = 64 * NT * WN;  ///< n per block
  static constexpr int k_warps = WK;
  static constexpr double weight_bytes = dev::is_4bit<C> ? 0.5 : 1.0;  ///< per weight element (codes)
  static const void* fn() { return reinterpret_cast<const void*>(&dev::mma_kernel<T, C, MT, NT, WK, WN, mma_stages>); }
  static void launch(dim3 grid, cudaStream_t stream, const dev::mma_params& p) {
    dev::mma_kernel<T, C, MT, NT, WK, WN, mma_stages><<<grid, threads, smem, stream>>>(p);
  }
};

/// The GEMV-style 4-bit kernel as a configuration (one n64 tile per block, 8 warps along k).
template <class T, bool ZP>
struct gemv_config {
  static constexpr int threads = 256;
  static constexpr int smem = dev::gemv_smem_bytes;
  static constexpr int rows = 4;
  static constexpr int cols = 64;
  static constexpr int k_warps = 8;
  static constexpr double weight_bytes = 0.5;
  static const void* fn() { return reinterpret_cast<const void*>(&dev::w4_gemv_kernel<T, ZP>); }
  static void launch(dim3 grid, cudaStream_t stream, const dev::mma_params& p) {
    dev::w4_gemv_kernel<T, ZP><<<grid, threads, smem, stream>>>(p);
  }
};

/// The kernel parameters of one product (`partial` and `splits` are set by `run_config`).
inline dev::mma_params make_mma_params(const void* codes, const void* meta, int group_steps, const void* x,
                                       std::int64_t m, std::int64_t ldx, void* y, std::int64_t ldy, const void* bias,
                                       std::int64_t n, std::int64_t k) {
  dev::mma_params p{};
  p.codes = static_cast<const unsigned char*>(codes);
  p.meta = meta;
  p.x = x;
  p.y = y;
  p.bias = bias;
  p.ldx = ldx;
  p.ldy = ldy;
  p.m = static_cast<int>(m);
  p.n = static_cast<int>(n);
  p.k = static_cast<int>(k);
  p.group_steps = group_steps;
  return p;
}

struct launch_plan {
  dim3 grid;
  int splits = 1;
  std::size_t workspace = 0;  ///< bytes of float32 partial sums (0 when splits == 1)
};

/// The grid and the split of k. A block's time is proportional to its share of k, so with b blocks
/// of 1/s of k each on P resident-block slots the weight streams in ceil(b / P) / s units of a
/// full-k wave; the float32 partial sums (written and read once more per split) are added as their
/// bytes relative to the weight's. The smallest split with the lowest cost wins; at least 8 k16
/// steps per warp (a 4-stage pipeline needs a few to fill), at most what the workspace holds.
/// (A model, to be checked against the H100 benchmark's --sweep-split; `matmul_options::split_k`
/// overrides it.)
template <class K>
launch_plan plan_launch(const context& ctx, std::int64_t m, std::int64_t n, std::int64_t k, const matmul_options& opt,
                        std::size_t workspace_limit) {
  const std::int64_t n_blocks = (n + K::cols - 1) / K::cols, m_blocks = (m + K::rows - 1) / K::rows;
  if (m_blocks > 65535) throw shape_error("m = " + std::to_string(m) + " is too large for one call");
  const std::int64_t k16 = k / 16;
  const int per_sm = ctx.get().blocks_per_sm(K::fn(), K::threads, K::smem);
  std::int64_t s = 1;
  if (opt.split_k > 0) {
    s = std::min<std::int64_t>(opt.split_k, k16);
  } else {
    const std::int64_t base = n_blocks * m_blocks, slots = static_cast<std::int64_t>(ctx.sm_count()) * per_sm;
    const std::int64_t most = std::min<std::int64_t>(std::max<std::int64_t>(1, k16 / (K::k_warps * 8)), 256);
    const double weight =
        K::weight_bytes * static_cast<double>(n) * static_cast<double>(k) * static_cast<double>(m_blocks);
    double best = 0;
    for (std::int64_t c = 1; c <= most; ++c) {
      const double waves = static_cast<double>((base * c + slots - 1) / slots) / static_cast<double>(c);
      const double reduce = c > 1 ? 2.0 * static_cast<double>(c * m * n) * sizeof(float) / weight : 0.0;
      const double cost = waves + reduce;
      if (c == 1 || cost < best * 0.98) best = cost, s = c;
    }
  }
  s = std::min<std::int64_t>(s, 1024);
  const auto plane = static_cast<std::size_t>(m * n) * sizeof(float);
  if (s > 1 && workspace_limit / plane < static_cast<std::size_t>(s))
    s = std::max<std::int64_t>(1, static_cast<std::int64_t>(workspace_limit / plane));
  launch_plan p;
  p.grid = dim3(static_cast<unsigned>(n_blocks), static_cast<unsigned>(s), static_cast<unsigned>(m_blocks));
  p.splits = static_cast<int>(s);
  p.workspace = s > 1 ? plane * static_cast<std::size_t>(s) : 0;
  return p;
}

/// Launches configuration K (and the reduction when k is split).
template <class K>
void run_config(const context& ctx, dev::mma_params p, dtype type, cudaStream_t stream, workspace ws,
                const matmul_options& opt, const char* who) {
  const std::size_t limit = ws.ptr ? ws.bytes : ~std::size_t{0};
  const launch_plan plan = plan_launch<K>(ctx, p.m, p.n, p.k, opt, limit);
  const scratch partial(ws, plan.workspace, stream, who);
  p.partial = reinterpret_cast<float*>(partial.data());
  p.splits = plan.splits;
  K::launch(plan.grid, stream, p);
  check_launch(who);
  if (plan.splits > 1) launch_splitk_reduce(type, p.partial, plan.splits, p.m, p.n, p.bias, p.y, p.ldy, stream);
}

/// The workspace configuration K would use without a limit.
template <class K>
std::size_t config_workspace(const context& ctx, std::int64_t m, std::int64_t n, std::int64_t k,
                             const matmul_options& opt) {
  if (m <= 0) return 0;
  return plan_launch<K>(ctx, m, n, k, opt, ~std::size_t{0}).workspace;
}

}  // namespace cuda::detail
QUANTO_END_NAMESPACE
