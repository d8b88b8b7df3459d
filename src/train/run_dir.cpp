/* Run directory: checkpoints and loading (see run_dir.h). */
#include "mmt/train/run_dir.h"

#include <nlohmann/json.hpp>

#include "mmt/config/config.h"
#include "mmt/io/safetensors.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {

using nlohmann::json;

void save_checkpoint(const RunFiles& run, MultimodalTransformerImpl& model, int64_t step, const json& extra) {
  save_safetensors(run.weights(), module_state(model), {{"format", "mmt"}, {"step", std::to_string(step)}});
  json side = extra;
  side["step"] = step;
  side["weights"] = "model.safetensors";
  side["vocab"] = "vocab.txt";
  side["input_dims"] = {{"vocab_size", model.dims().vocab_size},
                        {"region_feat_dim", model.dims().region_feat_dim},
                        {"region_classes", model.dims().region_classes}};
  write_file_atomic(run.checkpoint(), side.dump(2) + "\n");
}

LoadedRun load_run(const std::string& dir) {
  const RunFiles run(dir);
  for (const auto& f : {run.config(), run.vocab(), run.checkpoint(), run.weights()})
    if (!file_exists(f)) throw Error("'" + dir + "' is not a finished run: " + f + " is missing");
  LoadedRun out;
  out.config = load_config(run.config(), {});
  out.vocab = Vocab::load(run.vocab());
  const json side = parse_json_with_comments(read_file(run.checkpoint()), run.checkpoint());
  out.step = side.value("step", int64_t{0});
  InputDims dims;
  dims.vocab_size = side.at("input_dims").at("vocab_size").get<int64_t>();
  dims.region_feat_dim = side.at("input_dims").at("region_feat_dim").get<int64_t>();
  dims.region_classes = side.at("input_dims").value("region_classes", int64_t{0});
  if (dims.vocab_size != out.vocab.size())
    throw Error(run.checkpoint() + ": vocab_size " + std::to_string(dims.vocab_size) + " but " + run.vocab() +
                " has " + std::to_string(out.vocab.size()) + " tokens");
  out.model = MultimodalTransformer(out.config.model, dims);
  try {
    load_module_state(*out.model, load_safetensors(run.weights()), /*strict=*/true);
  } catch (const Error& e) {
    throw Error(run.weights() + ": " + e.what());
  }
  out.model->eval();
  return out;
}

}  // namespace mmt
