// tests/support/weight_instances.hpp: every quantize_weight<Q, T, S, Optimizer> that the run-time
// quantize_weight(any_float_view, weight_spec) (quantize/runtime.hpp) dispatches to, declared
// `extern template` so that a TU including this skips instantiating them (and the quantizers and
// optimizers behind them); weight_instances_{f32,f16,bf16}.cpp instantiate them once, in the static library
// quanto_weight_instances. CMake force-includes this header into the model-level targets
// (quanto_cli, test_model_fixtures, bench_model_io: io/model.hpp runs every qtype x model dtype),
// which compile much faster for it. The same technique as tests/nn/nn_instances.hpp.
#pragma once

#include <quanto/quanto.hpp>

#define QUANTO_WEIGHT_INSTANCE(EXTERN, Q, T, S, O)                                  \
  EXTERN template ::quanto::qweight_t<Q, T, S> quanto::quantize_weight<Q, T, S, O>( \
      ::quanto::tensor_view<const T>, const S&, const O&, ::quanto::quantize_options);

#define QUANTO_WEIGHT_BYTES(EXTERN, T)                                                                         \
  QUANTO_WEIGHT_INSTANCE(EXTERN, ::quanto::qint8, T, ::quanto::symmetric, ::quanto::absmax_optimizer)          \
  QUANTO_WEIGHT_INSTANCE(EXTERN, ::quanto::qfloat8_e4m3fn, T, ::quanto::symmetric, ::quanto::absmax_optimizer) \
  QUANTO_WEIGHT_INSTANCE(EXTERN, ::quanto::qfloat8_e5m2, T, ::quanto::symmetric, ::quanto::absmax_optimizer)   \
  QUANTO_WEIGHT_INSTANCE(EXTERN, ::quanto::qfloat8_e4m3fnuz, T, ::quanto::symmetric, ::quanto::absmax_optimizer)

#define QUANTO_WEIGHT_BITS_Q(EXTERN, Q, T)                                                     \
  QUANTO_WEIGHT_INSTANCE(EXTERN, Q, T, ::quanto::group_affine<true>, ::quanto::max_optimizer)  \
  QUANTO_WEIGHT_INSTANCE(EXTERN, Q, T, ::quanto::group_affine<false>, ::quanto::max_optimizer) \
  QUANTO_WEIGHT_INSTANCE(EXTERN, Q, T, ::quanto::group_affine<true>, ::quanto::hqq_optimizer)  \
  QUANTO_WEIGHT_INSTANCE(EXTERN, Q, T, ::quanto::group_affine<false>, ::quanto::hqq_optimizer)

#define QUANTO_WEIGHT_INSTANCES(EXTERN, T)         \
  QUANTO_WEIGHT_BYTES(EXTERN, T)                   \
  QUANTO_WEIGHT_BITS_Q(EXTERN, ::quanto::qint2, T) \
  QUANTO_WEIGHT_BITS_Q(EXTERN, ::quanto::qint4, T)

#ifndef QUANTO_WEIGHT_INSTANTIATING
QUANTO_WEIGHT_INSTANCES(extern, float)
QUANTO_WEIGHT_INSTANCES(extern, ::quanto::float16)
QUANTO_WEIGHT_INSTANCES(extern, ::quanto::bfloat16)
#endif
