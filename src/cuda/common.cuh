// src/cuda/common.cuh: what the quanto::cuda translation units share — error checks, the context's
// state, scratch memory, argument checks, and the PTX wrappers the kernels are written with.
#pragma once

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <type_traits>

#include "quanto/cuda/cuda.hpp"

QUANTO_BEGIN_NAMESPACE
namespace cuda {
namespace detail {

// ---- errors -------------------------------------------------------------------------------------------

[[noreturn]] void throw_cuda(cudaError_t e, const char* what);
[[noreturn]] void throw_cublas(cublasStatus_t s, const char* what);

inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) throw_cuda(e, what);
}
inline void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS) throw_cublas(s, what);
}
/// After a kernel launch: a bad configuration is reported here, a fault in the kernel later.
inline void check_launch(const char* what) { check(cudaGetLastError(), what); }

inline cudaStream_t as_stream(stream_t s) noexcept { return static_cast<cudaStream_t>(s); }

// ---- the context --------------------------------------------------------------------------------------

/// Switches to a device for a scope and back.
class device_guard {
 public:
  explicit device_guard(int device) {
    check(cudaGetDevice(&previous_), "cudaGetDevice");
    if (previous_ != device) check(cudaSetDevice(device), "cudaSetDevice");
  }
  ~device_guard() {
    int now = -1;
    if (cudaGetDevice(&now) == cudaSuccess && now != previous_) (void)cudaSetDevice(previous_);
  }
  device_guard(const device_guard&) = delete;
  device_guard& operator=(const device_guard&) = delete;

 private:
  int previous_ = 0;
};

}  // namespace detail

struct context::impl {
  int device = 0;
  int sm_count = 0;
  int cc = 0;
  std::size_t l2 = 0;
  std::size_t smem_optin = 0;  ///< the largest dynamic shared memory a block may ask for
  std::string name;
  cublasLtHandle_t lt = nullptr;

  mutable std::mutex mu;
  /// Blocks per multiprocessor of a kernel at a given dynamic shared memory size (after raising its
  /// limit), computed once per kernel.
  std::map<std::pair<const void*, std::size_t>, int> occupancy;

  /// cuBLASLt plans (descriptors and the chosen algorithm per problem), owned here, made and used by
  /// cublaslt.cu under `lt_mu` (type-erased: this header does not know their type).
  std::mutex lt_mu;
  std::shared_ptr<void> lt_plans;

  /// Occupancy of `kernel` with `threads` threads and `smem` bytes of dynamic shared memory; raises
  /// the kernel's shared-memory limit first (once).
  int blocks_per_sm(const void* kernel, int threads, std::size_t smem);
};

namespace detail {

// ---- scratch memory -----------------------------------------------------------------------------------

/// The caller's workspace, or stream-ordered memory owned for the duration of one call.
class scratch {
 public:
  scratch(workspace ws, std::size_t need, cudaStream_t stream, const char* who);
  ~scratch();
  scratch(const scratch&) = delete;
  scratch& operator=(const scratch&) = delete;
  unsigned char* data() const noexcept { return ptr_; }

 private:
  unsigned char* ptr_ = nullptr;
  bool owned_ = false;
  cudaStream_t stream_ = nullptr;
};

inline std::size_t align_up(std::size_t v, std::size_t a) { return (v + a - 1) / a * a; }

/// cuBLASLt's own scratch: 32 MiB on Hopper (what NVIDIA recommends there), 4 MiB before.
inline std::size_t lt_scratch_bytes(int cc) { return cc >= 90 ? (std::size_t{32} << 20) : (std::size_t{4} << 20); }

// ---- argument checks ----------------------------------------------------------------------------------

inline bool aligned16(const void* p) noexcept { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

/// m, lds and pointers of a matmul call (shape_error / unsupported_error).
void check_matmul_args(const char* who, std::int64_t m, std::int64_t n, std::int64_t k, const void* x, std::int64_t ldx,
                       const void* y, std::int64_t ldy, bool need_alignment);

// ---- the split-k reduction ----------------------------------------------------------------------------

/// y[r, c] = T(sum over s of partial[s][r][c] (+ bias[c])), s in order; partial is [splits][m][n].
void launch_splitk_reduce(dtype type, const float* partial, int splits, std::int64_t m, std::int64_t n,
                          const void* bias, void* y, std::int64_t ldy, cudaStream_t stream);

// ---- cuBLASLt -----------------------------------------------------------------------------------------

/// y (col-major [n, m], leading dimension ldy) = W · x for W [n, k] row-major and x [m, k] row-major
/// (ldx): cuBLASLt's "TN" form, used by every cuBLASLt path here.
struct lt_gemm {
  cudaDataType_t a_type, b_type, d_type;
  cublasComputeType_t compute;
  cudaDataType_t scale_type;
  std::int64_t m, n, k, ldx, ldd;
  const void* bias = nullptr;          ///< of d_type, [n]
  const float* a_scale_vec = nullptr;  ///< outer-vector (per-row of W) float32 scales, fp8 only
  const float* b_scale_vec = nullptr;  ///< outer-vector (per-row of x) float32 scales, fp8 only
};

/// Runs one cuBLASLt matmul. Returns false (and runs nothing) when cuBLASLt has no algorithm for it;
/// throws cuda_error on any other failure. `alpha` points to a float or an int32 (scale_type).
bool run_lt(const context& ctx, const lt_gemm& g, const void* alpha, const void* a, const void* b, void* d, void* lt_ws,
            std::size_t lt_ws_bytes, cudaStream_t stream);

}  // namespace detail
}  // namespace cuda
QUANTO_END_NAMESPACE

// ---- device helpers: PTX wrappers ------------------------------------------------------------------------

QUANTO_BEGIN_NAMESPACE
namespace cuda::dev {

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

/// 16 bytes global -> shared, cached in L2 only (weights: streamed once).
__device__ __forceinline__ void cp_async_cg16(std::uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
/// 16 bytes global -> shared through L1 (activations: read by many blocks); zeros when !valid.
__device__ __forceinline__ void cp_async_ca16(std::uint32_t dst, const void* src, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.ca.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(bytes) : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

__device__ __forceinline__ void lds128(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
/// 16 bytes from global memory that no thread writes during the kernel, not kept in L1.
__device__ __forceinline__ uint4 ldg_stream16(const void* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

__device__ __forceinline__ std::uint32_t lop3_and_or(std::uint32_t a, std::uint32_t b, std::uint32_t c) {
  std::uint32_t d;  // (a & b) | c
  asm("lop3.b32 %0, %1, %2, %3, 0xEA;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c));
  return d;
}
/// Both halves = the low / the high half of x.
__device__ __forceinline__ std::uint32_t dup_lo(std::uint32_t x) { return __byte_perm(x, 0, 0x1010); }
__device__ __forceinline__ std::uint32_t dup_hi(std::uint32_t x) { return __byte_perm(x, 0, 0x3232); }

/// Element type traits: float16 (__half) and bfloat16 (__nv_bfloat16), as pairs in a 32-bit register.
/// sub2 / mul2 round once (.rn: never contracted into an FMA with a neighbour); bfloat16 uses
/// fma.rn.bf16x2 (sm_80 has no bf16x2 mul/sub): a·b + (−0) and b·(−1) + a, each exact-then-rounded.
template <class T>
struct elem;

template <>
struct elem<__half> {
  static constexpr std::uint32_t magic2 = 0x64006400u;  // 1024, 1024
  __device__ __forceinline__ static std::uint32_t sub2(std::uint32_t a, std::uint32_t b) {
    std::uint32_t d;
    asm("sub.rn.f16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
    return d;
  }
  __device__ __forceinline__ static std::uint32_t mul2(std::uint32_t a, std::uint32_t b) {
    std::uint32_t d;
    asm("mul.rn.f16x2 %0, %1, %2;\n" : "=r"(d) : "r"(a), "r"(b));
    return d;
  }
  __device__ __forceinline__ static float to_float(__half v) { return __half2float(v); }
  __device__ __forceinline__ static float2 to_float2(std::uint32_t v) {
    __half2 h;
    memcpy(&h, &v, 4);
    return __half22float2(h);
  }
  __device__ __forceinline__ static std::uint32_t pack2(float lo, float hi) {
    const __half2 h = __floats2half2_rn(lo, hi);
    std::uint32_t v;
    memcpy(&v, &h, 4);
    return v;
  }
  __device__ __forceinline__ static __half from_float(float f) { return __float2half_rn(f); }
};

template <>
struct elem<__nv_bfloat16> {
  static constexpr std::uint32_t magic2 = 0x43004300u;  // 128, 128
  __device__ __forceinline__ static std::uint32_t sub2(std::uint32_t a, std::uint32_t b) {
    std::uint32_t d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(b), "r"(0xBF80BF80u), "r"(a));
    return d;
  }
  __device__ __forceinline__ static std::uint32_t mul2(std::uint32_t a, std::uint32_t b) {
    std::uint32_t d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;\n" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
    return d;
  }
  __device__ __forceinline__ static float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
  __device__ __forceinline__ static float2 to_float2(std::uint32_t v) {
    // bfloat16 -> float is a 16-bit shift: exact
    return make_float2(__uint_as_float(v << 16), __uint_as_float(v & 0xFFFF0000u));
  }
  __device__ __forceinline__ static std::uint32_t pack2(float lo, float hi) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
    std::uint32_t v;
    memcpy(&v, &h, 4);
    return v;
  }
  __device__ __forceinline__ static __nv_bfloat16 from_float(float f) { return __float2bfloat16_rn(f); }
};

/// D = A · B + D, m16n8k16, float32 accumulators.
template <class T>
__device__ __forceinline__ void mma16816(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                         std::uint32_t b1) {
  if constexpr (std::is_same_v<T, __half>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

}  // namespace cuda::dev
QUANTO_END_NAMESPACE
