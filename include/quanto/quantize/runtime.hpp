// quanto/quantize/runtime.hpp: choosing qtype, model dtype, optimizer and scheme at run time
// (from a file or a command line). One dispatch point maps a run-time description onto the same
// template instantiations the compile-time API uses; there is no second implementation.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/quantize/optimizers.hpp"
#include "quanto/quantize/qtensor.hpp"

QUANTO_BEGIN_NAMESPACE

/// Parses an optimizer name ("absmax", "max" or "hqq"; unknown: unsupported_error).
inline optimizer_id optimizer_from_name(std::string_view name) {
  if (auto id = find_optimizer(name)) return *id;
  throw unsupported_error("unknown optimizer '" + std::string(name) + "' (expected " + optimizer_names() + ")");
}

/// How to quantize a weight, as run-time values. Unset fields take quanto's defaults.
struct weight_spec {
  qtype_id qtype = qtype_id::qint8;
  std::optional<optimizer_id> optimizer;  ///< default: absmax for 8-bit, max for qint2/qint4
  qaxis axis = qaxis::first;
  std::int64_t group_size = auto_group;  ///< qint2/qint4 only: auto_group, no_group or a size
  bool zero_point = false;               ///< qint2/qint4 only: uint8 zero-point shift
  hqq_optimizer hqq{};                   ///< parameters when optimizer == hqq
  quantize_options options{};
};

/// A float tensor of any model dtype, viewed.
using any_float_view = std::variant<tensor_view<const float>, tensor_view<const float16>, tensor_view<const bfloat16>>;

namespace detail {
template <class Q, class T, bool Byte = ByteQType<Q>>
struct qweight_alternatives_of {
  using type = type_list<qbytes_weight<Q, T>>;
};
template <class Q, class T>
struct qweight_alternatives_of<Q, T, false> {
  using type = type_list<qbits_weight<Q, T>, qbits_weight<Q, T, std::uint8_t>>;
};

template <class T, class List>
struct per_dtype_of;
template <class T, class... Q>
struct per_dtype_of<T, type_list<Q...>> {
  using type = concat_t<typename qweight_alternatives_of<Q, T>::type...>;
};
template <class T>
using per_dtype = typename per_dtype_of<T, qtypes>::type;
}  // namespace detail

/// Any quantized weight: every qtype × model dtype (× float shift / zero-point for qint2/qint4).
using any_qweight =
    variant_of_t<concat_t<detail::per_dtype<float>, detail::per_dtype<float16>, detail::per_dtype<bfloat16>>>;

/// Throws unsupported_error when the spec combines things quanto does not (the run-time twin of
/// the compile-time checks in `quantize_weight`).
inline void validate(const weight_spec& spec) {
  const qtype_info q = info_of(spec.qtype);
  const optimizer_id opt = spec.optimizer.value_or(q.bits == 8 ? optimizer_id::absmax : optimizer_id::max);
  if (q.bits == 8) {
    if (opt != optimizer_id::absmax)
      throw unsupported_error(std::string("the ") + std::string(to_string(opt)) +
                              " optimizer is affine and quantizes qint2/qint4 only, not " + std::string(q.name));
    if (spec.zero_point) throw unsupported_error("a zero-point shift needs qint2 or qint4, not " + std::string(q.name));
    if (spec.group_size != auto_group && spec.group_size != no_group)
      throw unsupported_error("a group size cannot be specified for 8-bit qtypes (" + std::string(q.name) + ")");
  } else {
    if (opt == optimizer_id::absmax)
      throw unsupported_error("the absmax optimizer is symmetric and quantizes 8-bit qtypes only, not " +
                              std::string(q.name) + " (use max or hqq)");
    if (spec.axis == qaxis::none)
      throw unsupported_error(std::string(q.name) + " weights are quantized along axis 0 or -1");
  }
}

/// Quantizes `w` as `spec` says. The result holds the concrete weight type.
inline any_qweight quantize_weight(any_float_view w, const weight_spec& spec) {
  validate(spec);
  return std::visit(
      [&]<class T>(tensor_view<const T> view) -> any_qweight {
        return visit_qtype(spec.qtype, [&]<class Q>(Q) -> any_qweight {
          if constexpr (ByteQType<Q>) {
            return quantize_weight<Q>(view, symmetric{spec.axis}, absmax_optimizer{}, spec.options);
          } else {
            const auto run = [&]<bool Z>(group_affine<Z> scheme) -> any_qweight {
              scheme.group_size = spec.group_size;
              scheme.axis = spec.axis;
              if (spec.optimizer == optimizer_id::hqq) return quantize_weight<Q>(view, scheme, spec.hqq, spec.options);
              return quantize_weight<Q>(view, scheme, max_optimizer{}, spec.options);
            };
            return spec.zero_point ? run(group_affine<true>{}) : run(group_affine<false>{});
          }
        });
      },
      w);
}

QUANTO_END_NAMESPACE
