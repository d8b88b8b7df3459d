/* Activation recomputation (runtime.recompute_layers, model/recompute.h): the same outputs and
 * gradients as the plain graph - dropout's masks included -, the random generator left where the
 * plain pass leaves it, each parameter's gradient accumulated once (the gradient buckets' hooks),
 * a graph that really holds only the layers' inputs, and training steps that end at the same
 * weights. */
#include <gtest/gtest.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <memory>
#include <string>
#include <vector>

#include "mmt/config/config.h"
#include "mmt/model/recompute.h"
#include "mmt/model/transformer.h"
#include "test_util.h"
#include "train_util.h"

namespace mmt {
namespace {

// y = dropout(tanh(x w), 0.5) + x: a random draw, a parameter and a pass-through of the input.
std::vector<torch::Tensor> dropout_fn(const std::vector<torch::Tensor>& in, const torch::Tensor& w) {
  return {torch::dropout(torch::tanh(in[0].matmul(w)), 0.5, /*train=*/true) + in[0], in[0].sin() * 2};
}

TEST(Recompute, GivesTheFunctionsGradientsWithItsDropoutMasks) {
  std::vector<torch::Tensor> grads[2], outs[2];
  double next_draw[2];
  for (int recompute : {0, 1}) {
    torch::manual_seed(3);
    auto w = torch::randn({6, 6}).requires_grad_(true), x = torch::randn({4, 6}).requires_grad_(true);
    const auto fn = [&w](const std::vector<torch::Tensor>& in) { return dropout_fn(in, w); };
    const auto y = recompute ? recompute_in_backward(fn, {x}, {w}) : fn({x});
    const auto weights = torch::randn({4, 6});  // drawn after the forward pass, as a loss would
    (y[0] * weights).sum().add(y[1].sum()).backward();
    next_draw[recompute] = torch::rand({1}).item<double>();
    outs[recompute] = {y[0].detach(), y[1].detach()};
    grads[recompute] = {x.grad(), w.grad()};
    if (recompute) EXPECT_EQ(y[0].grad_fn()->name(), "mmt::RecomputeBackward");
  }
  for (size_t k = 0; k < 2; ++k) {
    EXPECT_TRUE(torch::equal(outs[0][k], outs[1][k])) << k;
    EXPECT_TRUE(torch::allclose(grads[0][k], grads[1][k], 1e-6, 1e-7)) << k;
  }
  // Half of tanh(x w)'s entries were dropped: had the second run drawn new masks, the gradients
  // would be another function's (with the generator's state not put back, this test fails).
  EXPECT_EQ(next_draw[0], next_draw[1]);  // the generator continues as after the plain pass
}

TEST(Recompute, IsThePlainFunctionWithoutGradMode) {
  auto x = torch::randn({2, 3}).requires_grad_(true);
  const torch::NoGradGuard no_grad;
  const auto y = recompute_in_backward([](const std::vector<torch::Tensor>& in) { return std::vector{in[0] * 2}; }, {x}, {});
  EXPECT_FALSE(y[0].requires_grad());
}

// Counts how often each parameter's AccumulateGrad node runs in a backward pass (what the
// gradient buckets' hooks count on).
struct CountHook : torch::autograd::FunctionPostHook {
  explicit CountHook(int* n) : n(n) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    ++*n;
    return outputs;
  }
  int* n;
};

size_t graph_nodes(const torch::Tensor& t) {
  size_t n = 0;
  for (const auto& [name, count] : testing::graph_op_counts(t)) n += static_cast<size_t>(count);
  return n;
}

// The model's layers with dropout, per-layer read-outs and the align head, on three stacks (post-
// and pre-norm): outputs, every parameter's gradient and the embeddings' gradients as without.
TEST(Recompute, ModelGradientsEqualThePlainGraphs) {
  for (const std::string stack : {"merged", "coattention", "mixed"}) {
    for (bool pre_norm : {false, true}) {
      auto m = testing::small_model_options(stack == "mixed" ? "merged" : stack, 3);
      if (stack == "mixed") m.layers = {"single_modality*2", "merged"}, m.align = true, m.embed_dim = 12;
      m.dropout = 0.1, m.pre_norm = pre_norm;
      const std::string name = stack + (pre_norm ? " pre-norm" : "");
      std::vector<torch::Tensor> grads[2];
      torch::Tensor loss[2];
      size_t nodes[2];
      std::vector<int> accumulated;
      for (int recompute : {0, 1}) {
        torch::manual_seed(11);
        MultimodalTransformer model(m, InputDims{testing::kVocab, testing::kFeat});
        model->train();
        model->set_recompute_layers(recompute != 0);
        const auto params = model->parameters();
        accumulated.assign(params.size(), 0);
        std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks;
        if (recompute)
          for (size_t i = 0; i < params.size(); ++i)
            if (auto acc = torch::autograd::impl::grad_accumulator(params[i]))
              hooks.push_back({acc, acc->add_post_hook(std::make_unique<CountHook>(&accumulated[i]))});
        const Batch batch = testing::random_batch(4, 7, 5, 2);
        const Encoded e = model->encode(batch, /*per_layer=*/true);
        auto l = e.text.pow(2).mean() + e.image.sin().mean() + model->itm_logits(e).logsumexp(1).mean();
        for (size_t k = 0; k < e.layer_cls.size(); ++k) l = l + 0.1 * (e.layer_cls[k] * e.layer_img[k]).mean();
        if (e.align_cls.defined()) l = l + model->align_embeddings(e.align_cls, e.align_img).text.sum(1).mean();
        nodes[recompute] = graph_nodes(l);
        loss[recompute] = l.detach();
        l.backward();
        for (const auto& p : params) grads[recompute].push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
        for (auto& [acc, key] : hooks) acc->del_post_hook(key);
      }
      EXPECT_TRUE(torch::equal(loss[0], loss[1])) << name;
      // The plain graph holds each layer's dozens of operations, the recomputed one a node a layer.
      EXPECT_LT(nodes[1] * 2, nodes[0]) << name << ": " << nodes[1] << " vs " << nodes[0];
      ASSERT_EQ(grads[0].size(), grads[1].size());
      int with_grad = 0;
      for (size_t k = 0; k < grads[0].size(); ++k) {
        ASSERT_EQ(grads[0][k].defined(), grads[1][k].defined()) << name << " parameter " << k;
        if (!grads[0][k].defined()) continue;
        ++with_grad;
        EXPECT_TRUE(torch::allclose(grads[0][k], grads[1][k], 1e-5, 1e-7))
            << name << " parameter " << k << ": " << (grads[0][k] - grads[1][k]).abs().max().item<double>();
        EXPECT_EQ(accumulated[k], 1) << name << " parameter " << k << " accumulated " << accumulated[k] << " times";
      }
      EXPECT_GT(with_grad, 20) << name;
    }
  }
}

// Training steps through PretrainStep end at the same weights: MLM, MRM and ITM with dropout 0.1;
// and contrastive ITM in chunks (scored without a graph, then each chunk's pairs again with one:
// the lower layers once per caption and image) with the align head.
TEST(Recompute, TrainingStepsEndAtTheSameWeights) {
  const std::vector<std::string> small = {"model.dropout=0.1", "model.layers=[\"single_modality\",\"merged\"]",
                                          "model.hidden=32", "model.num_heads=2", "model.head_dim=16",
                                          "model.ffn_dim=64"};
  std::vector<std::string> contrastive = small;
  for (const char* o : {"model.align=true", "model.embed_dim=12", "train.align_weight=1", "train.itm_contrastive_weight=1",
                        "train.itm_contrastive_negatives=4", "train.itm_contrastive_chunk=16"})
    contrastive.push_back(o);
  for (const auto& overrides : {small, contrastive}) {
    const ExperimentConfig c = load_config("", overrides);
    std::vector<torch::Tensor> weights[2];
    for (int recompute : {0, 1}) {
      testing::SmallTraining t(c);
      t.model->set_recompute_layers(recompute != 0);
      for (int64_t s = 0; s < 3; ++s) ASSERT_TRUE(t.step.run(t.batcher.batch(s), 1e-3, s).finite);
      for (const auto& p : t.model->parameters()) weights[recompute].push_back(p.detach().clone());
    }
    ASSERT_EQ(weights[0].size(), weights[1].size());
    double worst = 0;
    for (size_t k = 0; k < weights[0].size(); ++k)
      worst = std::max(worst, (weights[0][k] - weights[1][k]).abs().max().item<double>());
    // AdamW's steps are ~1e-3: equal up to the last bits of the gradients.
    EXPECT_LT(worst, 1e-6) << (overrides.size() > small.size() ? "contrastive ITM + align" : "MLM + MRM + ITM");
  }
}

}  // namespace
}  // namespace mmt
