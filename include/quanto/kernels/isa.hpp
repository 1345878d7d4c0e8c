// quanto/kernels/isa.hpp: forwards to quanto/core/isa.hpp, the ISA tags and their list (they moved
// to core/ so that the quantizers can use them without including the kernel layer).
#pragma once

#include "quanto/core/isa.hpp"
