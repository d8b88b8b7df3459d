/* The fused kernels a GPU layer uses (q, k and v as one matrix product; one attention call over
 * both streams' queries when both read every key) compute what the separate ones compute: the
 * CPU runs them here, forward and backward, for every attention type. */
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>

#include <set>
#include <string>
#include <vector>

#include "mmt/model/layer.h"
#include "mmt/model/transformer.h"
#include "mmt/util/device.h"
#include "mmt/util/error.h"
#include "test_util.h"

namespace mmt {
namespace {

TEST(FusedLayer, EqualsTheSeparateProductsForwardAndBackward) {
  for (const auto& name : attention_type_names()) {
    LayerOptions o;
    o.hidden = 16, o.num_heads = 2, o.head_dim = 8, o.ffn_dim = 32, o.type = attention_type_from_name(name);
    torch::Tensor outputs[2];
    std::vector<torch::Tensor> grads[2];
    for (int fused : {0, 1}) {
      o.fused = fused;
      torch::manual_seed(7);
      MultimodalLayer layer(o);
      auto text = torch::randn({3, 5, 16}).requires_grad_(true), image = torch::randn({3, 4, 16}).requires_grad_(true);
      auto text_mask = torch::ones({3, 5}, torch::kBool);
      text_mask[0][4] = false, text_mask[2][3] = false, text_mask[2][4] = false;  // padded captions
      const auto [t, i] = layer->forward(text, image, attention_bias(text_mask), attention_bias(torch::ones({3, 4}, torch::kBool)));
      outputs[fused] = torch::cat({t.reshape({-1}), i.reshape({-1})});
      (t.pow(2).sum() + i.sin().sum()).backward();
      grads[fused] = {text.grad(), image.grad()};
      for (const auto& p : layer->parameters()) grads[fused].push_back(p.grad());
    }
    EXPECT_TRUE(torch::allclose(outputs[0], outputs[1], 1e-5, 1e-6)) << name;
    ASSERT_EQ(grads[0].size(), grads[1].size());
    for (size_t k = 0; k < grads[0].size(); ++k) {
      ASSERT_EQ(grads[0][k].defined(), grads[1][k].defined()) << name << " " << k;
      if (grads[0][k].defined()) EXPECT_TRUE(torch::allclose(grads[0][k], grads[1][k], 1e-4, 1e-5)) << name << " " << k;
    }
  }
}

// The autograd operations behind a tensor: which path built it, whatever the numbers say (on some
// CPUs the fused and separate products agree bit for bit, on others not).
std::set<std::string> graph_ops(const torch::Tensor& t) {
  std::set<std::string> names;
  for (const auto& [name, count] : testing::graph_op_counts(t)) names.insert(name);
  return names;
}

// Whether an autograd operation whose name contains `op` built the tensor.
bool built_by(const torch::Tensor& t, const std::string& op) {
  for (const auto& name : graph_ops(t))
    if (name.find(op) != std::string::npos) return true;
  return false;
}

// The fused path's marks: q, k and v unbound from one product, the joint attention split back
// into the streams, and the other products with their bias inside (addmm: ATen's linear) instead
// of nn::Linear's product and separate in-place bias add (which under bf16 autocast adds an fp32
// bias to a bf16 output).
bool built_fused(const torch::Tensor& t) {
  return built_by(t, "UnbindBackward") && built_by(t, "SplitWithSizesBackward") && built_by(t, "AddmmBackward");
}

// runtime.fused_layers decides for layers built with fused = -1 (every model's): auto is the
// separate products on the CPU.
TEST(FusedLayer, RuntimeSettingChoosesForDefaultLayers) {
  LayerOptions o;
  o.hidden = 16, o.num_heads = 2, o.head_dim = 8, o.ffn_dim = 32, o.type = AttentionType::kMerged;
  auto output = [&](int fused) {
    o.fused = fused;
    torch::manual_seed(7);
    MultimodalLayer layer(o);
    torch::manual_seed(8);
    const auto text = torch::randn({3, 5, 16}), image = torch::randn({3, 4, 16});
    const auto bias_t = attention_bias(torch::ones({3, 5}, torch::kBool)), bias_i = attention_bias(torch::ones({3, 4}, torch::kBool));
    return layer->forward(text, image, bias_t, bias_i).first;
  };
  const auto separate = output(0), fused = output(1);
  ASSERT_TRUE(built_fused(fused));
  ASSERT_FALSE(built_fused(separate));
  set_fused_layers("on");
  auto chosen = output(-1);
  EXPECT_TRUE(built_fused(chosen));
  EXPECT_TRUE(torch::equal(chosen, fused));
  set_fused_layers("off");
  chosen = output(-1);
  EXPECT_FALSE(built_fused(chosen));
  EXPECT_TRUE(torch::equal(chosen, separate));
  set_fused_layers("auto");
  chosen = output(-1);
  EXPECT_FALSE(built_fused(chosen));  // the CPU
  EXPECT_TRUE(torch::equal(chosen, separate));
  EXPECT_FALSE(fused_layers_on(torch::kCPU));
  EXPECT_TRUE(fused_layers_on(torch::Device(torch::kCUDA, 0)));
  EXPECT_THROW(set_fused_layers("yes"), Error);
}

// The region embedding's two products (features and boxes, 3-D inputs) follow the setting too:
// ATen's linear on the fused path (the bias inside the product), nn::Linear otherwise - same
// numbers.
TEST(FusedLayer, RegionEmbeddingProductsFollowTheSetting) {
  ModelOptions m;
  m.hidden = 16, m.dropout = 0;
  torch::manual_seed(3);
  RegionEmbeddings embed(m, 12);
  const auto feats = torch::randn({3, 4, 12}), boxes = torch::rand({3, 4, 5});
  set_fused_layers("on");
  const auto fused = embed->forward(feats, boxes);
  set_fused_layers("auto");
  const auto separate = embed->forward(feats, boxes);
  EXPECT_TRUE(built_by(fused, "AddmmBackward"));
  EXPECT_FALSE(built_by(separate, "AddmmBackward"));  // the CPU: nn::Linear's product, then its bias added
  EXPECT_TRUE(torch::allclose(fused, separate, 1e-5, 1e-6));
}

}  // namespace
}  // namespace mmt
