/* Multimodal transformer layer (see layer.h). */
#include "mmt/model/layer.h"

#include <cmath>

#include "mmt/model/fused_attention.h"

namespace mmt {

namespace tnn = torch::nn;

torch::Tensor attention_bias(const torch::Tensor& mask) {
  // (B, L) bool -> (B, 1, 1, L) float: 0 where real, kMaskValue where padding.
  return torch::zeros(mask.sizes(), torch::device(mask.device()).dtype(torch::kFloat))
      .masked_fill_(mask.logical_not(), kMaskValue)
      .view({mask.size(0), 1, 1, mask.size(1)});
}

StreamWeightsImpl::StreamWeightsImpl(const LayerOptions& o) {
  const int64_t inner = o.num_heads * o.head_dim;
  query = register_module("query", tnn::Linear(o.hidden, inner));
  key = register_module("key", tnn::Linear(o.hidden, inner));
  value = register_module("value", tnn::Linear(o.hidden, inner));
  out = register_module("out", tnn::Linear(inner, o.hidden));
  attn_norm = register_module("attn_norm", tnn::LayerNorm(tnn::LayerNormOptions({o.hidden}).eps(o.layer_norm_eps)));
  ffn_in = register_module("ffn_in", tnn::Linear(o.hidden, o.ffn_dim));
  ffn_out = register_module("ffn_out", tnn::Linear(o.ffn_dim, o.hidden));
  ffn_norm = register_module("ffn_norm", tnn::LayerNorm(tnn::LayerNormOptions({o.hidden}).eps(o.layer_norm_eps)));
}

MultimodalLayerImpl::MultimodalLayerImpl(const LayerOptions& o)
    : options_(o), pattern_(attention_pattern(o.type)) {
  if (pattern_.shared_weights) {
    text_ = image_ = register_module("shared", StreamWeights(o));
  } else {
    text_ = register_module("text", StreamWeights(o));
    image_ = register_module("image", StreamWeights(o));
  }
}

namespace {
// (B, L, heads * dim) -> (B, L, heads, dim): a view, the layout fused_attention reads.
torch::Tensor split_heads(const torch::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, -1});
}
}  // namespace

torch::Tensor MultimodalLayerImpl::attend(StreamWeightsImpl& w, const torch::Tensor& q_in,
                                          const torch::Tensor& k_text, const torch::Tensor& v_text,
                                          const torch::Tensor& k_image, const torch::Tensor& v_image,
                                          const torch::Tensor& text_bias, const torch::Tensor& image_bias,
                                          bool use_text, bool use_image) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(options_.head_dim));
  const auto q = split_heads(w.query(q_in), options_.num_heads);  // (B, Lq, h, d)
  torch::Tensor k, v, bias;
  if (use_text && use_image) {
    k = torch::cat({k_text, k_image}, 1);
    v = torch::cat({v_text, v_image}, 1);
    bias = torch::cat({text_bias, image_bias}, 3);
  } else if (use_text) {
    k = k_text, v = v_text, bias = text_bias;
  } else {
    k = k_image, v = v_image, bias = image_bias;
  }
  return w.out(fused_attention(q, k, v, bias, scale));  // (B, Lq, h * d) -> (B, Lq, H)
}

torch::Tensor MultimodalLayerImpl::ffn(StreamWeightsImpl& w, const torch::Tensor& x) {
  return w.ffn_out(torch::gelu(w.ffn_in(x)));
}

std::pair<torch::Tensor, torch::Tensor> MultimodalLayerImpl::forward(const torch::Tensor& text,
                                                                     const torch::Tensor& image,
                                                                     const torch::Tensor& text_bias,
                                                                     const torch::Tensor& image_bias) {
  TORCH_CHECK(text.dim() == 3 && image.dim() == 3 && text.size(0) == image.size(0) &&
                  text.size(2) == options_.hidden && image.size(2) == options_.hidden,
              "MultimodalLayer: expected text (B, T, ", options_.hidden, ") and image (B, R, ",
              options_.hidden, "), got ", text.sizes(), " and ", image.sizes());
  const auto& p = pattern_;
  const bool pre = options_.pre_norm;
  const double drop = is_training() ? options_.dropout : 0.0;
  const int64_t heads = options_.num_heads;

  const auto t_in = pre ? text_->attn_norm(text) : text;
  const auto i_in = pre ? image_->attn_norm(image) : image;
  // Keys/values of a modality, computed once and shared by every query block that needs them.
  torch::Tensor k_t, v_t, k_i, v_i;
  if (p.text_to_text || p.image_to_text) {
    k_t = split_heads(text_->key(t_in), heads);
    v_t = split_heads(text_->value(t_in), heads);
  }
  if (p.text_to_image || p.image_to_image) {
    k_i = split_heads(image_->key(i_in), heads);
    v_i = split_heads(image_->value(i_in), heads);
  }
  auto a_t = attend(*text_, t_in, k_t, v_t, k_i, v_i, text_bias, image_bias, p.text_to_text, p.text_to_image);
  auto a_i = attend(*image_, i_in, k_t, v_t, k_i, v_i, text_bias, image_bias, p.image_to_text, p.image_to_image);
  if (drop > 0) a_t = torch::dropout(a_t, drop, true), a_i = torch::dropout(a_i, drop, true);

  auto block = [&](StreamWeightsImpl& w, const torch::Tensor& x, const torch::Tensor& a) {
    if (pre) {
      auto h = x + a;
      auto f = ffn(w, w.ffn_norm(h));
      return h + (drop > 0 ? torch::dropout(f, drop, true) : f);
    }
    auto h = w.attn_norm(x + a);
    auto f = ffn(w, h);
    return w.ffn_norm(h + (drop > 0 ? torch::dropout(f, drop, true) : f));
  };
  return {block(*text_, text, a_t), block(*image_, image, a_i)};
}

}  // namespace mmt
