// quanto/kernels/backend.hpp: `backend<I>`, the one door to ISA `I`'s code. The front door
// (matmul.hpp), conv2d.hpp and the activation preparation (activations.hpp) reach an ISA only
// through it; each ISA folder's matmul.hpp specialises it (reference/, x86/avx2/, arm/neon/).
//
// A backend is a struct of static members:
//   position<Q>(w, e)            where logical element e of a row goes in the activations it reads
//   supports(w)                  whether its kernels take this weight (else the reference runs it)
//   gemm_exact / gemm_dynamic / gemm_int8 (w, xp, n0, n1, y, ldy)
//                                rows [n0, n1) of the three paths (contract: reference/matmul.hpp)
//   quantize_block(x, n, q, sum) one block of the dynamic int8 activation quantization (the
//                                reference's bits exactly: reference/activations.hpp)
//   exact_panel_min_rows         the batch from which its exact path gives bits that do not depend
//                                on m (conv2d keeps every im2col tile at least this tall)
#pragma once

#include "quanto/core/config.hpp"
#include "quanto/core/isa.hpp"

QUANTO_BEGIN_NAMESPACE
namespace kernels {

namespace detail {
template <class I>
inline constexpr bool no_backend = false;
}  // namespace detail

inline namespace QUANTO_TARGET_NS {

/// ISA `I`'s kernels. The primary template is the error for an ISA whose folder did not define one
/// (or was not included because the compiler does not target it).
template <class I>
struct backend {
  static_assert(detail::no_backend<I>,
                "quanto: no backend<I> for this ISA in this translation unit: its folder's matmul.hpp "
                "(kernels/<family>/<isa>/) specialises backend<I>, and kernels/matmul.hpp includes it when "
                "the compiler targets the ISA");
};

}  // namespace QUANTO_TARGET_NS
}  // namespace kernels
QUANTO_END_NAMESPACE
