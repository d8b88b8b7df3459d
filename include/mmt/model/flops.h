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

/// Forward FLOPs of one example with `text_len` tokens, `regions` image tokens and
/// `masked` MLM-predicted tokens (embeddings, every layer as its pattern computes it, heads).
double forward_flops(const ModelOptions& m, const InputDims& dims, int64_t text_len, int64_t regions, int64_t masked);

/// Training FLOPs of a batch (forward + backward = 3 x forward), over real positions only.
double batch_train_flops(const ModelOptions& m, const InputDims& dims, const Batch& batch);

}  // namespace mmt
