/* Evaluation during training (train.eval_every): a held-out retrieval set scored every N steps
 * in eval.mode, logged to metrics.jsonl and TensorBoard, and the best weights so far kept in
 * <run>/best/ (by RSUM, image + text R@1/5/10).
 *
 * The set: synthetic runs use the first of eval.test_sets, its first train.eval_max_images
 * images and their captions; dataset runs use the Karpathy split file train.eval_karpathy
 * (its "test" images, or all of them when it has none), capped the same way. */
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace mmt {

class ImageSource;
class MultimodalTransformerImpl;
class Tokenizer;
class Vocab;
struct ExperimentConfig;
namespace synth {
class World;
}

class TrainEvaluator {
 public:
  /// Synthetic held-out set (of `world`), captions encoded with `vocab`.
  TrainEvaluator(const ExperimentConfig& cfg, const synth::World& world, const Vocab& vocab);
  /// Real held-out set from train.eval_karpathy, captions encoded with `tokenizer`.
  TrainEvaluator(const ExperimentConfig& cfg, const Tokenizer& tokenizer, int64_t region_feat_dim, int64_t region_classes);
  ~TrainEvaluator();

  /// Scores the set with `model` (left in the mode it was in). Returns {"rsum", "image_r1", ...,
  /// "text_r10", "seconds"} and prints a progress line on `log`.
  nlohmann::json run(MultimodalTransformerImpl& model, std::ostream& log);
  /// "easy (100 images x 500 captions)".
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mmt
