# Settings for the project's own tests, benchmarks and examples. Nothing here reaches a consumer.
set(QUANTO_WARNINGS -Wall -Wextra -Wpedantic -Wconversion -Wno-sign-conversion)

# Tests and benchmarks are built for the machine they run on unless told otherwise: the kernels
# select their ISA from the compiler's target macros.
set(QUANTO_INTERNAL_ARCH_FLAGS "-march=native" CACHE STRING "ISA flags for quanto's own tests and benchmarks")

function(quanto_internal_target target)
  target_compile_options(${target} PRIVATE ${QUANTO_WARNINGS} ${QUANTO_INTERNAL_ARCH_FLAGS})
  target_compile_features(${target} PRIVATE cxx_std_20)
endfunction()
