/* `mmt finetune`: the config of a retrieval fine-tuning run, so the release's `-ft` models have
 * a counterpart. It starts from a finished run's config and final weights (train.init), trains
 * on the train (+ restval) images of a Karpathy split file with ITM alone (hard negatives, as
 * UNITER and ALBEF fine-tune for retrieval) at a tenth of the pretraining learning rate, and
 * marks the run train.stage = finetune: every result of it is labelled `fine-tuned`.
 * --set overrides apply last. Torch-free. */
#pragma once

#include <string>
#include <vector>

#include "mmt/config/options.h"

namespace mmt {

struct FinetuneData {
  std::string karpathy;  // Karpathy split file
  std::string images;    // its image folder ("" = next to it)
  std::string features;  // region models: features of its images
  std::vector<std::string> splits = {"train", "restval"};
};

ExperimentConfig finetune_config(const std::string& pretrained_run, const FinetuneData& data,
                                 const std::vector<std::string>& overrides);

}  // namespace mmt
