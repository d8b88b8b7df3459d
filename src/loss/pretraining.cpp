/* MLM and ITM losses (see pretraining.h). */
#include "mmt/loss/pretraining.h"

#include <cmath>
#include <limits>

#include "mmt/data/batch.h"
#include "mmt/model/transformer.h"

namespace mmt {

std::pair<torch::Tensor, double> loss_mlm(MultimodalTransformerImpl& model, const Encoded& enc,
                                          const torch::Tensor& labels) {
  TORCH_CHECK(labels.sizes() == enc.text.sizes().slice(0, 2), "loss_mlm: labels must be (B, T) = ",
              enc.text.sizes().slice(0, 2), ", got ", labels.sizes());
  const auto flat_labels = labels.reshape({-1});
  const auto positions = flat_labels.ne(kIgnoreLabel).nonzero().squeeze(1);
  if (positions.numel() == 0)
    return {torch::zeros({}, enc.text.options()), std::numeric_limits<double>::quiet_NaN()};
  const auto states = enc.text.reshape({-1, enc.text.size(2)}).index_select(0, positions);  // (M, H)
  const auto target = flat_labels.index_select(0, positions);
  const auto logits = model.mlm_logits(states);  // (M, V)
  const double acc = logits.argmax(1).eq(target).to(torch::kFloat).mean().item<double>();
  return {torch::cross_entropy_loss(logits, target), acc};
}

std::pair<torch::Tensor, double> loss_itm(MultimodalTransformerImpl& model, const Encoded& enc,
                                          const torch::Tensor& labels) {
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == enc.text.size(0), "loss_itm: labels must be (B), got ",
              labels.sizes());
  const auto logits = model.itm_logits(enc);  // (B, 2)
  const double acc = logits.argmax(1).eq(labels).to(torch::kFloat).mean().item<double>();
  return {torch::cross_entropy_loss(logits, labels), acc};
}

LossOutput pretraining_loss(MultimodalTransformerImpl& model, const Batch& batch, const TrainOptions& t) {
  const Encoded enc = model.encode(batch);
  LossOutput out;
  out.total = torch::zeros({});
  if (t.mlm_weight > 0 && batch.mlm_labels.defined()) {
    auto [loss, acc] = loss_mlm(model, enc, batch.mlm_labels);
    out.total = out.total + t.mlm_weight * loss;
    out.metrics["mlm"] = loss.item<double>();
    out.metrics["mlm_acc"] = acc;
  }
  if (t.itm_weight > 0 && batch.itm_labels.defined()) {
    auto [loss, acc] = loss_itm(model, enc, batch.itm_labels);
    out.total = out.total + t.itm_weight * loss;
    out.metrics["itm"] = loss.item<double>();
    out.metrics["itm_acc"] = acc;
  }
  out.metrics["loss"] = out.total.item<double>();
  return out;
}

}  // namespace mmt
