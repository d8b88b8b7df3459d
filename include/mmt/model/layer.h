/* One multimodal transformer layer over the joint sequence [text ; image], parameterised by
 * an AttentionPattern (attention.h). Each modality has its own stream weights (q, k, v, out,
 * feed-forward, norms) unless the pattern shares them (single-stream).
 *
 * No wasted work: queries of each modality attend only to the key blocks the pattern allows,
 * so a modality-specific layer runs two independent attentions (never a masked full one),
 * and key/value projections of a modality nobody attends to are not computed. */
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include "mmt/model/attention.h"

namespace mmt {

struct LayerOptions {
  int64_t hidden = 128;     // H
  int64_t num_heads = 4;    // heads
  int64_t head_dim = 32;    // width of one head
  int64_t ffn_dim = 512;    // feed-forward inner size
  double dropout = 0.0;     // on attention output and feed-forward output
  bool pre_norm = false;    // LayerNorm before (true) or after (BERT) each block
  double layer_norm_eps = 1e-12;
  AttentionType type = AttentionType::kMerged;
  // Fused kernels: q, k and v as one matrix product, and one attention call over both streams'
  // queries when both read every key. Fewer, fuller kernels on a GPU; on the CPU they change
  // results in the last bits (summation order), so the CPU keeps the separate products whose
  // numbers the study reports. Fused, the layer's other products (attention output, FFN) run
  // as linear_product() below (nn::Linear's separate bias add took 10 % of an H200 base step,
  // docs/gpu.md).
  // -1: runtime.fused_layers (auto: CUDA only); 0 / 1: off / on (tests compare the two).
  int fused = -1;
};

/// The weights one modality uses in one layer.
class StreamWeightsImpl : public torch::nn::Module {
 public:
  explicit StreamWeightsImpl(const LayerOptions& o);
  torch::nn::Linear query{nullptr}, key{nullptr}, value{nullptr}, out{nullptr};
  torch::nn::LayerNorm attn_norm{nullptr};
  torch::nn::Linear ffn_in{nullptr}, ffn_out{nullptr};
  torch::nn::LayerNorm ffn_norm{nullptr};
};
TORCH_MODULE(StreamWeights);

class MultimodalLayerImpl : public torch::nn::Module {
 public:
  explicit MultimodalLayerImpl(const LayerOptions& o);

  /// text (B, T, H), image (B, R, H); *_bias are additive key masks, (B, 1, 1, T) and
  /// (B, 1, 1, R): 0 at real positions, a large negative value at padding.
  /// Returns the new (text, image) states.
  std::pair<torch::Tensor, torch::Tensor> forward(const torch::Tensor& text, const torch::Tensor& image,
                                                  const torch::Tensor& text_bias,
                                                  const torch::Tensor& image_bias);

  const LayerOptions& options() const { return options_; }
  const AttentionPattern& pattern() const { return pattern_; }

 private:
  // Fused: a stream's queries, and its keys and values when some queries read them, (B, L, h, d)
  // each: one matrix product over the three weights side by side.
  struct Projections {
    torch::Tensor q, k, v;
  };
  Projections project(StreamWeightsImpl& w, const torch::Tensor& x, bool keys);
  // Queries q (B, Lq, h, d) against keys / values (B, Lk, h, d) with bias (B, 1, 1, Lk): the
  // heads' outputs side by side, (B, Lq, h * d).
  torch::Tensor attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, const torch::Tensor& bias);
  torch::Tensor ffn(StreamWeightsImpl& w, const torch::Tensor& x, bool fused);

  LayerOptions options_;
  AttentionPattern pattern_;
  StreamWeights text_{nullptr}, image_{nullptr};  // the same module when weights are shared
};
TORCH_MODULE(MultimodalLayer);

/// LayerNorm in the precision of the stream: plain `ln(x)` normally; under bf16 autocast the
/// input and the norm's weights in bf16 (the kernel keeps its statistics in fp32) and a bf16
/// output. Autocast alone runs LayerNorm in fp32: the residual stream would then be fp32, every
/// add mixed-precision, and every following matrix product would cast its own copy of the input -
/// on an H100 a third of a base step went to those adds and casts (docs/gpu.md).
torch::Tensor layer_norm(torch::nn::LayerNorm& ln, const torch::Tensor& x);

/// A linear module's product on the fused path (LayerOptions::fused; fused_layers_on() outside the
/// layers): ATen's linear - one product with the bias inside, cast with it under bf16 autocast -
/// where nn::Linear on a 3-D input adds an fp32 bias to a bf16 output in a separate generic
/// kernel. Unfused (the CPU's default) the module itself, whose numbers the study reports.
torch::Tensor linear_product(torch::nn::Linear& l, const torch::Tensor& x, bool fused);

/// The additive key mask of a (B, L) bool padding mask: (B, 1, 1, L) float, 0 or kMaskValue.
torch::Tensor attention_bias(const torch::Tensor& mask);
constexpr float kMaskValue = -1e9f;

}  // namespace mmt
