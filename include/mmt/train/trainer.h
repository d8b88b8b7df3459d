/* Pretraining: the loop that turns an ExperimentConfig into a trained run directory. */
#pragma once

#include <iosfwd>
#include <map>
#include <stdexcept>
#include <string>

#include "mmt/config/options.h"

namespace mmt {

struct TrainSummary {
  int64_t steps = 0;                      // optimizer steps taken
  int64_t skipped_steps = 0;              // steps skipped for a non-finite loss
  double seconds = 0;                     // wall time of this session's loop
  double examples_per_second = 0;         // training throughput
  double flops_per_second = 0;            // model FLOPs of every pass (model/flops.h step_train_flops), all processes
  std::map<std::string, double> metrics;  // averages over the last logging interval
};

/// Trains a model as configured and writes the run directory (run_dir.h): config.json,
/// vocab.txt, metrics.jsonl, resumable checkpoints every train.checkpoint_every steps, and at
/// the end model.safetensors + checkpoint.json. Progress goes to `log`. Refuses a directory that
/// already holds a run unless `resume`: then it continues from the newest complete checkpoint so
/// that, on CPU, losses and weights are those of an uninterrupted run (`cfg` must be the run's
/// config.json, train.steps and runtime.* aside). SIGINT / SIGTERM write a checkpoint and throw
/// Interrupted.
TrainSummary train_run(const ExperimentConfig& cfg, const std::string& run_dir, std::ostream& log, bool resume = false);

/// Whether `run_dir` holds a run (config.json) with a complete resumable checkpoint.
bool has_resumable_checkpoint(const std::string& run_dir);

/// The steps a finished run trained (its checkpoint.json), or -1 when it has not finished.
int64_t finished_steps(const std::string& run_dir);

/// Thrown after a SIGINT / SIGTERM once the checkpoint is written.
struct Interrupted : std::runtime_error {
  Interrupted(const std::string& what, int signal) : std::runtime_error(what), signal(signal) {}
  int signal;
};

}  // namespace mmt
