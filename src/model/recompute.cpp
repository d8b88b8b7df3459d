/* Activation recomputation: see recompute.h. */
#include "mmt/model/recompute.h"

#include <ATen/Context.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <mutex>
#include <string>

#include "mmt/util/device.h"

namespace mmt {
namespace {

torch::Tensor generator_state(at::Generator& g) {
  std::lock_guard<std::mutex> lock(g.mutex());
  return g.get_state();
}

void set_generator_state(at::Generator& g, const torch::Tensor& state) {
  std::lock_guard<std::mutex> lock(g.mutex());
  g.set_state(state);
}

// Puts the generator's state back when the recomputation ends, by return or by exception.
struct RestoreGenerator {
  at::Generator& g;
  torch::Tensor state;
  ~RestoreGenerator() { set_generator_state(g, state); }
};

struct RecomputeBackward : torch::autograd::Node {
  TensorFn fn;
  std::vector<torch::Tensor> inputs;  // detached; the layer's inputs are what the pass keeps
  std::vector<char> input_needs_grad;
  std::vector<torch::Tensor> params;  // those needing a gradient; the edges after the inputs'
  torch::Device device = torch::kCPU;
  at::Generator generator;
  torch::Tensor generator_before;  // its state when fn first ran
  bool bf16 = false;

  std::string name() const override { return "mmt::RecomputeBackward"; }

  void release_variables() override {
    inputs.clear(), params.clear(), generator_before = torch::Tensor();
    fn = nullptr;
  }

  torch::autograd::variable_list apply(torch::autograd::variable_list&& grads) override {
    TORCH_CHECK(fn, "mmt: a recomputed layer's graph was back-propagated through a second time; it was "
                    "freed by the first backward pass (retain_graph keeps it)");
    std::vector<torch::Tensor> in(inputs.size()), out;
    {
      RestoreGenerator restore{generator, generator_state(generator)};
      set_generator_state(generator, generator_before);
      for (size_t i = 0; i < inputs.size(); ++i)
        if (inputs[i].defined()) in[i] = inputs[i].detach().requires_grad_(input_needs_grad[i] != 0);
      const torch::AutoGradMode grad_on(true);  // the engine runs nodes with it off
      const AutocastGuard autocast(device, bf16);  // on the engine's thread it is off
      out = fn(in);
    }
    TORCH_CHECK(out.size() == grads.size(), "mmt: a recomputed layer returned ", out.size(), " tensors, first ",
                grads.size());
    std::vector<torch::Tensor> outs, outs_grads, wrt;
    std::vector<size_t> slot;  // edge of each entry of wrt
    for (size_t k = 0; k < out.size(); ++k)
      if (grads[k].defined() && out[k].requires_grad()) outs.push_back(out[k]), outs_grads.push_back(grads[k]);
    for (size_t i = 0; i < in.size(); ++i)
      if (input_needs_grad[i]) wrt.push_back(in[i]), slot.push_back(i);
    for (size_t j = 0; j < params.size(); ++j) wrt.push_back(params[j]), slot.push_back(inputs.size() + j);
    torch::autograd::variable_list result(num_outputs());
    if (outs.empty() || wrt.empty()) return result;
    // grad, not backward: the parameters' gradients are returned along the node's edges and reach
    // their accumulators through the outer pass, not accumulated here.
    const auto g = torch::autograd::grad(outs, wrt, outs_grads, /*retain_graph=*/false, /*create_graph=*/false,
                                         /*allow_unused=*/true);
    for (size_t k = 0; k < g.size(); ++k) result[slot[k]] = g[k];
    return result;
  }
};

}  // namespace

std::vector<torch::Tensor> recompute_in_backward(const TensorFn& fn, const std::vector<torch::Tensor>& inputs,
                                                 const std::vector<torch::Tensor>& params) {
  bool needs_grad = false;
  const torch::Tensor* first = nullptr;
  for (const auto& x : inputs) {
    if (x.defined() && !first) first = &x;
    needs_grad = needs_grad || (x.defined() && x.requires_grad());
  }
  std::vector<torch::Tensor> trained;
  for (const auto& p : params)
    if (p.requires_grad()) trained.push_back(p);
  if (!torch::GradMode::is_enabled() || !first || (!needs_grad && trained.empty())) return fn(inputs);

  auto node = std::shared_ptr<RecomputeBackward>(new RecomputeBackward(), torch::autograd::deleteNode);
  node->device = first->device();
  node->generator = at::globalContext().defaultGenerator(node->device);
  node->generator_before = generator_state(node->generator);
  node->bf16 = autocast_dtype(node->device).has_value();
  std::vector<torch::Tensor> out;
  {
    const torch::NoGradGuard no_graph;
    out = fn(inputs);
  }
  for (const auto& x : inputs) {
    node->inputs.push_back(x.defined() ? x.detach() : x);
    node->input_needs_grad.push_back(x.defined() && x.requires_grad());
  }
  node->params = std::move(trained);
  node->set_next_edges(torch::autograd::collect_next_edges(inputs, node->params));
  node->fn = fn;
  for (auto& o : out) {
    TORCH_CHECK(o.defined() && o.is_floating_point(), "recompute_in_backward: every output must be a defined "
                                                      "floating-point tensor");
    torch::autograd::set_history(o, node);  // the node's k-th input is the k-th output's gradient
  }
  return out;
}

}  // namespace mmt
