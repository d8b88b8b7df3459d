/* Multimodal transformer layer (see layer.h). */
#include "mmt/model/layer.h"

#include <cmath>
#include <tuple>
#include <vector>

#include <c10/core/impl/LocalDispatchKeySet.h>

#include "mmt/model/fused_attention.h"
#include "mmt/util/device.h"

namespace mmt {

namespace tnn = torch::nn;

torch::Tensor layer_norm(torch::nn::LayerNorm& ln, const torch::Tensor& x) {
  const auto low = autocast_dtype(x.device());
  if (!low) return ln(x);
  // Autocast would run the norm in fp32: step out of it and give the kernel bf16 throughout.
  const c10::impl::ExcludeDispatchKeyGuard no_autocast(x.is_cuda() ? c10::DispatchKey::AutocastCUDA
                                                                    : c10::DispatchKey::AutocastCPU);
  const auto& o = ln->options;
  return torch::layer_norm(x.to(*low), o.normalized_shape(), ln->weight.to(*low), ln->bias.to(*low), o.eps());
}

torch::Tensor linear_product(torch::nn::Linear& l, const torch::Tensor& x, bool fused) {
  return fused ? torch::linear(x, l->weight, l->bias) : l(x);
}

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

// A stream's fused q/k/v product, (B, L, 3 * h * d): the three weights side by side.
torch::Tensor qkv_product(StreamWeightsImpl& w, const torch::Tensor& x) {
  return torch::linear(x, torch::cat({w.query->weight, w.key->weight, w.value->weight}),
                       torch::cat({w.query->bias, w.key->bias, w.value->bias}));
}

// q, k and v of a fused product, (B, L, h, d) each. unbind, not three narrows: its backward writes
// the product's gradient once (a stack), where each narrow's filled a zero tensor of the product's
// size, copied its part in, and the three were added (an H200 base step: ~5 % in those).
std::vector<torch::Tensor> heads_of(const torch::Tensor& qkv, int64_t heads, int64_t head_dim) {
  return qkv.view({qkv.size(0), qkv.size(1), 3, heads, head_dim}).unbind(2);
}
}  // namespace

MultimodalLayerImpl::Projections MultimodalLayerImpl::project(StreamWeightsImpl& w, const torch::Tensor& x, bool keys) {
  const int64_t heads = options_.num_heads;
  if (!keys) return {split_heads(linear_product(w.query, x, true), heads), {}, {}};  // fused: ATen's linear too
  const auto parts = heads_of(qkv_product(w, x), heads, options_.head_dim);
  return {parts[0], parts[1], parts[2]};
}

torch::Tensor MultimodalLayerImpl::attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                          const torch::Tensor& bias) {
  const double scale = 1.0 / std::sqrt(static_cast<double>(options_.head_dim));
  return fused_attention(q, k, v, bias, scale);  // (B, Lq, h * d)
}

torch::Tensor MultimodalLayerImpl::ffn(StreamWeightsImpl& w, const torch::Tensor& x, bool fused) {
  return linear_product(w.ffn_out, torch::gelu(linear_product(w.ffn_in, x, fused)), fused);
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

  const auto t_in = pre ? layer_norm(text_->attn_norm, text) : text;
  const auto i_in = pre ? layer_norm(image_->attn_norm, image) : image;
  // Keys/values of a modality, computed once and shared by every query block that needs them.
  const bool fused = options_.fused < 0 ? fused_layers_on(text.device()) : options_.fused > 0;
  const bool text_keys = p.text_to_text || p.image_to_text, image_keys = p.text_to_image || p.image_to_image;
  const int64_t heads = options_.num_heads;
  // Both streams read every key (merged, single-stream): one attention over the joint queries.
  const bool joint = fused && p.text_to_text && p.text_to_image && p.image_to_text && p.image_to_image;
  torch::Tensor q_t, k_t, v_t, q_i, k_i, v_i;
  if (fused && !joint) {
    Projections pt = project(*text_, t_in, text_keys), pi = project(*image_, i_in, image_keys);
    q_t = pt.q, k_t = pt.k, v_t = pt.v, q_i = pi.q, k_i = pi.k, v_i = pi.v;
  } else if (!fused) {
    // Separate products in the reference order - keys and values first, each stream's queries just
    // before its attention: the order in which autograd sums an input's gradient contributions, and
    // so the CPU's results to the last bit (the study's numbers), depends on it.
    if (text_keys) k_t = split_heads(text_->key(t_in), heads), v_t = split_heads(text_->value(t_in), heads);
    if (image_keys) k_i = split_heads(image_->key(i_in), heads), v_i = split_heads(image_->value(i_in), heads);
  }
  torch::Tensor a_t, a_i;
  if (joint) {
    // One attention kernel, and fuller tiles than 12 text rows alone (on an H100 the attention of
    // a base step took 10 % of its time as two calls). The streams' q/k/v products are joined
    // along the sequence once, contiguous rows - three cats of the strided q, k and v views took
    // 3.5 ms of an H200 base step - or, with one set of weights (single-stream), computed as one
    // product over the joined inputs.
    const int64_t t = text.size(1), r = image.size(1);
    const auto qkv = p.shared_weights ? qkv_product(*text_, torch::cat({t_in, i_in}, 1))
                                      : torch::cat({qkv_product(*text_, t_in), qkv_product(*image_, i_in)}, 1);
    const auto heads_qkv = heads_of(qkv, heads, options_.head_dim);
    const auto parts = attend(heads_qkv[0], heads_qkv[1], heads_qkv[2], torch::cat({text_bias, image_bias}, 3))
                           .split_with_sizes({t, r}, 1);
    // contiguous: a split part's product copies it anyway (matmul's reshape), and ATen's linear
    // then takes its single-product path with the bias inside.
    a_t = linear_product(text_->out, parts[0].contiguous(), fused);
    a_i = linear_product(image_->out, parts[1].contiguous(), fused);
  } else {
    // The key blocks a stream's queries see: one modality's, or both side by side. (Joining them
    // once for both streams would change the graph, and with it the order of the gradient sums.)
    auto seen = [&](bool use_text, bool use_image) -> std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> {
      if (use_text && use_image)
        return {torch::cat({k_t, k_i}, 1), torch::cat({v_t, v_i}, 1), torch::cat({text_bias, image_bias}, 3)};
      if (use_text) return {k_t, v_t, text_bias};
      return {k_i, v_i, image_bias};
    };
    if (!q_t.defined()) q_t = split_heads(text_->query(t_in), heads);
    const auto [kt, vt, bt] = seen(p.text_to_text, p.text_to_image);
    a_t = linear_product(text_->out, attend(q_t, kt, vt, bt), fused);
    if (!q_i.defined()) q_i = split_heads(image_->query(i_in), heads);
    const auto [ki, vi, bi] = seen(p.image_to_text, p.image_to_image);
    a_i = linear_product(image_->out, attend(q_i, ki, vi, bi), fused);
  }
  if (drop > 0) a_t = torch::dropout(a_t, drop, true), a_i = torch::dropout(a_i, drop, true);

  auto block = [&](StreamWeightsImpl& w, const torch::Tensor& x, const torch::Tensor& a) {
    if (pre) {
      auto h = x + a;
      auto f = ffn(w, layer_norm(w.ffn_norm, h), fused);
      return h + (drop > 0 ? torch::dropout(f, drop, true) : f);
    }
    auto h = layer_norm(w.attn_norm, x + a);
    auto f = ffn(w, h, fused);
    return layer_norm(w.ffn_norm, h + (drop > 0 ? torch::dropout(f, drop, true) : f));
  };
  return {block(*text_, text, a_t), block(*image_, image, a_i)};
}

}  // namespace mmt
