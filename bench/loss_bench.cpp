/* Benchmark: cost of one training step with contrastive ITM (K negatives) relative to
 * classification ITM at the same batch, and the process's peak memory. One configuration per
 * run (peak RSS is per process): bench/run_losses.sh runs them all. docs/performance.md. */
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/model/transformer.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/util/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"mmt_bench_losses: time training steps of one loss configuration"};
  std::vector<std::string> overrides;
  int64_t steps = 5;
  app.add_option("--set", overrides, "config overrides, e.g. train.itm_contrastive_weight=1")->take_all();
  app.add_option("--steps", steps, "timed steps (after one warm-up step)");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto cfg = mmt::load_config("", overrides);
    const std::string threads = mmt::configure_runtime(cfg.runtime, std::cerr);
    const mmt::synth::World world(cfg.data.synth);
    torch::manual_seed(0);
    mmt::MultimodalTransformer model(cfg.model, mmt::data_input_dims(cfg));
    model->train();
    mmt::PretrainBatcher batcher(world, mmt::data_vocab(cfg), cfg);
    mmt::PretrainStep step(*model, cfg.train);
    step.run(batcher.batch(0), cfg.train.lr);
    double best = 1e30;
    for (int64_t s = 1; s <= steps; ++s) {
      const auto batch = batcher.batch(s);
      const auto t0 = std::chrono::steady_clock::now();
      step.run(batch, cfg.train.lr);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::cout << nlohmann::json({{"overrides", overrides},
                                 {"threads", threads},
                                 {"batch_size", cfg.train.batch_size},
                                 {"ms_per_step", 1000.0 * best},
                                 {"peak_rss_mb", mmt::peak_resident_mb()}})
                     .dump()
              << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "mmt_bench_losses: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
