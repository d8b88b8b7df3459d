/* The training step counts MLM tokens and masked regions on the host before the batch moves to a
 * device, and finds their positions with a stable sort instead of nonzero() (which waits for the
 * device) - the dual-encoder loss's matched rows likewise: the losses, metrics and gradients must be
 * those of counts read from the batch itself, and the MLM loss that of nonzero()'s positions, bit
 * for bit. The metrics left on the device (`defer`) read the same. */
#include <gtest/gtest.h>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/loss/pretraining.h"
#include "mmt/model/transformer.h"

namespace mmt {
namespace {

// Three batches through both paths: equal metrics, totals and gradients; `keys` reported.
void expect_host_counts_change_nothing(const std::vector<std::string>& settings, const std::vector<std::string>& keys) {
  std::vector<std::string> all{"data.synth.num_train_images=200", "train.batch_size=12", "model.num_layers=2", "model.dropout=0"};
  all.insert(all.end(), settings.begin(), settings.end());
  const ExperimentConfig cfg = load_config("", all);
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  torch::manual_seed(4);
  MultimodalTransformer model(cfg.model, data_input_dims(cfg));
  model->train();
  for (int64_t step : {0, 1, 2}) {
    const Batch batch = batcher.batch(step);
    const HostCounts counts = host_counts(batch);
    ASSERT_GT(counts.mlm, 0);
    ASSERT_GT(counts.mrm, 0);
    ASSERT_GT(counts.itm_matched, 1);
    std::vector<torch::Tensor> grads[2];
    LossOutput out[2];
    for (int k = 0; k < 2; ++k) {
      model->zero_grad();
      out[k] = pretraining_loss(*model, batch, cfg.train, nullptr, k == 0 ? nullptr : &counts);
      out[k].total.backward();
      for (const auto& p : model->parameters()) grads[k].push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
    }
    EXPECT_EQ(out[0].metrics, out[1].metrics) << "step " << step;
    // The positions by stable sort against nonzero()'s (the public loss_mlm keeps it).
    if (out[1].metrics.count("mlm")) {
      torch::NoGradGuard no_grad;
      EXPECT_EQ(loss_mlm(*model, model->encode(batch), batch.mlm_labels).first.item<double>(), out[1].metrics.at("mlm"))
          << "step " << step;
    }
    EXPECT_TRUE(torch::equal(out[0].total, out[1].total)) << "step " << step;
    // Deferred (the GPU step reads them a step late): the same values, read when asked.
    {
      torch::NoGradGuard no_grad;
      LossOutput later = pretraining_loss(*model, batch, cfg.train, nullptr, &counts, /*defer=*/true);
      EXPECT_FALSE(later.pending.empty());
      const std::vector<double> values = later.pending.read();
      for (size_t i = 0; i < values.size(); ++i) later.metrics[later.pending.names[i]] = values[i];
      EXPECT_EQ(later.metrics, out[1].metrics) << "step " << step;
    }
    for (const auto& key : keys) EXPECT_EQ(out[1].metrics.count(key), 1u) << key;
    for (size_t i = 0; i < grads[0].size(); ++i) {
      ASSERT_EQ(grads[0][i].defined(), grads[1][i].defined()) << i;
      if (grads[0][i].defined()) EXPECT_TRUE(torch::equal(grads[0][i], grads[1][i])) << "parameter " << i;
    }
  }
}

TEST(LossHostCounts, GiveThePlainPathsLossesMetricsAndGradients) {
  expect_host_counts_change_nothing(
      {"train.mrm_kl_weight=1", "train.mrm_regression_weight=1", "train.mrm_class_weight=1"},
      {"loss", "mlm", "mlm_acc", "itm", "itm_acc", "mrm_kl", "mrm_regression", "mrm_class"});
}

TEST(LossHostCounts, GiveTheDualEncoderLossItsMatchedRows) {
  expect_host_counts_change_nothing({"model.kind=dual_encoder", "model.attention=single_modality", "model.dual_score=dot", "train.dual_contrastive_weight=1",
                                     "train.mrm_regression_weight=1"},
                                    {"loss", "dual", "dual_acc"});
}

}  // namespace
}  // namespace mmt
