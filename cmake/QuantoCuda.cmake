# quanto::cuda: the GPU matmuls (fused w4a16 / w8a16 kernels, cuBLASLt int8 / fp8, the dequantize
# fallback; docs/cuda.md). Optional, OFF by default; include()d from the top-level CMakeLists.txt
# after the quanto target exists, so the variables set here (QUANTO_HAS_CUDA) are visible there.
#
# Whatever the option, the pure-C++ layout headers (quanto/cuda/fragment.hpp, repack.hpp: repacking
# into the kernel layouts and back) join quanto::quanto's headers: they need no CUDA.
#
# With QUANTO_ENABLE_CUDA=ON: CUDA is enabled as a language, CMAKE_CUDA_ARCHITECTURES defaults to
# 80;89;90a (A100, Ada, H100/H200 with its architecture-specific features; set it on the command line
# to build fewer or others), and a static library quanto_cuda (quanto::cuda) is built from src/cuda/
# with the installed toolkit's nvcc, linked to CUDA::cudart, CUDA::cublas and CUDA::cublasLt. Its
# warning flags are PRIVATE; it adds no -march and no CUDA flags to its users.
option(QUANTO_ENABLE_CUDA "Build the quanto::cuda target (GPU matmuls; needs the CUDA toolkit, nvcc)" OFF)

target_sources(quanto INTERFACE
  FILE_SET HEADERS BASE_DIRS "${PROJECT_SOURCE_DIR}/include"
  FILES "${PROJECT_SOURCE_DIR}/include/quanto/cuda/fragment.hpp"
        "${PROJECT_SOURCE_DIR}/include/quanto/cuda/repack.hpp")

set(QUANTO_HAS_CUDA OFF)
if(QUANTO_ENABLE_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES "80;89;90a" CACHE STRING "GPU architectures quanto::cuda is compiled for")
  endif()
  enable_language(CUDA)
  find_package(CUDAToolkit REQUIRED)
  if(CMAKE_CUDA_COMPILER_VERSION VERSION_LESS 12.0)
    message(FATAL_ERROR "quanto::cuda needs CUDA 12.0 or newer (C++20 in nvcc), found ${CMAKE_CUDA_COMPILER_VERSION}")
  endif()
  set(QUANTO_HAS_CUDA ON)

  add_library(quanto_cuda STATIC
    "${PROJECT_SOURCE_DIR}/src/cuda/context.cu"
    "${PROJECT_SOURCE_DIR}/src/cuda/w4a16.cu"
    "${PROJECT_SOURCE_DIR}/src/cuda/w8a16.cu"
    "${PROJECT_SOURCE_DIR}/src/cuda/cublaslt.cu"
    "${PROJECT_SOURCE_DIR}/src/cuda/fallback.cu")
  add_library(quanto::cuda ALIAS quanto_cuda)
  set_target_properties(quanto_cuda PROPERTIES EXPORT_NAME cuda POSITION_INDEPENDENT_CODE ON)
  target_sources(quanto_cuda PUBLIC
    FILE_SET HEADERS BASE_DIRS "${PROJECT_SOURCE_DIR}/include"
    FILES "${PROJECT_SOURCE_DIR}/include/quanto/cuda/cuda.hpp")
  target_link_libraries(quanto_cuda PUBLIC quanto::quanto CUDA::cudart PRIVATE CUDA::cublas CUDA::cublasLt)
  # Private: C++20 (spelled out: CMake 3.25 has no CUDA20 dialect for nvcc), warnings (host and device),
  # line info for compute-sanitizer and profilers.
  target_compile_options(quanto_cuda PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20 -Xcompiler=-Wall,-Wextra --Werror=cross-execution-space-call -lineinfo>)
  if(QUANTO_INSTALL)
    install(TARGETS quanto_cuda EXPORT quantoCudaTargets
      ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
      FILE_SET HEADERS)
    install(EXPORT quantoCudaTargets NAMESPACE quanto:: DESTINATION "${CMAKE_INSTALL_DATADIR}/cmake/quanto")
    export(EXPORT quantoCudaTargets NAMESPACE quanto:: FILE "${PROJECT_BINARY_DIR}/quantoCudaTargets.cmake")
  endif()
  message(STATUS "quanto: quanto::cuda for CUDA architectures ${CMAKE_CUDA_ARCHITECTURES} (nvcc ${CMAKE_CUDA_COMPILER_VERSION})")
endif()
