// tests/nn/nn_instances.hpp: the module templates every nn test uses, declared `extern template`
// so that each test TU skips instantiating them (and the matmul kernels behind them); they are
// instantiated once per model dtype in nn_instances_*.cpp. Cuts the nn tests' compile time by
// more than half on a 2-core machine. The same technique works in a user's project.
#pragma once

#include <quanto/nn.hpp>

#define QUANTO_NN_TEST_INSTANCES(EXTERN, T)                              \
  EXTERN template class quanto::nn::Linear<T>;                           \
  EXTERN template class quanto::nn::Conv2d<T>;                           \
  EXTERN template class quanto::nn::LayerNorm<T>;                        \
  EXTERN template class quanto::nn::QLayerNorm<T>;                       \
  EXTERN template class quanto::nn::node<quanto::nn::Linear<T>>;         \
  EXTERN template class quanto::nn::node<quanto::nn::Conv2d<T>>;         \
  EXTERN template class quanto::nn::node<quanto::nn::LayerNorm<T>>;      \
  EXTERN template class quanto::nn::node<quanto::nn::QLayerNorm<T>>;     \
  QUANTO_NN_TEST_QINSTANCES(EXTERN, quanto::qint2, T)                    \
  QUANTO_NN_TEST_QINSTANCES(EXTERN, quanto::qint4, T)                    \
  QUANTO_NN_TEST_QINSTANCES(EXTERN, quanto::qint8, T)                    \
  QUANTO_NN_TEST_QINSTANCES(EXTERN, quanto::qfloat8_e4m3fn, T)           \
  QUANTO_NN_TEST_QINSTANCES(EXTERN, quanto::qfloat8_e5m2, T)             \
  QUANTO_NN_TEST_QINSTANCES(EXTERN, quanto::qfloat8_e4m3fnuz, T)

#define QUANTO_NN_TEST_QINSTANCES(EXTERN, Q, T)                          \
  EXTERN template class quanto::nn::QLinear<Q, T>;                       \
  EXTERN template class quanto::nn::QConv2d<Q, T>;                       \
  EXTERN template class quanto::nn::node<quanto::nn::QLinear<Q, T>>;     \
  EXTERN template class quanto::nn::node<quanto::nn::QConv2d<Q, T>>;

#ifndef QUANTO_NN_TEST_INSTANTIATING
QUANTO_NN_TEST_INSTANCES(extern, float)
QUANTO_NN_TEST_INSTANCES(extern, quanto::float16)
QUANTO_NN_TEST_INSTANCES(extern, quanto::bfloat16)
#endif
