// The digits example's claim (examples/01_mlp_workflow, its own settings): quantization-aware
// training recovers the accuracy that post-training quantization loses. A full training run:
// labelled "slow", not run under the sanitizers.
#include <gtest/gtest.h>

#include "../../examples/01_mlp_workflow/mlp.hpp"
#include "nn_support.hpp"

namespace {
using namespace quanto;

// The digits example (examples/01_mlp_workflow) with its own settings.
TEST(Qat, DigitsQatRecoversPostTrainingLoss) {
  const auto data = digits::load(std::string(QUANTO_EXAMPLES_DATA_DIR) + "/digits.csv");
  ASSERT_EQ(data.train.size() + data.test.size(), 1797);
  auto model = digits::make_mlp(64, 42);
  (void)digits::fit(*model, data.train, 30, 0.05, 1);
  const double float_acc = digits::accuracy(*model, data.test);
  EXPECT_GT(float_acc, 96.0);
  for (const char* weights : {"qint4", "qint2"}) {
    auto q = digits::copy_of(*model, 64);
    nn::quantize(*q, {.weights = weights});
    const double ptq = digits::accuracy(*q, data.test);
    const auto codes = [&] {
      return q->child("2")->get().quantized()->weight_qtype() == qtype_id::qint4
                 ? q->child("2")->as<nn::QLinear<qint4>>()->qweight().unpack()
                 : q->child("2")->as<nn::QLinear<qint2>>()->qweight().unpack();
    };
    const auto codes_before = codes();
    (void)digits::fit(*q, data.train, 5, 0.01, 2);
    // the float weights learned through the quantizer (straight-through): codes moved
    const auto codes_after = codes();
    std::size_t moved = 0;
    for (std::size_t i = 0; i < codes_before.size(); ++i) moved += codes_before[i] != codes_after[i];
    EXPECT_GT(moved, 10u) << weights;  // (32 of 4096 for qint4, 102 for qint2 when written)
    const double qat = digits::accuracy(*q, data.test);
    nn::freeze(*q);
    const double frozen = digits::accuracy(*q, data.test);
    RecordProperty(std::string(weights) + "_float_ptq_qat",
                   std::to_string(float_acc) + " " + std::to_string(ptq) + " " + std::to_string(qat));
    EXPECT_EQ(frozen, qat) << weights;
    EXPECT_LT(ptq, float_acc) << weights << ": post-training quantization lost nothing to recover";
    if (std::string(weights) == "qint4")  // within two test images of the float model
      EXPECT_GE(qat, float_acc - 0.6) << "QAT did not recover (float " << float_acc << ", ptq " << ptq << ")";
    else  // qint2 loses more; QAT wins most of it back
      EXPECT_GE(qat, ptq + 2.0) << "QAT did not recover (float " << float_acc << ", ptq " << ptq << ")";
  }
}

}  // namespace
