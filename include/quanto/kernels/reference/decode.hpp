// quanto/kernels/reference/decode.hpp: the reference's decoding of the kernel layout's codes: the
// element order it reads (logical) and a code's exact value.
#pragma once

#include <cstdint>

#include "quanto/core/config.hpp"
#include "quanto/core/float8.hpp"
#include "quanto/core/isa.hpp"
#include "quanto/core/qtype.hpp"

QUANTO_BEGIN_NAMESPACE
namespace kernels {
inline namespace QUANTO_TARGET_NS {
namespace reference {

/// The reference reads activations in logical order.
template <QType Q>
constexpr std::int64_t position(std::int64_t e) noexcept {
  return e;
}

/// The value of a code as a float (exact).
template <QType Q>
inline float code_value(std::uint8_t c) noexcept {
  if constexpr (FloatQType<Q>)
    return to_float(Q::storage::from_bits(c));
  else if constexpr (ByteQType<Q>)
    return static_cast<float>(static_cast<std::int8_t>(c));
  else
    return static_cast<float>(c);
}

template <QType Q>
inline std::int32_t code_int(std::uint8_t c) noexcept {
  if constexpr (ByteQType<Q>)
    return static_cast<std::int8_t>(c);
  else
    return c;
}

}  // namespace reference
}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE
