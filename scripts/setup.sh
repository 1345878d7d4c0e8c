#!/usr/bin/env bash
# Installs what quanto-cpp needs to build and test on a Debian machine (idempotent).
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
[ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
[ -f /usr/include/benchmark/benchmark.h ] || need+=(libbenchmark-dev)
[ -f /usr/include/nlohmann/json.hpp ] || need+=(nlohmann-json3-dev)
[ -f /usr/include/tbb/parallel_for.h ] || need+=(libtbb-dev)
[ -f /usr/include/eigen3/Eigen/Core ] || need+=(libeigen3-dev)
# libopenblas-dev puts cblas.h under the multiarch triplet (x86_64-linux-gnu, aarch64-linux-gnu, ...)
compgen -G '/usr/include/*/openblas-pthread/cblas.h' >/dev/null || need+=(libopenblas-dev)
# the NEON kernels are tested by cross-compiling for AArch64 and running under qemu
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
# the fuzz targets (scripts/fuzz.sh) need Clang's libFuzzer
command -v clang++ >/dev/null || need+=(clang)
# .ci/run checks the formatting and runs clang-tidy (scripts/check-format.sh, scripts/tidy.sh)
command -v clang-format >/dev/null || need+=(clang-format)
command -v clang-tidy >/dev/null || need+=(clang-tidy)
# scripts/fuzz.sh builds its targets in parallel with Ninja (Make when it is absent)
command -v ninja >/dev/null || need+=(ninja-build)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
