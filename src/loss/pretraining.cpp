/* Pretraining losses (see pretraining.h). */
#include "mmt/loss/pretraining.h"

#include <cmath>
#include <limits>

#include "mmt/data/batch.h"
#include "mmt/model/transformer.h"

namespace mmt {

namespace {
double accuracy(const torch::Tensor& logits, const torch::Tensor& targets) {
  return logits.argmax(1).eq(targets).to(torch::kFloat).mean().item<double>();
}
}  // namespace

std::pair<torch::Tensor, double> loss_from_logits(const torch::Tensor& logits, const torch::Tensor& targets) {
  return {torch::cross_entropy_loss(logits, targets), accuracy(logits, targets)};
}

torch::Tensor loss_mrm_regression_from(const torch::Tensor& pred, const torch::Tensor& target) {
  TORCH_CHECK(pred.sizes() == target.sizes(), "MRM regression: prediction ", pred.sizes(), " vs target ",
              target.sizes());
  return (pred - target).pow(2).mean();
}

torch::Tensor loss_mrm_kl_from(const torch::Tensor& logits, const torch::Tensor& p) {
  TORCH_CHECK(logits.sizes() == p.sizes(), "MRM KL: logits ", logits.sizes(), " vs distribution ", p.sizes());
  // sum_c p log p - p log q, with 0 log 0 = 0
  return (torch::xlogy(p, p) - p * torch::log_softmax(logits, -1)).sum(-1).mean();
}

std::pair<torch::Tensor, double> loss_mrm_class_from(const torch::Tensor& logits, const torch::Tensor& p) {
  return loss_from_logits(logits, p.argmax(-1));
}

std::pair<torch::Tensor, double> loss_mlm(MultimodalTransformerImpl& model, const Encoded& enc,
                                          const torch::Tensor& labels) {
  TORCH_CHECK(labels.sizes() == enc.text.sizes().slice(0, 2), "loss_mlm: labels must be (B, T) = ",
              enc.text.sizes().slice(0, 2), ", got ", labels.sizes());
  const auto flat_labels = labels.reshape({-1});
  const auto positions = flat_labels.ne(kIgnoreLabel).nonzero().squeeze(1);
  if (positions.numel() == 0)
    return {torch::zeros({}, enc.text.options()), std::numeric_limits<double>::quiet_NaN()};
  const auto states = enc.text.reshape({-1, enc.text.size(2)}).index_select(0, positions);  // (M, H)
  return loss_from_logits(model.mlm_logits(states), flat_labels.index_select(0, positions));
}

std::pair<torch::Tensor, double> loss_itm(MultimodalTransformerImpl& model, const Encoded& enc,
                                          const torch::Tensor& labels) {
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == enc.text.size(0), "loss_itm: labels must be (B), got ",
              labels.sizes());
  return loss_from_logits(model.itm_logits(enc), labels);
}

std::pair<torch::Tensor, double> loss_dual_contrastive(const torch::Tensor& text_emb, const torch::Tensor& image_emb,
                                                       const torch::Tensor& scale) {
  TORCH_CHECK(text_emb.dim() == 2 && text_emb.sizes() == image_emb.sizes(),
              "loss_dual_contrastive: embeddings must both be (M, E), got ", text_emb.sizes(), " and ",
              image_emb.sizes());
  const auto logits = scale * torch::matmul(text_emb, image_emb.t());  // (M, M), text rows
  const auto target = torch::arange(logits.size(0), torch::device(logits.device()).dtype(torch::kInt64));
  const auto loss = 0.5 * (torch::cross_entropy_loss(logits, target) + torch::cross_entropy_loss(logits.t(), target));
  const double acc = 0.5 * (accuracy(logits, target) + accuracy(logits.t(), target));
  return {loss, acc};
}

LossOutput pretraining_loss(MultimodalTransformerImpl& model, const Batch& batch, const TrainOptions& t) {
  const Encoded enc = model.encode(batch, /*per_layer=*/t.itm_all_layers);
  LossOutput out;
  out.total = torch::zeros({}, torch::device(enc.text.device()));
  auto add = [&](const char* name, const torch::Tensor& loss, double weight, double acc) {
    out.total = out.total + weight * loss;
    out.metrics[name] = loss.item<double>();
    if (!std::isnan(acc)) out.metrics[std::string(name) + "_acc"] = acc;
  };
  if (t.mlm_weight > 0 && batch.mlm_labels.defined()) {
    auto [loss, acc] = loss_mlm(model, enc, batch.mlm_labels);
    add("mlm", loss, t.mlm_weight, acc);
  }
  if (batch.mrm_mask.defined() && batch.mrm_mask.any().item<bool>()) {
    const auto positions = batch.mrm_mask.reshape({-1}).nonzero().squeeze(1);
    const auto states = enc.image.reshape({-1, enc.image.size(2)}).index_select(0, positions);  // (M, H)
    const auto classes = batch.region_classes.reshape({-1, batch.region_classes.size(2)}).index_select(0, positions);
    if (t.mrm_regression_weight > 0) {
      const auto target = batch.region_targets.reshape({-1, batch.region_targets.size(2)}).index_select(0, positions);
      add("mrm_regression", loss_mrm_regression_from(model.mrm_features(states), target), t.mrm_regression_weight, NAN);
    }
    if (t.mrm_kl_weight > 0 || t.mrm_class_weight > 0) {
      const auto logits = model.mrm_class_logits(states);
      if (t.mrm_kl_weight > 0) add("mrm_kl", loss_mrm_kl_from(logits, classes), t.mrm_kl_weight, NAN);
      if (t.mrm_class_weight > 0) {
        auto [loss, acc] = loss_mrm_class_from(logits, classes);
        add("mrm_class", loss, t.mrm_class_weight, acc);
      }
    }
  }
  if (t.itm_weight > 0 && batch.itm_labels.defined()) {
    auto [loss, acc] = loss_itm(model, enc, batch.itm_labels);
    if (t.itm_all_layers) {  // the same head after every layer, averaged (the top one included)
      auto sum = torch::zeros({}, torch::device(enc.text.device()));
      for (size_t l = 0; l < enc.layer_cls.size(); ++l)
        sum = sum + torch::cross_entropy_loss(model.itm_logits(enc.layer_cls[l], enc.layer_img[l]), batch.itm_labels);
      loss = sum / static_cast<double>(enc.layer_cls.size());
    }
    add("itm", loss, t.itm_weight, acc);
  }
  if (t.dual_contrastive_weight > 0) {
    // In-batch InfoNCE over the matched pairs (mismatched ones would be false positives).
    auto rows = batch.itm_labels.defined() ? batch.itm_labels.eq(1).nonzero().squeeze(1)
                                           : torch::arange(batch.size(), batch.text_ids.options());
    if (rows.numel() >= 2) {
      const auto cls = enc.text.select(1, 0).index_select(0, rows), img = enc.image.select(1, 0).index_select(0, rows);
      auto [loss, acc] = loss_dual_contrastive(model.text_embedding(cls), model.image_embedding(img),
                                               model.logit_scale_value());
      add("dual", loss, t.dual_contrastive_weight, acc);
    }
  }
  out.metrics["loss"] = out.total.item<double>();
  return out;
}

}  // namespace mmt
