// Example 01: optimum-quanto's whole workflow on a real dataset, in C++: train a small MLP on the
// 8x8 handwritten digits, quantize its weights to int4 (post-training), tune them for a few epochs
// with quantization-aware training (straight-through gradients), freeze, and compare accuracies.
// The same again with int8 activations, calibrated.
//
//   mlp_workflow                 the full run (a few seconds)
//   mlp_workflow --quick         fewer epochs (used as a test)
//   mlp_workflow --csv FILE      another copy of digits.csv
#include <quanto/nn.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "digits.hpp"
#include "mlp.hpp"

#ifndef QUANTO_EXAMPLES_DATA_DIR
#define QUANTO_EXAMPLES_DATA_DIR "examples/data"
#endif

using namespace quanto;
using namespace digits;

int main(int argc, char** argv) {
  bool quick = false;
  std::string csv = std::string(QUANTO_EXAMPLES_DATA_DIR) + "/digits.csv";
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--csv") && i + 1 < argc)
      csv = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--quick] [--csv digits.csv]\n", argv[0]);
      return 2;
    }
  }
  try {
    const auto t0 = std::chrono::steady_clock::now();
    const digits::dataset data = digits::load(csv);
    const std::int64_t hidden = 64;
    const int float_epochs = quick ? 4 : 30, qat_epochs = quick ? 1 : 5;
    std::printf("digits: %lld training and %lld test images of 8x8 pixels, 10 classes\n",
                static_cast<long long>(data.train.size()), static_cast<long long>(data.test.size()));
    std::printf("model: 64 -> %lld -> %lld -> 10 MLP, ReLU, trained with SGD (momentum 0.9, batch 32)\n\n",
                static_cast<long long>(hidden), static_cast<long long>(hidden));

    auto model = make_mlp(hidden, 42);
    const double float_loss = fit(*model, data.train, float_epochs, 0.05, 1);
    const double float_acc = accuracy(*model, data.test);
    std::printf("%-44s %6.2f %%   (train loss %.4f, %d epochs)\n", "float32", float_acc, float_loss, float_epochs);

    for (const char* acts : {"none", "qint8"}) {
      for (const char* weights : {"qint4", "qint2"}) {
        auto q = copy_of(*model, hidden);
        nn::quantize(*q, {.weights = weights, .activations = acts});
        const auto calibrate = [&] {
          if (std::strcmp(acts, "none") == 0) return;
          nn::Calibration calib(0.9);
          for (std::int64_t b = 0; b + 64 <= data.train.size() && b < 512; b += 64)
            (void)(*q)(digits::rows(data.train, b, b + 64));
        };
        calibrate();
        const double ptq = accuracy(*q, data.test);
        const double qat_loss = fit(*q, data.train, qat_epochs, 0.01, 2);
        calibrate();  // the activations moved with the weights: calibrate again (quanto's recipe)
        const double qat = accuracy(*q, data.test);
        nn::freeze(*q);
        const double frozen = accuracy(*q, data.test);
        const std::size_t bytes = nn::get_state_dict(*q).nbytes();
        std::printf(
            "weights %-5s activations %-5s post-training %6.2f %%   after %d epochs of QAT %6.2f %% (loss %.4f)"
            "   frozen %6.2f %%   state dict %zu bytes\n",
            weights, acts, ptq, qat_epochs, qat, qat_loss, frozen, bytes);
      }
    }
    std::printf("\nfloat32 state dict: %zu bytes; took %.1f s\n", nn::get_state_dict(*model).nbytes(),
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mlp_workflow: %s\n", e.what());
    return 1;
  }
}
