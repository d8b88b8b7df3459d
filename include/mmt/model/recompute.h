/* Activation recomputation (what PyTorch calls gradient checkpointing): a piece of the forward pass
 * run without keeping its graph, and run again when the backward pass reaches it. A transformer
 * layer then keeps its two inputs for the backward pass instead of every intermediate (q, k, v,
 * attention probabilities, the feed-forward's 4x-wide activations, dropout masks), for one more
 * forward pass of the layer. runtime.recompute_layers turns it on for a model's layers. */
#pragma once

#include <torch/types.h>

#include <functional>
#include <vector>

namespace mmt {

using TensorFn = std::function<std::vector<torch::Tensor>(const std::vector<torch::Tensor>&)>;

/// fn(inputs), its graph not kept: the outputs hang from one autograd node that, when the backward
/// pass reaches it, runs fn again on the saved inputs - with the random generator's state and the
/// autocast state of the first run, so dropout draws the same masks and the products run in the
/// same precision - and back-propagates through that run into the inputs and `params` (what fn
/// reads besides its inputs). The parameters' gradients leave through the node's edges to their
/// accumulators, as they would without it: accumulation hooks (gradient buckets) run once, and
/// the gradients are those of fn itself. fn must return new floating-point tensors (no input
/// passed through) and may be run a second time. The generator afterwards continues from where
/// the backward pass found it. Without grad mode, or with nothing needing a gradient, it is
/// fn(inputs).
std::vector<torch::Tensor> recompute_in_backward(const TensorFn& fn, const std::vector<torch::Tensor>& inputs,
                                                 const std::vector<torch::Tensor>& params);

}  // namespace mmt
