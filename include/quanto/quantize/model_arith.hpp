// quanto/quantize/model_arith.hpp: deprecated; the model-dtype arithmetic lives in
// quanto/core/model_arith.hpp (namespace `quanto::model_arith`). Kept for one release.
#pragma once

#include "quanto/core/model_arith.hpp"
