// tests/nn/nn_instances.hpp: the module templates every nn test uses, declared `extern template`
// so that each test TU skips instantiating them (and the matmul kernels behind them); they are
// instantiated once per model dtype in nn_instances_*.cpp. Cuts the nn tests' compile time by
// more than half on a 2-core machine. The same technique works in a user's project.
#pragma once

#include <quanto/nn.hpp>

// Linear-based models in every model dtype (the tests build MLPs in float, float16 and bfloat16).
#define QUANTO_NN_TEST_LINEAR_INSTANCES(EXTERN, T)               \
  EXTERN template class quanto::nn::Linear<T>;                   \
  EXTERN template class quanto::nn::node<quanto::nn::Linear<T>>; \
  QUANTO_NN_TEST_QLINEAR(EXTERN, quanto::qint2, T)               \
  QUANTO_NN_TEST_QLINEAR(EXTERN, quanto::qint4, T)               \
  QUANTO_NN_TEST_QLINEAR(EXTERN, quanto::qint8, T)               \
  QUANTO_NN_TEST_QLINEAR(EXTERN, quanto::qfloat8_e4m3fn, T)      \
  QUANTO_NN_TEST_QLINEAR(EXTERN, quanto::qfloat8_e5m2, T)        \
  QUANTO_NN_TEST_QLINEAR(EXTERN, quanto::qfloat8_e4m3fnuz, T)

#define QUANTO_NN_TEST_QLINEAR(EXTERN, Q, T)       \
  EXTERN template class quanto::nn::QLinear<Q, T>; \
  EXTERN template class quanto::nn::node<quanto::nn::QLinear<Q, T>>;

// Convolutions and layer norms: float models only.
#define QUANTO_NN_TEST_FLOAT_INSTANCES(EXTERN)                           \
  QUANTO_NN_TEST_LINEAR_INSTANCES(EXTERN, float)                         \
  EXTERN template class quanto::nn::Conv2d<float>;                       \
  EXTERN template class quanto::nn::LayerNorm<float>;                    \
  EXTERN template class quanto::nn::QLayerNorm<float>;                   \
  EXTERN template class quanto::nn::node<quanto::nn::Conv2d<float>>;     \
  EXTERN template class quanto::nn::node<quanto::nn::LayerNorm<float>>;  \
  EXTERN template class quanto::nn::node<quanto::nn::QLayerNorm<float>>; \
  QUANTO_NN_TEST_QCONV(EXTERN, quanto::qint2)                            \
  QUANTO_NN_TEST_QCONV(EXTERN, quanto::qint4)                            \
  QUANTO_NN_TEST_QCONV(EXTERN, quanto::qint8)                            \
  QUANTO_NN_TEST_QCONV(EXTERN, quanto::qfloat8_e4m3fn)                   \
  QUANTO_NN_TEST_QCONV(EXTERN, quanto::qfloat8_e5m2)                     \
  QUANTO_NN_TEST_QCONV(EXTERN, quanto::qfloat8_e4m3fnuz)

#define QUANTO_NN_TEST_QCONV(EXTERN, Q)                \
  EXTERN template class quanto::nn::QConv2d<Q, float>; \
  EXTERN template class quanto::nn::node<quanto::nn::QConv2d<Q, float>>;

#ifndef QUANTO_NN_TEST_INSTANTIATING
QUANTO_NN_TEST_FLOAT_INSTANCES(extern)
QUANTO_NN_TEST_LINEAR_INSTANCES(extern, quanto::float16)
QUANTO_NN_TEST_LINEAR_INSTANCES(extern, quanto::bfloat16)
#endif
