/* Vocabulary and input sizes of the configured data (see data_source.h). */
#include "mmt/data/data_source.h"

#include <algorithm>
#include <tuple>

#include "mmt/data/record_images.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/text/tokenizer.h"
#include "mmt/util/error.h"
#include "mmt/util/runtime.h"

namespace mmt {

Vocab data_vocab(const ExperimentConfig& cfg) {
  if (cfg.data.source == "datasets") {
    BasicTokenizerOptions basic;
    basic.lower_case = !cfg.data.cased;
    return load_tokenizer(cfg.data.tokenizer, basic)->vocab();
  }
  return Vocab::from_words(synth::lexicon());
}

namespace {
// Feature size and classes of the first dataset with region features.
std::pair<int64_t, int64_t> dataset_feature_dims(const ExperimentConfig& cfg) {
  for (const auto& d : cfg.data.datasets)
    if (!d.features.empty()) return FeatureSource::open(d.features).dims();
  throw Error("config: model.image_input = regions with data.source = datasets needs a dataset with `features`");
}
}  // namespace

InputDims data_input_dims(const ExperimentConfig& cfg, std::vector<std::string>* assumed) {
  const auto& m = cfg.model;
  int64_t feat = cfg.data.synth.feature_dim;  // regions: the detector's feature size
  int64_t classes = cfg.data.synth.num_shapes;
  if (cfg.data.source == "datasets" && m.image_input == "regions") {
    try {
      std::tie(feat, classes) = dataset_feature_dims(cfg);
    } catch (const Error& e) {
      if (!assumed) throw;
      feat = 2048, classes = 1601;  // Faster R-CNN on Visual Genome, as the paper's features
      assumed->push_back("region features 2048-d, 1601 classes assumed (" + std::string(e.what()) + ")");
    }
  }
  if (m.image_input == "patches") feat = 3 * m.patch_size * m.patch_size;  // a flattened patch
  if (m.image_input == "resnet50") feat = 2048;                              // layer4 channels
  int64_t vocab = 0;
  try {
    vocab = data_vocab(cfg).size();
  } catch (const Error& e) {
    if (!assumed) throw;
    vocab = 30522;  // bert-base-uncased
    assumed->push_back("vocabulary of 30522 pieces assumed (" + std::string(e.what()) + ")");
  }
  return InputDims{vocab, feat, m.image_input == "regions" ? classes : 0};
}

LoaderSettings loader_settings(const DataOptions& d) {
  const int64_t threads = d.loader_threads >= 0 ? d.loader_threads : std::max<int64_t>(1, cores_per_process() - 1);
  return {threads, std::max(d.prefetch, threads)};
}

}  // namespace mmt
