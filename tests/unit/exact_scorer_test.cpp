/* Exact scoring: the blocked, embedding-reusing scorer equals a plain loop that runs each
 * (caption, image) pair through the model on its own. */
#include <gtest/gtest.h>

#include "mmt/data/image_source.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/eval/exact_scorer.h"
#include "test_util.h"

namespace mmt {
namespace {

TEST(ExactScorer, EqualsOnePairAtATime) {
  torch::NoGradGuard ng;
  torch::manual_seed(0);
  MultimodalTransformer model(testing::small_model_options("merged", 2), InputDims{testing::kVocab, testing::kFeat});
  model->eval();
  // 7 images with 2..5 regions, 11 captions of 3..8 tokens.
  synth::RegionStore store;
  store.feature_dim = testing::kFeat, store.num_classes = 1;
  store.offsets = {0};
  for (int i = 0; i < 7; ++i) {
    const int n = 2 + i % 4;
    for (int r = 0; r < n; ++r) {
      for (int k = 0; k < testing::kFeat; ++k) store.features.push_back(static_cast<float>(std::sin(i * 7 + r * 3 + k)));
      for (int k = 0; k < 5; ++k) store.boxes.push_back(0.1f * static_cast<float>((i + r + k) % 10));
      store.classes.push_back(1.f);
    }
    store.offsets.push_back(store.offsets.back() + n);
  }
  std::vector<std::vector<int64_t>> captions;
  for (int c = 0; c < 11; ++c) {
    std::vector<int64_t> ids = {2};
    for (int t = 0; t < 1 + c % 6; ++t) ids.push_back(5 + (c * 5 + t * 3) % (testing::kVocab - 5));
    ids.push_back(3);
    captions.push_back(ids);
  }
  ExactScorerOptions so;
  so.pair_batch = 5;  // many small blocks
  const std::vector<synth::Scene> scenes(7);
  ExperimentConfig cfg;
  const SyntheticImages images(scenes, store, cfg);
  const auto scores = score_exact(*model, captions, images, so);
  ASSERT_EQ(scores.size(), 77u);
  for (int c = 0; c < 11; ++c) {
    for (int64_t i = 0; i < 7; ++i) {
      Batch b;
      pad_text({captions[c]}, 0, b);
      gather_regions(store, {i}, 100, b);
      const auto logits = model->itm_logits(model->encode(b));
      const float margin = (logits[0][1] - logits[0][0]).item<float>();
      EXPECT_NEAR(scores[c * 7 + i], margin, 1e-4) << "caption " << c << " image " << i;
    }
  }
}

}  // namespace
}  // namespace mmt
