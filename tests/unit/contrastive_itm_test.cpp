/* Contrastive ITM with K negatives: equals a brute-force loop over pairs (loss and gradients),
 * chunked equals unchunked, excluded own-image duplicates take no part, and K = 1024 runs with
 * bounded memory. */
#include <gtest/gtest.h>

#include <cmath>

#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/loss/contrastive_itm.h"
#include "test_util.h"

namespace mmt {
namespace {

struct Setup {
  ExperimentConfig cfg;
  std::unique_ptr<synth::World> world;
  Batch batch;
};

Setup make(int64_t k, int64_t batch_size) {
  Setup s;
  s.cfg.model = testing::small_model_options("merged", 2);
  s.cfg.data.synth.num_train_images = 1500, s.cfg.data.synth.num_test_images = 10;
  s.cfg.train.batch_size = batch_size, s.cfg.train.itm_negative_prob = 0.25;
  s.cfg.train.itm_contrastive_weight = 1, s.cfg.train.itm_contrastive_negatives = k;
  s.world = std::make_unique<synth::World>(s.cfg.data.synth);
  PretrainBatcher batcher(*s.world, data_vocab(s.cfg), s.cfg);
  s.batch = batcher.batch(3);
  return s;
}

// A model of the setup's config, seeded, in training mode.
MultimodalTransformer training_model(const Setup& s, uint64_t seed) {
  torch::manual_seed(seed);
  MultimodalTransformer model(s.cfg.model, data_input_dims(s.cfg));
  model->train();
  return model;
}

std::map<std::string, torch::Tensor> grads(MultimodalTransformerImpl& m) {
  std::map<std::string, torch::Tensor> g;
  for (const auto& p : m.named_parameters())
    if (p.value().grad().defined()) g[p.key()] = p.value().grad().clone();
  return g;
}

class ContrastiveItm : public ::testing::TestWithParam<std::string> {};

// Merged layers take the pair-by-pair path, single-modality ones the unimodal matrix path, a
// single_modality layer under a merged one runs each caption and image through the lower layer once
// and the pairs through the merged one.
TEST_P(ContrastiveItm, EqualsBruteForceLoopOverPairs) {
  auto s = make(5, 6);
  s.cfg.model.attention = GetParam();
  if (GetParam() == "mixed")
    s.cfg.model.attention = "merged", s.cfg.model.layers = {"single_modality", "merged"};
  auto model = training_model(s, 4);
  // Force one excluded candidate to check it takes no part.
  s.batch.negative_excluded[0][2] = true;
  const auto r = contrastive_itm(*model, s.batch, 1.0, /*chunk=*/1000);
  const auto fused = grads(*model);
  model->zero_grad();

  // Brute force: each pair on its own, softmax cross-entropy per caption, autograd.
  auto brute = torch::zeros({});
  int64_t m = 0;
  for (int64_t i = 0; i < s.batch.size(); ++i) {
    if (s.batch.itm_labels[i].item<int64_t>() != 1) continue;
    std::vector<torch::Tensor> scores;
    for (int64_t c = 0; c <= 5; ++c) {
      if (c > 0 && s.batch.negative_excluded[i][c - 1].item<bool>()) continue;
      Batch pair;
      const int64_t len = s.batch.text_mask[i].sum().item<int64_t>();
      pair.text_ids = s.batch.text_ids[i].narrow(0, 0, len).unsqueeze(0);
      pair.text_mask = torch::ones({1, len}, torch::kBool);
      const Batch& src = c == 0 ? s.batch : *s.batch.negatives;
      const int64_t row = c == 0 ? i : c - 1;
      const int64_t regions = src.region_mask[row].sum().item<int64_t>();
      pair.region_feats = src.region_feats[row].narrow(0, 0, regions).unsqueeze(0);
      pair.region_boxes = src.region_boxes[row].narrow(0, 0, regions).unsqueeze(0);
      pair.region_mask = torch::ones({1, regions}, torch::kBool);
      scores.push_back(model->match_scores(model->encode(pair)));
    }
    brute = brute - torch::log_softmax(torch::cat(scores), 0)[0];
    ++m;
  }
  brute = brute / static_cast<double>(m);
  brute.backward();
  EXPECT_EQ(r.captions, m);
  EXPECT_NEAR(r.loss, brute.item<double>(), 1e-5 * std::max(1.0, brute.item<double>()));
  const auto plain = grads(*model);
  ASSERT_EQ(fused.size(), plain.size());
  for (const auto& [name, g] : plain) {
    const double scale = std::max(1e-3, g.abs().max().item<double>());
    EXPECT_LT((fused.at(name) - g).abs().max().item<double>() / scale, 1e-4) << name;
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, ContrastiveItm,
                         ::testing::Values("merged", "single_modality", "mixed"));

// One chunk (one pass with its graph), chunks that divide the pairs, and a short last chunk.
TEST(ContrastiveItmChunks, ChunkedEqualsUnchunked) {
  for (const bool mixed : {false, true}) {
    SCOPED_TRACE(mixed ? "single_modality under merged" : "merged");
    auto s = make(7, 8);
    if (mixed) s.cfg.model.layers = {"single_modality", "merged"};
    auto model = training_model(s, 5);
    const auto whole = contrastive_itm(*model, s.batch, 0.5, 100000);
    const auto g_whole = grads(*model);
    for (int64_t chunk : {3, 4}) {
      model->zero_grad();
      const auto chunked = contrastive_itm(*model, s.batch, 0.5, chunk);
      const auto g_chunked = grads(*model);
      EXPECT_NEAR(whole.loss, chunked.loss, 1e-6) << chunk;
      EXPECT_EQ(whole.accuracy, chunked.accuracy) << chunk;
      for (const auto& [name, g] : g_whole)
        EXPECT_LT((g_chunked.at(name) - g).abs().max().item<double>(),
                  1e-6 * std::max(1.0, g.abs().max().item<double>()))
            << name << ", chunk " << chunk;
    }
  }
}

// With dropout the loss is a function of the parameters and the masks drawn: seeded the same, the
// chunked pass's gradient is that function's - each chunk's pass with its graph draws the masks
// its scoring pass drew. Checked against central differences along the gradient (a gradient of
// other masks is off by far more than the differences' error).
TEST(ContrastiveItmChunks, DropoutMasksOfTheScoredPassAreTheOnesDifferentiated) {
  for (const bool mixed : {false, true}) {
    SCOPED_TRACE(mixed ? "single_modality under merged" : "merged");
    auto s = make(5, 8);
    s.cfg.model.dropout = 0.3;
    if (mixed) s.cfg.model.layers = {"single_modality", "merged"};
    auto model = training_model(s, 9);
    auto loss = [&](int64_t chunk, double weight) {
      torch::manual_seed(123);
      return contrastive_itm(*model, s.batch, weight, chunk).loss;
    };
    const int64_t chunk = 7;  // several chunks, a short last one
    ASSERT_GT(s.batch.itm_labels.eq(1).sum().item<int64_t>() * 6, 2 * chunk);
    model->zero_grad();
    const double at = loss(chunk, 1.0);
    EXPECT_EQ(loss(chunk, 0.0), at);  // the same masks again: the same loss
    std::vector<torch::Tensor> direction;
    double norm2 = 0;
    for (const auto& p : model->parameters()) {
      direction.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
      norm2 += direction.back().pow(2).sum().item<double>();
    }
    ASSERT_GT(norm2, 0);
    const double norm = std::sqrt(norm2), eps = 1e-2;
    auto shift = [&](double by) {
      torch::NoGradGuard no_grad;
      size_t i = 0;
      for (auto& p : model->parameters()) p.add_(direction[i++], by / norm);
    };
    shift(eps);
    const double up = loss(chunk, 0.0);
    shift(-2 * eps);
    const double down = loss(chunk, 0.0);
    shift(eps);
    const double numeric = (up - down) / (2 * eps);  // d loss along the unit gradient = |gradient|
    EXPECT_NEAR(numeric, norm, 0.01 * norm)
        << "gradient norm " << norm << ", central difference " << numeric;
  }
}

// Without a weight (or outside training) nothing is back-propagated and no graph is kept.
TEST(ContrastiveItmChunks, NoWeightLeavesNoGradients) {
  auto s = make(7, 4);
  auto model = training_model(s, 7);
  const auto r = contrastive_itm(*model, s.batch, 0.0, 5);
  EXPECT_GT(r.captions, 0);
  EXPECT_TRUE(std::isfinite(r.loss));
  for (const auto& p : model->parameters()) EXPECT_FALSE(p.grad().defined());
}

TEST(ContrastiveItmChunks, ThousandNegativesRunChunked) {
  auto s = make(1024, 2);
  ASSERT_EQ(s.batch.negatives->region_feats.size(0), 1024);
  auto model = training_model(s, 6);
  const auto r = contrastive_itm(*model, s.batch, 1.0, 256);
  EXPECT_GT(r.captions, 0);
  // An untrained scorer is near uniform over the 1025 candidates: loss near ln(1025) = 6.93.
  EXPECT_NEAR(r.loss, std::log(1025.0), 0.5);
  EXPECT_TRUE(model->itm_classifier->weight.grad().defined());
}

}  // namespace
}  // namespace mmt
