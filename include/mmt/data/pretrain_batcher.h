/* Pretraining batches from the synthetic world: an endless, deterministic stream (a pure
 * function of the seed and the step, so a run can resume at any step), with length
 * bucketing, MLM masking (BERT's 15% and 80/10/10) and ITM negatives by image swap. A mixture
 * of analogues (data.synth.mixture) is drawn by instance or by dataset (data.sampling). */
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "mmt/config/options.h"
#include "mmt/data/batch.h"
#include "mmt/data/image_source.h"
#include "mmt/text/vocab.h"

namespace mmt {

class Rng;
namespace synth {
class World;
}

/// BERT masking of one sequence in place: each non-special token (each word, with whole_words:
/// a ## piece follows the token before it) is selected with probability `prob`; a selected token
/// becomes [MASK] (80%), a random non-special token (10%) or stays (10%). Special tokens are never
/// selected. Returns labels: the original id where selected, kIgnoreLabel elsewhere.
std::vector<int64_t> mask_tokens(std::vector<int64_t>& ids, const Vocab& vocab, double prob, Rng& rng,
                                 bool whole_words = false);

/// MRM masking of a batch's regions in place: in every example with mask_example[i], each real
/// region but the global one is selected with probability `prob` and its feature zeroed (box
/// kept); the global region is recomputed as the mean of the unmasked regions so nothing of a
/// masked feature reaches the model. Sets region_targets (the features before masking) and
/// mrm_mask (selected regions of examples with targets[i]).
void mask_regions(Batch& batch, const std::vector<char>& mask_example, const std::vector<char>& targets,
                  double prob, Rng& rng);

class PretrainBatcher {
 public:
  /// `share_pools_with`: another batcher of the same world and config, used from another thread
  /// (one batcher per thread: rendering keeps per-batcher state). The two then share the pools
  /// of examples that length bucketing sorts (data.bucket_batches batches each): each pool is
  /// built once, by whichever thread first needs it, instead of once per thread. Batches are the
  /// same either way.
  PretrainBatcher(const synth::World& world, const Vocab& vocab, const ExperimentConfig& cfg,
                  const PretrainBatcher* share_pools_with = nullptr);
  ~PretrainBatcher();

  /// The batch of micro-batch `micro` (optimizer step x train.grad_accum_steps + k; deterministic,
  /// any order of calls).
  Batch batch(int64_t micro);

  /// Pools of examples built so far by this batcher and those sharing its pools (tests, benches).
  int64_t pools_built() const;

  struct Example {
    int64_t scene;
    std::vector<int64_t> ids;
  };
  using Pool = std::vector<std::vector<Example>>;  // pool_batches_ batches of examples
  class Pools;

 private:
  Pool build_pool(int64_t pool) const;

  const synth::World& world_;
  Vocab vocab_;  // a copy: small, and no dangling reference to a temporary
  TrainOptions train_;
  SyntheticImages images_;
  std::string sampling_;  // data.sampling: how a mixture's parts are drawn
  int64_t max_text_len_, batch_size_, pool_batches_;
  std::shared_ptr<Pools> pools_;
  int64_t pool_index_ = -1;
  std::shared_ptr<const Pool> pool_;  // pool pool_index_, held while this batcher uses it
};

}  // namespace mmt
