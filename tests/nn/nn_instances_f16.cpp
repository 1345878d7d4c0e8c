// Instantiates the nn module templates for model dtype quanto::float16 (see nn_instances.hpp).
#define QUANTO_NN_TEST_INSTANTIATING
#include "nn_instances.hpp"

QUANTO_NN_TEST_LINEAR_INSTANCES(, quanto::float16)
