/* FlatAdamW equals torch::optim::AdamW (with the same decay groups and clipping) step by step. */
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include "mmt/train/flat_adamw.h"
#include "test_util.h"

namespace mmt {
namespace {

TEST(FlatAdamW, MatchesTorchAdamWOverManySteps) {
  auto opts = testing::small_model_options("merged", 2);
  torch::manual_seed(3);
  MultimodalTransformer a(opts, InputDims{testing::kVocab, testing::kFeat});
  MultimodalTransformer b(opts, InputDims{testing::kVocab, testing::kFeat});
  {
    torch::NoGradGuard ng;
    auto pa = a->parameters(), pb = b->parameters();
    for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
  }
  std::vector<torch::Tensor> decay, no_decay, all_b;
  std::vector<bool> flags;
  for (const auto& p : a->parameters()) flags.push_back(p.dim() >= 2);
  for (const auto& p : b->parameters()) (p.dim() >= 2 ? decay : no_decay).push_back(p), all_b.push_back(p);
  AdamWSettings s;
  s.weight_decay = 0.1;
  FlatAdamW flat(a->parameters(), flags, s);
  auto base = torch::optim::AdamWOptions(1e-2).betas({s.beta1, s.beta2}).eps(s.eps);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(base.weight_decay(0.1)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(base.weight_decay(0.0)));
  torch::optim::AdamW ref(std::move(groups), base);

  for (int step = 0; step < 12; ++step) {
    const Batch batch = testing::random_batch(4, 6, 3, 100 + step);
    const double lr = 1e-2 * (step + 1) / 12;
    for (auto& g : ref.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    flat.zero_grad();
    ref.zero_grad();
    // A loss that reaches every parameter (torch's AdamW skips parameters without a gradient;
    // the flat buffer cannot tell "no gradient" from "zero gradient" and decays them).
    auto loss = [&](MultimodalTransformer& m) {
      const auto e = m->encode(batch);
      return m->itm_logits(e).pow(2).sum() + m->mlm_logits(e.text.select(1, 1)).pow(2).mean();
    };
    auto la = loss(a), lb = loss(b);
    la.backward();
    lb.backward();
    const double na = flat.clip_grad_norm(0.05);
    const double nb = torch::nn::utils::clip_grad_norm_(all_b, 0.05);
    EXPECT_NEAR(na, nb, 1e-5 * std::max(1.0, nb));
    flat.step(lr);
    ref.step();
  }
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i) {
    const double diff = (pa[i].value() - pb[i].value()).abs().max().item<double>();
    EXPECT_LT(diff, 1e-5) << pa[i].key();
  }
  EXPECT_EQ(flat.steps(), 12);
}

}  // namespace
}  // namespace mmt

#include <torch/optim/adam.h>

#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/train/pretrain_step.h"

namespace mmt {
namespace {

// Adam with L2 (train.optimizer = adam): the decay joins the gradient, as torch::optim::Adam's.
TEST(FlatAdam, CoupledDecayMatchesTorchAdam) {
  torch::manual_seed(5);
  auto w = torch::randn({7, 5}, torch::requires_grad()), v = w.detach().clone().requires_grad_(true);
  AdamWSettings s;
  s.weight_decay = 0.05, s.decoupled = false;
  FlatAdamW flat({w}, {true}, s);
  torch::optim::Adam ref({v}, torch::optim::AdamOptions(3e-2).betas({s.beta1, s.beta2}).eps(s.eps).weight_decay(0.05));
  for (int step = 0; step < 10; ++step) {
    const auto x = torch::randn({5, 3});
    flat.zero_grad();
    ref.zero_grad();
    w.matmul(x).tanh().sum().backward();
    v.matmul(x).tanh().sum().backward();
    flat.step(3e-2);
    ref.step();
  }
  EXPECT_LT((w - v).abs().max().item<double>(), 1e-5);
}

TEST(FlatAdamW, PerParameterLearningRateScale) {
  torch::manual_seed(6);
  auto a = torch::randn({4}, torch::requires_grad()), b = torch::randn({4}, torch::requires_grad()),
       c = torch::randn({4}, torch::requires_grad());
  const auto a0 = a.detach().clone(), b0 = b.detach().clone(), c0 = c.detach().clone();
  AdamWSettings s;
  s.weight_decay = 0;
  FlatAdamW flat({a, b, c}, {true, true, true}, s, {1.0, 0.0, 2.0});
  flat.zero_grad();
  (a.sum() + b.sum() + c.sum()).backward();
  flat.step(0.1);
  EXPECT_TRUE(b.detach().equal(b0));  // scale 0: frozen
  // Adam's first step moves every weight by lr (g / |g|): scale 2 moves twice as far.
  EXPECT_LT(((c.detach() - c0) - 2 * (a.detach() - a0)).abs().max().item<double>(), 1e-6);
  EXPECT_NEAR((a.detach() - a0).abs().max().item<double>(), 0.1, 1e-5);
}

ExperimentConfig step_config() {
  ExperimentConfig cfg;
  cfg.model = testing::small_model_options("single_modality", 2);
  cfg.model.layers = {"single_modality", "merged"};
  cfg.data.synth.num_train_images = 300, cfg.data.synth.num_test_images = 10;
  cfg.train.batch_size = 8, cfg.train.grad_clip = 0;
  return cfg;
}

TEST(PretrainStepAccumulation, IdenticalMicroBatchesEqualOneBatch) {
  const auto cfg = step_config();
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  const Batch batch = batcher.batch(2);
  torch::manual_seed(9);
  MultimodalTransformer a(cfg.model, data_input_dims(cfg));
  torch::manual_seed(9);
  MultimodalTransformer b(cfg.model, data_input_dims(cfg));
  PretrainStep one(*a, cfg.train), two(*b, cfg.train);
  const auto r1 = one.run(batch, 1e-3, 0);
  const auto r2 = two.run(std::vector<Batch>{batch, batch}, 1e-3, 0);
  EXPECT_NEAR(r1.loss.metrics.at("loss"), r2.loss.metrics.at("loss"), 1e-6);  // the mean of equal losses
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_LT((pa[i].value() - pb[i].value()).abs().max().item<double>(), 1e-6) << pa[i].key();
}

TEST(PretrainStepAccumulation, CrossModalLayersGetTheirMultiplier) {
  auto cfg = step_config();
  cfg.train.cross_modal_lr_mult = 0.0;  // freeze the merged layer only
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  torch::manual_seed(2);
  MultimodalTransformer m(cfg.model, data_input_dims(cfg));
  std::map<std::string, torch::Tensor> before;
  for (const auto& p : m->named_parameters()) before[p.key()] = p.value().detach().clone();
  PretrainStep step(*m, cfg.train);
  step.run(batcher.batch(0), 1e-2, 0);
  int frozen = 0, moved = 0;
  for (const auto& p : m->named_parameters()) {
    const bool same = p.value().detach().equal(before[p.key()]);
    if (p.key().rfind("layers.1.", 0) == 0) {
      EXPECT_TRUE(same) << p.key();
      ++frozen;
    } else if (p.key().rfind("layers.0.", 0) == 0) {
      moved += !same;
    }
  }
  EXPECT_GT(frozen, 0);
  EXPECT_GT(moved, 0);
}

// A finite loss whose gradient is not (an overflow in the backward pass, here a hook that puts a
// NaN into one weight's gradient) must not reach the weights: one such AdamW update would make
// every weight NaN (clipping by a NaN norm spreads it to all). The step is skipped and says why,
// with clipping off (the norm is taken anyway) and on; training then goes on.
TEST(PretrainStep, NonFiniteGradientSkipsTheUpdate) {
  for (double clip : {0.0, 1.0}) {
    auto cfg = step_config();
    cfg.train.grad_clip = clip;
    const synth::World world(cfg.data.synth);
    PretrainBatcher batcher(world, data_vocab(cfg), cfg);
    torch::manual_seed(5);
    MultimodalTransformer m(cfg.model, data_input_dims(cfg));
    PretrainStep step(*m, cfg.train);
    ASSERT_TRUE(step.run(batcher.batch(0), 1e-3, 0).finite);
    auto& o = step.optimizer();
    const auto params = o.params().clone(), avg = o.exp_avg().clone(), avg_sq = o.exp_avg_sq().clone();
    auto weight = m->parameters()[3];
    for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
      const auto hook = weight.register_hook([bad](torch::Tensor g) { return g.clone().fill_(bad); });
      const auto r = step.run(batcher.batch(1), 1e-3, 1);
      weight.remove_hook(hook);
      EXPECT_FALSE(r.finite) << "clip " << clip << " gradient " << bad;
      EXPECT_TRUE(std::isfinite(r.loss.metrics.at("loss")));
      ASSERT_EQ(r.loss.metrics.count("grad_norm"), 1u);  // the reason, logged clipping or not
      EXPECT_FALSE(std::isfinite(r.loss.metrics.at("grad_norm")));
      EXPECT_EQ(o.steps(), 1);
      EXPECT_TRUE(torch::equal(o.params(), params)) << "clip " << clip << " gradient " << bad;
      EXPECT_TRUE(torch::equal(o.exp_avg(), avg));
      EXPECT_TRUE(torch::equal(o.exp_avg_sq(), avg_sq));
    }
    const auto r = step.run(batcher.batch(2), 1e-3, 2);
    EXPECT_TRUE(r.finite);
    EXPECT_EQ(r.loss.metrics.count("grad_norm"), clip > 0 ? 1u : 0u);  // logged where it clips
    EXPECT_EQ(o.steps(), 2);
    EXPECT_TRUE(torch::isfinite(o.params()).all().item<bool>());
    EXPECT_FALSE(torch::equal(o.params(), params));
  }
}

}  // namespace
}  // namespace mmt
