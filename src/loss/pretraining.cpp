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

std::pair<torch::Tensor, double> loss_dual_contrastive(const torch::Tensor& text_emb, const torch::Tensor& image_emb,
                                                       const torch::Tensor& scale) {
  TORCH_CHECK(text_emb.dim() == 2 && text_emb.sizes() == image_emb.sizes(),
              "loss_dual_contrastive: embeddings must both be (M, E), got ", text_emb.sizes(), " and ",
              image_emb.sizes());
  const auto logits = scale * torch::matmul(text_emb, image_emb.t());  // (M, M), text rows
  const auto target = torch::arange(logits.size(0), torch::kInt64);
  const auto loss = 0.5 * (torch::cross_entropy_loss(logits, target) + torch::cross_entropy_loss(logits.t(), target));
  const double acc = 0.5 * (logits.argmax(1).eq(target).to(torch::kFloat).mean().item<double>() +
                            logits.argmax(0).eq(target).to(torch::kFloat).mean().item<double>());
  return {loss, acc};
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
  if (t.dual_contrastive_weight > 0) {
    // In-batch InfoNCE over the matched pairs (mismatched ones would be false positives).
    auto rows = batch.itm_labels.defined() ? batch.itm_labels.eq(1).nonzero().squeeze(1)
                                           : torch::arange(batch.size(), torch::kInt64);
    if (rows.numel() >= 2) {
      const auto cls = enc.text.select(1, 0).index_select(0, rows), img = enc.image.select(1, 0).index_select(0, rows);
      auto [loss, acc] = loss_dual_contrastive(model.text_embedding(cls), model.image_embedding(img),
                                               model.logit_scale_value());
      out.total = out.total + t.dual_contrastive_weight * loss;
      out.metrics["dual"] = loss.item<double>();
      out.metrics["dual_acc"] = acc;
    }
  }
  out.metrics["loss"] = out.total.item<double>();
  return out;
}

}  // namespace mmt
