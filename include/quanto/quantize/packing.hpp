// quanto/quantize/packing.hpp: optimum-quanto's PackedTensor layout for 2- and 4-bit codes.
//
// Codes are packed along the FIRST dimension, in planar chunks: with R = ceil(N / per_byte)
// rows of bytes,
//
//     packed[r, ...] = OR_i  codes[i*R + r, ...] << (bits * i)      for i*R + r < N
//
// so for 4 bits the low nibbles of all bytes hold rows [0, R) and the high nibbles rows [R, 2R);
// for 2 bits four planes of R rows each. Neighbouring values are NOT interleaved. Fields past the
// last row are zero.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/shape.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/quantize/simd.hpp"

QUANTO_BEGIN_NAMESPACE

/// The shape of the packed bytes for codes of shape `codes` at `bits` bits per code.
inline shape packed_shape(const shape& codes, int bits) {
  if (bits != 2 && bits != 4) throw unsupported_error("packing supports 2 or 4 bits");
  if (codes.rank() == 0) throw shape_error("cannot pack a rank-0 tensor");
  const std::int64_t per_byte = 8 / bits;
  std::vector<std::int64_t> d(codes.dims().begin(), codes.dims().end());
  d[0] = (d[0] + per_byte - 1) / per_byte;
  return shape(d);
}

/// Packs unsigned codes (each < 2^bits) into quanto's planar layout. A code out of range is a
/// value_error: it would silently corrupt its neighbours' bits.
inline tensor<std::uint8_t> pack(tensor_view<const std::uint8_t> codes, int bits) {
  tensor<std::uint8_t> out(packed_shape(codes.shape(), bits));
  const std::int64_t n = codes.shape()[0];
  const std::int64_t cols = n == 0 ? 0 : codes.numel() / n;
  const std::int64_t rows = out.shape()[0];
  const auto mask = static_cast<std::uint8_t>((1u << bits) - 1u);
#if QUANTO_HAS_AVX2
  if (kernels::quantize_dispatch::compiled && kernels::quantize_dispatch::enabled()) {
    // Plane p is the contiguous block of codes [p * rows * cols, (p + 1) * rows * cols).
    const auto plane = static_cast<std::size_t>(rows * cols), total = static_cast<std::size_t>(n * cols);
    bool overflow = false;
    for (std::size_t p = 0; p * plane < total && !overflow; ++p) {
      const std::uint8_t* src = codes.data() + p * plane;
      const std::size_t len = std::min(plane, total - p * plane);
      const auto shift = static_cast<int>(bits * p);
      std::size_t k = kernels::quantize_avx2::pack_plane(src, out.data(), len, shift, mask, overflow);
      for (; k < len && !overflow; ++k) {
        overflow = src[k] > mask;
        out[k] |= static_cast<std::uint8_t>(src[k] << shift);
      }
    }
    if (!overflow) return out;
    std::fill(out.begin(), out.end(), std::uint8_t{0});  // the reference below names the code
  }
#endif
  for (std::int64_t src = 0; src < n; ++src) {
    const std::int64_t plane = src / rows, r = src % rows;
    const auto shift = static_cast<unsigned>(bits * plane);
    for (std::int64_t c = 0; c < cols; ++c) {
      const std::uint8_t q = codes[static_cast<std::size_t>(src * cols + c)];
      if (q > mask)
        throw value_error("code " + std::to_string(q) + " does not fit in " + std::to_string(bits) + " bits (row " +
                          std::to_string(src) + ", column " + std::to_string(c) + ")");
      out[static_cast<std::size_t>(r * cols + c)] |= static_cast<std::uint8_t>(q << shift);
    }
  }
  return out;
}

/// Unpacks quanto's planar layout back to codes of shape `codes_shape` (the logical, unpacked
/// shape, which the packed bytes alone do not record).
inline tensor<std::uint8_t> unpack(tensor_view<const std::uint8_t> packed, int bits, const shape& codes_shape) {
  const shape expect = packed_shape(codes_shape, bits);
  if (!(packed.shape() == expect))
    throw shape_error("packed data has shape " + packed.shape().to_string() + ", expected " + expect.to_string() +
                      " for codes of shape " + codes_shape.to_string());
  tensor<std::uint8_t> out(codes_shape);
  const std::int64_t n = codes_shape[0];
  const std::int64_t cols = n == 0 ? 0 : codes_shape.numel() / n;
  const std::int64_t rows = packed.shape()[0];
  const auto mask = static_cast<unsigned>((1u << bits) - 1u);
#if QUANTO_HAS_AVX2
  if (kernels::quantize_dispatch::compiled && kernels::quantize_dispatch::enabled()) {
    const auto plane = static_cast<std::size_t>(rows * cols), total = static_cast<std::size_t>(n * cols);
    for (std::size_t p = 0; p * plane < total; ++p) {
      std::uint8_t* dst = out.data() + p * plane;
      const std::size_t len = std::min(plane, total - p * plane);
      const auto shift = static_cast<int>(bits * p);
      std::size_t k =
          kernels::quantize_avx2::unpack_plane(packed.data(), dst, len, shift, static_cast<std::uint8_t>(mask));
      for (; k < len; ++k) dst[k] = static_cast<std::uint8_t>((packed[k] >> shift) & mask);
    }
    return out;
  }
#endif
  for (std::int64_t dst = 0; dst < n; ++dst) {
    const std::int64_t plane = dst / rows, r = dst % rows;
    const auto shift = static_cast<unsigned>(bits * plane);
    for (std::int64_t c = 0; c < cols; ++c)
      out[static_cast<std::size_t>(dst * cols + c)] =
          static_cast<std::uint8_t>((packed[static_cast<std::size_t>(r * cols + c)] >> shift) & mask);
  }
  return out;
}

QUANTO_END_NAMESPACE
