// quanto/core/quantization_map.hpp: optimum-quanto's quantization map as plain data: which qtype
// each quantized module's weights and activations use, by module name. nn::quantization_map
// builds it from a model; io/qmap.hpp reads and writes it as `quanto_qmap.json`.
#pragma once

#include <string>
#include <vector>

#include "quanto/core/config.hpp"

QUANTO_BEGIN_NAMESPACE

/// One entry of quanto's quantization map (`quanto_qmap.json`).
struct qmap_entry {
  std::string name;
  std::string weights;      ///< a qtype name or "none"
  std::string activations;  ///< a qtype name or "none"
  bool operator==(const qmap_entry&) const = default;
};
using quantization_map_t = std::vector<qmap_entry>;

QUANTO_END_NAMESPACE
