/* Sizes the model takes from the data rather than from ModelOptions (torch-free). */
#pragma once

#include <cstdint>

namespace mmt {

struct InputDims {
  int64_t vocab_size = 0;       // tokenizer vocabulary
  int64_t region_feat_dim = 0;  // detector feature size
  int64_t region_classes = 0;   // detector classes (MRM targets); 0 for pixel inputs
};

}  // namespace mmt
