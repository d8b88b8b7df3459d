/* The multimodal transformer (see transformer.h). */
#include "mmt/model/transformer.h"

#include <torch/nn/functional/normalization.h>
#include <torch/nn/init.h>

#include <cmath>

#include "mmt/data/batch.h"
#include "mmt/model/recompute.h"
#include "mmt/util/device.h"
#include "mmt/util/error.h"

namespace mmt {

namespace tnn = torch::nn;

std::vector<AttentionType> layer_types(const ModelOptions& m) {
  std::vector<AttentionType> types;
  if (!m.layers.empty()) {
    for (const auto& entry : m.layers) {  // "name" or "name*N"
      const auto star = entry.find('*');
      const AttentionType type = attention_type_from_name(entry.substr(0, star));
      int64_t repeat = 1;
      if (star != std::string::npos) {
        try {
          repeat = std::stoll(entry.substr(star + 1));
        } catch (const std::exception&) {
          repeat = 0;
        }
        if (repeat < 1) throw Error("model.layers entry '" + entry + "': expected name*N with N >= 1");
      }
      for (int64_t i = 0; i < repeat; ++i) types.push_back(type);
    }
  } else {
    for (int64_t i = 0; i < m.num_layers; ++i) types.push_back(attention_type_from_name(m.attention));
  }
  return types;
}

TextEmbeddingsImpl::TextEmbeddingsImpl(const ModelOptions& m, int64_t vocab_size) : dropout_(m.dropout) {
  word = register_module("word", tnn::Embedding(vocab_size, m.hidden));
  position = register_module("position", tnn::Embedding(m.max_text_len, m.hidden));
  segment = register_module("segment", tnn::Embedding(2, m.hidden));
  norm = register_module("norm", tnn::LayerNorm(tnn::LayerNormOptions({m.hidden}).eps(m.layer_norm_eps)));
}

torch::Tensor TextEmbeddingsImpl::forward(const torch::Tensor& ids) {
  TORCH_CHECK(ids.dim() == 2, "TextEmbeddings: ids must be (B, T), got ", ids.sizes());
  const int64_t t = ids.size(1);
  TORCH_CHECK(t <= position->weight.size(0), "TextEmbeddings: ", t, " tokens exceed max_text_len ",
              position->weight.size(0));
  // Segment 0 for every text token: add its row directly instead of a lookup.
  auto x = word(ids) + position->weight.narrow(0, 0, t).unsqueeze(0) + segment->weight[0];
  x = layer_norm(norm, x);
  return dropout_ > 0 ? torch::dropout(x, dropout_, is_training()) : x;
}

RegionEmbeddingsImpl::RegionEmbeddingsImpl(const ModelOptions& m, int64_t feat_dim) : dropout_(m.dropout) {
  auto ln = [&] { return tnn::LayerNorm(tnn::LayerNormOptions({m.hidden}).eps(m.layer_norm_eps)); };
  feature = register_module("feature", tnn::Linear(feat_dim, m.hidden));
  box = register_module("box", tnn::Linear(5, m.hidden));
  feature_norm = register_module("feature_norm", ln());
  box_norm = register_module("box_norm", ln());
  norm = register_module("norm", ln());
  type = register_parameter("type", torch::zeros({m.hidden}));
}

torch::Tensor RegionEmbeddingsImpl::forward(const torch::Tensor& feats, const torch::Tensor& boxes) {
  TORCH_CHECK(feats.dim() == 3 && boxes.dim() == 3 && boxes.size(2) == 5 && feats.size(1) == boxes.size(1),
              "RegionEmbeddings: expected feats (B, R, F) and boxes (B, R, 5), got ", feats.sizes(), " and ",
              boxes.sizes());
  // 3-D products like the layers': ATen's linear on the fused path (CUDA by default).
  const bool fused = fused_layers_on(feats.device());
  auto x = layer_norm(norm, layer_norm(feature_norm, linear_product(feature, feats, fused)) +
                                layer_norm(box_norm, linear_product(box, boxes, fused)) + type);
  return dropout_ > 0 ? torch::dropout(x, dropout_, is_training()) : x;
}

MultimodalTransformerImpl::MultimodalTransformerImpl(const ModelOptions& m, const InputDims& dims)
    : options_(m), dims_(dims) {
  if (dims.vocab_size <= 0 || dims.region_feat_dim <= 0)
    throw Error("model needs a vocabulary size and a region feature size from the data");
  text_embed = register_module("text_embed", TextEmbeddings(m, dims.vocab_size));
  image_embed = register_module("image_embed", RegionEmbeddings(m, dims.region_feat_dim));
  if (m.image_input == "resnet50") resnet = register_module("resnet", ResNet50(m.resnet_frozen));
  layers = register_module("layers", tnn::ModuleList());
  const auto types = layer_types(m);
  first_cross_modal_ = mmt::first_cross_modal_layer(types);
  for (AttentionType type : types) {
    LayerOptions lo;
    lo.hidden = m.hidden, lo.num_heads = m.num_heads, lo.head_dim = m.head_dim, lo.ffn_dim = m.ffn_dim;
    lo.dropout = m.dropout, lo.pre_norm = m.pre_norm, lo.layer_norm_eps = m.layer_norm_eps, lo.type = type;
    layers->push_back(MultimodalLayer(lo));
  }
  auto ln = [&] { return tnn::LayerNorm(tnn::LayerNormOptions({m.hidden}).eps(m.layer_norm_eps)); };
  if (m.pre_norm) {
    text_final_norm = register_module("text_final_norm", ln());
    image_final_norm = register_module("image_final_norm", ln());
  }
  itm_text_pool = register_module("itm_text_pool", tnn::Linear(m.hidden, m.hidden));
  if (m.itm_pooling == "product") itm_image_pool = register_module("itm_image_pool", tnn::Linear(m.hidden, m.hidden));
  itm_classifier = register_module("itm_classifier", tnn::Linear(m.hidden, 2));
  mlm_transform = register_module("mlm_transform", tnn::Linear(m.hidden, m.hidden));
  mlm_norm = register_module("mlm_norm", ln());
  mlm_bias = register_parameter("mlm_bias", torch::zeros({dims.vocab_size}));
  if (dims.region_classes > 0) {
    mrm_feature_transform = register_module("mrm_feature_transform", tnn::Linear(m.hidden, m.hidden));
    mrm_feature_norm = register_module("mrm_feature_norm", ln());
    mrm_feature_out = register_module("mrm_feature_out", tnn::Linear(m.hidden, dims.region_feat_dim));
    mrm_class_transform = register_module("mrm_class_transform", tnn::Linear(m.hidden, m.hidden));
    mrm_class_norm = register_module("mrm_class_norm", ln());
    mrm_class_out = register_module("mrm_class_out", tnn::Linear(m.hidden, dims.region_classes));
  }
  if ((m.kind == "dual_encoder" && m.dual_score == "dot") || m.align) {
    text_proj = register_module("text_proj", tnn::Linear(m.hidden, m.embed_dim));
    image_proj = register_module("image_proj", tnn::Linear(m.hidden, m.embed_dim));
    logit_scale = register_parameter("logit_scale", torch::full({}, std::log(1.0 / m.temperature_init)));
  }
  init_weights();
}

void MultimodalTransformerImpl::init_weights() {
  torch::NoGradGuard no_grad;
  const double std = options_.init_std;
  for (auto& mod : modules(/*include_self=*/false)) {
    if (auto* lin = mod->as<tnn::Linear>()) {
      lin->weight.normal_(0.0, std);
      if (lin->bias.defined()) lin->bias.zero_();
    } else if (auto* emb = mod->as<tnn::Embedding>()) {
      emb->weight.normal_(0.0, std);
    } else if (auto* norm = mod->as<tnn::LayerNorm>()) {
      norm->weight.fill_(1.0);
      norm->bias.zero_();
    }
  }
  // MRM zeroes a masked region's feature (the paper's masking), so the region's feature embedding
  // is feature_norm(feature.bias): with the bias at zero, the LayerNorm of a constant vector, whose
  // input gradient is 1 / sqrt(layer_norm_eps) = 1e6 times the upstream one. The bias's gradient
  // then outweighed all others by 10^3-10^4 (a grad norm of 3.4e4 at the demo's step 1 against ~5),
  // global-norm clipping scaled every other gradient down by as much, and it lasted until the bias
  // had grown by the learning rates' sum (docs/losses.md, "A masked region's embedding"). Drawn
  // like the weights - last, so every other parameter keeps the values it had.
  image_embed->feature->bias.normal_(0.0, std);
}

std::pair<torch::Tensor, torch::Tensor> MultimodalTransformerImpl::pixel_features(const torch::Tensor& pixels) {
  TORCH_CHECK(pixels.dim() == 4 && pixels.size(1) == 3, "pixel_features: pixels must be (B, 3, S, S), got ",
              pixels.sizes());
  const int64_t b = pixels.size(0);
  torch::Tensor grid;  // (B, G, G, F)
  if (resnet) {
    grid = resnet->features(pixels).permute({0, 2, 3, 1});
  } else {
    const int64_t p = options_.patch_size;
    TORCH_CHECK(pixels.size(2) % p == 0 && pixels.size(3) % p == 0, "pixel_features: image ", pixels.sizes(),
                " is not a multiple of patch_size ", p);
    // (B, 3, G, G, p, p) -> (B, G, G, 3 * p * p): ViT's flattened patches
    grid = pixels.unfold(2, p, p).unfold(3, p, p).permute({0, 2, 3, 1, 4, 5}).reshape(
        {b, pixels.size(2) / p, pixels.size(3) / p, 3 * p * p});
  }
  const int64_t gh = grid.size(1), gw = grid.size(2);
  auto tokens = grid.reshape({b, gh * gw, grid.size(3)});
  auto feats = torch::cat({tokens.mean(1, /*keepdim=*/true), tokens}, 1);
  // Boxes (x1, y1, x2, y2, area): the whole image for the global token, then the grid cells in
  // row-major order. Built where the pixels are: a copy from the host would wait for the device.
  const auto opts = torch::device(feats.device()).dtype(torch::kFloat32);
  const auto col = torch::arange(gw, opts).repeat({gh}), row = torch::arange(gh, opts).repeat_interleave(gw);
  const auto cells = torch::stack({col / static_cast<double>(gw), row / static_cast<double>(gh),
                                   (col + 1) / static_cast<double>(gw), (row + 1) / static_cast<double>(gh),
                                   torch::full({gh * gw}, 1.0 / static_cast<double>(gh * gw), opts)},
                                  1);
  auto whole = torch::ones({1, 5}, opts);
  whole.narrow(1, 0, 2).zero_();  // (0, 0, 1, 1, 1)
  const auto boxes = torch::cat({whole, cells}, 0);
  return {feats, boxes.unsqueeze(0).expand({b, -1, -1})};
}

ImageTokens MultimodalTransformerImpl::embed_images(const Batch& batch) {
  if (batch.image_pixels.defined()) {
    auto [feats, boxes] = pixel_features(batch.image_pixels);
    return {image_embed(feats, boxes), torch::ones({feats.size(0), feats.size(1)}, torch::device(feats.device()).dtype(torch::kBool))};
  }
  TORCH_CHECK(options_.image_input == "regions", "model reads ", options_.image_input,
              " but the batch holds regions, not pixels");
  return {image_embed(batch.region_feats, batch.region_boxes), batch.region_mask};
}

Encoded MultimodalTransformerImpl::encode(const Batch& batch, bool per_layer) {
  const ImageTokens image = embed_images(batch);
  return encode_embedded(text_embed(batch.text_ids), image.states, batch.text_mask, image.mask, per_layer);
}

Encoded MultimodalTransformerImpl::encode_embedded(torch::Tensor text, torch::Tensor image,
                                                   const torch::Tensor& text_mask,
                                                   const torch::Tensor& image_mask, bool per_layer,
                                                   int64_t first_layer) {
  TORCH_CHECK(text_mask.sizes() == text.sizes().slice(0, 2) && image_mask.sizes() == image.sizes().slice(0, 2),
              "encode: masks must be (B, T) and (B, R), got ", text_mask.sizes(), " and ", image_mask.sizes());
  const auto text_bias = attention_bias(text_mask), image_bias = attention_bias(image_mask);
  Encoded out;
  const int64_t align_after = options_.align ? first_cross_modal_layer() - 1 : -1;
  for (int64_t i = first_layer; i < static_cast<int64_t>(layers->size()); ++i) {
    std::tie(text, image) = run_layer(i, text, image, text_bias, image_bias);
    if (i == align_after) out.align_cls = text.select(1, 0), out.align_img = image.select(1, 0);
    if (per_layer) {  // pre-norm stacks normalise the residual stream before reading it out
      out.layer_cls.push_back(options_.pre_norm ? layer_norm(text_final_norm, text.select(1, 0)) : text.select(1, 0));
      out.layer_img.push_back(options_.pre_norm ? layer_norm(image_final_norm, image.select(1, 0)) : image.select(1, 0));
    }
  }
  std::tie(out.text, out.image) = final_norms(text, image);
  return out;
}

std::pair<torch::Tensor, torch::Tensor> MultimodalTransformerImpl::run_layers(torch::Tensor text, torch::Tensor image,
                                                                            const torch::Tensor& text_mask,
                                                                            const torch::Tensor& image_mask,
                                                                            int64_t begin, int64_t end) {
  const auto text_bias = attention_bias(text_mask), image_bias = attention_bias(image_mask);
  for (int64_t i = begin; i < end; ++i) std::tie(text, image) = run_layer(i, text, image, text_bias, image_bias);
  return {text, image};
}

std::pair<torch::Tensor, torch::Tensor> MultimodalTransformerImpl::run_layer(int64_t i, const torch::Tensor& text,
                                                                           const torch::Tensor& image,
                                                                           const torch::Tensor& text_bias,
                                                                           const torch::Tensor& image_bias) {
  if (!recompute_layers_ || !torch::GradMode::is_enabled())
    return layers[i]->as<MultimodalLayer>()->forward(text, image, text_bias, image_bias);
  // The node keeps the layer (and the masks' biases) until the backward pass reaches it.
  auto layer = std::dynamic_pointer_cast<MultimodalLayerImpl>(layers->ptr(static_cast<size_t>(i)));
  const auto out = recompute_in_backward(
      [layer, text_bias, image_bias](const std::vector<torch::Tensor>& x) {
        auto [t, im] = layer->forward(x[0], x[1], text_bias, image_bias);
        return std::vector<torch::Tensor>{std::move(t), std::move(im)};
      },
      {text, image}, layer->parameters());
  return {out[0], out[1]};
}

torch::Tensor MultimodalTransformerImpl::run_one_modality(const torch::Tensor& states, const torch::Tensor& mask,
                                                          bool text, int64_t begin, int64_t end) {
  if (begin >= end) return states;
  const int64_t n = states.size(0);
  const auto other = torch::zeros({n, 1, states.size(2)}, torch::device(states.device()));
  const auto real = torch::ones({n, 1}, torch::device(states.device()).dtype(torch::kBool));
  return text ? run_layers(states, other, mask, real, begin, end).first : run_layers(other, states, real, mask, begin, end).second;
}

std::pair<torch::Tensor, torch::Tensor> MultimodalTransformerImpl::final_norms(torch::Tensor text, torch::Tensor image) {
  if (options_.pre_norm) return {layer_norm(text_final_norm, text), layer_norm(image_final_norm, image)};
  return {text, image};
}


torch::Tensor MultimodalTransformerImpl::text_embedding(const torch::Tensor& cls) {
  return torch::nn::functional::normalize(text_proj(cls), torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

torch::Tensor MultimodalTransformerImpl::image_embedding(const torch::Tensor& img) {
  return torch::nn::functional::normalize(image_proj(img), torch::nn::functional::NormalizeFuncOptions().dim(-1));
}

torch::Tensor MultimodalTransformerImpl::logit_scale_value() {
  const double cap = std::log(options_.max_logit_scale);
  return logit_scale.clamp(-cap, cap).exp();
}

MultimodalTransformerImpl::MatchEmbeddings MultimodalTransformerImpl::align_embeddings(const torch::Tensor& cls,
                                                                                      const torch::Tensor& img) {
  TORCH_CHECK(options_.align && text_proj, "align_embeddings: this model has no align head (model.align)");
  const auto c = options_.pre_norm ? layer_norm(text_final_norm, cls) : cls;
  const auto i = options_.pre_norm ? layer_norm(image_final_norm, img) : img;
  return {text_embedding(c), image_embedding(i), logit_scale_value(), torch::zeros({}, cls.options())};
}

MultimodalTransformerImpl::MatchEmbeddings MultimodalTransformerImpl::tower_align_embeddings(const Batch& batch) {
  const ImageTokens images = embed_images(batch);
  const auto [text, image] =
      run_layers(text_embed(batch.text_ids), images.states, batch.text_mask, images.mask, 0, first_cross_modal_layer());
  return align_embeddings(text.select(1, 0), image.select(1, 0));
}

torch::Tensor MultimodalTransformerImpl::match_scores(const Encoded& e) {
  const auto cls = e.text.select(1, 0), img = e.image.select(1, 0);
  if (dual_dot()) return logit_scale_value() * (text_embedding(cls) * image_embedding(img)).sum(-1);
  const auto logits = itm_logits(cls, img);
  return logits.select(1, 1) - logits.select(1, 0);
}

MultimodalTransformerImpl::MatchEmbeddings MultimodalTransformerImpl::match_embeddings(const torch::Tensor& cls,
                                                                                      const torch::Tensor& img) {
  if (dual_dot()) return {text_embedding(cls), image_embedding(img), logit_scale_value(), torch::zeros({}, cls.options())};
  // margin = (w1 - w0) . (a * b) + (b1 - b0) with a = tanh(W_t cls), b = tanh(W_i img): bilinear.
  const auto w = itm_classifier->weight, b = itm_classifier->bias;
  const auto a = torch::tanh(itm_text_pool(cls)) * (w[1] - w[0]);
  const auto one = torch::ones({}, cls.options());
  if (!itm_image_pool)  // cls pooling: the image plays no part - one dimension, every image 1
    return {a.sum(-1, /*keepdim=*/true), torch::ones({img.size(0), 1}, img.options()), one, b[1] - b[0]};
  return {a, torch::tanh(itm_image_pool(img)), one, b[1] - b[0]};
}

torch::Tensor MultimodalTransformerImpl::match_score_matrix(const torch::Tensor& cls, const torch::Tensor& img) {
  const MatchEmbeddings e = match_embeddings(cls, img);
  if (dual_dot()) return e.scale * torch::matmul(e.text, e.image.t());
  if (!itm_image_pool) return (e.text.squeeze(1) + e.bias).unsqueeze(1).expand({cls.size(0), img.size(0)});
  return torch::matmul(e.text, e.image.t()) + e.bias;
}

torch::Tensor MultimodalTransformerImpl::itm_logits(const Encoded& e) {
  return itm_logits(e.text.select(1, 0), e.image.select(1, 0));
}

torch::Tensor MultimodalTransformerImpl::itm_logits(const torch::Tensor& cls, const torch::Tensor& img) {
  auto pooled = torch::tanh(itm_text_pool(cls));
  if (itm_image_pool) pooled = pooled * torch::tanh(itm_image_pool(img));
  return itm_classifier(pooled);
}

torch::Tensor MultimodalTransformerImpl::mrm_features(const torch::Tensor& states) {
  TORCH_CHECK(mrm_feature_out, "this model has no MRM heads (they need region inputs)");
  return mrm_feature_out(layer_norm(mrm_feature_norm, torch::gelu(mrm_feature_transform(states))));
}

torch::Tensor MultimodalTransformerImpl::mrm_class_logits(const torch::Tensor& states) {
  TORCH_CHECK(mrm_class_out, "this model has no MRM heads (they need region inputs)");
  return mrm_class_out(layer_norm(mrm_class_norm, torch::gelu(mrm_class_transform(states))));
}

torch::Tensor MultimodalTransformerImpl::mlm_logits(const torch::Tensor& states) {
  auto h = layer_norm(mlm_norm, torch::gelu(mlm_transform(states)));
  return torch::linear(h, text_embed->word->weight, mlm_bias);
}

}  // namespace mmt
