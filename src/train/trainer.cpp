/* The pretraining loop (see trainer.h). */
#include "mmt/train/trainer.h"

#include <signal.h>
#include <malloc.h>  // malloc_trim (glibc)
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/dataset_batcher.h"
#include "mmt/text/tokenizer.h"
#include "mmt/data/prefetch.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/io/safetensors.h"
#include "mmt/loss/align_queue.h"
#include "mmt/model/flops.h"
#include "mmt/text/bert_checkpoint.h"
#include "mmt/train/distributed.h"
#include "mmt/train/flat_adamw.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/train/progress.h"
#include "mmt/train/run_dir.h"
#include "mmt/train/schedule.h"
#include "mmt/train/tensorboard.h"
#include "mmt/train/train_eval.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"
#include "mmt/util/rng.h"
#include "mmt/util/device.h"
#include "mmt/util/runtime.h"
#include "mmt/util/tee_log.h"

namespace mmt {

using nlohmann::json;

namespace {

std::string format_metrics(const std::map<std::string, double>& m) {
  std::string out;
  char buf[64];
  for (const char* key : {"loss", "mlm", "mrm_kl", "mrm_regression", "mrm_class", "itm", "itm_contrastive", "dual", "align", "mlm_acc", "itm_acc", "itm_contrastive_acc", "dual_acc", "align_acc"}) {
    auto it = m.find(key);
    if (it == m.end()) continue;
    std::snprintf(buf, sizeof buf, "%s%s %.3f", out.empty() ? "" : " ", key, it->second);
    out += buf;
  }
  return out;
}

std::atomic<int> g_signal{0};
void on_signal(int sig) { g_signal.store(sig); }

// SIGINT / SIGTERM set a flag the loop checks after each step; the old handlers come back after.
class SignalGuard {
 public:
  SignalGuard() {
    g_signal.store(0);
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int_);
    sigaction(SIGTERM, &sa, &old_term_);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int_, nullptr);
    sigaction(SIGTERM, &old_term_, nullptr);
  }

 private:
  struct sigaction old_int_ {}, old_term_ {};
};

// Test hook (docs/formats.md): MMT_FAULT_KILL_AFTER_STEP=N kills the process with SIGKILL once
// step N (and its checkpoint, if one is due) is done - a crash at a known point.
// The datasets of the config (name, format, path, splits), for sidecars written before the end.
json configured_datasets(const ExperimentConfig& cfg) {
  json out = json::array();
  for (const auto& d : cfg.data.datasets)
    out.push_back({{"name", d.name.empty() ? d.format : d.name}, {"format", d.format}, {"path", d.path},
                   {"splits", d.splits.empty() ? json("all") : json(d.splits)}});
  return out;
}

int64_t fault_kill_step() {
  const char* v = std::getenv("MMT_FAULT_KILL_AFTER_STEP");
  return v ? std::atoll(v) : -1;
}

}  // namespace

bool has_resumable_checkpoint(const std::string& dir) {
  const RunFiles run(dir);
  return file_exists(run.config()) && latest_train_checkpoint(run) >= 0;
}

int64_t finished_steps(const std::string& dir) {
  const RunFiles run(dir);
  if (!file_exists(run.checkpoint())) return -1;
  return parse_json_with_comments(read_file(run.checkpoint()), run.checkpoint()).value("step", int64_t{-1});
}

namespace {

// "2026-11-28 17:40:12 UTC on host (pid 1234)": when and where a run's log starts a session.
std::string session_stamp() {
  char host[256] = "?";
  ::gethostname(host, sizeof host - 1);
  return utc_timestamp() + " on " + host + " (pid " + std::to_string(::getpid()) + ")";
}

TrainSummary train(const ExperimentConfig& cfg, const std::string& dir, TeeLog& tee, bool resume);

// One parameter with nearly all of the gradient's norm: the global-norm clipping then shrinks
// every other gradient by the same factor, and nothing else would say so. Seen when an input it
// reads is degenerate - MRM's zeroed regions into a LayerNorm with a zero bias did it
// (docs/losses.md, "A masked region's embedding").
void warn_if_one_gradient_dominates(MultimodalTransformerImpl& model, double clip, double unclipped_norm, int64_t step,
                                    std::ostream& log) {
  const GradientShare g = largest_gradient_share(model);
  constexpr double kDominant = 0.9;  // of the squared norm: all the others together under a third of its norm
  if (g.share < kDominant || g.total <= 0) return;
  // The gradients are read after clipping, which scales them all alike: the norms before it from
  // the step's own (logged whenever clipping is on).
  const double scale = unclipped_norm > 0 ? unclipped_norm / g.total : 1;
  char share[16], line[512];
  if (g.share > 0.9999) std::snprintf(share, sizeof share, ">99.99");
  else std::snprintf(share, sizeof share, "%.2f", 100 * g.share);
  std::snprintf(line, sizeof line,
                "mmt train: note: %s %% of step %lld's squared gradient norm is %s's (norm %.4g of %.4g)", share,
                static_cast<long long>(step), g.name.c_str(), g.norm * scale, g.total * scale);
  log << line;
  if (clip > 0 && g.total * scale > clip) {
    std::snprintf(line, sizeof line,
                  "; clipping to train.grad_clip = %g shrinks every other gradient %.3g-fold with it", clip,
                  g.total * scale / clip);
    log << line;
  }
  log << " - one parameter far above the rest usually reads a degenerate input (a constant vector into a LayerNorm)\n";
}

}  // namespace

TrainSummary train_run(const ExperimentConfig& cfg, const std::string& dir, std::ostream& out_log, bool resume) {
  // The run's log goes to out_log and, once the run directory is open, into DIR/train.log; why a
  // run stopped goes there too (the CLI prints it to the console).
  TeeLog tee(out_log);
  try {
    return train(cfg, dir, tee, resume);
  } catch (const std::exception& e) {
    const std::string what = e.what();
    tee.file_only("mmt train: stopped " + session_stamp() + ": " + what.substr(0, what.find('\n')));
    throw;
  }
}

namespace {

TrainSummary train(const ExperimentConfig& cfg, const std::string& dir, TeeLog& tee, bool resume) {
  // Distributed (docs/distributed.md): every rank trains on its share of each global batch; rank 0
  // alone writes the run directory and the log.
  const std::shared_ptr<Communicator> group = current_communicator();
  Communicator* comm = group && group->size() > 1 ? group.get() : nullptr;
  const int rank = comm ? comm->rank() : 0, world = comm ? comm->size() : 1;
  const bool root = rank == 0;
  std::ostream discard(nullptr);
  std::ostream& log = root ? static_cast<std::ostream&>(tee) : discard;
  const RunFiles run(dir);
  int64_t start = 0;
  std::string setup_error;  // ranks agree on the run directory before any of them trains
  try {
  if (resume) {
    if (!file_exists(run.config())) throw Error("'" + dir + "' is not a run directory (no config.json) to resume");
    if (finished_steps(dir) >= cfg.train.steps)
      throw Error("'" + dir + "' has finished its " + std::to_string(cfg.train.steps) +
                  " steps; to train longer, resume with --set train.steps=M (M > " + std::to_string(cfg.train.steps) + ")");
    start = latest_train_checkpoint(run);
    if (start < 0) throw Error("nothing to resume in '" + dir + "': " + run.checkpoints() + " has no complete checkpoint");
    if (root) write_file_atomic(run.config(), config_to_json(cfg).dump(2) + "\n");  // train.steps may have grown
    log << "mmt train: resuming " << dir << " at step " << start << "\n";
  } else if (root) {
    if (file_exists(run.checkpoint()) || latest_train_checkpoint(run) >= 0)
      throw Error("'" + dir + "' already holds a run; choose another --out, or continue it with --resume " + dir);
    make_dirs(dir);
    write_file_atomic(run.config(), config_to_json(cfg).dump(2) + "\n");
  }
  } catch (const Error& e) {
    setup_error = e.what();
  }
  agree(comm, setup_error, "opening the run directory");
  if (root) {
    tee.open_file(dir + "/train.log");
    tee.file_only("mmt train: " + std::string(resume ? "resumed at step " + std::to_string(start) + "," : "started") + " " +
                  session_stamp());
  }
  if (comm) {
    log << "mmt train: " << world << " processes (" << comm->describe()
        << "); each takes " << cfg.train.batch_size / world << "-" << (cfg.train.batch_size + world - 1) / world
        << " rows of the global batch of " << cfg.train.batch_size << "\n";
    if (cfg.train.batch_size < world) throw Error("train.batch_size " + std::to_string(cfg.train.batch_size) + " is smaller than the " + std::to_string(world) + " processes");
    if (cfg.train.itm_negatives == "hard" || cfg.train.itm_swap == "both")
      log << "mmt train: note: the ITM negatives the step makes (hard, itm_swap = both) draw partners among each rank's own rows (" << cfg.train.batch_size / world
          << " candidates, not " << cfg.train.batch_size << ")\n";
  }
  log << "mmt train: " << cfg.name << " -> " << dir << "\n";
  log << "mmt train: " << configure_runtime(cfg.runtime, log) << "\n";
  torch::manual_seed(cfg.train.seed);

  // The data: the synthetic world, or a mixture of real datasets behind the threaded loader.
  const auto t_data = std::chrono::steady_clock::now();
  const bool real = cfg.data.source == "datasets";
  std::unique_ptr<synth::World> synth_world;
  std::unique_ptr<DatasetBatcher> datasets;
  InputDims dims;
  if (real) {
    datasets = std::make_unique<DatasetBatcher>(cfg, &log);
    datasets->shard(rank, world);
    if (root) datasets->tokenizer().vocab().save(run.vocab());
    dims = datasets->input_dims();
    log << "mmt train: " << datasets->datasets().size() << " datasets read in "
        << Progress::format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_data).count())
        << "; tokenizer " << datasets->tokenizer().describe() << "\n";
  } else {
    synth_world = std::make_unique<synth::World>(cfg.data.synth);
    if (root) data_vocab(cfg).save(run.vocab());
    dims = data_input_dims(cfg);
    log << "mmt train: synthetic world of " << synth_world->train_scenes().size() << " train scenes built in "
        << Progress::format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_data).count())
        << "\n";
    if (!cfg.data.synth.mixture.empty()) log << "mmt train: " << synth::describe_mixture(*synth_world, cfg.data.sampling) << "\n";
  }

  MultimodalTransformer model(cfg.model, dims);
  model->set_recompute_layers(cfg.runtime.recompute_layers);
  if (cfg.runtime.recompute_layers)
    log << "mmt train: runtime.recompute_layers: each layer keeps its inputs and runs again in the backward pass\n";
  if (!resume && !cfg.train.init.empty()) {
    // The whole model from another run's final weights (mmt finetune): same architecture and inputs.
    const RunFiles from(cfg.train.init);
    if (!file_exists(from.weights())) throw Error("train.init: " + from.weights() + " not found (a finished run directory)");
    try {
      load_module_state(*model, load_safetensors(from.weights()), /*strict=*/true);
    } catch (const Error& e) {
      throw Error("train.init: " + from.weights() + ": " + e.what());
    }
    log << "mmt train: initialised from " << from.weights() << "\n";
  }
  if (!resume && !cfg.model.text_init.empty()) {
    const LoadReport r = load_bert_checkpoint(*model, cfg.model.text_init);
    log << "mmt train: text side initialised from " << cfg.model.text_init;
    if (!r.missing.empty()) log << "; not in the checkpoint (left random): " << join(r.missing);
    if (!r.unexpected.empty()) log << "; checkpoint keys not used: " << join(r.unexpected);
    log << "\n";
  }
  if (!resume && !cfg.model.resnet_init.empty()) {
    if (!model->resnet) throw Error("model.resnet_init is set but model.image_input is not resnet50");
    try {
      load_module_state(*model->resnet, load_safetensors(cfg.model.resnet_init), /*strict=*/true);
    } catch (const Error& e) {
      throw Error(cfg.model.resnet_init + ": " + e.what());
    }
    log << "mmt train: ResNet-50 initialised from " << cfg.model.resnet_init << "\n";
  }
  const torch::Device device = resolve_device(cfg.runtime.device);
  model->to(device);  // before the optimizer flattens the parameters
  log << "mmt train: " << describe_device(device, use_bf16(cfg.runtime))
      << (cfg.runtime.precision == "auto" && device.is_cuda() ? " (runtime.precision = auto; fp32 or bf16 asks for one)" : "")
      << "\n";
  if (device.is_cpu() && !use_bf16(cfg.runtime) && cpu_bf16_is_native())
    log << "mmt train: note: this CPU has bf16 instructions: --set runtime.precision=bf16 may train faster (1.4-1.7x "
           "on a 2-core AMD Zen 5, same retrieval: docs/performance.md, \"bf16 on a CPU\"); fp32 is the study's "
           "reference\n";
  model->train();
  int64_t num_params = 0;
  for (const auto& p : model->parameters()) num_params += p.numel();
  log << "mmt train: model " << num_params << " parameters, " << layer_types(cfg.model).size() << " layers ("
      << join(cfg.model.layers.empty() ? std::vector<std::string>{cfg.model.attention} : cfg.model.layers)
      << "), hidden " << cfg.model.hidden << "; per example " << describe_positions(cfg) << "\n";

  const auto& t = cfg.train;
  PretrainStep stepper(*model, t, cfg.runtime, comm);
  if (stepper.align_queue()) {
    log << "mmt train: align queue of " << t.align_queue << " momentum embeddings (momentum " << t.align_momentum
        << "); its momentum model holds " << (t.momentum_mlm_teacher() ? "the model's " : "the towers' ")
        << stepper.align_queue()->momentum_parameters() << " parameters";
    if (t.align_distill > 0) log << "; align distillation " << t.align_distill;
    if (t.momentum_mlm_teacher()) log << "; MLM distillation " << t.mlm_distill << " (a forward pass of the momentum model a step)";
    if (t.distill_ramp > 0) log << ", ramped up from 0 over " << t.distill_ramp << " steps";
    log << "\n";
  }
  if (comm) {
    if (stepper.num_buckets() > 0)
      log << "mmt train: gradients summed in " << stepper.num_buckets() << " buckets of up to " << cfg.runtime.dist_bucket_mb
          << " MiB, each as soon as the backward pass fills it\n";
    else
      log << "mmt train: gradients summed in one all-reduce after the backward pass"
          << (t.itm_contrastive_weight > 0 ? " (contrastive ITM back-propagates after the main pass)" : "") << "\n";
  }
  std::map<std::string, double> sums, last;
  std::map<std::string, int64_t> counts;
  TrainSummary summary;
  int64_t bad_in_a_row = 0, interval_examples = 0, interval_skipped = 0;
  json sampler_state;  // after the last consumed step (datasets)
  double prior_seconds = 0;  // training time of the sessions before this one (up to their checkpoint)
  if (resume) {
    // Weights, AdamW moments, the torch RNG, the sampler and the logging sums of the checkpoint.
    NamedTensors extra;
    const json state = load_train_checkpoint(run, start, *model, stepper.optimizer(), &extra);
    if (stepper.align_queue()) {
      try {
        stepper.align_queue()->load(extra);
      } catch (const Error& e) {
        throw Error(run.step_dir(start) + "/optimizer.safetensors: " + e.what());
      }
    }
    sums = state.at("log_sums").get<std::map<std::string, double>>();
    counts = state.at("log_counts").get<std::map<std::string, int64_t>>();
    interval_examples = state.at("log_examples").get<int64_t>();
    interval_skipped = state.value("log_skipped", int64_t{0});
    summary.skipped_steps = state.value("skipped_steps", int64_t{0});
    prior_seconds = state.value("train_seconds", 0.0);  // 0 from a checkpoint written before it was kept
    if (real) {
      sampler_state = state.at("sampler");
      datasets->restore_sampler(sampler_state);
    }
    // metrics.jsonl keeps what was logged up to the checkpoint; later lines are written again.
    std::string kept;
    std::istringstream lines(file_exists(run.metrics()) ? read_file(run.metrics()) : "");
    for (std::string line; std::getline(lines, line);)
      if (!line.empty() && json::parse(line).value("step", int64_t{0}) <= start) kept += line + "\n";
    if (root) write_file_atomic(run.metrics(), kept);
  }
  if (comm) {
    // Every rank starts from rank 0's weights (they agree anyway: same seed, same checkpoint), and
    // draws its own dropout masks: one torch RNG stream per rank, seeded by (seed, rank, step).
    if (!resume) comm->broadcast(stepper.optimizer().params(), 0, "initial weights");
    torch::manual_seed(derive_seed(static_cast<uint64_t>(t.seed), 0xD157, static_cast<uint64_t>(rank), static_cast<uint64_t>(start)));
  }
  // Held-out evaluation every train.eval_every steps; the best weights by RSUM go to <run>/best.
  std::unique_ptr<TrainEvaluator> evaluator;
  double best_rsum = -1;
  if (t.eval_every > 0) {  // distributed: every rank scores its share of the captions, rank 0 reports
    evaluator = real ? std::make_unique<TrainEvaluator>(cfg, datasets->tokenizer(), dims.region_feat_dim, dims.region_classes)
                     : std::make_unique<TrainEvaluator>(cfg, *synth_world, data_vocab(cfg));
    log << "mmt train: every " << t.eval_every << " steps: retrieval on " << evaluator->describe() << "\n";
    if (resume && file_exists(RunFiles(run.best()).checkpoint())) {
      const json b = parse_json_with_comments(read_file(RunFiles(run.best()).checkpoint()), run.best());
      if (b.contains("best") && b["best"].value("step", int64_t{0}) <= start) best_rsum = b["best"].value("rsum", -1.0);
    }
  }
  std::unique_ptr<PretrainBatcher> synthetic;
  // Distributed: this rank's rows of the global synthetic batch (the same batch on every rank).
  const auto [row_begin, row_end] = shard_range(t.batch_size, rank, world);
  auto my_rows = [&, row_begin = row_begin, row_end = row_end](Batch b) {
    return comm ? batch_rows(b, row_begin, row_end) : b;
  };
  std::unique_ptr<BatchLoader> loader;
  const int64_t accum = t.grad_accum_steps;
  std::unique_ptr<BatchPrefetcher> prefetch;
  if (real) {
    loader = datasets->loader(start * accum);
  } else {
    const Vocab vocab = data_vocab(cfg);
    // Synthetic batches are a pure function of their index: built ahead on data.loader_threads
    // threads (each its own batcher), pinned, the stream unchanged - for a GPU, whose step waited
    // on them (28-54 % of the time on an H100 with one thread on the step's). On the 2-core CPU
    // an extra thread only competes with the step (0 % of the time is batch building there;
    // 214-259 vs 289-426 examples/s with it, docs/performance.md): not used.
    const LoaderSettings loading = loader_settings(cfg.data);
    if (loading.threads > 0 && device.is_cuda()) {
      // One batcher per thread (rendering keeps state), all sharing the first's pools of examples.
      std::shared_ptr<PretrainBatcher> first;
      auto per_thread = [&]() -> BatchPrefetcher::Make {
        auto own = std::make_shared<PretrainBatcher>(*synth_world, vocab, cfg, first.get());
        if (!first) first = own;
        return [&my_rows, own](int64_t i) { return my_rows(own->batch(i)); };
      };
      prefetch = std::make_unique<BatchPrefetcher>(per_thread, loading.threads, start * accum, t.steps * accum,
                                                   loading.prefetch, true);
      log << "mmt train: synthetic batches built ahead by " << loading.threads << " thread(s), " << loading.prefetch
          << " ahead (data.loader_threads, data.prefetch)\n";
    } else {
      synthetic = std::make_unique<PretrainBatcher>(*synth_world, vocab, cfg);
    }
  }
  std::ofstream metrics_file;
  if (root) {
    metrics_file.open(run.metrics(), resume ? std::ios::app : std::ios::trunc);
    if (!metrics_file) throw Error("cannot write '" + run.metrics() + "'");
  }
  std::ostream& metrics_out = root ? static_cast<std::ostream&>(metrics_file) : discard;
  std::unique_ptr<TensorBoardWriter> tensorboard;  // `tensorboard --logdir DIR/tensorboard`
  if (root) tensorboard = std::make_unique<TensorBoardWriter>(dir + "/tensorboard");

  // The rate and the ETA count this session's steps; metrics.jsonl's elapsed_s and
  // checkpoint.json's train_seconds add the sessions before.
  Progress progress("train", t.steps, log, "ex", static_cast<double>(t.batch_size * accum));
  progress.start_at(start);
  if (t.itm_negatives == "hard" && t.itm_hard_from_step > start && t.itm_hard_from_step < t.steps) {
    // Steps with hard negatives also score the batch: the ETA expects them slower by their FLOPs
    // (a typical batch's), until some are timed.
    ExperimentConfig random_negatives = cfg;
    random_negatives.train.itm_negatives = "random";
    const int64_t text = std::min<int64_t>(kTypicalCaptionTokens, cfg.model.max_text_len), image = max_image_positions(cfg);
    const double ratio = typical_step_flops(cfg, dims, text, image).total() /
                         std::max(1.0, typical_step_flops(random_negatives, dims, text, image).total());
    progress.expect_slower_from(t.itm_hard_from_step, ratio);
    char r[32];
    std::snprintf(r, sizeof r, "%.1f", ratio);
    log << "mmt train: hard negatives from step " << t.itm_hard_from_step << ": the ETA counts those steps as " << r
        << "x the ones before (their FLOPs) until some are timed\n";
  }
  auto checkpoint = [&](int64_t steps_done) {
    json state = {{"log_sums", sums}, {"log_counts", counts}, {"log_examples", interval_examples},
                  {"log_skipped", interval_skipped},
                  {"skipped_steps", summary.skipped_steps}, {"train_seconds", prior_seconds + progress.elapsed()}};
    if (real) state["sampler"] = sampler_state;
    if (root)
      save_train_checkpoint(run, *model, stepper.optimizer(), steps_done, state, t.keep_checkpoints,
                            stepper.align_queue() ? stepper.align_queue()->state() : NamedTensors{});
  };
  const SignalGuard signals;
  const int64_t kill_after = fault_kill_step();
  const char* kill_rank_env = std::getenv("MMT_FAULT_KILL_RANK");  // with it, only that rank is killed
  const int kill_rank = kill_rank_env ? std::atoi(kill_rank_env) : -1;
  // Test hook: a batch that cannot be built at step N (on rank MMT_FAULT_BATCH_ERROR_RANK, or all).
  const char* batch_error_env = std::getenv("MMT_FAULT_BATCH_ERROR_AT_STEP");
  const char* batch_error_rank_env = std::getenv("MMT_FAULT_BATCH_ERROR_RANK");
  const int64_t batch_error_at = batch_error_env ? std::atoll(batch_error_env) : -1;
  const int batch_error_rank = batch_error_rank_env ? std::atoi(batch_error_rank_env) : -1;

  // A step's result is read one step late (PretrainStep::launch): its index and examples wait with it.
  struct Launched {
    int64_t step, examples;
    PretrainStep::Pending result;
  };
  std::optional<Launched> behind;
  auto account = [&](Launched& l) {
    const PretrainStep::Result out = l.result.get();
    if (!out.finite) {
      ++summary.skipped_steps, ++interval_skipped;
      // Said when it happens (the first few; later ones are counted in metrics.jsonl and the
      // summary), with what was not finite.
      constexpr int64_t kSkipsLogged = 10;
      if (summary.skipped_steps <= kSkipsLogged)
        log << "mmt train: step " << l.step << " skipped (no update): non-finite "
            << (std::isfinite(out.loss.metrics.at("loss")) ? "gradient" : "loss")
            << " (" << format_metrics(out.loss.metrics) << ")"
            << (summary.skipped_steps == kSkipsLogged ? "; further skipped steps are counted, not logged" : "") << "\n";
      if (++bad_in_a_row >= t.max_bad_steps)
        throw Error("training stopped at step " + std::to_string(l.step) + ": " + std::to_string(bad_in_a_row) +
                    " non-finite steps in a row - a NaN or infinite loss or gradient (last: " + format_metrics(out.loss.metrics) + ")");
    } else {
      bad_in_a_row = 0;
      ++summary.steps;
      interval_examples += l.examples;
      for (const auto& [k, v] : out.loss.metrics)
        if (std::isfinite(v)) sums[k] += v, ++counts[k];
    }
    return out;
  };
  double data_seconds = 0;
  StepFlops total_flops;  // every model pass of the steps run (model/flops.h), all processes
  auto interval_start = std::chrono::steady_clock::now();
  auto last_trim = interval_start;  // malloc_trim below
  for (int64_t step = start; step < t.steps; ++step) {
    const auto t0 = std::chrono::steady_clock::now();
    // grad_accum_steps micro-batches per optimizer step: micro-batch m = step * accum + k.
    std::vector<Batch> micro;
    int64_t step_examples = 0;
    StepFlops step_flops;  // the step's model passes over the real positions
    std::string data_error;  // distributed: a rank without its batch stops every rank at once
    try {
      if (step == batch_error_at && (batch_error_rank < 0 || batch_error_rank == rank))
        throw Error("step " + std::to_string(step) + ": injected batch error (MMT_FAULT_BATCH_ERROR_AT_STEP)");
      for (int64_t k = 0; k < accum; ++k) {
        if (real) {
          BatchLoader::Item item = loader->next();
          micro.push_back(std::move(item.batch));
          sampler_state = DatasetBatcher::sampler_state(item.plan);
        } else {
          micro.push_back(prefetch ? prefetch->next() : my_rows(synthetic->batch(step * accum + k)));
        }
        step_examples += micro.back().size();
        step_flops += step_train_flops(cfg, dims, micro.back());  // on the host, before the copy
      }
    } catch (const Error& e) {
      if (!comm) throw;
      data_error = e.what();
    }
    data_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    int sig = g_signal.load();
    if (comm) {
      // One small collective before the step's: whether every rank has its batch (else all stop
      // now, not at the timeout), a signal to any rank (every rank stops after this step), and
      // the global batch's examples.
      const auto v = all_reduce_sum(comm,
                                    {data_error.empty() ? 0.0 : 1.0, sig ? 1.0 : 0.0, static_cast<double>(step_examples), step_flops.main,
                                     step_flops.contrastive, step_flops.align_towers, step_flops.hard_negatives,
                                     step_flops.momentum_mlm},
                                    "step status");
      if (!data_error.empty()) throw Error(data_error);
      if (v[0] > 0)
        throw DistError("rank " + std::to_string(rank) + ": stopping at step " + std::to_string(step) + ": " +
                        std::to_string(static_cast<int>(v[0])) + " other rank(s) could not build their batch (their "
                        "messages say why); continue with mmt train --resume " + dir);
      if (v[1] > 0 && !sig) sig = SIGTERM;
      step_examples = static_cast<int64_t>(v[2]);
      step_flops = StepFlops{v[3], v[4], v[5], v[6], v[7]};
    }
    total_flops += step_flops;
    const double lr = learning_rate(t.schedule, t.lr, step, t.warmup_steps, t.steps);
    Launched now{step, step_examples, stepper.launch(micro, lr, step)};
    if (!comm) sig = g_signal.load();  // one process: a signal during the step stops it after the step
    // The step before is read now that this one is queued (on a GPU the host need not wait for
    // the device between steps); this one too where a log line, an evaluation or a checkpoint
    // follows (a signal makes one due, and the last step logs).
    if (behind) account(*behind), behind.reset();
    const int64_t done = step + 1;
    const bool log_due = done % t.log_every == 0 || done == t.steps;
    const bool eval_due = evaluator && (done % t.eval_every == 0 || done == t.steps);
    // The last step too: a finished run can then be trained longer (--resume --set train.steps=M)
    // from where it ended, not from an older checkpoint or not at all.
    const bool checkpoint_due = done == t.steps || (t.checkpoint_every > 0 && done % t.checkpoint_every == 0) || sig;
    // The first step is read at once too, while its gradients are still there to be looked at.
    if (step == start) {
      const auto metrics = account(now).loss.metrics;
      const auto norm = metrics.find("grad_norm");  // before clipping (logged whenever clipping is on)
      warn_if_one_gradient_dominates(*model, t.grad_clip, norm == metrics.end() ? -1 : norm->second, step + 1, log);
    } else if (log_due || eval_due || checkpoint_due) {
      account(now);
    } else {
      behind = std::move(now);
    }
    if (log_due) {
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - interval_start).count();
      json rec = {{"step", step + 1}, {"lr", lr}, {"examples_per_s", interval_examples / secs},
                  {"elapsed_s", prior_seconds + progress.elapsed()}};
      last.clear();
      for (const auto& [k, v] : sums) rec[k] = last[k] = v / counts[k];
      if (real) rec["dataset_counts"] = sampler_state["counts"];
      if (interval_skipped) rec["skipped_steps"] = interval_skipped;  // in this interval
      metrics_out << rec.dump() << "\n" << std::flush;
      std::map<std::string, double> scalars = last;
      scalars["lr"] = lr, scalars["examples_per_s"] = interval_examples / secs;
      if (tensorboard) tensorboard->scalars(scalars, step + 1, "train/"), tensorboard->flush();
      sums.clear(), counts.clear();
      interval_examples = 0, interval_skipped = 0;
      interval_start = std::chrono::steady_clock::now();
    }
    progress.update(step + 1, format_metrics(last));
#ifdef __GLIBC__
    // Free pages the allocator keeps between libtorch's transient buffers go back to the system
    // at a logging interval, at most every 10 s (a trimmed page is faulted in again when reused:
    // at train.log_every = 1 every step would pay that): the clip-art run's peak 1.22 -> 1.01 GB,
    // no change in speed measurable (docs/performance.md).
    if (log_due && std::chrono::steady_clock::now() - last_trim > std::chrono::seconds(10)) {
      malloc_trim(0);
      last_trim = std::chrono::steady_clock::now();
    }
#endif

    if (eval_due) {
      json m = evaluator->run(*model, log);
      const bool better = m["rsum"].get<double>() > best_rsum;
      m["best"] = better;
      metrics_out << json{{"step", done}, {"eval", m}}.dump() << "\n" << std::flush;
      std::map<std::string, double> scalars;
      for (const char* k : {"rsum", "image_r1", "image_r5", "image_r10", "text_r1", "text_r5", "text_r10"}) scalars[k] = m[k];
      if (tensorboard) tensorboard->scalars(scalars, done, "eval/"), tensorboard->flush();
      char line[160];
      std::snprintf(line, sizeof line, "mmt train: step %lld validation RSUM %.1f (image R@1 %.1f, text R@1 %.1f)%s\n",
                    static_cast<long long>(done), m["rsum"].get<double>(), m["image_r1"].get<double>(),
                    m["text_r1"].get<double>(), better ? ", best so far: saved to best/" : "");
      log << line;
      if (better) {
        best_rsum = m["rsum"].get<double>();
        json side = {{"best", {{"step", done}, {"rsum", best_rsum}, {"metrics", m}, {"set", evaluator->describe()}}},
                     {"fine_tuned_on", t.stage == "finetune" ? configured_datasets(cfg) : json::array()}};
        if (t.stage == "finetune") side["pretrained_from"] = t.init;
        if (root) save_best(run, *model, done, side);
      }
    }
    // A due checkpoint, an interruption (SIGINT / SIGTERM), the crash test hook.
    if (checkpoint_due) checkpoint(done);
    if (sig && done < t.steps) {
      progress.finish(done, format_metrics(last));
      throw Interrupted("interrupted by " + std::string(sig == SIGINT ? "SIGINT" : "SIGTERM") + " after step " +
                            std::to_string(done) + "; checkpoint written: continue with mmt train --resume " + dir,
                        sig);
    }
    if (done == kill_after && (kill_rank < 0 || kill_rank == rank)) ::raise(SIGKILL);
  }
  summary.seconds = progress.elapsed();
  summary.examples_per_second = summary.steps * t.batch_size * accum / std::max(1e-9, summary.seconds);
  summary.flops_per_second = total_flops.total() / std::max(1e-9, summary.seconds);
  summary.metrics = last;
  progress.finish(t.steps, format_metrics(last));
  log << "mmt train: " << summary.steps << " steps in " << Progress::format_duration(summary.seconds) << " ("
      << static_cast<int64_t>(summary.examples_per_second) << " ex/s, " << format_flop_rate(summary.flops_per_second)
      << (total_flops.shares().empty() ? "" : " [" + total_flops.shares() + "]") << ", " << static_cast<int>(100 * data_seconds / std::max(1e-9, summary.seconds)) << "% in batch preparation";
  if (comm)
    log << ", " << static_cast<int>(100 * stepper.all_reduce_seconds() / std::max(1e-9, summary.seconds))
        << "% in the gradient all-reduce of " << world << " processes";
  log << ")";
  if (summary.skipped_steps) log << ", " << summary.skipped_steps << " steps skipped for a non-finite loss or gradient";
  const double peak_mb = peak_resident_mb();
  char peak[64];
  std::snprintf(peak, sizeof peak, "; peak memory %.2f GB%s", peak_mb / 1024, comm ? " (rank 0's process)" : "");
  log << peak;
  if (const double held = cuda_memory_in_use_mb(device); held >= 0) {
    std::snprintf(peak, sizeof peak, "; GPU memory in use %.1f GB", held / 1024);
    log << peak;
  }
  log << "\n";
  json trained_on;
  if (real) {
    if (!sampler_state.is_null()) log << "mmt train: examples per dataset: " << datasets->counts(sampler_state);
    if (datasets->bad_images()) log << "; " << datasets->bad_images() << " undecodable images skipped";
    log << "\n";
    if (const std::string cache = datasets->describe_cache(); !cache.empty()) log << "mmt train: image cache: " << cache << "\n";
    trained_on = json::array();
    for (const auto& d : datasets->datasets())
      trained_on.push_back({{"name", d.spec.name}, {"format", d.spec.format}, {"path", d.spec.path},
                            {"splits", d.spec.splits.empty() ? json("all") : json(d.spec.splits)},
                            {"images", d.records.size()}, {"skipped", d.bad.by_reason()}});
  } else {
    trained_on = "synthetic world train split (seed " + std::to_string(cfg.data.synth.seed) + ", test scenes excluded)";
  }

  json fine_tuned_on = json::array();
  if (t.stage == "finetune") {
    // What this run trained on is retrieval data; what the model was pretrained on is the init run's.
    fine_tuned_on = trained_on;
    trained_on = "unknown (train.init not a run directory)";
    if (!t.init.empty() && file_exists(RunFiles(t.init).checkpoint()))
      trained_on = parse_json_with_comments(read_file(RunFiles(t.init).checkpoint()), RunFiles(t.init).checkpoint())
                       .value("trained_on", json("unknown"));
  }
  json extra = {{"trained_on", trained_on},
                {"fine_tuned_on", fine_tuned_on},
                {"train_seconds", prior_seconds + summary.seconds},  // every session's
                {"examples_per_s", summary.examples_per_second},
                {"skipped_steps", summary.skipped_steps},
                {"peak_rss_mb", peak_mb},
                {"final_metrics", summary.metrics}};
  if (real) extra["sampler"] = sampler_state;
  if (t.stage == "finetune") extra["pretrained_from"] = t.init;
  if (root) save_checkpoint(run, *model, t.steps, extra);
  if (comm) comm->barrier("the end of training");  // the weights are on disk when any rank returns
  log << "mmt train: wrote " << run.weights() << "\n";
  return summary;
}

}  // namespace

}  // namespace mmt
