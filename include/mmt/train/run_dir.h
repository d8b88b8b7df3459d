/* A run directory and what it holds (docs/formats.md):
 *   config.json        the resolved ExperimentConfig (a run is reproducible from it alone)
 *   vocab.txt          the tokenizer vocabulary (BERT vocab.txt format)
 *   metrics.jsonl      one JSON object per logged step
 *   train.log          the run's log, every session (started / resumed / stopped and why)
 *   model.safetensors  weights; checkpoint.json is its sidecar (step, input sizes, data)
 *   eval.json/eval.md  results of `mmt eval`; eval.log its log, every session
 *   best/              the best weights by held-out RSUM so far: model.safetensors, checkpoint.json
 *   checkpoints/step-N/  resumable checkpoints: model.safetensors, optimizer.safetensors (AdamW
 *                        moments, torch RNG state), state.json (step, sampler, logging sums)
 */
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>
#include <utility>
#include <vector>

#include "mmt/config/options.h"
#include "mmt/model/transformer.h"
#include "mmt/text/vocab.h"

namespace mmt {

struct RunFiles {
  explicit RunFiles(std::string dir) : dir(std::move(dir)) {}
  std::string dir;
  std::string config() const { return dir + "/config.json"; }
  std::string vocab() const { return dir + "/vocab.txt"; }
  std::string metrics() const { return dir + "/metrics.jsonl"; }
  std::string weights() const { return dir + "/model.safetensors"; }
  std::string checkpoint() const { return dir + "/checkpoint.json"; }
  /// `mmt eval`'s result: eval.json (the synthetic test sets) or eval-<protocol>.json (a
  /// real-image protocol), with "-best" before ".json" for <run>/best's weights; the same name
  /// with .md holds its table. eval_result_name: the file name alone (what study.json records).
  static std::string eval_result_name(const std::string& protocol = "", bool best = false);
  std::string eval_result(const std::string& protocol = "", bool best = false) const {
    return dir + "/" + eval_result_name(protocol, best);
  }
  std::string eval_json() const { return eval_result(); }
  std::string checkpoints() const { return dir + "/checkpoints"; }
  std::string best() const { return dir + "/best"; }  // best weights by held-out RSUM (train.eval_every)
  std::string step_dir(int64_t step) const;
};

class FlatAdamW;

/// Writes a resumable checkpoint atomically: everything goes into checkpoints/.tmp-step-N, each
/// file fsynced, then the folder is renamed to checkpoints/step-N (a crash at any point leaves the
/// previous checkpoints as they were). Then all but the newest `keep` are removed.
/// `extra`: more training state (train.align_queue's momentum model and queue), kept in
/// optimizer.safetensors beside the moments.
void save_train_checkpoint(const RunFiles& run, MultimodalTransformerImpl& model, const FlatAdamW& optimizer,
                           int64_t step, const nlohmann::json& state, int64_t keep,
                           const std::vector<std::pair<std::string, torch::Tensor>>& extra = {});
/// Step of the newest complete resumable checkpoint, or -1.
int64_t latest_train_checkpoint(const RunFiles& run);
/// Loads checkpoint `step` into model and optimizer (and the torch RNG); returns its state.json.
/// `extra`: receives optimizer.safetensors' other tensors (what save_train_checkpoint's `extra` wrote).
nlohmann::json load_train_checkpoint(const RunFiles& run, int64_t step, MultimodalTransformerImpl& model,
                                     FlatAdamW& optimizer,
                                     std::vector<std::pair<std::string, torch::Tensor>>* extra = nullptr);

/// Writes model.safetensors and then checkpoint.json (the sidecar marks the weights complete).
void save_checkpoint(const RunFiles& run, MultimodalTransformerImpl& model, int64_t step,
                     const nlohmann::json& extra);

/// Replaces <run>/best with these weights and a sidecar like checkpoint.json (plus `extra`),
/// atomically: a folder written aside, then swapped in.
void save_best(const RunFiles& run, MultimodalTransformerImpl& model, int64_t step, const nlohmann::json& extra);

/// A trained run, ready to evaluate.
struct LoadedRun {
  ExperimentConfig config;
  Vocab vocab;
  MultimodalTransformer model{nullptr};
  int64_t step = 0;
};

/// Loads config, vocabulary and weights of a finished run (`best`: the weights of <run>/best);
/// errors name the missing file.
LoadedRun load_run(const std::string& dir, bool best = false);

}  // namespace mmt
