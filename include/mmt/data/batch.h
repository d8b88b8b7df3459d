/* The padded batch every model and loss consumes (DESIGN.md "The data flow"), and the
 * function that pads variable-length examples into it. */
#pragma once

#include <torch/types.h>

#include <functional>
#include <memory>
#include <utility>
#include <vector>

namespace mmt {

namespace synth {
struct RegionStore;
}
class Rng;
struct TrainOptions;

struct Batch {
  torch::Tensor text_ids;      // (B, T) int64, [CLS] ... [SEP] then [PAD]
  torch::Tensor text_mask;     // (B, T) bool, true at real tokens
  torch::Tensor region_feats;  // (B, R, F) float32, region 0 is the global region
  torch::Tensor region_boxes;  // (B, R, 5) float32: x1, y1, x2, y2, area
  torch::Tensor region_mask;   // (B, R) bool, true at real regions
  torch::Tensor image_pixels;  // (B, 3, S, S) float32 ImageNet-normalised, instead of regions when
                               // the model reads pixels (model.image_input = patches / resnet50)
  torch::Tensor region_classes;  // (B, R, C) float32 detector class distribution of each region
  torch::Tensor mlm_labels;    // (B, T) int64 original ids at predicted positions, -100 elsewhere
  torch::Tensor mrm_mask;      // (B, R) bool: regions whose features were zeroed, to be predicted
  torch::Tensor region_targets;  // (B, R, F) the features before masking (MRM regression targets)
  torch::Tensor itm_labels;    // (B) int64: 1 = caption matches image, 0 = mismatched
  // ITM negatives the training step makes (hard negatives; itm_swap = both): rows still matched
  // that the step turns into mismatched pairs (or, with both, adds two mismatched rows for): (B) bool.
  torch::Tensor hard_negative_rows;
  // How the step draws the partners of hard_negative_rows: by the model's scores (hard negatives),
  // or uniformly among the same allowed rows (itm_swap = both with random negatives, or before
  // train.itm_hard_from_step).
  bool negatives_by_score = true;
  // Which modalities each row masks (bit 0 text, bit 1 image): (B) int64, set with hard negatives
  // so a swap only pairs rows masked alike and the masking pattern carries no hint of the label.
  torch::Tensor mask_pattern;
  // Which image each row was drawn with (before ITM swaps): (B) int64, equal for rows showing the
  // same image (one image's several captions; a file two datasets share). ITM negatives and the
  // dual encoder's in-batch negatives never pair a caption with its own image through another row.
  torch::Tensor image_key;
  // Which caption each row holds: (B) int64, caption_hash of its tokens before MLM masking - equal
  // for rows with the same caption (one image's caption drawn twice; a caption many images share,
  // as the synthetic world's short ones and COCO's most common do). With
  // train.contrastive_same_caption = excluded the in-batch and queued InfoNCE losses leave such
  // a row out of each other's softmax, as they do rows of one image.
  torch::Tensor caption_key;
  // Contrastive ITM: a pool of K negative images shared by the batch's captions (its image
  // fields only), and which pool images are a caption's own image and so excluded: (B, K) bool.
  std::shared_ptr<Batch> negatives;
  torch::Tensor negative_excluded;

  int64_t size() const { return text_ids.size(0); }
};

/// A copy of the batch with `f` applied to every defined tensor, the negatives' included (the
/// one list of a Batch's tensors: moving to a device, pinning). negatives = false: the negatives'
/// pool is kept as it is.
Batch map_tensors(const Batch& batch, const std::function<torch::Tensor(const torch::Tensor&)>& f,
                  bool negatives = true);

/// For row i's ITM negative: `j` when it shows another image than row i (keys: each row's image),
/// else the next row after j (cyclically, i skipped) that does; -1 when every row shows row i's
/// image. Deterministic, so a batch without repeated images keeps its random stream.
int64_t row_with_other_image(const std::vector<int64_t>& keys, int64_t i, int64_t j);

/// Which side an ITM negative swaps (train.itm_swap): true for the image, false for the caption;
/// with `either` one of them at random, a draw from `rng` (only then, so `image` and `caption`
/// keep their random streams).
bool swaps_image(const TrainOptions& train, Rng& rng);

/// Whether the batch of micro-batch `micro` leaves its ITM negatives to the training step, marked
/// in hard_negative_rows: with hard negatives from their first step on (by the model's scores),
/// and always with itm_swap = both (its added rows are made at step time, so a rank's share of a
/// global batch stays a slice of it).
bool step_makes_negatives(const TrainOptions& train, int64_t micro);

/// Leaves a batch's ITM negatives to the step (step_makes_negatives): marks the rows `pending`
/// names in hard_negative_rows, sets negatives_by_score from micro-batch `micro`
/// (train.hard_negatives_at), and records each row's masked sides in mask_pattern (bit 0 the
/// caption, bit 1 the image), which hard_partner_rows matches partners by. The vectors hold one
/// entry per row of the batch.
void mark_step_negatives(const TrainOptions& train, int64_t micro, const std::vector<char>& pending,
                         const std::vector<char>& mask_text, const std::vector<char>& mask_image, Batch& batch);

/// How many negatives of each side a row turned negative makes on average (train.itm_swap): image
/// 1 / 0, caption 0 / 1, either 0.5 / 0.5 (swaps_image's draw), both 1 / 1 (the step appends one of
/// each). What the FLOP count weighs each side's pairs by.
struct SwapSides {
  double image = 0, caption = 0;
};
SwapSides swap_sides(const TrainOptions& train);

/// For each row i of `rows` in a batch whose rows are all still matched: the rows j whose image (or
/// caption) a hard ITM negative of row i may take - j != i showing another image (image_key; all
/// other rows when the batch has no keys) and, where any of those is, only the ones masked alike
/// (mask_pattern), so the masking pattern says nothing about the label. Ascending; empty when
/// every row shows row i's image.
std::vector<std::vector<int64_t>> hard_partner_rows(const Batch& batch, const std::vector<int64_t>& rows);

/// A caption's key (Batch::caption_key): a 64-bit FNV-1a hash of its token ids.
int64_t caption_hash(const std::vector<int64_t>& ids);

/// Rows [begin, end) of `total` taken by `rank` of `world` ranks: contiguous, in rank order,
/// sizes differing by at most one.
inline std::pair<int64_t, int64_t> shard_range(int64_t total, int rank, int world) {
  return {total * rank / world, total * (rank + 1) / world};
}

/// Rows [begin, end) of a batch (a rank's share of the global batch); the negatives' pool whole.
Batch batch_rows(const Batch& batch, int64_t begin, int64_t end);

/// Ignored label value of mlm_labels (the cross-entropy convention).
constexpr int64_t kIgnoreLabel = -100;

/// The captions as they were before MLM masking: text_ids with mlm_labels' original ids put back.
/// Exact at every row with MLM targets and at every row left unmasked; a mismatched row keeps its
/// masks (it has no targets to restore them from). text_ids itself without mlm_labels.
torch::Tensor unmasked_text_ids(const Batch& batch);
/// The region features as they were before MRM masking (region_targets where MRM ran, else
/// region_feats): exact at every row, the global region included.
torch::Tensor unmasked_region_feats(const Batch& batch);

/// Pads token id sequences into text_ids / text_mask (pad id 0 is [PAD]).
void pad_text(const std::vector<std::vector<int64_t>>& ids, int64_t pad_id, Batch& batch);

/// Gathers the regions of the given scenes of a store into region_feats/boxes/classes/mask,
/// padded to the longest, keeping at most max_regions + 1 (global) regions per scene.
void gather_regions(const synth::RegionStore& store, const std::vector<int64_t>& scenes,
                    int64_t max_regions, Batch& batch);

}  // namespace mmt
