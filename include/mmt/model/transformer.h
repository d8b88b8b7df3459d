/* The multimodal transformer of the study: text embeddings (word + position + segment,
 * LayerNorm), region embeddings (feature and box projections, LayerNorm), a stack of
 * MultimodalLayers (one attention type per layer), and the pretraining heads: ITM (match /
 * mismatch) and MLM (tied to the word embeddings). Parameter names are the checkpoint keys,
 * e.g. `layers.3.text.query.weight`. */
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/pimpl.h>

#include <vector>

#include "mmt/config/options.h"
#include "mmt/model/input_dims.h"
#include "mmt/model/layer.h"
#include "mmt/vision/resnet.h"

namespace mmt {

struct Batch;

/// The per-layer attention types of a model: `layers`, or num_layers x `attention`.
std::vector<AttentionType> layer_types(const ModelOptions& m);

class TextEmbeddingsImpl : public torch::nn::Module {
 public:
  TextEmbeddingsImpl(const ModelOptions& m, int64_t vocab_size);
  /// ids (B, T) int64 -> (B, T, H)
  torch::Tensor forward(const torch::Tensor& ids);
  torch::nn::Embedding word{nullptr}, position{nullptr}, segment{nullptr};
  torch::nn::LayerNorm norm{nullptr};

 private:
  double dropout_;
};
TORCH_MODULE(TextEmbeddings);

class RegionEmbeddingsImpl : public torch::nn::Module {
 public:
  RegionEmbeddingsImpl(const ModelOptions& m, int64_t feat_dim);
  /// feats (B, R, F), boxes (B, R, 5) -> (B, R, H)
  torch::Tensor forward(const torch::Tensor& feats, const torch::Tensor& boxes);
  torch::nn::Linear feature{nullptr}, box{nullptr};
  torch::nn::LayerNorm feature_norm{nullptr}, box_norm{nullptr}, norm{nullptr};
  torch::Tensor type;  // (H) learned image-token type vector (BERT's segment, for images)

 private:
  double dropout_;
};
TORCH_MODULE(RegionEmbeddings);

/// Output of the encoder: final states of both modalities and, when asked for, the pooled
/// tokens after every layer (for an ITM loss at every layer, the release's `-hloss` models).
struct Encoded {
  torch::Tensor text;   // (B, T, H); position 0 is [CLS]
  torch::Tensor image;  // (B, R, H); position 0 is the global region [IMG]
  std::vector<torch::Tensor> layer_cls;  // per layer: [CLS] state (B, H), bottom layer first
  std::vector<torch::Tensor> layer_img;  // per layer: [IMG] state (B, H)
  // model.align: the [CLS] / [IMG] states (B, H) after the last layer below the first cross-modal
  // one, as the layer left them (align_embeddings reads them); undefined when the pass started above it
  torch::Tensor align_cls, align_img;
};

/// Embedded image tokens and which of them are real.
struct ImageTokens {
  torch::Tensor states;  // (B, N, H); token 0 is the global token [IMG]
  torch::Tensor mask;    // (B, N) bool
};

class MultimodalTransformerImpl : public torch::nn::Module {
 public:
  MultimodalTransformerImpl(const ModelOptions& m, const InputDims& dims);

  /// The image tokens of a batch: its regions, or its pixels through the patch embedding or the
  /// ResNet-50 (model.image_input).
  ImageTokens embed_images(const Batch& batch);
  /// Pixels (B, 3, S, S) -> region-like features (B, 1 + G*G, F) and boxes (B, 1 + G*G, 5): one
  /// token per patch / grid cell with its cell as box, after a global token (their mean, whole
  /// image box). F = 3 * patch^2 (patches) or 2048 (resnet50).
  std::pair<torch::Tensor, torch::Tensor> pixel_features(const torch::Tensor& pixels);

  /// Embeddings and all layers over the batch's text and regions (padding from the masks).
  /// per_layer: also keep the [CLS] / [IMG] states after every layer.
  Encoded encode(const Batch& batch, bool per_layer = false);
  /// Layers [first_layer, L) and the final norms, from embedded inputs (evaluation reuses
  /// embeddings and unimodal layers across pairs).
  Encoded encode_embedded(torch::Tensor text, torch::Tensor image, const torch::Tensor& text_mask,
                          const torch::Tensor& image_mask, bool per_layer = false, int64_t first_layer = 0);
  /// Layers [begin, end) only (no final norm): (text, image) states.
  std::pair<torch::Tensor, torch::Tensor> run_layers(torch::Tensor text, torch::Tensor image,
                                                     const torch::Tensor& text_mask, const torch::Tensor& image_mask,
                                                     int64_t begin, int64_t end);
  /// Layers [begin, end) of one modality alone (`text`: the states are text tokens, else image
  /// tokens) beside a one-token placeholder of the other; only the layers where that modality reads
  /// itself alone make this its own states (e.g. below the first cross-modal layer).
  torch::Tensor run_one_modality(const torch::Tensor& states, const torch::Tensor& mask, bool text, int64_t begin,
                                 int64_t end);
  /// Final norms of pre-norm stacks (identity for post-norm): what the heads read.
  std::pair<torch::Tensor, torch::Tensor> final_norms(torch::Tensor text, torch::Tensor image);
  /// Index of the first layer whose attention crosses modalities (num layers if none). Below it
  /// each modality's states depend on that modality alone.
  int64_t first_cross_modal_layer() const { return first_cross_modal_; }
  /// Whether any layer crosses modalities (if not, every pair score is a function of one pass per
  /// caption and one per image).
  bool crosses_modalities() const { return first_cross_modal_ < static_cast<int64_t>(layers->size()); }

  /// The retrieval score of each (caption, image) pair (B): the ITM logit margin
  /// (match - mismatch), or for a dual encoder with dot scoring its scaled cosine.
  torch::Tensor match_scores(const Encoded& e);
  /// The same scores for every caption x image from unimodal final [CLS] (C, H) and [IMG]
  /// (N, H) states - valid when no layer crosses modalities, so one forward pass per caption and
  /// per image replaces one per pair: (C, N).
  torch::Tensor match_score_matrix(const torch::Tensor& cls, const torch::Tensor& img);
  /// match_score_matrix as embeddings: scores = scale * text (C, E) x image (N, E)^T + bias (0-dim
  /// scale and bias). A dot-scoring dual encoder: its normalised projections and logit scale; an
  /// ITM head (bilinear): tanh(W_t cls) (w1 - w0) and tanh(W_i img), the bias b1 - b0.
  struct MatchEmbeddings {
    torch::Tensor text, image, scale, bias;
  };
  MatchEmbeddings match_embeddings(const torch::Tensor& cls, const torch::Tensor& img);
  /// Dual encoder, dot scoring: normalised projections (B, E) of [CLS] and [IMG] states.
  torch::Tensor text_embedding(const torch::Tensor& cls);
  torch::Tensor image_embedding(const torch::Tensor& img);
  /// Dual encoder, dot scoring, and the align head: exp(logit_scale), clamped to [1 / max, max_logit_scale].
  torch::Tensor logit_scale_value();
  /// model.align (ALBEF's align-before-fuse head): the normalised projections of the [CLS] (C, H)
  /// and [IMG] (N, H) states after the last unimodal layer (Encoded::align_cls / align_img; for
  /// pre-norm stacks read through the final norms, as per-layer states are), with the learned
  /// scale: scores = scale * text x image^T (bias 0).
  MatchEmbeddings align_embeddings(const torch::Tensor& cls, const torch::Tensor& img);
  /// align_embeddings of every row of `batch` from a pass of the layers below the first
  /// cross-modal one alone (each caption and image on its own): hard negatives by the head, the
  /// align queue's momentum model.
  MatchEmbeddings tower_align_embeddings(const Batch& batch);

  /// runtime.recompute_layers: in grad mode each layer keeps only its inputs for the backward pass
  /// and runs its forward again there (recompute.h): less activation memory, the same gradients.
  void set_recompute_layers(bool on) { recompute_layers_ = on; }
  bool recompute_layers() const { return recompute_layers_; }

  bool dual_dot() const { return options_.kind == "dual_encoder" && static_cast<bool>(text_proj); }
  bool has_align() const { return options_.align; }

  /// ITM logits (B, 2) [mismatch, match] from the final [CLS] and [IMG] states.
  torch::Tensor itm_logits(const Encoded& e);
  /// ITM logits (B, 2) from any [CLS] (B, H) and [IMG] (B, H) states, e.g. a lower layer's.
  torch::Tensor itm_logits(const torch::Tensor& cls, const torch::Tensor& img);
  /// MLM logits (M, V) for states (M, H) of the masked positions.
  torch::Tensor mlm_logits(const torch::Tensor& states);
  /// MRM: predicted region features (M, F) and detector-class logits (M, C) for states (M, H) of
  /// masked regions (region inputs only).
  torch::Tensor mrm_features(const torch::Tensor& states);
  torch::Tensor mrm_class_logits(const torch::Tensor& states);

  const ModelOptions& options() const { return options_; }
  const InputDims& dims() const { return dims_; }

  TextEmbeddings text_embed{nullptr};
  RegionEmbeddings image_embed{nullptr};
  ResNet50 resnet{nullptr};  // image_input = resnet50 only; keys resnet.<torchvision name>
  torch::nn::ModuleList layers{nullptr};
  torch::nn::LayerNorm text_final_norm{nullptr}, image_final_norm{nullptr};  // pre_norm only
  // ITM head
  torch::nn::Linear itm_text_pool{nullptr}, itm_image_pool{nullptr}, itm_classifier{nullptr};
  // MLM head (decoder weight = text_embed->word->weight)
  torch::nn::Linear mlm_transform{nullptr};
  torch::nn::LayerNorm mlm_norm{nullptr};
  torch::Tensor mlm_bias;
  // MRM heads (region inputs): a transform each, then features or class logits
  torch::nn::Linear mrm_feature_transform{nullptr}, mrm_feature_out{nullptr};
  torch::nn::Linear mrm_class_transform{nullptr}, mrm_class_out{nullptr};
  torch::nn::LayerNorm mrm_feature_norm{nullptr}, mrm_class_norm{nullptr};
  // Dual encoder with dot scoring, or the align head: projections and the learned log inverse temperature
  torch::nn::Linear text_proj{nullptr}, image_proj{nullptr};
  torch::Tensor logit_scale;

 private:
  void init_weights();
  // Layer i over (text, image), recomputed in the backward pass when recompute_layers_.
  std::pair<torch::Tensor, torch::Tensor> run_layer(int64_t i, const torch::Tensor& text, const torch::Tensor& image,
                                                    const torch::Tensor& text_bias, const torch::Tensor& image_bias);
  ModelOptions options_;
  InputDims dims_;
  int64_t first_cross_modal_ = 0;  // of the stack, fixed at construction
  bool recompute_layers_ = false;
};
TORCH_MODULE(MultimodalTransformer);

}  // namespace mmt
