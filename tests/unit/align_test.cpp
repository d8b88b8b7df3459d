/* The align head (model.align, train.align_weight; ALBEF's align-before-fuse): its config is
 * refused where there is nothing below or above to align, its states see one modality only, its
 * loss is InfoNCE of its own projections and trains nothing above the unimodal layers, hard
 * negatives are sampled by its similarities, both read the inputs before MLM / MRM masking (or the
 * masked pass, by choice), and training it makes the unimodal states retrieve. */
#include <gtest/gtest.h>

#include "mmt/config/config.h"
#include "mmt/data/batch.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/loss/pretraining.h"
#include "mmt/train/hard_negatives.h"
#include "mmt/train/finetune.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/util/fs.h"
#include "mmt/util/error.h"
#include "test_util.h"
#include "train_util.h"

namespace mmt {
namespace {

std::string config_error(const std::vector<std::string>& overrides) {
  try {
    load_config("", overrides);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Align, ConfigNeedsUnimodalLayersBelowAFusionLayer) {
  const std::string mixed = "model.layers=[\"single_modality*2\",\"merged\"]";
  EXPECT_NO_THROW(load_config("", {mixed, "model.align=true", "train.align_weight=1"}));
  // merged from layer 0: [CLS] there is one embedding for every caption
  EXPECT_NE(config_error({"model.align=true"}).find("single_modality layers below"), std::string::npos);
  // nothing crosses: nothing to align before (the dual encoder's loss is the one for that)
  EXPECT_NE(config_error({"model.attention=single_modality", "model.align=true"}).find("nothing to align before"),
            std::string::npos);
  EXPECT_NE(config_error({"model.kind=dual_encoder", "model.attention=single_modality", "model.align=true"})
                .find("dual encoder"),
            std::string::npos);
  EXPECT_NE(config_error({mixed, "train.align_weight=1"}).find("needs model.align=true"), std::string::npos);
  // the align loss alone is something to train
  EXPECT_NO_THROW(load_config("", {mixed, "model.align=true", "train.align_weight=1", "train.mlm_weight=0",
                                   "train.itm_weight=0"}));
}

ModelOptions aligned_options(bool pre_norm = false) {
  auto m = testing::small_model_options("merged");
  m.layers = {"single_modality*2", "merged"};
  m.align = true, m.embed_dim = 12, m.pre_norm = pre_norm;
  return m;
}

// The head reads the states below the fusion layer: a caption's align state is the same whatever
// image it is paired with, and an image's whatever caption - while the final states do change.
TEST(Align, StatesSeeOneModalityOnly) {
  for (bool pre_norm : {false, true}) {
    torch::manual_seed(4);
    MultimodalTransformer model(aligned_options(pre_norm), InputDims{testing::kVocab, testing::kFeat});
    model->eval();
    ASSERT_FALSE(model->dual_dot());  // the score stays the ITM head's
    const Batch a = testing::random_batch(4, 6, 3, 1);
    Batch other_images = a, other_text = a;
    other_images.region_feats = testing::random_batch(4, 6, 3, 2).region_feats;
    other_text.text_ids = testing::random_batch(4, 6, 3, 3).text_ids;
    const Encoded ea = model->encode(a), ei = model->encode(other_images), et = model->encode(other_text);
    ASSERT_TRUE(ea.align_cls.defined() && ea.align_img.defined());
    EXPECT_TRUE(torch::allclose(ea.align_cls, ei.align_cls, 0, 0)) << "pre_norm " << pre_norm;
    EXPECT_TRUE(torch::allclose(ea.align_img, et.align_img, 0, 0)) << "pre_norm " << pre_norm;
    EXPECT_GT((ea.text - ei.text).abs().max().item<double>(), 1e-4);  // the merged layer mixes
    EXPECT_GT((ea.align_img - ei.align_img).abs().max().item<double>(), 1e-4);
    // The head's similarities come from those states alone: scaled cosines.
    const auto e = model->align_embeddings(ea.align_cls, ea.align_img);
    EXPECT_NEAR(e.text.norm(2, 1).mean().item<double>(), 1.0, 1e-5);
    EXPECT_NEAR(e.scale.item<double>(), 1 / 0.07, 1e-3);
  }
}

// align = symmetric InfoNCE over the matched rows of the head's projections; its gradient reaches
// the unimodal layers, the projections and the temperature, and nothing above the unimodal layers.
TEST(Align, LossIsInfoNceOfTheHeadAndStaysBelowTheFusion) {
  torch::manual_seed(5);
  MultimodalTransformer model(aligned_options(), InputDims{testing::kVocab, testing::kFeat});
  model->train();
  Batch b = testing::random_batch(6, 5, 3, 7);
  b.itm_labels = torch::tensor(std::vector<int64_t>{1, 0, 1, 1, 0, 1});
  TrainOptions t;
  t.mlm_weight = 0, t.itm_weight = 0, t.align_weight = 2;
  const LossOutput out = pretraining_loss(*model, b, t);
  ASSERT_TRUE(out.metrics.count("align") && out.metrics.count("align_acc"));
  const auto rows = torch::tensor(std::vector<int64_t>{0, 2, 3, 5});
  const Encoded enc = model->encode(b);
  const auto e = model->align_embeddings(enc.align_cls.index_select(0, rows), enc.align_img.index_select(0, rows));
  const double expected = loss_dual_contrastive(e.text, e.image, e.scale).first.item<double>();
  EXPECT_NEAR(out.metrics.at("align"), expected, 1e-5);
  EXPECT_NEAR(out.total.item<double>(), 2 * expected, 1e-5);
  out.total.backward();
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    const double g = p.value().grad().defined() ? p.value().grad().abs().sum().item<double>() : 0.0;
    if (name.rfind("layers.2.", 0) == 0) EXPECT_EQ(g, 0.0) << name << " is above the unimodal layers";
    if (name == "text_proj.weight" || name == "image_proj.weight" || name == "logit_scale" ||
        name == "layers.0.text.query.weight" || name == "layers.1.image.value.weight")
      EXPECT_GT(g, 0.0) << name;
  }
}

// ALBEF samples hard ITM negatives by its contrastive similarities: so does a model with the head,
// from its unimodal layers only (one pass per caption and per image, not B x B pair passes).
TEST(Align, HardNegativesAreSampledByTheHeadsSimilarities) {
  torch::manual_seed(6);
  MultimodalTransformer model(aligned_options(), InputDims{testing::kVocab, testing::kFeat});
  model->eval();
  const Batch b = testing::random_batch(5, 6, 4, 9);
  const auto scores = batch_score_matrix(*model, b);
  const Encoded enc = model->encode(b);
  const auto e = model->align_embeddings(enc.align_cls, enc.align_img);
  const auto expected = e.scale * torch::matmul(e.text, e.image.t());
  ASSERT_EQ(scores.sizes(), expected.sizes());
  EXPECT_TRUE(torch::allclose(scores, expected, 1e-5, 1e-5));
}

// A batch as the batcher leaves it after MLM and MRM (rows 0, 2, 3, 4 matched, row 1 not): matched
// rows carry MLM targets at their masked tokens and MRM targets at their zeroed regions; the
// mismatched row is masked too but has no targets. `clean`: the same batch before masking.
struct MaskedBatch {
  Batch masked, clean;
};
MaskedBatch masked_batch(bool with_mismatch) {
  MaskedBatch m;
  Batch& b = m.masked;
  b = testing::random_batch(5, 7, 4, 11);
  m.clean = b;
  m.clean.text_ids = b.text_ids.clone(), m.clean.region_feats = b.region_feats.clone();
  b.itm_labels = torch::tensor(std::vector<int64_t>{1, with_mismatch ? 0 : 1, 1, 1, 1});
  b.mlm_labels = torch::full_like(b.text_ids, kIgnoreLabel);
  b.region_targets = b.region_feats.clone();
  b.mrm_mask = torch::zeros({5, 4}, torch::kBool);
  b.region_classes = torch::softmax(torch::randn({5, 4, 3}), 2);  // read beside every MRM loss
  b.text_ids = b.text_ids.clone(), b.region_feats = b.region_feats.clone();
  for (int64_t row = 0; row < 5; ++row) {
    const bool targets = b.itm_labels[row].item<int64_t>() == 1;
    for (const int64_t pos : {int64_t{2}, 4 + row % 2}) {
      if (targets) b.mlm_labels[row][pos] = b.text_ids[row][pos].item<int64_t>();
      b.text_ids[row][pos] = 4;  // [MASK]
    }
    b.region_feats[row][2].zero_();
    if (targets) b.mrm_mask[row][2] = true;
  }
  return m;
}

// ALBEF computes its contrastive loss on the unmasked captions: with align_inputs = unmasked the
// align loss equals the head's InfoNCE on the batch before masking, while MLM still reads the
// masked one; with `masked` it reads the masked pass's states - and the two differ.
TEST(Align, LossReadsTheInputsBeforeMasking) {
  torch::manual_seed(12);
  // A sharp softmax (temperature 0.01, the clamp's end): at initialisation the captions' and
  // images' embeddings are alike, and at 0.07 the masks moved the loss by only ~1e-6.
  auto options = aligned_options();
  options.temperature_init = 0.01;
  MultimodalTransformer model(options, InputDims{testing::kVocab, testing::kFeat, 3});  // with MRM heads
  model->train();  // the small model has no dropout: passes repeat exactly
  const MaskedBatch m = masked_batch(/*with_mismatch=*/true);
  // The captions restored: exactly at the rows with targets; the mismatched row keeps its masks.
  const auto restored = unmasked_text_ids(m.masked);
  for (int64_t row : {0, 2, 3, 4}) EXPECT_TRUE(restored[row].equal(m.clean.text_ids[row])) << row;
  EXPECT_TRUE(restored[1].equal(m.masked.text_ids[1]));
  EXPECT_TRUE(unmasked_region_feats(m.masked).equal(m.clean.region_feats));

  const auto rows = torch::tensor(std::vector<int64_t>{0, 2, 3, 4});
  auto head_loss = [&](const Batch& b) {
    const Encoded enc = model->encode(b);
    const auto e = model->align_embeddings(enc.align_cls.index_select(0, rows), enc.align_img.index_select(0, rows));
    return loss_dual_contrastive(e.text, e.image, e.scale).first.item<double>();
  };
  TrainOptions t;
  t.itm_weight = 0, t.align_weight = 1, t.mrm_regression_weight = 1;
  t.align_inputs = "unmasked";
  const LossOutput unmasked = pretraining_loss(*model, m.masked, t);
  t.align_inputs = "masked";
  const LossOutput masked = pretraining_loss(*model, m.masked, t);
  const double clean = head_loss(m.clean), as_masked = head_loss(m.masked);
  EXPECT_NEAR(unmasked.metrics.at("align"), clean, 1e-5);
  EXPECT_NEAR(masked.metrics.at("align"), as_masked, 1e-5);
  EXPECT_GT(std::abs(clean - as_masked), 1e-4);  // 10x the tolerance: the masks matter, so the checks can fail
  EXPECT_NEAR(unmasked.metrics.at("mlm"), masked.metrics.at("mlm"), 1e-6);
  EXPECT_NEAR(unmasked.metrics.at("mrm_regression"), masked.metrics.at("mrm_regression"), 1e-6);
  // Only the text was masked: the image tower's states are the pass's own.
  Batch text_only = m.masked;
  text_only.region_feats = m.clean.region_feats, text_only.region_targets = torch::Tensor(), text_only.mrm_mask = torch::Tensor();
  t.align_inputs = "unmasked", t.mrm_regression_weight = 0;
  EXPECT_NEAR(pretraining_loss(*model, text_only, t).metrics.at("align"), clean, 1e-5);
}

// Hard negatives sampled by the head read what its loss reads: the batch before masking.
TEST(Align, HardNegativeScoresReadTheInputsBeforeMasking) {
  torch::manual_seed(13);
  MultimodalTransformer model(aligned_options(), InputDims{testing::kVocab, testing::kFeat});
  model->eval();
  const MaskedBatch m = masked_batch(/*with_mismatch=*/false);  // before the swaps every row is matched
  auto head_scores = [&](const Batch& b) {
    const Encoded enc = model->encode(b);
    const auto e = model->align_embeddings(enc.align_cls, enc.align_img);
    return e.scale * torch::matmul(e.text, e.image.t());
  };
  EXPECT_TRUE(torch::allclose(batch_score_matrix(*model, m.masked, true), head_scores(m.clean), 1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(batch_score_matrix(*model, m.masked, false), head_scores(m.masked), 1e-5, 1e-5));
  EXPECT_GT((head_scores(m.clean) - head_scores(m.masked)).abs().max().item<double>(), 1e-3);
}

// Training with the align loss next to ITM and MLM (warm-up, as the trainer's schedule has) makes
// the unimodal states retrieve: the align accuracy (each caption's own image first among the
// batch's, and back) ends far above its chance, 1 / matched pairs.
TEST(Align, TrainingAlignsTheUnimodalStates) {
  ExperimentConfig cfg;
  cfg.model = aligned_options();
  cfg.model.embed_dim = 32;
  cfg.train.align_weight = 1;
  testing::SmallTraining t(cfg);
  const auto [acc, chance] = testing::align_accuracy_and_chance(t, 300, 30, 50);
  EXPECT_GT(acc, 3 * chance) << "align accuracy " << acc << ", chance " << chance;
}

// mmt finetune of a model with the head is ALBEF's retrieval fine-tuning: ITM with hard negatives
// and the align loss; of one without, ITM alone.
TEST(Align, FineTuningKeepsTheAlignLossNextToItm) {
  for (bool align : {true, false}) {
    const std::string run = ::testing::TempDir() + "align_finetune_" + std::to_string(align);
    make_dirs(run);
    std::vector<std::string> o = {"model.layers=[\"single_modality\",\"merged\"]", "data.synth.num_train_images=100"};
    if (align) o.push_back("model.align=true"), o.push_back("train.align_weight=0.5");
    write_file_atomic(run + "/config.json", config_to_json(load_config("", o)).dump());
    write_file_atomic(run + "/model.safetensors", "");  // finetune_config only checks that the run finished
    const ExperimentConfig cfg = finetune_config(run, FinetuneData{"data.json", "", "", {"train"}}, {});
    EXPECT_EQ(cfg.train.itm_weight, 1.0);
    EXPECT_EQ(cfg.train.itm_negatives, "hard");
    EXPECT_EQ(cfg.train.mlm_weight, 0.0);
    EXPECT_EQ(cfg.train.align_weight, align ? 0.5 : 0.0) << "align " << align;
  }
}

}  // namespace
}  // namespace mmt
