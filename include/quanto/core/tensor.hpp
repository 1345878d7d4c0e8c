// quanto/core/tensor.hpp: dense row-major tensors: an owning `tensor<T>` on 64-byte aligned
// storage and a non-owning `tensor_view<T>` over memory that lives elsewhere (a mapped file,
// another engine's buffer), used in place.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <type_traits>
#include <utility>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/shape.hpp"

QUANTO_BEGIN_NAMESPACE

/// A non-owning view of a dense row-major tensor. `T` may be const. Cheap to copy.
template <class T>
class tensor_view {
 public:
  using value_type = std::remove_cv_t<T>;
  using element_type = T;

  constexpr tensor_view() noexcept = default;
  /// Views `data` as a tensor of shape `s`; `data.size()` must equal `s.numel()`.
  constexpr tensor_view(std::span<T> data, quanto::shape s) : data_(data), shape_(s) {
    if (static_cast<std::int64_t>(data.size()) != s.numel())
      throw shape_error("a buffer of " + std::to_string(data.size()) + " elements cannot be viewed as shape " +
                        s.to_string());
  }
  constexpr tensor_view(T* data, quanto::shape s)
      : tensor_view(std::span<T>(data, static_cast<std::size_t>(s.numel())), s) {}
  /// A view of const elements converts from a view of mutable ones.
  template <class U>
  // NOLINTNEXTLINE(google-explicit-constructor)
  requires(std::is_const_v<T>&& std::is_same_v<std::remove_const_t<T>, U>) constexpr tensor_view(
      tensor_view<U> other) noexcept
      : data_(other.span()), shape_(other.shape()) {}

  constexpr const quanto::shape& shape() const noexcept { return shape_; }
  constexpr std::int64_t numel() const noexcept { return shape_.numel(); }
  constexpr std::size_t size() const noexcept { return data_.size(); }
  constexpr std::size_t rank() const noexcept { return shape_.rank(); }
  constexpr T* data() const noexcept { return data_.data(); }
  constexpr std::span<T> span() const noexcept { return data_; }
  constexpr T& operator[](std::size_t i) const noexcept { return data_[i]; }
  constexpr T* begin() const noexcept { return data_.data(); }
  constexpr T* end() const noexcept { return data_.data() + data_.size(); }

  /// The same elements under another shape with the same element count.
  constexpr tensor_view reshape(quanto::shape s) const { return tensor_view(data_, s); }

 private:
  std::span<T> data_{};
  quanto::shape shape_{};
};

namespace detail {
struct aligned_free {
  void operator()(void* p) const noexcept { ::operator delete (p, std::align_val_t{QUANTO_BUFFER_ALIGNMENT}); }
};
}  // namespace detail

/// An owning dense row-major tensor of trivially copyable elements, on storage aligned to
/// QUANTO_BUFFER_ALIGNMENT (64) bytes whatever the build flags. Copies are deep.
/// New tensors are zero-filled.
template <class T>
class tensor {
  static_assert(std::is_trivially_copyable_v<T> && !std::is_const_v<T>,
                "quanto: tensor<T> holds trivially copyable, non-const elements");

 public:
  using value_type = T;

  /// An empty tensor: shape [0], no elements (not a rank-0 scalar, which has one element).
  tensor() : shape_{0} {}
  explicit tensor(quanto::shape s) : shape_(s), data_(allocate(s.numel())) {}
  tensor(quanto::shape s, std::span<const T> values) : tensor(s) {
    if (static_cast<std::int64_t>(values.size()) != s.numel())
      throw shape_error(std::to_string(values.size()) + " values do not fill shape " + s.to_string());
    if (!values.empty()) std::memcpy(data_.get(), values.data(), values.size_bytes());
  }
  /// A deep copy of a view.
  explicit tensor(tensor_view<const T> v) : tensor(v.shape(), v.span()) {}

  tensor(const tensor& o) : tensor(o.view()) {}
  tensor& operator=(const tensor& o) {
    if (this != &o) *this = tensor(o);
    return *this;
  }
  tensor(tensor&&) noexcept = default;
  tensor& operator=(tensor&&) noexcept = default;

  const quanto::shape& shape() const noexcept { return shape_; }
  std::int64_t numel() const noexcept { return shape_.numel(); }
  std::size_t size() const noexcept { return static_cast<std::size_t>(shape_.numel()); }
  std::size_t rank() const noexcept { return shape_.rank(); }
  T* data() noexcept { return data_.get(); }
  const T* data() const noexcept { return data_.get(); }
  std::span<T> span() noexcept { return {data_.get(), size()}; }
  std::span<const T> span() const noexcept { return {data_.get(), size()}; }
  T& operator[](std::size_t i) noexcept { return data_.get()[i]; }
  const T& operator[](std::size_t i) const noexcept { return data_.get()[i]; }
  T* begin() noexcept { return data(); }
  T* end() noexcept { return data() + size(); }
  const T* begin() const noexcept { return data(); }
  const T* end() const noexcept { return data() + size(); }

  /// A read-only view (what the quantizers take).
  tensor_view<const T> view() const noexcept { return {span(), shape_}; }
  /// A writable view.
  tensor_view<T> mutable_view() noexcept { return {span(), shape_}; }
  // a tensor is usable wherever its view is
  operator tensor_view<T>() noexcept { return mutable_view(); }      // NOLINT(google-explicit-constructor)
  operator tensor_view<const T>() const noexcept { return view(); }  // NOLINT(google-explicit-constructor)

  /// Changes the shape in place; the element count must not change.
  void reshape(quanto::shape s) {
    if (s.numel() != shape_.numel()) throw shape_error("cannot reshape " + shape_.to_string() + " to " + s.to_string());
    shape_ = s;
  }

 private:
  static std::unique_ptr<T, detail::aligned_free> allocate(std::int64_t n) {
    if (n == 0) return nullptr;
    if (static_cast<std::uint64_t>(n) > std::size_t(-1) / sizeof(T)) throw std::bad_alloc();
    const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(T);
    void* p = ::operator new (bytes, std::align_val_t{QUANTO_BUFFER_ALIGNMENT});
    std::memset(p, 0, bytes);
    return std::unique_ptr<T, detail::aligned_free>(static_cast<T*>(p));
  }

  quanto::shape shape_{};
  std::unique_ptr<T, detail::aligned_free> data_{};
};

QUANTO_END_NAMESPACE
