/* MLM masking statistics and the pretraining batches: 15% of tokens, 80/10/10, special
 * tokens never masked, MLM labels only on matched pairs, half the pairs mismatched. */
#include <gtest/gtest.h>

#include <cmath>

#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/text/vocab.h"
#include "mmt/util/rng.h"
#include "test_util.h"

namespace mmt {
namespace {

TEST(Masking, BertStatisticsOver100kTokens) {
  const Vocab vocab = Vocab::from_words(synth::lexicon());
  Rng rng(5);
  int64_t tokens = 0, selected = 0, to_mask = 0, to_random = 0, kept = 0, special_selected = 0;
  while (tokens < 100000) {
    std::vector<int64_t> ids = {vocab.cls_id()};
    for (int i = 0; i < 12; ++i) ids.push_back(5 + rng.below(vocab.size() - 5));
    ids.push_back(vocab.sep_id());
    const auto original = ids;
    const auto labels = mask_tokens(ids, vocab, 0.15, rng);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (vocab.is_special(original[i])) {
        special_selected += labels[i] != kIgnoreLabel;
        EXPECT_EQ(ids[i], original[i]);
        continue;
      }
      ++tokens;
      if (labels[i] == kIgnoreLabel) {
        EXPECT_EQ(ids[i], original[i]);
        continue;
      }
      EXPECT_EQ(labels[i], original[i]);
      ++selected;
      if (ids[i] == vocab.mask_id()) ++to_mask;
      else if (ids[i] == original[i]) ++kept;
      else {
        ++to_random;
        EXPECT_FALSE(vocab.is_special(ids[i]));
      }
    }
  }
  EXPECT_EQ(special_selected, 0);
  EXPECT_NEAR(100.0 * selected / tokens, 15.0, 1.0);
  EXPECT_NEAR(100.0 * to_mask / selected, 80.0, 1.0);
  // A random replacement may draw the original token (1 in |words|): it then counts as kept.
  EXPECT_NEAR(100.0 * to_random / selected, 10.0 * (1 - 1.0 / (vocab.size() - 5)), 1.0);
  EXPECT_NEAR(100.0 * kept / selected, 10.0 + 10.0 / (vocab.size() - 5), 1.0);
}

TEST(PretrainBatcher, MismatchesHalfThePairsAndLabelsOnlyMatchedOnes) {
  ExperimentConfig cfg;
  cfg.data.synth.num_train_images = 2000;
  cfg.data.synth.num_test_images = 50;
  cfg.train.batch_size = 64;
  const synth::World world(cfg.data.synth);
  const Vocab vocab = Vocab::from_words(synth::lexicon());
  PretrainBatcher batcher(world, vocab, cfg);
  int64_t pairs = 0, mismatched = 0, labelled_tokens = 0, real_tokens = 0;
  for (int64_t step = 0; step < 40; ++step) {
    const Batch b = batcher.batch(step);
    ASSERT_EQ(b.size(), 64);
    const auto itm = b.itm_labels;
    pairs += b.size();
    mismatched += (itm == 0).sum().item<int64_t>();
    const auto labelled = b.mlm_labels.ne(kIgnoreLabel);
    // No MLM target on a mismatched pair, none on padding.
    EXPECT_EQ((labelled.sum(1).gt(0) & itm.eq(0)).sum().item<int64_t>(), 0);
    EXPECT_EQ((labelled & b.text_mask.logical_not()).sum().item<int64_t>(), 0);
    labelled_tokens += labelled.sum().item<int64_t>();
    real_tokens += (b.text_mask & itm.eq(1).unsqueeze(1)).sum().item<int64_t>() - 2 * itm.eq(1).sum().item<int64_t>();
    // The labels hold the original tokens: positions whose input is not [MASK] and differs
    // from the label were replaced by a random word.
    EXPECT_TRUE((b.mlm_labels.masked_select(labelled) >= 5).all().item<bool>());
  }
  EXPECT_NEAR(100.0 * mismatched / pairs, 50.0, 3.0);
  EXPECT_NEAR(100.0 * labelled_tokens / real_tokens, 15.0, 1.5);
}

// train.itm_swap = either: a mismatched row swaps its image or its caption, about half each, never
// both. Against the same batch with every pair matched (the pairing draws do not move the rows):
// a negative row keeps exactly one side of its own pair.
TEST(PretrainBatcher, EitherSwapsOneSideOfEachNegative) {
  ExperimentConfig cfg;
  cfg.data.synth.num_train_images = 2000;
  cfg.data.synth.num_test_images = 50;
  cfg.train.batch_size = 64, cfg.train.mlm_weight = 0;  // no masking: the rows' own tokens
  cfg.train.itm_swap = "either", cfg.train.itm_negative_prob = 1;
  ExperimentConfig matched = cfg;
  matched.train.itm_negative_prob = 0;
  const synth::World world(cfg.data.synth);
  const Vocab vocab = Vocab::from_words(synth::lexicon());
  PretrainBatcher either(world, vocab, cfg), own(world, vocab, matched);
  auto tokens = [](const Batch& b, int64_t i) { return b.text_ids[i].masked_select(b.text_mask[i]); };
  auto regions = [](const Batch& b, int64_t i) { return b.region_feats[i].index_select(0, b.region_mask[i].nonzero().view(-1)); };
  int64_t negatives = 0, image_swaps = 0;
  for (int64_t step = 0; step < 10; ++step) {
    const Batch x = either.batch(step), y = own.batch(step);
    ASSERT_TRUE(x.image_key.equal(y.image_key)) << "the same rows either way";
    ASSERT_EQ(y.itm_labels.sum().item<int64_t>(), y.size());
    for (int64_t i = 0; i < x.size(); ++i) {
      if (x.itm_labels[i].item<int64_t>() == 1) continue;  // no other scene to swap in
      ++negatives;
      const bool text_own = tokens(x, i).equal(tokens(y, i));
      const auto ri = regions(x, i), ro = regions(y, i);
      const bool image_own = ri.sizes() == ro.sizes() && ri.equal(ro);
      EXPECT_NE(text_own, image_own) << "step " << step << " row " << i << ": exactly one side swapped";
      image_swaps += text_own;
    }
  }
  EXPECT_GT(negatives, 600);
  EXPECT_NEAR(static_cast<double>(image_swaps) / negatives, 0.5, 5 * std::sqrt(0.25 / negatives));
}

TEST(PretrainBatcher, DeterministicInTheStepAndBucketedByLength) {
  ExperimentConfig cfg;
  cfg.data.synth.num_train_images = 1000;
  cfg.data.synth.num_test_images = 50;
  cfg.train.batch_size = 32;
  const synth::World world(cfg.data.synth);
  const Vocab vocab = Vocab::from_words(synth::lexicon());
  PretrainBatcher a(world, vocab, cfg), b(world, vocab, cfg);
  const Batch x = a.batch(13);
  b.batch(2);
  const Batch y = b.batch(13);  // same step, other history
  EXPECT_TRUE(torch::equal(x.text_ids, y.text_ids));
  EXPECT_TRUE(torch::equal(x.region_feats, y.region_feats));
  EXPECT_TRUE(torch::equal(x.itm_labels, y.itm_labels));
  // Bucketing: far less padding than batches drawn without it.
  auto padding = [&](const ExperimentConfig& c) {
    PretrainBatcher p(world, vocab, c);
    int64_t padded = 0, total = 0;
    for (int64_t s = 0; s < 32; ++s) {
      const Batch z = p.batch(s);
      total += z.text_mask.numel();
      padded += z.text_mask.logical_not().sum().item<int64_t>();
    }
    return static_cast<double>(padded) / total;
  };
  auto plain = cfg;
  plain.data.bucket_batches = 1;
  EXPECT_LT(padding(cfg), 0.5 * padding(plain));
}

}  // namespace
}  // namespace mmt

namespace mmt {
namespace {

ExperimentConfig mrm_config() {
  ExperimentConfig cfg;
  cfg.data.synth.num_train_images = 3000;
  cfg.data.synth.num_test_images = 20;
  cfg.train.batch_size = 64;
  cfg.train.mrm_kl_weight = 1;
  return cfg;
}

TEST(RegionMasking, FifteenPercentOfRegionsZeroedBoxesKept) {
  const auto cfg = mrm_config();
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, Vocab::from_words(synth::lexicon()), cfg);
  int64_t regions = 0, masked = 0;
  for (int64_t step = 0; regions < 100000; ++step) {
    const Batch b = batcher.batch(step);
    // Candidates: real regions except the global one (index 0), in every example (matched or not).
    auto candidates = b.region_mask.clone();
    candidates.select(1, 0).fill_(false);
    const auto zeroed = b.region_feats.abs().sum(-1).eq(0) & candidates;
    regions += candidates.sum().item<int64_t>();
    masked += zeroed.sum().item<int64_t>();
    // Targets only on matched pairs, only where zeroed; boxes untouched; targets hold the originals.
    EXPECT_TRUE((b.mrm_mask & ~zeroed).sum().item<int64_t>() == 0);
    EXPECT_EQ((b.mrm_mask.any(1) & b.itm_labels.eq(0)).sum().item<int64_t>(), 0);
    EXPECT_GT(b.region_boxes.masked_select(zeroed.unsqueeze(-1)).abs().sum().item<double>(), 0.0);
    const auto targets = b.region_targets.index({b.mrm_mask});
    if (targets.numel() > 0) EXPECT_GT(targets.abs().sum().item<double>(), 0.0);
  }
  EXPECT_NEAR(100.0 * masked / regions, 15.0, 1.0);
}

// No leak: what the model sees of an example does not depend on the original features of its
// masked regions - the global region is recomputed without them.
TEST(RegionMasking, MaskedFeaturesNeverReachTheModel) {
  Batch b = testing::random_batch(3, 4, 5, 2);
  b.region_classes = torch::rand({3, 5, 4});
  Batch other = b;
  other.region_feats = b.region_feats.clone();
  Rng r1(9), r2(9);
  std::vector<char> all(3, 1);
  mask_regions(b, all, all, 0.5, r1);
  // Change every region that was masked in `b` (same RNG: same selection), then mask again.
  const auto selected = b.mrm_mask.clone();
  ASSERT_GT(selected.sum().item<int64_t>(), 0);
  other.region_feats.index_put_({selected}, torch::randn({selected.sum().item<int64_t>(), testing::kFeat}));
  mask_regions(other, all, all, 0.5, r2);
  EXPECT_TRUE(torch::equal(b.region_feats, other.region_feats));  // identical model input
  EXPECT_FALSE(torch::equal(b.region_targets, other.region_targets));
  // The global region is the mean of the regions left unmasked.
  for (int64_t i = 0; i < 3; ++i) {
    const auto keep = b.region_mask[i] & ~b.mrm_mask[i];
    keep[0] = false;
    if (keep.sum().item<int64_t>() == 0) continue;
    EXPECT_TRUE(torch::allclose(b.region_feats[i][0], b.region_feats[i].index({keep}).mean(0), 1e-5, 1e-6));
  }
}

TEST(RegionMasking, AlternatePolicyMasksOneModalityPerExample) {
  auto cfg = mrm_config();
  cfg.train.mask_modalities = "alternate";
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, Vocab::from_words(synth::lexicon()), cfg);
  int64_t both = 0, text_only = 0, image_only = 0;
  for (int64_t step = 0; step < 10; ++step) {
    const Batch b = batcher.batch(step);
    const auto text = b.mlm_labels.ne(kIgnoreLabel).any(1), image = b.mrm_mask.any(1);
    both += (text & image).sum().item<int64_t>();
    text_only += (text & ~image).sum().item<int64_t>();
    image_only += (~text & image).sum().item<int64_t>();
  }
  EXPECT_EQ(both, 0);
  EXPECT_GT(text_only, 50);
  EXPECT_GT(image_only, 50);
}

}  // namespace
}  // namespace mmt
