/* Information flow through the attention patterns: for each of the six settings, perturb
 * one modality (or one token) and check exactly which outputs move. And padding: extra
 * padded tokens or regions change no output at real positions. */
#include <gtest/gtest.h>

#include "mmt/model/attention.h"
#include "test_util.h"

namespace mmt {
namespace {

using testing::random_batch;
using testing::small_model_options;

double max_diff(const torch::Tensor& a, const torch::Tensor& b) { return (a - b).abs().max().item<double>(); }

struct Flow {
  bool text_moves_text, image_moves_text, text_moves_image, image_moves_image;
};

// One layer: which query->key blocks carry information.
Flow measure_one_layer(const std::string& attention) {
  torch::NoGradGuard ng;
  MultimodalTransformer model(small_model_options(attention, 1), InputDims{testing::kVocab, testing::kFeat});
  model->eval();
  const Batch base = random_batch(2, 6, 4);
  const Encoded e0 = model->encode(base);
  const double kMoved = 1e-4;

  Batch t = base;  // perturb text token 3 only
  t.text_ids = base.text_ids.clone();
  t.text_ids.select(1, 3).add_(1);
  const Encoded et = model->encode(t);
  Batch im = base;  // perturb image region 2 only
  im.region_feats = base.region_feats.clone();
  im.region_feats.select(1, 2).add_(1.0);
  const Encoded ei = model->encode(im);

  auto other_text = [](const torch::Tensor& x) { return torch::cat({x.narrow(1, 0, 3), x.narrow(1, 4, 2)}, 1); };
  auto other_image = [](const torch::Tensor& x) { return torch::cat({x.narrow(1, 0, 2), x.narrow(1, 3, 1)}, 1); };
  Flow f;
  f.text_moves_text = max_diff(other_text(et.text), other_text(e0.text)) > kMoved;
  f.text_moves_image = max_diff(et.image, e0.image) > kMoved;
  f.image_moves_text = max_diff(ei.text, e0.text) > kMoved;
  f.image_moves_image = max_diff(other_image(ei.image), other_image(e0.image)) > kMoved;
  // Exact independence must be exact, not approximate.
  if (!f.text_moves_image) EXPECT_EQ(max_diff(et.image, e0.image), 0.0) << attention;
  if (!f.image_moves_text) EXPECT_EQ(max_diff(ei.text, e0.text), 0.0) << attention;
  return f;
}

class AttentionFlow : public ::testing::TestWithParam<std::string> {};

TEST_P(AttentionFlow, EachQueryKeyBlockCarriesInformationExactlyAsThePatternSays) {
  const auto name = GetParam();
  const auto p = attention_pattern(attention_type_from_name(name));
  const Flow f = measure_one_layer(name);
  EXPECT_EQ(f.text_moves_text, p.text_to_text) << name;
  EXPECT_EQ(f.image_moves_text, p.text_to_image) << name;
  EXPECT_EQ(f.text_moves_image, p.image_to_text) << name;
  EXPECT_EQ(f.image_moves_image, p.image_to_image) << name;
}

TEST_P(AttentionFlow, PaddingChangesNoRealOutput) {
  torch::NoGradGuard ng;
  const auto name = GetParam();
  MultimodalTransformer model(small_model_options(name, 2), InputDims{testing::kVocab, testing::kFeat});
  model->eval();
  Batch base = random_batch(3, 5, 3, 7);
  const Encoded e0 = model->encode(base);
  const auto l0 = model->itm_logits(e0);

  Batch padded = base;  // 4 padded tokens and 3 padded regions holding garbage
  padded.text_ids = torch::cat({base.text_ids, torch::randint(5, testing::kVocab, {3, 4}, torch::kInt64)}, 1);
  padded.text_mask = torch::cat({base.text_mask, torch::zeros({3, 4}, torch::kBool)}, 1);
  padded.region_feats = torch::cat({base.region_feats, 100 * torch::randn({3, 3, testing::kFeat})}, 1);
  padded.region_boxes = torch::cat({base.region_boxes, torch::rand({3, 3, 5})}, 1);
  padded.region_mask = torch::cat({base.region_mask, torch::zeros({3, 3}, torch::kBool)}, 1);
  const Encoded e1 = model->encode(padded);
  EXPECT_LT(max_diff(e1.text.narrow(1, 0, 5), e0.text), 1e-5) << name;
  EXPECT_LT(max_diff(e1.image.narrow(1, 0, 3), e0.image), 1e-5) << name;
  EXPECT_LT(max_diff(model->itm_logits(e1), l0), 1e-5) << name;
}

INSTANTIATE_TEST_SUITE_P(AllSix, AttentionFlow, ::testing::ValuesIn(attention_type_names()));

// The pattern table itself, written out from PAPER.md's table (the tests above check that the
// layers compute what the table says; this checks the table says what the paper says).
TEST(AttentionFlow, PatternsAreThePapersTable) {
  struct Row {
    const char* name;
    bool tt, ti, it, ii, shared;
  };
  const Row paper[] = {{"single_modality", true, false, false, true, false},
                       {"merged", true, true, true, true, false},
                       {"coattention", false, true, true, false, false},
                       {"asymmetric_text_queries", true, true, false, true, false},
                       {"asymmetric_image_queries", true, false, true, true, false},
                       {"single_stream", true, true, true, true, true}};
  for (const auto& row : paper) {
    const auto p = attention_pattern(attention_type_from_name(row.name));
    EXPECT_EQ(p.text_to_text, row.tt) << row.name;
    EXPECT_EQ(p.text_to_image, row.ti) << row.name;
    EXPECT_EQ(p.image_to_text, row.it) << row.name;
    EXPECT_EQ(p.image_to_image, row.ii) << row.name;
    EXPECT_EQ(p.shared_weights, row.shared) << row.name;
  }
  EXPECT_EQ(attention_type_names().size(), 6u);
}

// The foundation issue's statement, over a deeper stack and every input of a modality.
TEST(AttentionFlow, SingleModalityStacksKeepModalitiesApartMergedMixesThem) {
  torch::NoGradGuard ng;
  for (const std::string name : {"single_modality", "merged"}) {
    MultimodalTransformer model(small_model_options(name, 3), InputDims{testing::kVocab, testing::kFeat});
    model->eval();
    const Batch base = random_batch(2, 6, 4, 3);
    const Encoded e0 = model->encode(base);
    Batch im = base;
    im.region_feats = torch::randn_like(base.region_feats);
    im.region_boxes = torch::rand_like(base.region_boxes);
    Batch tx = base;
    tx.text_ids = torch::randint(5, testing::kVocab, base.text_ids.sizes(), torch::kInt64);
    const Encoded ei = model->encode(im), et = model->encode(tx);
    if (name == "single_modality") {
      EXPECT_EQ(max_diff(ei.text, e0.text), 0.0);
      EXPECT_EQ(max_diff(et.image, e0.image), 0.0);
    } else {
      EXPECT_GT(max_diff(ei.text, e0.text), 1e-3);
      EXPECT_GT(max_diff(et.image, e0.image), 1e-3);
    }
  }
}

TEST(AttentionFlow, SharedWeightsOnlyForSingleStream) {
  for (const auto& name : attention_type_names()) {
    MultimodalTransformer model(small_model_options(name, 1), InputDims{testing::kVocab, testing::kFeat});
    bool has_shared = false, has_text = false;
    for (const auto& p : model->named_parameters()) {
      has_shared |= p.key().rfind("layers.0.shared.", 0) == 0;
      has_text |= p.key().rfind("layers.0.text.", 0) == 0;
    }
    EXPECT_EQ(has_shared, name == "single_stream") << name;
    EXPECT_EQ(has_text, name != "single_stream") << name;
  }
}

TEST(AttentionFlow, MixedStacksFollowTheLayerList) {
  auto m = small_model_options("merged");
  m.layers = {"single_modality", "single_modality", "merged"};
  const auto types = layer_types(m);
  ASSERT_EQ(types.size(), 3u);
  EXPECT_EQ(types[0], AttentionType::kSingleModality);
  EXPECT_EQ(types[2], AttentionType::kMerged);
  MultimodalTransformer model(m, InputDims{testing::kVocab, testing::kFeat});
  EXPECT_EQ(model->layers->size(), 3u);
}

}  // namespace
}  // namespace mmt
