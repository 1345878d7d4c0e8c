// quanto/interop/eigen.hpp: Eigen matrices in and out of quanto — quantize an Eigen weight,
// dequantize to an Eigen matrix, and run the matmul kernels on Eigen activations, reading and
// writing Eigen's own memory. Needs Eigen 3.3+ (<Eigen/Core>); CMake target `quanto::eigen`.
//
//   auto qw = quanto::eigen::quantize<quanto::qint4>(w);    // w: [out, in], any Eigen expression
//   Eigen::MatrixXf w2 = quanto::eigen::dequantize(qw);      // float, [out, in]
//   auto pw = quanto::kernels::pack_weight(qw);
//   auto y = quanto::eigen::matmul(pw, x);                   // x: [m, in] float -> y: [m, out]
//   quanto::eigen::matmul(pw, x, Eigen::Map<...>(buf, m, out));  // into the caller's memory
//
// Memory. quanto tensors are dense and row-major, an Eigen matrix is column-major unless declared
// `Eigen::RowMajor`. Whenever the Eigen side already has quanto's layout — a row-major matrix, a
// Map or a Ref over contiguous rows (a weight), or a row-major matrix, Map, Ref or block whose rows
// are `outerStride()` apart (activations and outputs: the kernels take a row stride) — quanto reads
// and writes that memory in place. A column-major input (Eigen's default) or an unevaluated
// expression is copied once, into row-major memory: by `as_tensor` for a weight, by the
// `Eigen::Ref<const ...>` parameter for activations. Outputs are never copied: they must be
// row-major (a column-major output does not compile).
//
// Scalars. Weights may be float, quanto::bfloat16, quanto::float16 or (Eigen 3.4+) Eigen::bfloat16
// and Eigen::half, which are quanto's bfloat16/float16 bit for bit (they are converted by a bit
// copy: the model dtype is then quanto's type). Activations and outputs are float.
// `dequantize` returns float: every model-dtype value widens to float exactly, and a float matrix is
// what Eigen computes with (Eigen has no arithmetic for quanto's types).
#pragma once

#include <Eigen/Core>

#include <bit>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>

#include "quanto/core/bfloat16.hpp"
#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/float16.hpp"
#include "quanto/core/model_arith.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/shape.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/kernels/activations.hpp"
#include "quanto/kernels/isa.hpp"
#include "quanto/kernels/layout.hpp"
#include "quanto/kernels/matmul.hpp"
#include "quanto/quantize/optimizers.hpp"
#include "quanto/quantize/qtensor.hpp"

QUANTO_BEGIN_NAMESPACE
namespace eigen {

/// A dynamic-size row-major Eigen matrix: quanto's layout.
template <class Scalar>
using row_matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

namespace detail {
/// The quanto model dtype an Eigen scalar holds (no `type` member: not a weight scalar).
template <class S>
struct model_scalar {};
template <>
struct model_scalar<float> {
  using type = float;
};
template <>
struct model_scalar<quanto::bfloat16> {
  using type = quanto::bfloat16;
};
template <>
struct model_scalar<quanto::float16> {
  using type = quanto::float16;
};
#if EIGEN_VERSION_AT_LEAST(3, 4, 0)
template <>
struct model_scalar<Eigen::bfloat16> {
  using type = quanto::bfloat16;
};
template <>
struct model_scalar<Eigen::half> {
  using type = quanto::float16;
};
#endif

template <class W>
struct is_file_weight : std::false_type {};
template <ByteQType Q, ModelFloat T, template <class> class H>
struct is_file_weight<basic_qbytes_weight<Q, T, H>> : std::true_type {};
template <LowBitQType Q, ModelFloat T, template <class> class H, class Shift>
struct is_file_weight<basic_qbits_weight<Q, T, H, Shift>> : std::true_type {};
}  // namespace detail

/// An Eigen scalar type `quantize` takes.
template <class S>
concept WeightScalar = requires {
  typename detail::model_scalar<S>::type;
};

/// The quanto model dtype of Eigen scalar `S` (Eigen::bfloat16 -> quanto::bfloat16, ...).
template <WeightScalar S>
using model_scalar_t = typename detail::model_scalar<S>::type;

/// A quantized weight in the file layout (what `quantize` returns; owning or a view).
template <class W>
concept FileWeight = detail::is_file_weight<W>::value;

/// An Eigen matrix as a quanto tensor [rows, cols]: a view of the Eigen memory when it already is
/// dense and row-major (`copied()` false), else a view of a row-major copy owned by this object.
/// Move-only; the view stays valid while this object (and, when not copied, the matrix) lives.
template <ModelFloat T>
class row_major_tensor {
 public:
  explicit row_major_tensor(tensor_view<const T> borrowed) noexcept : view_(borrowed) {}
  explicit row_major_tensor(tensor<T> copy) noexcept : copy_(std::move(copy)), view_(copy_.view()), copied_(true) {}
  row_major_tensor(row_major_tensor&&) noexcept = default;  // the copy's heap buffer does not move
  row_major_tensor& operator=(row_major_tensor&&) noexcept = default;
  row_major_tensor(const row_major_tensor&) = delete;
  row_major_tensor& operator=(const row_major_tensor&) = delete;

  tensor_view<const T> view() const noexcept { return view_; }
  bool copied() const noexcept { return copied_; }

 private:
  tensor<T> copy_;
  tensor_view<const T> view_;
  bool copied_ = false;
};

/// The elements of `m` as a row-major quanto tensor [rows, cols], without a copy where the memory
/// allows it (a row-major matrix, Map or Ref with contiguous rows, a block of whole rows, a column
/// vector, the `.transpose()` of a column-major matrix), else copied once (column-major storage, a
/// block of some columns, an expression, an Eigen::bfloat16 / Eigen::half scalar).
template <class Derived>
requires WeightScalar<typename Derived::Scalar> row_major_tensor<model_scalar_t<typename Derived::Scalar>> as_tensor(
    const Eigen::MatrixBase<Derived>& m) {
  using S = typename Derived::Scalar;
  using T = model_scalar_t<S>;
  const quanto::shape s{static_cast<std::int64_t>(m.rows()), static_cast<std::int64_t>(m.cols())};
  if constexpr (std::is_same_v<S, T> && (static_cast<int>(Derived::Flags) & Eigen::DirectAccessBit) != 0) {
    const Derived& d = m.derived();
    // row-major order: column j + 1 next to column j, row i + 1 `cols` after row i
    const bool dense = (d.cols() <= 1 || d.colStride() == 1) && (d.rows() <= 1 || d.rowStride() == d.cols());
    if (dense) return row_major_tensor<T>(tensor_view<const T>(d.data(), s));
  }
  tensor<T> copy(s);
  Eigen::Map<row_matrix<T>> dst(copy.data(), m.rows(), m.cols());
  if constexpr (std::is_same_v<S, T>)
    dst = m;
  else
    dst = m.unaryExpr([](const S& v) { return std::bit_cast<T>(v); });
  return row_major_tensor<T>(std::move(copy));
}

/// Quantizes an Eigen weight [out, in] as `quanto::quantize_weight<Q>` does (bit for bit), in the
/// file layout: `qweight_t<Q, T, S>` with T the model dtype of the matrix's scalar. A row-major
/// dense weight is read in place; anything else is copied once (see `as_tensor`).
template <QType Q, class Derived, Scheme S = default_scheme_t<Q>, class Optimizer = default_optimizer_t<Q>>
requires WeightScalar<typename Derived::Scalar> qweight_t<Q, model_scalar_t<typename Derived::Scalar>, S> quantize(
    const Eigen::MatrixBase<Derived>& w, const S& scheme = {}, const Optimizer& optimizer = {},
    quantize_options options = {}) {
  using T = model_scalar_t<typename Derived::Scalar>;
  const row_major_tensor<T> in = as_tensor(w);
  return quantize_weight<Q, T, S, Optimizer>(in.view(), scheme, optimizer, options);
}

/// The dequantized weight (`w.dequantize()`, quanto's values in the model dtype) widened exactly to
/// float, as [out, in] (a conv weight [out, c, kh, kw] gives [out, c·kh·kw]).
template <FileWeight W>
row_matrix<float> dequantize(const W& w) {
  const quanto::shape& s = w.shape();
  const std::int64_t rows = s.rank() == 0 ? 1 : s[0];
  const std::int64_t cols = rows == 0 ? 0 : s.numel() / rows;
  const auto dq = w.dequantize();
  row_matrix<float> out(rows, cols);
  float* dst = out.data();
  for (std::size_t i = 0; i < dq.size(); ++i) dst[i] = quanto::model_arith::widen(dq[i]);
  return out;
}

/// The dequantized weight of a packed (kernel-layout) weight: the same values as dequantizing the
/// file-layout weight it was packed from.
template <QType Q, ModelFloat T, class S>
row_matrix<float> dequantize(const kernels::packed_weight<Q, T, S>& w) {
  return dequantize(kernels::unpack_weight(w));
}

// The matmul wrappers call the kernels, so they live in the per-target namespace like the kernels
// (see quanto/kernels/isa.hpp: translation units built with different -march flags must not share
// them). Its helpers are in `matmul_detail`: a second `detail` in an inline namespace would make
// `eigen::detail` ambiguous.
inline namespace QUANTO_TARGET_NS {
namespace matmul_detail {

inline std::int64_t row_stride(Eigen::Index rows, Eigen::Index cols, Eigen::Index outer) noexcept {
  return rows <= 1 ? static_cast<std::int64_t>(cols) : static_cast<std::int64_t>(outer);
}

template <class P, class I, QType Q, ModelFloat T, class S>
void run(const kernels::packed_weight<Q, T, S>& w, const Eigen::Ref<const row_matrix<float>>& x,
         Eigen::Ref<row_matrix<float>> y, const float* bias, Eigen::Index bias_size,
         const kernels::matmul_options& opt) {
  if (x.cols() != w.k)
    throw shape_error("eigen::matmul: x is [" + std::to_string(x.rows()) + ", " + std::to_string(x.cols()) +
                      "], the weight expects [m, " + std::to_string(w.k) + "]");
  if (y.rows() != x.rows() || y.cols() != w.n)
    throw shape_error("eigen::matmul: y is [" + std::to_string(y.rows()) + ", " + std::to_string(y.cols()) +
                      "], expected [" + std::to_string(x.rows()) + ", " + std::to_string(w.n) + "]");
  if (bias && bias_size != w.n)
    throw shape_error("eigen::matmul: bias has " + std::to_string(bias_size) + " elements, expected " +
                      std::to_string(w.n));
  if (x.rows() == 0) return;
  kernels::matmul<P, I>(w, x.data(), static_cast<std::int64_t>(x.rows()),
                        row_stride(x.rows(), x.cols(), x.outerStride()), y.data(),
                        row_stride(y.rows(), y.cols(), y.outerStride()), bias, opt);
}

}  // namespace matmul_detail

/// `y = x · Wᵀ` into `y` [m, n], in place: any row-major float matrix, Map, Ref or block with unit
/// column stride (its rows may be `outerStride()` apart). `x` [m, k] is read in place when row-major
/// (a column-major x is copied once by the Ref). `y` must not overlap `x`.
template <kernels::ActivationPolicy P = kernels::exact_activations, kernels::Isa I = kernels::native_isa, QType Q,
          ModelFloat T, class S>
void matmul_into(const kernels::packed_weight<Q, T, S>& w, const Eigen::Ref<const row_matrix<float>>& x,
                 Eigen::Ref<row_matrix<float>> y, const kernels::matmul_options& opt = {}) {
  matmul_detail::run<P, I>(w, x, y, nullptr, 0, opt);
}

/// `y = x · Wᵀ + bias` into `y`, in place (`bias`: n floats).
template <kernels::ActivationPolicy P = kernels::exact_activations, kernels::Isa I = kernels::native_isa, QType Q,
          ModelFloat T, class S>
void matmul_into(const kernels::packed_weight<Q, T, S>& w, const Eigen::Ref<const row_matrix<float>>& x,
                 Eigen::Ref<row_matrix<float>> y, const Eigen::Ref<const Eigen::VectorXf>& bias,
                 const kernels::matmul_options& opt = {}) {
  matmul_detail::run<P, I>(w, x, y, bias.data(), bias.size(), opt);
}

/// `x · Wᵀ` as a new row-major float matrix [m, n], written directly by the kernels.
template <kernels::ActivationPolicy P = kernels::exact_activations, kernels::Isa I = kernels::native_isa, QType Q,
          ModelFloat T, class S>
row_matrix<float> matmul(const kernels::packed_weight<Q, T, S>& w, const Eigen::Ref<const row_matrix<float>>& x,
                         const kernels::matmul_options& opt = {}) {
  row_matrix<float> y(x.rows(), static_cast<Eigen::Index>(w.n));
  matmul_detail::run<P, I>(w, x, y, nullptr, 0, opt);
  return y;
}

/// `x · Wᵀ + bias` as a new row-major float matrix [m, n].
template <kernels::ActivationPolicy P = kernels::exact_activations, kernels::Isa I = kernels::native_isa, QType Q,
          ModelFloat T, class S>
row_matrix<float> matmul(const kernels::packed_weight<Q, T, S>& w, const Eigen::Ref<const row_matrix<float>>& x,
                         const Eigen::Ref<const Eigen::VectorXf>& bias, const kernels::matmul_options& opt = {}) {
  row_matrix<float> y(x.rows(), static_cast<Eigen::Index>(w.n));
  matmul_detail::run<P, I>(w, x, y, bias.data(), bias.size(), opt);
  return y;
}

/// `y = x · Wᵀ` into the caller's memory mapped by `y` [m, n] (contiguous rows).
template <kernels::ActivationPolicy P = kernels::exact_activations, kernels::Isa I = kernels::native_isa, QType Q,
          ModelFloat T, class S>
void matmul(const kernels::packed_weight<Q, T, S>& w, const Eigen::Ref<const row_matrix<float>>& x,
            Eigen::Map<row_matrix<float>> y, const kernels::matmul_options& opt = {}) {
  matmul_detail::run<P, I>(w, x, y, nullptr, 0, opt);
}

/// `y = x · Wᵀ + bias` into the caller's memory mapped by `y`.
template <kernels::ActivationPolicy P = kernels::exact_activations, kernels::Isa I = kernels::native_isa, QType Q,
          ModelFloat T, class S>
void matmul(const kernels::packed_weight<Q, T, S>& w, const Eigen::Ref<const row_matrix<float>>& x,
            Eigen::Map<row_matrix<float>> y, const Eigen::Ref<const Eigen::VectorXf>& bias,
            const kernels::matmul_options& opt = {}) {
  matmul_detail::run<P, I>(w, x, y, bias.data(), bias.size(), opt);
}

}  // namespace QUANTO_TARGET_NS
}  // namespace eigen
QUANTO_END_NAMESPACE
