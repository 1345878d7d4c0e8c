// src/cuda/w4a16.cu: qint4 (group-wise affine) weights x float16/bfloat16 activations — the fused
// tensor-core kernel and the GEMV-style kernel (mma_kernel.cuh), chosen by m.
#include "mma_launch.cuh"

QUANTO_BEGIN_NAMESPACE
namespace cuda {
namespace {

using dev::wcode;

// m <= 16: one m16 block and two n64 tiles per warp, 8 warps along k (k is long, m is not);
// m <= 32: two m16 blocks; larger m: four m16 blocks, 4 warps along n x 2 along k, m in blocks of 64.
template <class T, wcode C>
using small_m = detail::mma_config<T, C, 1, 2, 8, 1>;
template <class T, wcode C>
using medium_m = detail::mma_config<T, C, 2, 1, 8, 1>;
template <class T, wcode C>
using large_m = detail::mma_config<T, C, 4, 1, 2, 4>;

bool use_gemv(std::int64_t m, const matmul_options& opt) {
  if (m > 4) return false;
  if (opt.path == w4a16_path::gemv) return true;
  return opt.path == w4a16_path::automatic && m <= std::min(opt.gemv_max_m, 4);
}

template <class T, bool ZP, class F>
decltype(auto) with_config(std::int64_t m, const matmul_options& opt, F&& f) {
  constexpr wcode C = ZP ? wcode::u4_zp : wcode::u4;
  if (use_gemv(m, opt)) return f(detail::gemv_config<T, ZP>{});
  if (m <= 16) return f(small_m<T, C>{});
  if (m <= 32) return f(medium_m<T, C>{});
  return f(large_m<T, C>{});
}

template <class F>
decltype(auto) with_types(dtype type, bool zero_point, std::int64_t m, const matmul_options& opt, F&& f) {
  if (type == dtype::float16)
    return zero_point ? with_config<__half, true>(m, opt, f) : with_config<__half, false>(m, opt, f);
  return zero_point ? with_config<__nv_bfloat16, true>(m, opt, f) : with_config<__nv_bfloat16, false>(m, opt, f);
}

void check_weight(const w4a16_device& w) {
  const std::string problem = detail::tile_problem(w.n, w.k, w.group);
  if (!problem.empty()) throw unsupported_error("w4a16_matmul: " + problem + "; use dequantize_matmul_fallback");
  if (!w.codes || !w.meta) throw shape_error("w4a16_matmul: null weight pointers");
  if (!detail::aligned16(w.codes) || !detail::aligned16(w.meta))
    throw unsupported_error("w4a16_matmul: the weight's codes and meta must be 16-byte aligned");
}

}  // namespace

std::size_t w4a16_workspace_bytes(const context& ctx, std::int64_t m, std::int64_t n, std::int64_t k,
                                  const matmul_options& opt) {
  if (detail::tile_problem(n, k, k).size() || m <= 0) return 0;
  const detail::device_guard guard(ctx.device());
  return with_types(dtype::float16, false, m, opt,
                    [&](auto cfg) { return detail::config_workspace<decltype(cfg)>(ctx, m, n, k, opt); });
}

void w4a16_matmul(const context& ctx, const w4a16_device& w, dtype type, const void* x, std::int64_t m,
                  std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream, workspace ws,
                  const matmul_options& opt) {
  check_weight(w);
  detail::check_matmul_args("w4a16_matmul", m, w.n, w.k, x, ldx, y, ldy, true);
  if (opt.path == w4a16_path::gemv && m > 4) throw unsupported_error("w4a16_matmul: the GEMV kernel takes m <= 4");
  if (m == 0) return;
  const detail::device_guard guard(ctx.device());
  const int group_steps = static_cast<int>(w.group / fragment::tile_k);
  const dev::mma_params p = detail::make_mma_params(w.codes, w.meta, group_steps, x, m, ldx, y, ldy, bias, w.n, w.k);
  with_types(type, w.zero_point, m, opt, [&](auto cfg) {
    detail::run_config<decltype(cfg)>(ctx, p, type, detail::as_stream(stream), ws, opt, "w4a16_matmul");
  });
}

}  // namespace cuda
QUANTO_END_NAMESPACE
