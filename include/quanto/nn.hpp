// quanto/nn.hpp: the umbrella header of the module layer: float and quantized modules, the
// run-time model tree, quantize / calibrate / train / freeze, state dicts.
#pragma once

#include "quanto/nn/activation.hpp"
#include "quanto/nn/calibration.hpp"
#include "quanto/nn/concepts.hpp"
#include "quanto/nn/elementwise.hpp"
#include "quanto/nn/fnmatch.hpp"
#include "quanto/nn/functional.hpp"
#include "quanto/nn/layers.hpp"
#include "quanto/nn/parameter.hpp"
#include "quanto/nn/qmodules.hpp"
#include "quanto/nn/quantize.hpp"
#include "quanto/nn/quantized_weight.hpp"
#include "quanto/nn/state_dict.hpp"
#include "quanto/nn/train.hpp"
#include "quanto/nn/tree.hpp"
