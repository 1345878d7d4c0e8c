// quanto/kernels/layout.hpp: the kernel layout of a quantized weight — made once (at `freeze`
// time) from optimum-quanto's file layout, read by every matmul kernel, and convertible back to the
// file layout bit for bit.
//
// A weight W of shape [n, k] (out features × in features; a conv weight [out, in, kh, kw] is viewed
// as [out, in·kh·kw]) is stored row by row. Each row holds `k_padded` codes (k rounded up to
// `block_k` = 32, the padding codes are 0) in blocks of 32 consecutive elements e[0..32):
//
//   8-bit (qint8, qfloat8*):  32 bytes, e[j] in byte j (int8 two's complement or fp8 bits)
//   4-bit (qint4):            16 bytes, byte j = e[j] | e[j + 16] << 4
//   2-bit (qint2):             8 bytes, byte j = e[j] | e[j + 8] << 2 | e[j + 16] << 4 | e[j + 24] << 6
//
// so that one vector load and a shift/mask per plane yields codes in an order a SIMD kernel can
// match with its copy of the activations. Scales are float32 copies of the model-dtype values
// ([n, groups], groups = k / group), exact; an affine weight's shift likewise (a float shift, or
// `scale * zero_point` for the integer zero-point variant, whose original bytes are kept too).
#pragma once

#include <bit>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/float8.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/quantize/qtensor.hpp"

QUANTO_BEGIN_NAMESPACE
namespace kernels {

/// Elements per kernel block along k: group sizes must be multiples of it (quanto's are).
inline constexpr std::int64_t block_k = 32;
/// Rows are padded to a multiple of this many elements, so that a SIMD kernel always reads whole
/// 128-element chunks (2-bit: one 32-byte load) without a tail.
inline constexpr std::int64_t row_align = 128;

/// A quantized weight in the kernel layout (see the file comment). `Q` the qtype, `T` the model
/// dtype the scales came from, `Shift` T (float shift) or uint8 (zero-point; 2/4-bit only).
template <QType Q, ModelFloat T, class Shift = T>
struct packed_weight {
  static_assert(std::is_same_v<Shift, T> || (LowBitQType<Q> && std::is_same_v<Shift, std::uint8_t>),
                "quanto: the shift of a packed weight is the model dtype, or uint8 for qint2/qint4");
  using qtype = Q;
  using model_type = T;
  using shift_type = Shift;
  static constexpr int bits = Q::bits;
  static constexpr bool is_affine = LowBitQType<Q>;

  std::int64_t n = 0;                           ///< output features (rows)
  std::int64_t k = 0;                           ///< input features (elements per row)
  std::int64_t k_padded = 0;                    ///< k rounded up to row_align
  std::int64_t group = 0;                       ///< elements per scale along k (k when one scale per row)
  std::int64_t n_groups = 0;                    ///< k / group (0 when k is 0): scales per row
  tensor<std::uint8_t> codes;                   ///< [n, k_padded * bits / 8]
  tensor<float> scale;                          ///< [n, groups]
  tensor<float> shift;                          ///< [n, groups], affine only: subtracted as `shift * x`
  tensor<std::uint8_t> zero_point;              ///< [n, groups], the zero-point variant only
  quanto::shape original_shape;                 ///< the weight's shape in the file layout
  qaxis file_axis = qaxis::first;               ///< 8-bit: `first` (per row) or `none` (per tensor)
  std::optional<std::int64_t> file_group_size;  ///< 2/4-bit: the file layout's group size

  std::int64_t groups() const noexcept { return n_groups; }
  std::int64_t row_bytes() const noexcept { return k_padded * bits / 8; }
  const std::uint8_t* row(std::int64_t r) const noexcept { return codes.data() + r * row_bytes(); }
  const float* scale_row(std::int64_t r) const noexcept { return scale.data() + r * groups(); }
  const float* shift_row(std::int64_t r) const noexcept { return shift.data() + r * groups(); }
  /// Bytes the kernels stream per call: codes plus scales (and shifts).
  std::int64_t stream_bytes() const noexcept {
    return static_cast<std::int64_t>(codes.size() + (scale.size() + shift.size()) * sizeof(float));
  }
};

// The packing functions are compiled per target (an AVX2 TU's copy may use AVX2 instructions), so
// they live in the per-target namespace like the kernels (the ODR test checks it); the layout type
// above is ISA-independent.
inline namespace QUANTO_TARGET_NS {
namespace layout_detail {

inline std::int64_t round_up(std::int64_t v, std::int64_t m) { return (v + m - 1) / m * m; }

/// [out, ...] viewed as [out, rest].
inline std::pair<std::int64_t, std::int64_t> as_matrix(const shape& s) {
  if (s.rank() < 2) throw shape_error("a matmul weight needs rank >= 2 ([out, in, ...]), got " + s.to_string());
  const std::int64_t n = s[0];
  return {n, n == 0 ? 0 : s.numel() / n};
}

/// Writes code `q` of element `e` (0 <= e < k_padded) into a row in the kernel layout.
template <int Bits>
void put_code(std::uint8_t* row, std::int64_t e, std::uint8_t q) noexcept {
  if constexpr (Bits == 8) {
    row[e] = q;
  } else {
    constexpr std::int64_t per_byte = 8 / Bits, block_bytes = block_k * Bits / 8;
    const std::int64_t b = e / block_k, j = e % block_k;
    const std::int64_t byte = j % block_bytes, plane = j / block_bytes;
    row[b * block_bytes + byte] |= static_cast<std::uint8_t>(q << (Bits * plane));
    (void)per_byte;
  }
}

/// Reads code `e` back from a row in the kernel layout.
template <int Bits>
std::uint8_t get_code(const std::uint8_t* row, std::int64_t e) noexcept {
  if constexpr (Bits == 8) {
    return row[e];
  } else {
    constexpr std::int64_t block_bytes = block_k * Bits / 8;
    const std::int64_t b = e / block_k, j = e % block_k;
    const std::int64_t byte = j % block_bytes, plane = j / block_bytes;
    return static_cast<std::uint8_t>((row[b * block_bytes + byte] >> (Bits * plane)) & ((1u << Bits) - 1u));
  }
}

template <class F>
constexpr bool is_fp8_nan_code(std::uint8_t c) noexcept {
  return is_nan_bits(to_float(F::from_bits(c)));
}

}  // namespace layout_detail

/// Converts an 8-bit weight in the file layout (per-row scale, or one scale per tensor) to the
/// kernel layout. A qfloat8 NaN code is rejected (value_error): the kernels assume finite codes.
template <ByteQType Q, ModelFloat T, template <class> class H>
packed_weight<Q, T> pack_weight(const basic_qbytes_weight<Q, T, H>& w) {
  w.validate();
  if (w.axis == qaxis::last)
    throw unsupported_error(
        "the matmul kernels take 8-bit weights scaled per output row (axis 0) or per tensor, "
        "not per input column (axis -1)");
  const auto [n, k] = layout_detail::as_matrix(w.shape());
  packed_weight<Q, T> p;
  p.n = n;
  p.k = k;
  p.k_padded = layout_detail::round_up(k, row_align);
  p.group = k;
  p.n_groups = k == 0 ? 0 : 1;
  p.original_shape = w.shape();
  p.file_axis = w.axis;
  p.codes = tensor<std::uint8_t>(shape{n, p.row_bytes()});
  p.scale = tensor<float>(shape{n, k == 0 ? 0 : 1});
  const auto* data = quanto::detail::as_view(w.data).data();
  const auto* sc = quanto::detail::as_view(w.scale).data();
  for (std::int64_t r = 0; r < n; ++r) {
    std::uint8_t* dst = p.codes.data() + r * p.row_bytes();
    for (std::int64_t e = 0; e < k; ++e) {
      const auto c = std::bit_cast<std::uint8_t>(data[r * k + e]);
      if constexpr (FloatQType<Q>) {
        if (layout_detail::is_fp8_nan_code<typename Q::storage>(c))
          throw value_error("weight code at [" + std::to_string(r) + ", " + std::to_string(e) + "] is NaN");
      }
      dst[e] = c;
    }
    if (k != 0) p.scale[static_cast<std::size_t>(r)] = quanto::model_arith::widen(sc[w.axis == qaxis::none ? 0 : r]);
  }
  return p;
}

/// Converts a 2/4-bit weight in the file layout (axis 0, grouped or one group per row) to the kernel
/// layout. Group sizes that are not a multiple of `block_k` are unsupported (unsupported_error).
template <LowBitQType Q, ModelFloat T, template <class> class H, class Shift>
packed_weight<Q, T, Shift> pack_weight(const basic_qbits_weight<Q, T, H, Shift>& w) {
  w.validate();
  if (w.axis != qaxis::first)
    throw unsupported_error("the matmul kernels take qint2/qint4 weights grouped along axis 0");
  const auto [n, k] = layout_detail::as_matrix(w.shape());
  const std::int64_t group = w.group_size ? *w.group_size : k;
  if (k != 0 && (k % group != 0 || (group % block_k != 0 && group != k)))
    throw unsupported_error("group size " + std::to_string(group) +
                            " is not supported by the matmul kernels: it must be a multiple of " +
                            std::to_string(block_k) + " that divides " + std::to_string(k));
  packed_weight<Q, T, Shift> p;
  p.n = n;
  p.k = k;
  p.k_padded = layout_detail::round_up(k, row_align);
  p.group = group;
  p.n_groups = k == 0 ? 0 : k / group;
  p.original_shape = w.shape();
  p.file_axis = w.axis;
  p.file_group_size = w.group_size;
  const std::int64_t g = p.groups();
  p.codes = tensor<std::uint8_t>(shape{n, p.row_bytes()});
  p.scale = tensor<float>(shape{n, g});
  p.shift = tensor<float>(shape{n, g});
  if constexpr (std::is_same_v<Shift, std::uint8_t>) p.zero_point = tensor<std::uint8_t>(shape{n, g});
  const tensor<std::uint8_t> codes = w.unpack();  // grouped: [n*g, group] (or [n, k]): row-major == [n, k]
  const auto* sc = quanto::detail::as_view(w.scale).data();
  const auto* sh = quanto::detail::as_view(w.shift).data();
  for (std::int64_t r = 0; r < n; ++r) {
    std::uint8_t* dst = p.codes.data() + r * p.row_bytes();
    for (std::int64_t e = 0; e < k; ++e)
      layout_detail::put_code<Q::bits>(dst, e, codes[static_cast<std::size_t>(r * k + e)]);
    for (std::int64_t j = 0; j < g; ++j) {
      const auto i = static_cast<std::size_t>(r * g + j);
      const float s = quanto::model_arith::widen(sc[i]);
      p.scale[i] = s;
      if constexpr (std::is_same_v<Shift, std::uint8_t>) {
        p.zero_point[i] = sh[i];
        p.shift[i] = s * static_cast<float>(static_cast<std::int8_t>(sh[i]));
      } else {
        p.shift[i] = quanto::model_arith::widen(sh[i]);
      }
    }
  }
  return p;
}

/// The file layout back from the kernel layout, bit for bit.
template <ByteQType Q, ModelFloat T>
qbytes_weight<Q, T> unpack_weight(const packed_weight<Q, T>& p) {
  qbytes_weight<Q, T> w;
  w.axis = p.file_axis;
  w.data = tensor<typename Q::storage>(p.original_shape);
  for (std::int64_t r = 0; r < p.n; ++r)
    for (std::int64_t e = 0; e < p.k; ++e)
      w.data[static_cast<std::size_t>(r * p.k + e)] = std::bit_cast<typename Q::storage>(p.row(r)[e]);
  const quanto::shape ps = map_params(p.original_shape, p.file_axis).param_shape;
  w.scale = tensor<T>(ps);
  for (std::size_t i = 0; i < w.scale.size(); ++i) w.scale[i] = quanto::model_arith::narrow<T>(p.scale[i]);
  return w;
}

template <LowBitQType Q, ModelFloat T, class Shift>
qbits_weight<Q, T, Shift> unpack_weight(const packed_weight<Q, T, Shift>& p) {
  qbits_weight<Q, T, Shift> w;
  w.original_shape = p.original_shape;
  w.axis = p.file_axis;
  w.group_size = p.file_group_size;
  const quanto::shape cs = w.codes_shape();
  tensor<std::uint8_t> codes(cs);
  for (std::int64_t r = 0; r < p.n; ++r)
    for (std::int64_t e = 0; e < p.k; ++e)
      codes[static_cast<std::size_t>(r * p.k + e)] = layout_detail::get_code<Q::bits>(p.row(r), e);
  w.packed = pack(codes.view(), Q::bits);
  const quanto::shape ps = w.group_size ? shape{cs[0], 1} : map_params(p.original_shape, qaxis::first).param_shape;
  w.scale = tensor<T>(ps);
  w.shift = tensor<Shift>(ps);
  for (std::size_t i = 0; i < w.scale.size(); ++i) {
    w.scale[i] = quanto::model_arith::narrow<T>(p.scale[i]);
    if constexpr (std::is_same_v<Shift, std::uint8_t>)
      w.shift[i] = p.zero_point[i];
    else
      w.shift[i] = quanto::model_arith::narrow<T>(p.shift[i]);
  }
  return w;
}

}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE
