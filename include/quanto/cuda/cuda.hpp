// quanto/cuda/cuda.hpp: the GPU matmuls of the optional quanto::cuda component (CMake option
// QUANTO_ENABLE_CUDA, target quanto::cuda; the kernels are in src/cuda/). This header needs no CUDA
// header: streams and device memory are opaque pointers, element types a small enum. It compiles
// anywhere; linking needs quanto::cuda.
//
//   y[m, n] = x[m, k] · Wᵀ (+ bias)         x, y, bias in the model dtype (float16 or bfloat16), row-major
//
//   fused kernels (weights in the layouts of repack.hpp, dequantized in registers on tensor cores):
//     w4a16_matmul     qint4 group-wise affine (float shift or zero-point) x float16/bfloat16
//     w8a16_matmul     qint8 or float8 e4m3fn per-channel x float16/bfloat16
//   cuBLASLt (weights in optimum-quanto's file layout, no repacking):
//     int8_matmul_cublaslt   int8 activations (one scale) x int8 weights (per-channel scale)
//     fp8_matmul_cublaslt    e4m3fn activations (one scale) x e4m3fn weights (per-channel), sm_89+
//   dequantize_matmul_fallback: any quanto weight in the file layout (qint2/qint4 any group, any
//     8-bit qtype and axis): dequantized exactly as quanto does into a scratch buffer, then cuBLASLt.
//     Shapes the fused kernels refuse take this path; the GPU tests use it as a reference too.
//
// Contract: every function enqueues work on `stream` and returns without waiting. Arguments are
// checked first: shape_error for sizes or leading dimensions that do not fit, unsupported_error for
// what a path does not take (a shape, an alignment, a GPU without float8); `cuda_error` (with the
// CUDA or cuBLAS status) when the runtime or a library call fails. A kernel's own asynchronous fault
// surfaces at the next synchronising call, as with any CUDA work. Pointers are device pointers of
// the context's device, 16-byte aligned for the fused kernels and cuBLASLt, leading dimensions
// multiples of 8 elements; a function never reads beyond m rows of x nor writes beyond m rows of y.
// A `context` is safe to share between threads; a workspace is not (one per concurrent call).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/cuda/repack.hpp"

QUANTO_BEGIN_NAMESPACE
namespace cuda {

/// The activations' and outputs' element type (the model dtype of the weight's scales).
enum class dtype : int { float16 = 0, bfloat16 = 1 };

template <CudaFloat T>
inline constexpr dtype dtype_of = std::is_same_v<T, float16> ? dtype::float16 : dtype::bfloat16;

/// 8-bit codes of a weight or an activation.
enum class code_type : int { int8 = 0, float8_e4m3fn = 1, float8_e5m2 = 2 };

/// Where an 8-bit weight's scales lie (quanto's axis): one per output row, one for the tensor, or
/// one per input column.
enum class scale_axis : int { row = 0, tensor = 1, column = 2 };

/// A CUDA runtime or cuBLAS failure. `status()` is the cudaError_t or cublasStatus_t value.
class cuda_error : public error {
 public:
  cuda_error(const std::string& what, int status) : error(what), status_(status) {}
  int status() const noexcept { return status_; }

 private:
  int status_;
};

/// A cudaStream_t (nullptr: the legacy default stream).
using stream_t = void*;

/// Device memory a call may use for its intermediates; null: the call takes stream-ordered memory
/// (cudaMallocAsync / cudaFreeAsync on its stream) — correct, but hot paths should pass one.
struct workspace {
  void* ptr = nullptr;
  std::size_t bytes = 0;
};

/// The number of CUDA devices; 0 when there is none or no driver (never throws).
int device_count() noexcept;

/// Per-device state: the cuBLASLt handle, the device's properties, cached launch and cuBLASLt plans.
/// Calls made with a context run on its device (the current device is switched and restored).
class context {
 public:
  /// For `device` (-1: the current device). Throws cuda_error when it cannot be used.
  explicit context(int device = -1);
  ~context();
  context(context&&) noexcept;
  context& operator=(context&&) noexcept;
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  int device() const noexcept;
  int sm_count() const noexcept;
  /// 10 * major + minor: 80 (A100), 89 (L4, L40), 90 (H100, H200).
  int compute_capability() const noexcept;
  std::size_t l2_bytes() const noexcept;
  std::string name() const;

  struct impl;
  impl& get() const noexcept { return *p_; }

 private:
  std::unique_ptr<impl> p_;
};

/// Owning device memory (cudaMalloc / cudaFree), for weights and buffers.
class device_buffer {
 public:
  device_buffer() = default;
  explicit device_buffer(std::size_t bytes);
  ~device_buffer();
  device_buffer(device_buffer&& o) noexcept : ptr_(o.ptr_), bytes_(o.bytes_) {
    o.ptr_ = nullptr;
    o.bytes_ = 0;
  }
  device_buffer& operator=(device_buffer&& o) noexcept;
  device_buffer(const device_buffer&) = delete;
  device_buffer& operator=(const device_buffer&) = delete;

  void* data() const noexcept { return ptr_; }
  std::size_t size() const noexcept { return bytes_; }
  /// Copies `bytes` from host memory (enqueued on `stream`; pageable memory makes it synchronous).
  void upload(const void* host, std::size_t bytes, stream_t stream = nullptr);
  void download(void* host, std::size_t bytes, stream_t stream = nullptr) const;
  /// Fills the whole buffer with one byte value.
  void fill(unsigned char value, stream_t stream = nullptr);

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

/// Waits for the work enqueued on `stream`; throws cuda_error if any of it failed.
void synchronize(stream_t stream = nullptr);

// ---- weights on the device ----------------------------------------------------------------------------

/// A w4a16_weight in device memory (a view: `codes` and `meta` as repack.hpp lays them out).
struct w4a16_device {
  const void* codes = nullptr;
  const void* meta = nullptr;
  std::int64_t n = 0, k = 0, group = 0;
  bool zero_point = false;
};

/// A w8a16_weight in device memory.
struct w8a16_device {
  const void* codes = nullptr;
  const void* scale = nullptr;
  std::int64_t n = 0, k = 0;
  code_type code = code_type::int8;  ///< int8 or float8_e4m3fn
};

/// A qint2/qint4 weight in optimum-quanto's file layout, in device memory: `packed` (planar along
/// dim 0 of the grouped codes), `scale` and `shift` (model dtype, or uint8 zero-points), one per group.
struct qbits_device {
  const void* packed = nullptr;
  const void* scale = nullptr;
  const void* shift = nullptr;
  int bits = 4;
  std::int64_t n = 0, k = 0;  ///< the weight as a matrix [out, in * kh * kw]
  std::int64_t group = 0;     ///< 0: one group per row (quanto's group_size None)
  bool zero_point = false;
};

/// An 8-bit weight in optimum-quanto's file layout, in device memory: codes [n, k], model-dtype scale.
struct qbytes_device {
  const void* data = nullptr;
  const void* scale = nullptr;
  std::int64_t n = 0, k = 0;
  code_type code = code_type::int8;
  scale_axis axis = scale_axis::row;
};

/// A repacked weight uploaded to the device, with its view.
struct w4a16_uploaded {
  device_buffer codes, meta;
  w4a16_device view;
};
struct w8a16_uploaded {
  device_buffer codes, scale;
  w8a16_device view;
};

template <CudaFloat T, class Shift>
w4a16_uploaded upload(const w4a16_weight<T, Shift>& p, stream_t stream = nullptr) {
  w4a16_uploaded u{device_buffer(p.codes.size()), device_buffer(p.meta.size() * sizeof(T)), {}};
  u.codes.upload(p.codes.data(), p.codes.size(), stream);
  u.meta.upload(p.meta.data(), p.meta.size() * sizeof(T), stream);
  u.view = {u.codes.data(), u.meta.data(), p.n, p.k, p.group, w4a16_weight<T, Shift>::zero_point};
  return u;
}

template <CudaByteQType Q, CudaFloat T>
w8a16_uploaded upload(const w8a16_weight<Q, T>& p, stream_t stream = nullptr) {
  w8a16_uploaded u{device_buffer(p.codes.size()), device_buffer(p.scale.size() * sizeof(T)), {}};
  u.codes.upload(p.codes.data(), p.codes.size(), stream);
  u.scale.upload(p.scale.data(), p.scale.size() * sizeof(T), stream);
  u.view = {u.codes.data(), u.scale.data(), p.n, p.k,
            std::is_same_v<Q, qint8> ? code_type::int8 : code_type::float8_e4m3fn};
  return u;
}

// ---- fused kernels ------------------------------------------------------------------------------------

/// Which w4a16 kernel runs: tensor cores (mma.sync) or the GEMV-style kernel (m <= 4, float32 FMAs
/// on the CUDA cores). `automatic` takes the GEMV kernel for m <= `matmul_options::gemv_max_m`.
enum class w4a16_path : int { automatic = 0, mma = 1, gemv = 2 };

struct matmul_options {
  /// Split of k over thread blocks (partial sums in float32, reduced in a fixed order, so results
  /// do not depend on timing); 0: chosen from the shape and the GPU (enough blocks to fill it).
  int split_k = 0;
  w4a16_path path = w4a16_path::automatic;
  /// Largest m that `automatic` sends to the GEMV kernel (0: never; at most 4). To be set from the
  /// H100 benchmark (docs/cuda.md); until measured the tensor-core kernel is the default.
  int gemv_max_m = 0;
};

/// Bytes of workspace a w4a16 / w8a16 call of this shape uses (0 when k is not split). A smaller
/// workspace is accepted: it limits the split.
std::size_t w4a16_workspace_bytes(const context& ctx, std::int64_t m, std::int64_t n, std::int64_t k,
                                  const matmul_options& opt = {});
std::size_t w8a16_workspace_bytes(const context& ctx, std::int64_t m, std::int64_t n, std::int64_t k,
                                  const matmul_options& opt = {});

/// y = x · Wᵀ (+ bias) for a repacked qint4 weight; x [m, k] (row stride ldx), y [m, n] (ldy),
/// bias [n] or null, all of type `type` (the weight's model dtype). Accumulates in float32; each
/// weight is dequantized exactly as quanto does (T(T(scale·q) − shift), or T(scale·(q − zero_point))).
void w4a16_matmul(const context& ctx, const w4a16_device& w, dtype type, const void* x, std::int64_t m,
                  std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream, workspace ws = {},
                  const matmul_options& opt = {});

/// y = x · Wᵀ (+ bias) for a repacked qint8 or float8 e4m3fn weight (T(scale · q) per element).
void w8a16_matmul(const context& ctx, const w8a16_device& w, dtype type, const void* x, std::int64_t m,
                  std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream, workspace ws = {},
                  const matmul_options& opt = {});

// ---- cuBLASLt -----------------------------------------------------------------------------------------

/// Workspace of the cuBLASLt paths for this shape (the int32 / float32 product, scale vectors and
/// cuBLASLt's own scratch).
std::size_t cublaslt_workspace_bytes(const context& ctx, std::int64_t m, std::int64_t n);

/// w8a8: y = T(float(xq · Wqᵀ) · x_scale · w_scale[col] (+ bias)), the product exact in int32.
/// `w` is the file layout (int8 [n, k] codes, scale per row or per tensor); xq int8 [m, k] (ldx).
/// k must be a multiple of 4 and at most 131072 (no int32 overflow).
void int8_matmul_cublaslt(const context& ctx, const qbytes_device& w, dtype type, const void* xq, float x_scale,
                          std::int64_t m, std::int64_t ldx, void* y, std::int64_t ldy, const void* bias,
                          stream_t stream, workspace ws = {});

/// fp8 x fp8: e4m3fn activations (one scale) x e4m3fn weights (per row or per tensor), float32
/// accumulation, y in `type`. Needs compute capability 8.9 or newer; k a multiple of 16.
void fp8_matmul_cublaslt(const context& ctx, const qbytes_device& w, dtype type, const void* xq, float x_scale,
                         std::int64_t m, std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream,
                         workspace ws = {});

// ---- dequantize, and the fallback ---------------------------------------------------------------------

/// The weight dequantized exactly as optimum-quanto does (bit for bit with quanto::dequantize()),
/// into out [n, k] of `type`.
void dequantize(const context& ctx, const qbits_device& w, dtype type, void* out, stream_t stream);
void dequantize(const context& ctx, const qbytes_device& w, dtype type, void* out, stream_t stream);

/// Workspace of the fallback: the dequantized weight plus cuBLASLt's scratch.
std::size_t fallback_workspace_bytes(const context& ctx, std::int64_t n, std::int64_t k, dtype type);

/// Dequantize, then a float16/bfloat16 GEMM with float32 accumulation (cuBLASLt, bias in its
/// epilogue). Any shape, any alignment cuBLASLt takes (2-byte elements).
void dequantize_matmul_fallback(const context& ctx, const qbits_device& w, dtype type, const void* x, std::int64_t m,
                                std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream,
                                workspace ws = {});
void dequantize_matmul_fallback(const context& ctx, const qbytes_device& w, dtype type, const void* x, std::int64_t m,
                                std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream,
                                workspace ws = {});

/// A dense float16/bfloat16 GEMM through cuBLASLt (what the fallback runs after dequantizing; the
/// benchmarks' baseline): y = x · Wᵀ (+ bias), W [n, k] row-major of `type`.
void dense_matmul(const context& ctx, const void* w, std::int64_t n, std::int64_t k, dtype type, const void* x,
                  std::int64_t m, std::int64_t ldx, void* y, std::int64_t ldy, const void* bias, stream_t stream,
                  workspace ws = {});

}  // namespace cuda
QUANTO_END_NAMESPACE
