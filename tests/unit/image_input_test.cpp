/* Image inputs: patches and ResNet-50 grid features become region-like tokens (a global mean
 * token first, cell boxes); a frozen ResNet gets no gradients and keeps BatchNorm in inference
 * mode; models on pixels train (their loss falls) and score exactly like the per-pair loop. */
#include <gtest/gtest.h>

#include "mmt/data/data_source.h"
#include "mmt/data/image_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/eval/exact_scorer.h"
#include "mmt/model/flops.h"
#include "mmt/train/pretrain_step.h"
#include "test_util.h"

namespace mmt {
namespace {

ExperimentConfig pixel_config(const std::string& input) {
  ExperimentConfig cfg;
  cfg.model = testing::small_model_options("merged", 2);
  cfg.model.image_input = input;
  cfg.model.patch_size = 8;
  cfg.data.synth.image_size = 32;
  cfg.data.synth.num_train_images = 500;
  cfg.data.synth.num_test_images = 6;
  cfg.train.batch_size = 16;
  return cfg;
}

TEST(ImageInput, PatchesAreFlattenedCellsAfterAGlobalMean) {
  const auto cfg = pixel_config("patches");
  MultimodalTransformer model(cfg.model, data_input_dims(cfg));
  EXPECT_EQ(data_input_dims(cfg).region_feat_dim, 3 * 8 * 8);
  const auto pixels = torch::randn({2, 3, 32, 32});
  auto [feats, boxes] = model->pixel_features(pixels);
  ASSERT_EQ(feats.sizes(), (std::vector<int64_t>{2, 1 + 16, 192}));
  // Patch (row 1, col 2) is pixels[:, :, 8:16, 16:24] flattened channel-major.
  const auto patch = pixels.narrow(2, 8, 8).narrow(3, 16, 8).reshape({2, -1});
  EXPECT_TRUE(torch::allclose(feats.select(1, 1 + 1 * 4 + 2), patch));
  EXPECT_TRUE(torch::allclose(feats.select(1, 0), feats.narrow(1, 1, 16).mean(1)));
  EXPECT_TRUE(torch::allclose(boxes[0][1 + 4 + 2], torch::tensor({0.5f, 0.25f, 0.75f, 0.5f, 1.f / 16})));
  EXPECT_TRUE(torch::allclose(boxes[1][0], torch::tensor({0.f, 0.f, 1.f, 1.f, 1.f})));
}

TEST(ImageInput, PositionCountsAreWhatTheModelBuilds) {
  // pixel_positions (FLOP counts, model summary, the training log) against the tokens the model
  // makes: patches, and the ResNet-50 on a side that is no multiple of 32 (ceil(40 / 32) = 2).
  for (const auto& [input, side] : std::vector<std::pair<std::string, int64_t>>{{"patches", 32}, {"patches", 48}, {"resnet50", 40}, {"resnet50", 64}}) {
    auto cfg = pixel_config(input);
    cfg.data.synth.image_size = side;
    MultimodalTransformer model(cfg.model, data_input_dims(cfg));
    model->eval();
    const int64_t built = model->pixel_features(torch::rand({1, 3, side, side})).first.size(1);
    EXPECT_EQ(pixel_positions(cfg.model, side), built) << input << " " << side;
    EXPECT_EQ(max_image_positions(cfg), built) << input << " " << side;
  }
  auto cfg = pixel_config("patches");
  EXPECT_NE(describe_positions(cfg).find("17 image positions (the global one + a 4 x 4 grid of 8 px patches of 32 px images)"),
            std::string::npos) << describe_positions(cfg);
  // Regions: the global token + at most data.max_regions (the synthetic world: its objects).
  cfg.model.image_input = "regions";
  cfg.data.synth.max_objects = 3;
  EXPECT_EQ(max_image_positions(cfg), 4);
  const synth::World world(cfg.data.synth);
  int64_t most = 0;
  for (int64_t i = 0; i < static_cast<int64_t>(world.train_scenes().size()); ++i)
    most = std::max(most, world.train_regions().num_regions(i));
  EXPECT_EQ(most, 4);  // three objects and the global region in some scene of 500
  cfg.data.source = "datasets";
  cfg.data.max_regions = 36;
  EXPECT_EQ(max_image_positions(cfg), 37);
  cfg.model.image_input = "patches";
  cfg.data.image_size = 224;
  EXPECT_EQ(max_image_positions(cfg), 1 + 28 * 28);  // the datasets' side, not the synthetic one
}

TEST(ImageInput, FrozenResNetGetsNoGradientsAndStaysInInference) {
  auto cfg = pixel_config("resnet50");
  MultimodalTransformer model(cfg.model, data_input_dims(cfg));
  model->train();
  EXPECT_FALSE(model->resnet->is_training());
  EXPECT_FALSE(model->resnet->bn1->is_training());
  Batch b = testing::random_batch(2, 5, 1);
  b.image_pixels = torch::randn({2, 3, 64, 64});
  const auto e = model->encode(b);
  EXPECT_EQ(e.image.size(1), 1 + 2 * 2);  // 64 px -> 2 x 2 grid + global
  model->itm_logits(e).sum().backward();
  for (const auto& p : model->resnet->parameters()) EXPECT_FALSE(p.grad().defined());
  EXPECT_TRUE(model->image_embed->feature->weight.grad().defined());
  for (const auto& p : model->named_parameters())
    if (p.key().rfind("resnet.", 0) == 0) EXPECT_FALSE(p.value().requires_grad()) << p.key();
  cfg.model.resnet_frozen = false;
  MultimodalTransformer trainable(cfg.model, data_input_dims(cfg));
  trainable->train();
  EXPECT_TRUE(trainable->resnet->bn1->is_training());
}

TEST(ImageInput, PatchModelTrainsOnRenderedScenes) {
  const auto cfg = pixel_config("patches");
  const synth::World world(cfg.data.synth);
  const Vocab vocab = data_vocab(cfg);
  torch::manual_seed(0);
  MultimodalTransformer model(cfg.model, data_input_dims(cfg));
  model->train();
  PretrainBatcher batcher(world, vocab, cfg);
  PretrainStep step(*model, cfg.train);
  const Batch first = batcher.batch(0);
  ASSERT_TRUE(first.image_pixels.defined());
  EXPECT_EQ(first.image_pixels.sizes(), (std::vector<int64_t>{16, 3, 32, 32}));
  double early = 0, late = 0;
  for (int64_t s = 0; s < 60; ++s) {
    const double mlm = step.run(batcher.batch(s), 2e-3).loss.metrics["mlm"];
    if (s < 10) early += mlm / 10;
    if (s >= 50) late += mlm / 10;
  }
  EXPECT_LT(late, early - 0.25);  // nats: ~3.9 -> ~3.4 in 60 steps of 16
}

TEST(ImageInput, ExactScoringOfPixelsEqualsPairByPair) {
  torch::NoGradGuard ng;
  const auto cfg = pixel_config("patches");
  const synth::World world(cfg.data.synth);
  const auto& test = world.test_set("easy");
  MultimodalTransformer model(cfg.model, data_input_dims(cfg));
  model->eval();
  const SyntheticImages images(test.images, test.regions, cfg);
  const Vocab vocab = data_vocab(cfg);
  std::vector<std::vector<int64_t>> captions;
  for (size_t c = 0; c < 9; ++c) captions.push_back(vocab.encode(test.captions[c].text, 16));
  ExactScorerOptions so;
  so.pair_batch = 7;
  const auto scores = score_exact(*model, captions, images, so);
  for (size_t c = 0; c < captions.size(); ++c)
    for (int64_t i = 0; i < images.size(); ++i) {
      Batch b;
      pad_text({captions[c]}, 0, b);
      images.fill({i}, b);
      const auto l = model->itm_logits(model->encode(b));
      EXPECT_NEAR(scores[c * images.size() + i], (l[0][1] - l[0][0]).item<float>(), 1e-4);
    }
}

}  // namespace
}  // namespace mmt
