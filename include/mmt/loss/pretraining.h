/* The pretraining losses (PAPER.md "Losses"), each as a function of the model's outputs, and the
 * weighted sum one training step optimises. Every loss returns its value and an accuracy so the
 * trainer logs them separately. The *_from_* forms take plain tensors: they are what the golden
 * tests check against python3-torch.
 *
 *   mlm             cross-entropy of the MLM head at masked tokens of matched pairs
 *   mrm_kl          KL(detector class distribution || predicted) at masked regions
 *   mrm_regression  mean squared error to the original region feature at masked regions
 *   mrm_class       cross-entropy to the detector's top class at masked regions
 *   itm             2-way cross-entropy of the ITM head (optionally after every layer)
 *   dual            symmetric InfoNCE of a dual encoder over in-batch pairs
 *   align           the same InfoNCE on a transformer's align head, below its fusion layers (ALBEF's ITC) */
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <vector>

#include "mmt/config/options.h"

namespace mmt {

struct Batch;
struct Encoded;
class MultimodalTransformerImpl;
class Communicator;
class AlignQueue;

/// What the losses count in a batch (-1: the batch has no such labels).
struct HostCounts {
  int64_t mlm = -1;  // labelled MLM tokens
  int64_t mrm = -1;  // masked regions
  int64_t itm_matched = -1;  // rows whose ITM label is 1 (the dual-encoder loss's pairs)
};
HostCounts host_counts(const Batch& batch);

/// Named scalar metrics still on the device, read in one transfer (each .item() would be a wait).
struct DeviceMetrics {
  std::vector<std::string> names;
  std::vector<torch::Tensor> values;  // scalars, detached
  std::vector<double> factors;        // multiplied in on the host

  void add(std::string name, torch::Tensor value, double factor = 1.0);
  bool empty() const { return names.empty(); }
  /// value x factor of each, in order (waits for the device).
  std::vector<double> read() const;
};

struct LossOutput {
  torch::Tensor total;                    // weighted sum, scalar, differentiable
  std::map<std::string, double> metrics;  // each loss and its accuracy, and `loss` (detached values)
  DeviceMetrics pending;                  // pretraining_loss with `defer`: metrics not yet read
};

/// Mean cross-entropy of logits (M, V) against targets (M); returns (loss, accuracy).
std::pair<torch::Tensor, double> loss_from_logits(const torch::Tensor& logits, const torch::Tensor& targets);

/// MRM regression: mean over elements of (pred - target)^2, both (M, F).
torch::Tensor loss_mrm_regression_from(const torch::Tensor& pred, const torch::Tensor& target);
/// MRM KL: mean over regions of KL(p || softmax(logits)), logits and p (M, C), p rows summing to 1.
torch::Tensor loss_mrm_kl_from(const torch::Tensor& logits, const torch::Tensor& p);
/// MRM class: cross-entropy to argmax p; returns (loss, accuracy).
std::pair<torch::Tensor, double> loss_mrm_class_from(const torch::Tensor& logits, const torch::Tensor& p);

/// MLM: cross-entropy of the MLM head at positions with labels != kIgnoreLabel.
/// Only the labelled positions go through the head (M x V logits, not B x T x V).
/// Returns (loss, accuracy); loss is 0 (and accuracy NaN) when nothing is labelled.
std::pair<torch::Tensor, double> loss_mlm(MultimodalTransformerImpl& model, const Encoded& enc,
                                          const torch::Tensor& labels);

/// ITM: 2-way cross-entropy of the ITM head against labels (B) in {0, 1}. Returns (loss, accuracy).
std::pair<torch::Tensor, double> loss_itm(MultimodalTransformerImpl& model, const Encoded& enc,
                                          const torch::Tensor& labels);

/// Cross-entropy of logits (M, C) to the targets distill x softmax(teacher_logits) + (1 - distill)
/// on class targets (M): momentum distillation (ALBEF: train.mlm_distill, train.align_distill),
/// averaged over the rows. A class left out of both softmaxes (-inf in both logits) takes no part.
torch::Tensor distilled_cross_entropy(const torch::Tensor& logits, const torch::Tensor& teacher_logits,
                                     const torch::Tensor& targets, double distill);

/// Which candidates each row leaves out of an InfoNCE softmax: (M, N) bool, true where a row's key
/// and a candidate's agree - keys (M) / (N) int64 (Batch::image_key), or (M, K) / (N, K) whose rows
/// agree where any column does (contrastive_keys: image, caption).
torch::Tensor same_keys(const torch::Tensor& row_keys, const torch::Tensor& candidate_keys);
/// The keys the in-batch and queued InfoNCE losses compare, per row of `batch`: Batch::image_key
/// (B), or with train.contrastive_same_caption = excluded (B, 2) - image key, caption key.
/// Undefined where the batch has no image keys (every row its own image).
torch::Tensor contrastive_keys(const Batch& batch, const TrainOptions& t);

/// Dual-encoder InfoNCE: symmetric cross-entropy over scale * text_emb @ image_emb^T, pair i
/// matching pair i, the other rows as negatives - except rows of the same image (image_keys (M)
/// int64, Batch::image_key; or (M, K), contrastive_keys: the same image or caption; undefined =
/// every row its own), which are left out of both directions' softmax: another caption of one's
/// own image is no negative. Embeddings (M, E)
/// normalised; scale a scalar. Takes embeddings rather than a batch so negatives can be gathered
/// across processes first. Returns (loss, accuracy of both directions' argmax).
std::pair<torch::Tensor, double> loss_dual_contrastive(const torch::Tensor& text_emb, const torch::Tensor& image_emb,
                                                       const torch::Tensor& scale,
                                                       const torch::Tensor& image_keys = torch::Tensor());

/// One forward pass of the batch and the weighted pretraining losses. With a communicator of
/// several ranks, `batch` is this rank's share of the global batch: each loss is normalised by its
/// global count (so the gradients summed over ranks are those of the whole batch in one process),
/// dual-encoder and align InfoNCE run over every rank's pairs, and the metrics are this rank's shares
/// (their sum over ranks is the global value; `loss` included).
/// `counts`: the batch's labelled MLM tokens and masked regions read before it moved to a
/// device (host_counts of the host batch), so the step need not wait for the device to learn
/// them; without, they are read from `batch`. The metrics are read in one transfer at the end;
/// with `defer` (one process only) they are left in `pending` instead, unread, so the caller can
/// queue more work before waiting for the device.
/// `align_queue` (train.align_queue): the align loss reads its momentum embeddings and queue
/// (align_queue.h) and pushes the global batch's onto it.
LossOutput pretraining_loss(MultimodalTransformerImpl& model, const Batch& batch, const TrainOptions& t,
                            Communicator* comm = nullptr, const HostCounts* counts = nullptr, bool defer = false,
                            AlignQueue* align_queue = nullptr);

}  // namespace mmt
