/* The dual-encoder baseline: two towers without multimodal attention, a dot-product score with a
 * learned, clamped temperature, its InfoNCE loss against a plain formula, and training that
 * makes matched pairs score above mismatched ones. */
#include <gtest/gtest.h>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/loss/pretraining.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/util/error.h"
#include "test_util.h"
#include "train_util.h"

namespace mmt {
namespace {

TEST(DualEncoder, ConfigRejectsMultimodalAttention) {
  EXPECT_NO_THROW(load_config("", {"model.kind=dual_encoder", "model.attention=single_modality"}));
  try {
    load_config("", {"model.kind=dual_encoder", "model.attention=merged"});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no multimodal attention"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_config("", {"train.dual_contrastive_weight=1"}), Error);  // needs the dual encoder
}

TEST(DualEncoder, InfoNceEqualsThePlainFormula) {
  torch::manual_seed(2);
  const auto t = torch::nn::functional::normalize(torch::randn({5, 8}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const auto v = torch::nn::functional::normalize(torch::randn({5, 8}), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const auto scale = torch::tensor(7.5);
  auto [loss, acc] = loss_dual_contrastive(t, v, scale);
  double expected = 0;
  for (int i = 0; i < 5; ++i) {  // -log softmax of the diagonal, over rows and over columns
    double row = 0, col = 0;
    for (int j = 0; j < 5; ++j) {
      row += std::exp(7.5 * (t[i] * v[j]).sum().item<double>());
      col += std::exp(7.5 * (t[j] * v[i]).sum().item<double>());
    }
    const double diag = 7.5 * (t[i] * v[i]).sum().item<double>();
    expected += 0.5 * ((std::log(row) - diag) + (std::log(col) - diag)) / 5;
  }
  EXPECT_NEAR(loss.item<double>(), expected, 1e-5);
  EXPECT_GE(acc, 0.0);
  EXPECT_LE(acc, 1.0);
}

// Rows of one image (another caption of it) leave each other's softmax: the plain formula over the
// pairs of different images; distinct keys are the plain loss.
TEST(DualEncoder, InfoNceLeavesOutOtherCaptionsOfTheSameImage) {
  torch::manual_seed(3);
  auto unit = [](torch::Tensor x) { return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1)); };
  const auto t = unit(torch::randn({5, 8})), v = unit(torch::randn({5, 8}));
  const auto scale = torch::tensor(6.0);
  const std::vector<int64_t> keys = {10, 11, 10, 12, 11};  // rows 0 and 2, 1 and 4 show one image each
  auto [loss, acc] = loss_dual_contrastive(t, v, scale, torch::tensor(keys));
  double expected = 0;
  for (int i = 0; i < 5; ++i) {
    double row = 0, col = 0;
    for (int j = 0; j < 5; ++j) {
      if (j != i && keys[j] == keys[i]) continue;
      row += std::exp(6.0 * (t[i] * v[j]).sum().item<double>());
      col += std::exp(6.0 * (t[j] * v[i]).sum().item<double>());
    }
    const double diag = 6.0 * (t[i] * v[i]).sum().item<double>();
    expected += 0.5 * ((std::log(row) - diag) + (std::log(col) - diag)) / 5;
  }
  EXPECT_NEAR(loss.item<double>(), expected, 1e-5);
  EXPECT_GT(std::abs(loss.item<double>() - loss_dual_contrastive(t, v, scale).first.item<double>()), 1e-3);
  EXPECT_NEAR(loss_dual_contrastive(t, v, scale, torch::arange(5, torch::kInt64)).first.item<double>(),
              loss_dual_contrastive(t, v, scale).first.item<double>(), 1e-7);
  // Gradients flow to every embedding but none through the left-out pairs' logits.
  auto tg = t.clone().requires_grad_(), vg = v.clone().requires_grad_();
  loss_dual_contrastive(tg, vg, scale, torch::tensor(keys)).first.backward();
  EXPECT_TRUE(torch::isfinite(tg.grad()).all().item<bool>() && torch::isfinite(vg.grad()).all().item<bool>());
}

// train.contrastive_same_caption = excluded: keys (M, 2), image and caption; a row that shares
// either with row i is out of its softmax - a relation no single key expresses (row 1 shares
// row 0's image and row 2's caption; rows 0 and 2 share nothing).
TEST(DualEncoder, InfoNceLeavesOutRowsOfTheSameImageOrCaption) {
  torch::manual_seed(4);
  auto unit = [](torch::Tensor x) { return torch::nn::functional::normalize(x, torch::nn::functional::NormalizeFuncOptions().dim(1)); };
  const auto t = unit(torch::randn({4, 8}, torch::kFloat64)), v = unit(torch::randn({4, 8}, torch::kFloat64));
  const auto scale = torch::tensor(5.0, torch::kFloat64);
  const std::vector<int64_t> image = {1, 1, 2, 3}, caption = {5, 6, 6, 7};
  const auto keys = torch::stack({torch::tensor(image), torch::tensor(caption)}, 1);
  double expected = 0;
  for (int i = 0; i < 4; ++i) {
    double row = 0, col = 0;
    for (int j = 0; j < 4; ++j) {
      if (j != i && (image[j] == image[i] || caption[j] == caption[i])) continue;
      row += std::exp(5.0 * (t[i] * v[j]).sum().item<double>());
      col += std::exp(5.0 * (t[j] * v[i]).sum().item<double>());
    }
    const double diag = 5.0 * (t[i] * v[i]).sum().item<double>();
    expected += 0.5 * ((std::log(row) - diag) + (std::log(col) - diag)) / 4;
  }
  EXPECT_NEAR(loss_dual_contrastive(t, v, scale, keys).first.item<double>(), expected, 1e-10);
  EXPECT_GT(std::abs(expected - loss_dual_contrastive(t, v, scale, torch::tensor(image)).first.item<double>()), 1e-4);
}

// Batch::caption_key: equal exactly for the rows whose captions (before MLM masking) are equal.
TEST(DualEncoder, CaptionKeysTellEqualCaptions) {
  ExperimentConfig cfg;
  cfg.data.synth.num_train_images = 500, cfg.data.synth.num_test_images = 10, cfg.data.synth.max_objects = 1;
  cfg.eval.test_sets = {"easy"};
  cfg.train.batch_size = 128;
  validate_config(cfg);
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  const Batch b = batcher.batch(0);
  ASSERT_TRUE(b.caption_key.defined());
  // The captions as drawn: MLM's targets put back (on matched rows; mismatched ones keep no targets).
  const auto rows = testing::token_rows(Batch{unmasked_text_ids(b), b.text_mask});
  const auto matched = b.itm_labels.eq(1);
  int64_t repeats = 0;
  for (int64_t i = 0; i < b.size(); ++i)
    for (int64_t j = i + 1; j < b.size(); ++j) {
      if (!matched[i].item<bool>() || !matched[j].item<bool>()) continue;
      const bool same = rows[i] == rows[j];
      repeats += same;
      EXPECT_EQ(same, b.caption_key[i].item<int64_t>() == b.caption_key[j].item<int64_t>()) << i << ", " << j;
    }
  EXPECT_GT(repeats, 0);  // one-object scenes repeat captions: the test compares some equal ones
  EXPECT_EQ(caption_hash({2, 7, 3}), caption_hash({2, 7, 3}));
  EXPECT_NE(caption_hash({2, 7, 3}), caption_hash({2, 3, 7}));
}

TEST(DualEncoder, TemperatureIsLearnedAndClamped) {
  auto m = testing::small_model_options("single_modality", 1);
  m.kind = "dual_encoder", m.temperature_init = 0.07, m.max_logit_scale = 20;
  MultimodalTransformer model(m, InputDims{testing::kVocab, testing::kFeat});
  ASSERT_TRUE(model->dual_dot());
  EXPECT_NEAR(model->logit_scale_value().item<double>(), 1 / 0.07 > 20 ? 20 : 1 / 0.07, 1e-4);  // clamped
  EXPECT_TRUE(model->logit_scale.requires_grad());
  const auto e = model->encode(testing::random_batch(3, 5, 2));
  EXPECT_LE(model->match_scores(e).abs().max().item<double>(), 20 + 1e-4);  // scaled cosine
}

TEST(DualEncoder, ContrastiveTrainingSeparatesMatchedPairs) {
  ExperimentConfig cfg;
  cfg.model = testing::small_model_options("single_modality", 2);
  cfg.model.kind = "dual_encoder", cfg.model.embed_dim = 32;
  cfg.train.mlm_weight = 0, cfg.train.itm_weight = 0;
  cfg.train.dual_contrastive_weight = 1, cfg.train.itm_negative_prob = 0;
  testing::SmallTraining t(cfg);
  double first = 0, last = 0;
  for (int64_t s = 0; s < 150; ++s) {
    const auto r = t.step.run(t.batcher.batch(s), 2e-3);
    ASSERT_TRUE(r.loss.metrics.count("dual"));
    if (s < 10) first += r.loss.metrics.at("dual") / 10;
    if (s >= 140) last += r.loss.metrics.at("dual") / 10;
  }
  EXPECT_LT(last, first - 0.3) << "InfoNCE over 32 pairs starts at ln 32 = 3.47";
}

}  // namespace
}  // namespace mmt
