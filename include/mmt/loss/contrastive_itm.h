/* Contrastive ITM inside a multimodal transformer (PAPER.md "Losses"; the release's
 * `loss_*-contrastive32/1024`): each matched caption of the batch is scored with its own image
 * and with K negative images, one forward pass of the multimodal layers per pair, and the loss is
 * the softmax cross-entropy of the K + 1 scores with the own image as target.
 *
 * B x (K + 1) pair passes do not fit in memory at K = 1024, so the gradient is computed in two
 * passes: (1) every score without a graph, in chunks; (2) chunk by chunk again with a graph,
 * back-propagating d loss / d score = (softmax - onehot) / B into the parameters. That is the
 * exact gradient of the unchunked loss with memory bounded by one chunk - with dropout too: the
 * second pass over a chunk replays the generator state of its first, so it draws the same masks.
 * Layers below the first cross-modal one run once per caption and per image, not per pair. */
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <utility>

namespace mmt {

struct Batch;
class MultimodalTransformerImpl;

struct ContrastiveItmResult {
  double loss = 0;      // mean over captions of -log softmax(own image)
  double accuracy = 0;  // fraction of captions whose own image scores highest
  int64_t captions = 0; // matched captions used
};

/// The loss on given scores (M, K + 1), candidate 0 the target, excluded (M, K + 1) candidates out
/// of the softmax: mean over rows of -log softmax(scores)[0]. Returns (loss, accuracy).
std::pair<torch::Tensor, double> contrastive_loss_from_scores(const torch::Tensor& scores, const torch::Tensor& excluded);

/// Scores and, when `weight` > 0 and the model is training, accumulates weight x the gradient
/// of the loss into the parameters' .grad. Uses batch.negatives / negative_excluded and the
/// matched pairs (itm_labels == 1). `chunk`: pairs per forward pass.
ContrastiveItmResult contrastive_itm(MultimodalTransformerImpl& model, const Batch& batch, double weight,
                                     int64_t chunk);

}  // namespace mmt
