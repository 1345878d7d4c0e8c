// quanto/kernels/parallel.hpp: forwards to quanto/core/parallel.hpp, the thread pool and
// `parallel_for` (they moved to core/ so that the quantizers can use them without including the
// kernel layer).
#pragma once

#include "quanto/core/parallel.hpp"
