// Example 02: the same quantized model two ways.
//  - compile time: the module types name their qtypes (`QLinear<qint4>`), the model is a plain
//    struct, every call is direct; a wrong combination does not compile.
//  - run time: a tree of named modules, quantized by name with qtypes given as strings (from a file
//    or a command line, here argv), patterns choosing which modules.
// Both use the same module types, so with the same weights they give the same outputs, bit for bit.
//
//   typed_vs_named [WEIGHTS [ACTIVATIONS]]     e.g. "qint4 qint8"; default qint4 none
#include <quanto/nn.hpp>

#include <cstdio>
#include <random>
#include <string>

using namespace quanto;

namespace {

/// A statically typed MLP. It models `nn::ValueModule` (forward, save, load, train, kind), so it could
/// also sit in a run-time tree as a leaf.
struct TypedMlp {
  using value_type = float;
  static constexpr std::string_view kind = "TypedMlp";
  nn::QLinear<qint4> fc1;
  nn::ReLU<float> relu;
  nn::QLinear<qint4> fc2;

  nn::activation<float> forward(nn::activation<float> x) {
    return fc2.forward(relu.forward(fc1.forward(std::move(x))));
  }
  void save(nn::state_dict& sd, const std::string& prefix) const {
    fc1.save(sd, prefix + "fc1.");
    fc2.save(sd, prefix + "fc2.");
  }
  void load(nn::load_context& lc, const std::string& prefix) {
    fc1.load(lc, prefix + "fc1.");
    fc2.load(lc, prefix + "fc2.");
  }
  void train(bool on) {
    fc1.train(on);
    fc2.train(on);
  }
};
static_assert(nn::ValueModule<TypedMlp>);
static_assert(nn::QuantizedModule<nn::QLinear<qint4>> && nn::QuantizableModule<nn::Linear<float>>);
static_assert(!nn::QuantizableModule<nn::ReLU<float>>);

/// The run-time model: the same layers as named children.
struct NamedMlp : nn::module<float> {
  nn::slot<float>& fc1;
  nn::slot<float>& relu;
  nn::slot<float>& fc2;
  NamedMlp(nn::Linear<float> a, nn::Linear<float> b)
      : fc1(add("fc1", std::move(a))), relu(add("relu", nn::ReLU<float>{})), fc2(add("fc2", std::move(b))) {}
  nn::activation<float> forward(nn::activation<float> x) override { return fc2(relu(fc1(std::move(x)))); }
  std::string_view kind() const noexcept override { return "NamedMlp"; }
};

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string weights = argc > 1 ? argv[1] : "qint4";
    const std::string activations = argc > 2 ? argv[2] : "none";
    std::mt19937_64 rng(7);
    const nn::Linear<float> l1(256, 512, rng), l2(512, 64, rng);
    tensor<float> x(shape{8, 256});
    std::uniform_real_distribution<float> u(-1.0f, 1.0f);
    for (auto& v : x) v = u(rng);

    // run time: qtypes from strings, modules chosen by pattern
    NamedMlp named(l1, l2);
    nn::quantize(named, {.weights = weights, .activations = activations, .include = "fc*"});
    if (activations != "none") {
      nn::Calibration calibration;  // one batch sets the activation scales
      (void)named(x);
    }
    nn::freeze(named);
    std::printf("run-time model, quantized by name:\n%s", nn::describe(named).c_str());
    const auto y_named = named(x).value;

    if (weights == "qint4" && activations == "none") {
      // compile time: the same weights, the types spelled out
      TypedMlp typed{nn::QLinear<qint4>(nn::Linear<float>(l1)), {}, nn::QLinear<qint4>(nn::Linear<float>(l2))};
      typed.fc1.freeze();
      typed.fc2.freeze();
      const auto y_typed = typed.forward(x).value;
      std::size_t same = 0;
      for (std::size_t i = 0; i < y_typed.size(); ++i) same += y_typed[i] == y_named[i];
      std::printf("\ncompile-time model: %zu of %zu outputs identical to the run-time model's\n", same, y_typed.size());
      nn::state_dict a, b = nn::get_state_dict(named);
      typed.save(a, "");
      std::printf(
          "state dicts identical: %s (%zu tensors, %zu bytes)\n",
          a.size() == b.size() &&
                  [&] {
                    for (const auto& [k, t] : a)
                      if (!b.find(k) || !(*b.find(k) == t)) return false;
                    return true;
                  }()
              ? "yes"
              : "no",
          a.size(), a.nbytes());
      if (same != y_typed.size()) return 1;
    }
    return 0;
  } catch (const quanto::error& e) {
    std::fprintf(stderr, "typed_vs_named: %s\n", e.what());
    return 1;
  }
}
