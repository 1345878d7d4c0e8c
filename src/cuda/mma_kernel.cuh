// src/cuda/mma_kernel.cuh: the fused dequantize + tensor-core matmul kernel for the repacked 4-bit and
// 8-bit weights (w4a16, w8a16), and the GEMV-style 4-bit kernel. Included by w4a16.cu and w8a16.cu.
//
// Work split. A thread block has WK x WN warps. Warp (wk, wn) owns NT consecutive n64 tiles
// (columns [64 nt0, 64 (nt0 + NT))) and MT m16 row blocks, and a contiguous run of k16 steps: the
// block's k range (split `blockIdx.y` of `splits`) cut into WK parts. Each warp runs its own
// software pipeline through a private ring of STAGES shared-memory slots, filled with cp.async:
//
//   slot = [ B: NT tiles of codes | S: NT x 256 bytes of (scale, shift) pairs (4-bit, at group
//            starts only) | A: MT x 16 x 16 activations (zero rows past m) ]
//
// A lane loads and reads back its own 16-byte pieces of B and S (fragment.hpp), so they need no
// barrier; A is shared by the warp's lanes (ldmatrix), hence __syncwarp between a slot's use and its
// refill. Per k16 step a lane decodes its 32 (4-bit) or 32 (8-bit) codes into the B fragments of
// eight n8 blocks — exactly quanto's dequantization, in the model dtype — and issues 8 MT mma.sync
// per n64 tile. At the end the WK warps that share columns add their float32 accumulators in a
// fixed order (shared memory), and the block writes T (splits == 1) or a float32 partial that
// splitk_reduce adds in order (splits > 1): the result does not depend on timing.
//
// Device code only (the host side, configurations and launches, is mma_launch.cuh).
#pragma once

#include "common.cuh"

QUANTO_BEGIN_NAMESPACE
namespace cuda::dev {

namespace fr = quanto::cuda::fragment;

/// How a kernel decodes its weight codes.
enum class wcode : int { u4 = 0, u4_zp = 1, i8 = 2, e4m3 = 3 };

template <wcode C>
inline constexpr bool is_4bit = C == wcode::u4 || C == wcode::u4_zp;

struct mma_params {
  const unsigned char* codes;  ///< the repacked tiles
  const void* meta;            ///< 4-bit: (scale, shift) pairs [groups][n/64][64]; 8-bit: scales [n]
  const void* x;               ///< [m, k] (ldx)
  void* y;                     ///< [m, n] (ldy)
  const void* bias;            ///< [n] or null
  float* partial;              ///< [splits][m][n] when splits > 1
  std::int64_t ldx, ldy;
  int m, n, k;
  int group_steps;  ///< 4-bit: k16 steps per group
  int splits;
};

/// Bytes of one pipeline slot of one warp.
template <wcode C, int MT, int NT>
inline constexpr int slot_bytes = NT*(is_4bit<C> ? fr::w4_tile_bytes : fr::w8_tile_bytes) +
                                  (is_4bit<C> ? NT * 256 : 0) + MT * 512;

/// Dynamic shared memory of a block: the warps' rings, reused at the end for the reduction.
template <wcode C, int MT, int NT, int WK, int WN, int STAGES>
constexpr int mma_smem_bytes() {
  const int ring = WK * WN * STAGES * slot_bytes<C, MT, NT>;
  const int red = (WK - 1) * WN * MT * NT * 8 * 4 * 32 * 4;
  return ring > red ? ring : red;
}

/// Decodes one 4-bit word (8 codes: registers b[2w + e/2][e % 2] for e = 0..3) into model-dtype
/// pairs. `st` holds the (scale, shift) pairs of n8 blocks j = 2w, 2w + 1.
template <class T, bool ZP>
__device__ __forceinline__ void decode_w4_word(std::uint32_t word, std::uint32_t st0, std::uint32_t st1,
                                               std::uint32_t (&b)[2][2]) {
  using E = elem<T>;
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const std::uint32_t st = e < 2 ? st0 : st1;
    const std::uint32_t v = lop3_and_or(word >> (4 * e), 0x000F000Fu, E::magic2);  // magic + q, exact
    std::uint32_t w;
    if constexpr (ZP)
      w = E::mul2(E::sub2(v, dup_hi(st)), dup_lo(st));  // T(scale * (q - zp))
    else
      w = E::sub2(E::mul2(E::sub2(v, E::magic2), dup_lo(st)), dup_hi(st));  // T(T(scale * q) - shift)
    b[e / 2][e % 2] = w;
  }
}

/// Decodes the four 8-bit codes of n8 block j (bytes b0 b1 = register 0, b2 b3 = register 1) and
/// multiplies by the column's scale pair `s2` (both halves the same scale).
template <class T, wcode C>
__device__ __forceinline__ void decode_w8_word(std::uint32_t word, std::uint32_t s2, std::uint32_t& r0,
                                               std::uint32_t& r1) {
  using E = elem<T>;
  std::uint32_t lo, hi;
  if constexpr (C == wcode::i8) {
    const std::uint32_t u = word ^ 0x80808080u;  // q + 128 per byte
    if constexpr (std::is_same_v<T, __half>) {
      // 0x64 above each byte: 1024 + q + 128; minus 1152 = q (exact)
      lo = E::sub2(__byte_perm(u, 0x64646464u, 0x4140), 0x64806480u);
      hi = E::sub2(__byte_perm(u, 0x64646464u, 0x4342), 0x64806480u);
    } else {
      // through float32: 2^23 + q + 128, minus 2^23 + 128; bfloat16 = the upper 16 bits (exact)
      float f[4];
#pragma unroll
      for (int i = 0; i < 4; ++i)
        f[i] = __fsub_rn(__uint_as_float(__byte_perm(u, 0x4B000000u, 0x7440 + i)), 8388736.0f);
      lo = __byte_perm(__float_as_uint(f[0]), __float_as_uint(f[1]), 0x7632);
      hi = __byte_perm(__float_as_uint(f[2]), __float_as_uint(f[3]), 0x7632);
    }
  } else {  // e4m3fn
    if constexpr (std::is_same_v<T, __half>) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
      asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(lo) : "h"(static_cast<unsigned short>(word & 0xFFFFu)));
      asm("cvt.rn.f16x2.e4m3x2 %0, %1;\n" : "=r"(hi) : "h"(static_cast<unsigned short>(word >> 16)));
#else
      // the e4m3 fields moved into float16's: the value times 2^-8 (subnormals too); times 256 exact
      const std::uint32_t t0 = __byte_perm(word, 0, 0x4140), t1 = __byte_perm(word, 0, 0x4342);
      lo = E::mul2(((t0 & 0x007F007Fu) << 7) | ((t0 & 0x00800080u) << 8), 0x5C005C00u);
      hi = E::mul2(((t1 & 0x007F007Fu) << 7) | ((t1 & 0x00800080u) << 8), 0x5C005C00u);
#endif
    } else {
      // float32 fields: the value times 2^-120, times 2^120 exact; bfloat16 = the upper 16 bits
      float f[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const std::uint32_t c = (word >> (8 * i)) & 0xFFu;
        f[i] = __fmul_rn(__uint_as_float(((c & 0x7Fu) << 20) | ((c & 0x80u) << 24)), 0x1p120f);
      }
      lo = __byte_perm(__float_as_uint(f[0]), __float_as_uint(f[1]), 0x7632);
      hi = __byte_perm(__float_as_uint(f[2]), __float_as_uint(f[3]), 0x7632);
    }
  }
  r0 = E::mul2(lo, s2);
  r1 = E::mul2(hi, s2);
}

template <class T, wcode C, int MT, int NT, int WK, int WN, int STAGES>
__global__ void __launch_bounds__(WK* WN * 32) mma_kernel(const mma_params p) {
  using E = elem<T>;
  constexpr bool W4 = is_4bit<C>;
  constexpr int TB = W4 ? fr::w4_tile_bytes : fr::w8_tile_bytes;  // bytes per tile
  constexpr int SB = W4 ? 256 : 0;                                // (scale, shift) bytes per tile and group
  constexpr int SLOT = slot_bytes<C, MT, NT>;
  constexpr int S_OFF = NT * TB, A_OFF = NT * TB + NT * SB;

  extern __shared__ __align__(16) unsigned char smem[];
  const int lane = static_cast<int>(threadIdx.x) & 31, warp = static_cast<int>(threadIdx.x) >> 5;
  const int wk = warp % WK, wn = warp / WK;
  const int g = lane / 4, t = lane % 4;
  const std::uint32_t ring = smem_addr(smem) + static_cast<std::uint32_t>(warp * STAGES * SLOT);

  const int n64 = p.n / fr::tile_n, k16 = p.k / fr::tile_k;
  const int nt0 = (static_cast<int>(blockIdx.x) * WN + wn) * NT;
  const int m0 = static_cast<int>(blockIdx.z) * 16 * MT;
  // this warp's k16 steps [a, b)
  const int lo = static_cast<int>(static_cast<std::int64_t>(k16) * blockIdx.y / p.splits);
  const int hi = static_cast<int>(static_cast<std::int64_t>(k16) * (blockIdx.y + 1) / p.splits);
  const int a = lo + static_cast<int>(static_cast<std::int64_t>(hi - lo) * wk / WK);
  const int b = lo + static_cast<int>(static_cast<std::int64_t>(hi - lo) * (wk + 1) / WK);
  const int steps = b - a;

  bool valid[NT];
#pragma unroll
  for (int i = 0; i < NT; ++i) valid[i] = nt0 + i < n64;

  // ---- producer state: source pointers advance one tile (or one k16 of x) per step ----
  const unsigned char* bsrc[NT];
#pragma unroll
  for (int i = 0; i < NT; ++i)
    bsrc[i] = p.codes + (static_cast<std::int64_t>(valid[i] ? nt0 + i : 0) * k16 + a) * TB + fr::lane_bytes * lane;
  const T* x = static_cast<const T*>(p.x);
  const T* asrc[MT];
  bool arow[MT];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    const int row = m0 + mt * 16 + lane / 2;
    arow[mt] = row < p.m;
    asrc[mt] = x + (arow[mt] ? static_cast<std::int64_t>(row) * p.ldx : 0) + static_cast<std::int64_t>(a) * 16 +
               (lane % 2) * 8;
  }
  // A is stored swizzled: row r, 16-byte chunk c at unit 2r + (c ^ (r/4 & 1)) (conflict-free ldmatrix)
  const int arow_in = lane / 2, achunk = lane % 2;
  const std::uint32_t a_store =
      static_cast<std::uint32_t>(A_OFF + 16 * (2 * arow_in + (achunk ^ ((arow_in >> 2) & 1))));
  const int lrow = ((lane >> 3) & 1) * 8 + (lane & 7), lchunk = lane >> 4;
  const std::uint32_t a_load = static_cast<std::uint32_t>(A_OFF + 16 * (2 * lrow + (lchunk ^ ((lrow >> 2) & 1))));

  // 4-bit (scale, shift) runs: 256 bytes per n64 tile and group; lane copies 16 of them
  const unsigned char* meta = static_cast<const unsigned char*>(p.meta);
  const int s_tile = NT == 1 ? 0 : lane / 16;
  const bool s_copy = (NT == 1 ? lane < 16 : true) && nt0 + s_tile < n64;  // this lane copies a piece
  const int s_off = 16 * (lane % 16);

  int issued = 0;
  int pslot = 0;
  int pgroup_pos = W4 ? a % p.group_steps : 0;  // the next issued step's position within its group

  auto issue = [&]() {
    const std::uint32_t slot = ring + static_cast<std::uint32_t>(pslot * SLOT);
    const int step = a + issued;
#pragma unroll
    for (int i = 0; i < NT; ++i) {
      if (valid[i]) {
        cp_async_cg16(slot + i * TB + fr::lane_bytes * lane, bsrc[i]);
        if constexpr (!W4) cp_async_cg16(slot + i * TB + TB / 2 + fr::lane_bytes * lane, bsrc[i] + TB / 2);
      }
      bsrc[i] += TB;
    }
    if constexpr (W4) {
      if ((issued == 0 || pgroup_pos == 0) && s_copy) {
        const std::int64_t gi = step / p.group_steps;
        cp_async_cg16(slot + S_OFF + s_tile * 256 + s_off, meta + ((gi * n64 + nt0 + s_tile) * fr::tile_n) * 4 + s_off);
      }
      pgroup_pos = pgroup_pos + 1 == p.group_steps ? 0 : pgroup_pos + 1;
    }
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      cp_async_ca16(slot + a_store + mt * 512, asrc[mt], arow[mt]);
      asrc[mt] += 16;
    }
    ++issued;
    pslot = pslot + 1 == STAGES ? 0 : pslot + 1;
  };

  float acc[MT][NT][8][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int i = 0; i < NT; ++i)
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int c = 0; c < 4; ++c) acc[mt][i][j][c] = 0.0f;

  // 8-bit: the columns' scales, once (lane g needs the eight columns 8 g + j of each tile)
  std::uint32_t sc8[NT][4];
  if constexpr (!W4) {
#pragma unroll
    for (int i = 0; i < NT; ++i) {
      uint4 v = make_uint4(0, 0, 0, 0);
      if (valid[i])
        v = __ldg(reinterpret_cast<const uint4*>(static_cast<const T*>(p.meta) + (nt0 + i) * fr::tile_n + 8 * g));
      sc8[i][0] = v.x, sc8[i][1] = v.y, sc8[i][2] = v.z, sc8[i][3] = v.w;
    }
  }
  // 4-bit: the current group's (scale, shift) pairs of the eight n8 blocks
  std::uint32_t st[NT][8];
#pragma unroll
  for (int i = 0; i < NT; ++i)
#pragma unroll
    for (int j = 0; j < 8; ++j) st[i][j] = 0;
  int cgroup_pos = W4 ? a % p.group_steps : 0;

  // ---- the pipeline ----
#pragma unroll
  for (int s = 0; s < STAGES - 1; ++s) {
    if (issued < steps) issue();
    cp_async_commit();
  }
  int cslot = 0;
  for (int it = 0; it < steps; ++it) {
    cp_async_wait<STAGES - 2>();  // step `it` has landed (this lane's copies) ...
    __syncwarp();                 // ... and every lane's (A); every lane is done with the previous slot
    if (issued < steps) issue();
    cp_async_commit();

    const std::uint32_t slot = ring + static_cast<std::uint32_t>(cslot * SLOT);
    if constexpr (W4) {
      if (it == 0 || cgroup_pos == 0) {
#pragma unroll
        for (int i = 0; i < NT; ++i) {
          std::uint32_t v0[4], v1[4];
          lds128(v0, slot + S_OFF + i * 256 + 32 * g);
          lds128(v1, slot + S_OFF + i * 256 + 32 * g + 16);
#pragma unroll
          for (int j = 0; j < 4; ++j) st[i][j] = v0[j], st[i][4 + j] = v1[j];
        }
      }
      cgroup_pos = cgroup_pos + 1 == p.group_steps ? 0 : cgroup_pos + 1;
    }
    std::uint32_t af[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) ldmatrix_x4(af[mt], slot + a_load + mt * 512);

#pragma unroll
    for (int i = 0; i < NT; ++i) {
      if (!valid[i]) continue;
      std::uint32_t bf[8][2];
      if constexpr (W4) {
        std::uint32_t q[4];
        lds128(q, slot + i * TB + fr::lane_bytes * lane);
#pragma unroll
        for (int w = 0; w < 4; ++w) {
          std::uint32_t pair[2][2];
          decode_w4_word<T, C == wcode::u4_zp>(q[w], st[i][2 * w], st[i][2 * w + 1], pair);
          bf[2 * w][0] = pair[0][0], bf[2 * w][1] = pair[0][1];
          bf[2 * w + 1][0] = pair[1][0], bf[2 * w + 1][1] = pair[1][1];
        }
      } else {
        std::uint32_t q0[4], q1[4];  // n8 blocks 0-3 and 4-7
        lds128(q0, slot + i * TB + fr::lane_bytes * lane);
        lds128(q1, slot + i * TB + TB / 2 + fr::lane_bytes * lane);
#pragma unroll
        for (int j = 0; j < 8; ++j) {
          const std::uint32_t s2 = (j % 2) ? dup_hi(sc8[i][j / 2]) : dup_lo(sc8[i][j / 2]);
          decode_w8_word<T, C>(j < 4 ? q0[j % 4] : q1[j % 4], s2, bf[j][0], bf[j][1]);
        }
      }
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) mma16816<T>(acc[mt][i][j], af[mt], bf[j][0], bf[j][1]);
    }
    cslot = cslot + 1 == STAGES ? 0 : cslot + 1;
  }
  cp_async_wait<0>();
  __syncthreads();  // every warp is done with its ring: the reduction reuses the memory

  // ---- add the WK partial sums of each column range, in order wk = 0, 1, ... ----
  if constexpr (WK > 1) {
    constexpr int EL = MT * NT * 8 * 4;
    float* red = reinterpret_cast<float*>(smem);
    if (wk > 0) {
      float* dst = red + ((wk - 1) * WN + wn) * EL * 32;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int i = 0; i < NT; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int c = 0; c < 4; ++c) dst[(((mt * NT + i) * 8 + j) * 4 + c) * 32 + lane] = acc[mt][i][j][c];
    }
    __syncthreads();
    if (wk > 0) return;
#pragma unroll 1
    for (int w = 1; w < WK; ++w) {
      const float* src = red + ((w - 1) * WN + wn) * EL * 32;
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int i = 0; i < NT; ++i)
#pragma unroll
          for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int c = 0; c < 4; ++c) acc[mt][i][j][c] += src[(((mt * NT + i) * 8 + j) * 4 + c) * 32 + lane];
    }
  }

  // ---- epilogue: the C fragments (rows g, g + 8; columns 2t, 2t + 1 of each n8 block) ----
  T* y = static_cast<T*>(p.y);
  const T* bias = static_cast<const T*>(p.bias);
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int i = 0; i < NT; ++i) {
      if (!valid[i]) continue;
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
          const int row = m0 + mt * 16 + g + 8 * h;
          const int col = (nt0 + i) * fr::tile_n + 8 * j + 2 * t;
          if (row >= p.m) continue;
          float v0 = acc[mt][i][j][2 * h], v1 = acc[mt][i][j][2 * h + 1];
          if (p.splits == 1) {
            if (bias) {
              v0 += E::to_float(bias[col]);
              v1 += E::to_float(bias[col + 1]);
            }
            *reinterpret_cast<std::uint32_t*>(y + row * p.ldy + col) = E::pack2(v0, v1);
          } else {
            float* dst = p.partial + (static_cast<std::int64_t>(blockIdx.y) * p.m + row) * p.n + col;
            *reinterpret_cast<float2*>(dst) = make_float2(v0, v1);
          }
        }
    }
}

/// Dynamic shared memory of the GEMV-style kernel: 8 warps x 4 rows x 64 columns of float sums.
inline constexpr int gemv_smem_bytes = 8 * 4 * 64 * 4;

/// The GEMV-style 4-bit kernel (m <= 4): the same tiles, read straight into registers (16-byte
/// loads, four steps in flight), decoded as in the mma kernel, then float32 FMAs with the
/// activations (read through L1). Eight warps split the block's k range; lanes t = 0..3 of a
/// column and the warps are added in a fixed order.
template <class T, bool ZP>
__global__ void __launch_bounds__(256) w4_gemv_kernel(const mma_params p) {
  using E = elem<T>;
  constexpr int WK = 8, U = 4, MAXM = 4;
  extern __shared__ __align__(16) unsigned char smem[];  // gemv_smem_bytes: the warps' column sums
  auto& red = *reinterpret_cast<float(*)[WK][MAXM][fr::tile_n]>(smem);
  const int lane = static_cast<int>(threadIdx.x) & 31, wk = static_cast<int>(threadIdx.x) >> 5;
  const int g = lane / 4, t = lane % 4;
  const int n64 = p.n / fr::tile_n, k16 = p.k / fr::tile_k;
  const int nt = static_cast<int>(blockIdx.x);
  const int lo = static_cast<int>(static_cast<std::int64_t>(k16) * blockIdx.y / p.splits);
  const int hi = static_cast<int>(static_cast<std::int64_t>(k16) * (blockIdx.y + 1) / p.splits);
  const int a = lo + (hi - lo) * wk / WK, b = lo + (hi - lo) * (wk + 1) / WK;

  const unsigned char* codes =
      p.codes + (static_cast<std::int64_t>(nt) * k16) * fr::w4_tile_bytes + fr::lane_bytes * lane;
  const unsigned char* meta = static_cast<const unsigned char*>(p.meta);
  const T* x = static_cast<const T*>(p.x);

  float acc[MAXM][8];
#pragma unroll
  for (int r = 0; r < MAXM; ++r)
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[r][j] = 0.0f;
  std::uint32_t st[8];
  int group = -1;

  for (int s0 = a; s0 < b; s0 += U) {
    uint4 q[U];
#pragma unroll
    for (int u = 0; u < U; ++u)
      if (s0 + u < b) q[u] = ldg_stream16(codes + static_cast<std::int64_t>(s0 + u) * fr::w4_tile_bytes);
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const int step = s0 + u;
      if (step >= b) break;
      const int gi = step / p.group_steps;
      if (gi != group) {
        group = gi;
        const auto* src = reinterpret_cast<const uint4*>(
            meta + ((static_cast<std::int64_t>(gi) * n64 + nt) * fr::tile_n + 8 * g) * 4);
        const uint4 v0 = __ldg(src), v1 = __ldg(src + 1);
        st[0] = v0.x, st[1] = v0.y, st[2] = v0.z, st[3] = v0.w, st[4] = v1.x, st[5] = v1.y, st[6] = v1.z, st[7] = v1.w;
      }
      // this step's activations of each row: k = 2t, 2t + 1 (xa) and 2t + 8, 2t + 9 (xb)
      const std::int64_t k0 = static_cast<std::int64_t>(step) * fr::tile_k + 2 * t;
      float2 xa[MAXM], xb[MAXM];
#pragma unroll
      for (int r = 0; r < MAXM; ++r) {
        xa[r] = xb[r] = make_float2(0.0f, 0.0f);
        if (r < p.m) {
          const T* xr = x + r * p.ldx + k0;
          xa[r] = E::to_float2(__ldg(reinterpret_cast<const unsigned int*>(xr)));
          xb[r] = E::to_float2(__ldg(reinterpret_cast<const unsigned int*>(xr + 8)));
        }
      }
      const std::uint32_t words[4] = {q[u].x, q[u].y, q[u].z, q[u].w};
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        std::uint32_t pair[2][2];  // n8 blocks 2w, 2w + 1; registers b0 (k = 2t, 2t + 1), b1 (k + 8)
        decode_w4_word<T, ZP>(words[w], st[2 * w], st[2 * w + 1], pair);
#pragma unroll
        for (int jj = 0; jj < 2; ++jj) {
          const float2 w0 = E::to_float2(pair[jj][0]), w1 = E::to_float2(pair[jj][1]);
#pragma unroll
          for (int r = 0; r < MAXM; ++r) {
            if (r >= p.m) break;  // uniform: no FMAs for rows that do not exist
            float v = acc[r][2 * w + jj];
            v = fmaf(w0.x, xa[r].x, v);
            v = fmaf(w0.y, xa[r].y, v);
            v = fmaf(w1.x, xb[r].x, v);
            v = fmaf(w1.y, xb[r].y, v);
            acc[r][2 * w + jj] = v;
          }
        }
      }
    }
  }
  // lanes t = 0..3 hold parts of the same columns: add them (the same order in every lane)
#pragma unroll
  for (int r = 0; r < MAXM; ++r)
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float v = acc[r][j];
      v += __shfl_xor_sync(0xFFFFFFFFu, v, 1);
      v += __shfl_xor_sync(0xFFFFFFFFu, v, 2);
      if (t == 0) red[wk][r][8 * j + g] = v;
    }
  __syncthreads();
  T* y = static_cast<T*>(p.y);
  const T* bias = static_cast<const T*>(p.bias);
  for (int e = static_cast<int>(threadIdx.x); e < p.m * fr::tile_n; e += static_cast<int>(blockDim.x)) {
    const int r = e / fr::tile_n, nn = e % fr::tile_n;
    float v = 0.0f;
#pragma unroll
    for (int w = 0; w < WK; ++w) v += red[w][r][nn];
    const int col = nt * fr::tile_n + nn;
    if (p.splits == 1) {
      if (bias) v += E::to_float(bias[col]);
      y[r * p.ldy + col] = E::from_float(v);
    } else {
      p.partial[(static_cast<std::int64_t>(blockIdx.y) * p.m + r) * p.n + col] = v;
    }
  }
}

}  // namespace cuda::dev
QUANTO_END_NAMESPACE
