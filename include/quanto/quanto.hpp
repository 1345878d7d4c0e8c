// quanto/quanto.hpp: the umbrella header of the header-only core: every header of core/ (number
// formats, dtypes, qtypes, shapes, tensors, errors) and quantize/ (schemes, optimizers, quantized
// tensors, run-time dispatch). It needs nothing but the standard library. Not included: the
// kernels (quanto/kernels/matmul.hpp, conv2d.hpp), the modules (quanto/nn.hpp), file I/O
// (quanto/io/*.hpp, target quanto::io), the Eigen adapters (quanto/interop/eigen.hpp) and CUDA
// (quanto/cuda/cuda.hpp, target quanto::cuda).
#pragma once

#include "quanto/core/bfloat16.hpp"
#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/float16.hpp"
#include "quanto/core/float8.hpp"
#include "quanto/core/float_bits.hpp"
#include "quanto/core/log.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/quantization_map.hpp"
#include "quanto/core/shape.hpp"
#include "quanto/core/small_float.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/core/type_list.hpp"
#include "quanto/quantize/affine.hpp"
#include "quanto/quantize/axis.hpp"
#include "quanto/quantize/checks.hpp"
#include "quanto/quantize/group.hpp"
#include "quanto/quantize/optimizers.hpp"
#include "quanto/quantize/packing.hpp"
#include "quanto/quantize/qtensor.hpp"
#include "quanto/quantize/runtime.hpp"
#include "quanto/quantize/symmetric.hpp"
#include "quanto/quantize/torch_pow.hpp"
#include "quanto/quantize/torch_sum.hpp"
