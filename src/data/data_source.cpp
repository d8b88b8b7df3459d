/* Vocabulary and input sizes of the configured data (see data_source.h). */
#include "mmt/data/data_source.h"

#include "mmt/data/synthetic_world.h"

namespace mmt {

Vocab data_vocab(const ExperimentConfig& cfg) {
  (void)cfg;  // only the synthetic source exists so far
  return Vocab::from_words(synth::lexicon());
}

InputDims data_input_dims(const ExperimentConfig& cfg) {
  return InputDims{data_vocab(cfg).size(), cfg.data.synth.feature_dim};
}

}  // namespace mmt
