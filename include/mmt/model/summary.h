/* `mmt model summary`: parameters by block and FLOPs per example of a configured model. */
#pragma once

#include <cstdint>
#include <string>

#include "mmt/config/options.h"

namespace mmt {

struct InputDims;

/// Closed-form parameter count of one layer's weights for one stream (q, k, v, out, two
/// LayerNorms, feed-forward); a two-stream layer has two of them, a single-stream layer one.
int64_t stream_parameter_count(const ModelOptions& m);

/// A text table: every top-level block and layer with its parameter count, the total, and
/// forward / training FLOPs per example of `text_tokens` tokens and `image_tokens` image tokens.
std::string model_summary(const ExperimentConfig& cfg, const InputDims& dims, int64_t text_tokens,
                          int64_t image_tokens);

/// One line: the model FLOPs of a training step of cfg.train.batch_size examples of these sizes
/// with cfg's losses - the main pass, contrastive ITM's pairs, the align towers' rerun, hard-
/// negative scoring (step_train_flops on a batch drawn as the batcher would: itm_negative_prob of
/// the rows turned negative, MLM / MRM masks at their rates on the matched ones) - with each
/// pass's share where the main pass is not all.
std::string training_step_flops(const ExperimentConfig& cfg, const InputDims& dims, int64_t text_tokens,
                                int64_t image_tokens);

}  // namespace mmt
