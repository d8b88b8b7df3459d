/* Exact scoring: the blocked, embedding-reusing scorer equals a plain loop that runs each
 * (caption, image) pair through the model on its own. */
#include <gtest/gtest.h>

#include "mmt/data/image_source.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/eval/exact_scorer.h"
#include "test_util.h"

namespace mmt {
namespace {

struct Case {
  const char* name;
  std::vector<std::string> layers;
  std::string pooling, kind;
};

class ExactScorer : public ::testing::TestWithParam<Case> {};

// Every path of the scorer - pairs through all layers, a unimodal prefix run once per caption and
// image, and the matrix product when no layer crosses modalities - equals the plain loop.
TEST_P(ExactScorer, EqualsOnePairAtATime) {
  torch::NoGradGuard ng;
  torch::manual_seed(0);
  auto opts = testing::small_model_options("merged", 2);
  opts.layers = GetParam().layers, opts.itm_pooling = GetParam().pooling, opts.kind = GetParam().kind;
  MultimodalTransformer model(opts, InputDims{testing::kVocab, testing::kFeat});
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
      const auto e = model->encode(b);
      const auto logits = model->itm_logits(e);
      const float expected = opts.kind == "dual_encoder" ? model->match_scores(e).item<float>()
                                                         : (logits[0][1] - logits[0][0]).item<float>();
      EXPECT_NEAR(scores[c * 7 + i], expected, 1e-4) << GetParam().name << ": caption " << c << " image " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Paths, ExactScorer,
    ::testing::Values(Case{"merged", {"merged", "merged"}, "product", "transformer"},
                      Case{"prefix", {"single_modality", "single_modality", "coattention"}, "product", "transformer"},
                      Case{"unimodal", {"single_modality", "single_modality"}, "product", "transformer"},
                      Case{"unimodal_cls", {"single_modality"}, "cls", "transformer"},
                      Case{"dual_dot", {"single_modality", "single_modality"}, "product", "dual_encoder"}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace mmt
