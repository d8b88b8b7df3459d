/* Numerical parity with peers, against golden files made by tests/golden/make_golden.py with
 * Debian's python3-torch 1.13 / python3-torchvision 0.14: the single_stream layer vs
 * torch.nn.TransformerEncoderLayer, the text side vs a BERT reference under BERT's key names,
 * and ResNet-50 vs torchvision's resnet50. Relative error <= 1e-4 in fp32. */
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>

#include "mmt/io/safetensors.h"
#include "mmt/text/bert_checkpoint.h"
#include "mmt/util/error.h"
#include "mmt/vision/resnet.h"
#include "test_util.h"

namespace mmt {
namespace {

const std::string kGolden = std::string(MMT_SOURCE_DIR) + "/tests/data/golden/";

std::map<std::string, torch::Tensor> golden(const std::string& file) {
  std::map<std::string, torch::Tensor> m;
  for (auto& [k, t] : load_safetensors(kGolden + file)) m[k] = t;
  return m;
}

double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max()).item<double>();
}

TEST(Parity, SingleStreamLayerEqualsTorchTransformerEncoderLayer) {
  auto g = golden("single_stream_layer.safetensors");
  LayerOptions lo;
  lo.hidden = 32, lo.num_heads = 4, lo.head_dim = 8, lo.ffn_dim = 48, lo.type = AttentionType::kSingleStream;
  MultimodalLayer layer(lo);
  layer->eval();
  {
    torch::NoGradGuard ng;
    std::map<std::string, torch::Tensor> ours;
    for (auto& [k, t] : module_state(*layer)) ours[k] = t;
    const auto in_w = g["self_attn.in_proj_weight"].chunk(3, 0), in_b = g["self_attn.in_proj_bias"].chunk(3, 0);
    const char* qkv[] = {"query", "key", "value"};
    for (int i = 0; i < 3; ++i) {
      ours[std::string("shared.") + qkv[i] + ".weight"].copy_(in_w[i]);
      ours[std::string("shared.") + qkv[i] + ".bias"].copy_(in_b[i]);
    }
    const std::pair<const char*, const char*> rest[] = {{"out", "self_attn.out_proj"}, {"ffn_in", "linear1"},
                                                        {"ffn_out", "linear2"},        {"attn_norm", "norm1"},
                                                        {"ffn_norm", "norm2"}};
    for (const auto& [a, b] : rest)
      for (const char* part : {".weight", ".bias"}) ours[std::string("shared.") + a + part].copy_(g[std::string(b) + part]);
  }
  const int64_t t = g["text_len"].item<int64_t>();
  const auto x = g["input"], pad = g["padding"], y = g["output"];
  const auto text_mask = pad.narrow(1, 0, t).logical_not(), image_mask = pad.narrow(1, t, x.size(1) - t).logical_not();
  torch::NoGradGuard ng;
  auto [ot, oi] = layer->forward(x.narrow(1, 0, t), x.narrow(1, t, x.size(1) - t), attention_bias(text_mask),
                                 attention_bias(image_mask));
  const auto ours = torch::cat({ot, oi}, 1);
  const auto real = pad.logical_not().unsqueeze(-1).expand_as(y);
  EXPECT_LT(rel_err(ours.masked_select(real), y.masked_select(real)), 1e-4);
}

TEST(Parity, TextSideEqualsBertReference) {
  auto g = golden("bert_golden.safetensors");
  ModelOptions m;
  m.hidden = 32, m.num_heads = 4, m.head_dim = 8, m.ffn_dim = 64, m.max_text_len = 16, m.dropout = 0.0;
  // A single-stream layer lets text attend to image tokens: the image is fully masked out, so
  // the text states of both layer kinds must equal BERT's.
  m.layers = {"single_modality", "single_stream"};
  MultimodalTransformer model(m, InputDims{50, testing::kFeat});
  const LoadReport report = load_bert_checkpoint(*model, kGolden + "bert");
  EXPECT_TRUE(report.missing.empty()) << join(report.missing);
  EXPECT_NE(std::find(report.unexpected.begin(), report.unexpected.end(), "cls.seq_relationship.weight"),
            report.unexpected.end());
  model->eval();
  torch::NoGradGuard ng;
  Batch b;
  b.text_ids = g["input_ids"], b.text_mask = g["attention_mask"];
  const int64_t n = b.text_ids.size(0);
  b.region_feats = torch::randn({n, 1, testing::kFeat}), b.region_boxes = torch::rand({n, 1, 5});
  b.region_mask = torch::zeros({n, 1}, torch::kBool);
  const auto e = model->encode(b);
  EXPECT_LT(rel_err(e.text, g["sequence_output"]), 1e-4);
  EXPECT_LT(rel_err(torch::tanh(model->itm_text_pool(e.text.select(1, 0))), g["pooled_output"]), 1e-4);
  EXPECT_LT(rel_err(model->mlm_logits(e.text), g["mlm_logits"]), 1e-4);
}

TEST(Parity, BertLoaderRejectsMismatchedSizesClearly) {
  ModelOptions m;
  m.hidden = 32, m.num_heads = 2, m.head_dim = 16, m.ffn_dim = 64, m.max_text_len = 16, m.num_layers = 2;
  MultimodalTransformer model(m, InputDims{50, testing::kFeat});
  try {
    load_bert_checkpoint(*model, kGolden + "bert");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("num_attention_heads"), std::string::npos) << e.what();
  }
  m.num_heads = 4, m.head_dim = 8;
  MultimodalTransformer other_vocab(m, InputDims{60, testing::kFeat});
  EXPECT_THROW(load_bert_checkpoint(*other_vocab, kGolden + "bert"), Error);
  EXPECT_THROW(load_bert_checkpoint(*other_vocab, kGolden + "no_such_dir"), Error);
}

// tests/golden/make_golden.py: hash_uniform and resnet_weight, reproduced exactly.
std::vector<double> hash_uniform(const std::string& name, int64_t n) {
  uint64_t seed = 2166136261u;
  for (unsigned char ch : name) seed = ((seed ^ ch) * 16777619u) & 0xFFFFFFFFu;
  std::vector<double> u(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    uint64_t x = (static_cast<uint64_t>(i) * 2654435761u + seed) & 0xFFFFFFFFu;
    x ^= x >> 15;
    x = (x * 2246822519u) & 0xFFFFFFFFu;
    x ^= x >> 13;
    u[i] = static_cast<double>(x) / 4294967296.0 - 0.5;
  }
  return u;
}

void fill_resnet_weight(const std::string& name, torch::Tensor t) {
  if (name.find("num_batches_tracked") != std::string::npos) return t.zero_(), void();
  const auto u = hash_uniform(name, t.numel());
  std::vector<float> v(u.size());
  auto ends = [&](const char* s) { return name.size() >= strlen(s) && name.compare(name.size() - strlen(s), strlen(s), s) == 0; };
  const double fan_in = t.dim() > 1 ? static_cast<double>(t.numel() / t.size(0)) : 1.0;
  for (size_t i = 0; i < u.size(); ++i) {
    double x;
    if (ends("running_var")) x = 0.5 + (u[i] + 0.5);
    else if (ends("running_mean") || ends(".bias")) x = 0.1 * u[i];
    else if (t.dim() == 1) x = 0.5 + 0.5 * (u[i] + 0.5);
    else x = u[i] * std::sqrt(24.0 / fan_in);
    v[i] = static_cast<float>(x);
  }
  t.copy_(torch::from_blob(v.data(), t.sizes(), torch::kFloat32));
}

TEST(Parity, ResNet50EqualsTorchvision) {
  auto g = golden("resnet50_features.safetensors");
  ResNet50 net(/*frozen=*/true);
  torch::NoGradGuard ng;
  int64_t tensors = 0;
  for (auto& [name, t] : module_state(*net)) fill_resnet_weight(name, t), ++tensors;
  EXPECT_EQ(tensors, 320);  // torchvision's resnet50 state dict has 320 entries
  const auto u = hash_uniform("input", 3 * 64 * 64);
  std::vector<float> in(u.size());
  for (size_t i = 0; i < u.size(); ++i) in[i] = static_cast<float>(2.0 * u[i]);
  const auto x = torch::from_blob(in.data(), {1, 3, 64, 64}, torch::kFloat32).clone();
  ASSERT_TRUE(torch::equal(x, g["input"]));  // the formula is reproduced bit for bit
  const auto y = net->features(x);
  EXPECT_EQ(y.sizes(), g["features"].sizes());
  EXPECT_LT(rel_err(y, g["features"]), 1e-4);
}

TEST(Parity, ResNet50NamesAreTorchvisions) {
  ResNet50 net;
  std::map<std::string, torch::Tensor> state;
  for (auto& [k, t] : module_state(*net)) state[k] = t;
  for (const char* key : {"conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.0.downsample.0.weight",
                          "layer1.0.downsample.1.num_batches_tracked", "layer4.2.bn3.bias", "fc.weight"})
    EXPECT_TRUE(state.count(key)) << key;
  EXPECT_EQ(state["layer3.5.conv2.weight"].sizes(), (std::vector<int64_t>{256, 256, 3, 3}));
}

}  // namespace
}  // namespace mmt
