// quanto/quantize/checks.hpp: input validation shared by the quantizers (finite values, shapes).
#pragma once

#include <cstdint>
#include <string>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/quantize/simd.hpp"

QUANTO_BEGIN_NAMESPACE

/// What a quantizer does with NaN or ±Inf in its input. optimum-quanto propagates them (a NaN
/// scale poisons a whole row); quanto-cpp refuses by default.
enum class nonfinite_policy : std::uint8_t {
  reject,     ///< throw value_error naming the first offending element (the default)
  propagate,  ///< compute as quanto does and let NaN/Inf flow into scales and codes
};

namespace detail {

/// Throws value_error at the first NaN/Inf of `t` (bit tests: works under -ffast-math).
template <ModelFloat T>
void require_finite(tensor_view<const T> t, const char* what) {
  std::size_t start = 0;
#if QUANTO_HAS_AVX2
  // Whole vectors with no NaN/Inf are skipped; the first one that has one is scanned below.
  if (kernels::quantize_dispatch::compiled && kernels::quantize_dispatch::enabled())
    start = kernels::quantize_avx2::finite_prefix(t.data(), t.size());
#endif
  for (std::size_t i = start; i < t.size(); ++i) {
    if (!t_is_finite(t[i])) {
      const float v = widen(t[i]);
      throw value_error(std::string(what) + " has a non-finite value (" +
                        (is_nan_bits(v) ? "NaN"
                         : v > 0        ? "+Inf"
                                        : "-Inf") +
                        ") at flat index " + std::to_string(i) + " of shape " + t.shape().to_string());
    }
  }
}

/// Whether every element of `t` is finite (bit tests).
template <ModelFloat T>
bool all_finite(tensor_view<const T> t) noexcept {
  for (std::size_t i = 0; i < t.size(); ++i)
    if (!t_is_finite(t[i])) return false;
  return true;
}

inline void require_shape(const shape& got, const shape& expected, const char* what) {
  if (!(got == expected))
    throw shape_error(std::string(what) + " has shape " + got.to_string() + ", expected " + expected.to_string());
}

/// An output buffer must hold exactly the elements written into it (any shape).
inline void require_numel(std::int64_t got, std::int64_t expected, const char* what) {
  if (got != expected)
    throw shape_error(std::string(what) + " has " + std::to_string(got) + " elements, expected " +
                      std::to_string(expected));
}

}  // namespace detail
QUANTO_END_NAMESPACE
