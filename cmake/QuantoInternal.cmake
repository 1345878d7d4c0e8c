# Settings for the project's own tests, benchmarks and examples. Nothing here reaches a consumer.
set(QUANTO_WARNINGS -Wall -Wextra -Wpedantic -Wconversion -Wno-sign-conversion)
# The CI presets turn every warning of the project's own targets into an error.
option(QUANTO_WARNINGS_AS_ERRORS "Compile quanto's own tests, benchmarks, examples and tools with -Werror" OFF)
if(QUANTO_WARNINGS_AS_ERRORS)
  list(APPEND QUANTO_WARNINGS -Werror)
endif()

# Tests and benchmarks are built for the machine they run on unless told otherwise: the kernels
# select their ISA from the compiler's target macros.
set(QUANTO_INTERNAL_ARCH_FLAGS "-march=native" CACHE STRING "ISA flags for quanto's own tests and benchmarks")

function(quanto_internal_target target)
  target_compile_options(${target} PRIVATE ${QUANTO_WARNINGS} ${QUANTO_INTERNAL_ARCH_FLAGS})
  target_compile_features(${target} PRIVATE cxx_std_20)
endfunction()

# quanto_use_weight_instances(<target>): for the model-level targets (io/model.hpp quantizes every
# qtype x model dtype through the run-time quantize_weight). Force-includes
# tests/support/weight_instances.hpp, which declares every quantize_weight<Q, T, S, Optimizer> it
# dispatches to `extern template`, and links quanto_weight_instances, the one library that
# instantiates them (three TUs, one per model dtype, built in parallel, once for all users).
function(quanto_use_weight_instances target)
  set(_dir "${PROJECT_SOURCE_DIR}/tests/support")
  if(NOT TARGET quanto_weight_instances)
    add_library(quanto_weight_instances STATIC
      "${_dir}/weight_instances_f32.cpp" "${_dir}/weight_instances_f16.cpp" "${_dir}/weight_instances_bf16.cpp")
    quanto_internal_target(quanto_weight_instances)
    target_link_libraries(quanto_weight_instances PUBLIC quanto::quanto)
  endif()
  target_link_libraries(${target} PRIVATE quanto_weight_instances)
  target_compile_options(${target} PRIVATE "SHELL:-include \"${_dir}/weight_instances.hpp\"")
endfunction()
