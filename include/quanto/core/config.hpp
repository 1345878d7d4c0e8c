// quanto/core/config.hpp: version, namespace and portability macros shared by every header.
#pragma once

#define QUANTO_VERSION_MAJOR 0
#define QUANTO_VERSION_MINOR 1
#define QUANTO_VERSION_PATCH 0

/// Every public entity lives in `quanto::v0` (an inline ABI namespace) so that a future
/// incompatible layout change gets new mangled names instead of silent mismatches.
#define QUANTO_BEGIN_NAMESPACE \
  namespace quanto {           \
  inline namespace v0 {
#define QUANTO_END_NAMESPACE \
  } /* namespace v0 */       \
  } /* namespace quanto */

/// Alignment of every owning buffer. Fixed, and deliberately independent of the ISA flags a
/// translation unit is built with: two TUs built with -mavx2 and -mavx512f must agree on it.
#define QUANTO_BUFFER_ALIGNMENT 64

#if defined(__GNUC__) || defined(__clang__)
#define QUANTO_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define QUANTO_ALWAYS_INLINE inline
#endif

/// Fully unrolls the following loop (small constant trip counts in kernels): GCC does not unroll at
/// -O2, and a loop over a register array that is not unrolled spills the array to memory.
#if defined(__clang__)
#define QUANTO_UNROLL _Pragma("unroll")
#elif defined(__GNUC__)
#define QUANTO_UNROLL _Pragma("GCC unroll 16")
#else
#define QUANTO_UNROLL
#endif
