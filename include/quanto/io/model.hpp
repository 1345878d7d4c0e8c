// quanto/io/model.hpp: whole Hugging Face model folders quantized on disk and read back.
//
//   io::quantize_model("llama-f32", "llama-qint4", {.weights = qtype_id::qint4});
//
// The parts, each in its own header:
//   io/model_plan.hpp       `model_quantize_options`, `plan_quantization`: which modules, which tensors
//   io/model_run.hpp        `quantize_model`: a folder in, a quantized folder out (`quantize_report`)
//   io/work_queue.hpp       its workers: jobs under a memory budget
//   io/quantized_model.hpp  `quantized_model`: a quantized folder read back
#pragma once

#include "quanto/io/model_plan.hpp"
#include "quanto/io/model_run.hpp"
#include "quanto/io/quantized_model.hpp"
#include "quanto/io/work_queue.hpp"
#include "quanto/nn/quantize.hpp"  // (this header always included it: nn::quantization_map_t and the rest)
