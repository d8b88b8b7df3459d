/* What a configured data source gives the model before any batch: its vocabulary and the
 * input sizes (vocabulary size, region feature size). One place, so training, evaluation,
 * benchmarks and `mmt model summary` agree. */
#pragma once

#include "mmt/config/options.h"
#include "mmt/model/input_dims.h"
#include "mmt/text/vocab.h"

namespace mmt {

/// The tokenizer vocabulary of the configured data (synthetic: the grammar's lexicon).
Vocab data_vocab(const ExperimentConfig& cfg);

/// The model's input sizes for the configured data.
InputDims data_input_dims(const ExperimentConfig& cfg);

}  // namespace mmt
