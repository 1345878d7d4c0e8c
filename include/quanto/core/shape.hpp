// quanto/core/shape.hpp: tensor shapes (row-major, up to 8 dimensions) with checked arithmetic.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <span>
#include <string>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"

QUANTO_BEGIN_NAMESPACE

/// The dimensions of a dense row-major tensor. Rank 0 is a scalar (one element). Stored inline
/// (no allocation); every dimension is non-negative and the element count is overflow-checked
/// at construction, so `numel()` never wraps.
class shape {
 public:
  static constexpr std::size_t max_rank = 8;

  constexpr shape() noexcept = default;  ///< rank 0: a scalar
  constexpr shape(std::initializer_list<std::int64_t> dims) { assign(dims.begin(), dims.end()); }
  constexpr explicit shape(std::span<const std::int64_t> dims) { assign(dims.begin(), dims.end()); }

  constexpr std::size_t rank() const noexcept { return rank_; }
  constexpr std::int64_t operator[](std::size_t i) const noexcept { return dims_[i]; }
  /// Dimension `i`, where a negative index counts from the end (-1 is the last), as in PyTorch.
  constexpr std::int64_t dim(std::int64_t i) const { return dims_[normalize_axis(i)]; }
  constexpr std::int64_t numel() const noexcept { return numel_; }
  constexpr std::span<const std::int64_t> dims() const noexcept { return {dims_.data(), rank_}; }

  /// Maps a possibly negative axis to [0, rank); throws `shape_error` when out of range.
  constexpr std::size_t normalize_axis(std::int64_t axis) const {
    const auto r = static_cast<std::int64_t>(rank_);
    if (axis < -r || axis >= r)
      throw shape_error("axis " + std::to_string(axis) + " is out of range for a tensor of rank " + std::to_string(r));
    return static_cast<std::size_t>(axis < 0 ? axis + r : axis);
  }

  friend constexpr bool operator==(const shape& a, const shape& b) noexcept {
    return a.rank_ == b.rank_ && std::equal(a.dims_.begin(), a.dims_.begin() + a.rank_, b.dims_.begin());
  }

  /// "[16, 256]"
  std::string to_string() const {
    std::string s = "[";
    for (std::size_t i = 0; i < rank_; ++i) {
      if (i) s += ", ";
      s += std::to_string(dims_[i]);
    }
    return s + "]";
  }

 private:
  template <class It>
  constexpr void assign(It first, It last) {
    rank_ = 0;
    numel_ = 1;
    for (; first != last; ++first) {
      if (rank_ == max_rank) throw shape_error("a shape has at most 8 dimensions");
      const std::int64_t d = *first;
      if (d < 0) throw shape_error("negative dimension " + std::to_string(d));
      if (d != 0 && numel_ > std::numeric_limits<std::int64_t>::max() / d) throw shape_error("element count overflows");
      numel_ *= d;
      dims_[rank_++] = d;
    }
  }

  std::array<std::int64_t, max_rank> dims_{};
  std::size_t rank_ = 0;
  std::int64_t numel_ = 1;
};

QUANTO_END_NAMESPACE
