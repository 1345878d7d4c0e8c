// quanto/nn/gptq.hpp: calibrated weight quantization of a module tree: GPTQ as a calibrated pass
// of the `quantize` / `Calibration` workflow.
//
//   nn::quantize_calibrated(model, {.weights = qint4{}, .method = nn::gptq{}, .exclude = "pooler.*"},
//                           [&] { for (auto& batch : calibration) model.forward(batch); });
//   // the selected Linear / Conv2d leaves are now frozen QLinear / QConv2d holding GPTQ's weights
//
// GPTQ needs each layer's inputs, so it is not one of the weight-only `optimizers`: it is a
// calibrated method, a policy type (`nn::gptq`, with its `gptq_options`) picked at compile time or
// by name ("gptq") at run time, and `quantize_calibrated` runs it over any tree the library runs
// forward. The caller's `calibrate` callback runs the calibration forwards (any number of batches,
// any input shapes); while it runs, each selected leaf's slot holds a recorder that adds the leaf's
// inputs to its Hessian (`gptq_hessian`: the rows of a Linear's input, the im2col patches of a
// Conv2d's) and forwards to the leaf unchanged.
//
// `sequential` (the default, as the reference quantizes a transformer block by block): the leaves
// are taken in `named_modules` order, in stages of consecutive siblings (the same parent: a block's
// query/key/value share one pass); each stage is calibrated with every earlier stage already
// quantized, so later layers compensate what earlier ones lost. One `calibrate` call per stage.
// Otherwise one call collects every leaf's inputs from the float model.
//
// The result is exactly what `quantize` + `freeze` build, with other weight values: quanto's file
// layout and group size (its module rule), loadable by optimum-quanto's `from_pretrained`.
// Bad input: a selected leaf the calibration never reached is a state_error naming it (exclude it,
// or quantize it afterwards with `quantize`); NaN/Inf in an input is a value_error naming the
// module; either leaves the tree as it was before the failing stage. Fewer calibration rows than
// input features make the Hessian rank-deficient: dampening keeps it positive definite (logged as a
// warning naming the module), see gptq_options.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "quanto/core/config.hpp"
#include "quanto/core/error.hpp"
#include "quanto/core/log.hpp"
#include "quanto/core/qtype.hpp"
#include "quanto/core/tensor.hpp"
#include "quanto/kernels/conv2d.hpp"
#include "quanto/nn/functional.hpp"
#include "quanto/nn/layers.hpp"
#include "quanto/nn/qmodules.hpp"
#include "quanto/nn/quantize.hpp"
#include "quanto/nn/state_dict.hpp"
#include "quanto/nn/tree.hpp"
#include "quanto/quantize/gptq.hpp"

QUANTO_BEGIN_NAMESPACE
namespace nn {

/// The GPTQ method as a policy value: its parameters.
struct gptq {
  static constexpr std::string_view name = "gptq";
  gptq_options options{};
};

/// A calibrated method given as a policy value (`nn::gptq{}`) or by name ("gptq").
struct calibrated_method_arg {
  gptq method{};
  calibrated_method_arg() = default;
  calibrated_method_arg(gptq g) : method(g) {}    // NOLINT: implicit on purpose
  calibrated_method_arg(std::string_view name) {  // NOLINT
    if (name != gptq::name)
      throw unsupported_error("unknown calibrated method '" + std::string(name) + "' (expected " +
                              std::string(gptq::name) + ")");
  }
  calibrated_method_arg(const char* name) : calibrated_method_arg(std::string_view(name)) {}         // NOLINT
  calibrated_method_arg(const std::string& name) : calibrated_method_arg(std::string_view(name)) {}  // NOLINT
};

/// What `quantize_calibrated` quantizes, and how.
struct calibrated_spec {
  qtype_arg weights = {};  ///< required: the weight qtype (qint2, qint4, qint8, ...)
  calibrated_method_arg method = {};
  patterns include = {};   ///< as `quantize_spec`: only leaves whose name matches, when not empty
  patterns exclude = {};   ///< leaves whose name matches are left as they are
  bool sequential = true;  ///< stages of siblings, each calibrated on the model quantized so far
};

/// What happened to each quantized leaf.
struct calibrated_module_report {
  std::string name;
  std::int64_t samples = 0;   ///< calibration rows (tokens, or im2col patches)
  std::int64_t features = 0;  ///< input features (the Hessian's size)
  double damp = 0.0;          ///< the dampening λ used
  std::int64_t dead_features = 0;
  double seconds = 0.0;  ///< the quantization itself (not the calibration forwards)
};
struct calibrated_report {
  std::vector<calibrated_module_report> modules;
  int calibration_passes = 0;  ///< `calibrate` calls
  double seconds = 0.0;        ///< the whole call, calibration forwards included
};

namespace detail {

/// Holds a leaf while the calibration runs: adds its inputs to the Hessian, then runs it.
template <ModelFloat T>
class gptq_recorder final : public module<T> {
 public:
  gptq_recorder(std::unique_ptr<module<T>> inner, std::int64_t features, const std::string& name)
      : inner_(std::move(inner)), hessian_(features, name) {
    if (auto* n = dynamic_cast<node<Conv2d<T>>*>(inner_.get())) conv_ = &n->value();
  }
  activation<T> forward(activation<T> x) override {
    if (conv_) {
      const kernels::conv2d_geometry g = kernels::conv2d_shape(conv_->weight().shape(), x.shape(), conv_->params());
      f32_buffer<T> xf(x.value.view());
      std::vector<float> cols(static_cast<std::size_t>(g.pixels() * g.patch()));
      for (std::int64_t b = 0; b < g.batch; ++b) {
        functional::im2col_f32(xf.data() + b * g.channels * g.height * g.width, g, conv_->params(), cols.data());
        hessian_.add(cols.data(), g.pixels());
      }
    } else {
      hessian_.add(x.value.view());
    }
    return inner_->forward(std::move(x));
  }
  std::string_view kind() const noexcept override { return inner_->kind(); }
  const gptq_hessian& hessian() const noexcept { return hessian_; }
  std::unique_ptr<module<T>> release() { return std::move(inner_); }

 private:
  std::unique_ptr<module<T>> inner_;
  gptq_hessian hessian_;
  Conv2d<T>* conv_ = nullptr;
};

/// The float weight of a Linear / Conv2d leaf; null for any other module.
template <ModelFloat T>
const tensor<T>* calibrated_weight(module<T>& m) {
  if (auto* l = dynamic_cast<node<Linear<T>>*>(&m)) return &l->value().weight();
  if (auto* c = dynamic_cast<node<Conv2d<T>>*>(&m)) return &c->value().weight();
  return nullptr;
}

inline std::string parent_of(const std::string& name) {
  const auto dot = name.rfind('.');
  return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

/// The GPTQ weight as quanto's state-dict keys (what a frozen module's `save` writes).
template <class W>
state_dict quantized_weight_keys(const W& q) {
  state_dict sd;
  if constexpr (ByteQType<typename W::qtype>) {
    sd.insert("weight._data", stored_tensor::from(q.data));
    sd.insert("weight._scale", stored_tensor::from(q.scale));
  } else {
    sd.insert("weight._data._data", stored_tensor::from(q.packed));
    sd.insert("weight._scale", stored_tensor::from(q.scale));
    sd.insert("weight._shift", stored_tensor::from(q.shift));
  }
  return sd;
}

}  // namespace detail

/// Quantizes the selected Linear / Conv2d leaves of `model` with a calibrated method (see the file
/// comment), calling `calibrate` to run the calibration forwards. Returns what it did per leaf.
template <ModelFloat T>
calibrated_report quantize_calibrated(module<T>& model, const calibrated_spec& spec,
                                      const std::function<void()>& calibrate) {
  const auto start = std::chrono::steady_clock::now();
  if (!spec.weights.id) throw unsupported_error("quantize_calibrated: a weight qtype is required");
  if (!calibrate) throw value_error("quantize_calibrated: no calibration callback");
  const qtype_id weights = *spec.weights.id;
  const gptq_options& opt = spec.method.method.options;

  struct leaf {
    std::string name;
    slot<T>* holder;
    std::int64_t features;
  };
  std::vector<std::vector<leaf>> stages;
  std::string stage_parent;
  for (const named_module<T>& e : named_modules(model)) {
    if (!e.holder || e.target->quantized() || !selected({.include = spec.include, .exclude = spec.exclude}, e.name))
      continue;
    const tensor<T>* w = detail::calibrated_weight(*e.target);
    if (!w) continue;
    const std::int64_t features = w->numel() / w->shape()[0];
    const std::string parent = detail::parent_of(e.name);
    if (stages.empty() || !spec.sequential || parent != stage_parent) {
      if (stages.empty() || spec.sequential) stages.emplace_back();
      stage_parent = parent;
    }
    stages.back().push_back({e.name, e.holder, features});
  }

  calibrated_report report;
  for (const std::vector<leaf>& stage : stages) {
    // 1. recorders in the slots, calibration, the leaves back in their slots (also on failure)
    std::vector<detail::gptq_recorder<T>*> recorders;
    std::vector<gptq_hessian> hessians;
    {
      struct restore {
        const std::vector<leaf>& stage;
        std::vector<detail::gptq_recorder<T>*>& recorders;
        ~restore() {
          for (std::size_t i = 0; i < recorders.size(); ++i) stage[i].holder->replace(recorders[i]->release());
        }
      } guard{stage, recorders};
      for (const leaf& l : stage) {
        auto rec = std::make_unique<detail::gptq_recorder<T>>(l.holder->replace(std::make_unique<Sequential<T>>()),
                                                              l.features, l.name);
        recorders.push_back(rec.get());
        (void)l.holder->replace(std::move(rec));
      }
      calibrate();
      ++report.calibration_passes;
      for (detail::gptq_recorder<T>* r : recorders) hessians.push_back(r->hessian());
    }
    for (const gptq_hessian& h : hessians)
      if (h.samples() == 0) (void)h.matrix();  // the state_error naming the leaf, before any change
    // 2. GPTQ per leaf, then the frozen quantized module with exactly those values
    for (std::size_t i = 0; i < stage.size(); ++i) {
      const leaf& l = stage[i];
      const gptq_hessian& h = hessians[i];
      const auto t0 = std::chrono::steady_clock::now();
      if (h.samples() < h.features())
        log(log_level::warning, h.label() + ": " + std::to_string(h.samples()) + " calibration rows for " +
                                    std::to_string(h.features()) +
                                    " input features: the Hessian is rank-deficient and only dampening keeps it "
                                    "invertible; calibrate with more data");
      const tensor<T>& w = *detail::calibrated_weight(l.holder->get());
      calibrated_module_report entry{l.name, h.samples(), h.features(), 0.0, 0, 0.0};
      const state_dict keys = visit_qtype(weights, [&]<class Q>(Q) {
        const gptq_result<Q, T> r = gptq_quantize<Q, T>(w.view(), h, default_scheme_t<Q>{}, opt);
        entry.damp = r.damp;
        entry.dead_features = r.dead_columns;
        return detail::quantized_weight_keys(r.weight);
      });
      auto q = l.holder->get().make_quantized(weights, qconfig{}, l.name);
      if (!q) throw unsupported_error("quantize_calibrated: '" + l.name + "' cannot be quantized");
      load_context lc(keys);
      q->load_own(lc, "");
      (void)l.holder->replace(std::move(q));
      entry.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      report.modules.push_back(std::move(entry));
    }
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

}  // namespace nn
QUANTO_END_NAMESPACE
