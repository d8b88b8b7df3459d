/* Run directory: checkpoints and loading (see run_dir.h). */
#include "mmt/train/run_dir.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "mmt/config/config.h"
#include "mmt/io/safetensors.h"
#include "mmt/train/flat_adamw.h"
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

void save_best(const RunFiles& run, MultimodalTransformerImpl& model, int64_t step, const json& extra) {
  namespace fs = std::filesystem;
  const std::string tmp = run.dir + "/.tmp-best", old = run.dir + "/.old-best";
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_checkpoint(RunFiles(tmp), model, step, extra);
  fs::remove_all(old);
  if (fs::exists(run.best())) fs::rename(run.best(), old);
  fs::rename(tmp, run.best());
  fs::remove_all(old);
}

std::string RunFiles::eval_result_name(const std::string& protocol, bool best) {
  const std::string tag = protocol.empty() ? std::string() : "-" + protocol;
  return "eval" + tag + (best ? "-best" : "") + ".json";
}

std::string RunFiles::step_dir(int64_t step) const {
  char name[32];
  std::snprintf(name, sizeof name, "step-%09lld", static_cast<long long>(step));
  return checkpoints() + "/" + name;
}

namespace {

void fsync_path(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd >= 0) ::fsync(fd), ::close(fd);
}

// Test hook (docs/formats.md): MMT_FAULT_CHECKPOINT=kill kills the process with SIGKILL halfway
// through writing a checkpoint, after its weights and before its state and rename.
void fault_point() {
  const char* f = std::getenv("MMT_FAULT_CHECKPOINT");
  if (f && std::string(f) == "kill") ::raise(SIGKILL);
}

}  // namespace

void save_train_checkpoint(const RunFiles& run, MultimodalTransformerImpl& model, const FlatAdamW& optimizer,
                           int64_t step, const json& state, int64_t keep, const NamedTensors& extra) {
  namespace fs = std::filesystem;
  const std::string final_dir = run.step_dir(step);
  const std::string tmp = run.checkpoints() + "/.tmp-" + fs::path(final_dir).filename().string();
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  save_safetensors(tmp + "/model.safetensors", module_state(model), {{"format", "mmt"}, {"step", std::to_string(step)}});
  fault_point();
  torch::Tensor rng;
  {
    auto gen = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(gen.mutex());
    rng = gen.get_state();
  }
  NamedTensors training{{"exp_avg", optimizer.exp_avg()}, {"exp_avg_sq", optimizer.exp_avg_sq()}, {"torch_rng", rng}};
  training.insert(training.end(), extra.begin(), extra.end());
  save_safetensors(tmp + "/optimizer.safetensors", training, {{"optimizer_steps", std::to_string(optimizer.steps())}});
  json side = state;
  side["step"] = step;
  side["optimizer_steps"] = optimizer.steps();
  write_file_atomic(tmp + "/state.json", side.dump(2) + "\n");
  for (const char* f : {"/model.safetensors", "/optimizer.safetensors", "/state.json"}) fsync_path(tmp + f);
  fs::remove_all(final_dir);  // a re-run of the same step after a resume
  fs::rename(tmp, final_dir);
  fsync_path(run.checkpoints());
  // Keep the newest `keep`.
  std::vector<std::string> steps;
  for (const auto& e : fs::directory_iterator(run.checkpoints()))
    if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0) steps.push_back(e.path().string());
  std::sort(steps.begin(), steps.end());
  for (size_t i = 0; i + static_cast<size_t>(std::max<int64_t>(1, keep)) < steps.size(); ++i) fs::remove_all(steps[i]);
}

int64_t latest_train_checkpoint(const RunFiles& run) {
  namespace fs = std::filesystem;
  if (!fs::is_directory(run.checkpoints())) return -1;
  int64_t best = -1;
  for (const auto& e : fs::directory_iterator(run.checkpoints())) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("step-", 0) != 0 || !fs::exists(e.path() / "state.json")) continue;
    best = std::max<int64_t>(best, std::stoll(name.substr(5)));
  }
  return best;
}

json load_train_checkpoint(const RunFiles& run, int64_t step, MultimodalTransformerImpl& model, FlatAdamW& optimizer,
                           NamedTensors* extra) {
  const std::string dir = run.step_dir(step);
  const json state = parse_json_with_comments(read_file(dir + "/state.json"), dir + "/state.json");
  try {
    load_module_state(model, load_safetensors(dir + "/model.safetensors"), /*strict=*/true);
  } catch (const Error& e) {
    throw Error(dir + "/model.safetensors: " + e.what());
  }
  const NamedTensors opt = load_safetensors(dir + "/optimizer.safetensors");
  auto get = [&](const std::string& k) {
    for (const auto& [name, t] : opt)
      if (name == k) return t;
    throw Error(dir + "/optimizer.safetensors: no tensor '" + k + "'");
  };
  optimizer.load_state(get("exp_avg"), get("exp_avg_sq"), state.at("optimizer_steps").get<int64_t>());
  const torch::Tensor rng = get("torch_rng");
  if (extra)
    for (const auto& [name, t] : opt)
      if (name != "exp_avg" && name != "exp_avg_sq" && name != "torch_rng") extra->emplace_back(name, t);
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(rng);
  return state;
}

LoadedRun load_run(const std::string& dir, bool best) {
  const RunFiles files(dir);
  RunFiles run(best ? files.best() : dir);  // weights and sidecar
  if (best && !file_exists(run.checkpoint()))
    throw Error("'" + dir + "' has no best weights (" + run.checkpoint() + " is missing): train with train.eval_every > 0");
  for (const auto& f : {files.config(), files.vocab(), run.checkpoint(), run.weights()}) {
    if (file_exists(f)) continue;
    std::string why = "'" + dir + "' is not a finished run: " + f + " is missing";
    // A run that stopped before its end (killed, interrupted, failed) can be continued.
    const int64_t last = file_exists(files.config()) ? latest_train_checkpoint(files) : -1;
    if (last >= 0 && !best)
      why += " (its training stopped; the newest checkpoint is step " + std::to_string(last) +
             ": finish it with mmt train --resume " + dir + ")";
    throw Error(why);
  }
  LoadedRun out;
  out.config = load_config(files.config(), {});
  out.vocab = Vocab::load(files.vocab());
  const json side = parse_json_with_comments(read_file(run.checkpoint()), run.checkpoint());
  out.step = side.value("step", int64_t{0});
  InputDims dims;
  dims.vocab_size = side.at("input_dims").at("vocab_size").get<int64_t>();
  dims.region_feat_dim = side.at("input_dims").at("region_feat_dim").get<int64_t>();
  dims.region_classes = side.at("input_dims").value("region_classes", int64_t{0});
  if (dims.vocab_size != out.vocab.size())
    throw Error(run.checkpoint() + ": vocab_size " + std::to_string(dims.vocab_size) + " but " + files.vocab() +
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
