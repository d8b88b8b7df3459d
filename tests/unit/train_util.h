/* In-process training for the loss tests: a model of a given config, its batcher and its step on a
 * small synthetic world (2000 scenes of at most 2 objects, batches of 32), the model seeded with 1. */
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <utility>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/model/transformer.h"
#include "mmt/train/pretrain_step.h"

namespace mmt::testing {

struct SmallTraining {
  /// `c` gives the model and the losses; the world and the batch size are set here.
  explicit SmallTraining(const ExperimentConfig& c)
      : cfg(prepared(c)), world(cfg.data.synth), model(seeded(cfg)), batcher(world, data_vocab(cfg), cfg), step(*model, cfg.train) {}

  ExperimentConfig cfg;
  synth::World world;
  MultimodalTransformer model;
  PretrainBatcher batcher;
  PretrainStep step;

 private:
  static ExperimentConfig prepared(ExperimentConfig c) {
    c.data.synth.num_train_images = 2000, c.data.synth.num_test_images = 10, c.data.synth.max_objects = 2;
    c.train.batch_size = 32;
    validate_config(c);
    return c;
  }
  static MultimodalTransformer seeded(const ExperimentConfig& c) {
    torch::manual_seed(1);
    MultimodalTransformer m(c.model, data_input_dims(c));
    m->train();
    return m;
  }
};

/// Trains `steps` steps (learning rate 1e-3 after a linear warm-up of `warmup`) with the align
/// loss next to MLM and ITM, and returns the mean align accuracy over the last `tail` steps and
/// its chance there, 1 / (the step's matched pairs + `extra_candidates`: a queue's entries).
inline std::pair<double, double> align_accuracy_and_chance(SmallTraining& t, int64_t steps, int64_t warmup, int64_t tail,
                                                           int64_t extra_candidates = 0) {
  double acc = 0, chance = 0;
  for (int64_t s = 0; s < steps; ++s) {
    const Batch batch = t.batcher.batch(s);
    const auto r = t.step.run(batch, 1e-3 * std::min(1.0, (s + 1.0) / static_cast<double>(warmup)));
    EXPECT_TRUE(r.finite) << "step " << s;
    EXPECT_TRUE(r.loss.metrics.count("align") && r.loss.metrics.count("itm") && r.loss.metrics.count("mlm")) << "step " << s;
    if (s >= steps - tail) {
      acc += r.loss.metrics.at("align_acc") / static_cast<double>(tail);
      chance += 1.0 / (batch.itm_labels.eq(1).sum().item<double>() + static_cast<double>(extra_candidates)) / static_cast<double>(tail);
    }
  }
  return {acc, chance};
}

}  // namespace mmt::testing
