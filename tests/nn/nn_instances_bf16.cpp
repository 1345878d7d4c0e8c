// Instantiates the nn module templates for model dtype quanto::bfloat16 (see nn_instances.hpp).
#define QUANTO_NN_TEST_INSTANTIATING
#include "nn_instances.hpp"

QUANTO_NN_TEST_LINEAR_INSTANCES(, quanto::bfloat16)
