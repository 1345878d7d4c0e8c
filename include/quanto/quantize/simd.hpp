// quanto/quantize/simd.hpp: how the quantizers reach their vector code and their threads.
//
// The quantizers (symmetric.hpp, affine.hpp, packing.hpp, optimizers.hpp) walk a tensor as runs of
// elements that share a parameter (a row, a group) or whose parameters run alongside them (per
// column). `for_each_run` hands those runs to the library's parallel backend (core/parallel.hpp:
// the pool or oneTBB); a run is computed by one thread, whole, so the result does not depend on the
// thread count. Inside a run the ISA's code (kernels/x86/avx2/quantize.hpp) does the whole vectors
// and the scalar reference the rest, bit-identical by construction and by test
// (tests/quantize/test_simd_quantize.cpp). `set_quantize_simd(false)` switches every quantizer to
// the scalar reference alone: the oracle the tests compare against.
//
// This header pulls in the ISA tags and the parallel layer only, never the matmul kernels.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "quanto/core/config.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/parallel.hpp"
#include "quanto/quantize/axis.hpp"

#if QUANTO_HAS_AVX2
#include "quanto/quantize/x86/avx2/quantize.hpp"
#endif

QUANTO_BEGIN_NAMESPACE
namespace detail {
/// The process-wide switch behind `set_quantize_simd` (ISA-neutral: one object for every TU).
inline std::atomic<bool>& quantize_simd_switch() noexcept {
  static std::atomic<bool> on{true};
  return on;
}
}  // namespace detail

/// Lets the quantizers use their vector code (the default) or only the scalar reference (false),
/// which gives the same bits, more slowly: for tests and for bisecting a suspected difference.
inline void set_quantize_simd(bool on) noexcept { detail::quantize_simd_switch().store(on, std::memory_order_relaxed); }

namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace quantize_dispatch {

/// Whether this translation unit has vector quantizer code (AVX2 here; forcing the scalar ISA
/// with QUANTO_KERNEL_ISA=scalar turns it off).
inline constexpr bool compiled = QUANTO_HAS_AVX2 != 0 && !std::is_same_v<native_isa, isa::scalar>;

/// Whether the vector code runs now (compiled in and not switched off).
inline bool enabled() noexcept {
  if constexpr (compiled)
    return quanto::detail::quantize_simd_switch().load(std::memory_order_relaxed);
  else
    return false;
}

/// Whether `torch_powf(x, y)` takes SLEEF's path for this exponent (the vector pow covers only
/// that one; the others are cheap operations left to the reference).
inline bool pow_uses_sleef(float y) noexcept {
  return !(y == 0.0f || y == 1.0f || y == 0.5f || y == -0.5f || y == -1.0f || y == 2.0f || y == 3.0f || y == -2.0f);
}

/// About this many elements per task: large enough to amortize a task, small enough to balance.
inline constexpr std::int64_t elements_per_task = 1 << 16;

/// Calls `f(begin, size, param)` for runs covering every element of a tensor mapped by `pm`: per
/// row, one run per row (`param` its row); per column, one run per row (`param` 0: element k of
/// the run has parameter k); per tensor, flat chunks (`param` 0). Runs go to `parallel_for` in
/// fixed chunks; each run is computed whole by one thread.
template <class F>
void for_each_run(const param_map& pm, parallel_options par, F&& f) {
  if (pm.k == param_map::kind::per_tensor) {
    const std::int64_t n = pm.rows * pm.cols;
    parallel_for(
        0, n, elements_per_task,
        [&](std::int64_t lo, std::int64_t hi) {
          f(static_cast<std::size_t>(lo), static_cast<std::size_t>(hi - lo), std::size_t{0});
        },
        par);
    return;
  }
  const std::int64_t cols = pm.cols;
  const std::int64_t grain = std::max<std::int64_t>(1, elements_per_task / std::max<std::int64_t>(1, cols));
  const bool per_row = pm.k == param_map::kind::per_row;
  parallel_for(
      0, pm.rows, grain,
      [&](std::int64_t lo, std::int64_t hi) {
        for (std::int64_t r = lo; r < hi; ++r)
          f(static_cast<std::size_t>(r * cols), static_cast<std::size_t>(cols),
            per_row ? static_cast<std::size_t>(r) : std::size_t{0});
      },
      par);
}

}  // namespace quantize_dispatch
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE
