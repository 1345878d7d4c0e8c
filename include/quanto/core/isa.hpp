// quanto/core/isa.hpp: instruction-set tags, the one ordered list of them (`isa_list`) from which the
// library derives the ISA concept, the compile-time choice of the best one (`native_isa`), the
// per-target namespace, the typed kernel tests and the benchmark rows.
//
// An ISA is an empty tag type. `native_isa` is the best tag of `isa_list` whose kernels this
// translation unit can compile, chosen from the compiler's target macros; define QUANTO_KERNEL_ISA
// to one tag's name (`scalar`, `avx2`, `neon_dot`) before including any quanto header to force it
// (it may only name an ISA the compiler targets), or pass the tag as a template argument to a kernel.
// The tags live in `quanto::kernels` (their users are the kernels); the header sits in core/ so that
// the quantizers (quantize/) can ask which vector code a translation unit has without including
// the kernel layer.
//
// ODR. A header-only library compiled into two translation units with different -march flags
// would otherwise emit the same inline function twice with different instructions, and the linker
// keeps one of them: an AVX2 body could end up called from code built for a plain x86-64 CPU.
// Every function compiled under target flags therefore lives in `quanto::kernels::QUANTO_TARGET_NS`,
// an inline namespace whose name is the TU's target ISA's `target_ns`: users write
// `quanto::kernels::matmul`, and the mangled names differ per target. Data types (tags, layouts,
// options) are ISA-independent and stay outside it, so they can cross between such translation units.
//
// Adding an ISA family: a tag here (its macro, `compiled`, `target_ns`, one entry in `isa_list` and
// in the QUANTO_TARGET_NS chain, which a static_assert checks against the list), `cpu_supports`, and
// the family's folder under kernels/ (see docs/kernels.md).
#pragma once

#include <cstdint>

#include <string_view>
#include <type_traits>

#include "quanto/core/config.hpp"
#include "quanto/core/type_list.hpp"

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

// The per-target namespace: the `target_ns` of the best ISA in `isa_list` the compiler targets
// (checked below). A namespace name has to be a preprocessor token, hence this chain.
#if QUANTO_HAS_AVX512_VNNI
#define QUANTO_TARGET_NS target_avx512vnni
#elif QUANTO_HAS_AVX2
#define QUANTO_TARGET_NS target_avx2
#elif QUANTO_HAS_NEON_DOT
#define QUANTO_TARGET_NS target_neon_dot
#else
#define QUANTO_TARGET_NS target_baseline
#endif
#define QUANTO_ISA_STRINGIZE_(x) #x
#define QUANTO_ISA_STRINGIZE(x) QUANTO_ISA_STRINGIZE_(x)

QUANTO_BEGIN_NAMESPACE
namespace kernels {

/// Instruction-set tags. `width` is the vector register width in bytes; `implemented` says whether
/// quanto-cpp has kernels for it yet (an ISA without kernels can still be targeted by the compiler:
/// `native_isa` then falls back to the best implemented ISA it implies); `compiled` whether this
/// translation unit's flags enable it; `target_ns` the per-target namespace of a TU whose best
/// target it is.
namespace isa {
struct scalar {
  static constexpr std::string_view name = "scalar";
  static constexpr std::string_view target_ns = "target_baseline";
  static constexpr int width = 4;
  static constexpr bool implemented = true;
  static constexpr bool compiled = true;  // the reference is always compiled
};
struct neon_dot {
  static constexpr std::string_view name = "neon_dot";
  static constexpr std::string_view target_ns = "target_neon_dot";
  static constexpr int width = 16;
  static constexpr bool implemented = true;
  static constexpr bool compiled = QUANTO_HAS_NEON_DOT != 0;
};
struct avx2 {
  static constexpr std::string_view name = "avx2";
  static constexpr std::string_view target_ns = "target_avx2";
  static constexpr int width = 32;
  static constexpr bool implemented = true;
  static constexpr bool compiled = QUANTO_HAS_AVX2 != 0;
};
struct avx512_vnni {
  static constexpr std::string_view name = "avx512_vnni";
  static constexpr std::string_view target_ns = "target_avx512vnni";
  static constexpr int width = 64;
  static constexpr bool implemented = false;  // AVX-512 CPUs run the avx2 kernels for now
  static constexpr bool compiled = QUANTO_HAS_AVX512_VNNI != 0;
};
}  // namespace isa

/// Every ISA tag, in order of preference (the last compiled one wins). The concept, `native_isa`,
/// `target_isa`, the typed kernel tests and the benchmark rows are derived from this list.
using isa_list = type_list<isa::scalar, isa::neon_dot, isa::avx2, isa::avx512_vnni>;

namespace detail {

template <class I, class List>
inline constexpr bool isa_in = false;
template <class I, class... Ts>
inline constexpr bool isa_in<I, type_list<Ts...>> = (std::is_same_v<I, Ts> || ...);

/// The last element of the list for which Pred<T>::value holds (the list's first if none does).
template <template <class> class Pred, class Best, class List>
struct last_where;
template <template <class> class Pred, class Best>
struct last_where<Pred, Best, type_list<>> {
  using type = Best;
};
template <template <class> class Pred, class Best, class H, class... T>
struct last_where<Pred, Best, type_list<H, T...>>
    : last_where<Pred, std::conditional_t<Pred<H>::value, H, Best>, type_list<T...>> {};

template <class I>
struct isa_compiled : std::bool_constant<I::compiled> {};
template <class I>
struct isa_usable : std::bool_constant<I::compiled && I::implemented> {};

}  // namespace detail

/// One of the tags in `isa_list`.
template <class I>
concept Isa = detail::isa_in<I, isa_list>;

/// An ISA whose kernels exist and which this translation unit's compiler flags allow.
template <class I>
concept UsableIsa = Isa<I> && I::implemented && I::compiled;

/// The ISA the compiler targets, whether or not it has kernels: the last compiled ISA of the list.
using target_isa = typename detail::last_where<detail::isa_compiled, isa::scalar, isa_list>::type;

static_assert(target_isa::target_ns == QUANTO_ISA_STRINGIZE(QUANTO_TARGET_NS),
              "quanto: QUANTO_TARGET_NS (core/isa.hpp) disagrees with the target ISA of isa_list");

#if defined(QUANTO_KERNEL_ISA)
using native_isa = isa::QUANTO_KERNEL_ISA;
static_assert(UsableIsa<native_isa>,
              "quanto: QUANTO_KERNEL_ISA names an ISA that has no kernels or that the compiler flags do "
              "not enable (e.g. avx2 needs -mavx2 -mfma -mf16c)");
#else
/// The best ISA with kernels that this translation unit can run (the last usable ISA of the list):
/// AVX-512 targets use the AVX2 kernels until AVX-512 kernels exist.
using native_isa = typename detail::last_where<detail::isa_usable, isa::scalar, isa_list>::type;
#endif

/// Calls `f(I{})` for each ISA of the list, in order (tests and benchmarks iterate it).
template <class F>
constexpr void for_each_isa(F&& f) {
  for_each_type(isa_list{}, f);
}

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

/// Whether ISA `I` can run here: compiled in, with kernels, and supported by this CPU.
template <Isa I>
bool runnable() noexcept {
  if constexpr (UsableIsa<I>)
    return cpu_supports<I>();
  else
    return false;
}

}  // namespace kernels
QUANTO_END_NAMESPACE
