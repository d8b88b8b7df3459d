/* Vocabulary and input sizes of the configured data (see data_source.h). */
#include "mmt/data/data_source.h"

#include "mmt/data/synthetic_world.h"

namespace mmt {

Vocab data_vocab(const ExperimentConfig& cfg) {
  (void)cfg;  // only the synthetic source exists so far
  return Vocab::from_words(synth::lexicon());
}

InputDims data_input_dims(const ExperimentConfig& cfg) {
  const auto& m = cfg.model;
  int64_t feat = cfg.data.synth.feature_dim;  // regions: the detector's feature size
  if (m.image_input == "patches") feat = 3 * m.patch_size * m.patch_size;  // a flattened patch
  if (m.image_input == "resnet50") feat = 2048;                              // layer4 channels
  const int64_t classes = m.image_input == "regions" ? cfg.data.synth.num_shapes : 0;
  return InputDims{data_vocab(cfg).size(), feat, classes};
}

}  // namespace mmt
