// tests/cuda/emulation/common.cuh: a stand-in for src/cuda/common.cuh with which g++ compiles
// src/cuda/mma_kernel.cuh unchanged (CMake copies the kernel next to this file), so that
// test_kernel_emulation.cpp can run the fused kernels on the CPU: CUDA's keywords become nothing,
// vector types and intrinsics are plain C++, and the PTX wrappers are emulated — shared memory is a
// byte array, cp.async a copy that lands at issue or at the issuing lane's wait_group, ldmatrix, mma
// and shuffles warp collectives (every lane publishes its operands, then computes its part as the
// PTX ISA lays the fragments out), float16/bfloat16 arithmetic quanto's exact rounding. The fiber
// runtime behind the emu:: declarations is in test_kernel_emulation.cpp.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include <quanto/core/bfloat16.hpp>
#include <quanto/core/float16.hpp>
#include <quanto/cuda/fragment.hpp>
#include <quanto/quantize/model_arith.hpp>

// ---- CUDA keywords and vector types ----
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__
#define __align__(n) __attribute__((aligned(n)))

struct uint3 {
  unsigned x, y, z;
};
struct uint4 {
  unsigned x, y, z, w;
};
struct float2 {
  float x, y;
};
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
inline float2 make_float2(float a, float b) { return {a, b}; }
struct __half {
  unsigned short bits;
};
struct __nv_bfloat16 {
  unsigned short bits;
};

namespace emu {
void sync_block();
void sync_warp();
/// Warp collective: every lane publishes `in` (up to 16 words), waits for all, then `out` is
/// computed by the caller from all lanes' inputs; a second barrier protects the buffer.
std::uint32_t (*exchange(const std::uint32_t* in, int words))[16];
void exchange_done();
int lane();
extern bool deferred_copies;
extern unsigned char* smem_base;
void cp_async(std::uint32_t dst, const void* src, bool valid);
void cp_commit();
void cp_wait(int n);
}  // namespace emu

extern thread_local uint3 threadIdx;
extern uint3 blockIdx, blockDim, gridDim;

inline void __syncthreads() { emu::sync_block(); }
inline void __syncwarp(unsigned = 0xFFFFFFFFu) { emu::sync_warp(); }
inline float __uint_as_float(unsigned u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline unsigned __float_as_uint(float f) {
  unsigned u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const std::uint64_t v = static_cast<std::uint64_t>(y) << 32 | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<unsigned>((v >> (8 * ((s >> (4 * i)) & 7))) & 0xFF) << (8 * i);
  return r;
}
template <class X>
inline X __ldg(const X* p) {
  return *p;
}
inline float __shfl_xor_sync(unsigned, float v, int mask) {
  std::uint32_t in = __float_as_uint(v);
  auto all = emu::exchange(&in, 1);
  const float r = __uint_as_float(all[emu::lane() ^ mask][0]);
  emu::exchange_done();
  return r;
}

QUANTO_BEGIN_NAMESPACE
namespace cuda::dev {

inline std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(static_cast<const unsigned char*>(p) - emu::smem_base);
}
inline void cp_async_cg16(std::uint32_t dst, const void* src) { emu::cp_async(dst, src, true); }
inline void cp_async_ca16(std::uint32_t dst, const void* src, bool valid) { emu::cp_async(dst, src, valid); }
inline void cp_async_commit() { emu::cp_commit(); }
template <int N>
inline void cp_async_wait() {
  emu::cp_wait(N);
}

inline void lds128(std::uint32_t (&r)[4], std::uint32_t addr) { std::memcpy(r, emu::smem_base + addr, 16); }
inline void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
  auto all = emu::exchange(&addr, 1);
  const int l = emu::lane();
  for (int i = 0; i < 4; ++i) std::memcpy(&r[i], emu::smem_base + all[8 * i + l / 4][0] + 4 * (l % 4), 4);
  emu::exchange_done();
}
inline uint4 ldg_stream16(const void* p) {
  uint4 v;
  std::memcpy(&v, p, 16);
  return v;
}
inline std::uint32_t lop3_and_or(std::uint32_t a, std::uint32_t b, std::uint32_t c) { return (a & b) | c; }
inline std::uint32_t dup_lo(std::uint32_t x) { return __byte_perm(x, 0, 0x1010); }
inline std::uint32_t dup_hi(std::uint32_t x) { return __byte_perm(x, 0, 0x3232); }

template <class T>
struct elem;

template <class Q>  // Q: quanto::float16 or quanto::bfloat16
struct elem_impl {  // the register pair's halves; sub.rn / mul.rn as one exact float32 op, rounded once
  static Q lo(std::uint32_t v) { return Q::from_bits(static_cast<std::uint16_t>(v & 0xFFFF)); }
  static Q hi(std::uint32_t v) { return Q::from_bits(static_cast<std::uint16_t>(v >> 16)); }
  static std::uint32_t pack(Q a, Q b) {
    return static_cast<std::uint32_t>(a.to_bits()) | static_cast<std::uint32_t>(b.to_bits()) << 16;
  }
  static std::uint32_t sub2(std::uint32_t a, std::uint32_t b) {
    return pack(quanto::model_arith::t_sub(lo(a), lo(b)), quanto::model_arith::t_sub(hi(a), hi(b)));
  }
  static std::uint32_t mul2(std::uint32_t a, std::uint32_t b) {  // the float32 product is exact: one rounding
    return pack(quanto::model_arith::narrow<Q>(to_float(lo(a)) * to_float(lo(b))),
                quanto::model_arith::narrow<Q>(to_float(hi(a)) * to_float(hi(b))));
  }
  static float2 to_float2(std::uint32_t v) { return {to_float(lo(v)), to_float(hi(v))}; }
  static std::uint32_t pack2(float a, float b) { return pack(Q(a), Q(b)); }
};

template <>
struct elem<__half> : elem_impl<quanto::float16> {
  static constexpr std::uint32_t magic2 = 0x64006400u;
  static float to_float(__half v) { return quanto::to_float(quanto::float16::from_bits(v.bits)); }
  static __half from_float(float f) { return {quanto::float16(f).to_bits()}; }
};
template <>
struct elem<__nv_bfloat16> : elem_impl<quanto::bfloat16> {
  static constexpr std::uint32_t magic2 = 0x43004300u;
  static float to_float(__nv_bfloat16 v) { return quanto::to_float(quanto::bfloat16::from_bits(v.bits)); }
  static __nv_bfloat16 from_float(float f) { return {quanto::bfloat16(f).to_bits()}; }
};

/// mma.m16n8k16 row.col, float32 accumulators: gathers every lane's fragments (PTX ISA layout).
template <class T>
inline void mma16816(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  using Q = std::conditional_t<std::is_same_v<T, __half>, quanto::float16, quanto::bfloat16>;
  const std::uint32_t in[6] = {a[0], a[1], a[2], a[3], b0, b1};
  auto all = emu::exchange(in, 6);
  float A[16][16], B[16][8];
  auto half = [](std::uint32_t v, int s) {
    return quanto::to_float(Q::from_bits(static_cast<std::uint16_t>(s ? v >> 16 : v & 0xFFFF)));
  };
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    for (int i = 0; i < 4; ++i)
      for (int s = 0; s < 2; ++s) A[g + 8 * (i % 2)][2 * t + 8 * (i / 2) + s] = half(all[l][i], s);
    for (int r = 0; r < 2; ++r)
      for (int s = 0; s < 2; ++s) B[2 * t + 8 * r + s][g] = half(all[l][4 + r], s);
  }
  const int l = emu::lane(), g = l / 4, t = l % 4;
  for (int ci = 0; ci < 4; ++ci) {
    const int row = g + 8 * (ci / 2), col = 2 * t + ci % 2;
    double acc = 0;
    for (int kk = 0; kk < 16; ++kk) acc += static_cast<double>(A[row][kk]) * B[kk][col];
    c[ci] = static_cast<float>(static_cast<double>(c[ci]) + acc);
  }
  emu::exchange_done();
}

}  // namespace cuda::dev
QUANTO_END_NAMESPACE
