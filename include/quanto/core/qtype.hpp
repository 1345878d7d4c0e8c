// quanto/core/qtype.hpp: the quantized types (qint2/4/8, qfloat8 variants) as C++ types, their
// compile-time traits, and the run-time description used to select them by name.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "quanto/core/bfloat16.hpp"
#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/float16.hpp"
#include "quanto/core/float8.hpp"
#include "quanto/core/type_list.hpp"

QUANTO_BEGIN_NAMESPACE

/// A signed integer qtype of `Bits` bits, as optimum-quanto's `qint(bits)`:
/// qmin = -2^(bits-1), qmax = 2^(bits-1) - 1. Sub-byte qtypes (2 and 4 bits) store unsigned
/// affine codes in [0, 2^bits - 1], packed several to a byte (see quantize/packing.hpp); only
/// qint8 stores its codes as int8 directly.
template <int Bits>
struct qint {
  static_assert(Bits == 2 || Bits == 4 || Bits == 8, "quanto: qint supports 2, 4 or 8 bits");
  static constexpr int bits = Bits;
  static constexpr bool is_floating_point = false;
  /// The element type of the unpacked codes: int8 for qint8, uint8 codes for qint2/qint4.
  using storage = std::conditional_t<Bits == 8, std::int8_t, std::uint8_t>;
  using limit_type = int;
  static constexpr int qmin = -(1 << (Bits - 1));
  static constexpr int qmax = (1 << (Bits - 1)) - 1;
  /// The canonical name, as written in quanto_qmap.json.
  static constexpr std::string_view name = Bits == 2 ? "qint2" : Bits == 4 ? "qint4" : "qint8";
};

/// A float8 qtype over the number format `F8`: qmin/qmax are the format's finite extremes
/// (finfo.min / finfo.max in PyTorch).
template <class F8>
struct qfloat {
  static constexpr int bits = 8;
  static constexpr bool is_floating_point = true;
  using storage = F8;
  using limit_type = float;
  static constexpr float qmax = static_cast<float>(std::numeric_limits<F8>::max());
  static constexpr float qmin = -qmax;
  static constexpr std::string_view name = std::is_same_v<F8, float8_e4m3fn> ? "qfloat8_e4m3fn"
                                           : std::is_same_v<F8, float8_e5m2> ? "qfloat8_e5m2"
                                                                             : "qfloat8_e4m3fnuz";
};

using qint2 = qint<2>;
using qint4 = qint<4>;
using qint8 = qint<8>;
using qfloat8_e4m3fn = qfloat<float8_e4m3fn>;
using qfloat8_e5m2 = qfloat<float8_e5m2>;
using qfloat8_e4m3fnuz = qfloat<float8_e4m3fnuz>;
/// `qfloat8` is the same type as `qfloat8_e4m3fn`, as in optimum-quanto (its name is
/// "qfloat8_e4m3fn": files never say "qfloat8").
using qfloat8 = qfloat8_e4m3fn;

/// Every qtype, in the order of `qtype_id`: the one list from which the ids, the names, the
/// run-time dispatch (`visit_qtype`), `all_qtypes` and the variants of quantized tensors and
/// activations are derived. A new qtype is an entry here and its `qtype_id` enumerator.
using qtypes = type_list<qint2, qint4, qint8, qfloat8_e4m3fn, qfloat8_e5m2, qfloat8_e4m3fnuz>;

namespace detail {
template <class T>
struct is_qtype : std::false_type {};
template <int B>
struct is_qtype<qint<B>> : std::true_type {};
template <class F>
struct is_qtype<qfloat<F>> : std::true_type {};
}  // namespace detail

/// A quantized type. Only the six qtypes above model it: the numerics of each are pinned to
/// optimum-quanto's, so user-defined qtypes would have no reference to be exact against.
template <class Q>
concept QType = detail::is_qtype<std::remove_cv_t<Q>>::value;

/// qint2 / qint4: quantized with a group-wise affine scheme (scale + shift), packed codes.
template <class Q>
concept LowBitQType = QType<Q> &&(Q::bits < 8);

/// qint8 and the qfloat8 types: quantized with a symmetric scheme (scale only).
template <class Q>
concept ByteQType = QType<Q> &&(Q::bits == 8);

template <class Q>
concept FloatQType = QType<Q> && Q::is_floating_point;

template <class Q>
concept IntegerQType = QType<Q> && !Q::is_floating_point;

/// The float types a model (its weights, scales and shifts) can be in: float32, float16,
/// bfloat16. Every scale and shift is computed in this type with PyTorch's rounding steps.
template <class T>
concept ModelFloat = std::is_same_v<T, float> || std::is_same_v<T, float16> || std::is_same_v<T, bfloat16>;

/// The run-time `dtype` of a C++ element type.
template <class T>
inline constexpr dtype dtype_of = [] {
  if constexpr (std::is_same_v<T, float>)
    return dtype::f32;
  else if constexpr (std::is_same_v<T, double>)
    return dtype::f64;
  else if constexpr (std::is_same_v<T, float16>)
    return dtype::f16;
  else if constexpr (std::is_same_v<T, bfloat16>)
    return dtype::bf16;
  else if constexpr (std::is_same_v<T, float8_e4m3fn>)
    return dtype::f8_e4m3fn;
  else if constexpr (std::is_same_v<T, float8_e5m2>)
    return dtype::f8_e5m2;
  else if constexpr (std::is_same_v<T, float8_e4m3fnuz>)
    return dtype::f8_e4m3fnuz;
  else if constexpr (std::is_same_v<T, std::int8_t>)
    return dtype::i8;
  else if constexpr (std::is_same_v<T, std::uint8_t>)
    return dtype::u8;
  else if constexpr (std::is_same_v<T, std::int16_t>)
    return dtype::i16;
  else if constexpr (std::is_same_v<T, std::uint16_t>)
    return dtype::u16;
  else if constexpr (std::is_same_v<T, std::int32_t>)
    return dtype::i32;
  else if constexpr (std::is_same_v<T, std::uint32_t>)
    return dtype::u32;
  else if constexpr (std::is_same_v<T, std::int64_t>)
    return dtype::i64;
  else if constexpr (std::is_same_v<T, std::uint64_t>)
    return dtype::u64;
  else
    static_assert(sizeof(T) == 0, "quanto: no dtype for this element type");
}();

// ---- run time ---------------------------------------------------------------------------------------

/// The qtypes, as a run-time value (for files and command lines).
enum class qtype_id : std::uint8_t { qint2, qint4, qint8, qfloat8_e4m3fn, qfloat8_e5m2, qfloat8_e4m3fnuz };

/// What optimum-quanto's `qtype` dataclass holds, as a run-time value.
struct qtype_info {
  qtype_id id;
  std::string_view name;  ///< canonical, as in quanto_qmap.json
  int bits;
  bool is_floating_point;
  double qmin;
  double qmax;
  dtype storage;  ///< the element type of the unpacked codes
};

template <QType Q>
constexpr qtype_id id_of() noexcept {
  return static_cast<qtype_id>(index_of_v<std::remove_cv_t<Q>, qtypes>);
}

template <QType Q>
constexpr qtype_info info_of() noexcept {
  return {id_of<Q>(),
          Q::name,
          Q::bits,
          Q::is_floating_point,
          static_cast<double>(Q::qmin),
          static_cast<double>(Q::qmax),
          dtype_of<typename Q::storage>};
}

/// Calls `f(Q{})` with the qtype type that `id` names: the one bridge from run time to compile
/// time. Returns what `f` returns (the same type for every qtype).
template <class F>
constexpr decltype(auto) visit_qtype(qtype_id id, F&& f) {
  const auto i = static_cast<std::size_t>(id);
  if (i >= qtypes::size) throw unsupported_error("invalid qtype id");
  return visit_type_at<qtypes>(i, std::forward<F>(f));
}

constexpr qtype_info info_of(qtype_id id) {
  return visit_qtype(id, []<class Q>(Q) { return info_of<Q>(); });
}

/// All qtypes, in a fixed order (tests and benchmarks iterate it).
inline constexpr auto all_qtypes = []<class... Q>(type_list<Q...>) {
  return std::array<qtype_id, sizeof...(Q)>{id_of<Q>()...};
}(qtypes{});

// qtype_id's enumerators are the positions in `qtypes` (the enum cannot be generated; this keeps the two in step).
static_assert(all_qtypes.size() == 6 && id_of<qint2>() == qtype_id::qint2 && id_of<qint4>() == qtype_id::qint4 &&
                  id_of<qint8>() == qtype_id::qint8 && id_of<qfloat8_e4m3fn>() == qtype_id::qfloat8_e4m3fn &&
                  id_of<qfloat8_e5m2>() == qtype_id::qfloat8_e5m2 &&
                  id_of<qfloat8_e4m3fnuz>() == qtype_id::qfloat8_e4m3fnuz,
              "quanto: qtype_id and the qtypes list must name the same qtypes in the same order");

/// The names a qtype can be given, for messages: "qint2, qint4, qint8, qfloat8, qfloat8_e4m3fn, ...".
inline std::string qtype_names(std::string_view last_separator = ", ") {
  std::string out;
  std::size_t i = 0;
  const std::size_t n = all_qtypes.size() + 1;  // + the alias "qfloat8"
  auto add = [&](std::string_view name) {
    if (i != 0) out += (i + 1 == n) ? last_separator : std::string_view(", ");
    out += name;
    ++i;
  };
  for (qtype_id id : all_qtypes) {
    if (id == qtype_id::qfloat8_e4m3fn) add("qfloat8");
    add(info_of(id).name);
  }
  return out;
}

/// Looks a qtype up by name as optimum-quanto's `qtypes` dict does: the canonical names plus the
/// alias "qfloat8" (= qfloat8_e4m3fn). nullopt when unknown.
constexpr std::optional<qtype_id> find_qtype(std::string_view name) noexcept {
  if (name == "qfloat8") return qtype_id::qfloat8_e4m3fn;
  for (qtype_id id : all_qtypes)
    if (info_of(id).name == name) return id;
  return std::nullopt;
}

/// As `find_qtype`, but an unknown name is an `unsupported_error` listing the valid names.
inline qtype_id qtype_from_name(std::string_view name) {
  if (auto id = find_qtype(name)) return *id;
  throw unsupported_error("unknown qtype '" + std::string(name) + "' (expected one of " + qtype_names() + ")");
}

constexpr std::string_view to_string(qtype_id id) { return info_of(id).name; }

QUANTO_END_NAMESPACE
