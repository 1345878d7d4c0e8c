// quanto/core/type_list.hpp: a compile-time list of types and the few operations the library
// derives its tables from (the qtypes, the ISAs, the variants of quantized tensors).
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>
#include <variant>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE

template <class... Ts>
struct type_list {
  static constexpr std::size_t size = sizeof...(Ts);
};

namespace detail {

template <class... Lists>
struct concat;
template <>
struct concat<> {
  using type = type_list<>;
};
template <class... A>
struct concat<type_list<A...>> {
  using type = type_list<A...>;
};
template <class... A, class... B, class... Rest>
struct concat<type_list<A...>, type_list<B...>, Rest...> {
  using type = typename concat<type_list<A..., B...>, Rest...>::type;
};

template <class List>
struct as_variant;
template <class... A>
struct as_variant<type_list<A...>> {
  using type = std::variant<A...>;
};

template <std::size_t I, class List>
struct at;
template <std::size_t I, class Head, class... Tail>
struct at<I, type_list<Head, Tail...>> : at<I - 1, type_list<Tail...>> {};
template <class Head, class... Tail>
struct at<0, type_list<Head, Tail...>> {
  using type = Head;
};

template <class T, class List>
struct index_of;
template <class T, class... Ts>
struct index_of<T, type_list<Ts...>> {
  static constexpr std::size_t value = [] {
    std::size_t i = 0;
    (void)((std::is_same_v<T, Ts> ? false : (++i, true)) && ...);  // stops at the first match
    return i;
  }();
  static_assert(value < sizeof...(Ts), "quanto: the type is not in the list");
};

template <std::size_t I, class List, class F>
constexpr decltype(auto) visit_type_from(std::size_t i, F&& f) {
  if constexpr (I + 1 < List::size) {
    if (i != I) return visit_type_from<I + 1, List>(i, std::forward<F>(f));
  }
  return std::forward<F>(f)(typename at<I, List>::type{});
}

}  // namespace detail

/// The list's elements, concatenated.
template <class... Lists>
using concat_t = typename detail::concat<Lists...>::type;
/// `std::variant` of the list's elements.
template <class List>
using variant_of_t = typename detail::as_variant<List>::type;
/// The `I`-th element.
template <std::size_t I, class List>
using type_at_t = typename detail::at<I, List>::type;
/// The position of `T` in the list (a compile error when absent).
template <class T, class List>
inline constexpr std::size_t index_of_v = detail::index_of<T, List>::value;

/// Calls `f(T{})` with the `i`-th element `T` of `List` (a run-time index: the bridge from a run-time
/// id to a type); `i` must be below `List::size`. Returns what `f` returns (the same type for each).
template <class List, class F>
constexpr decltype(auto) visit_type_at(std::size_t i, F&& f) {
  static_assert(List::size > 0, "quanto: visit_type_at on an empty list");
  return detail::visit_type_from<0, List>(i, std::forward<F>(f));
}

/// Calls `f(T{})` for each element, in order.
template <class... Ts, class F>
constexpr void for_each_type(type_list<Ts...>, F&& f) {
  (f(Ts{}), ...);
}

QUANTO_END_NAMESPACE
