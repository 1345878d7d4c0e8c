// Compile-time properties of the public types. This file passes by compiling.
#include <quanto/nn/activation.hpp>
#include <quanto/nn/concepts.hpp>
#include <quanto/quanto.hpp>

#include <type_traits>

namespace q = quanto;

// Number formats: trivially copyable, 1 or 2 bytes, standard layout.
static_assert(std::is_trivially_copyable_v<q::bfloat16> && sizeof(q::bfloat16) == 2);
static_assert(std::is_trivially_copyable_v<q::float16> && sizeof(q::float16) == 2);
static_assert(std::is_trivially_copyable_v<q::float8_e4m3fn> && sizeof(q::float8_e4m3fn) == 1);
static_assert(std::is_trivially_copyable_v<q::float8_e5m2> && sizeof(q::float8_e5m2) == 1);
static_assert(std::is_trivially_copyable_v<q::float8_e4m3fnuz> && sizeof(q::float8_e4m3fnuz) == 1);
static_assert(std::is_standard_layout_v<q::bfloat16> && std::is_standard_layout_v<q::float8_e5m2>);

// Conversions are constexpr.
static_assert(static_cast<float>(q::bfloat16(1.0f)) == 1.0f);
static_assert(q::float8_e4m3fn(448.0f).to_bits() == 0x7E);

// The quantized weight types each (qtype, scheme) pair produces.
static_assert(std::is_same_v<q::qweight_t<q::qint8, float, q::symmetric>, q::qbytes_weight<q::qint8, float>>);
static_assert(std::is_same_v<q::qweight_t<q::qint4, q::bfloat16, q::group_affine<>>,
                             q::qbits_weight<q::qint4, q::bfloat16, q::bfloat16>>);
static_assert(std::is_same_v<q::qweight_t<q::qint2, q::float16, q::group_affine<true>>,
                             q::qbits_weight<q::qint2, q::float16, std::uint8_t>>);
static_assert(std::is_same_v<q::default_optimizer_t<q::qint4>, q::max_optimizer>);
static_assert(std::is_same_v<q::default_optimizer_t<q::qfloat8>, q::absmax_optimizer>);
static_assert(q::OptimizerFor<q::hqq_optimizer, q::qint2> && !q::OptimizerFor<q::hqq_optimizer, q::qint8>);
static_assert(q::OptimizerFor<q::absmax_optimizer, q::qfloat8_e5m2> && !q::OptimizerFor<q::absmax_optimizer, q::qint4>);

// The group-size rule is usable at compile time.
static_assert(q::default_group_size(4096, 14336) == 128);
static_assert(!q::default_group_size(8, 200).has_value());

// Alignment of owning storage does not depend on build flags.
static_assert(QUANTO_BUFFER_ALIGNMENT == 64);

// The variants derived from the qtypes list: every qtype x model dtype (x float / zero-point shift
// for qint2/qint4) for weights; the 8-bit qtypes only for activations, in the list's order.
static_assert(std::variant_size_v<q::any_qweight> == 3 * (2 + 2 + 1 + 1 + 1 + 1));
static_assert(std::is_same_v<std::variant_alternative_t<0, q::any_qweight>, q::qbits_weight<q::qint2, float>>);
static_assert(std::variant_size_v<q::nn::any_qactivation<float>> == 1 + 4);
static_assert(std::is_same_v<std::variant_alternative_t<1, q::nn::any_qactivation<q::bfloat16>>,
                             q::qactivation<q::qint8, q::bfloat16>>);
static_assert(std::is_same_v<std::variant_alternative_t<4, q::nn::any_qactivation<float>>,
                             q::qactivation<q::qfloat8_e4m3fnuz, float>>);
static_assert(std::variant_size_v<q::nn::optimizer_choice> == 1 + q::optimizers::size);
