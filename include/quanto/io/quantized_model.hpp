// quanto/io/quantized_model.hpp: a quantized model folder read back: the checkpoint, its
// quanto_qmap.json, and each module's quantized weight (`weight(module, shape)` → `any_qweight`).
#pragma once

#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "quanto/core/bfloat16.hpp"
#include "quanto/core/config.hpp"
#include "quanto/core/dtype.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/float16.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/quantization_map.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/io/checkpoint_reader.hpp"
#include "quanto/io/qmap.hpp"
#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/text.hpp"
#include "quanto/quantize/axis.hpp"
#include "quanto/quantize/group.hpp"
#include "quanto/quantize/runtime.hpp"

QUANTO_BEGIN_NAMESPACE
namespace io {

/// A quantized model folder, as optimum-quanto's `save_pretrained` (or `quantize_model`) writes
/// it: the checkpoint and its quanto_qmap.json.
class quantized_model {
 private:
  // Declared before the public members: `weight` calls `copy<X>` from a generic lambda, and clang
  // does not emit a member template first declared after such a use (-Wundefined-inline, link error).
  quantized_model(checkpoint c, quantization_map_t q) : files_(std::move(c)), qmap_(std::move(q)) {}

  template <class X>
  tensor<X> copy(const std::string& name) const {
    const checkpoint::entry& e = files_.at(name);
    if (e.info->dtype != dtype_of<X>)
      throw dtype_error(name + " has dtype " + std::string(to_string(e.info->dtype)) + ", expected " +
                        std::string(to_string(dtype_of<X>)));
    if (e.info->shape.size() > shape::max_rank) throw shape_error(name + " has too many dimensions");
    tensor<X> t(shape(std::span<const std::int64_t>(e.info->shape)));
    const auto b = files_.bytes(e);
    if (!b.empty()) std::memcpy(t.data(), b.data(), b.size());
    return t;
  }

 public:
  /// Throws `file_error` when quanto_qmap.json is missing (as quanto's `from_pretrained` does),
  /// and the readers' typed errors.
  static quantized_model open(const std::filesystem::path& folder) {
    const auto qmap_path = folder / "quanto_qmap.json";
    std::error_code ec;
    if (!std::filesystem::exists(qmap_path, ec))
      throw file_error("model " + detail::quote_path(folder) + " has no quanto_qmap.json: it is not a quantized model",
                       qmap_path, std::make_error_code(std::errc::no_such_file_or_directory));
    return quantized_model(checkpoint::open(folder), read_qmap(qmap_path));
  }

  [[nodiscard]] const checkpoint& files() const noexcept { return files_; }
  [[nodiscard]] const quantization_map_t& qmap() const noexcept { return qmap_; }
  [[nodiscard]] const qmap_entry* find(std::string_view module) const noexcept {
    for (const auto& e : qmap_)
      if (e.name == module) return &e;
    return nullptr;
  }

  /// The quantized weight of `module`, copied out of the files. `weight_shape` is the shape of
  /// the float weight: qint2/qint4 files do not record it (quanto takes it from the module), and
  /// for 8-bit qtypes it is checked against `weight._data`. Throws `missing_tensor_error`,
  /// `dtype_error` or `shape_error` when the files do not hold that weight, `unsupported_error`
  /// for a module whose weights are not quantized or an integer zero-point shift.
  [[nodiscard]] any_qweight weight(std::string_view module, const shape& weight_shape) const {
    const qmap_entry* e = find(module);
    if (!e)
      throw missing_tensor_error("model " + detail::quote_path(files_.folder()) + ": module " + detail::quote(module) +
                                 " is not in quanto_qmap.json");
    if (e->weights == "none")
      throw unsupported_error("module " + detail::quote(module) + " has no quantized weight (weights: none)");
    const std::string m(module);
    const ::quanto::dtype t = files_.at(m + ".weight._scale").info->dtype;
    return visit_qtype(qtype_from_name(e->weights), [&]<class Q>(Q) -> any_qweight {
      const auto build = [&]<class T>() -> any_qweight {
        if constexpr (ByteQType<Q>) {
          qbytes_weight<Q, T> w{copy<typename Q::storage>(m + ".weight._data"), copy<T>(m + ".weight._scale"),
                                effective_axis(weight_shape, qaxis::first)};  // a one-row weight: per tensor
          if (w.data.shape() != weight_shape)
            throw shape_error(m + ".weight._data has shape " + w.data.shape().to_string() + ", the weight is " +
                              weight_shape.to_string());
          w.validate();
          return w;
        } else {
          if (files_.at(m + ".weight._shift").info->dtype != t)
            throw unsupported_error(m +
                                    ".weight._shift is not in the model dtype (an integer zero-point, written on "
                                    "Intel XPU, is not supported)");
          qbits_weight<Q, T> w{copy<std::uint8_t>(m + ".weight._data._data"),
                               copy<T>(m + ".weight._scale"),
                               copy<T>(m + ".weight._shift"),
                               weight_shape,
                               qaxis::first,
                               default_group_size(weight_shape)};
          w.validate();
          return w;
        }
      };
      switch (t) {
        case ::quanto::dtype::f32:
          return build.template operator()<float>();
        case ::quanto::dtype::f16:
          return build.template operator()<float16>();
        case ::quanto::dtype::bf16:
          return build.template operator()<bfloat16>();
        default:
          throw dtype_error(m + ".weight._scale has dtype " + std::string(to_string(t)) + ", not a model float dtype");
      }
    });
  }

 private:
  checkpoint files_;
  quantization_map_t qmap_;
};

}  // namespace io
QUANTO_END_NAMESPACE
