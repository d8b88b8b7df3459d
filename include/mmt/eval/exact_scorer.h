/* Exact zero-shot retrieval scoring: every (caption, image) pair of a test set goes through
 * the multimodal transformer and is scored by its ITM head.
 *
 * What does not depend on the pair is computed once: each caption's and each image's
 * embeddings. Captions are grouped by length and images by token count, so the pair batches
 * carry almost no padding. The score is the ITM logit margin (match - mismatch): monotone in
 * the match probability, without the ties that a saturated fp32 softmax would create. */
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
