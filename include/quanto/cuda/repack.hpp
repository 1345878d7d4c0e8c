// quanto/cuda/repack.hpp: the GPU kernel layouts of quantized weights, made once on the host from
// optimum-quanto's file layout and exactly invertible back to it (byte for byte). Pure C++20 — no
// CUDA header is needed to repack, to unpack, or to test the layouts; the kernels that read them are
// in the optional quanto::cuda component (quanto/cuda/cuda.hpp, src/cuda/).
//
//   auto q = quanto::quantize_weight<quanto::qint4>(w);        // w: tensor<float16 | bfloat16> [n, k]
//   auto p = quanto::cuda::repack_w4a16(q);                    // tiles for mma.sync (fragment.hpp)
//   auto back = quanto::cuda::unpack_w4a16(p);                 // q again, bit for bit
//
// Layouts (index functions in fragment.hpp, docs/cuda.md):
//   w4a16_weight  qint4, axis 0, group size g (a multiple of 16 dividing k, or one group per row):
//                 codes [n/64, k/16, 512] bytes, meta [k/g, n/64, 64, 2] model-dtype (scale, shift)
//                 pairs — or (scale, magic + zero_point) for quanto's integer zero-point variant.
//   w8a16_weight  qint8 or qfloat8_e4m3fn, scale per output row or per tensor:
//                 codes [n/64, k/16, 1024] bytes, scale [n] model-dtype (permuted per 64-column tile).
// Both need n % 64 == 0 and k % 16 == 0 and a float16 / bfloat16 model dtype (the activations' type
// in the kernels); anything else is refused with unsupported_error, and `*_supports()` says so
// without throwing, so that a caller can take the dequantize-then-GEMM fallback instead.
//
// The kernels dequantize exactly as optimum-quanto does, in the model dtype:
//   qint4, float shift:   w = T(T(scale * q) - shift)          (q the unsigned code, 0..15)
//   qint4, zero-point:    w = T(scale * (q - zero_point))
//   qint8 / e4m3fn:       w = T(scale * q)
// `kernel_dequantize()` replays the kernels' read order and arithmetic (magic numbers, bit tricks,
// one rounding per step) on the CPU; the tests require it to equal the library's `dequantize()`.
#pragma once

#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "quanto/core/bfloat16.hpp"
#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/float16.hpp"
#include "quanto/core/float8.hpp"
#include "quanto/core/float_bits.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/cuda/fragment.hpp"
#include "quanto/quantize/axis.hpp"
#include "quanto/quantize/packing.hpp"
#include "quanto/quantize/qtensor.hpp"

QUANTO_BEGIN_NAMESPACE
namespace cuda {

/// The model dtypes the GPU kernels compute in (activations, outputs, scales).
template <class T>
concept CudaFloat = std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>;

/// The 8-bit qtypes the fused w8a16 kernel decodes.
template <class Q>
concept CudaByteQType = std::is_same_v<Q, qint8> || std::is_same_v<Q, qfloat8_e4m3fn>;

/// The magic number of T as a value: magic | q is magic + q exactly (fragment.hpp).
template <CudaFloat T>
inline constexpr std::uint16_t magic_bits = std::is_same_v<T, float16> ? fragment::magic_f16 : fragment::magic_bf16;
/// ... and its value (1024 or 128).
template <CudaFloat T>
inline constexpr float magic_value = std::is_same_v<T, float16> ? 1024.0f : 128.0f;

// ---- the repacked weights -----------------------------------------------------------------------------

/// A qint4 weight in the w4a16 kernel layout, in host memory (upload `codes` and `meta` as they are).
/// `Shift` is T (quanto's float shift) or uint8 (its integer zero-point variant).
template <CudaFloat T, class Shift = T>
struct w4a16_weight {
  static_assert(std::is_same_v<Shift, T> || std::is_same_v<Shift, std::uint8_t>,
                "quanto: the shift of a qint4 weight is the model dtype or a uint8 zero-point");
  using model_type = T;
  using shift_type = Shift;
  static constexpr bool zero_point = std::is_same_v<Shift, std::uint8_t>;

  std::int64_t n = 0;            ///< output features
  std::int64_t k = 0;            ///< input features
  std::int64_t group = 0;        ///< elements per (scale, shift) along k; k when one group per row
  tensor<std::uint8_t> codes;    ///< [n/64, k/16, 512]: the 4-bit tiles
  tensor<T> meta;                ///< [k/group, n/64, 64, 2]: (scale, shift) or (scale, magic + zero-point)
  quanto::shape original_shape;  ///< the file layout's weight shape
  std::optional<std::int64_t> file_group_size;  ///< the file layout's group size (none: one per row)

  std::int64_t groups() const noexcept { return group == 0 ? 0 : k / group; }
};

/// An 8-bit weight (qint8 or qfloat8_e4m3fn) in the w8a16 kernel layout, in host memory.
template <CudaByteQType Q, CudaFloat T>
struct w8a16_weight {
  using qtype = Q;
  using model_type = T;
  std::int64_t n = 0;
  std::int64_t k = 0;
  tensor<std::uint8_t> codes;  ///< [n/64, k/16, 1024]: the 8-bit tiles (int8 two's complement or e4m3fn bits)
  tensor<T> scale;             ///< [n]: one scale per output column, permuted per tile (fragment.hpp)
  quanto::shape original_shape;
  qaxis file_axis = qaxis::first;  ///< `first` (per row) or `none` (one scale for the tensor)
};

// ---- shape rules --------------------------------------------------------------------------------------

namespace detail {

/// [out, ...] viewed as [out, rest].
inline std::pair<std::int64_t, std::int64_t> matrix_dims(const shape& s) {
  if (s.rank() < 2) throw shape_error("a GPU matmul weight needs rank >= 2 ([out, in, ...]), got " + s.to_string());
  const std::int64_t n = s[0];
  return {n, n == 0 ? 0 : s.numel() / n};
}

/// Why the fused kernels cannot take an [n, k] weight with this group size; empty if they can.
inline std::string tile_problem(std::int64_t n, std::int64_t k, std::int64_t group) {
  constexpr std::int64_t limit = std::int64_t{1} << 30;
  if (n <= 0 || k <= 0) return "an empty weight [" + std::to_string(n) + ", " + std::to_string(k) + "]";
  if (n % fragment::tile_n != 0)
    return "n = " + std::to_string(n) + " is not a multiple of " + std::to_string(fragment::tile_n);
  if (k % fragment::tile_k != 0)
    return "k = " + std::to_string(k) + " is not a multiple of " + std::to_string(fragment::tile_k);
  if (n >= limit || k >= limit) return "the weight is too large for 32-bit tile indices";
  if (group <= 0 || group % fragment::tile_k != 0 || k % group != 0)
    return "group size " + std::to_string(group) + " is not a multiple of " + std::to_string(fragment::tile_k) +
           " that divides k = " + std::to_string(k);
  return {};
}

template <class W>
std::string w4a16_problem(const W& w) {
  if (w.axis != qaxis::first) return "the weight is grouped along axis -1 (the kernels take axis 0)";
  const auto [n, k] = matrix_dims(w.shape());
  return tile_problem(n, k, w.group_size ? *w.group_size : k);
}

template <class W>
std::string w8a16_problem(const W& w) {
  if (w.axis == qaxis::last)
    return "the weight is scaled per input column (axis -1); the kernels take axis 0 or per tensor";
  const auto [n, k] = matrix_dims(w.shape());
  return tile_problem(n, k, k);
}

inline void require(const std::string& problem, const char* kernel) {
  if (!problem.empty())
    throw unsupported_error(std::string(kernel) + ": " + problem +
                            "; use quanto::cuda::dequantize_matmul_fallback for this weight");
}

inline std::uint32_t load_word(const std::uint8_t* p) noexcept {
  return static_cast<std::uint32_t>(p[0]) | static_cast<std::uint32_t>(p[1]) << 8 |
         static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
}

}  // namespace detail

/// True when the w4a16 kernel can take this weight (else repack_w4a16 throws unsupported_error).
template <CudaFloat T, template <class> class H, class Shift>
bool w4a16_supports(const basic_qbits_weight<qint4, T, H, Shift>& w) {
  return detail::w4a16_problem(w).empty();
}

/// True when the w8a16 kernel can take this weight (else repack_w8a16 throws unsupported_error).
template <CudaByteQType Q, CudaFloat T, template <class> class H>
bool w8a16_supports(const basic_qbytes_weight<Q, T, H>& w) {
  return detail::w8a16_problem(w).empty();
}

// ---- qint4 --------------------------------------------------------------------------------------------

/// quanto's file layout (packed codes, scale, shift; owning or a view of a mapped file) to the w4a16
/// kernel layout. Throws shape_error for parts that do not fit together, unsupported_error for a
/// shape the kernel does not take, value_error for a zero-point above 15.
template <CudaFloat T, template <class> class H, class Shift>
w4a16_weight<T, Shift> repack_w4a16(const basic_qbits_weight<qint4, T, H, Shift>& w) {
  w.validate();
  detail::require(detail::w4a16_problem(w), "repack_w4a16");
  const auto [n, k] = detail::matrix_dims(w.shape());
  w4a16_weight<T, Shift> p;
  p.n = n;
  p.k = k;
  p.group = w.group_size ? *w.group_size : k;
  p.original_shape = w.shape();
  p.file_group_size = w.group_size;
  const std::int64_t n64 = n / fragment::tile_n, k16 = k / fragment::tile_k, groups = p.groups();
  p.codes = tensor<std::uint8_t>(shape{n64, k16, fragment::w4_tile_bytes});
  p.meta = tensor<T>(shape{groups, n64, fragment::tile_n, 2});

  // The grouped codes [n*groups, group] (or [n, k]) are [n, k] row-major.
  const tensor<std::uint8_t> codes = w.unpack();
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t e = 0; e < k; ++e) {
      const auto pos =
          fragment::w4_position(static_cast<int>(e % fragment::tile_k), static_cast<int>(i % fragment::tile_n));
      const std::int64_t byte = fragment::w4_tile_offset(i / fragment::tile_n, e / fragment::tile_k, k16) + pos.byte;
      p.codes[static_cast<std::size_t>(byte)] |=
          static_cast<std::uint8_t>(codes[static_cast<std::size_t>(i * k + e)] << pos.shift);
    }

  const auto* sc = quanto::detail::as_view(w.scale).data();
  const auto* sh = quanto::detail::as_view(w.shift).data();
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t gi = 0; gi < groups; ++gi) {
      const auto src = static_cast<std::size_t>(i * groups + gi);  // group row i*groups + gi of the file
      const auto dst = static_cast<std::size_t>(fragment::w4_meta_index(gi, i, n64));
      p.meta[dst] = sc[src];
      if constexpr (w4a16_weight<T, Shift>::zero_point) {
        if (sh[src] > 15)
          throw value_error("repack_w4a16: zero-point " + std::to_string(sh[src]) + " of group " + std::to_string(src) +
                            " does not fit a 4-bit code");
        p.meta[dst + 1] = T(magic_value<T> + static_cast<float>(sh[src]));  // exact: magic + 0..15
      } else {
        p.meta[dst + 1] = sh[src];
      }
    }
  return p;
}

/// The file layout back from the w4a16 layout, byte for byte.
template <CudaFloat T, class Shift>
qbits_weight<qint4, T, Shift> unpack_w4a16(const w4a16_weight<T, Shift>& p) {
  qbits_weight<qint4, T, Shift> w;
  w.original_shape = p.original_shape;
  w.axis = qaxis::first;
  w.group_size = p.file_group_size;
  const std::int64_t n = p.n, k = p.k, n64 = n / fragment::tile_n, k16 = k / fragment::tile_k, groups = p.groups();
  const quanto::shape cs = w.codes_shape();
  tensor<std::uint8_t> codes(cs);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t e = 0; e < k; ++e) {
      const auto pos =
          fragment::w4_position(static_cast<int>(e % fragment::tile_k), static_cast<int>(i % fragment::tile_n));
      const std::int64_t byte = fragment::w4_tile_offset(i / fragment::tile_n, e / fragment::tile_k, k16) + pos.byte;
      codes[static_cast<std::size_t>(i * k + e)] =
          static_cast<std::uint8_t>((p.codes[static_cast<std::size_t>(byte)] >> pos.shift) & 0xF);
    }
  w.packed = pack(codes.view(), 4);
  const quanto::shape ps = w.group_size ? shape{cs[0], 1} : map_params(p.original_shape, qaxis::first).param_shape;
  w.scale = tensor<T>(ps);
  w.shift = tensor<Shift>(ps);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t gi = 0; gi < groups; ++gi) {
      const auto dst = static_cast<std::size_t>(i * groups + gi);
      const auto src = static_cast<std::size_t>(fragment::w4_meta_index(gi, i, n64));
      w.scale[dst] = p.meta[src];
      if constexpr (w4a16_weight<T, Shift>::zero_point)
        w.shift[dst] = static_cast<std::uint8_t>(to_float(p.meta[src + 1]) - magic_value<T>);
      else
        w.shift[dst] = p.meta[src + 1];
    }
  return w;
}

/// The w4a16 weight dequantized on the CPU the way the kernel does it: every tile, lane, word and
/// extraction in the kernel's read order (fragment::w4_element), the code OR-ed into the magic
/// number, then `sub.rn`, `mul.rn`, `sub.rn` in T (each emulated as one exact float32 operation
/// rounded once to T: float32 has the 2p + 2 bits that make that equal to T's own rounding).
/// Returns the weight [n, k] in T.
template <CudaFloat T, class Shift>
tensor<T> kernel_dequantize(const w4a16_weight<T, Shift>& p) {
  using quanto::model_arith::narrow;
  using quanto::model_arith::t_sub;
  using quanto::model_arith::widen;
  const std::int64_t n = p.n, k = p.k, n64 = n / fragment::tile_n, k16 = k / fragment::tile_k;
  const std::uint32_t magic2 = static_cast<std::uint32_t>(magic_bits<T>) * 0x00010001u;
  const T magic = T::from_bits(magic_bits<T>);
  tensor<T> out(shape{n, k});
  for (std::int64_t nt = 0; nt < n64; ++nt)
    for (std::int64_t kt = 0; kt < k16; ++kt) {
      const std::uint8_t* tile = p.codes.data() + fragment::w4_tile_offset(nt, kt, k16);
      for (int lane = 0; lane < fragment::warp_lanes; ++lane)
        for (int word = 0; word < 4; ++word) {
          const std::uint32_t bits = detail::load_word(tile + fragment::lane_bytes * lane + 4 * word);
          for (int e = 0; e < 4; ++e) {
            const std::uint32_t h2 = ((bits >> (4 * e)) & 0x000F000Fu) | magic2;  // lop3(shift, mask, magic)
            for (int half = 0; half < 2; ++half) {
              const auto v = T::from_bits(static_cast<std::uint16_t>(half ? h2 >> 16 : h2 & 0xFFFFu));
              const auto el = fragment::w4_element(lane, word, e + 4 * half);
              const std::int64_t col = nt * fragment::tile_n + el.nn, row_k = kt * fragment::tile_k + el.kk;
              const auto m = static_cast<std::size_t>(fragment::w4_meta_index(row_k / p.group, col, n64));
              const T s = p.meta[m], t = p.meta[m + 1];
              T w;
              if constexpr (w4a16_weight<T, Shift>::zero_point)
                w = narrow<T>(widen(t_sub(v, t)) * widen(s));
              else
                w = t_sub(narrow<T>(widen(t_sub(v, magic)) * widen(s)), t);
              out[static_cast<std::size_t>(col * k + row_k)] = w;
            }
          }
        }
    }
  return out;
}

// ---- qint8 / qfloat8_e4m3fn --------------------------------------------------------------------------

/// quanto's 8-bit file layout (codes + per-row or per-tensor scale) to the w8a16 kernel layout.
/// A NaN e4m3fn code is a value_error (the kernels decode finite codes only).
template <CudaByteQType Q, CudaFloat T, template <class> class H>
w8a16_weight<Q, T> repack_w8a16(const basic_qbytes_weight<Q, T, H>& w) {
  w.validate();
  detail::require(detail::w8a16_problem(w), "repack_w8a16");
  const auto [n, k] = detail::matrix_dims(w.shape());
  w8a16_weight<Q, T> p;
  p.n = n;
  p.k = k;
  p.original_shape = w.shape();
  p.file_axis = w.axis;
  const std::int64_t n64 = n / fragment::tile_n, k16 = k / fragment::tile_k;
  p.codes = tensor<std::uint8_t>(shape{n64, k16, fragment::w8_tile_bytes});
  p.scale = tensor<T>(shape{n});
  const auto* data = quanto::detail::as_view(w.data).data();
  const auto* sc = quanto::detail::as_view(w.scale).data();
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t e = 0; e < k; ++e) {
      const auto c = std::bit_cast<std::uint8_t>(data[i * k + e]);
      if constexpr (std::is_same_v<Q, qfloat8_e4m3fn>) {
        if ((c & 0x7F) == 0x7F)
          throw value_error("repack_w8a16: weight code at [" + std::to_string(i) + ", " + std::to_string(e) +
                            "] is NaN");
      }
      const auto pos =
          fragment::w8_position(static_cast<int>(e % fragment::tile_k), static_cast<int>(i % fragment::tile_n));
      p.codes[static_cast<std::size_t>(fragment::w8_tile_offset(i / fragment::tile_n, e / fragment::tile_k, k16) +
                                       pos.byte)] = c;
    }
    p.scale[static_cast<std::size_t>(fragment::w8_scale_index(i))] = sc[w.axis == qaxis::none ? 0 : i];
  }
  return p;
}

/// The file layout back from the w8a16 layout, byte for byte.
template <CudaByteQType Q, CudaFloat T>
qbytes_weight<Q, T> unpack_w8a16(const w8a16_weight<Q, T>& p) {
  qbytes_weight<Q, T> w;
  w.axis = p.file_axis;
  w.data = tensor<typename Q::storage>(p.original_shape);
  const std::int64_t n = p.n, k = p.k, k16 = k / fragment::tile_k;
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t e = 0; e < k; ++e) {
      const auto pos =
          fragment::w8_position(static_cast<int>(e % fragment::tile_k), static_cast<int>(i % fragment::tile_n));
      const std::uint8_t c = p.codes[static_cast<std::size_t>(
          fragment::w8_tile_offset(i / fragment::tile_n, e / fragment::tile_k, k16) + pos.byte)];
      w.data[static_cast<std::size_t>(i * k + e)] = std::bit_cast<typename Q::storage>(c);
    }
  w.scale = tensor<T>(map_params(p.original_shape, p.file_axis).param_shape);
  for (std::size_t i = 0; i < w.scale.size(); ++i)
    w.scale[i] = p.scale[static_cast<std::size_t>(fragment::w8_scale_index(static_cast<std::int64_t>(i)))];
  return w;
}

namespace detail {

/// The value of 8-bit code c as the kernel decodes it, in T (exact: every int8 and finite e4m3fn
/// value is representable in float16 and bfloat16).
template <CudaByteQType Q, CudaFloat T>
T kernel_decode_byte(std::uint8_t c) noexcept {
  using quanto::model_arith::narrow;
  using quanto::model_arith::t_sub;
  using quanto::model_arith::widen;
  if constexpr (std::is_same_v<Q, qint8>) {
    const std::uint32_t u = c ^ 0x80u;  // offset binary: q + 128
    if constexpr (std::is_same_v<T, float16>) {
      // prmt places u under the magic byte 0x64: 1024 + u; sub.rn 1152 gives q.
      return t_sub(float16::from_bits(static_cast<std::uint16_t>(0x6400u | u)), float16::from_bits(0x6480));
    } else {
      // via float32: 2^23 + u, minus 2^23 + 128, then the upper 16 bits (exact: |q| <= 128).
      const float f = bits_to_float(0x4B000000u | u) - 8388736.0f;
      return bfloat16::from_bits(static_cast<std::uint16_t>(float_to_bits(f) >> 16));
    }
  } else {
    if constexpr (std::is_same_v<T, float16>) {
      // e4m3fn bits moved into float16's fields are the value times 2^-8 (normals and subnormals
      // alike); mul.rn by 256 is exact. (sm_89+ converts with cvt.rn.f16x2.e4m3x2, the same value.)
      const auto h = static_cast<std::uint16_t>(((c & 0x7Fu) << 7) | ((c & 0x80u) << 8));
      return narrow<float16>(widen(float16::from_bits(h)) * 256.0f);
    } else {
      // the same in float32 fields (value times 2^-120), times 2^120, truncated to bfloat16 (exact).
      const float f = bits_to_float(((c & 0x7Fu) << 20) | ((c & 0x80u) << 24)) * 0x1p120f;
      return bfloat16::from_bits(static_cast<std::uint16_t>(float_to_bits(f) >> 16));
    }
  }
}

}  // namespace detail

/// The w8a16 weight dequantized on the CPU the way the kernel does it (read order of
/// fragment::w8_element, the kernel's decode of each byte, one mul.rn by the column's scale).
template <CudaByteQType Q, CudaFloat T>
tensor<T> kernel_dequantize(const w8a16_weight<Q, T>& p) {
  using quanto::model_arith::narrow;
  using quanto::model_arith::widen;
  const std::int64_t n = p.n, k = p.k, n64 = n / fragment::tile_n, k16 = k / fragment::tile_k;
  tensor<T> out(shape{n, k});
  for (std::int64_t nt = 0; nt < n64; ++nt)
    for (std::int64_t kt = 0; kt < k16; ++kt) {
      const std::uint8_t* tile = p.codes.data() + fragment::w8_tile_offset(nt, kt, k16);
      for (int lane = 0; lane < fragment::warp_lanes; ++lane)
        for (int h = 0; h < 2; ++h)
          for (int b = 0; b < fragment::lane_bytes; ++b) {
            const std::uint8_t c = tile[h * (fragment::w8_tile_bytes / 2) + fragment::lane_bytes * lane + b];
            const auto el = fragment::w8_element(lane, h, b);
            const std::int64_t col = nt * fragment::tile_n + el.nn, row_k = kt * fragment::tile_k + el.kk;
            const T s = p.scale[static_cast<std::size_t>(fragment::w8_scale_index(col))];
            out[static_cast<std::size_t>(col * k + row_k)] =
                narrow<T>(widen(detail::kernel_decode_byte<Q, T>(c)) * widen(s));
          }
    }
  return out;
}

}  // namespace cuda
QUANTO_END_NAMESPACE
