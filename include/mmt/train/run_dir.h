/* A run directory and what it holds (docs/formats.md):
 *   config.json        the resolved ExperimentConfig (a run is reproducible from it alone)
 *   vocab.txt          the tokenizer vocabulary (BERT vocab.txt format)
 *   metrics.jsonl      one JSON object per logged step
 *   model.safetensors  weights; checkpoint.json is its sidecar (step, input sizes, data)
 *   eval.json/eval.md  results of `mmt eval`
 */
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <string>

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
  std::string eval_json() const { return dir + "/eval.json"; }
  std::string eval_md() const { return dir + "/eval.md"; }
};

/// Writes model.safetensors and then checkpoint.json (the sidecar marks the weights complete).
void save_checkpoint(const RunFiles& run, MultimodalTransformerImpl& model, int64_t step,
                     const nlohmann::json& extra);

/// A trained run, ready to evaluate.
struct LoadedRun {
  ExperimentConfig config;
  Vocab vocab;
  MultimodalTransformer model{nullptr};
  int64_t step = 0;
};

/// Loads config, vocabulary and weights of a finished run; errors name the missing file.
LoadedRun load_run(const std::string& dir);

}  // namespace mmt
