/* FlatAdamW equals torch::optim::AdamW (with the same decay groups and clipping) step by step. */
#include <gtest/gtest.h>

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
