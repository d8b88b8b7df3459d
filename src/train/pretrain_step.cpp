/* One pretraining step (see pretrain_step.h). */
#include "mmt/train/pretrain_step.h"

#include <cmath>

#include "mmt/data/batch.h"
#include "mmt/loss/contrastive_itm.h"
#include "mmt/train/hard_negatives.h"
#include "mmt/model/transformer.h"

namespace mmt {

PretrainStep::PretrainStep(MultimodalTransformerImpl& model, const TrainOptions& t) : model_(model), options_(t) {
  std::vector<torch::Tensor> params;
  std::vector<bool> decay;
  for (const auto& p : model.parameters()) {
    params.push_back(p);
    decay.push_back(p.dim() >= 2);  // matrices and embeddings; not biases, norms, type vectors
  }
  AdamWSettings s;
  s.beta1 = t.adam_beta1, s.beta2 = t.adam_beta2, s.eps = t.adam_eps, s.weight_decay = t.weight_decay;
  optimizer_ = std::make_unique<FlatAdamW>(params, decay, s);
}

PretrainStep::~PretrainStep() = default;

PretrainStep::Result PretrainStep::run(const Batch& input, double lr, int64_t step) {
  optimizer_->zero_grad();
  Result r;
  Batch batch = input;
  apply_hard_negatives(model_, batch, options_.itm_swap == "caption", options_.seed, step);
  r.loss = pretraining_loss(model_, batch, options_);
  r.finite = std::isfinite(r.loss.metrics["loss"]);
  if (!r.finite) return r;
  r.loss.total.backward();
  if (options_.itm_contrastive_weight > 0) {  // back-propagates itself, chunk by chunk
    const auto c = contrastive_itm(model_, batch, options_.itm_contrastive_weight, options_.itm_contrastive_chunk);
    r.loss.metrics["itm_contrastive"] = c.loss;
    r.loss.metrics["itm_contrastive_acc"] = c.accuracy;
    r.loss.metrics["loss"] += options_.itm_contrastive_weight * c.loss;
    if (!std::isfinite(c.loss)) {
      r.finite = false;
      return r;
    }
  }
  if (options_.grad_clip > 0) r.loss.metrics["grad_norm"] = optimizer_->clip_grad_norm(options_.grad_clip);
  optimizer_->step(lr);
  return r;
}

}  // namespace mmt
