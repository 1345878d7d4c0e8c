// quanto/nn/state_dict.hpp: a module tree's tensors by name, in PyTorch's order, with the exact
// keys, dtypes and shapes optimum-quanto writes (`weight._data`, `weight._scale`, `weight._shift`,
// `weight._data._data`, `bias`, `input_scale`, `output_scale`). Tensors are held as dtype + shape +
// little-endian bytes, so that the file layer can write them as they are and read any of them back.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

/// A state dict that does not fit the module loading it: a missing or duplicate key, a tensor of
/// the wrong dtype, keys nobody reads (strict loading). Shapes that do not fit are shape_errors.
class state_dict_error : public format_error {
 public:
  using format_error::format_error;
};

/// One tensor of a state dict.
struct stored_tensor {
  quanto::dtype dtype{};
  quanto::shape shape;
  std::vector<std::byte> bytes;  ///< numel · size_of(dtype), row-major

  /// A copy of `t`'s elements.
  template <class X>
  static stored_tensor from(tensor_view<const X> t) {
    stored_tensor s{dtype_of<X>, t.shape(), std::vector<std::byte>(t.size() * sizeof(X))};
    if (!s.bytes.empty()) std::memcpy(s.bytes.data(), t.data(), s.bytes.size());
    return s;
  }
  template <class X>
  static stored_tensor from(const tensor<X>& t) {
    return from(t.view());
  }
  /// A 0-d tensor (quanto's `input_scale` / `output_scale`).
  template <class X>
  static stored_tensor scalar(X v) {
    return from(tensor_view<const X>(&v, quanto::shape{}));
  }

  /// The elements as a tensor of X; state_dict_error if X is not this tensor's dtype.
  template <class X>
  tensor<X> to(std::string_view key) const {
    if (dtype != dtype_of<X>)
      throw state_dict_error("state dict key '" + std::string(key) + "' has dtype " + std::string(to_string(dtype)) +
                             ", expected " + std::string(to_string(dtype_of<X>)));
    tensor<X> t(shape);
    if (bytes.size() != t.size() * sizeof(X))
      throw state_dict_error("state dict key '" + std::string(key) + "' holds " + std::to_string(bytes.size()) +
                             " bytes for shape " + shape.to_string());
    if (!bytes.empty()) std::memcpy(t.data(), bytes.data(), bytes.size());
    return t;
  }
  bool operator==(const stored_tensor&) const = default;
};

/// Keys in insertion order (PyTorch's: each module's own tensors, then its children's).
class state_dict {
 public:
  /// Adds `key`; a key already present is a state_dict_error.
  void insert(std::string key, stored_tensor t) {
    if (index_.count(key)) throw state_dict_error("duplicate state dict key '" + key + "'");
    index_.emplace(key, entries_.size());
    entries_.emplace_back(std::move(key), std::move(t));
  }
  const stored_tensor* find(std::string_view key) const {
    const auto it = index_.find(std::string(key));
    return it == index_.end() ? nullptr : &entries_[it->second].second;
  }
  bool contains(std::string_view key) const { return find(key) != nullptr; }
  const stored_tensor& at(std::string_view key) const {
    if (const stored_tensor* t = find(key)) return *t;
    throw state_dict_error("missing state dict key '" + std::string(key) + "'");
  }
  std::size_t size() const noexcept { return entries_.size(); }
  bool empty() const noexcept { return entries_.empty(); }
  auto begin() const noexcept { return entries_.begin(); }
  auto end() const noexcept { return entries_.end(); }
  /// Total bytes of the tensors.
  std::size_t nbytes() const noexcept {
    std::size_t n = 0;
    for (const auto& e : entries_) n += e.second.bytes.size();
    return n;
  }
  bool operator==(const state_dict& o) const { return entries_ == o.entries_; }

 private:
  std::vector<std::pair<std::string, stored_tensor>> entries_;
  std::map<std::string, std::size_t, std::less<>> index_;
};

/// What a load read and what it did not find (PyTorch's missing / unexpected keys).
struct load_result {
  std::vector<std::string> missing_keys;
  std::vector<std::string> unexpected_keys;
  bool ok() const noexcept { return missing_keys.empty() && unexpected_keys.empty(); }
};

/// The keys a load has read so far and those it looked for and did not find.
class load_context {
 public:
  explicit load_context(const state_dict& sd) : sd_(&sd) {}
  /// The tensor at `key`, marked as read; null (and recorded as missing) when absent.
  const stored_tensor* take(const std::string& key) {
    const stored_tensor* t = sd_->find(key);
    if (t)
      used_.insert(key);
    else
      missing_.push_back(key);
    return t;
  }
  /// Whether `key` is present, without reading it.
  bool has(const std::string& key) const { return sd_->contains(key); }
  load_result result() const {
    load_result r;
    r.missing_keys = missing_;
    for (const auto& [k, v] : *sd_)
      if (!used_.count(k)) r.unexpected_keys.push_back(k);
    return r;
  }

 private:
  const state_dict* sd_;
  std::set<std::string, std::less<>> used_;
  std::vector<std::string> missing_;
};

}  // namespace nn
QUANTO_END_NAMESPACE
