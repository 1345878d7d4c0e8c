// quanto/io/safetensors.hpp: a strict safetensors reader and writer (everything of the format).
//
// Format (https://github.com/huggingface/safetensors, README "Format"):
//   [8 bytes]  N, u64 little-endian: the size of the header
//   [N bytes]  the header: a UTF-8 JSON object
//              {"__metadata__": {"k": "v", ...},
//               "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [BEGIN, END]}, ...}
//   [rest]     the data section; BEGIN/END are relative to its start, END is one past the end.
//
// The parts, each in its own header:
//   io/safetensors_header.hpp  `tensor_info`, the limits, the header parser and its rules (the
//                              reference's, and where and why quanto-cpp is stricter)
//   io/safetensors_file.hpp    `safetensors_file`: a mapped or in-memory file, validated on open
//   io/safetensors_writer.hpp  `serialize_safetensors`, `save_safetensors`, `layout_of`,
//                              `save_safetensors_with` (`tensor_sink`), `save_safetensors_streamed`
//   io/safetensors_error.hpp   the typed errors
#pragma once

#include "quanto/io/safetensors_error.hpp"
#include "quanto/io/safetensors_file.hpp"
#include "quanto/io/safetensors_header.hpp"
#include "quanto/io/safetensors_writer.hpp"
