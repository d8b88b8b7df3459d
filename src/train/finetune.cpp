/* Fine-tuning configs (see finetune.h). */
#include "mmt/train/finetune.h"

#include "mmt/config/config.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {

ExperimentConfig finetune_config(const std::string& pretrained_run, const FinetuneData& data,
                                 const std::vector<std::string>& overrides) {
  const std::string config = pretrained_run + "/config.json";
  if (!file_exists(config) || !file_exists(pretrained_run + "/model.safetensors"))
    throw Error("mmt finetune: '" + pretrained_run + "' is not a finished run (config.json and model.safetensors needed)");
  if (data.karpathy.empty()) throw Error("mmt finetune: give --karpathy FILE, the retrieval data to fine-tune on");
  ExperimentConfig cfg = load_config(config, {});
  // The pretrained tokenizer: its SentencePiece model or vocabulary, or the run's own vocab.txt.
  if (cfg.data.source != "datasets" || cfg.data.tokenizer.empty()) cfg.data.tokenizer = pretrained_run + "/vocab.txt";
  cfg.data.source = "datasets";
  DatasetOptions d;
  d.name = "finetune", d.format = "karpathy", d.path = data.karpathy, d.images = data.images;
  d.features = data.features, d.splits = data.splits;
  cfg.data.datasets = {d};
  cfg.data.sampling = "instance";
  auto& t = cfg.train;
  t.stage = "finetune";
  t.init = pretrained_run;
  t.mlm_weight = 0, t.mrm_kl_weight = 0, t.mrm_regression_weight = 0, t.mrm_class_weight = 0;
  t.itm_contrastive_weight = 0, t.dual_contrastive_weight = 0;
  if (cfg.model.kind == "dual_encoder" && cfg.model.dual_score == "dot") {
    t.dual_contrastive_weight = 1, t.itm_weight = 0, t.itm_negative_prob = 0;  // CLIP-style towers: InfoNCE
  } else {
    t.itm_weight = 1, t.itm_negatives = "hard", t.itm_hard_from_step = 0;
    // With the align head, ALBEF's retrieval fine-tuning: its contrastive loss next to ITM, the hard
    // negatives sampled by it. (Without the head validate_config has kept align_weight at 0.)
    if (cfg.model.align && t.align_weight <= 0) t.align_weight = 1.0;
  }
  t.lr = t.lr / 10;
  t.steps = 1000, t.warmup_steps = 100;
  t.eval_every = 0;
  for (const auto& o : overrides) apply_override(cfg, o);
  validate_config(cfg);
  return cfg;
}

}  // namespace mmt
