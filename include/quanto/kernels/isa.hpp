// quanto/kernels/isa.hpp: instruction-set tags, the compile-time choice of the best one, and the
// per-target namespace that keeps kernels built with different -march flags apart.
//
// An ISA is an empty tag type. `native_isa` is the best tag whose kernels this translation unit
// can compile, chosen from the compiler's target macros; define QUANTO_KERNEL_ISA to one of
// `scalar`, `avx2`, `neon_dot` before including any quanto header to force it (it may only name an ISA the
// compiler targets), or pass the tag as a template argument to a kernel.
//
// ODR. A header-only library compiled into two translation units with different -march flags
// would otherwise emit the same inline function twice with different instructions, and the linker
// keeps one of them: an AVX2 body could end up called from code built for a plain x86-64 CPU.
// Every kernel function therefore lives in `quanto::kernels::QUANTO_TARGET_NS`, an inline namespace
// whose name is derived from the TU's target macros: users write `quanto::kernels::matmul`, and
// the mangled names differ per target. Data types (tags, layouts, options) are ISA-independent and
// stay outside it, so they can cross between such translation units.
#pragma once

#include <cstdint>

#include <string_view>
#include <type_traits>

#include "quanto/core/config.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

// ---- what the compiler targets --------------------------------------------------------------------
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define QUANTO_HAS_AVX2 1
#else
#define QUANTO_HAS_AVX2 0
#endif
#if QUANTO_HAS_AVX2 && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512VNNI__)
#define QUANTO_HAS_AVX512_VNNI 1
#else
#define QUANTO_HAS_AVX512_VNNI 0
#endif
#if defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)
#define QUANTO_HAS_NEON_DOT 1
#else
#define QUANTO_HAS_NEON_DOT 0
#endif

// The per-target namespace: one name per distinct set of ISA macros the kernels depend on.
#if QUANTO_HAS_AVX512_VNNI
#define QUANTO_TARGET_NS target_avx512vnni
#elif QUANTO_HAS_AVX2
#define QUANTO_TARGET_NS target_avx2
#elif QUANTO_HAS_NEON_DOT
#define QUANTO_TARGET_NS target_neon_dot
#else
#define QUANTO_TARGET_NS target_baseline
#endif

QUANTO_BEGIN_NAMESPACE
namespace kernels {

/// Instruction-set tags. `width` is the vector register width in bytes; `implemented` says whether
/// quanto-cpp has kernels for it yet (an ISA without kernels can still be targeted by the compiler:
/// `native_isa` then falls back to the best implemented ISA it implies).
namespace isa {
struct scalar {
  static constexpr std::string_view name = "scalar";
  static constexpr int width = 4;
  static constexpr bool implemented = true;
  static constexpr bool compiled = true;  // the reference is always compiled
};
struct avx2 {
  static constexpr std::string_view name = "avx2";
  static constexpr int width = 32;
  static constexpr bool implemented = true;
  static constexpr bool compiled = QUANTO_HAS_AVX2 != 0;
};
struct avx512_vnni {
  static constexpr std::string_view name = "avx512_vnni";
  static constexpr int width = 64;
  static constexpr bool implemented = false;  // AVX-512 CPUs run the avx2 kernels for now
  static constexpr bool compiled = QUANTO_HAS_AVX512_VNNI != 0;
};
struct neon_dot {
  static constexpr std::string_view name = "neon_dot";
  static constexpr int width = 16;
  static constexpr bool implemented = true;
  static constexpr bool compiled = QUANTO_HAS_NEON_DOT != 0;
};
}  // namespace isa

template <class I>
concept Isa = std::is_same_v<I, isa::scalar> || std::is_same_v<I, isa::avx2> || std::is_same_v<I, isa::avx512_vnni> ||
    std::is_same_v<I, isa::neon_dot>;

/// An ISA whose kernels exist and which this translation unit's compiler flags allow.
template <class I>
concept UsableIsa = Isa<I> && I::implemented && I::compiled;

/// The ISA the compiler targets, whether or not it has kernels.
using target_isa =
    std::conditional_t<QUANTO_HAS_AVX512_VNNI != 0, isa::avx512_vnni,
                       std::conditional_t<QUANTO_HAS_AVX2 != 0, isa::avx2,
                                          std::conditional_t<QUANTO_HAS_NEON_DOT != 0, isa::neon_dot, isa::scalar>>>;

#if defined(QUANTO_KERNEL_ISA)
using native_isa = isa::QUANTO_KERNEL_ISA;
static_assert(UsableIsa<native_isa>,
              "quanto: QUANTO_KERNEL_ISA names an ISA that has no kernels or that the compiler flags do "
              "not enable (e.g. avx2 needs -mavx2 -mfma -mf16c)");
#else
/// The best ISA with kernels that this translation unit can run: AVX-512 targets use the AVX2
/// kernels until AVX-512 kernels exist.
using native_isa = std::conditional_t<QUANTO_HAS_AVX2 != 0, isa::avx2,
                                      std::conditional_t<QUANTO_HAS_NEON_DOT != 0, isa::neon_dot, isa::scalar>>;
#endif

/// The batch (activation rows) from which the AVX2 exact matmul takes its panel kernels, whose
/// arithmetic for an output does not depend on m; below it, register tiles of up to 4 rows whose
/// low bits may depend on the tile height. conv2d keeps every im2col tile at least this tall so
/// that its tiles give the whole-image matmul's bits.
inline constexpr std::int64_t exact_panel_min_rows = 5;

/// Whether the CPU running this process can execute ISA `I` (the compiler flags aside): tests use it
/// to run every path the machine supports and to say which they skipped.
template <Isa I>
bool cpu_supports() noexcept {
  if constexpr (std::is_same_v<I, isa::scalar>) {
    return true;
  } else {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    if constexpr (std::is_same_v<I, isa::avx2>) {
      // clang 14 does not know the "f16c" feature string: CPUID leaf 1, ECX bit 29
      unsigned a = 0, b = 0, c = 0, d = 0;
      const bool f16c = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) != 0;
      return f16c && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    if constexpr (std::is_same_v<I, isa::avx512_vnni>) {
      // clang 14 does not know the "avx512vnni" feature string: read CPUID leaf 7 (ECX bit 11)
      unsigned a = 0, b = 0, c = 0, d = 0;
      const bool vnni = __get_cpuid_count(7, 0, &a, &b, &c, &d) && (c & (1u << 11)) != 0;
      return vnni && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl");
    }
#endif
#if defined(__aarch64__) && defined(__linux__)
    if constexpr (std::is_same_v<I, isa::neon_dot>) return (getauxval(AT_HWCAP) & (1ul << 20)) != 0;  // HWCAP_ASIMDDP
#endif
    return false;
  }
}

}  // namespace kernels
QUANTO_END_NAMESPACE
