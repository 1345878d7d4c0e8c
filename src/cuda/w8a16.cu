// src/cuda/w8a16.cu: qint8 and float8 e4m3fn weights (per-channel scale) x float16/bfloat16
// activations — the fused tensor-core kernel of mma_kernel.cuh.
#include "mma_launch.cuh"

QUANTO_BEGIN_NAMESPACE
namespace cuda {
namespace {

using dev::wcode;

// As for 4-bit weights, with one n64 tile per warp at small m (8-bit tiles are twice the bytes).
template <class T, wcode C>
using small_m = detail::mma_config<T, C, 1, 1, 8, 1>;
template <class T, wcode C>
using medium_m = detail::mma_config<T, C, 2, 1, 8, 1>;
template <class T, wcode C>
using large_m = detail::mma_config<T, C, 4, 1, 2, 4>;

template <class T, wcode C, class F>
decltype(auto) with_config(std::int64_t m, F&& f) {
  if (m <= 16) return f(small_m<T, C>{});
  if (m <= 32) return f(medium_m<T, C>{});
  return f(large_m<T, C>{});
}

template <class F>
decltype(auto) with_types(dtype type, code_type code, std::int64_t m, F&& f) {
  if (type == dtype::float16)
    return code == code_type::int8 ? with_config<__half, wcode::i8>(m, f) : with_config<__half, wcode::e4m3>(m, f);
  return code == code_type::int8 ? with_config<__nv_bfloat16, wcode::i8>(m, f)
                                 : with_config<__nv_bfloat16, wcode::e4m3>(m, f);
}

void check_weight(const w8a16_device& w) {
  const std::string problem = detail::tile_problem(w.n, w.k, w.k);
  if (!problem.empty()) throw unsupported_error("w8a16_matmul: " + problem + "; use dequantize_matmul_fallback");
  if (w.code != code_type::int8 && w.code != code_type::float8_e4m3fn)
    throw unsupported_error(
        "w8a16_matmul: the fused kernel decodes int8 and float8 e4m3fn codes; use dequantize_matmul_fallback");
  if (!w.codes || !w.scale) throw shape_error("w8a16_matmul: null weight pointers");
  if (!detail::aligned16(w.codes) || !detail::aligned16(w.scale))
    throw unsupported_error("w8a16_matmul: the weight's codes and scales must be 16-byte aligned");
}

}  // namespace

std::size_t w8a16_workspace_bytes(const context& ctx, std::int64_t m, std::int64_t n, std::int64_t k,
                                  const matmul_options& opt) {
  if (detail::tile_problem(n, k, k).size() || m <= 0) return 0;
  const detail::device_guard guard(ctx.device());
  return with_types(dtype::float16, code_type::int8, m,
                    [&](auto cfg) { return detail::config_workspace<decltype(cfg)>(ctx, m, n, k, opt); });
}

void w8a16_matmul(const context& ctx, const w8a16_device& w, dtype type, const void* x, std::int64_t m,
                  std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream, workspace ws,
                  const matmul_options& opt) {
  check_weight(w);
  detail::check_matmul_args("w8a16_matmul", m, w.n, w.k, x, ldx, y, ldy, true);
  if (m == 0) return;
  const detail::device_guard guard(ctx.device());
  const dev::mma_params p = detail::make_mma_params(w.codes, w.scale, 1, x, m, ldx, y, ldy, bias, w.n, w.k);
  with_types(type, w.code, m, [&](auto cfg) {
    detail::run_config<decltype(cfg)>(ctx, p, type, detail::as_stream(stream), ws, opt, "w8a16_matmul");
  });
}

}  // namespace cuda
QUANTO_END_NAMESPACE
