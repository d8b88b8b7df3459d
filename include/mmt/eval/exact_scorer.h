/* Exact zero-shot retrieval scoring: every (caption, image) pair of a test set goes through
 * the multimodal transformer and is scored by its ITM head.
 *
 * What does not depend on the pair is computed once: each caption's and each image's
 * embeddings and the layers below the first cross-modal layer (model.first_cross_modal_layer).
 * When no layer crosses modalities (single_modality stacks, dual encoders) the pair score is a
 * bilinear function of the two pooled states and all C x N scores come from one matrix product:
 * exact, at the cost of C + N forward passes. Captions are grouped by length and images by token
 * count, so pair batches carry almost no padding. The score is MultimodalTransformer::
 * match_scores: the ITM logit margin (match - mismatch), monotone in the match probability and
 * free of the ties a saturated fp32 softmax creates, or a dual encoder's scaled cosine. */
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace mmt {

class ImageSource;
class MultimodalTransformerImpl;

struct ExactScorerOptions {
  int64_t pair_batch = 2048;   // pairs per forward pass
};

/// Called after each pair batch with (pairs done, pairs total).
using PairProgress = std::function<void(int64_t, int64_t)>;

/// Scores (num_captions x num_images), row-major, for every caption (token ids with [CLS]
/// and [SEP]) against every image of the source.
std::vector<float> score_exact(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
                               const ImageSource& images, const ExactScorerOptions& options,
                               const PairProgress& progress = {});

}  // namespace mmt
