/* ITM hard negatives: partners are drawn with the softmax of the model's scores over the other
 * rows (Monte Carlo against the exact probabilities), the score matrix equals per-pair scoring on
 * both paths, and a hard batch really is made of swapped, label-0, target-free rows. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/loss/pretraining.h"
#include "mmt/train/hard_negatives.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/util/error.h"
#include "mmt/util/rng.h"
#include "test_util.h"

namespace mmt {
namespace {

TEST(HardNegatives, PartnerFrequenciesFollowSoftmaxOverOtherRows) {
  const auto scores = torch::tensor({{5.0, 1.0, 0.0, 2.0}, {0.0, 9.0, -1.0, 1.0}, {3.0, 0.5, 7.0, 0.5}, {0.0, 0.0, 0.0, 4.0}});
  Rng rng(11);
  constexpr int n = 50000;
  for (const bool by_column : {false, true}) {
    for (int64_t i = 0; i < 4; ++i) {
      const auto line = by_column ? scores.select(1, i) : scores.select(0, i);
      std::vector<double> expect(4, 0.0);
      double total = 0;
      for (int64_t j = 0; j < 4; ++j)
        if (j != i) total += (expect[j] = std::exp(line[j].item<double>()));
      std::vector<int> count(4, 0);
      for (int k = 0; k < n; ++k) ++count[static_cast<size_t>(sample_partner(scores, i, by_column, rng))];
      EXPECT_EQ(count[static_cast<size_t>(i)], 0) << "a row never partners itself";
      for (int64_t j = 0; j < 4; ++j) {
        const double p = expect[j] / total, sd = std::sqrt(p * (1 - p) / n);
        EXPECT_NEAR(count[j] / static_cast<double>(n), p, 5 * sd + 1e-9) << "i=" << i << " j=" << j << " col=" << by_column;
      }
    }
  }
}

// A row's partners are the rows masked alike (hard_partner_rows) where there are any - row 0 with
// row 2 - else every other row: row 3, masked unlike all, draws from all four.
TEST(HardNegatives, PartnersRespectAllowedRowsAndFallBackWhenNoneAllowed) {
  const auto scores = torch::zeros({5, 5});
  Rng rng(3);
  Batch batch = testing::random_batch(5, 4, 3);
  batch.mask_pattern = torch::tensor({1, 2, 1, 3, 2}, torch::kInt64);
  const auto partners = hard_partner_rows(batch, {0, 3});
  for (int k = 0; k < 2000; ++k) EXPECT_EQ(sample_partner(scores, 0, false, rng, partners[0]), 2);
  std::vector<int> seen(5, 0);
  for (int k = 0; k < 2000; ++k) ++seen[static_cast<size_t>(sample_partner(scores, 3, false, rng, partners[1]))];
  EXPECT_EQ(seen[3], 0);
  for (int j : {0, 1, 2, 4}) EXPECT_GT(seen[static_cast<size_t>(j)], 350);
}

// What both batchers hand the step: the pending rows, whether the step draws by score (hard from
// train.itm_hard_from_step on; uniformly before, with both), and the masked sides as bits.
TEST(HardNegatives, MarkStepNegativesRecordsRowsStepAndMaskedSides) {
  TrainOptions train;
  train.itm_negatives = "hard", train.itm_swap = "both", train.itm_hard_from_step = 3;
  const std::vector<char> pending{1, 0, 1, 0}, text{1, 0, 1, 0}, image{0, 1, 1, 0};
  for (const int64_t step : {0, 2, 3, 7}) {
    Batch batch;
    mark_step_negatives(train, step, pending, text, image, batch);
    EXPECT_EQ(batch.negatives_by_score, step >= 3) << step;
    EXPECT_TRUE(batch.hard_negative_rows.equal(torch::tensor({true, false, true, false}))) << step;
    EXPECT_TRUE(batch.mask_pattern.equal(torch::tensor({1, 2, 3, 0}, torch::kInt64))) << step;
  }
  Batch batch;
  EXPECT_THROW(mark_step_negatives(train, 0, pending, {1, 0}, image, batch), c10::Error);
}

class ScoreMatrix : public ::testing::TestWithParam<std::string> {
 protected:
  // The parameter's stack, two layers, in eval mode ("mixed": single_modality under merged).
  static MultimodalTransformer model_of(const std::string& stack, uint64_t seed) {
    torch::manual_seed(seed);
    auto options = testing::small_model_options(stack, 2);
    if (stack == "mixed") options.attention = "merged", options.layers = {"single_modality", "merged"};
    MultimodalTransformer model(options, InputDims{testing::kVocab, testing::kFeat});
    model->eval();
    return model;
  }
};

// Single-modality stacks take the unimodal matrix path, merged ones the per-caption pair passes,
// mixed ones (a single_modality layer under a merged one) run the lower layer once per caption and
// per image and pair the states it leaves.
TEST_P(ScoreMatrix, EqualsScoringEachPairAlone) {
  auto model = model_of(GetParam(), 2);
  auto batch = testing::random_batch(4, 6, 5, 9);
  batch.text_mask[1][5] = false, batch.region_mask[2][4] = false;  // padding takes no part
  const auto m = batch_score_matrix(*model, batch);
  ASSERT_EQ(m.sizes(), (std::vector<int64_t>{4, 4}));
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 4; ++j) {
      Batch pair;
      const int64_t len = batch.text_mask[i].sum().item<int64_t>(), regions = batch.region_mask[j].sum().item<int64_t>();
      pair.text_ids = batch.text_ids[i].narrow(0, 0, len).unsqueeze(0);
      pair.text_mask = torch::ones({1, len}, torch::kBool);
      pair.region_feats = batch.region_feats[j].narrow(0, 0, regions).unsqueeze(0);
      pair.region_boxes = batch.region_boxes[j].narrow(0, 0, regions).unsqueeze(0);
      pair.region_mask = torch::ones({1, regions}, torch::kBool);
      const double alone = model->match_scores(model->encode(pair)).item<double>();
      EXPECT_NEAR(m[i][j].item<double>(), alone, 1e-4 * std::max(1.0, std::abs(alone))) << i << "," << j;
    }
  // The lines hard negatives read: rows 1 and 3 (the caption's partner is an image), columns 0 and
  // 2 (a caption is swapped in). Where the stack crosses modalities only those are scored.
  const bool partial = GetParam() != "single_modality";
  for (const bool by_column : {false, true}) {
    const std::vector<int64_t> lines = by_column ? std::vector<int64_t>{0, 2} : std::vector<int64_t>{1, 3};
    const auto some = batch_score_pairs(*model, batch, false, testing::line_pairs(4, lines, by_column));
    for (int64_t i = 0; i < 4; ++i)
      for (int64_t j = 0; j < 4; ++j) {
        const int64_t line = by_column ? j : i;
        if (std::find(lines.begin(), lines.end(), line) != lines.end() || !partial)
          EXPECT_NEAR(some[i][j].item<double>(), m[i][j].item<double>(), 1e-5) << i << "," << j << " by_column " << by_column;
        else
          EXPECT_TRUE(std::isnan(some[i][j].item<double>())) << i << "," << j << " by_column " << by_column;
      }
  }
}

// Entries of lines (train.itm_hard_candidates): where the stack crosses modalities only those pairs
// are scored, each equal to its value in the whole matrix, the rest NaN; the other paths score all.
TEST_P(ScoreMatrix, ScoresOnlyTheEntriesAskedFor) {
  auto model = model_of(GetParam(), 3);
  auto batch = testing::random_batch(5, 6, 5, 4);
  batch.text_mask[3][5] = false;
  const auto m = batch_score_matrix(*model, batch);
  const bool partial = GetParam() != "single_modality";
  const std::vector<int64_t> lines{4, 1};
  const std::vector<std::vector<int64_t>> entries{{0, 2, 3}, {}};  // line 1: nothing
  for (const bool by_column : {false, true}) {
    const auto some = batch_score_pairs(*model, batch, false, testing::line_pairs(5, lines, by_column, entries));
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t j = 0; j < 5; ++j) {
        const int64_t line = by_column ? j : i, entry = by_column ? i : j;
        const bool asked = line == 4 && entry != 1 && entry != 4;
        if (asked || !partial)
          EXPECT_NEAR(some[i][j].item<double>(), m[i][j].item<double>(), 1e-5) << i << "," << j << " by_column " << by_column;
        else
          EXPECT_TRUE(std::isnan(some[i][j].item<double>())) << i << "," << j << " by_column " << by_column;
      }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, ScoreMatrix, ::testing::Values("merged", "single_modality", "mixed"));

struct HardSetup {
  ExperimentConfig cfg;
  std::unique_ptr<synth::World> world;
  Batch batch;
};

// The training options apply_hard_negatives reads: which side is swapped, the seed, the temperature
// and the candidates.
TrainOptions hard_options(const std::string& swap, uint64_t seed, double temperature = 1.0, int64_t candidates = 0) {
  TrainOptions t;
  t.itm_negatives = "hard", t.itm_swap = swap, t.seed = seed;
  t.itm_hard_temperature = temperature, t.itm_hard_candidates = candidates;
  return t;
}

HardSetup hard_batch(const std::string& swap, const std::string& mask_modalities = "both") {
  HardSetup s;
  s.cfg.model = testing::small_model_options("merged", 2);
  s.cfg.data.synth.num_train_images = 400, s.cfg.data.synth.num_test_images = 10;
  s.cfg.train.batch_size = 16, s.cfg.train.itm_negatives = "hard", s.cfg.train.itm_swap = swap;
  s.cfg.train.mlm_weight = 1, s.cfg.train.mrm_regression_weight = 1, s.cfg.train.mask_modalities = mask_modalities;
  s.world = std::make_unique<synth::World>(s.cfg.data.synth);
  PretrainBatcher batcher(*s.world, data_vocab(s.cfg), s.cfg);
  s.batch = batcher.batch(1);
  return s;
}

// A model of the setup in eval mode whose ITM scores lie some units apart (an untrained one's lie
// 0.2 apart), so the sampling rules the tests compare give different draws.
MultimodalTransformer sharp_model(const HardSetup& s) {
  torch::manual_seed(1);
  MultimodalTransformer model(s.cfg.model, data_input_dims(s.cfg));
  torch::NoGradGuard no_grad;
  model->itm_classifier->weight.mul_(2048), model->itm_classifier->bias.mul_(2048);
  model->eval();
  return model;
}

// The first row the batcher marked for a hard negative.
int64_t first_marked(const Batch& b) {
  int64_t i = 0;
  while (!b.hard_negative_rows[i].item<bool>()) ++i;
  return i;
}

// train.itm_hard_from_step: optimizer steps before it pair their negatives at random (some rows
// mismatched by the batcher, none marked), from it on by the model (every row matched, some
// marked) - counted in optimizer steps, so with accumulation micro-batch m is step m / accum.
TEST(HardNegatives, StartAtTheConfiguredOptimizerStep) {
  ExperimentConfig cfg;
  cfg.model = testing::small_model_options("merged", 2);
  cfg.data.synth.num_train_images = 400, cfg.data.synth.num_test_images = 10;
  cfg.train.batch_size = 16, cfg.train.itm_negatives = "hard", cfg.train.itm_hard_from_step = 2;
  cfg.train.grad_accum_steps = 2;
  EXPECT_NO_THROW(validate_config(cfg));
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  for (int64_t micro = 0; micro < 7; ++micro) {
    const Batch b = batcher.batch(micro);
    const bool hard = micro >= 4;
    EXPECT_EQ(b.hard_negative_rows.defined(), hard) << "micro-batch " << micro;
    if (hard) {
      EXPECT_EQ(b.itm_labels.sum().item<int64_t>(), b.size()) << micro;
      EXPECT_GT(b.hard_negative_rows.sum().item<int64_t>(), 0) << micro;
    } else {
      EXPECT_LT(b.itm_labels.sum().item<int64_t>(), b.size()) << micro;  // random negatives already paired
    }
  }
  cfg.train.itm_negatives = "random";
  try {
    validate_config(cfg);
    ADD_FAILURE() << "itm_hard_from_step without hard negatives was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("needs train.itm_negatives=hard"), std::string::npos) << e.what();
  }
  cfg.train.itm_hard_from_step = 0, cfg.train.itm_hard_candidates = 8;
  try {
    validate_config(cfg);
    ADD_FAILURE() << "itm_hard_candidates without hard negatives was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("itm_hard_candidates"), std::string::npos) << e.what();
  }
  cfg.train.itm_negatives = "hard";
  EXPECT_NO_THROW(validate_config(cfg));
  // itm_swap = both: the step adds the rows, by the model's scores from itm_hard_from_step on and
  // uniformly before it (or throughout with random negatives) - every batch marks its rows, and says
  // how they are drawn.
  cfg.train.itm_swap = "both";
  for (const auto& [negatives, from] : {std::pair{"hard", 0}, std::pair{"random", 0}, std::pair{"hard", 2}}) {
    cfg.train.itm_negatives = negatives, cfg.train.itm_hard_from_step = from, cfg.train.itm_hard_candidates = 0;
    EXPECT_NO_THROW(validate_config(cfg)) << negatives << " from " << from;
    PretrainBatcher both(world, data_vocab(cfg), cfg);
    for (int64_t micro = 0; micro < 6; ++micro) {
      const Batch b = both.batch(micro);
      ASSERT_TRUE(b.hard_negative_rows.defined()) << negatives << " from " << from << ", micro-batch " << micro;
      EXPECT_EQ(b.itm_labels.sum().item<int64_t>(), b.size()) << micro;
      EXPECT_EQ(b.negatives_by_score, std::string(negatives) == "hard" && micro / 2 >= from) << negatives << " " << micro;
    }
  }
}

class HardBatch : public ::testing::TestWithParam<std::string> {};

// train.itm_swap = both: every row stays as it was, matched with its targets; after them, for each
// marked row i in order, i's caption with another row's image, then i's image with another row's
// caption - label 0, no MLM / MRM targets, the other fields (image key, contrastive exclusions)
// row i's.
void expect_both_added(const Batch& before, const Batch& after) {
  const int64_t b = before.size(), marked = before.hard_negative_rows.sum().item<int64_t>();
  ASSERT_EQ(after.size(), b + 2 * marked);
  for (const auto& [name, x, y] : {std::tuple{"text", &before.text_ids, &after.text_ids},
                                   std::tuple{"mlm", &before.mlm_labels, &after.mlm_labels},
                                   std::tuple{"regions", &before.region_feats, &after.region_feats},
                                   std::tuple{"mrm", &before.mrm_mask, &after.mrm_mask},
                                   std::tuple{"itm", &before.itm_labels, &after.itm_labels},
                                   std::tuple{"key", &before.image_key, &after.image_key}})
    EXPECT_TRUE(y->narrow(0, 0, b).equal(*x)) << name << ": the pairs stay as they were";
  auto from_other = [&](int64_t i, const torch::Tensor& got, const torch::Tensor& rows) {
    for (int64_t j = 0; j < b; ++j)
      if (j != i && got.equal(rows[j])) return true;
    return false;
  };
  int64_t at = b;
  for (int64_t i = 0; i < b; ++i) {
    if (!before.hard_negative_rows[i].item<bool>()) continue;
    for (const bool image_side : {true, false}) {
      EXPECT_EQ(after.itm_labels[at].item<int64_t>(), 0) << at;
      EXPECT_EQ(after.image_key[at].item<int64_t>(), before.image_key[i].item<int64_t>()) << at;
      if (image_side) {
        EXPECT_TRUE(after.text_ids[at].equal(before.text_ids[i])) << "row " << at << " keeps row " << i << "'s caption";
        EXPECT_TRUE(from_other(i, after.region_feats[at], before.region_feats)) << at;
      } else {
        EXPECT_TRUE(after.region_feats[at].equal(before.region_feats[i])) << "row " << at << " keeps row " << i << "'s image";
        EXPECT_TRUE(from_other(i, after.text_ids[at], before.text_ids)) << at;
      }
      EXPECT_EQ((after.mlm_labels[at] != kIgnoreLabel).sum().item<int64_t>(), 0) << "no MLM target on a negative";
      EXPECT_EQ(after.mrm_mask[at].sum().item<int64_t>(), 0) << "no MRM target on a negative";
      ++at;
    }
  }
}

TEST_P(HardBatch, SwapsMarkedRowsIntoLabelZeroPairsWithoutTargets) {
  auto s = hard_batch(GetParam());
  const auto& before = s.batch;
  ASSERT_TRUE(before.hard_negative_rows.defined());
  // The batcher leaves every pair matched and only marks rows; about half are marked.
  EXPECT_EQ(before.itm_labels.sum().item<int64_t>(), before.size());
  const int64_t marked = before.hard_negative_rows.sum().item<int64_t>();
  EXPECT_GT(marked, 0);
  EXPECT_LT(marked, before.size());

  torch::manual_seed(1);
  MultimodalTransformer model(s.cfg.model, data_input_dims(s.cfg));
  model->train();
  Batch after = before;
  apply_hard_negatives(*model, after, hard_options(GetParam(), 7), 1);
  EXPECT_TRUE(model->is_training()) << "scoring must restore training mode";
  EXPECT_FALSE(after.hard_negative_rows.defined());
  if (GetParam() == "both") return expect_both_added(before, after);
  int64_t caption_swaps = 0, image_swaps = 0;
  for (int64_t i = 0; i < before.size(); ++i) {
    const bool neg = before.hard_negative_rows[i].item<bool>();
    EXPECT_EQ(after.itm_labels[i].item<int64_t>(), neg ? 0 : 1) << i;
    const bool text_same = after.text_ids[i].equal(before.text_ids[i]);
    const bool image_same = after.region_feats[i].equal(before.region_feats[i]);
    if (!neg) {
      EXPECT_TRUE(text_same && image_same) << i;
      continue;
    }
    // The swapped side comes from another row of the batch, the other side stays (with either,
    // exactly one of them).
    const bool caption = GetParam() == "either" ? !text_same : GetParam() == "caption";
    ++(caption ? caption_swaps : image_swaps);
    EXPECT_TRUE(caption ? image_same : text_same) << i;
    EXPECT_FALSE(caption ? text_same : image_same) << i;
    bool from_other = false;
    for (int64_t j = 0; j < before.size(); ++j)
      if (j != i && (caption ? after.text_ids[i].equal(before.text_ids[j]) : after.region_feats[i].equal(before.region_feats[j])))
        from_other = true;
    EXPECT_TRUE(from_other) << i;
    EXPECT_EQ((after.mlm_labels[i] != kIgnoreLabel).sum().item<int64_t>(), 0) << "no MLM target on a negative";
    EXPECT_EQ(after.mrm_mask[i].sum().item<int64_t>(), 0) << "no MRM target on a negative";
  }
  if (GetParam() == "either") EXPECT_TRUE(caption_swaps > 0 && image_swaps > 0) << caption_swaps << " / " << image_swaps;
  // Deterministic in (seed, step).
  Batch again = before;
  apply_hard_negatives(*model, again, hard_options(GetParam(), 7), 1);
  EXPECT_TRUE(again.text_ids.equal(after.text_ids) && again.region_feats.equal(after.region_feats));
}

INSTANTIATE_TEST_SUITE_P(Swap, HardBatch, ::testing::Values("image", "caption", "either", "both"));

// itm_swap = both with random negatives (and before itm_hard_from_step): the batcher marks rows as
// for hard ones but not to be drawn by score; the step adds the same two rows per marked row, each
// partner drawn uniformly among the rows hard_partner_rows allows - not by the sharp model's
// peaked softmax (the test fails when the step draws by score - tried).
TEST(HardBatch, BothWithRandomNegativesDrawsPartnersUniformly) {
  auto s = hard_batch("both");
  s.cfg.train.itm_negatives = "random";
  validate_config(s.cfg);
  PretrainBatcher batcher(*s.world, data_vocab(s.cfg), s.cfg);
  const Batch before = batcher.batch(1);
  ASSERT_TRUE(before.hard_negative_rows.defined());
  EXPECT_FALSE(before.negatives_by_score);
  auto model = sharp_model(s);
  Batch after = before;
  apply_hard_negatives(*model, after, s.cfg.train, 0);
  expect_both_added(before, after);
  // The first marked row's added rows: its caption with a partner's image (row b), its image with a
  // partner's caption (row b + 1). Partners are counted by image (rows of one image look alike).
  const int64_t b = before.size();
  int64_t i = 0;
  while (!before.hard_negative_rows[i].item<bool>()) ++i;
  const auto allowed = hard_partner_rows(before, {i})[0];
  ASSERT_GE(allowed.size(), 4u);
  std::map<int64_t, double> expect;  // image key -> probability
  for (const int64_t j : allowed) expect[before.image_key[j].item<int64_t>()] += 1.0 / static_cast<double>(allowed.size());
  auto key_of = [&](const torch::Tensor& got, const torch::Tensor& rows) {
    for (const int64_t j : allowed)
      if (got.equal(rows[j])) return before.image_key[j].item<int64_t>();
    return int64_t{-1};
  };
  constexpr int n = 3000;
  std::map<int64_t, int> images, captions;
  for (int step = 0; step < n; ++step) {
    Batch a = before;
    apply_hard_negatives(*model, a, s.cfg.train, step);
    ++images[key_of(a.region_feats[b], before.region_feats)];
    ++captions[key_of(a.text_ids[b + 1], before.text_ids)];
  }
  EXPECT_EQ(images.count(-1), 0u) << "an image from a row not allowed";
  for (const auto& [key, p] : expect) {
    const double sd = std::sqrt(p * (1 - p) / n);
    EXPECT_NEAR(images[key] / static_cast<double>(n), p, 5 * sd) << "image of key " << key;
  }
  // Captions: several rows may hold one caption text, so only that every draw is allowed and more
  // than one partner occurs.
  EXPECT_EQ(captions.count(-1), 0u) << "a caption from a row not allowed";
  EXPECT_GT(captions.size(), 1u);
}

TEST(HardBatch, AlternateMaskingOnlyPairsRowsMaskedAlike) {
  auto s = hard_batch("image", "alternate");
  ASSERT_TRUE(s.batch.mask_pattern.defined());
  torch::manual_seed(1);
  MultimodalTransformer model(s.cfg.model, data_input_dims(s.cfg));
  const Batch before = s.batch;
  for (int64_t step = 0; step < 5; ++step) {
    Batch after = before;
    apply_hard_negatives(*model, after, hard_options("image", 3), step);
    for (int64_t i = 0; i < before.size(); ++i) {
      if (!before.hard_negative_rows[i].item<bool>()) continue;
      for (int64_t j = 0; j < before.size(); ++j)
        if (after.region_feats[i].equal(before.region_feats[j]) && j != i)
          EXPECT_EQ(before.mask_pattern[i].item<int64_t>(), before.mask_pattern[j].item<int64_t>()) << i << "<-" << j;
    }
  }
}

// Rows of one image (Batch::image_key) are never each other's hard negative - the model would find
// another caption of the same image the most plausible "negative" - and a row with no other image
// in the batch stays matched.
TEST(HardBatch, PartnersShowAnotherImage) {
  auto s = hard_batch("image");
  torch::manual_seed(1);
  MultimodalTransformer model(s.cfg.model, data_input_dims(s.cfg));
  Batch before = s.batch;
  const int64_t b = before.size();
  before.image_key = torch::arange(b, torch::kInt64).div(4, "floor");  // rows 0-3 one image, 4-7 another, ...
  int64_t swapped = 0;
  for (int64_t step = 0; step < 5; ++step) {
    Batch after = before;
    apply_hard_negatives(*model, after, hard_options("image", 3), step);
    for (int64_t i = 0; i < b; ++i) {
      if (!before.hard_negative_rows[i].item<bool>()) continue;
      ASSERT_EQ(after.itm_labels[i].item<int64_t>(), 0) << i;
      ++swapped;
      for (int64_t j = 0; j < b; ++j)
        if (j != i && after.region_feats[i].equal(before.region_feats[j]))
          EXPECT_NE(j / 4, i / 4) << "row " << i << " took row " << j << "'s image, its own";
    }
  }
  EXPECT_GT(swapped, 0);
  // One image for the whole batch: nothing to swap in, every row stays matched with its targets.
  before.image_key = torch::zeros({b}, torch::kInt64);
  Batch after = before;
  apply_hard_negatives(*model, after, hard_options("image", 3), 0);
  EXPECT_EQ(after.itm_labels.sum().item<int64_t>(), b);
  EXPECT_TRUE(after.region_feats.equal(before.region_feats));
  EXPECT_TRUE(after.mlm_labels.equal(before.mlm_labels));
  Rng rng(1);
  EXPECT_EQ(sample_partner(torch::zeros({3, 3}), 1, false, rng, {0, 1}), 0);  // only row 0 possible
  EXPECT_EQ(sample_partner(torch::zeros({3, 3}), 1, false, rng, {1}), -1);
}

// train.itm_hard_temperature: drawing by softmax(score / 2) is drawing from a model whose scores are
// halved - its ITM classifier halved (the margin is linear in it; halving is exact in floating
// point, so the draws agree exactly). The classifier is scaled up 64x first: an untrained model's
// scores are too alike for a temperature to change any draw.
TEST(HardBatch, TemperatureDividesTheScores) {
  auto s = hard_batch("image");
  torch::manual_seed(1);
  MultimodalTransformer model(s.cfg.model, data_input_dims(s.cfg)), halved(s.cfg.model, data_input_dims(s.cfg));
  {
    torch::NoGradGuard no_grad;
    const auto from = model->named_parameters();
    model->itm_classifier->weight.mul_(64), model->itm_classifier->bias.mul_(64);
    for (auto& p : halved->named_parameters()) p.value().copy_(from[p.key()]);
    halved->itm_classifier->weight.mul_(0.5), halved->itm_classifier->bias.mul_(0.5);
  }
  int64_t differ = 0;
  for (int64_t step = 0; step < 10; ++step) {
    Batch warm = s.batch, cool = s.batch, plain = s.batch;
    apply_hard_negatives(*model, warm, hard_options("image", 3, 2.0), step);
    apply_hard_negatives(*halved, cool, hard_options("image", 3), step);
    apply_hard_negatives(*model, plain, hard_options("image", 3), step);
    EXPECT_TRUE(warm.region_feats.equal(cool.region_feats)) << "step " << step;
    differ += !warm.region_feats.equal(plain.region_feats);
  }
  EXPECT_GT(differ, 0);  // the temperature changes some draws: the test can tell
}

TEST(HardNegatives, CandidatesAreAUniformSubsetInOrder) {
  const std::vector<int64_t> rows{2, 3, 5, 7, 11, 13};
  Rng rng(5), draws(5), reference(5);
  EXPECT_EQ(draw_candidates(rows, 0, rng), rows);
  EXPECT_EQ(draw_candidates(rows, 6, rng), rows);
  EXPECT_EQ(draw_candidates(rows, 9, rng), rows);
  EXPECT_EQ(rng.next(), reference.next()) << "taking all rows draws nothing";
  constexpr int n = 20000;
  std::map<int64_t, int> count;
  for (int k = 0; k < n; ++k) {
    const auto some = draw_candidates(rows, 3, draws);
    ASSERT_EQ(some.size(), 3u);
    ASSERT_TRUE(std::is_sorted(some.begin(), some.end()));
    ASSERT_EQ(std::adjacent_find(some.begin(), some.end()), some.end()) << "drawn without replacement";
    for (const int64_t r : some) ++count[r];
  }
  const double p = 0.5, sd = std::sqrt(p * (1 - p) / n);
  for (const int64_t r : rows) EXPECT_NEAR(count[r] / static_cast<double>(n), p, 5 * sd) << r;
}

// train.itm_hard_candidates = 2: a partner is drawn by softmax over two rows chosen uniformly among
// those allowed, so P(j) = mean over the other allowed m of e^s_j / (e^s_j + e^s_m) - neither the
// softmax over all (K = 0) nor uniform. Monte Carlo over steps (each step draws anew) against it.
TEST(HardBatch, CandidatesAreDrawnFirstThenScored) {
  auto s = hard_batch("image");
  auto model = sharp_model(s);
  const Batch before = s.batch;
  const int64_t i = first_marked(before);
  const auto allowed = hard_partner_rows(before, {i})[0];
  ASSERT_GE(allowed.size(), 4u);
  const auto scores = batch_score_matrix(*model, before).to(torch::kFloat64);
  // P(j) = P(j among the two) x mean over its companion m of P(j chosen of {j, m}).
  const double a = static_cast<double>(allowed.size()), top = scores[i].max().item<double>();
  std::map<int64_t, double> pair_k, softmax;
  double total = 0;
  for (const int64_t j : allowed) total += std::exp(scores[i][j].item<double>() - top);
  for (const int64_t j : allowed) {
    const double sj = scores[i][j].item<double>();
    softmax[j] = std::exp(sj - top) / total;
    for (const int64_t m : allowed)
      if (m != j) pair_k[j] += (2.0 / a) / (a - 1) / (1.0 + std::exp(scores[i][m].item<double>() - sj));
  }
  constexpr int n = 1500;
  std::map<int64_t, int> count;
  for (int64_t step = 0; step < n; ++step) {
    Batch after = before;
    apply_hard_negatives(*model, after, hard_options("image", 9, 1.0, 2), step);
    ASSERT_EQ(after.itm_labels[i].item<int64_t>(), 0);
    int64_t from = -1;
    for (const int64_t j : allowed)
      if (after.region_feats[i].equal(before.region_feats[j])) from = j;
    ASSERT_GE(from, 0) << "step " << step << ": the partner is not an allowed row";
    ++count[from];
  }
  bool from_softmax = false, from_uniform = false;  // whether the test could tell the rules apart
  for (const int64_t j : allowed) {
    const double p = pair_k[j], sd = std::sqrt(p * (1 - p) / n), seen = count[j] / static_cast<double>(n);
    EXPECT_NEAR(seen, p, 5 * sd + 1e-9) << "row " << j << " (softmax over all " << softmax[j] << ")";
    from_softmax |= std::abs(softmax[j] - p) > 8 * sd, from_uniform |= std::abs(1.0 / a - p) > 8 * sd;
  }
  std::string table;
  for (const int64_t j : allowed)
    table += " " + std::to_string(j) + ": " + std::to_string(pair_k[j]) + " / " + std::to_string(softmax[j]) + " (" +
             std::to_string(scores[i][j].item<double>()) + ")";
  EXPECT_TRUE(from_softmax && from_uniform) << "the scores are too alike for the test to tell the rules apart:" << table;
}

// train.itm_swap = either: each row turned negative swaps its image or its caption, half and half,
// and draws the partner by the scores of its side - along its row of the score matrix (its caption
// with other images) when it swaps the image, along its column (its image with other captions)
// when it swaps the caption. Monte Carlo over steps against both softmaxes, which differ.
TEST(HardBatch, EitherDrawsTheSideThenThePartnerByThatSidesScores) {
  auto s = hard_batch("either");
  auto model = sharp_model(s);
  const Batch before = s.batch;
  const int64_t i = first_marked(before);
  const auto allowed = hard_partner_rows(before, {i})[0];
  ASSERT_GE(allowed.size(), 4u);
  for (const int64_t j : allowed)  // the partner's caption is known by its tokens: no two alike
    for (const int64_t m : allowed)
      ASSERT_TRUE(j == m || !before.text_ids[j].equal(before.text_ids[m])) << "rows " << j << ", " << m;
  const auto scores = batch_score_matrix(*model, before).to(torch::kFloat64);
  auto softmax = [&](bool by_column) {
    std::map<int64_t, double> p;
    double total = 0;
    for (const int64_t j : allowed) total += p[j] = std::exp((by_column ? scores[j][i] : scores[i][j]).item<double>());
    for (auto& [j, v] : p) v /= total;
    return p;
  };
  const auto by_image = softmax(false), by_caption = softmax(true);
  constexpr int n = 1200;
  std::map<int64_t, int> image_from, caption_from;
  int images = 0;
  for (int64_t step = 0; step < n; ++step) {
    Batch after = before;
    apply_hard_negatives(*model, after, hard_options("either", 9), step);
    ASSERT_EQ(after.itm_labels[i].item<int64_t>(), 0);
    const bool image_swapped = after.text_ids[i].equal(before.text_ids[i]);
    int64_t from = -1;
    for (const int64_t j : allowed)
      if (image_swapped ? after.region_feats[i].equal(before.region_feats[j]) : after.text_ids[i].equal(before.text_ids[j]))
        from = j;
    ASSERT_GE(from, 0) << "step " << step << ": the partner is not an allowed row";
    ++(image_swapped ? image_from : caption_from)[from], images += image_swapped;
  }
  EXPECT_NEAR(images / static_cast<double>(n), 0.5, 5 * std::sqrt(0.25 / n));
  bool differ = false;
  for (const auto& [seen, expect, count] :
       {std::tuple{&image_from, &by_image, images}, std::tuple{&caption_from, &by_caption, n - images}}) {
    for (const int64_t j : allowed) {
      const double p = expect->at(j), sd = std::sqrt(p * (1 - p) / count);
      EXPECT_NEAR((*seen)[j] / static_cast<double>(count), p, 5 * sd + 1e-9) << "row " << j << (expect == &by_image ? " (image)" : " (caption)");
      differ |= std::abs(by_image.at(j) - by_caption.at(j)) > 10 * sd;
    }
  }
  EXPECT_TRUE(differ) << "a row's and a column's softmax are too alike for the test to tell the sides apart";
}

TEST(HardBatch, TrainingStepsRunWithFiniteLosses) {
  for (const std::string swap : {"image", "both", "both, random"}) {
    auto s = hard_batch(swap.substr(0, 4) == "both" ? "both" : swap);
    s.cfg.train.lr = 1e-3;
    if (swap == "both, random") s.cfg.train.itm_negatives = "random";
    torch::manual_seed(1);
    MultimodalTransformer model(s.cfg.model, data_input_dims(s.cfg));
    PretrainStep step(*model, s.cfg.train);
    PretrainBatcher batcher(*s.world, data_vocab(s.cfg), s.cfg);
    for (int64_t k = 0; k < 3; ++k) {
      const auto r = step.run(batcher.batch(k), s.cfg.train.lr, k);
      EXPECT_TRUE(r.finite) << swap;
      EXPECT_GT(r.loss.metrics.at("itm"), 0.0) << swap;
    }
  }
}

// The step counts MLM tokens and masked regions after the swap (which takes the swapped rows'
// targets away): its metrics are those of the hard batch itself.
TEST_P(HardBatch, StepMetricsAreTheHardBatchsMetrics) {
  auto s = hard_batch(GetParam());
  s.cfg.model.dropout = 0;
  torch::manual_seed(2);
  MultimodalTransformer model(s.cfg.model, data_input_dims(s.cfg));
  model->train();
  Batch swapped = s.batch;
  apply_hard_negatives(*model, swapped, s.cfg.train, 0);
  ASSERT_FALSE(swapped.hard_negative_rows.defined());
  const auto expected = pretraining_loss(*model, swapped, s.cfg.train).metrics;
  PretrainStep step(*model, s.cfg.train);
  auto got = step.run(s.batch, 1e-3, 0).loss.metrics;  // losses of the forward before the update
  got.erase("grad_norm");
  EXPECT_EQ(got, expected);
}

}  // namespace
}  // namespace mmt
