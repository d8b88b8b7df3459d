/* ITM hard negatives (ALBEF, Li et al. 2021): a mismatched pair is made by swapping in the image
 * (or caption) of another pair of the batch, chosen with probability proportional to exp(score)
 * of the model's own match score for that combination, so the negatives it learns from are the
 * ones it finds plausible. ALBEF scores with its contrastive head, and so does mmt where the model
 * has one (model.align: one pass of the unimodal layers per caption and per image); otherwise it
 * uses the ITM match score, computed without gradient: one pass per caption and per image for
 * stacks without cross-modal layers, otherwise the layers below the first cross-modal one once per
 * caption and per image and the rest once per pair a row turned negative may take - its caption
 * with every image it may be given (or its image with every caption, where it swaps its caption),
 * or with train.itm_hard_candidates = K with K of them drawn at random (documented cost). */
#pragma once

#include <cstdint>
#include <vector>

#include <torch/types.h>

namespace mmt {

struct Batch;
class MultimodalTransformerImpl;
class Rng;
struct TrainOptions;

/// One entry of a batch's score matrix: the caption of row `caption` with the image of row `image`.
struct ScorePair {
  int64_t caption = 0, image = 0;
};

/// Scores (B, B) of the batch's captions (rows) with its images (columns), as batch_score_matrix
/// gives them; where the stack crosses modalities (one pair pass per entry) only `pairs` are scored
/// and the rest is NaN, B pairs a pass (the other paths score everything in one pass).
torch::Tensor batch_score_pairs(MultimodalTransformerImpl& model, const Batch& batch, bool align_unmasked,
                                const std::vector<ScorePair>& pairs);

/// Scores (B, B) of every caption of the batch (rows) with every image of the batch (columns): the
/// align head's where the model has one - on the inputs before MLM / MRM masking with
/// `align_unmasked` (train.align_inputs = unmasked; exact while every row is matched, as before the
/// swaps) - else the ITM match scores (on the batch as the ITM loss reads it). batch_score_pairs
/// with every pair.
torch::Tensor batch_score_matrix(MultimodalTransformerImpl& model, const Batch& batch, bool align_unmasked = false);

/// For row i, a partner j != i drawn with probability softmax over the candidates of scores[i] (or of
/// scores[:, i] when `by_column`: the caption is swapped, so the image stays and captions compete).
/// `candidates`: the rows to draw among, in the order the draw walks them (hard_partner_rows and
/// draw_candidates give them ascending); i itself is left out; empty = every row. -1 when no
/// candidate other than i is left.
int64_t sample_partner(const torch::Tensor& scores, int64_t i, bool by_column, Rng& rng,
                       const std::vector<int64_t>& candidates = {});

/// `k` of `rows` drawn uniformly without replacement, in ascending order; all of them when k <= 0 or
/// k >= rows.size() (then without a draw from `rng`).
std::vector<int64_t> draw_candidates(const std::vector<int64_t>& rows, int64_t k, Rng& rng);

/// Turns the batch's hard_negative_rows into mismatched pairs with partners sampled from the model's
/// scores: swaps the row's image (train.itm_swap = image), its caption (caption) or one of them
/// drawn per row (either), setting its itm_label to 0 and clearing its MLM / MRM targets; with
/// `both` the row stays matched and two rows are appended after the batch's, in the order of the
/// marked rows - its caption with a partner's image, then its image with a partner's caption -
/// labelled 0 without targets, their other fields the row's. Partners are rows hard_partner_rows
/// allows (another image - a row with none stays matched - masked alike where possible), each side
/// drawn by its own scores (a row of the score matrix for an image, a column for a caption).
/// A batch whose partners are not drawn by score (Batch::negatives_by_score false: itm_swap = both
/// with random negatives, or before train.itm_hard_from_step) draws each uniformly among the same
/// allowed rows, without scoring and without a pass of the model.
/// No-op without hard_negative_rows. Deterministic in (train.seed, step). Also read from `train`:
/// align_inputs (what the align head scores, passed to batch_score_pairs), itm_hard_temperature (the
/// scores are divided by it before the softmax) and itm_hard_candidates (the partner is drawn among
/// this many of the allowed rows, chosen uniformly first; 0 = all of them; only those pairs are
/// scored where the stack crosses modalities).
void apply_hard_negatives(MultimodalTransformerImpl& model, Batch& batch, const TrainOptions& train, int64_t step);

}  // namespace mmt
