// quanto/cuda/fragment.hpp: the index functions of the GPU kernel layouts — where element (k, n) of a
// weight lives in a repacked buffer, and which (k, n) a lane of a warp reads when it decodes its
// registers. Dependency-free and constexpr: the CUDA kernels (src/cuda/) and the host repacking
// (repack.hpp) include the same functions, so the CPU tests of the layout test what the kernels read.
//
// Everything is built around one tensor-core instruction, `mma.sync.m16n8k16` (f16/bf16 inputs,
// f32 accumulation). Its B operand (the weight, k16 x n8) is spread over the 32 lanes of a warp:
// lane = 4 g + t (g = lane / 4 in [0, 8), t = lane % 4) holds, for column n = g of the n8 block,
//
//     register b0: k = 2t, 2t + 1        register b1: k = 2t + 8, 2t + 9       (low half first)
//
// A weight of shape [n, k] (out x in) is cut into tiles of 16 (k) x 64 (n) = eight n8 blocks
// j = 0..7; tile (nt, kt) covers n in [64 nt, 64 nt + 64), k in [16 kt, 16 kt + 16). Tiles are stored
// n-tile major, k-tile minor: a warp that owns an n-tile streams its tiles as one contiguous run.
// Within a tile, element (kk, nn) (kk = k % 16, nn = n % 64) has
//
//     j = nn / 8, g = nn % 8, r = kk / 8 (b0 or b1), t = (kk % 8) / 2, s = kk % 2 (low or high half)
//     lane = 4 g + t
//
// 4-bit tiles (512 bytes): lane `lane` owns bytes [16 lane, 16 lane + 16) = four 32-bit words; the
// code of (kk, nn) is nibble p = 2 (j % 2) + r + 4 s of word j / 2 (bits 4p .. 4p + 3). One
// shift by 4e and one mask 0x000f000f of a word give the codes of register (j = 2 word + e / 2,
// r = e % 2) in the low nibble of each 16-bit half, ready to be OR-ed into a float16/bfloat16
// "magic" number (1024 + q, 128 + q).
//
// 8-bit tiles (1024 bytes): lane `lane` owns bytes [16 lane, 16 lane + 16) of each 512-byte half
// h = 0, 1 (two coalesced 16-byte loads); n8 block j is word j % 4 of half j / 4, its bytes in the
// order (r, s) = (0,0), (0,1), (1,0), (1,1): bytes 0-1 are register b0, bytes 2-3 register b1.
//
// Per-column parameters are permuted so that lane g reads the eight columns j = 0..7 it needs as
// one contiguous run: column n of tile nt is entry 8 g + j. 4-bit weights keep one (scale, shift)
// pair per (group, column), in [group][n-tile][8 g + j][2]; 8-bit weights one scale per column,
// in [n-tile][8 g + j].
#pragma once

#include <cstdint>

#include "quanto/core/config.hpp"

#if defined(__CUDACC__)
#define QUANTO_CUDA_HD __host__ __device__ __forceinline__
#else
#define QUANTO_CUDA_HD inline
#endif

QUANTO_BEGIN_NAMESPACE
namespace cuda::fragment {

inline constexpr int tile_k = 16;  ///< k extent of a tile (one mma k-step)
inline constexpr int tile_n = 64;  ///< n extent of a tile (eight n8 blocks)
inline constexpr int warp_lanes = 32;
inline constexpr int w4_tile_bytes = 512;   ///< 16 x 64 4-bit codes
inline constexpr int w8_tile_bytes = 1024;  ///< 16 x 64 8-bit codes
inline constexpr int lane_bytes = 16;       ///< what one lane loads per 512-byte run

/// Where a lane finds one element: the lane, a byte within the tile, and (4-bit) the bit shift.
struct position {
  int lane;
  int byte;   ///< byte offset within the tile
  int shift;  ///< 0 or 4 (4-bit), 0 (8-bit)
};

/// The element a lane reads: (kk, nn) within the tile.
struct element {
  int kk;
  int nn;
};

// ---- the mma.m16n8k16 fragments (PTX ISA, "Matrix fragments for mma.m16n8k16") ---------------------

/// B (k16 x n8) element of `lane`, register r (0: b0, 1: b1), half s (0: low): its k row.
QUANTO_CUDA_HD constexpr int b_row(int lane, int r, int s) { return 2 * (lane % 4) + 8 * r + s; }
/// ... and its n column within the n8 block.
QUANTO_CUDA_HD constexpr int b_col(int lane) { return lane / 4; }
/// A (m16 x k16, row-major) register i (0..3) of `lane`, half s: its m row and k column.
QUANTO_CUDA_HD constexpr int a_row(int lane, int i) { return lane / 4 + 8 * (i % 2); }
QUANTO_CUDA_HD constexpr int a_col(int lane, int i, int s) { return 2 * (lane % 4) + 8 * (i / 2) + s; }
/// C / D (m16 x n8, f32) accumulator c (0..3) of `lane`: its m row and n column.
QUANTO_CUDA_HD constexpr int c_row(int lane, int c) { return lane / 4 + 8 * (c / 2); }
QUANTO_CUDA_HD constexpr int c_col(int lane, int c) { return 2 * (lane % 4) + c % 2; }

// ---- 4-bit tiles --------------------------------------------------------------------------------------

/// Nibble index (0..7) within a word of n8 block j, register r, half s.
QUANTO_CUDA_HD constexpr int w4_nibble(int j, int r, int s) { return 2 * (j % 2) + r + 4 * s; }

/// Where element (kk, nn) of a tile is stored.
QUANTO_CUDA_HD constexpr position w4_position(int kk, int nn) {
  const int j = nn / 8, g = nn % 8, r = kk / 8, t = (kk % 8) / 2, s = kk % 2;
  const int lane = 4 * g + t, p = w4_nibble(j, r, s);
  return {lane, lane_bytes * lane + 4 * (j / 2) + p / 2, 4 * (p % 2)};
}

/// The element that `lane` decodes from nibble p (0..7) of its word w (0..3): the kernels' read order.
QUANTO_CUDA_HD constexpr element w4_element(int lane, int w, int p) {
  const int j = 2 * w + (p % 4) / 2, r = p % 2, s = p / 4;
  return {b_row(lane, r, s), 8 * j + b_col(lane)};
}

/// Byte offset of tile (nt, kt) in a weight with k16 = k / 16 k-tiles.
QUANTO_CUDA_HD constexpr std::int64_t w4_tile_offset(std::int64_t nt, std::int64_t kt, std::int64_t k16) {
  return (nt * k16 + kt) * w4_tile_bytes;
}

/// Float16 / bfloat16 bit patterns of the magic numbers 1024 and 128: `magic | q` (q < 16 in the
/// low mantissa bits) is the number magic + q exactly.
inline constexpr std::uint16_t magic_f16 = 0x6400;   // 1024.0
inline constexpr std::uint16_t magic_bf16 = 0x4300;  // 128.0

// ---- 8-bit tiles --------------------------------------------------------------------------------------

/// Where element (kk, nn) of an 8-bit tile is stored.
QUANTO_CUDA_HD constexpr position w8_position(int kk, int nn) {
  const int j = nn / 8, g = nn % 8, r = kk / 8, t = (kk % 8) / 2, s = kk % 2;
  const int lane = 4 * g + t;
  return {lane, (w8_tile_bytes / 2) * (j / 4) + lane_bytes * lane + 4 * (j % 4) + 2 * r + s, 0};
}

/// The element that `lane` decodes from byte b (0..15) of its 16-byte run in half h (0, 1).
QUANTO_CUDA_HD constexpr element w8_element(int lane, int h, int b) {
  const int j = 4 * h + b / 4, r = (b % 4) / 2, s = b % 2;
  return {b_row(lane, r, s), 8 * j + b_col(lane)};
}

QUANTO_CUDA_HD constexpr std::int64_t w8_tile_offset(std::int64_t nt, std::int64_t kt, std::int64_t k16) {
  return (nt * k16 + kt) * w8_tile_bytes;
}

// ---- per-column parameters ----------------------------------------------------------------------------

/// Index of column n within its tile's permuted parameter run: 8 g + j.
QUANTO_CUDA_HD constexpr int column_slot(int nn) { return 8 * (nn % 8) + nn / 8; }
/// ... and back: the column nn of slot q.
QUANTO_CUDA_HD constexpr int slot_column(int q) { return 8 * (q % 8) + q / 8; }

/// 4-bit: index (in model-dtype elements) of the (scale, shift) pair of group gi, column n, for a
/// weight with n64 = n / 64 tiles; the shift follows the scale.
QUANTO_CUDA_HD constexpr std::int64_t w4_meta_index(std::int64_t gi, std::int64_t n, std::int64_t n64) {
  return ((gi * n64 + n / tile_n) * tile_n + column_slot(static_cast<int>(n % tile_n))) * 2;
}

/// 8-bit: index of the scale of column n.
QUANTO_CUDA_HD constexpr std::int64_t w8_scale_index(std::int64_t n) {
  return (n / tile_n) * tile_n + column_slot(static_cast<int>(n % tile_n));
}

}  // namespace cuda::fragment
QUANTO_END_NAMESPACE
