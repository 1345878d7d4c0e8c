// Instantiates the quantize_weight templates for model dtype float (see weight_instances.hpp).
#define QUANTO_WEIGHT_INSTANTIATING
#include "weight_instances.hpp"

QUANTO_WEIGHT_INSTANCES(, float)
