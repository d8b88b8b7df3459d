/* Analytic FLOP counts of the multimodal transformer (multiply-adds count as 2 FLOPs).
 * Only real tokens count: work spent on padding is not useful work, so GFLOP/s computed from
 * these numbers measure what the hardware did for the model, not for the padding. */
#pragma once

#include <cstdint>
#include <string>

#include "mmt/config/options.h"

namespace mmt {

struct Batch;
struct InputDims;

/// Image positions of one example of a pixel model (patches, resnet50) reading side x side images:
/// the global token plus the patch grid, or the ResNet-50's stride-32 feature map (ceil(side / 32)
/// per side, as its padded convolutions round).
int64_t pixel_positions(const ModelOptions& m, int64_t side);

/// Image positions of one example at most: pixel models exactly; region models the global token
/// plus data.max_regions regions (the synthetic world: plus its at most data.synth.max_objects).
int64_t max_image_positions(const ExperimentConfig& cfg);

/// The sequence one example gives the model, for logs: "785 image positions (the global one + a
/// 28 x 28 grid of 8 px patches of 224 px images) + up to 40 text tokens".
std::string describe_positions(const ExperimentConfig& cfg);

/// "25.3 GFLOP/s", "312.0 TFLOP/s".
std::string format_flop_rate(double flops_per_second);

/// Forward FLOPs of the ResNet-50's convolutions (torchvision's layout, up to layer4; no fc) on
/// one `side` px square image: 8.17e9 at 224 px (4.09 G multiply-adds, torchvision's figure).
double resnet50_forward_flops(int64_t side);

/// resnet50_forward_flops of a model.image_input = resnet50 model's image of `regions` tokens: an
/// `image_side` px image, or where that is 0, one of 32 px per cell of the map (the global token + a
/// grid); 0 for other image inputs.
double backbone_forward_flops(const ModelOptions& m, int64_t regions, int64_t image_side = 0);

/// Forward FLOPs of one example with `text_len` tokens, `regions` image tokens and
/// `masked` MLM-predicted tokens (embeddings, every layer as its pattern computes it, heads; with
/// model.image_input = resnet50 the backbone's convolutions, image_side as backbone_forward_flops).
double forward_flops(const ModelOptions& m, const InputDims& dims, int64_t text_len, int64_t regions, int64_t masked,
                     int64_t image_side = 0);

/// Forward FLOPs of layers [begin, end) of the stack over `text_len` text and `regions` image
/// tokens (projections, attention as each layer's pattern computes it, feed-forward; no embedding,
/// no head). A unimodal pass is one with the other count 0.
double layers_forward_flops(const ModelOptions& m, int64_t text_len, int64_t regions, int64_t begin, int64_t end);

/// Training FLOPs of a batch's main pass (forward + backward = 3 x forward), over real positions
/// only, with its MLM head (not the MRM heads, nor a ResNet-50: step_train_flops counts those).
double batch_train_flops(const ModelOptions& m, const InputDims& dims, const Batch& batch);

/// The model FLOPs of one training micro-batch by pass, as the training step runs them for
/// cfg.train (real positions only; forward + backward = 3 x forward; work recomputed to save
/// memory - contrastive ITM's graph-free chunks, runtime.recompute_layers - counts once).
struct StepFlops {
  double main = 0;            // the main pass with its heads (MLM, MRM, ITM), forward + backward
  double contrastive = 0;     // contrastive ITM: every (caption, candidate image) pair, forward + backward
  double align_towers = 0;    // align_inputs = unmasked: the towers rerun on unmasked inputs, forward + backward;
                              // align_queue: the momentum model's towers, forward
  double hard_negatives = 0;  // scoring the batch's pairs to sample hard negatives, forward only
  double momentum_mlm = 0;    // mlm_distill: the momentum model's pass over the batch, forward

  double total() const { return main + contrastive + align_towers + hard_negatives + momentum_mlm; }
  StepFlops& operator+=(const StepFlops& o);
  /// "" when the main pass is all; else its share and the others', "main pass 31%, contrastive ITM 69%".
  std::string shares() const;
};

/// The passes cfg.train runs on `batch` as the batcher made it (before hard negatives are swapped
/// in: the rows batch.hard_negative_rows marks are counted as the negatives they become - or, with
/// itm_swap = both, as matched rows and the two rows each adds - and their partners' scoring where
/// batch.negatives_by_score).
StepFlops step_train_flops(const ExperimentConfig& cfg, const InputDims& dims, const Batch& batch);

/// The caption length FLOP counts assume where no batch is at hand (`mmt model summary`, the
/// training ETA): 20 tokens, [CLS] and [SEP] included - about a COCO or Flickr30k caption.
constexpr int64_t kTypicalCaptionTokens = 20;

/// step_train_flops of a batch of cfg.train.batch_size examples of `text_tokens` and
/// `image_tokens` tokens drawn as the batcher would: train.itm_negative_prob of the rows turned
/// negative (marked where the step makes them: train.itm_negatives = hard, scored, or itm_swap =
/// both), MLM / MRM at their rates on the
/// matched ones, contrastive ITM's pool of K images. For planning: `mmt model summary`, the ETA.
StepFlops typical_step_flops(const ExperimentConfig& cfg, const InputDims& dims, int64_t text_tokens, int64_t image_tokens);

}  // namespace mmt
