/* Zero-shot retrieval scoring: exact, dual and two-stage (rerank).
 *
 * exact: every (caption, image) pair goes through the multimodal transformer and is scored by
 * its ITM head. What does not depend on the pair is computed once: each caption's and each
 * image's embeddings and the layers below the first cross-modal layer
 * (model.first_cross_modal_layer); `cache = false` turns that off, for checking and timing.
 * When no layer crosses modalities (single_modality stacks, dual encoders) the pair score is a
 * bilinear function of the two pooled states and all C x N scores come from one matrix product:
 * exact, at the cost of C + N forward passes. Captions are grouped by length and images by token
 * count, so pair batches carry no padding. The score is MultimodalTransformer::match_scores: the
 * ITM logit margin (match - mismatch), monotone in the match probability and free of the ties a
 * saturated fp32 softmax creates, or a dual encoder's scaled cosine. On the CPU the pair batches
 * run on `threads` threads side by side, each with single-threaded matrix products: on small
 * models half a step is elementwise work that one thread would do alone while the BLAS threads
 * spin (1.5x on 2 cores, docs/performance.md).
 *
 * dual: one vector per caption and per image, compared by a matrix product. For stacks without
 * cross-modal layers this *is* exact. Otherwise the vectors are the [CLS] / [IMG] states below
 * the first cross-modal layer (the embeddings for a stack that crosses from layer 0), compared by
 * cosine: nothing trained them to match, so it is a cheap first stage, not a retrieval model.
 *
 * rerank: each caption's top k images and each image's top k captions under a first stage are
 * re-scored exactly; the rest keep the first stage's order below them (ALBEF's two stages). With
 * k = all candidates it is exact. */
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mmt {

class ImageSource;
class MultimodalTransformerImpl;

struct ExactScorerOptions {
  /// Pairs per pass where eval.pair_batch = 0: on a CPU small passes stay in each thread's cache
  /// (64: 1.5-1.65x the pairs/s of 2048 on tiny shapes at about an eighth of the memory,
  /// docs/performance.md); a GPU wants large ones.
  static constexpr int64_t kCpuPairBatch = 64, kCudaPairBatch = 2048;
  int64_t pair_batch = kCpuPairBatch;  // pairs per forward pass
  bool cache = true;           // unimodal layers once per caption / image (false: per pair)
  std::string device = "cpu";  // runtime.device
  bool bf16 = false;           // bf16 autocast
  int64_t threads = 1;         // CPU: pair passes on this many threads, each with 1-thread BLAS
};

/// Whether exact scores of `model` are one matrix product of cached unimodal vectors (options.cache
/// and no layer crossing modalities) rather than pair passes - all_pairs() and pairs() decide by
/// it, and an evaluation's record of pair_batch and threads applies only where it is false.
bool scores_by_one_product(const MultimodalTransformerImpl& model, const ExactScorerOptions& options);

/// Called after each pair batch with (pairs done, pairs total).
using PairProgress = std::function<void(int64_t, int64_t)>;

/// Holds one test set's captions and images, embedded (and run through the unimodal layers)
/// once, and scores pairs of them. The model is moved to options.device if it is elsewhere.
class PairScorer {
 public:
  PairScorer(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
             const ImageSource& images, const ExactScorerOptions& options);
  ~PairScorer();
  PairScorer(const PairScorer&) = delete;
  PairScorer& operator=(const PairScorer&) = delete;

  int64_t num_captions() const;
  int64_t num_images() const;
  /// Exact scores of all pairs: (captions x images), row-major.
  std::vector<float> all_pairs(const PairProgress& progress = {});
  /// Exact scores of the pairs (caption[p], image[p]), in order.
  std::vector<float> pairs(const std::vector<int64_t>& caption, const std::vector<int64_t>& image,
                           const PairProgress& progress = {});
  /// The dual scores (captions x images) and what they are (see the file comment).
  std::vector<float> dual_scores();
  std::string dual_description() const;
  /// Whether the dual scores are the exact ones (no layer crosses modalities).
  bool dual_is_exact() const;
  /// The vectors behind dual_scores(): score(c, i) = scale * text[c] . image[i] + bias; text
  /// (captions x dim) and image (images x dim), row-major (`mmt embed`).
  struct DualEmbeddings {
    std::vector<float> text, image;
    int64_t dim = 0;
    double scale = 1, bias = 0;
  };
  DualEmbeddings dual_embeddings();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Identical captions once: the distinct ones in first-seen order, and each caption's row among
/// them. Exact scoring gives a row one score for all its captions (their ties exact), and
/// distributed scoring splits rows, not captions, between the ranks.
struct DistinctCaptions {
  std::vector<std::vector<int64_t>> rows;
  std::vector<int64_t> row_of;  // caption -> row
};
DistinctCaptions distinct_captions(const std::vector<std::vector<int64_t>>& captions);

/// Scores (num_captions x num_images), row-major, for every caption (token ids with [CLS]
/// and [SEP]) against every image of the source.
std::vector<float> score_exact(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
                               const ImageSource& images, const ExactScorerOptions& options,
                               const PairProgress& progress = {});

/// Two-stage scores. Each direction ranks with its own matrix: image retrieval reads
/// `caption_to_image` row by row, text retrieval reads `image_to_caption` column by column (both
/// captions x images). Re-scored candidates get their exact score and sit above the others,
/// which keep the first stage's order.
struct RerankScores {
  std::vector<float> caption_to_image, image_to_caption;
  int64_t pairs_scored = 0;  // distinct pairs through the ITM head
  int64_t k_images = 0, k_captions = 0;  // candidates per caption / per image
};

/// `first_stage`: (captions x images) scores of the cheap stage.
RerankScores rerank(PairScorer& scorer, const std::vector<float>& first_stage, int64_t k,
                    const PairProgress& progress = {});

/// The top k candidate indices of each query: rows of a (rows x cols) matrix when `by_row`, else
/// columns; ties go to the lower index. Exposed for tests.
std::vector<std::vector<int64_t>> top_k(const std::vector<float>& scores, int64_t rows, int64_t cols, int64_t k,
                                        bool by_row);

}  // namespace mmt
