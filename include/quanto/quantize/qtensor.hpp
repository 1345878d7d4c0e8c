// quanto/quantize/qtensor.hpp: quantized tensors in optimum-quanto's file layout — 8-bit weights
// (codes + per-axis scale), 2/4-bit weights (planar-packed codes + scale + shift), activations
// (codes + per-tensor scale) — owning or as views of memory that lives elsewhere, and the
// `quantize_weight` / `quantize_activation` entry points.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/quantize/affine.hpp"
#include "quanto/quantize/axis.hpp"
#include "quanto/quantize/checks.hpp"
#include "quanto/quantize/group.hpp"
#include "quanto/quantize/optimizers.hpp"
#include "quanto/quantize/packing.hpp"
#include "quanto/quantize/symmetric.hpp"

QUANTO_BEGIN_NAMESPACE

/// Holder templates: `owned<X>` owns its elements, `borrowed<X>` views someone else's.
template <class X>
using owned = tensor<X>;
template <class X>
using borrowed = tensor_view<const X>;

namespace detail {
template <class X>
tensor_view<const X> as_view(const tensor<X>& t) {
  return t.view();
}
template <class X>
tensor_view<const X> as_view(tensor_view<const X> t) {
  return t;
}
}  // namespace detail

// ---- 8-bit weights ----------------------------------------------------------------------------------

/// An 8-bit weight (quanto's WeightQBytesTensor): `data` holds int8 or fp8 codes in the weight's
/// shape, `scale` the model-dtype scale ([out,1,..] for axis 0, [1,..,in] for axis -1, [] per
/// tensor). File keys: `weight._data`, `weight._scale`.
template <ByteQType Q, ModelFloat T, template <class> class Holder = owned>
struct basic_qbytes_weight {
  using qtype = Q;
  using model_type = T;
  Holder<typename Q::storage> data;
  Holder<T> scale;
  qaxis axis = qaxis::first;

  const quanto::shape& shape() const noexcept { return data.shape(); }

  /// Checks that the parts fit together (throws shape_error): used when parts come from a file.
  void validate() const {
    detail::require_shape(scale.shape(), map_params(data.shape(), axis).param_shape, "weight._scale");
  }
  /// `scale * data` in the model dtype.
  tensor<T> dequantize(kernels::parallel_options par = {}) const {
    return dequantize_symmetric<Q, T>(detail::as_view(data), axis, detail::as_view(scale), par);
  }
  /// The same values written into `out` (the weight's element count; no allocation).
  void dequantize_into(tensor_view<T> out, kernels::parallel_options par = {}) const {
    dequantize_symmetric_into<Q, T>(detail::as_view(data), axis, detail::as_view(scale), out, par);
  }
  /// A non-owning view of this weight.
  basic_qbytes_weight<Q, T, borrowed> view() const { return {detail::as_view(data), detail::as_view(scale), axis}; }
};
template <ByteQType Q, ModelFloat T>
using qbytes_weight = basic_qbytes_weight<Q, T, owned>;
template <ByteQType Q, ModelFloat T>
using qbytes_weight_view = basic_qbytes_weight<Q, T, borrowed>;

// ---- 2/4-bit weights --------------------------------------------------------------------------------

/// A 2/4-bit weight (quanto's WeightQBitsTensor): `packed` holds the planar-packed codes of the
/// grouped weight (file key `weight._data._data`), `scale` and `shift` one value per group
/// (`weight._scale`, `weight._shift`). `Shift` is the model dtype (float shift, subtracted at
/// dequantization) or uint8 (integer zero-point). The group size is not in quanto's files: it
/// is recomputed from the weight shape (`default_group_size`).
template <LowBitQType Q, ModelFloat T, template <class> class Holder = owned, class Shift = T>
struct basic_qbits_weight {
  static_assert(std::is_same_v<Shift, T> || std::is_same_v<Shift, std::uint8_t>,
                "quanto: the shift of a qint2/qint4 weight is the model dtype or a uint8 zero-point");
  using qtype = Q;
  using model_type = T;
  using shift_type = Shift;
  Holder<std::uint8_t> packed;
  Holder<T> scale;
  Holder<Shift> shift;
  quanto::shape original_shape;
  qaxis axis = qaxis::first;
  std::optional<std::int64_t> group_size;

  const quanto::shape& shape() const noexcept { return original_shape; }

  /// The shape of the unpacked codes: grouped, or the weight's own when ungrouped.
  quanto::shape codes_shape() const {
    return group_size ? grouped_shape(original_shape, axis, *group_size) : original_shape;
  }
  void validate() const {
    const quanto::shape cs = codes_shape();
    detail::require_shape(packed.shape(), packed_shape(cs, Q::bits), "weight._data._data");
    (void)broadcast_params(cs, scale.shape());
    detail::require_shape(shift.shape(), scale.shape(), "weight._shift");
  }
  /// The unsigned codes, in the grouped shape.
  tensor<std::uint8_t> unpack() const { return quanto::unpack(detail::as_view(packed), Q::bits, codes_shape()); }
  /// `scale * q - shift` (or `scale * (q - zero_point)`), ungrouped to the weight's shape.
  tensor<T> dequantize(kernels::parallel_options par = {}) const {
    tensor<T> dq(original_shape);
    dequantize_into(dq.mutable_view(), par);
    return dq;
  }
  /// The same values written into `out` (the weight's element count, in its flat order; no
  /// allocation unless the groups run along the last axis, which need a regrouping copy).
  void dequantize_into(tensor_view<T> out, kernels::parallel_options par = {}) const {
    const quanto::shape cs = codes_shape();
    if (!group_size || axis == qaxis::first) {  // axis-0 groups are a plain reshape of the weight
      dequantize_packed_into<T, Shift>(detail::as_view(packed), Q::bits, cs, detail::as_view(scale),
                                       detail::as_view(shift), out, par);
      return;
    }
    detail::require_numel(out.numel(), original_shape.numel(), "the dequantized output");
    tensor<T> dq(cs);
    dequantize_packed_into<T, Shift>(detail::as_view(packed), Q::bits, cs, detail::as_view(scale),
                                     detail::as_view(shift), dq.mutable_view(), par);
    const tensor<T> w = ungroup(dq.view(), axis, *group_size, original_shape);
    std::copy(w.begin(), w.end(), out.begin());
  }
  basic_qbits_weight<Q, T, borrowed, Shift> view() const {
    return {detail::as_view(packed), detail::as_view(scale), detail::as_view(shift), original_shape, axis, group_size};
  }
};
template <LowBitQType Q, ModelFloat T, class Shift = T>
using qbits_weight = basic_qbits_weight<Q, T, owned, Shift>;
template <LowBitQType Q, ModelFloat T, class Shift = T>
using qbits_weight_view = basic_qbits_weight<Q, T, borrowed, Shift>;

// ---- activations ------------------------------------------------------------------------------------

/// A quantized activation (quanto's ActivationQBytesTensor): 8-bit codes and one scale.
template <ByteQType Q, ModelFloat T, template <class> class Holder = owned>
struct basic_qactivation {
  using qtype = Q;
  using model_type = T;
  Holder<typename Q::storage> data;
  T scale;

  tensor<T> dequantize() const {
    const T s[1] = {scale};
    return dequantize_symmetric<Q, T>(detail::as_view(data), qaxis::none, tensor_view<const T>(s, quanto::shape{}));
  }
};
template <ByteQType Q, ModelFloat T>
using qactivation = basic_qactivation<Q, T, owned>;

// ---- schemes ----------------------------------------------------------------------------------------

/// Options common to every quantizer.
struct quantize_options {
  nonfinite_policy nonfinite = nonfinite_policy::reject;
  /// The threads the quantizer may use (core/parallel.hpp; 0 = all). The result does not
  /// depend on them.
  kernels::parallel_options parallel = {};
};

template <QType Q>
using default_scheme_t = std::conditional_t<(Q::bits == 8), symmetric, group_affine<>>;

namespace detail {
template <class S>
struct is_scheme : std::false_type {};
template <>
struct is_scheme<symmetric> : std::true_type {};
template <bool Z>
struct is_scheme<group_affine<Z>> : std::true_type {};
template <class>
inline constexpr bool dependent_false = false;
}  // namespace detail

/// A quantization scheme policy: `symmetric` or `group_affine<ZeroPoint>`.
template <class S>
concept Scheme = detail::is_scheme<S>::value;

namespace detail {
template <class S>
inline constexpr bool uses_zero_point = false;
template <>
inline constexpr bool uses_zero_point<group_affine<true>> = true;

template <class Q, class T, class S, bool Byte = ByteQType<Q>>
struct qweight_type {
  using type = qbytes_weight<Q, T>;
};
template <class Q, class T, class S>
struct qweight_type<Q, T, S, false> {
  using type = qbits_weight<Q, T, std::conditional_t<uses_zero_point<S>, std::uint8_t, T>>;
};
}  // namespace detail

/// The weight type `quantize_weight<Q>(w, scheme)` returns.
template <QType Q, ModelFloat T, Scheme S>
using qweight_t = typename detail::qweight_type<Q, T, S>::type;

/// Quantizes a weight as optimum-quanto's modules do (`quantize_weight(w, qtype, axis=0, scale,
/// shift, group_size, optimized=False)` after the optimizer), bit for bit. `Q` is the qtype;
/// the scheme and the optimizer are policy values; a mismatched combination fails to compile
/// with a message saying why.
template <QType Q, ModelFloat T, Scheme S = default_scheme_t<Q>, class Optimizer = default_optimizer_t<Q>>
qweight_t<Q, T, S> quantize_weight(tensor_view<const T> w, const S& scheme = {}, const Optimizer& optimizer = {},
                                   quantize_options options = {}) {
  if constexpr (ByteQType<Q> && S::is_affine) {
    static_assert(detail::dependent_false<Q>,
                  "quanto: 8-bit qtypes (qint8, qfloat8*) are quantized with a symmetric scheme; "
                  "group_affine needs qint2 or qint4");
  } else if constexpr (LowBitQType<Q> && !S::is_affine) {
    static_assert(detail::dependent_false<Q>,
                  "quanto: qint2 and qint4 are quantized with a group_affine scheme (scale and shift); "
                  "a symmetric scheme needs qint8 or a qfloat8 type");
  } else if constexpr (!OptimizerFor<Optimizer, Q>) {
    static_assert(detail::dependent_false<Q>,
                  "quanto: this optimizer does not fit this qtype: absmax_optimizer is symmetric "
                  "(8-bit qtypes only), max_optimizer and hqq_optimizer are affine (qint2/qint4 only)");
  } else {
    // absmax and max propagate any NaN/Inf of their group into its scale, so a finite scale
    // vouches for its group: their inputs are scanned only when some scale is not finite (which
    // also happens when max - min overflows), saving a pass over the weight. HQQ scans first.
    constexpr bool scale_vouches =
        std::is_same_v<Optimizer, absmax_optimizer> || std::is_same_v<Optimizer, max_optimizer>;
    const bool reject = options.nonfinite == nonfinite_policy::reject;
    if (reject && !scale_vouches) detail::require_finite(w, "the weight");
    const auto check_scale = [&](const auto& scale) {
      if (reject && scale_vouches && !detail::all_finite(scale.view())) detail::require_finite(w, "the weight");
    };
    if constexpr (ByteQType<Q>) {
      const qaxis axis = effective_axis(w.shape(), scheme.axis);
      if constexpr (std::is_same_v<Optimizer, absmax_optimizer>) {
        // per row with the vector code on: scale and codes in one pass (the scalar reference keeps
        // the two quanto calls below)
        if (axis == qaxis::first && kernels::quantize_dispatch::enabled()) {
          qbytes_weight<Q, T> q;
          q.axis = axis;
          quantize_absmax_rows<Q>(w, q.scale, q.data, options.parallel);
          check_scale(q.scale);
          return q;
        }
      }
      tensor<T> scale = optimizer.template operator()<Q>(w, axis, options.parallel);
      check_scale(scale);
      tensor<typename Q::storage> data = quantize_symmetric<Q>(w, axis, scale.view(), options.parallel);
      return qbytes_weight<Q, T>{std::move(data), std::move(scale), axis};
    } else {
      if (w.rank() < 2) throw shape_error("a qint2/qint4 weight needs rank >= 2, got shape " + w.shape().to_string());
      std::optional<std::int64_t> gs;
      if (scheme.axis == qaxis::none)
        throw shape_error("group_affine keeps its parameters along axis 0 or -1, not per tensor");
      if (scheme.group_size == auto_group)
        gs = default_group_size(w.shape());
      else if (scheme.group_size > 0)
        gs = scheme.group_size;
      else if (scheme.group_size != no_group)
        throw shape_error("invalid group size " + std::to_string(scheme.group_size));
      tensor<T> grouped_storage;
      tensor_view<const T> base = w;
      if (gs) {
        if (scheme.axis == qaxis::first) {
          detail::check_grouping(w.shape(), scheme.axis, *gs);
          base = w.reshape(grouped_shape(w.shape(), scheme.axis, *gs));
        } else {
          grouped_storage = group(w, scheme.axis, *gs);
          base = grouped_storage.view();
        }
      }
      scale_shift<T> ss = optimizer.template operator()<Q>(base, scheme.axis, options.parallel);
      check_scale(ss.scale);
      using result_t = qweight_t<Q, T, S>;
      if constexpr (detail::uses_zero_point<S>) {
        tensor<std::uint8_t> zp = to_zero_point<Q, T>(ss.scale.view(), ss.shift.view());
        tensor<std::uint8_t> codes = quantize_affine<Q>(base, ss.scale.view(), zp.view(), options.parallel);
        return result_t{pack(codes.view(), Q::bits), std::move(ss.scale), std::move(zp), w.shape(), scheme.axis, gs};
      } else {
        tensor<std::uint8_t> codes = quantize_affine<Q>(base, ss.scale.view(), ss.shift.view(), options.parallel);
        return result_t{
            pack(codes.view(), Q::bits), std::move(ss.scale), std::move(ss.shift), w.shape(), scheme.axis, gs};
      }
    }
  }
}

/// quanto's `absmax_scale(t, qtype, axis=None)`: the per-tensor scale calibration uses.
template <ByteQType Q, ModelFloat T>
T activation_scale(tensor_view<const T> t) {
  return absmax_scale<Q>(t, qaxis::none)[0];
}

/// quanto's `quantize_activation(t, qtype, scale)`: per tensor, 8-bit qtypes only.
template <ByteQType Q, ModelFloat T>
qactivation<Q, T> quantize_activation(tensor_view<const T> t, T scale, quantize_options options = {}) {
  if (options.nonfinite == nonfinite_policy::reject) detail::require_finite(t, "the activation");
  const T s[1] = {scale};
  return {quantize_symmetric<Q>(t, qaxis::none, tensor_view<const T>(s, shape{}), options.parallel), scale};
}

QUANTO_END_NAMESPACE

QUANTO_BEGIN_NAMESPACE

/// Convenience overload for an owning tensor.
template <QType Q, ModelFloat T, Scheme S = default_scheme_t<Q>, class Optimizer = default_optimizer_t<Q>>
qweight_t<Q, T, S> quantize_weight(const tensor<T>& w, const S& scheme = {}, const Optimizer& optimizer = {},
                                   quantize_options options = {}) {
  return quantize_weight<Q, T, S, Optimizer>(w.view(), scheme, optimizer, options);
}

QUANTO_END_NAMESPACE
