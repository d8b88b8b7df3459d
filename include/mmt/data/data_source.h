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

/// The model's input sizes for the configured data. With `assumed` (mmt model summary, planning a
/// run before its data is there), a tokenizer or feature store that cannot be read gives the paper's
/// sizes - BERT's 30,522 pieces, 2,048-d region features of 1,601 detector classes - and a note
/// in `assumed` naming the file, instead of an error.
InputDims data_input_dims(const ExperimentConfig& cfg, std::vector<std::string>* assumed = nullptr);

/// data.loader_threads and data.prefetch as used: -1 threads (auto) = the process's cores but the
/// training thread's one, at least 1; at least one batch ahead per thread (else threads idle).
struct LoaderSettings {
  int64_t threads, prefetch;
};
LoaderSettings loader_settings(const DataOptions& d);

}  // namespace mmt
