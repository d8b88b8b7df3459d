/* bf16 autocast keeps the residual stream in bf16 (the path a GPU takes, run here on the CPU):
 * LayerNorm through layer_norm() returns bf16 under autocast and exactly ln(x) without it, a
 * layer's outputs are bf16, and training steps stay finite and near the fp32 ones. */
#include <gtest/gtest.h>

#include <cmath>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/model/layer.h"
#include "mmt/model/transformer.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/util/device.h"
#include "test_util.h"

namespace mmt {
namespace {

TEST(Bf16Stream, NormsAndLayersStayBf16UnderAutocastAndExactWithout) {
  torch::manual_seed(1);
  torch::nn::LayerNorm ln(torch::nn::LayerNormOptions({16}).eps(1e-12));
  {
    torch::NoGradGuard no_grad;
    ln->weight.uniform_(0.5, 1.5), ln->bias.uniform_(-0.5, 0.5);
  }
  const auto x = torch::randn({3, 5, 16});
  EXPECT_TRUE(torch::equal(layer_norm(ln, x), ln(x)));  // autocast off: the module itself
  {
    const AutocastGuard bf16(torch::kCPU, true);
    ASSERT_EQ(autocast_dtype(torch::kCPU), torch::kBFloat16);
    const auto y = layer_norm(ln, x);
    EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
    EXPECT_TRUE(torch::allclose(y.to(torch::kFloat32), ln(x), 2e-2, 2e-2));

    LayerOptions o;
    o.hidden = 16, o.num_heads = 2, o.head_dim = 8, o.ffn_dim = 32;
    for (auto type : {AttentionType::kMerged, AttentionType::kSingleModality, AttentionType::kAsymmetricTextQueries}) {
      o.type = type;
      MultimodalLayer layer(o);
      const auto text = torch::randn({2, 4, 16}), image = torch::randn({2, 6, 16});
      const auto tb = attention_bias(torch::ones({2, 4}, torch::kBool)), ib = attention_bias(torch::ones({2, 6}, torch::kBool));
      const auto [t, i] = layer->forward(text, image, tb, ib);
      EXPECT_EQ(t.scalar_type(), torch::kBFloat16) << attention_type_name(type);
      EXPECT_EQ(i.scalar_type(), torch::kBFloat16) << attention_type_name(type);
    }
  }
  EXPECT_FALSE(autocast_dtype(torch::kCPU).has_value());
}

std::vector<double> losses(const std::string& precision) {
  ExperimentConfig cfg = load_config("", {"data.synth.num_train_images=200", "train.batch_size=16", "model.num_layers=2",
                                          "model.dropout=0", "train.mrm_kl_weight=1", "runtime.precision=" + precision});
  const synth::World world(cfg.data.synth);
  torch::manual_seed(3);
  MultimodalTransformer model(cfg.model, data_input_dims(cfg));
  model->train();
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  PretrainStep step(*model, cfg.train, cfg.runtime);
  std::vector<double> out;
  for (int s = 0; s < 4; ++s) out.push_back(step.run(batcher.batch(s), 1e-3, s).loss.metrics.at("loss"));
  return out;
}

// A pass without grad mode inside the autocast region - hard negatives' or contrastive ITM's
// scoring, a recomputed layer's first run - leaves the next pass with grad mode every weight's
// gradient. (libtorch before 2.10 cached the first pass's casts of the weights, without their
// gradient history, and handed them to the second: with libtorch 1.13 on the CPU every bias of
// the layers' products lost its gradient, on CUDA the weights that `linear` casts.)
TEST(Bf16Stream, APassWithoutGradientsLeavesTheNextPassItsWeightGradients) {
  torch::manual_seed(1);
  MultimodalTransformer model(testing::small_model_options("merged"), InputDims{testing::kVocab, testing::kFeat});
  model->train();
  const Batch batch = testing::random_batch(4, 6, 3, 1);
  // Every parameter's gradient of an ITM loss in bf16, with or without a scoring pass first.
  const auto gradients = [&](bool scored_first) {
    for (auto& p : model->parameters()) p.mutable_grad() = torch::Tensor();
    torch::Tensor loss;
    {
      const AutocastGuard bf16(torch::kCPU, true);
      if (scored_first) {
        const torch::NoGradGuard no_grad;
        model->itm_logits(model->encode(batch));
      }
      loss = model->itm_logits(model->encode(batch)).to(torch::kFloat32).logsumexp(1).mean();
    }
    loss.backward();
    std::vector<std::pair<std::string, torch::Tensor>> g;
    for (const auto& item : model->named_parameters())
      g.push_back({item.key(), item.value().grad().defined() ? item.value().grad().clone() : torch::Tensor()});
    return g;
  };
  const auto plain = gradients(false), scored = gradients(true);
  ASSERT_EQ(plain.size(), scored.size());
  int with_gradient = 0;
  for (size_t k = 0; k < plain.size(); ++k) {
    const auto& [name, g] = plain[k];
    if (!g.defined()) continue;
    ++with_gradient;
    ASSERT_TRUE(scored[k].second.defined()) << name << " lost its gradient to the scoring pass";
    EXPECT_TRUE(torch::equal(g, scored[k].second)) << name;
  }
  EXPECT_GT(with_gradient, 20);
}

TEST(Bf16Stream, TrainingStepsStayFiniteAndNearFp32) {
  const auto fp32 = losses("fp32"), bf16 = losses("bf16");
  for (size_t s = 0; s < fp32.size(); ++s) {
    EXPECT_TRUE(std::isfinite(bf16[s])) << s;
    EXPECT_NEAR(bf16[s], fp32[s], 0.03 * std::abs(fp32[s])) << "step " << s;
  }
}

}  // namespace
}  // namespace mmt
