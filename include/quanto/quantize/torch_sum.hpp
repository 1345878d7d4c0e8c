// quanto/quantize/torch_sum.hpp: float32 sums in PyTorch's CPU summation order.
//
// HQQ takes means (`torch.mean`), and a float sum depends on the order of its additions. To give
// the same shifts as optimum-quanto bit for bit, these functions add in the order of PyTorch's
// CPU `cascade_sum` (aten/src/ATen/native/cpu/SumKernel.cpp): lane-wise vector partial sums with
// four independent accumulators, a cascade of accumulation levels for long rows, then the lanes
// folded in order. The order depends on the vector width PyTorch ran with (`lanes`: 8 floats
// with AVX2, 16 with AVX-512, as `torch.backends.cpu.get_cpu_capability()` reports), which is
// why it is a parameter. The arithmetic here is scalar and portable; only the order is copied.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstdint>
#include <vector>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE

/// The summation order of the PyTorch build that produced a reference: vector lanes of float.
/// `avx2` is verified against PyTorch's own sums (tests/quantize/test_torch_ops.cpp); `avx512`
/// applies the same algorithm with 16 lanes and has not been run against an AVX-512 PyTorch.
enum class torch_sum_order : std::uint8_t { avx2 = 8, avx512 = 16 };

namespace detail {

inline std::int64_t torch_ceil_log2(std::int64_t x) noexcept {
  if (x <= 2) return 1;
  return static_cast<std::int64_t>(std::bit_width(static_cast<std::uint64_t>(x) - 1));
}

/// `multi_row_sum`: `nrows` independent accumulators, each summing `size` items; item (i, k)
/// is `load(i, k)`. Items are added into level 0; every `2^level_power` items the levels are
/// carried upwards (a cascade), which keeps partial sums of similar magnitude.
template <int NRows, class Acc, class Load>
std::array<Acc, NRows> multi_row_sum(std::int64_t size, Load load) {
  constexpr int num_levels = 4;
  const std::int64_t level_power = std::max<std::int64_t>(4, torch_ceil_log2(size) / num_levels);
  const std::int64_t level_step = std::int64_t{1} << level_power;
  const std::int64_t level_mask = level_step - 1;
  std::array<std::array<Acc, NRows>, num_levels> acc{};
  std::int64_t i = 0;
  for (; i + level_step <= size;) {
    for (std::int64_t j = 0; j < level_step; ++j, ++i)
      for (int k = 0; k < NRows; ++k) acc[0][k] += load(i, k);
    for (int j = 1; j < num_levels; ++j) {
      for (int k = 0; k < NRows; ++k) {
        acc[j][k] += acc[j - 1][k];
        acc[j - 1][k] = Acc{};
      }
      if ((i & (level_mask << (j * level_power))) != 0) break;
    }
  }
  for (; i < size; ++i)
    for (int k = 0; k < NRows; ++k) acc[0][k] += load(i, k);
  for (int j = 1; j < num_levels; ++j)
    for (int k = 0; k < NRows; ++k) acc[0][k] += acc[j][k];
  return acc[0];
}

/// `row_sum`: the row seen as (-1, 4): four accumulators, then the tail into the first, then
/// the four folded in order.
template <class Acc, class Load>
Acc row_sum(std::int64_t size, Load load) {
  const std::int64_t size_ilp = size / 4;
  auto partial = multi_row_sum<4, Acc>(size_ilp, [&](std::int64_t i, int k) { return load(i * 4 + k); });
  for (std::int64_t i = size_ilp * 4; i < size; ++i) partial[0] += load(i);
  for (int k = 1; k < 4; ++k) partial[0] += partial[k];
  return partial[0];
}

/// A vector of `L` float lanes with lane-wise addition (the order a SIMD register adds in).
template <int L>
struct lanes {
  std::array<float, L> v{};
  lanes& operator+=(const lanes& o) noexcept {
    for (int l = 0; l < L; ++l) v[l] += o.v[l];
    return *this;
  }
};

template <int L>
float inner_sum_lanes(const float* x, std::int64_t n) {
  if (n < L) return row_sum<float>(n, [&](std::int64_t i) { return x[i]; });
  const std::int64_t nvec = n / L;
  const lanes<L> acc = row_sum<lanes<L>>(nvec, [&](std::int64_t i) {
    lanes<L> r;
    for (int l = 0; l < L; ++l) r.v[l] = x[i * L + l];
    return r;
  });
  float total = 0.0f;
  for (std::int64_t k = nvec * L; k < n; ++k) total += x[k];
  for (int l = 0; l < L; ++l) total += acc.v[l];
  return total;
}

template <int L>
void outer_sum_lanes(const float* x, std::int64_t rows, std::int64_t cols, float* out) {
  auto at = [&](std::int64_t r, std::int64_t c) { return x[r * cols + c]; };
  std::int64_t j = 0;
  if (cols >= L) {
    for (; j + 4 * L <= cols; j += 4 * L) {
      const auto sums = multi_row_sum<4, lanes<L>>(rows, [&](std::int64_t r, int k) {
        lanes<L> v;
        for (int l = 0; l < L; ++l) v.v[l] = at(r, j + k * L + l);
        return v;
      });
      for (int k = 0; k < 4; ++k)
        for (int l = 0; l < L; ++l) out[j + k * L + l] = sums[k].v[l];
    }
    for (; j + L <= cols; j += L) {
      const auto s = row_sum<lanes<L>>(rows, [&](std::int64_t r) {
        lanes<L> v;
        for (int l = 0; l < L; ++l) v.v[l] = at(r, j + l);
        return v;
      });
      for (int l = 0; l < L; ++l) out[j + l] = s.v[l];
    }
  } else {
    for (; j + 3 < cols; j += 4) {
      const auto sums = multi_row_sum<4, float>(rows, [&](std::int64_t r, int k) { return at(r, j + k); });
      for (int k = 0; k < 4; ++k) out[j + k] = sums[k];
    }
  }
  for (; j < cols; ++j) out[j] = row_sum<float>(rows, [&](std::int64_t r) { return at(r, j); });
}

}  // namespace detail

/// Sums each row of a row-major [rows, cols] float matrix (PyTorch's `sum(dim=-1)` order).
inline std::vector<float> torch_sum_rows(const float* x, std::int64_t rows, std::int64_t cols,
                                         torch_sum_order order = torch_sum_order::avx2) {
  std::vector<float> out(static_cast<std::size_t>(rows));
  for (std::int64_t r = 0; r < rows; ++r)
    out[static_cast<std::size_t>(r)] = order == torch_sum_order::avx2 ? detail::inner_sum_lanes<8>(x + r * cols, cols)
                                                                      : detail::inner_sum_lanes<16>(x + r * cols, cols);
  return out;
}

/// Sums each column of a row-major [rows, cols] float matrix (PyTorch's `sum(dim=0)` order).
inline std::vector<float> torch_sum_cols(const float* x, std::int64_t rows, std::int64_t cols,
                                         torch_sum_order order = torch_sum_order::avx2) {
  std::vector<float> out(static_cast<std::size_t>(cols));
  if (order == torch_sum_order::avx2)
    detail::outer_sum_lanes<8>(x, rows, cols, out.data());
  else
    detail::outer_sum_lanes<16>(x, rows, cols, out.data());
  return out;
}

/// Sums all `n` elements (PyTorch's full reduction of a contiguous tensor, one thread).
inline float torch_sum_all(const float* x, std::int64_t n, torch_sum_order order = torch_sum_order::avx2) {
  return order == torch_sum_order::avx2 ? detail::inner_sum_lanes<8>(x, n) : detail::inner_sum_lanes<16>(x, n);
}

/// PyTorch's CPU parallel grain (`at::internal::GRAIN_SIZE`): element-wise ops and reductions
/// over more elements than this are split between its intra-op threads.
inline constexpr std::int64_t torch_grain_size = 32768;

/// The length of the chunks `at::parallel_for(0, n, GRAIN_SIZE, f)` gives its threads when PyTorch
/// runs with `threads` intra-op threads (`torch.get_num_threads()`): `n` itself (one chunk) when
/// n <= GRAIN_SIZE or threads == 1, else ceil(n / t) with t = min(threads, ceil(n / GRAIN_SIZE));
/// chunk k is [k * size, min(n, (k + 1) * size)) and runs on thread k.
constexpr std::int64_t torch_chunk_size(std::int64_t n, int threads) noexcept {
  if (threads <= 1 || n <= torch_grain_size) return n;
  const std::int64_t t = std::min<std::int64_t>(threads, (n + torch_grain_size - 1) / torch_grain_size);
  return (n + t - 1) / t;
}

/// Sums all `n` elements as PyTorch does with `threads` intra-op threads. Over GRAIN_SIZE
/// elements its full reduction is a two-pass one (TensorIteratorReduce.cpp `two_pass_reduction`):
/// each thread sums its chunk (`torch_chunk_size`) in the one-thread order into its own slot of a
/// zero-filled buffer of `threads` floats, then that buffer is summed, again in that order. So
/// the result depends on the thread count PyTorch ran with; `threads` = 1 is `torch_sum_all` above.
inline float torch_sum_all(const float* x, std::int64_t n, torch_sum_order order, int threads) {
  const std::int64_t chunk = torch_chunk_size(n, threads);
  if (chunk >= n) return torch_sum_all(x, n, order);
  std::vector<float> slots(static_cast<std::size_t>(threads), 0.0f);
  for (std::int64_t k = 0; k * chunk < n; ++k)
    slots[static_cast<std::size_t>(k)] += torch_sum_all(x + k * chunk, std::min(chunk, n - k * chunk), order);
  return 0.0f + torch_sum_all(slots.data(), threads, order);
}

QUANTO_END_NAMESPACE
