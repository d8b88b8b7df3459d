/* The pretraining loop (see trainer.h). */
#include "mmt/train/trainer.h"

#include <chrono>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/dataset_batcher.h"
#include "mmt/text/tokenizer.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/io/safetensors.h"
#include "mmt/text/bert_checkpoint.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/train/progress.h"
#include "mmt/train/run_dir.h"
#include "mmt/train/schedule.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"
#include "mmt/util/runtime.h"

namespace mmt {

using nlohmann::json;

namespace {

constexpr int64_t kMaxBadStepsInARow = 10;

std::string format_metrics(const std::map<std::string, double>& m) {
  std::string out;
  char buf[64];
  for (const char* key : {"loss", "mlm", "mrm_kl", "mrm_regression", "mrm_class", "itm", "itm_contrastive", "dual", "mlm_acc", "itm_acc", "itm_contrastive_acc", "dual_acc"}) {
    auto it = m.find(key);
    if (it == m.end()) continue;
    std::snprintf(buf, sizeof buf, "%s%s %.3f", out.empty() ? "" : " ", key, it->second);
    out += buf;
  }
  return out;
}

}  // namespace

TrainSummary train_run(const ExperimentConfig& cfg, const std::string& dir, std::ostream& log) {
  const RunFiles run(dir);
  if (file_exists(run.checkpoint()))
    throw Error("'" + dir + "' already holds a trained run (" + run.checkpoint() + "); choose another --out");
  make_dirs(dir);
  write_file_atomic(run.config(), config_to_json(cfg).dump(2) + "\n");
  log << "mmt train: " << cfg.name << " -> " << dir << "\n";
  log << "mmt train: " << configure_runtime(cfg.runtime, log) << "\n";
  torch::manual_seed(cfg.train.seed);

  // The data: the synthetic world, or a mixture of real datasets behind the threaded loader.
  const auto t_data = std::chrono::steady_clock::now();
  const bool real = cfg.data.source == "datasets";
  std::unique_ptr<synth::World> world;
  std::unique_ptr<DatasetBatcher> datasets;
  InputDims dims;
  if (real) {
    datasets = std::make_unique<DatasetBatcher>(cfg, &log);
    datasets->tokenizer().vocab().save(run.vocab());
    dims = datasets->input_dims();
    log << "mmt train: " << datasets->datasets().size() << " datasets read in "
        << Progress::format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_data).count())
        << "; tokenizer " << datasets->tokenizer().describe() << "\n";
  } else {
    world = std::make_unique<synth::World>(cfg.data.synth);
    data_vocab(cfg).save(run.vocab());
    dims = data_input_dims(cfg);
    log << "mmt train: synthetic world of " << world->train_scenes().size() << " train scenes built in "
        << Progress::format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_data).count())
        << "\n";
  }

  MultimodalTransformer model(cfg.model, dims);
  if (!cfg.model.text_init.empty()) {
    const LoadReport r = load_bert_checkpoint(*model, cfg.model.text_init);
    log << "mmt train: text side initialised from " << cfg.model.text_init;
    if (!r.missing.empty()) log << "; not in the checkpoint (left random): " << join(r.missing);
    if (!r.unexpected.empty()) log << "; checkpoint keys not used: " << join(r.unexpected);
    log << "\n";
  }
  if (!cfg.model.resnet_init.empty()) {
    if (!model->resnet) throw Error("model.resnet_init is set but model.image_input is not resnet50");
    try {
      load_module_state(*model->resnet, load_safetensors(cfg.model.resnet_init), /*strict=*/true);
    } catch (const Error& e) {
      throw Error(cfg.model.resnet_init + ": " + e.what());
    }
    log << "mmt train: ResNet-50 initialised from " << cfg.model.resnet_init << "\n";
  }
  model->train();
  int64_t num_params = 0;
  for (const auto& p : model->parameters()) num_params += p.numel();
  log << "mmt train: model " << num_params << " parameters, " << layer_types(cfg.model).size() << " layers ("
      << join(cfg.model.layers.empty() ? std::vector<std::string>{cfg.model.attention} : cfg.model.layers)
      << "), hidden " << cfg.model.hidden << "\n";

  const auto& t = cfg.train;
  PretrainStep stepper(*model, t);
  std::unique_ptr<PretrainBatcher> synthetic;
  std::unique_ptr<BatchLoader> loader;
  if (real) loader = datasets->loader(0);
  else synthetic = std::make_unique<PretrainBatcher>(*world, data_vocab(cfg), cfg);
  json sampler_state;  // after the last consumed step (datasets)
  std::ofstream metrics_out(run.metrics(), std::ios::trunc);  // a fresh run (resuming is not built yet)
  if (!metrics_out) throw Error("cannot write '" + run.metrics() + "'");

  Progress progress("train", t.steps, log, "ex", static_cast<double>(t.batch_size));
  std::map<std::string, double> sums, last;
  std::map<std::string, int64_t> counts;
  TrainSummary summary;
  int64_t bad_in_a_row = 0, interval_examples = 0;
  double data_seconds = 0;
  auto interval_start = std::chrono::steady_clock::now();
  for (int64_t step = 0; step < t.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    Batch batch;
    if (real) {
      BatchLoader::Item item = loader->next();
      batch = std::move(item.batch);
      sampler_state = DatasetBatcher::sampler_state(item.plan);
    } else {
      batch = synthetic->batch(step);
    }
    data_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double lr = learning_rate(t.schedule, t.lr, step, t.warmup_steps, t.steps);
    PretrainStep::Result out = stepper.run(batch, lr, step);
    if (!out.finite) {
      ++summary.skipped_steps;
      if (++bad_in_a_row >= kMaxBadStepsInARow)
        throw Error("training stopped at step " + std::to_string(step) + ": " + std::to_string(bad_in_a_row) +
                    " non-finite losses in a row (last: " + format_metrics(out.loss.metrics) + ")");
      continue;
    }
    bad_in_a_row = 0;
    ++summary.steps;
    interval_examples += batch.size();

    for (const auto& [k, v] : out.loss.metrics)
      if (std::isfinite(v)) sums[k] += v, ++counts[k];
    if ((step + 1) % t.log_every == 0 || step + 1 == t.steps) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - interval_start).count();
      json rec = {{"step", step + 1}, {"lr", lr}, {"examples_per_s", interval_examples / secs},
                  {"elapsed_s", progress.elapsed()}};
      last.clear();
      for (const auto& [k, v] : sums) rec[k] = last[k] = v / counts[k];
      if (real) rec["dataset_counts"] = sampler_state["counts"];
      metrics_out << rec.dump() << "\n" << std::flush;
      sums.clear(), counts.clear();
      interval_examples = 0;
      interval_start = std::chrono::steady_clock::now();
    }
    progress.update(step + 1, format_metrics(last));
  }
  summary.seconds = progress.elapsed();
  summary.examples_per_second = summary.steps * t.batch_size / std::max(1e-9, summary.seconds);
  summary.metrics = last;
  progress.finish(t.steps, format_metrics(last));
  log << "mmt train: " << summary.steps << " steps in " << Progress::format_duration(summary.seconds) << " ("
      << static_cast<int64_t>(summary.examples_per_second) << " ex/s, "
      << static_cast<int>(100 * data_seconds / std::max(1e-9, summary.seconds)) << "% in batch preparation)";
  if (summary.skipped_steps) log << ", " << summary.skipped_steps << " steps skipped for non-finite losses";
  log << "\n";
  json trained_on;
  if (real) {
    log << "mmt train: examples per dataset: " << datasets->counts();
    if (datasets->bad_images()) log << "; " << datasets->bad_images() << " undecodable images skipped";
    log << "\n";
    trained_on = json::array();
    for (const auto& d : datasets->datasets())
      trained_on.push_back({{"name", d.spec.name}, {"format", d.spec.format}, {"path", d.spec.path},
                            {"splits", d.spec.splits.empty() ? json("all") : json(d.spec.splits)},
                            {"images", d.records.size()}, {"skipped", d.bad.by_reason()}});
  } else {
    trained_on = "synthetic world train split (seed " + std::to_string(cfg.data.synth.seed) + ", test scenes excluded)";
  }

  json extra = {{"trained_on", trained_on},
                {"fine_tuned_on", json::array()},
                {"train_seconds", summary.seconds},
                {"examples_per_s", summary.examples_per_second},
                {"skipped_steps", summary.skipped_steps},
                {"final_metrics", summary.metrics}};
  if (real) extra["sampler"] = sampler_state;
  save_checkpoint(run, *model, t.steps, extra);
  log << "mmt train: wrote " << run.weights() << "\n";
  return summary;
}

}  // namespace mmt
