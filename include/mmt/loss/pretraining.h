/* The pretraining losses of the foundation: MLM over masked tokens of matched pairs and ITM
 * classification (match / mismatch). Each loss returns its value and its accuracy so that the
 * trainer can log them separately. */
#pragma once

#include <torch/types.h>

#include <map>
#include <string>

#include "mmt/config/options.h"

namespace mmt {

struct Batch;
struct Encoded;
class MultimodalTransformerImpl;

struct LossOutput {
  torch::Tensor total;                    // weighted sum, scalar, differentiable
  std::map<std::string, double> metrics;  // mlm, mlm_acc, itm, itm_acc, dual, dual_acc, loss
};

/// MLM: cross-entropy of the MLM head at positions with labels != kIgnoreLabel.
/// Only the labelled positions go through the head (M x V logits, not B x T x V).
/// Returns (loss, accuracy); loss is 0 (and accuracy NaN) when nothing is labelled.
std::pair<torch::Tensor, double> loss_mlm(MultimodalTransformerImpl& model, const Encoded& enc,
                                          const torch::Tensor& labels);

/// ITM: 2-way cross-entropy of the ITM head against labels (B) in {0, 1}. Returns (loss, accuracy).
std::pair<torch::Tensor, double> loss_itm(MultimodalTransformerImpl& model, const Encoded& enc,
                                          const torch::Tensor& labels);

/// Dual-encoder InfoNCE: symmetric cross-entropy over scale * text_emb @ image_emb^T, pair i
/// matching pair i, the other rows as negatives. Embeddings (M, E) normalised; scale a scalar.
/// Takes embeddings rather than a batch so negatives can be gathered across processes first.
/// Returns (loss, accuracy of both directions' argmax).
std::pair<torch::Tensor, double> loss_dual_contrastive(const torch::Tensor& text_emb, const torch::Tensor& image_emb,
                                                       const torch::Tensor& scale);

/// One forward pass of the batch and the weighted pretraining losses.
LossOutput pretraining_loss(MultimodalTransformerImpl& model, const Batch& batch, const TrainOptions& t);

}  // namespace mmt
