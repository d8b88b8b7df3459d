/* Analytic FLOP counts of the multimodal transformer (multiply-adds count as 2 FLOPs).
 * Only real tokens count: work spent on padding is not useful work, so GFLOP/s computed from
 * these numbers measure what the hardware did for the model, not for the padding. */
#pragma once

#include <cstdint>

#include "mmt/config/options.h"

namespace mmt {

struct Batch;
struct InputDims;

/// Forward FLOPs of one example with `text_len` tokens, `regions` image tokens and
/// `masked` MLM-predicted tokens (embeddings, every layer as its pattern computes it, heads).
double forward_flops(const ModelOptions& m, const InputDims& dims, int64_t text_len, int64_t regions, int64_t masked);

/// Training FLOPs of a batch (forward + backward = 3 x forward), over real positions only.
double batch_train_flops(const ModelOptions& m, const InputDims& dims, const Batch& batch);

}  // namespace mmt
