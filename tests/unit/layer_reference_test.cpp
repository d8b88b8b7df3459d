/* The split computation of every attention setting equals a masked full attention over the
 * joint [text ; image] sequence written plainly here; and a float64 finite-difference check
 * of the gradients of a tiny model. */
#include <gtest/gtest.h>

#include "mmt/model/attention.h"
#include "test_util.h"

namespace mmt {
namespace {

using torch::Tensor;

// Masked full attention over the joint sequence, token by token modality, with the layer's own
// weights: queries use their modality's projections, keys and values theirs.
std::pair<Tensor, Tensor> joint_reference(MultimodalLayerImpl& layer, const Tensor& text, const Tensor& image,
                                          const Tensor& text_mask, const Tensor& image_mask) {
  const auto& o = layer.options();
  const auto p = layer.pattern();
  StreamWeightsImpl* tw = nullptr;
  StreamWeightsImpl* iw = nullptr;
  for (const auto& c : layer.named_children()) {
    if (c.key() == "text" || c.key() == "shared") tw = c.value()->as<StreamWeightsImpl>();
    if (c.key() == "image" || c.key() == "shared") iw = c.value()->as<StreamWeightsImpl>();
  }
  const int64_t b = text.size(0), t = text.size(1), r = image.size(1), h = o.num_heads, d = o.head_dim;
  auto heads = [&](const Tensor& x) { return x.view({b, x.size(1), h, d}).transpose(1, 2); };
  const auto q = heads(torch::cat({tw->query(text), iw->query(image)}, 1));
  const auto k = heads(torch::cat({tw->key(text), iw->key(image)}, 1));
  const auto v = heads(torch::cat({tw->value(text), iw->value(image)}, 1));
  // allowed[query, key]: the 2x2 pattern expanded to tokens, AND the key padding mask.
  auto is_text = torch::cat({torch::ones({t}, torch::kBool), torch::zeros({r}, torch::kBool)});
  auto qt = is_text.view({-1, 1}), kt = is_text.view({1, -1});
  auto allowed = (qt & kt & p.text_to_text) | (qt & ~kt & p.text_to_image) | (~qt & kt & p.image_to_text) |
                 (~qt & ~kt & p.image_to_image);
  auto keep = allowed.view({1, 1, t + r, t + r}) & torch::cat({text_mask, image_mask}, 1).view({b, 1, 1, t + r});
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(d));
  scores = scores.masked_fill(~keep, -1e9);
  auto ctx = torch::matmul(torch::softmax(scores, -1), v).transpose(1, 2).reshape({b, t + r, h * d});
  auto ct = ctx.narrow(1, 0, t), ci = ctx.narrow(1, t, r);
  auto post = [&](StreamWeightsImpl* w, const Tensor& x, const Tensor& c) {
    auto y = w->attn_norm(x + w->out(c));
    return w->ffn_norm(y + w->ffn_out(torch::gelu(w->ffn_in(y))));
  };
  return {post(tw, text, ct), post(iw, image, ci)};
}

class SplitVsJoint : public ::testing::TestWithParam<std::string> {};

TEST_P(SplitVsJoint, SplitComputationEqualsMaskedFullAttention) {
  torch::NoGradGuard ng;
  torch::manual_seed(11);
  LayerOptions lo;
  lo.hidden = 24, lo.num_heads = 3, lo.head_dim = 8, lo.ffn_dim = 40;
  lo.type = attention_type_from_name(GetParam());
  MultimodalLayer layer(lo);
  for (auto& prm : layer->parameters()) prm.normal_(0, 0.3);
  const int64_t b = 3, t = 7, r = 5;
  auto text = torch::randn({b, t, 24}), image = torch::randn({b, r, 24});
  auto text_mask = torch::ones({b, t}, torch::kBool), image_mask = torch::ones({b, r}, torch::kBool);
  text_mask[1].narrow(0, 4, 3).fill_(false);  // padding in both modalities
  image_mask[2].narrow(0, 2, 3).fill_(false);
  auto [st, si] = layer->forward(text, image, attention_bias(text_mask), attention_bias(image_mask));
  auto [rt, ri] = joint_reference(*layer, text, image, text_mask, image_mask);
  // Compare real positions (padded queries are never read).
  auto tm = text_mask.unsqueeze(-1).expand_as(st), im = image_mask.unsqueeze(-1).expand_as(si);
  EXPECT_LT((st - rt).masked_select(tm).abs().max().item<double>(), 1e-5) << GetParam();
  EXPECT_LT((si - ri).masked_select(im).abs().max().item<double>(), 1e-5) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(AllSix, SplitVsJoint, ::testing::ValuesIn(attention_type_names()));

// Central differences in float64 against autograd, for parameters of every kind and for the
// region features, through MLM and ITM heads, on a 2-layer mixed stack.
TEST(GradientCheck, FiniteDifferencesMatchAutogradInFloat64) {
  torch::manual_seed(5);
  auto m = testing::small_model_options("merged", 2);
  m.layers = {"coattention", "merged"};
  MultimodalTransformer model(m, InputDims{testing::kVocab, testing::kFeat});
  model->to(torch::kFloat64);
  Batch batch = testing::random_batch(2, 5, 3, 9);
  batch.region_feats = batch.region_feats.to(torch::kFloat64).requires_grad_();
  batch.region_boxes = batch.region_boxes.to(torch::kFloat64);
  batch.text_mask[1][4] = false;
  const auto w_itm = torch::randn({2, 2}, torch::kFloat64), w_mlm = torch::randn({2, testing::kVocab}, torch::kFloat64);
  auto loss_fn = [&] {
    const auto e = model->encode(batch);
    return (model->itm_logits(e) * w_itm).sum() + (model->mlm_logits(e.text.select(1, 2)) * w_mlm).sum();
  };
  loss_fn().backward();
  std::vector<std::pair<std::string, Tensor>> targets;
  for (const auto& p : model->named_parameters())
    for (const char* name : {"layers.0.text.query.weight", "layers.1.image.ffn_in.bias", "layers.1.text.attn_norm.weight",
                             "image_embed.box.weight", "text_embed.word.weight", "itm_image_pool.weight"})
      if (p.key() == name) targets.emplace_back(p.key(), p.value());
  targets.emplace_back("region_feats", batch.region_feats);
  ASSERT_EQ(targets.size(), 7u);
  torch::NoGradGuard ng;
  for (auto& [name, x] : targets) {
    const auto grad = x.grad().clone();
    auto flat = x.view({-1});
    for (int64_t k = 0; k < 6; ++k) {
      const int64_t i = (k * 7919) % flat.numel();
      const double orig = flat[i].item<double>(), eps = 1e-6;
      flat[i] = orig + eps;
      const double up = loss_fn().item<double>();
      flat[i] = orig - eps;
      const double down = loss_fn().item<double>();
      flat[i] = orig;
      const double numeric = (up - down) / (2 * eps), analytic = grad.view({-1})[i].item<double>();
      EXPECT_NEAR(analytic, numeric, 1e-6 * std::max(1.0, std::abs(numeric))) << name << "[" << i << "]";
    }
  }
}

}  // namespace
}  // namespace mmt
