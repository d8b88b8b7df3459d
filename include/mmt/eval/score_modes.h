/* One test set scored in the configured mode (eval.mode: exact, dual or rerank) with metrics,
 * timing and what was done: shared by `mmt eval` (synthetic sets and protocols) and the
 * evaluation during training. */
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mmt/eval/retrieval_metrics.h"

namespace mmt {

class ImageSource;
class MultimodalTransformerImpl;
struct ExactScorerOptions;
struct ExperimentConfig;

struct TestSetScores {
  RetrievalMetrics metrics;
  RetrievalOutcomes outcomes;           // every query's, which the metrics summarise
  std::vector<float> scores;            // (captions x images); rerank: the caption -> image ranking matrix
  std::vector<float> image_to_caption;  // rerank only: the image -> caption ranking matrix
  nlohmann::json info;                  // mode, wall_time_s, pairs_per_s, itm_pairs, rerank_k, first_stage
  double seconds = 0;
};

/// The scorer options of a config: eval.pair_batch, eval.cache, runtime.device and precision,
/// and on the CPU eval.threads scoring threads (0 = the process's cores).
ExactScorerOptions scorer_options(const ExperimentConfig& cfg);

/// Scores captions x images in cfg.eval.mode on cfg.runtime's device, with a progress line on
/// `log` labelled `name`. A first stage read from a file has "{split}" replaced by `name`.
TestSetScores score_test_set(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
                             const ImageSource& images, const std::vector<int64_t>& caption_image,
                             const ExperimentConfig& cfg, const std::string& name, std::ostream& log);

/// The scores alone, as score_test_set computes them (scores, image_to_caption for rerank, info,
/// seconds), for captions that need no test set around them (`mmt retrieve`'s queries); metrics
/// and outcomes stay empty.
TestSetScores score_captions(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
                             const ImageSource& images, const ExperimentConfig& cfg, const std::string& name,
                             std::ostream& log);
/// Writes the score matrices next to each other: <stem>-scores.npy (and, for rerank,
/// <stem>-scores-i2t.npy). Returns the file names written (without directory).
std::vector<std::string> save_scores(const TestSetScores& s, const std::string& dir, const std::string& stem,
                                     int64_t num_captions, int64_t num_images);

}  // namespace mmt
