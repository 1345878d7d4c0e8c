// Instantiates the nn module templates for model dtype float (see nn_instances.hpp).
#define QUANTO_NN_TEST_INSTANTIATING
#include "nn_instances.hpp"

QUANTO_NN_TEST_FLOAT_INSTANCES()
