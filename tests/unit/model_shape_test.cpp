/* Model shapes: parameter counts equal closed-form formulas for two-stream and single-stream
 * layers; heads and head width are independent of the hidden size; layer lists expand. */
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <memory>

#include "mmt/config/config.h"
#include "mmt/data/batch.h"
#include "mmt/model/flops.h"
#include "mmt/model/summary.h"
#include "test_util.h"

namespace mmt {
namespace {

int64_t count(const torch::nn::Module& m) {
  int64_t n = 0;
  for (const auto& p : m.parameters()) n += p.numel();
  return n;
}

// The FLOP counts behind mmt train's GFLOP/s and the benchmarks: attention
// patterns change exactly the score / value products they leave out, and a batch counts its real
// positions only (padding is no useful work), three times the forward for training.
TEST(ModelShape, FlopCountsFollowPatternsAndRealPositions) {
  auto m = testing::small_model_options("merged", 2);
  const InputDims dims{testing::kVocab, testing::kFeat};
  const double inner = static_cast<double>(m.num_heads * m.head_dim);
  const int64_t t = 7, r = 5;
  auto with = [&](const std::string& attention) {
    auto o = m;
    o.attention = attention;
    return forward_flops(o, dims, t, r, 0);
  };
  // Merged: every query attends to t + r keys; single-modality: text to t, image to r. The
  // difference is the cross-modal scores and weighted values, 2 x 2 x inner x 2 t r per layer.
  EXPECT_NEAR(with("merged") - with("single_modality"), 2 * 2.0 * 2 * inner * 2 * t * r, 1e-6);
  // Masked tokens add the MLM head, hidden x (hidden + vocab) each.
  EXPECT_NEAR(forward_flops(m, dims, t, r, 3) - forward_flops(m, dims, t, r, 0),
              3 * 2.0 * m.hidden * (m.hidden + testing::kVocab), 1e-6);
  // A batch: rows of 4 and 6 real tokens padded to 6, 2 and 3 real regions padded to 3.
  Batch b = testing::random_batch(2, 6, 3);
  b.text_mask = torch::tensor({1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1}, torch::kBool).reshape({2, 6});
  b.region_mask = torch::tensor({1, 1, 0, 1, 1, 1}, torch::kBool).reshape({2, 3});
  b.mlm_labels = torch::full({2, 6}, kIgnoreLabel, torch::kInt64);
  b.mlm_labels[1][2] = 5;
  EXPECT_NEAR(batch_train_flops(m, dims, b), 3 * (forward_flops(m, dims, 4, 2, 0) + forward_flops(m, dims, 6, 3, 1)), 1e-3);
  EXPECT_EQ(format_flop_rate(2.53e10), "25.3 GFLOP/s");
  EXPECT_EQ(format_flop_rate(3.12e14), "312.0 TFLOP/s");
}

// mmt train's rate counts every model pass a step runs, not only the main one: contrastive ITM's
// (caption, candidate) pairs with gradient, the towers rerun for the align loss on unmasked
// inputs, the forward passes that score a batch for hard negatives - each only where the
// configuration and the batch make the step run it.
TEST(ModelShape, StepFlopsCountEveryPassTheStepRuns) {
  ExperimentConfig cfg;
  cfg.model = testing::small_model_options("merged", 2);
  const InputDims dims{testing::kVocab, testing::kFeat};
  const int64_t t = 5, r = 3, b = 4, k = 6;
  Batch batch = testing::random_batch(b, t, r);
  batch.itm_labels = torch::tensor({1, 1, 0, 1}, torch::kInt64);  // 3 matched captions
  auto layers = [&](int64_t tt, int64_t rr, int64_t end) { return layers_forward_flops(cfg.model, tt, rr, 0, end); };
  const double head = forward_flops(cfg.model, dims, 0, 0, 0);  // no tokens: the ITM head alone
  const double embed = 2.0 * r * (testing::kFeat + 5) * cfg.model.hidden;
  EXPECT_NEAR(forward_flops(cfg.model, dims, t, r, 0), embed + layers(t, r, 2) + head, 1e-6);

  // The main pass alone: no share to print.
  StepFlops f = step_train_flops(cfg, dims, batch);
  EXPECT_NEAR(f.main, batch_train_flops(cfg.model, dims, batch), 1e-6);
  EXPECT_EQ(f.total(), f.main);
  EXPECT_EQ(f.shares(), "");

  // Contrastive ITM, merged layers: each matched caption with its image and the K pool images,
  // forward and backward; every image embedded once.
  cfg.train.itm_contrastive_weight = 1;
  batch.negatives = std::make_shared<Batch>(testing::random_batch(k, t, r, 1));
  batch.negative_excluded = torch::zeros({b, k}, torch::kBool);
  f = step_train_flops(cfg, dims, batch);
  EXPECT_NEAR(f.contrastive, 3 * (3 * (k + 1) * (layers(t, r, 2) + head) + (3 + k) * embed), 1e-3);
  EXPECT_NEAR(f.total(), f.main + f.contrastive, 1e-3);
  const int share = static_cast<int>(std::lround(100 * f.main / f.total()));
  EXPECT_EQ(f.shares(), "main pass " + std::to_string(share) + "%, contrastive ITM " + std::to_string(100 - share) + "%");

  // Hard negatives: the rows they swap are no captions of contrastive ITM; scoring runs each of
  // them with every other image of the batch (or, swapping captions, every other caption), forward
  // only - with train.itm_hard_candidates = K, with K of them.
  batch.hard_negative_rows = torch::tensor({false, true, false, false});
  f = step_train_flops(cfg, dims, batch);
  EXPECT_NEAR(f.contrastive, 3 * (2 * (k + 1) * (layers(t, r, 2) + head) + (2 + k) * embed), 1e-3);
  EXPECT_NEAR(f.hard_negatives, (b - 1) * (layers(t, r, 2) + head) + b * embed, 1e-3);
  cfg.train.itm_hard_candidates = 2;
  EXPECT_NEAR(step_train_flops(cfg, dims, batch).hard_negatives, 2 * (layers(t, r, 2) + head) + b * embed, 1e-3);
  cfg.train.itm_hard_candidates = b;  // more than there are: all of them
  EXPECT_NEAR(step_train_flops(cfg, dims, batch).hard_negatives, (b - 1) * (layers(t, r, 2) + head) + b * embed, 1e-3);
  cfg.train.itm_hard_candidates = 0;
  batch.image_key = torch::tensor({0, 1, 1, 2}, torch::kInt64);  // row 2 shows row 1's image: one fewer
  EXPECT_NEAR(step_train_flops(cfg, dims, batch).hard_negatives, (b - 2) * (layers(t, r, 2) + head) + b * embed, 1e-3);
  batch.image_key = torch::Tensor();
  EXPECT_NE(f.shares().find("hard-negative scoring"), std::string::npos) << f.shares();
  batch.hard_negative_rows = torch::tensor({false, true, false, true});
  batch.text_mask[2][4] = false;  // caption 2 is one token shorter
  cfg.train.itm_swap = "caption";
  EXPECT_NEAR(step_train_flops(cfg, dims, batch).hard_negatives,
              2 * (2 * layers(t, r, 2) + layers(t - 1, r, 2) + (b - 1) * head) + b * embed, 1e-3);
  cfg.train.itm_swap = "image";
  EXPECT_NEAR(step_train_flops(cfg, dims, batch).hard_negatives, 2 * (b - 1) * (layers(t, r, 2) + head) + b * embed, 1e-3);
  cfg.train.itm_swap = "either";  // each row's side drawn at random: the mean of the two counts
  EXPECT_NEAR(step_train_flops(cfg, dims, batch).hard_negatives,
              2 * (2.5 * layers(t, r, 2) + 0.5 * layers(t - 1, r, 2) + (b - 1) * head) + b * embed, 1e-3);
  // both: a negative of each side - both counts - and the two rows each adds through the main pass
  // with gradient and without targets, at their mean over the partners (rows 1 and 3 each take
  // partners of full captions and caption 2's shorter one).
  cfg.train.itm_swap = "image";
  const double image_main = step_train_flops(cfg, dims, batch).main;
  cfg.train.itm_swap = "both";
  const StepFlops added = step_train_flops(cfg, dims, batch);
  EXPECT_NEAR(added.hard_negatives,
              2 * ((b - 1) * (layers(t, r, 2) + head) + 2 * layers(t, r, 2) + layers(t - 1, r, 2) + (b - 1) * head) + b * embed,
              1e-3);
  const double row = forward_flops(cfg.model, dims, t, r, 0), short_row = forward_flops(cfg.model, dims, t - 1, r, 0);
  EXPECT_NEAR(added.main - image_main, 3 * 2 * (5 * row + short_row) / 3, 1e-3 * added.main);
  // both keeps the marked rows matched: contrastive ITM reads them as captions, as if unmarked.
  Batch unmarked = batch;
  unmarked.hard_negative_rows = torch::Tensor();
  EXPECT_NEAR(added.contrastive, step_train_flops(cfg, dims, unmarked).contrastive, 1e-3);
  // Partners drawn uniformly (both with random negatives: Batch::negatives_by_score false): the
  // added rows still train, nothing is scored.
  batch.negatives_by_score = false;
  const StepFlops uniform = step_train_flops(cfg, dims, batch);
  EXPECT_EQ(uniform.hard_negatives, 0);
  EXPECT_NEAR(uniform.main, added.main, 1e-9 * added.main);
  batch.negatives_by_score = true;
  cfg.train.itm_swap = "image";
  batch.text_mask[2][4] = true;
  batch.hard_negative_rows = torch::tensor({false, true, false, false});

  // Nothing crosses modalities: one pass per caption and per pool image, both for scoring.
  cfg.model.attention = "single_modality";
  f = step_train_flops(cfg, dims, batch);
  EXPECT_NEAR(f.contrastive,
              3 * (2 * layers(t, r, 2) + k * layers(1, r, 2) + (2 + k) * embed + 2.0 * 2 * (2 + k) * cfg.model.hidden), 1e-3);
  EXPECT_NEAR(f.hard_negatives, b * layers(t, r, 2) + b * embed + 2.0 * b * b * cfg.model.hidden, 1e-3);

  // A single_modality layer under a merged one: scoring and contrastive ITM run it once per
  // caption and per image, only the merged layer per pair.
  cfg.model.layers = {"single_modality", "merged"};
  f = step_train_flops(cfg, dims, batch);
  const double upper = layers_forward_flops(cfg.model, t, r, 1, 2) + head;
  EXPECT_NEAR(f.hard_negatives, b * layers(t, r, 1) + (b - 1) * upper + b * embed, 1e-3);
  cfg.train.itm_contrastive_weight = 1;
  EXPECT_NEAR(step_train_flops(cfg, dims, batch).contrastive,
              3 * (2 * layers(t, r, 1) + k * layers(0, r, 1) + 2 * (k + 1) * upper + (2 + k) * embed), 1e-3);
  cfg.train.itm_contrastive_weight = 0;

  // The align head below a merged layer, read from unmasked inputs: a batch that masks captions
  // reruns the text tower of its matched rows with gradient; it scores hard negatives with the
  // towers alone.
  cfg.train.itm_contrastive_weight = 0;
  cfg.model.layers = {"single_modality", "merged"}, cfg.model.align = true, cfg.train.align_weight = 1;
  batch.mlm_labels = torch::full({b, t}, kIgnoreLabel, torch::kInt64);
  f = step_train_flops(cfg, dims, batch);
  EXPECT_EQ(f.align_towers, 0);  // nothing masked: the pass's states are the unmasked ones
  batch.mlm_labels[0][2] = 7;
  f = step_train_flops(cfg, dims, batch);
  EXPECT_NEAR(f.align_towers, 3 * 2 * layers(t, 0, 1), 1e-3);  // matched rows 0 and 3
  EXPECT_NEAR(f.hard_negatives, b * layers(t, r, 1) + b * embed, 1e-3);
  EXPECT_EQ(f.contrastive, 0);
  batch.mrm_mask = torch::zeros({b, r}, torch::kBool);
  batch.mrm_mask[3][1] = true;
  f = step_train_flops(cfg, dims, batch);
  EXPECT_NEAR(f.align_towers, 3 * 2 * (layers(t, 0, 1) + layers(0, r, 1) + embed), 1e-3);
  cfg.train.align_inputs = "masked";  // the align loss reads the main pass's states
  EXPECT_EQ(step_train_flops(cfg, dims, batch).align_towers, 0);
  cfg.train.align_queue = 64;  // the momentum model embeds the matched rows, forward only
  EXPECT_NEAR(step_train_flops(cfg, dims, batch).align_towers, 2 * (layers(t, r, 1) + embed), 1e-3);
  EXPECT_EQ(step_train_flops(cfg, dims, batch).momentum_mlm, 0);
  cfg.train.mlm_distill = 0.4;  // the momentum model's whole forward pass, MLM head included, no ITM head
  f = step_train_flops(cfg, dims, batch);
  EXPECT_NEAR(f.momentum_mlm, batch_train_flops(cfg.model, dims, batch) / 3 - b * head, 1e-3);
  EXPECT_GT(f.momentum_mlm, 0);
}

// The ResNet-50's convolutions: torchvision's 4.09 G multiply-adds at 224 px (its fc's 2 M left
// out here), and the step counts them once per image each pass embeds - with the backward pass
// only where the backbone trains.
TEST(ModelShape, StepFlopsCountTheResNetOncePerImageAndPass) {
  EXPECT_NEAR(resnet50_forward_flops(224) / 2, 4.09e9 - 2.05e6, 0.01e9);
  EXPECT_NEAR(resnet50_forward_flops(448) / resnet50_forward_flops(224), 4.0, 0.01);  // by the pixels

  ExperimentConfig cfg;
  cfg.model = testing::small_model_options("merged", 2);
  cfg.model.image_input = "resnet50";
  const InputDims dims{testing::kVocab, 2048};
  const int64_t b = 3, side = 64;
  Batch batch = testing::random_batch(b, 5, 1);
  batch.region_feats = batch.region_boxes = batch.region_mask = torch::Tensor();
  batch.image_pixels = torch::zeros({b, 3, side, side});
  batch.itm_labels = torch::tensor({1, 0, 1}, torch::kInt64);
  const double backbone = resnet50_forward_flops(side);
  EXPECT_NEAR(step_train_flops(cfg, dims, batch).main, batch_train_flops(cfg.model, dims, batch) + b * backbone, 1e-3);
  cfg.model.resnet_frozen = false;
  EXPECT_NEAR(step_train_flops(cfg, dims, batch).main, batch_train_flops(cfg.model, dims, batch) + 3 * b * backbone, 1e-3);
  cfg.model.resnet_frozen = true;
  batch.hard_negative_rows = torch::tensor({false, true, false});  // scoring embeds every image once, forward
  cfg.model.layers = {"single_modality", "merged"};
  const StepFlops f = step_train_flops(cfg, dims, batch);
  EXPECT_GE(f.hard_negatives, b * backbone);
  EXPECT_LT(f.hard_negatives, b * backbone * 1.01);  // the small transformer's part is < 1%
  EXPECT_NEAR(backbone_forward_flops(cfg.model, 5), backbone, 1e-3);  // 1 + 2 x 2 tokens: a 64 px image
  // ... unless the image's side is known: a 40 px image also gives a 2 x 2 map. `mmt model summary`
  // knows it from the config.
  const double small = resnet50_forward_flops(40);
  EXPECT_NEAR(backbone_forward_flops(cfg.model, 5, 40), small, 1e-3);
  EXPECT_LT(small, 0.6 * backbone);  // 0.39 of the pixels; the padded maps round up
  cfg.data.synth.image_size = 40;
  ASSERT_EQ(max_image_positions(cfg), 5);
  char ours[64];
  std::snprintf(ours, sizeof ours, "the ResNet-50's %.3g", small);
  const std::string summary = model_summary(cfg, dims, 10, 5);
  EXPECT_NE(summary.find(ours), std::string::npos) << summary;
  cfg.model.image_input = "patches";
  EXPECT_EQ(backbone_forward_flops(cfg.model, 5), 0);
}

TEST(ModelShape, LayerParameterCountsMatchClosedForms) {
  for (auto [heads, dim] : std::vector<std::pair<int64_t, int64_t>>{{1, 48}, {3, 16}, {6, 8}, {4, 32}}) {
    auto m = testing::small_model_options("merged", 1);
    m.num_heads = heads, m.head_dim = dim;  // inner width heads * dim != hidden in general
    const int64_t h = m.hidden, inner = heads * dim, f = m.ffn_dim;
    const int64_t stream = 3 * (h * inner + inner) + inner * h + h + 2 * h * f + f + h + 4 * h;
    EXPECT_EQ(stream_parameter_count(m), stream);
    for (const auto& name : attention_type_names()) {
      LayerOptions lo;
      lo.hidden = h, lo.num_heads = heads, lo.head_dim = dim, lo.ffn_dim = f;
      lo.type = attention_type_from_name(name);
      MultimodalLayer layer(lo);
      EXPECT_EQ(count(*layer), (name == "single_stream" ? 1 : 2) * stream) << name << " " << heads << "x" << dim;
    }
  }
}

TEST(ModelShape, WholeModelCountIsEmbeddingsLayersAndHeads) {
  auto m = testing::small_model_options("merged", 3);
  m.layers = {"single_modality*2", "single_stream"};
  MultimodalTransformer model(m, InputDims{testing::kVocab, testing::kFeat});
  const int64_t h = m.hidden, v = testing::kVocab;
  const int64_t text = v * h + m.max_text_len * h + 2 * h + 2 * h;
  const int64_t image = testing::kFeat * h + h + 5 * h + h + 3 * 2 * h + h;
  const int64_t heads = 2 * (h * h + h) + (h * 2 + 2) + (h * h + h) + 2 * h + v;
  EXPECT_EQ(count(*model), text + image + 5 * stream_parameter_count(m) + heads);
  EXPECT_EQ(model->layers->size(), 3u);
}

TEST(ModelShape, LayerListRepeatSyntax) {
  auto m = testing::small_model_options("merged");
  m.layers = {"single_modality*5", "merged"};
  const auto t = layer_types(m);
  ASSERT_EQ(t.size(), 6u);
  EXPECT_EQ(t[4], AttentionType::kSingleModality);
  EXPECT_EQ(t[5], AttentionType::kMerged);
  m.layers = {"merged*0"};
  EXPECT_THROW(layer_types(m), std::exception);
}

TEST(ModelShape, SummaryListsBlocksAndTotal) {
  ExperimentConfig cfg;
  cfg.model = testing::small_model_options("merged", 2);
  const auto text = model_summary(cfg, InputDims{testing::kVocab, testing::kFeat}, 20, 101);
  EXPECT_NE(text.find("| layers.1 | merged |"), std::string::npos) << text;
  EXPECT_NE(text.find("**total**"), std::string::npos) << text;
  EXPECT_NE(text.find("FLOPs per example of 20 text + 101 image tokens"), std::string::npos) << text;

  // The training step's line: ITM alone is 3 forward passes per example; contrastive ITM adds its
  // pairs and says their share.
  const InputDims dims{testing::kVocab, testing::kFeat};
  cfg.train.batch_size = 8, cfg.train.mlm_weight = 0;
  auto number_after = [](const std::string& line, const std::string& key) {
    const auto at = line.find(key);
    return at == std::string::npos ? -1.0 : std::stod(line.substr(at + key.size()));
  };
  std::string line = training_step_flops(cfg, dims, 20, 101);
  const auto summary = model_summary(cfg, dims, 20, 101);
  EXPECT_NE(summary.find(line), std::string::npos) << summary;
  EXPECT_NEAR(number_after(line, "losses: "), 8 * 3 * forward_flops(cfg.model, dims, 20, 101, 0),
              1e-2 * 8 * 3 * forward_flops(cfg.model, dims, 20, 101, 0)) << line;  // printed to 3 digits
  EXPECT_EQ(line.find("main pass"), std::string::npos) << line;
  cfg.train.itm_contrastive_weight = 1, cfg.train.itm_contrastive_negatives = 32;
  line = training_step_flops(cfg, dims, 20, 101);
  EXPECT_NE(line.find("contrastive ITM "), std::string::npos) << line;
  EXPECT_GT(number_after(line, "losses: "), 8 * 3 * 16 * forward_flops(cfg.model, dims, 20, 101, 0)) << line;  // 4 captions x 33 pairs
  // Hard negatives on a merged stack at batch 64: scoring every partner dominates the step, and the
  // line points to train.itm_hard_candidates; with K = 4 the scoring is smaller and no hint.
  cfg.train.itm_contrastive_weight = 0, cfg.train.batch_size = 64, cfg.train.itm_negatives = "hard";
  line = training_step_flops(cfg, dims, 20, 101);
  EXPECT_NE(line.find("hard-negative scoring dominates: train.itm_hard_candidates"), std::string::npos) << line;
  const double all = number_after(line, "losses: ");
  cfg.train.itm_hard_candidates = 4;
  line = training_step_flops(cfg, dims, 20, 101);
  EXPECT_EQ(line.find("dominates"), std::string::npos) << line;
  EXPECT_LT(number_after(line, "losses: "), all / 4) << line;
  // itm_swap = both with random negatives: half the rows add two rows each through the main pass -
  // twice ITM alone's rows, each costing what a row does (the heads aside) - and nothing is scored.
  cfg.train.itm_hard_candidates = 0, cfg.train.itm_negatives = "random";
  const StepFlops plain = typical_step_flops(cfg, dims, 20, 101);
  cfg.train.itm_swap = "both";
  const StepFlops both = typical_step_flops(cfg, dims, 20, 101);
  EXPECT_EQ(both.hard_negatives, 0);
  EXPECT_NEAR(both.main / plain.main, 2.0, 0.02);
  cfg.train.itm_swap = "image";
}

}  // namespace
}  // namespace mmt

namespace mmt {
namespace {

TEST(ModelShape, PerLayerPooledOutputs) {
  torch::NoGradGuard ng;
  for (bool pre_norm : {false, true}) {
    auto m = testing::small_model_options("single_modality", 3);
    m.pre_norm = pre_norm;
    MultimodalTransformer model(m, InputDims{testing::kVocab, testing::kFeat});
    model->eval();
    const Batch b = testing::random_batch(2, 6, 4);
    const auto e = model->encode(b, /*per_layer=*/true);
    ASSERT_EQ(e.layer_cls.size(), 3u);
    ASSERT_EQ(e.layer_img.size(), 3u);
    EXPECT_EQ(e.layer_cls[0].sizes(), (std::vector<int64_t>{2, m.hidden}));
    EXPECT_TRUE(torch::allclose(e.layer_cls.back(), e.text.select(1, 0)));  // the top one is the output
    EXPECT_TRUE(torch::allclose(e.layer_img.back(), e.image.select(1, 0)));
    EXPECT_FALSE(torch::allclose(e.layer_cls[0], e.layer_cls[1]));
    EXPECT_EQ(model->itm_logits(e.layer_cls[0], e.layer_img[0]).sizes(), (std::vector<int64_t>{2, 2}));
    EXPECT_TRUE(model->encode(b).layer_cls.empty());  // only when asked for
  }
}

}  // namespace
}  // namespace mmt
