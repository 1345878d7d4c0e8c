// quanto/kernels/conv2d.hpp: 2-D convolution (PyTorch's `conv2d`, NCHW) on the matmul kernels.
//
// A conv weight [out, c, kh, kw] is packed like any other (`pack_weight`: viewed as the matrix
// [out, c·kh·kw]), so a convolution is a matmul over the image's patches: im2col writes, for a tile
// of output pixels, one row per pixel holding its receptive field in the weight's flattening order
// (channel-major, then kernel row, then kernel column; padding reads as 0), `matmul` turns the
// [pixels, c·kh·kw] tile into [pixels, out], and the tile is transposed into the NCHW output.
//
//   conv2d(w, input, bias, params)                          tensor [N, C, H, W] -> [N, OUT, OH, OW]
//   conv2d(w, x, batch, height, width, y, bias, params)     pointers, for engines
//
// Each output is computed by one matmul output, so the accuracy, activation policies and threading
// are the matmul's (threads split the output channels of each tile). Groups other than 1 are not
// supported yet.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/shape.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/backend.hpp"
#include "quanto/kernels/layout.hpp"
#include "quanto/kernels/matmul.hpp"

QUANTO_BEGIN_NAMESPACE
namespace kernels {

/// The hyper-parameters of a conv2d call, as PyTorch's `conv2d(stride, padding, dilation, groups)`
/// (padding is symmetric: `pad_h` rows above and below, `pad_w` columns left and right).
struct conv2d_params {
  std::int64_t stride_h = 1, stride_w = 1;
  std::int64_t pad_h = 0, pad_w = 0;
  std::int64_t dilation_h = 1, dilation_w = 1;
  std::int64_t groups = 1;  ///< only 1 is supported (unsupported_error otherwise)
  /// Output pixels per im2col tile (> 0). The working memory of a call is bounded by the tile, not
  /// by the image: about tile_pixels · (K·sizeof(X) + 4·k_padded + 4·OUT) bytes, K = C·KH·KW (the
  /// im2col rows, the matmul's float copy of them, its float output): 256 pixels of a 3x3 conv over
  /// 512 channels (K = 4608) in float take about 9.5 MiB. The results never depend on the thread
  /// count; they equal one matmul over the whole image's im2col when the tile is a multiple of 4
  /// and at least 8 (the default is), and may otherwise differ from it in the last bits, within the
  /// same error bound: a matmul output may depend on m mod 4 (the row tile of the small-batch
  /// kernels), and on AVX2 on whether m < 5 (the register tiles) or not (the panel kernels). A
  /// last tile of fewer than 5 pixels is therefore joined to the one before it.
  std::int64_t tile_pixels = 256;
};

/// The validated geometry of a conv2d call.
struct conv2d_geometry {
  std::int64_t batch = 0, channels = 0, height = 0, width = 0;  ///< input [N, C, H, W]
  std::int64_t out_channels = 0, kernel_h = 0, kernel_w = 0;    ///< weight [OUT, C, KH, KW]
  std::int64_t out_h = 0, out_w = 0;                            ///< output [N, OUT, OH, OW]

  quanto::shape input_shape() const { return {batch, channels, height, width}; }
  quanto::shape output_shape() const { return {batch, out_channels, out_h, out_w}; }
  std::int64_t patch() const noexcept { return channels * kernel_h * kernel_w; }  ///< K of the matmul
  std::int64_t pixels() const noexcept { return out_h * out_w; }
};

inline namespace QUANTO_TARGET_NS {
namespace conv_detail {

/// Output extent along one dimension: (in + 2·pad - dil·(k - 1) - 1) / stride + 1, overflow-checked.
inline std::int64_t out_extent(const char* dim, std::int64_t in, std::int64_t k, std::int64_t stride, std::int64_t pad,
                               std::int64_t dil) {
  constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
  const std::string d(dim);
  if (stride <= 0) throw shape_error("conv2d: stride_" + d + " must be positive, got " + std::to_string(stride));
  if (dil <= 0) throw shape_error("conv2d: dilation_" + d + " must be positive, got " + std::to_string(dil));
  if (pad < 0) throw shape_error("conv2d: pad_" + d + " must not be negative, got " + std::to_string(pad));
  if (k <= 0) throw shape_error("conv2d: the kernel " + d + " must be positive, got " + std::to_string(k));
  if (k > 1 && dil > (max - 1) / (k - 1))
    throw shape_error("conv2d: dilation_" + d + " " + std::to_string(dil) + " is too large");
  const std::int64_t extent = dil * (k - 1) + 1;  // the dilated kernel
  if (pad > (max - in) / 2) throw shape_error("conv2d: pad_" + d + " " + std::to_string(pad) + " is too large");
  const std::int64_t padded = in + 2 * pad;
  if (padded < extent)
    throw shape_error("conv2d: the output " + d + " would be empty: the input " + d + " " + std::to_string(in) +
                      " padded by 2 x " + std::to_string(pad) + " is smaller than the dilated kernel extent " +
                      std::to_string(extent));
  return (padded - extent) / stride + 1;
}

/// Writes the receptive fields of output pixels [p0, p0 + count) of one image (`x`: [C, H, W]) as
/// `count` rows of K = C·KH·KW elements into `cols`, in the weight's flattening order.
template <ModelFloat X>
void im2col(const X* x, const conv2d_geometry& g, const conv2d_params& p, std::int64_t p0, std::int64_t count,
            X* cols) {
  const X zero = X(0.0f);
  const std::int64_t hw = g.height * g.width;
  for (std::int64_t t = 0; t < count; ++t) {
    const std::int64_t oh = (p0 + t) / g.out_w, ow = (p0 + t) % g.out_w;
    const std::int64_t ih0 = oh * p.stride_h - p.pad_h, iw0 = ow * p.stride_w - p.pad_w;
    X* dst = cols + t * g.patch();
    for (std::int64_t c = 0; c < g.channels; ++c) {
      const X* plane = x + c * hw;
      for (std::int64_t kh = 0; kh < g.kernel_h; ++kh) {
        const std::int64_t ih = ih0 + kh * p.dilation_h;
        if (ih < 0 || ih >= g.height) {
          std::fill(dst, dst + g.kernel_w, zero);
        } else {
          const X* src = plane + ih * g.width;
          for (std::int64_t kw = 0; kw < g.kernel_w; ++kw) {
            const std::int64_t iw = iw0 + kw * p.dilation_w;
            dst[kw] = (iw < 0 || iw >= g.width) ? zero : src[iw];
          }
        }
        dst += g.kernel_w;
      }
    }
  }
}

}  // namespace conv_detail

/// Checks a conv2d call's shapes and parameters (shape_error; unsupported_error for groups != 1)
/// and returns its geometry. `weight` is the weight's file-layout shape [OUT, C, KH, KW], `input`
/// [N, C, H, W].
inline conv2d_geometry conv2d_shape(const quanto::shape& weight, const quanto::shape& input, const conv2d_params& p) {
  if (p.groups != 1)
    throw unsupported_error("conv2d: groups = " + std::to_string(p.groups) + " is not supported (only 1)");
  if (weight.rank() != 4)
    throw shape_error("conv2d: the weight has shape " + weight.to_string() + ", expected [out, in, kh, kw]");
  if (input.rank() != 4)
    throw shape_error("conv2d: the input has shape " + input.to_string() + ", expected [N, C, H, W]");
  if (input[1] != weight[1])
    throw shape_error("conv2d: the input has " + std::to_string(input[1]) + " channels (shape " + input.to_string() +
                      "), the weight " + weight.to_string() + " expects " + std::to_string(weight[1]));
  if (p.tile_pixels <= 0)
    throw shape_error("conv2d: tile_pixels must be positive, got " + std::to_string(p.tile_pixels));
  conv2d_geometry g;
  g.batch = input[0];
  g.channels = input[1];
  g.height = input[2];
  g.width = input[3];
  g.out_channels = weight[0];
  g.kernel_h = weight[2];
  g.kernel_w = weight[3];
  g.out_h = conv_detail::out_extent("height", g.height, g.kernel_h, p.stride_h, p.pad_h, p.dilation_h);
  g.out_w = conv_detail::out_extent("width", g.width, g.kernel_w, p.stride_w, p.pad_w, p.dilation_w);
  (void)g.output_shape();  // throws if the element count overflows
  return g;
}

/// Pointer entry point: `x` is the contiguous input [batch, C, height, width] and `y` the contiguous
/// output [batch, OUT, OH, OW] (`conv2d_shape` gives OH, OW); `bias` is OUT floats or null. The
/// weight must have been packed from a [OUT, C, KH, KW] weight. `y` must not overlap `x`.
template <ActivationPolicy P = exact_activations, Isa I = native_isa, QType Q, ModelFloat T, class S, ModelFloat X,
          ModelFloat Y>
void conv2d(const packed_weight<Q, T, S>& w, const X* x, std::int64_t batch, std::int64_t height, std::int64_t width,
            Y* y, const float* bias, const conv2d_params& p, const matmul_options& opt = {}) {
  if (w.original_shape.rank() != 4)
    throw shape_error("conv2d: the weight has shape " + w.original_shape.to_string() + ", expected [out, in, kh, kw]");
  if (batch < 0 || height < 0 || width < 0)
    throw shape_error("conv2d: negative input size: batch " + std::to_string(batch) + ", height " +
                      std::to_string(height) + ", width " + std::to_string(width));
  const conv2d_geometry g = conv2d_shape(w.original_shape, quanto::shape{batch, w.original_shape[1], height, width}, p);
  const std::int64_t K = g.patch(), OUT = g.out_channels, pixels = g.pixels();
  if (g.batch == 0 || OUT == 0 || pixels == 0) return;
  const std::int64_t tile = std::min(p.tile_pixels, pixels);
  // a remainder of under the ISA's exact_panel_min_rows pixels runs with the tile before it (see
  // tile_pixels)
  constexpr std::int64_t min_last = backend<I>::exact_panel_min_rows;
  const std::int64_t rows = pixels > tile ? std::min(pixels, tile + min_last - 1) : tile;
  std::vector<X> cols(static_cast<std::size_t>(rows * K));
  std::vector<float> acc(static_cast<std::size_t>(rows * OUT));
  const std::int64_t in_image = g.channels * g.height * g.width, out_image = OUT * pixels;
  for (std::int64_t b = 0; b < g.batch; ++b) {
    const X* xb = x + b * in_image;
    Y* yb = y + b * out_image;
    for (std::int64_t p0 = 0, count = 0; p0 < pixels; p0 += count) {
      count = std::min(tile, pixels - p0);
      if (pixels - p0 - count < min_last) count = pixels - p0;  // the last tile takes a small remainder
      conv_detail::im2col(xb, g, p, p0, count, cols.data());
      matmul<P, I>(w, cols.data(), count, K, acc.data(), OUT, bias, opt);
      // [count, OUT] -> the NCHW planes; one rounding to Y, after the bias (as matmul would do)
      for (std::int64_t o = 0; o < OUT; ++o) {
        Y* dst = yb + o * pixels + p0;
        for (std::int64_t t = 0; t < count; ++t)
          dst[t] = dispatch::from_f32<Y>(acc[static_cast<std::size_t>(t * OUT + o)]);
      }
    }
  }
}

/// Tensor convenience: `input` [N, C, H, W] gives [N, OUT, OH, OW] of the same element type; `bias`
/// is empty or OUT floats.
template <ActivationPolicy P = exact_activations, Isa I = native_isa, QType Q, ModelFloat T, class S, ModelFloat X>
tensor<X> conv2d(const packed_weight<Q, T, S>& w, tensor_view<const X> input, std::span<const float> bias,
                 const conv2d_params& p, const matmul_options& opt = {}) {
  const conv2d_geometry g = conv2d_shape(w.original_shape, input.shape(), p);
  if (!bias.empty() && static_cast<std::int64_t>(bias.size()) != g.out_channels)
    throw shape_error("conv2d: bias has " + std::to_string(bias.size()) + " elements, expected " +
                      std::to_string(g.out_channels));
  tensor<X> out{g.output_shape()};
  conv2d<P, I>(w, input.data(), g.batch, g.height, g.width, out.data(), bias.empty() ? nullptr : bias.data(), p, opt);
  return out;
}

}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE
