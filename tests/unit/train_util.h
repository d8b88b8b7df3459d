/* In-process training for the loss tests: a model of a given config, its batcher and its step on a
 * small synthetic world (2000 scenes of at most 2 objects, batches of 32), the model seeded with 1. */
#pragma once

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

}  // namespace mmt::testing
