/* One pretraining step (see pretrain_step.h). */
#include "mmt/train/pretrain_step.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <map>
#include <numeric>
#include <optional>

#include "mmt/data/batch.h"
#include "mmt/loss/align_queue.h"
#include "mmt/loss/contrastive_itm.h"
#include "mmt/train/hard_negatives.h"
#include "mmt/model/transformer.h"
#include "mmt/train/distributed.h"
#include "mmt/train/grad_buckets.h"
#include "mmt/util/device.h"

namespace mmt {

PretrainStep::PretrainStep(MultimodalTransformerImpl& model, const TrainOptions& t, const RuntimeOptions& runtime,
                           Communicator* comm)
    : model_(model), options_(t), device_(resolve_device(runtime.device)), bf16_(use_bf16(runtime)),
      comm_(comm && comm->size() > 1 ? comm : nullptr) {
  std::vector<torch::Tensor> params;
  std::vector<bool> decay;
  for (const auto& p : model.parameters()) {
    params.push_back(p);
    decay.push_back(p.dim() >= 2);  // matrices and embeddings; not biases, norms, type vectors
  }
  AdamWSettings s;
  s.beta1 = t.adam_beta1, s.beta2 = t.adam_beta2, s.eps = t.adam_eps, s.weight_decay = t.weight_decay;
  s.decoupled = t.optimizer == "adamw";
  // Per-parameter learning-rate scale: layers with cross-modal attention get cross_modal_lr_mult.
  std::vector<double> scale;
  if (t.cross_modal_lr_mult != 1.0) {
    const auto types = layer_types(model.options());
    for (const auto& item : model.named_parameters()) {
      double m = 1.0;
      const std::string& name = item.key();
      if (name.rfind("layers.", 0) == 0) {
        const size_t layer = std::stoul(name.substr(7, name.find('.', 7) - 7));
        if (layer < types.size() && types[layer] != AttentionType::kSingleModality) m = t.cross_modal_lr_mult;
      }
      scale.push_back(m);
    }
  }
  optimizer_ = std::make_unique<FlatAdamW>(params, decay, s, scale, runtime.fused_adamw && device_.is_cuda());
  // launch() need not wait for the device where the fused kernel can cancel an update there.
  defer_ = device_.is_cuda() && !comm_ && optimizer_->fused() && t.itm_contrastive_weight <= 0;
  // Contrastive ITM back-propagates in chunks after the main backward pass: its gradient is
  // complete only then, so it keeps the one all-reduce after everything.
  if (comm_ && runtime.dist_bucket_mb > 0 && t.itm_contrastive_weight <= 0)
    buckets_ = std::make_unique<GradBuckets>(params, optimizer_->grads(),
                                             static_cast<int64_t>(runtime.dist_bucket_mb * (1 << 20)), *comm_);
  if (t.momentum_model())
    align_queue_ = std::make_unique<AlignQueue>(model, t.align_queue, t.align_momentum,
                                                t.contrastive_same_caption == "excluded" ? 2 : 1, t.momentum_mlm_teacher());
}

void PretrainStep::after_update() {
  if (align_queue_) align_queue_->update(model_);
}

int64_t PretrainStep::num_buckets() const { return buckets_ ? buckets_->num_buckets() : 0; }

PretrainStep::~PretrainStep() = default;

PretrainStep::Result PretrainStep::run(const Batch& input, double lr, int64_t step) {
  return run(std::vector<Batch>{input}, lr, step);
}

PretrainStep::Result PretrainStep::run(const std::vector<Batch>& micro_batches, double lr, int64_t step) {
  return launch(micro_batches, lr, step).get();
}

PretrainStep::Pending PretrainStep::launch(const std::vector<Batch>& micro_batches, double lr, int64_t step) {
  optimizer_->zero_grad();
  if (align_queue_) align_queue_->start(model_);  // the first step: the weights as initialised, loaded or broadcast
  // train.distill_ramp: the distillation weights at this step, step / ramp of the full ones.
  std::optional<TrainOptions> ramped;
  if (align_queue_ && step < options_.distill_ramp) {
    ramped = options_;
    const double f = static_cast<double>(std::max<int64_t>(step, 0)) / static_cast<double>(options_.distill_ramp);
    ramped->align_distill *= f, ramped->mlm_distill *= f;
  }
  Pending pending;
  pending.deferred_ = defer_;
  Result& r = pending.result_;
  const double n = static_cast<double>(micro_batches.size());
  std::map<std::string, double> sums;
  torch::Tensor loss_sum;  // deferred: the micro-batches' totals, whose finiteness decides the update
  for (size_t k = 0; k < micro_batches.size(); ++k) {
    // Counted on the host before the copy: the loss need not wait for the device to learn them.
    // Not with hard negatives, which take targets away from the rows they swap (and wait anyway).
    const bool hard = micro_batches[k].hard_negative_rows.defined();
    const HostCounts counts = hard ? HostCounts{} : host_counts(micro_batches[k]);
    Batch batch = batch_to(micro_batches[k], device_);
    // Forward passes (and contrastive ITM's chunked backward) under autocast; the main backward
    // outside it, as libtorch recommends.
    LossOutput loss;
    {
      const AutocastGuard autocast(device_, bf16_);
      // Distributed: hard negatives are mined among this rank's rows (docs/distributed.md).
      apply_hard_negatives(model_, batch, options_,
                           step * static_cast<int64_t>(micro_batches.size()) + static_cast<int64_t>(k));
      loss = pretraining_loss(model_, batch, ramped ? *ramped : options_, comm_, hard ? nullptr : &counts, defer_,
                              align_queue_.get());
    }
    if (defer_) {
      // Read later, all at once; each value's factor takes its share of the micro-batches' mean.
      const auto total = loss.total.detach();
      loss_sum = loss_sum.defined() ? loss_sum + total : total;
      for (size_t i = 0; i < loss.pending.names.size(); ++i)
        pending.device_.add(loss.pending.names[i], loss.pending.values[i], loss.pending.factors[i] / n);
      loss.pending = {};
    }
    // One process stops at a non-finite loss before its backward; ranks cannot (the others would
    // wait in the collectives): they decide together below, from the summed metrics. Deferred,
    // the device decides: the update is cancelled there.
    if (!comm_ && !defer_ && !std::isfinite(loss.metrics["loss"])) {
      r.loss = std::move(loss);
      r.finite = false;
      return pending;
    }
    if (buckets_ && k + 1 == micro_batches.size()) buckets_->arm();  // the step's gradient completes in this pass
    // A batch can leave the main pass without a loss: no caption token drawn for MLM where MLM is
    // its only loss (contrastive ITM back-propagates below). Then it has no gradient to give; a
    // rank's unfilled buckets still start, in order, at finish().
    if (loss.total.requires_grad()) (n == 1 ? loss.total : loss.total / n).backward();
    if (options_.itm_contrastive_weight > 0) {  // back-propagates itself, chunk by chunk
      double f = 1.0;  // this rank's share of the matched captions
      if (comm_) {
        const double mine = static_cast<double>(batch.itm_labels.eq(1).sum().item<int64_t>());
        const double all = all_reduce_sum(comm_, {mine}, "contrastive ITM counts")[0];
        f = all > 0 ? mine / all : 0.0;
      }
      const AutocastGuard contrastive_autocast(device_, bf16_);
      const auto c = f > 0 ? contrastive_itm(model_, batch, options_.itm_contrastive_weight * f / n, options_.itm_contrastive_chunk)
                           : ContrastiveItmResult{};
      loss.metrics["itm_contrastive"] = c.loss * f;
      loss.metrics["itm_contrastive_acc"] = c.accuracy * f;
      loss.metrics["loss"] += options_.itm_contrastive_weight * c.loss * f;
      if (!comm_ && !std::isfinite(c.loss)) {
        r.loss = std::move(loss);
        r.finite = false;
        return pending;
      }
    }
    for (const auto& [key, v] : loss.metrics) sums[key] += v / n;
    if (k + 1 == micro_batches.size()) r.loss = std::move(loss);
  }
  if (comm_) {
    // The gradient of the global batch: every rank's share, summed.
    const auto t0 = std::chrono::steady_clock::now();
    if (buckets_) buckets_->finish();  // the buckets still running (or waiting) after the backward pass
    else comm_->all_reduce_sum(optimizer_->grads(), "gradients");
    all_reduce_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::vector<double> values;
    for (const auto& [key, v] : sums) values.push_back(v);
    values = all_reduce_sum(comm_, values, "loss metrics");  // same keys on every rank, in map order
    size_t i = 0;
    for (auto& [key, v] : sums) v = values[i++];
    if (!std::isfinite(sums["loss"])) {
      r.loss.metrics = sums;
      r.finite = false;
      return pending;
    }
  }
  r.loss.metrics = sums;
  // The gradient norm is taken on every step, clipped or not: a finite loss can still
  // back-propagate an infinity or a NaN (an overflow in the backward pass), and one such update
  // would turn every weight into NaN. Such a step is skipped like a non-finite loss. Ranks hold
  // the same summed gradient, so they agree without another collective. `grad_norm` is logged
  // where it clips (train.grad_clip > 0) or where it is the reason for the skip.
  const bool log_norm = options_.grad_clip > 0;
  auto norm_allows_update = [&](double norm) {
    if (log_norm || !std::isfinite(norm)) r.loss.metrics["grad_norm"] = norm;
    r.finite = std::isfinite(norm);
    return r.finite;
  };
  if (!device_.is_cuda()) {
    if (norm_allows_update(optimizer_->clip_grad_norm(options_.grad_clip))) optimizer_->step(lr), after_update();
    return pending;
  }
  // On a GPU the clip needs no wait, and the fused kernel cancels a non-finite step on the
  // device: the norm is read after the update is queued (deferred: with the losses, a step later).
  const torch::Tensor norm = optimizer_->clip_grad_norm_async(options_.grad_clip);
  if (optimizer_->fused()) {
    auto bad = torch::isfinite(norm).logical_not();
    if (defer_) bad = bad.logical_or(torch::isfinite(loss_sum).logical_not());
    optimizer_->step(lr, bad.to(torch::kFloat));
    after_update();  // a step cancelled on the device left the weights alone: the average moves toward them anyway
    if (defer_) {
      pending.device_.add("grad_norm", norm);
      pending.log_norm_ = log_norm;
      return pending;
    }
  }
  // Fused: already queued, and cancelled on the device if the norm is not finite; otherwise the
  // update waits for the norm.
  if (norm_allows_update(norm.item<double>()) && !optimizer_->fused()) optimizer_->step(lr), after_update();
  return pending;
}

PretrainStep::Result PretrainStep::Pending::get() {
  if (!deferred_) return result_;
  deferred_ = false;
  const std::vector<double> values = device_.read();
  // Added to what the host knew already (zero shares, averaged): each micro-batch's share of the
  // mean, and the gradient norm once.
  auto& metrics = result_.loss.metrics;
  for (size_t i = 0; i < values.size(); ++i) metrics[device_.names[i]] += values[i];
  const bool loss_finite = std::isfinite(metrics["loss"]);
  result_.finite = loss_finite && std::isfinite(metrics["grad_norm"]);
  // The norm is kept where it is logged, or where it alone cancelled the update.
  if (!loss_finite || (result_.finite && !log_norm_)) metrics.erase("grad_norm");
  device_ = {};
  return result_;
}

GradientShare largest_gradient_share(MultimodalTransformerImpl& model) {
  std::vector<std::string> names;
  std::vector<torch::Tensor> squares;
  for (const auto& item : model.named_parameters()) {
    const auto& g = item.value().grad();
    if (!g.defined()) continue;
    names.push_back(item.key());
    squares.push_back(g.detach().to(torch::kFloat32).square().sum());
  }
  GradientShare out;
  if (squares.empty()) return out;
  const torch::Tensor sq = torch::stack(squares).to(torch::kCPU, torch::kFloat64).contiguous();  // one transfer
  const double* v = sq.data_ptr<double>();
  const double whole = std::accumulate(v, v + sq.numel(), 0.0);
  const int64_t top = std::max_element(v, v + sq.numel()) - v;
  out.name = names[static_cast<size_t>(top)];
  out.norm = std::sqrt(v[top]), out.total = std::sqrt(whole);
  out.share = whole > 0 ? v[top] / whole : 0;
  return out;
}

}  // namespace mmt
