// quanto/quantize/axis.hpp: quanto's quantization axes and how a scale maps onto a tensor.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/shape.hpp"

QUANTO_BEGIN_NAMESPACE

/// The axis a quantization parameter (scale, shift) is kept along, as optimum-quanto spells it:
/// `first` (axis=0: one parameter per row / output channel), `last` (axis=-1: one per column),
/// or `none` (axis=None: one for the whole tensor).
enum class qaxis : std::int8_t { none = 1, first = 0, last = -1 };

/// "0", "-1" or "None", as quanto prints them.
inline std::string to_string(qaxis a) { return a == qaxis::first ? "0" : a == qaxis::last ? "-1" : "None"; }

/// How one parameter tensor covers a tensor seen as a row-major matrix [rows, cols]:
/// per row (axis 0, the matrix is [dim0, numel/dim0]), per column (axis -1, the matrix is
/// [numel/last, last]), or one for all.
struct param_map {
  enum class kind : std::uint8_t { per_row, per_column, per_tensor };
  kind k;
  std::int64_t rows;
  std::int64_t cols;
  quanto::shape param_shape;  ///< quanto's scale shape: [d0,1,..,1], [1,..,1,dl] or []

  std::int64_t count() const noexcept { return param_shape.numel(); }

  /// Calls `f(i, j)` for every element, in flat order: `i` its flat index, `j` its parameter's
  /// index. The same walk as `index(i)`, without a division per element.
  template <class F>
  void for_each(F&& f) const {
    switch (k) {
      case kind::per_row:
        for (std::int64_t r = 0; r < rows; ++r)
          for (std::int64_t c = 0; c < cols; ++c)
            f(static_cast<std::size_t>(r * cols + c), static_cast<std::size_t>(r));
        break;
      case kind::per_column:
        for (std::int64_t r = 0; r < rows; ++r)
          for (std::int64_t c = 0; c < cols; ++c)
            f(static_cast<std::size_t>(r * cols + c), static_cast<std::size_t>(c));
        break;
      case kind::per_tensor:
        for (std::int64_t i = 0; i < rows * cols; ++i) f(static_cast<std::size_t>(i), std::size_t{0});
        break;
    }
  }
  /// The parameter index of the element at flat index `i`.
  std::int64_t index(std::int64_t i) const noexcept {
    switch (k) {
      case kind::per_row:
        return i / cols;
      case kind::per_column:
        return i % cols;
      default:
        return 0;
    }
  }
};

/// Parameters kept along `axis` of a tensor of shape `s` (keepdim shapes, as quanto makes them).
/// Raises shape_error for a rank-0/1 tensor with a per-axis request, as quantize_symmetric does.
inline param_map map_params(const quanto::shape& s, qaxis axis) {
  if (axis == qaxis::none) return {param_map::kind::per_tensor, 1, s.numel(), quanto::shape{}};
  if (s.rank() < 2)
    throw shape_error("a tensor of rank " + std::to_string(s.rank()) + " cannot be quantized per axis (shape " +
                      s.to_string() + ")");
  std::vector<std::int64_t> ps(s.rank(), 1);
  if (axis == qaxis::first) {
    ps.front() = s[0];
    const std::int64_t cols = s[0] == 0 ? 0 : s.numel() / s[0];
    return {param_map::kind::per_row, s[0], cols, quanto::shape(ps)};
  }
  const std::int64_t last = s[s.rank() - 1];
  ps.back() = last;
  return {param_map::kind::per_column, last == 0 ? 0 : s.numel() / last, last, quanto::shape(ps)};
}

/// quanto's rule: a per-axis request along an axis of size 1 becomes per-tensor.
inline qaxis effective_axis(const quanto::shape& s, qaxis axis) {
  if (axis == qaxis::none || s.rank() == 0) return axis;
  const std::int64_t d = axis == qaxis::first ? s[0] : s[s.rank() - 1];
  return d == 1 ? qaxis::none : axis;
}

QUANTO_END_NAMESPACE

QUANTO_BEGIN_NAMESPACE

/// How a parameter tensor of shape `param` broadcasts over a tensor of shape `base`, as
/// PyTorch's broadcasting does for quanto's keepdim scales: [] (one value), [d0,1,..,1] (per row)
/// or [1,..,1,dl] (per column). Any other shape is a shape_error.
inline param_map broadcast_params(const quanto::shape& base, const quanto::shape& param) {
  if (param.numel() == 1 && (param.rank() == 0 || param.rank() == base.rank()))
    return {param_map::kind::per_tensor, 1, base.numel(), param};
  if (param.rank() == base.rank() && base.rank() >= 2) {
    const std::size_t r = base.rank();
    bool row = param[0] == base[0], col = param[r - 1] == base[r - 1];
    for (std::size_t i = 1; i < r; ++i) row = row && param[i] == 1;
    for (std::size_t i = 0; i + 1 < r; ++i) col = col && param[i] == 1;
    if (row) return map_params(base, qaxis::first);
    if (col) return map_params(base, qaxis::last);
  }
  throw shape_error("a parameter of shape " + param.to_string() +
                    " does not broadcast per tensor, per row or per column over shape " + base.to_string());
}

QUANTO_END_NAMESPACE
