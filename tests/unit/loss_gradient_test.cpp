/* Float64 finite-difference checks of every loss's gradient on a tiny model: MLM, the three MRM
 * variants, ITM (one layer and every layer), dual InfoNCE, and contrastive ITM through its chunked
 * backward; and MRM's masked regions, whose zeroed features met a zero bias, leave the initial
 * gradient balanced. */
#include <gtest/gtest.h>

#include <array>
#include <cmath>

#include "mmt/data/pretrain_batcher.h"
#include "mmt/loss/contrastive_itm.h"
#include "mmt/loss/pretraining.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/util/rng.h"
#include "test_util.h"

namespace mmt {
namespace {

Batch double_batch() {
  Batch b = testing::random_batch(4, 6, 4, 21);
  b.region_feats = b.region_feats.to(torch::kFloat64);
  b.region_boxes = b.region_boxes.to(torch::kFloat64);
  b.region_classes = torch::softmax(torch::randn({4, 4, 3}, torch::kFloat64), -1);
  b.region_targets = torch::randn({4, 4, testing::kFeat}, torch::kFloat64);
  b.mrm_mask = torch::zeros({4, 4}, torch::kBool);
  b.mrm_mask[0][1] = b.mrm_mask[2][3] = b.mrm_mask[3][2] = true;
  b.mlm_labels = torch::full({4, 6}, kIgnoreLabel, torch::kInt64);
  b.mlm_labels[0][2] = 7, b.mlm_labels[1][4] = 11, b.mlm_labels[3][1] = 5;
  b.itm_labels = torch::tensor({1, 0, 1, 1}, torch::kInt64);
  b.negatives = std::make_shared<Batch>(testing::random_batch(3, 2, 3, 22));
  b.negatives->region_feats = b.negatives->region_feats.to(torch::kFloat64);
  b.negatives->region_boxes = b.negatives->region_boxes.to(torch::kFloat64);
  b.negative_excluded = torch::zeros({4, 3}, torch::kBool);
  return b;
}

void check(const std::string& what, MultimodalTransformer& model, const std::function<double()>& loss,
           const std::function<void()>& backward, const std::vector<std::string>& names) {
  model->zero_grad();
  backward();
  torch::NoGradGuard ng;
  int checked = 0;
  for (const auto& p : model->named_parameters()) {
    if (std::find(names.begin(), names.end(), p.key()) == names.end()) continue;
    auto flat = p.value().view({-1});
    const auto grad = p.value().grad().view({-1}).clone();
    for (int64_t k = 0; k < 4; ++k) {
      const int64_t i = (k * 104729 + 7) % flat.numel();
      const double orig = flat[i].item<double>(), eps = 1e-6;
      flat[i] = orig + eps;
      const double up = loss();
      flat[i] = orig - eps;
      const double down = loss();
      flat[i] = orig;
      const double numeric = (up - down) / (2 * eps), analytic = grad[i].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << what << " " << p.key() << "[" << i << "]";
      ++checked;
    }
  }
  EXPECT_EQ(checked, 4 * static_cast<int>(names.size())) << what;
}

TEST(LossGradients, FiniteDifferencesInFloat64) {
  torch::manual_seed(8);
  auto m = testing::small_model_options("merged", 2);
  MultimodalTransformer model(m, InputDims{testing::kVocab, testing::kFeat, 3});
  model->to(torch::kFloat64);
  model->train();
  const Batch batch = double_batch();
  const std::vector<std::string> shared = {"layers.0.image.value.weight", "layers.1.text.ffn_in.weight"};
  struct Case {
    const char* name;
    TrainOptions t;
    std::vector<std::string> params;
  };
  auto only = [](auto set) {
    TrainOptions t;
    t.mlm_weight = t.itm_weight = 0;
    set(t);
    return t;
  };
  const std::vector<Case> cases = {
      {"mlm", only([](TrainOptions& t) { t.mlm_weight = 1; }), {"mlm_transform.weight", "text_embed.word.weight"}},
      {"mrm_kl", only([](TrainOptions& t) { t.mrm_kl_weight = 1; }), {"mrm_class_out.weight", "image_embed.box.weight"}},
      {"mrm_regression", only([](TrainOptions& t) { t.mrm_regression_weight = 1; }), {"mrm_feature_out.weight"}},
      {"mrm_class", only([](TrainOptions& t) { t.mrm_class_weight = 1; }), {"mrm_class_transform.weight"}},
      {"itm", only([](TrainOptions& t) { t.itm_weight = 1; }), {"itm_image_pool.weight"}},
      {"itm_all_layers", only([](TrainOptions& t) { t.itm_weight = 1, t.itm_all_layers = true; }), {"itm_classifier.weight"}},
  };
  for (const auto& c : cases) {
    auto params = c.params;
    params.insert(params.end(), shared.begin(), shared.end());
    check(c.name, model, [&] { return pretraining_loss(*model, batch, c.t).total.item<double>(); },
          [&] { pretraining_loss(*model, batch, c.t).total.backward(); }, params);
  }
  // Contrastive ITM: its own chunked backward against finite differences of its loss.
  check("itm_contrastive", model, [&] { return contrastive_itm(*model, batch, 0.0, 2).loss; },
        [&] { contrastive_itm(*model, batch, 1.0, 2); }, {"itm_classifier.weight", "layers.1.image.query.weight"});
}

// MRM zeroes a masked region's feature, so at initialisation the region's feature embedding is
// feature_norm(feature.bias). With the bias at zero, as BERT's initialisation leaves a Linear's,
// that is the LayerNorm of a constant vector, whose input gradient is 1 / sqrt(1e-12) times the
// upstream one: the bias's gradient came out ~10^4 times every other parameter's, and the global
// norm clipping then scaled all of theirs down by as much (docs/losses.md). Initialised from the
// normal like the weights, it is a gradient among the others - and largest_gradient_share, which
// the trainer reads after its first step, tells the two apart.
TEST(LossGradients, MaskedRegionsLeaveTheInitialGradientBalanced) {
  torch::manual_seed(4);
  MultimodalTransformer model(testing::small_model_options("merged"), InputDims{testing::kVocab, testing::kFeat, 3});
  model->train();
  Batch b = testing::random_batch(8, 6, 5, 31);
  b.region_classes = torch::softmax(torch::randn({8, 5, 3}), -1);
  Rng rng(5);
  const std::vector<char> all(8, 1);
  mask_regions(b, all, all, 0.3, rng);
  ASSERT_GE(b.mrm_mask.sum().item<int64_t>(), 4);
  TrainOptions t;
  t.mlm_weight = t.itm_weight = 0, t.mrm_kl_weight = 1;
  // The bias's gradient norm, the largest other one, and the whole's.
  const auto gradients = [&] {
    model->zero_grad();
    pretraining_loss(*model, b, t).total.backward();
    double bias = -1, others = 0, whole = 0;
    for (const auto& p : model->named_parameters()) {
      if (!p.value().grad().defined()) continue;
      const double norm = p.value().grad().norm().item<double>();
      whole += norm * norm;
      if (p.key() == "image_embed.feature.bias") bias = norm;
      else others = std::max(others, norm);
    }
    return std::array<double, 3>{bias, others, std::sqrt(whole)};
  };
  const auto drawn = gradients();
  ASSERT_GT(drawn[0], 0);
  EXPECT_LT(drawn[0], 10 * drawn[1]);
  // What the trainer checks after its first step (it says so past 90 %).
  GradientShare share = largest_gradient_share(*model);
  EXPECT_LT(share.share, 0.5) << share.name;
  EXPECT_NEAR(share.total, drawn[2], 1e-4 * drawn[2]);
  // The bias put back to zero, as before: the fault, and the trainer's check sees it.
  {
    torch::NoGradGuard no_grad;
    model->image_embed->feature->bias.zero_();
  }
  const auto zero = gradients();
  EXPECT_GT(zero[0], 1000 * zero[1]);
  share = largest_gradient_share(*model);
  EXPECT_EQ(share.name, "image_embed.feature.bias");
  EXPECT_GT(share.share, 0.99);
  EXPECT_NEAR(share.norm, zero[0], 1e-4 * zero[0]);
  EXPECT_NEAR(share.total, zero[2], 1e-4 * zero[2]);
}

TEST(LossGradients, DualInfoNceInFloat64) {
  torch::manual_seed(9);
  auto m = testing::small_model_options("single_modality", 1);
  m.kind = "dual_encoder", m.embed_dim = 8;
  MultimodalTransformer model(m, InputDims{testing::kVocab, testing::kFeat});
  model->to(torch::kFloat64);
  Batch batch = double_batch();
  batch.itm_labels = torch::ones({4}, torch::kInt64);
  TrainOptions t;
  t.mlm_weight = t.itm_weight = 0, t.dual_contrastive_weight = 1;
  check("dual", model, [&] { return pretraining_loss(*model, batch, t).total.item<double>(); },
        [&] { pretraining_loss(*model, batch, t).total.backward(); },
        {"text_proj.weight", "image_proj.weight", "logit_scale", "layers.0.text.key.weight"});
}

}  // namespace
}  // namespace mmt
