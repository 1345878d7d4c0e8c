// src/cuda/cublaslt.cu: the cuBLASLt paths — dense float16/bfloat16 (the fallback's GEMM and the
// benchmarks' baseline), int8 x int8 (int32 product, then quanto's scales in an epilogue kernel) and
// float8 e4m3fn x e4m3fn (per-row outer-vector scales when cuBLASLt has them, else a float32 product
// scaled in an epilogue kernel).
#include "common.cuh"

#include <algorithm>
#include <limits>

QUANTO_BEGIN_NAMESPACE
namespace cuda {
namespace detail {
namespace {

/// A cuBLASLt problem as cached in the context: descriptors and the algorithm the heuristic chose.
struct lt_plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;
  ~lt_plan() {
    if (d) (void)cublasLtMatrixLayoutDestroy(d);
    if (b) (void)cublasLtMatrixLayoutDestroy(b);
    if (a) (void)cublasLtMatrixLayoutDestroy(a);
    if (desc) (void)cublasLtMatmulDescDestroy(desc);
  }
};

using lt_key = std::tuple<int, int, int, int, int, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                          bool, bool, std::size_t, std::uint32_t, std::uint32_t, std::uint32_t>;

/// The alignment (a power of two, at most 256 — cuBLASLt's default assumption) of a pointer.
std::uint32_t alignment(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t r = 256;
  while (r > 1 && (a & (r - 1)) != 0) r /= 2;
  return r;
}
using lt_plans = std::map<lt_key, std::unique_ptr<lt_plan>>;

template <class V>
void set_attr(cublasLtMatmulDesc_t desc, cublasLtMatmulDescAttributes_t attr, const V& v, const char* what) {
  check(cublasLtMatmulDescSetAttribute(desc, attr, &v, sizeof(v)), what);
}

std::unique_ptr<lt_plan> make_plan(cublasLtHandle_t lt, const lt_gemm& g, std::size_t ws_bytes, std::uint32_t align_a,
                                   std::uint32_t align_b, std::uint32_t align_d) {
  auto p = std::make_unique<lt_plan>();
  check(cublasLtMatmulDescCreate(&p->desc, g.compute, g.scale_type), "cublasLtMatmulDescCreate");
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  set_attr(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, op_t, "cuBLASLt transa");
  set_attr(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, op_n, "cuBLASLt transb");
  if (g.bias) {
    const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
    set_attr(p->desc, CUBLASLT_MATMUL_DESC_EPILOGUE, epi, "cuBLASLt epilogue");
    set_attr(p->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias, "cuBLASLt bias");
  }
  if (g.a_scale_vec || g.b_scale_vec) {
    const std::int32_t mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
    // an older cuBLASLt may not know the attribute: then there is no plan
    if (cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &mode, sizeof(mode)) !=
            CUBLAS_STATUS_SUCCESS ||
        cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode, sizeof(mode)) !=
            CUBLAS_STATUS_SUCCESS)
      return p;
    set_attr(p->desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, g.a_scale_vec, "cuBLASLt A scale");
    set_attr(p->desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, g.b_scale_vec, "cuBLASLt B scale");
  }
  // W [n, k] row-major is the column-major k x n matrix A, used transposed; x [m, k] (ldx) is B (k x m).
  check(cublasLtMatrixLayoutCreate(&p->a, g.a_type, static_cast<std::uint64_t>(g.k), static_cast<std::uint64_t>(g.n),
                                   g.k),
        "cublasLtMatrixLayoutCreate A");
  check(cublasLtMatrixLayoutCreate(&p->b, g.b_type, static_cast<std::uint64_t>(g.k), static_cast<std::uint64_t>(g.m),
                                   g.ldx),
        "cublasLtMatrixLayoutCreate B");
  check(cublasLtMatrixLayoutCreate(&p->d, g.d_type, static_cast<std::uint64_t>(g.n), static_cast<std::uint64_t>(g.m),
                                   g.ldd),
        "cublasLtMatrixLayoutCreate D");
  cublasLtMatmulPreference_t pref = nullptr;
  check(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const std::uint64_t max_ws = ws_bytes;
  cublasStatus_t s =
      cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &max_ws, sizeof(max_ws));
  // only algorithms that work with the operands' actual alignment (the default assumes 256 bytes)
  const std::pair<cublasLtMatmulPreferenceAttributes_t, std::uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_a},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_b},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_d},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_d}};
  for (const auto& [attr, value] : aligns)
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value));
  cublasLtMatmulHeuristicResult_t result{};
  int count = 0;
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulAlgoGetHeuristic(lt, p->desc, p->a, p->b, p->d, p->d, pref, 1, &result, &count);
  (void)cublasLtMatmulPreferenceDestroy(pref);
  if (s == CUBLAS_STATUS_SUCCESS && count > 0) {
    p->algo = result.algo;
    p->found = true;
  } else if (s != CUBLAS_STATUS_SUCCESS && s != CUBLAS_STATUS_NOT_SUPPORTED && s != CUBLAS_STATUS_INVALID_VALUE) {
    throw_cublas(s, "cublasLtMatmulAlgoGetHeuristic");
  }
  return p;
}

}  // namespace

bool run_lt(const context& ctx, const lt_gemm& g, const void* alpha, const void* a, const void* b, void* d, void* lt_ws,
            std::size_t lt_ws_bytes, cudaStream_t stream) {
  const cublasLtHandle_t lt = ctx.get().lt;
  const lt_key key{static_cast<int>(g.a_type),
                   static_cast<int>(g.b_type),
                   static_cast<int>(g.d_type),
                   static_cast<int>(g.compute),
                   static_cast<int>(g.scale_type),
                   g.m,
                   g.n,
                   g.k,
                   g.ldx,
                   g.ldd,
                   g.bias != nullptr,
                   g.a_scale_vec != nullptr || g.b_scale_vec != nullptr,
                   lt_ws_bytes,
                   alignment(a),
                   alignment(b),
                   alignment(d)};
  context::impl& ci = ctx.get();
  // The descriptor's pointer attributes change per call: hold the lock from setting them until the
  // matmul is enqueued.
  const std::lock_guard<std::mutex> lock(ci.lt_mu);
  if (!ci.lt_plans) ci.lt_plans = std::make_shared<lt_plans>();
  auto& slot = (*static_cast<lt_plans*>(ci.lt_plans.get()))[key];
  if (!slot) slot = make_plan(lt, g, lt_ws_bytes, alignment(a), alignment(b), alignment(d));
  lt_plan& p = *slot;
  if (!p.found) return false;
  if (g.bias) set_attr(p.desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER, g.bias, "cuBLASLt bias");
  if (g.a_scale_vec) set_attr(p.desc, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, g.a_scale_vec, "cuBLASLt A scale");
  if (g.b_scale_vec) set_attr(p.desc, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, g.b_scale_vec, "cuBLASLt B scale");
  const std::int32_t zero_i = 0;
  const float zero_f = 0.0f;
  const void* beta = g.scale_type == CUDA_R_32I ? static_cast<const void*>(&zero_i) : static_cast<const void*>(&zero_f);
  check(cublasLtMatmul(lt, p.desc, alpha, a, p.a, b, p.b, beta, d, p.d, d, p.d, &p.algo, lt_ws, lt_ws_bytes, stream),
        "cublasLtMatmul");
  return true;
}

}  // namespace detail

namespace {

cudaDataType_t cuda_type(dtype t) { return t == dtype::float16 ? CUDA_R_16F : CUDA_R_16BF; }

/// The scale of weight row `row` (per-row or per-tensor file layout).
template <class T>
__device__ __forceinline__ float weight_scale(const T* s, scale_axis axis, std::int64_t row) {
  return dev::elem<T>::to_float(s[axis == scale_axis::tensor ? 0 : row]);
}

/// Outer-vector scales for cuBLASLt: a[row] = w_scale(row), b[i] = x_scale.
template <class T>
__global__ void fill_scales_kernel(const T* __restrict__ ws, scale_axis axis, std::int64_t n, float x_scale,
                                   std::int64_t m, float* __restrict__ a, float* __restrict__ b) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n + m;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    if (i < n)
      a[i] = weight_scale(ws, axis, i);
    else
      b[i - n] = x_scale;
  }
}

/// y[r, c] = T(acc[r][c] · (x_scale · w_scale[c]) (+ bias[c])); acc is column-major [n, m] (ld n), int32 or float.
template <class T, class A>
__global__ void scale_epilogue_kernel(const A* __restrict__ acc, std::int64_t m, std::int64_t n, float x_scale,
                                      const T* __restrict__ ws, scale_axis axis, const T* __restrict__ bias,
                                      T* __restrict__ y, std::int64_t ldy) {
  using E = dev::elem<T>;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < m * n;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t r = e / n, c = e % n;
    float v = static_cast<float>(acc[e]) * (x_scale * weight_scale(ws, axis, c));
    if (bias) v += E::to_float(bias[c]);
    y[r * ldy + c] = E::from_float(v);
  }
}

unsigned grid_for(std::int64_t elements, int threads) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((elements + threads - 1) / threads, 1, 65535));
}

template <class F>
void with_type(dtype t, F&& f) {
  if (t == dtype::float16)
    f(__half{});
  else
    f(__nv_bfloat16{});
}

void check_file_weight(const char* who, const qbytes_device& w, code_type want) {
  if (w.code != want) throw unsupported_error(std::string(who) + ": the weight's codes are not of this path's type");
  if (w.axis == scale_axis::column)
    throw unsupported_error(std::string(who) + ": scales per input column; use dequantize_matmul_fallback");
  if (!w.data || !w.scale) throw shape_error(std::string(who) + ": null weight pointers");
}

struct lt_parts {
  unsigned char* acc;  ///< m * n int32 / float32 (column-major [n, m])
  float* a_vec;        ///< n
  float* b_vec;        ///< m
  unsigned char* lt;   ///< cuBLASLt's scratch
  std::size_t lt_bytes;
};

std::size_t lt_total(const context& ctx, std::int64_t m, std::int64_t n) {
  using detail::align_up;
  return align_up(static_cast<std::size_t>(m * n) * 4, 256) + align_up(static_cast<std::size_t>(n) * 4, 256) +
         align_up(static_cast<std::size_t>(m) * 4, 256) + detail::lt_scratch_bytes(ctx.compute_capability());
}

lt_parts split_workspace(const context& ctx, unsigned char* base, std::int64_t m, std::int64_t n) {
  using detail::align_up;
  lt_parts p{};
  p.acc = base;
  base += align_up(static_cast<std::size_t>(m * n) * 4, 256);
  p.a_vec = reinterpret_cast<float*>(base);
  base += align_up(static_cast<std::size_t>(n) * 4, 256);
  p.b_vec = reinterpret_cast<float*>(base);
  base += align_up(static_cast<std::size_t>(m) * 4, 256);
  p.lt = base;
  p.lt_bytes = detail::lt_scratch_bytes(ctx.compute_capability());
  return p;
}

}  // namespace

std::size_t cublaslt_workspace_bytes(const context& ctx, std::int64_t m, std::int64_t n) {
  if (m <= 0 || n <= 0) return 0;
  return lt_total(ctx, m, n);
}

void dense_matmul(const context& ctx, const void* w, std::int64_t n, std::int64_t k, dtype type, const void* x,
                  std::int64_t m, std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream,
                  workspace ws) {
  detail::check_matmul_args("dense_matmul", m, n, k, x, ldx, y, ldy, false);
  if (m == 0) return;
  const detail::device_guard guard(ctx.device());
  const cudaStream_t s = detail::as_stream(stream);
  const std::size_t lt_bytes = detail::lt_scratch_bytes(ctx.compute_capability());
  const detail::scratch scratch(ws, lt_bytes, s, "dense_matmul");
  detail::lt_gemm g{
      cuda_type(type), cuda_type(type), cuda_type(type), CUBLAS_COMPUTE_32F, CUDA_R_32F, m, n, k, ldx, ldy, bias};
  const float one = 1.0f;
  if (!detail::run_lt(ctx, g, &one, w, x, y, scratch.data(), lt_bytes, s))
    throw unsupported_error("dense_matmul: cuBLASLt has no algorithm for this problem");
}

void int8_matmul_cublaslt(const context& ctx, const qbytes_device& w, dtype type, const void* xq, float x_scale,
                          std::int64_t m, std::int64_t ldx, void* y, std::int64_t ldy, const void* bias,
                          stream_t stream, workspace ws) {
  check_file_weight("int8_matmul_cublaslt", w, code_type::int8);
  detail::check_matmul_args("int8_matmul_cublaslt", m, w.n, w.k, xq, ldx, y, ldy, false);
  if (w.k % 4 != 0 || ldx % 4 != 0 || !detail::aligned16(xq) || !detail::aligned16(w.data))
    throw unsupported_error("int8_matmul_cublaslt: k and ldx must be multiples of 4 and x, W 16-byte aligned");
  if (w.k > 131072) throw unsupported_error("int8_matmul_cublaslt: k > 131072 could overflow the int32 accumulators");
  if (m == 0) return;
  const detail::device_guard guard(ctx.device());
  const cudaStream_t s = detail::as_stream(stream);
  const detail::scratch scratch(ws, lt_total(ctx, m, w.n), s, "int8_matmul_cublaslt");
  const lt_parts parts = split_workspace(ctx, scratch.data(), m, w.n);
  detail::lt_gemm g{CUDA_R_8I, CUDA_R_8I, CUDA_R_32I, CUBLAS_COMPUTE_32I, CUDA_R_32I, m, w.n, w.k, ldx, w.n, nullptr};
  const std::int32_t one = 1;
  if (!detail::run_lt(ctx, g, &one, w.data, xq, parts.acc, parts.lt, parts.lt_bytes, s))
    throw unsupported_error("int8_matmul_cublaslt: cuBLASLt has no int8 algorithm for this problem");
  with_type(type, [&](auto tag) {
    using T = decltype(tag);
    scale_epilogue_kernel<T, std::int32_t><<<grid_for(m * w.n, 256), 256, 0, s>>>(
        reinterpret_cast<const std::int32_t*>(parts.acc), m, w.n, x_scale, static_cast<const T*>(w.scale), w.axis,
        static_cast<const T*>(bias), static_cast<T*>(y), ldy);
  });
  detail::check_launch("int8_matmul_cublaslt epilogue");
}

void fp8_matmul_cublaslt(const context& ctx, const qbytes_device& w, dtype type, const void* xq, float x_scale,
                         std::int64_t m, std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream,
                         workspace ws) {
  check_file_weight("fp8_matmul_cublaslt", w, code_type::float8_e4m3fn);
  detail::check_matmul_args("fp8_matmul_cublaslt", m, w.n, w.k, xq, ldx, y, ldy, false);
  if (ctx.compute_capability() < 89)
    throw unsupported_error("fp8_matmul_cublaslt: float8 matrix multiplication needs compute capability 8.9 or newer");
  if (w.k % 16 != 0 || ldx % 16 != 0 || ldy % 8 != 0 || !detail::aligned16(xq) || !detail::aligned16(w.data) ||
      !detail::aligned16(y))
    throw unsupported_error(
        "fp8_matmul_cublaslt: k and ldx must be multiples of 16, ldy of 8, pointers 16-byte aligned");
  if (m == 0) return;
  const detail::device_guard guard(ctx.device());
  const cudaStream_t s = detail::as_stream(stream);
  const detail::scratch scratch(ws, lt_total(ctx, m, w.n), s, "fp8_matmul_cublaslt");
  const lt_parts parts = split_workspace(ctx, scratch.data(), m, w.n);
  bool done = false;
  with_type(type, [&](auto tag) {
    using T = decltype(tag);
    // 1. per-row scales of W and x applied by cuBLASLt itself (outer-vector scaling), output in T
    fill_scales_kernel<T><<<grid_for(m + w.n, 256), 256, 0, s>>>(static_cast<const T*>(w.scale), w.axis, w.n, x_scale,
                                                                 m, parts.a_vec, parts.b_vec);
    detail::check_launch("fp8_matmul_cublaslt scales");
    detail::lt_gemm g{
        CUDA_R_8F_E4M3, CUDA_R_8F_E4M3, cuda_type(type), CUBLAS_COMPUTE_32F, CUDA_R_32F, m, w.n, w.k, ldx, ldy,
        bias,           parts.a_vec,    parts.b_vec};
    const float one = 1.0f;
    done = detail::run_lt(ctx, g, &one, w.data, xq, y, parts.lt, parts.lt_bytes, s);
    if (done) return;
    // 2. otherwise: a float32 product scaled by x_scale, then the per-row scales in an epilogue kernel
    detail::lt_gemm g32{
        CUDA_R_8F_E4M3, CUDA_R_8F_E4M3, CUDA_R_32F, CUBLAS_COMPUTE_32F, CUDA_R_32F, m, w.n, w.k, ldx, w.n, nullptr};
    if (!detail::run_lt(ctx, g32, &one, w.data, xq, parts.acc, parts.lt, parts.lt_bytes, s))
      throw unsupported_error("fp8_matmul_cublaslt: cuBLASLt has no float8 algorithm for this problem");
    scale_epilogue_kernel<T, float><<<grid_for(m * w.n, 256), 256, 0, s>>>(
        reinterpret_cast<const float*>(parts.acc), m, w.n, x_scale, static_cast<const T*>(w.scale), w.axis,
        static_cast<const T*>(bias), static_cast<T*>(y), ldy);
    detail::check_launch("fp8_matmul_cublaslt epilogue");
  });
}

}  // namespace cuda
QUANTO_END_NAMESPACE
