// quanto/quantize/group.hpp: group-wise layouts: quanto's group-size rule for modules, and
// `group` / `ungroup`, which arrange a weight so that each group is one row (axis 0) or one
// column (axis -1) of a matrix; the group-size markers `auto_group` and `no_group`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/shape.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/quantize/axis.hpp"

QUANTO_BEGIN_NAMESPACE

/// Marks the automatic group size: quanto's module rule (`default_group_size`).
inline constexpr std::int64_t auto_group = 0;
/// Marks no grouping: one scale/shift per row (axis 0) or column (axis -1).
inline constexpr std::int64_t no_group = -1;

/// quanto's module rule for qint2/qint4 weights (`QModuleMixin.__init__`): with
/// `in = numel / out`, no grouping (one scale per output channel) when `in <= 128`; otherwise the
/// first of 128, 96, 64, 32 that divides `in`, or no grouping when none does. Never pads.
constexpr std::optional<std::int64_t> default_group_size(std::int64_t out, std::int64_t in) noexcept {
  (void)out;
  if (in <= 128) return std::nullopt;
  std::int64_t gs = 128;
  while (in % gs != 0 && gs > 32) gs -= 32;
  if (in % gs == 0) return gs;
  return std::nullopt;
}

/// The rule applied to a weight shape ([out, in] or [out, in, kh, kw]).
inline std::optional<std::int64_t> default_group_size(const shape& weight) {
  if (weight.rank() < 1 || weight[0] == 0) throw shape_error("a weight needs a non-empty first dimension");
  return default_group_size(weight[0], weight.numel() / weight[0]);
}

/// quanto's `grouped_shape`: (numel/gs, gs) for axis 0, (gs, numel/gs) for axis -1.
inline shape grouped_shape(const shape& s, qaxis axis, std::int64_t group_size) {
  if (axis == qaxis::none) throw shape_error("group-wise quantization needs axis 0 or -1");
  if (group_size <= 0) throw shape_error("the group size must be positive");
  const std::int64_t n = s.numel() / group_size;
  return axis == qaxis::first ? shape{n, group_size} : shape{group_size, n};
}

namespace detail {
inline void check_grouping(const shape& s, qaxis axis, std::int64_t gs) {
  if (axis == qaxis::none) throw shape_error("group-wise quantization needs axis 0 or -1");
  if (s.rank() < 1) throw shape_error("cannot group a rank-0 tensor");
  const std::int64_t axis_dim = axis == qaxis::first ? s[0] : s[s.rank() - 1];
  const std::int64_t axis_numel = axis_dim == 0 ? 0 : s.numel() / axis_dim;
  if (gs <= 0 || gs > axis_numel || axis_numel % gs != 0)
    throw shape_error("group size " + std::to_string(gs) + " must be a divisor of " + std::to_string(axis_numel) +
                      " (shape " + s.to_string() + ", axis " + to_string(axis) + ")");
}

/// Flat index in the grouped matrix of the element at flat index `i` of the original tensor.
/// Axis 0 is a plain reshape (identity). Axis -1 is quanto's reshape (A, gs, D) -> permute
/// (1, 2, 0) -> (gs, D*A): element ((a*gs + j)*D + d) goes to [j, d*A + a].
struct group_index {
  qaxis axis;
  std::int64_t gs, axis_dim, axis_groups;
  std::int64_t operator()(std::int64_t i) const noexcept {
    if (axis == qaxis::first) return i;
    const std::int64_t d = i % axis_dim, rest = i / axis_dim;
    const std::int64_t j = rest % gs, a = rest / gs;
    return j * (axis_dim * axis_groups) + d * axis_groups + a;
  }
};
inline group_index make_group_index(const shape& s, qaxis axis, std::int64_t gs) {
  check_grouping(s, axis, gs);
  const std::int64_t axis_dim = axis == qaxis::first ? s[0] : s[s.rank() - 1];
  return {axis, gs, axis_dim, s.numel() / axis_dim / gs};
}
}  // namespace detail

/// quanto's `group(base, axis, group_size)`, as a copy.
template <class T>
tensor<std::remove_const_t<T>> group(tensor_view<T> base, qaxis axis, std::int64_t group_size) {
  const auto gi = detail::make_group_index(base.shape(), axis, group_size);
  tensor<std::remove_const_t<T>> out(grouped_shape(base.shape(), axis, group_size));
  for (std::int64_t i = 0; i < base.numel(); ++i)
    out[static_cast<std::size_t>(gi(i))] = base[static_cast<std::size_t>(i)];
  return out;
}

/// quanto's `ungroup(grouped, axis, orig_shape)`: the inverse of `group`, as a copy.
template <class T>
tensor<std::remove_const_t<T>> ungroup(tensor_view<T> grouped, qaxis axis, std::int64_t group_size,
                                       const shape& original) {
  const auto gi = detail::make_group_index(original, axis, group_size);
  if (!(grouped.shape() == grouped_shape(original, axis, group_size)))
    throw shape_error("grouped tensor has shape " + grouped.shape().to_string() + ", expected " +
                      grouped_shape(original, axis, group_size).to_string());
  tensor<std::remove_const_t<T>> out(original);
  for (std::int64_t i = 0; i < out.numel(); ++i)
    out[static_cast<std::size_t>(i)] = grouped[static_cast<std::size_t>(gi(i))];
  return out;
}

QUANTO_END_NAMESPACE
