// quanto/kernels/x86/avx2/quantize.hpp: moved to quanto/quantize/x86/avx2/quantize.hpp (the AVX2 runs
// of the quantizers belong to the quantize layer); this header forwards for one release.
#pragma once

#include "quanto/quantize/x86/avx2/quantize.hpp"
