// src/cuda/fallback.cu: dequantization of optimum-quanto's file layouts on the GPU, bit for bit with
// quanto (and quanto::dequantize), and the dequantize-then-cuBLASLt fallback for every weight the
// fused kernels do not take.
#include "common.cuh"

#include <cuda_fp8.h>

#include <algorithm>

QUANTO_BEGIN_NAMESPACE
namespace cuda {
namespace {

// quanto's rounding steps in the model dtype T: each op exact in float32, then rounded once to T.
// __fmul_rn / __fsub_rn are never contracted into an FMA.
template <class T>
__device__ __forceinline__ T t_mul(T a, float b) {
  return dev::elem<T>::from_float(__fmul_rn(dev::elem<T>::to_float(a), b));
}
template <class T>
__device__ __forceinline__ T t_sub(T a, T b) {
  return dev::elem<T>::from_float(__fsub_rn(dev::elem<T>::to_float(a), dev::elem<T>::to_float(b)));
}

/// qint2/qint4: element e of the [n, k] weight is element (row, c) = (e / cols, e % cols) of the grouped
/// codes [N, cols] (cols = group size, or k ungrouped), packed planar along dim 0 in R = ceil(N / (8 /
/// bits)) rows: plane row / R, byte row % R. Its scale and shift are those of group row `row`.
template <class T, bool ZP>
__global__ void dequantize_qbits_kernel(const unsigned char* __restrict__ packed, const T* __restrict__ scale,
                                        const void* __restrict__ shift, int bits, std::int64_t total, std::int64_t cols,
                                        T* __restrict__ out) {
  const std::int64_t rows = total / cols, per_byte = 8 / bits, r_rows = (rows + per_byte - 1) / per_byte;
  const unsigned mask = (1u << bits) - 1u;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t row = e / cols, c = e % cols;
    const std::int64_t plane = row / r_rows, r = row % r_rows;
    const unsigned q = (packed[r * cols + c] >> (bits * plane)) & mask;
    const T s = scale[row];
    if constexpr (ZP) {
      // scale * (int8(q) - int8(zero_point)), an int8 difference (wrapping as torch's int8 tensors do)
      const unsigned char z = static_cast<const unsigned char*>(shift)[row];
      const auto d = static_cast<signed char>(static_cast<int>(static_cast<signed char>(q)) -
                                              static_cast<int>(static_cast<signed char>(z)));
      out[e] = t_mul(s, static_cast<float>(d));
    } else {
      out[e] = t_sub(t_mul(s, static_cast<float>(q)), static_cast<const T*>(shift)[row]);  // scale * q - shift
    }
  }
}

template <class T>
__device__ __forceinline__ float code_value(const unsigned char* data, std::int64_t e, code_type code) {
  const unsigned char c = data[e];
  if (code == code_type::int8) return static_cast<float>(static_cast<signed char>(c));
  __nv_fp8_storage_t raw = c;
  const __half_raw h = __nv_cvt_fp8_to_halfraw(raw, code == code_type::float8_e4m3fn ? __NV_E4M3 : __NV_E5M2);
  return __half2float(__half(h));  // every e4m3 / e5m2 value (NaN, inf included) is a float16 value
}

/// 8-bit: T(scale * q), the scale per row, per tensor or per column.
template <class T>
__global__ void dequantize_qbytes_kernel(const unsigned char* __restrict__ data, const T* __restrict__ scale,
                                         code_type code, scale_axis axis, std::int64_t n, std::int64_t k,
                                         T* __restrict__ out) {
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < n * k;
       e += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t si = axis == scale_axis::row ? e / k : axis == scale_axis::column ? e % k : 0;
    out[e] = t_mul(scale[si], code_value<T>(data, e, code));
  }
}

unsigned grid_for(std::int64_t elements, int threads) {
  return static_cast<unsigned>(std::clamp<std::int64_t>((elements + threads - 1) / threads, 1, 65535 * 4));
}

void check_qbits(const qbits_device& w) {
  if (w.bits != 2 && w.bits != 4)
    throw unsupported_error("dequantize: qbits weights have 2 or 4 bits, not " + std::to_string(w.bits));
  if (w.n <= 0 || w.k <= 0) throw shape_error("dequantize: empty weight");
  if (w.group < 0 || (w.group > 0 && (w.n * w.k) % w.group != 0) || (w.group > 0 && w.k % w.group != 0))
    throw shape_error("dequantize: group size " + std::to_string(w.group) +
                      " does not divide k = " + std::to_string(w.k));
  if (!w.packed || !w.scale || !w.shift) throw shape_error("dequantize: null weight pointers");
}

void check_qbytes(const qbytes_device& w) {
  if (w.n <= 0 || w.k <= 0) throw shape_error("dequantize: empty weight");
  if (!w.data || !w.scale) throw shape_error("dequantize: null weight pointers");
}

void launch_dequantize(const qbits_device& w, dtype type, void* out, cudaStream_t s) {
  const std::int64_t total = w.n * w.k, cols = w.group > 0 ? w.group : w.k;
  const auto* packed = static_cast<const unsigned char*>(w.packed);
  const unsigned blocks = grid_for(total, 256);
  if (type == dtype::float16) {
    if (w.zero_point)
      dequantize_qbits_kernel<__half, true><<<blocks, 256, 0, s>>>(packed, static_cast<const __half*>(w.scale), w.shift,
                                                                   w.bits, total, cols, static_cast<__half*>(out));
    else
      dequantize_qbits_kernel<__half, false><<<blocks, 256, 0, s>>>(
          packed, static_cast<const __half*>(w.scale), w.shift, w.bits, total, cols, static_cast<__half*>(out));
  } else {
    using B = __nv_bfloat16;
    if (w.zero_point)
      dequantize_qbits_kernel<B, true><<<blocks, 256, 0, s>>>(packed, static_cast<const B*>(w.scale), w.shift, w.bits,
                                                              total, cols, static_cast<B*>(out));
    else
      dequantize_qbits_kernel<B, false><<<blocks, 256, 0, s>>>(packed, static_cast<const B*>(w.scale), w.shift, w.bits,
                                                               total, cols, static_cast<B*>(out));
  }
  detail::check_launch("dequantize (qbits)");
}

void launch_dequantize(const qbytes_device& w, dtype type, void* out, cudaStream_t s) {
  const auto* data = static_cast<const unsigned char*>(w.data);
  const unsigned blocks = grid_for(w.n * w.k, 256);
  if (type == dtype::float16)
    dequantize_qbytes_kernel<__half><<<blocks, 256, 0, s>>>(data, static_cast<const __half*>(w.scale), w.code, w.axis,
                                                            w.n, w.k, static_cast<__half*>(out));
  else
    dequantize_qbytes_kernel<__nv_bfloat16><<<blocks, 256, 0, s>>>(
        data, static_cast<const __nv_bfloat16*>(w.scale), w.code, w.axis, w.n, w.k, static_cast<__nv_bfloat16*>(out));
  detail::check_launch("dequantize (qbytes)");
}

template <class W>
void fallback(const context& ctx, const W& w, dtype type, const void* x, std::int64_t m, std::int64_t ldx, void* y,
              std::int64_t ldy, const void* bias, stream_t stream, workspace ws) {
  detail::check_matmul_args("dequantize_matmul_fallback", m, w.n, w.k, x, ldx, y, ldy, false);
  if (m == 0) return;
  const detail::device_guard guard(ctx.device());
  const cudaStream_t s = detail::as_stream(stream);
  const std::size_t wbytes = detail::align_up(static_cast<std::size_t>(w.n * w.k) * 2, 256);
  const std::size_t lt_bytes = detail::lt_scratch_bytes(ctx.compute_capability());
  const detail::scratch scratch(ws, wbytes + lt_bytes, s, "dequantize_matmul_fallback");
  launch_dequantize(w, type, scratch.data(), s);
  const cudaDataType_t t = type == dtype::float16 ? CUDA_R_16F : CUDA_R_16BF;
  detail::lt_gemm g{t, t, t, CUBLAS_COMPUTE_32F, CUDA_R_32F, m, w.n, w.k, ldx, ldy, bias};
  const float one = 1.0f;
  if (!detail::run_lt(ctx, g, &one, scratch.data(), x, y, scratch.data() + wbytes, lt_bytes, s))
    throw unsupported_error("dequantize_matmul_fallback: cuBLASLt has no algorithm for this problem");
}

}  // namespace

void dequantize(const context& ctx, const qbits_device& w, dtype type, void* out, stream_t stream) {
  check_qbits(w);
  const detail::device_guard guard(ctx.device());
  launch_dequantize(w, type, out, detail::as_stream(stream));
}

void dequantize(const context& ctx, const qbytes_device& w, dtype type, void* out, stream_t stream) {
  check_qbytes(w);
  const detail::device_guard guard(ctx.device());
  launch_dequantize(w, type, out, detail::as_stream(stream));
}

std::size_t fallback_workspace_bytes(const context& ctx, std::int64_t n, std::int64_t k, dtype type) {
  (void)type;  // both model dtypes are 2 bytes
  return detail::align_up(static_cast<std::size_t>(n * k) * 2, 256) +
         detail::lt_scratch_bytes(ctx.compute_capability());
}

void dequantize_matmul_fallback(const context& ctx, const qbits_device& w, dtype type, const void* x, std::int64_t m,
                                std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream,
                                workspace ws) {
  check_qbits(w);
  fallback(ctx, w, type, x, m, ldx, y, ldy, bias, stream, ws);
}

void dequantize_matmul_fallback(const context& ctx, const qbytes_device& w, dtype type, const void* x, std::int64_t m,
                                std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream,
                                workspace ws) {
  check_qbytes(w);
  fallback(ctx, w, type, x, m, ldx, y, ldy, bias, stream, ws);
}

}  // namespace cuda
QUANTO_END_NAMESPACE
