/* safetensors reading and writing (FORMATS.md): an 8-byte little-endian header length, a
 * JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the raw
 * little-endian row-major tensor bytes. Checkpoints of mmt are safetensors so that Python
 * users can open them with the `safetensors` package. */
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace torch::nn {
class Module;
}

namespace mmt {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// Writes tensors (any supported dtype, any device; copied to CPU contiguous) atomically.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

/// Reads every tensor of a file; errors name the file and the offending entry.
NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

/// The parameters and buffers of a module, by their registered names.
NamedTensors module_state(const torch::nn::Module& module);

struct LoadReport {
  std::vector<std::string> missing;     // in the module, not in the file
  std::vector<std::string> unexpected;  // in the file, not in the module
  std::vector<std::string> mismatched;  // shape differs ("name: file [a, b] vs model [c, d]")
};

/// Copies tensors into the module's parameters/buffers by name. With strict, any missing,
/// unexpected or mismatched name throws Error listing them all.
LoadReport load_module_state(torch::nn::Module& module, const NamedTensors& tensors, bool strict);

}  // namespace mmt
