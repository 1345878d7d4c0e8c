// quanto/io/checkpoint.hpp: Hugging Face model folders, one file or sharded, read and written.
//
// A folder holds either `model.safetensors`, or shards (`model-00001-of-00003.safetensors`, ...)
// and `model.safetensors.index.json`:
//
//   {
//     "metadata": {"total_parameters": 106816, "total_size": 427264},
//     "weight_map": {"lm_head.weight": "model-00003-of-00003.safetensors", ...}
//   }
//
// The parts, each in its own header:
//   io/shard_index.hpp        the index: `parse_shard_index`, `shard_index_json`, `index_error`, `path_error`
//   io/checkpoint_reader.hpp  `checkpoint::open`: a folder or a file, validated as a whole
//   io/folder_commit.hpp      the staging folder and its atomic commit in the target's place
//   io/checkpoint_writer.hpp  `save_checkpoint` / `save_checkpoint_with`: sharded, crash-atomic
#pragma once

#include "quanto/io/checkpoint_reader.hpp"
#include "quanto/io/checkpoint_writer.hpp"
#include "quanto/io/folder_commit.hpp"
#include "quanto/io/shard_index.hpp"
