/* Pretraining losses (see pretraining.h). */
#include "mmt/loss/pretraining.h"

#include <cmath>
#include <functional>
#include <limits>
#include <tuple>

#include "mmt/data/batch.h"
#include "mmt/loss/align_queue.h"
#include "mmt/model/transformer.h"
#include "mmt/train/distributed.h"

namespace mmt {

namespace {
// Accuracy as a scalar tensor on the logits' device: the training step reads all its metrics in
// one transfer (each .item() waits for the device).
torch::Tensor accuracy_tensor(const torch::Tensor& logits, const torch::Tensor& targets) {
  return logits.argmax(1).eq(targets).to(torch::kFloat).mean();
}
std::pair<torch::Tensor, torch::Tensor> ce_and_accuracy(const torch::Tensor& logits, const torch::Tensor& targets) {
  return {torch::cross_entropy_loss(logits, targets), accuracy_tensor(logits, targets)};
}
// The public (loss, accuracy) pairs: the accuracy read on the host (NaN when there is none).
std::pair<torch::Tensor, double> on_host(const std::pair<torch::Tensor, torch::Tensor>& r) {
  return {r.first, r.second.defined() ? r.second.item<double>() : std::numeric_limits<double>::quiet_NaN()};
}
// Positions of the true entries of a flat bool tensor, in order, when their count n is known on
// the host: a stable sort puts them first, without nonzero()'s wait for the device.
torch::Tensor true_positions(const torch::Tensor& flags, const int64_t* n) {
  if (!n) return flags.nonzero().squeeze(1);
  return std::get<1>(torch::sort(flags.to(torch::kInt32), /*stable=*/true, /*dim=*/0, /*descending=*/true)).narrow(0, 0, *n);
}
// The align head's [CLS] / [IMG] states (R, H) of the given rows. unmasked (ALBEF): a modality the
// batch masked - MLM's tokens, MRM's regions; counts from HostCounts - runs its tower again on its
// inputs as they were before masking, with gradient, so the towers learn the align loss from whole
// captions and images while MLM / MRM read the masked pass; an unmasked modality keeps the pass's
// states. Rows must carry MLM targets wherever they are masked (the matched pairs do).
std::pair<torch::Tensor, torch::Tensor> align_states(MultimodalTransformerImpl& model, const Batch& batch,
                                                     const Encoded& enc, const torch::Tensor& rows, bool unmasked,
                                                     const HostCounts& c) {
  auto cls = enc.align_cls.index_select(0, rows), img = enc.align_img.index_select(0, rows);
  if (!unmasked) return {cls, img};
  const int64_t towers = model.first_cross_modal_layer();
  if (c.mlm > 0) {
    const auto ids = unmasked_text_ids(batch).index_select(0, rows);
    cls = model.run_one_modality(model.text_embed(ids), batch.text_mask.index_select(0, rows), true, 0, towers).select(1, 0);
  }
  if (c.mrm > 0) {
    Batch regions;
    regions.region_feats = unmasked_region_feats(batch).index_select(0, rows);
    regions.region_boxes = batch.region_boxes.index_select(0, rows);
    regions.region_mask = batch.region_mask.index_select(0, rows);
    const ImageTokens tokens = model.embed_images(regions);
    img = model.run_one_modality(tokens.states, tokens.mask, false, 0, towers).select(1, 0);
  }
  return {cls, img};
}
}  // namespace

std::pair<torch::Tensor, double> loss_from_logits(const torch::Tensor& logits, const torch::Tensor& targets) {
  return on_host(ce_and_accuracy(logits, targets));
}

HostCounts host_counts(const Batch& batch) {
  HostCounts c;
  if (batch.mlm_labels.defined()) c.mlm = batch.mlm_labels.ne(kIgnoreLabel).sum().item<int64_t>();
  if (batch.mrm_mask.defined()) c.mrm = batch.mrm_mask.sum().item<int64_t>();
  if (batch.itm_labels.defined()) c.itm_matched = batch.itm_labels.eq(1).sum().item<int64_t>();
  return c;
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

namespace {
std::pair<torch::Tensor, torch::Tensor> mrm_class_tensors(const torch::Tensor& logits, const torch::Tensor& p) {
  return ce_and_accuracy(logits, p.argmax(-1));
}

// MLM at the labelled positions (their count known on the host when `count` is given): the loss
// and its accuracy as tensors; undefined accuracy when nothing is labelled. teacher
// (train.mlm_distill): the momentum model's logits there come from teacher(positions), and each
// token's target is distill x their softmax + (1 - distill) on the true token.
std::pair<torch::Tensor, torch::Tensor> mlm_tensors(MultimodalTransformerImpl& model, const Encoded& enc,
                                                    const torch::Tensor& labels, const int64_t* count,
                                                    const std::function<torch::Tensor(const torch::Tensor&)>& teacher = {},
                                                    double distill = 0.0) {
  TORCH_CHECK(labels.sizes() == enc.text.sizes().slice(0, 2), "loss_mlm: labels must be (B, T) = ",
              enc.text.sizes().slice(0, 2), ", got ", labels.sizes());
  const auto flat_labels = labels.reshape({-1});
  const auto positions = true_positions(flat_labels.ne(kIgnoreLabel), count);
  if (positions.numel() == 0) return {torch::zeros({}, enc.text.options()), torch::Tensor()};
  const auto states = enc.text.reshape({-1, enc.text.size(2)}).index_select(0, positions);  // (M, H)
  const auto logits = model.mlm_logits(states), targets = flat_labels.index_select(0, positions);
  if (!teacher || distill <= 0) return ce_and_accuracy(logits, targets);
  return {distilled_cross_entropy(logits, teacher(positions), targets, distill), accuracy_tensor(logits, targets)};
}
std::pair<torch::Tensor, torch::Tensor> itm_tensors(MultimodalTransformerImpl& model, const Encoded& enc,
                                                    const torch::Tensor& labels) {
  TORCH_CHECK(labels.dim() == 1 && labels.size(0) == enc.text.size(0), "loss_itm: labels must be (B), got ",
              labels.sizes());
  return ce_and_accuracy(model.itm_logits(enc), labels);
}
}  // namespace

std::pair<torch::Tensor, double> loss_mrm_class_from(const torch::Tensor& logits, const torch::Tensor& p) {
  return on_host(mrm_class_tensors(logits, p));
}

std::pair<torch::Tensor, double> loss_mlm(MultimodalTransformerImpl& model, const Encoded& enc,
                                          const torch::Tensor& labels) {
  return on_host(mlm_tensors(model, enc, labels, nullptr));
}

std::pair<torch::Tensor, double> loss_itm(MultimodalTransformerImpl& model, const Encoded& enc,
                                          const torch::Tensor& labels) {
  return on_host(itm_tensors(model, enc, labels));
}

torch::Tensor distilled_cross_entropy(const torch::Tensor& logits, const torch::Tensor& teacher_logits,
                                     const torch::Tensor& targets, double distill) {
  TORCH_CHECK(logits.dim() == 2 && teacher_logits.sizes() == logits.sizes() && targets.dim() == 1 &&
                  targets.size(0) == logits.size(0),
              "distilled cross-entropy: logits and teacher logits must be (M, C) and targets (M), got ", logits.sizes(),
              ", ", teacher_logits.sizes(), ", ", targets.sizes());
  auto q = distill * torch::softmax(teacher_logits.to(logits.scalar_type()), 1);
  q.scatter_add_(1, targets.unsqueeze(1), torch::full({targets.size(0), 1}, 1.0 - distill, q.options()));
  // Classes left out (-inf logits, teacher's too) have target 0 and take no part: their -inf
  // log-probability is multiplied by nothing.
  return -(q * torch::log_softmax(logits, 1).masked_fill(q.eq(0), 0.0)).sum(1).mean();
}

torch::Tensor same_keys(const torch::Tensor& row_keys, const torch::Tensor& candidate_keys) {
  TORCH_CHECK(row_keys.dim() == candidate_keys.dim() && (row_keys.dim() == 1 || row_keys.size(1) == candidate_keys.size(1)),
              "same_keys: keys of ", row_keys.sizes(), " and ", candidate_keys.sizes(), " do not compare");
  const auto eq = row_keys.unsqueeze(1).eq(candidate_keys.unsqueeze(0));
  return row_keys.dim() == 1 ? eq : eq.any(2);
}

torch::Tensor contrastive_keys(const Batch& batch, const TrainOptions& t) {
  if (!batch.image_key.defined()) return {};
  if (t.contrastive_same_caption != "excluded") return batch.image_key;
  TORCH_CHECK(batch.caption_key.defined(), "train.contrastive_same_caption = excluded: the batch has no caption keys");
  return torch::stack({batch.image_key, batch.caption_key.to(batch.image_key.device())}, 1);
}

namespace {
std::pair<torch::Tensor, torch::Tensor> dual_contrastive_tensors(const torch::Tensor& text_emb, const torch::Tensor& image_emb,
                                                                 const torch::Tensor& scale, const torch::Tensor& image_keys) {
  TORCH_CHECK(text_emb.dim() == 2 && text_emb.sizes() == image_emb.sizes(),
              "loss_dual_contrastive: embeddings must both be (M, E), got ", text_emb.sizes(), " and ",
              image_emb.sizes());
  auto logits = scale * torch::matmul(text_emb, image_emb.t());  // (M, M), text rows
  if (image_keys.defined()) {
    TORCH_CHECK((image_keys.dim() == 1 || image_keys.dim() == 2) && image_keys.size(0) == logits.size(0),
                "loss_dual_contrastive: image_keys must be (", logits.size(0), ") or (", logits.size(0), ", K), got ",
                image_keys.sizes());
    // Off-diagonal pairs of one image (or caption): out of both softmaxes (symmetric, so one mask serves both).
    const auto keys = image_keys.to(logits.device());
    auto same = same_keys(keys, keys);
    same.fill_diagonal_(false);
    logits = logits.masked_fill(same, -std::numeric_limits<double>::infinity());
  }
  const auto target = torch::arange(logits.size(0), torch::device(logits.device()).dtype(torch::kInt64));
  const auto loss = 0.5 * (torch::cross_entropy_loss(logits, target) + torch::cross_entropy_loss(logits.t(), target));
  // Summed in float64, as the two accuracies read on the host were.
  const auto acc = 0.5 * (accuracy_tensor(logits, target).to(torch::kFloat64) + accuracy_tensor(logits.t(), target).to(torch::kFloat64));
  return {loss, acc};
}
}  // namespace

std::pair<torch::Tensor, double> loss_dual_contrastive(const torch::Tensor& text_emb, const torch::Tensor& image_emb,
                                                       const torch::Tensor& scale, const torch::Tensor& image_keys) {
  return on_host(dual_contrastive_tensors(text_emb, image_emb, scale, image_keys));
}

void DeviceMetrics::add(std::string name, torch::Tensor value, double factor) {
  names.push_back(std::move(name));
  values.push_back(std::move(value));
  factors.push_back(factor);
}

std::vector<double> DeviceMetrics::read() const {
  if (values.empty()) return {};
  std::vector<torch::Tensor> scalars;
  for (const auto& v : values) scalars.push_back(v.reshape({}).to(torch::kFloat64));
  const auto host = torch::stack(scalars).to(torch::kCPU).contiguous();
  std::vector<double> out(values.size());
  for (size_t i = 0; i < out.size(); ++i) out[i] = host.data_ptr<double>()[i] * factors[i];
  return out;
}

LossOutput pretraining_loss(MultimodalTransformerImpl& model, const Batch& batch, const TrainOptions& t,
                            Communicator* comm, const HostCounts* counts, bool defer, AlignQueue* align_queue) {
  const bool distributed = comm && comm->size() > 1;
  // How many terms each loss averages over here, and over every rank: a loss computed as a mean
  // over the local terms, times local / global, is this rank's share of the global mean.
  enum { kMlm, kMrm, kItm, kDual, kCounts };
  const bool mlm_on = t.mlm_weight > 0 && batch.mlm_labels.defined();
  const bool itm_on = t.itm_weight > 0 && batch.itm_labels.defined();
  // The counts on the host: given (read before the batch moved), else read here - either way the
  // positions below come from them by a stable sort.
  const HostCounts c = counts ? *counts : host_counts(batch);
  // The in-batch InfoNCE losses (the dual encoder's at the top, the align head's below the fusion
  // layers) run over the matched pairs: a mismatched one would be a false positive.
  // (validate_config allows one of the two: dual encoders have no align head.)
  const bool align = t.dual_contrastive_weight <= 0;
  const double contrastive_weight = align ? t.align_weight : t.dual_contrastive_weight;
  const char* contrastive_name = align ? "align" : "dual";
  torch::Tensor dual_rows;
  if (contrastive_weight > 0)
    dual_rows = batch.itm_labels.defined() ? true_positions(batch.itm_labels.eq(1), &c.itm_matched)
                                           : torch::arange(batch.size(), batch.text_ids.options());
  std::vector<double> local(kCounts, 0.0);
  if (mlm_on) local[kMlm] = static_cast<double>(c.mlm);
  if (batch.mrm_mask.defined()) local[kMrm] = static_cast<double>(c.mrm);
  if (itm_on) local[kItm] = static_cast<double>(batch.size());
  if (dual_rows.defined()) local[kDual] = static_cast<double>(dual_rows.numel());
  std::vector<double> global = local;
  std::vector<int64_t> dual_counts{static_cast<int64_t>(local[kDual])};
  if (distributed) {
    const auto per_rank = comm->all_gather(torch::tensor(local, torch::kFloat64), "loss counts").contiguous();  // (W, kCounts)
    const auto sums = per_rank.sum(0).contiguous();
    std::copy(sums.data_ptr<double>(), sums.data_ptr<double>() + kCounts, global.begin());
    dual_counts.clear();
    for (int r = 0; r < comm->size(); ++r) dual_counts.push_back(static_cast<int64_t>(per_rank[r][kDual].item<double>()));
  }
  auto share = [&](int k) { return global[k] > 0 ? local[k] / global[k] : 0.0; };

  const Encoded enc = model.encode(batch, /*per_layer=*/t.itm_all_layers);
  LossOutput out;
  out.total = torch::zeros({}, torch::device(enc.text.device()));
  // The metrics as scalar tensors (factor: this rank's share, applied on the host), read in one
  // transfer at the end: one wait for the device per step rather than one per number.
  DeviceMetrics& pending = out.pending;
  std::map<std::string, double> weights;  // of each loss in the reported total
  // `f`: this rank's share of the loss (1 in one process); the metrics are shares too, so summing
  // them over ranks gives the global values.
  // `acc`: undefined for losses without an accuracy; ranks report one wherever any rank may have it
  // (every rank must send the same metric names).
  auto add = [&](const char* name, const torch::Tensor& loss, double weight, const torch::Tensor& acc, double f,
                 bool has_acc) {
    if (f > 0) out.total = out.total + (f == 1.0 ? weight * loss : weight * f * loss);
    if (f > 0) pending.add(name, loss.detach(), f);
    else out.metrics[name] = 0.0;
    weights[name] = weight;
    if (has_acc && (distributed || acc.defined())) {
      const std::string key = std::string(name) + "_acc";
      if (f > 0 && acc.defined()) pending.add(key, acc, f);
      else out.metrics[key] = 0.0;
    }
  };
  if (mlm_on && global[kMlm] > 0) {
    if (local[kMlm] > 0) {
      std::function<torch::Tensor(const torch::Tensor&)> teacher;
      if (align_queue && t.mlm_distill > 0)
        teacher = [&](const torch::Tensor& positions) { return align_queue->mlm_logits(batch, positions); };
      auto [loss, acc] = mlm_tensors(model, enc, batch.mlm_labels, &c.mlm, teacher, t.mlm_distill);
      add("mlm", loss, t.mlm_weight, acc, share(kMlm), true);
    } else {
      add("mlm", torch::Tensor(), t.mlm_weight, torch::Tensor(), 0.0, true);
    }
  }
  if (global[kMrm] > 0) {
    torch::Tensor positions, states, classes;
    if (local[kMrm] > 0) {
      positions = true_positions(batch.mrm_mask.reshape({-1}), &c.mrm);
      states = enc.image.reshape({-1, enc.image.size(2)}).index_select(0, positions);  // (M, H)
      classes = batch.region_classes.reshape({-1, batch.region_classes.size(2)}).index_select(0, positions);
    }
    const double f = share(kMrm);
    if (t.mrm_regression_weight > 0) {
      torch::Tensor loss;
      if (f > 0) {
        const auto target = batch.region_targets.reshape({-1, batch.region_targets.size(2)}).index_select(0, positions);
        loss = loss_mrm_regression_from(model.mrm_features(states), target);
      }
      add("mrm_regression", loss, t.mrm_regression_weight, torch::Tensor(), f, false);
    }
    if (t.mrm_kl_weight > 0 || t.mrm_class_weight > 0) {
      const auto logits = f > 0 ? model.mrm_class_logits(states) : torch::Tensor();
      if (t.mrm_kl_weight > 0)
        add("mrm_kl", f > 0 ? loss_mrm_kl_from(logits, classes) : torch::Tensor(), t.mrm_kl_weight, torch::Tensor(), f, false);
      if (t.mrm_class_weight > 0) {
        torch::Tensor loss, acc;
        if (f > 0) std::tie(loss, acc) = mrm_class_tensors(logits, classes);
        add("mrm_class", loss, t.mrm_class_weight, acc, f, true);
      }
    }
  }
  if (itm_on && global[kItm] > 0) {
    auto [loss, acc] = itm_tensors(model, enc, batch.itm_labels);
    if (t.itm_all_layers) {  // the same head after every layer, averaged (the top one included)
      auto sum = torch::zeros({}, torch::device(enc.text.device()));
      for (size_t l = 0; l < enc.layer_cls.size(); ++l)
        sum = sum + torch::cross_entropy_loss(model.itm_logits(enc.layer_cls[l], enc.layer_img[l]), batch.itm_labels);
      loss = sum / static_cast<double>(enc.layer_cls.size());
    }
    add("itm", loss, t.itm_weight, acc, share(kItm), true);
  }
  if (dual_rows.defined() && global[kDual] >= 2) {
    TORCH_CHECK(!align || enc.align_cls.defined(), "train.align_weight: the model has no align head (model.align)");
    torch::Tensor cls, img;
    if (align) {
      std::tie(cls, img) = align_states(model, batch, enc, dual_rows, t.align_inputs == "unmasked", c);
    } else {
      cls = enc.text.select(1, 0).index_select(0, dual_rows), img = enc.image.select(1, 0).index_select(0, dual_rows);
    }
    torch::Tensor text_emb, image_emb, scale;
    if (align) {
      auto e = model.align_embeddings(cls, img);
      text_emb = e.text, image_emb = e.image, scale = e.scale;
    } else {
      text_emb = model.text_embedding(cls), image_emb = model.image_embedding(img), scale = model.logit_scale_value();
    }
    auto keys = contrastive_keys(batch, t);
    if (keys.defined()) keys = keys.to(dual_rows.device()).index_select(0, dual_rows);
    // The queue's candidates for these rows: the momentum model's embeddings of them.
    torch::Tensor text_m, image_m;
    if (align && align_queue) std::tie(text_m, image_m) = align_queue->embeddings(batch, dual_rows, t.align_inputs == "unmasked");
    double f = 1.0;
    if (distributed) {
      // Every rank scores the whole global batch: its own rows keep their graph, the others' are
      // constants, so the sum over ranks of the gradients is the one-process gradient. The
      // temperature enters every rank's copy of the loss: its gradient is divided among them.
      // Text and image embeddings side by side: one gather per step, not two.
      const int64_t e = text_emb.size(1);
      const auto both = all_gather_rows(*comm, torch::cat({text_emb, image_emb}, 1), dual_counts,
                                        align ? "align embeddings" : "dual-encoder embeddings");
      text_emb = both.narrow(1, 0, e), image_emb = both.narrow(1, e, both.size(1) - e);
      if (keys.defined()) keys = all_gather_rows(*comm, keys, dual_counts, "contrastive keys");
      if (text_m.defined()) {
        const auto m = all_gather_rows(*comm, torch::cat({text_m, image_m}, 1), dual_counts, "momentum align embeddings");
        text_m = m.narrow(1, 0, e), image_m = m.narrow(1, e, m.size(1) - e);
      }
      const double w = static_cast<double>(comm->size());
      scale = scale.detach() + (scale - scale.detach()) / w;
      f = 1.0 / w;
    }
    torch::Tensor loss, acc;
    if (text_m.defined()) {
      std::tie(loss, acc) = queued_align_loss(text_emb, image_emb, text_m, image_m, align_queue->text(), align_queue->image(),
                                              scale, keys, align_queue->keys(), t.align_distill);
      align_queue->push(text_m, image_m, keys);  // every rank the same global batch: the queues agree
    } else {
      std::tie(loss, acc) = dual_contrastive_tensors(text_emb, image_emb, scale, keys);
    }
    out.total = out.total + contrastive_weight * loss;
    pending.add(contrastive_name, loss.detach(), f);
    pending.add(std::string(contrastive_name) + "_acc", acc, f);
    weights[contrastive_name] = contrastive_weight;
  }
  // One process reports the total it optimises; ranks the weighted sum of their shares.
  if (!distributed) pending.add("loss", out.total.detach());
  if (defer && !distributed) return out;  // the summed total needs the ranks' values on the host
  const std::vector<double> values = pending.read();
  for (size_t i = 0; i < values.size(); ++i) out.metrics[pending.names[i]] = values[i];
  pending = {};
  if (distributed) {
    double total = 0;
    for (const auto& [name, w] : weights) total += w * out.metrics[name];
    out.metrics["loss"] = total;
  }
  return out;
}

}  // namespace mmt
