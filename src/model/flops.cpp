/* Analytic FLOP counts (see flops.h). */
#include "mmt/model/flops.h"

#include "mmt/data/batch.h"
#include "mmt/model/transformer.h"

namespace mmt {

double forward_flops(const ModelOptions& m, const InputDims& dims, int64_t text_len, int64_t regions, int64_t masked) {
  const double h = static_cast<double>(m.hidden), inner = static_cast<double>(m.num_heads * m.head_dim);
  const double t = static_cast<double>(text_len), r = static_cast<double>(regions);
  double f = 2.0 * r * (static_cast<double>(dims.region_feat_dim) + 5.0) * h;  // region projections
  for (AttentionType type : layer_types(m)) {
    const AttentionPattern p = attention_pattern(type);
    const double tokens = t + r;
    f += 2.0 * tokens * h * inner * 4.0;                    // q, k, v, out
    f += 2.0 * tokens * h * static_cast<double>(m.ffn_dim) * 2.0;  // feed-forward
    const double text_keys = (p.text_to_text ? t : 0) + (p.text_to_image ? r : 0);
    const double image_keys = (p.image_to_text ? t : 0) + (p.image_to_image ? r : 0);
    f += 2.0 * 2.0 * inner * (t * text_keys + r * image_keys);  // scores and weighted values
  }
  f += 2.0 * h * h * (m.itm_pooling == "product" ? 2.0 : 1.0) + 2.0 * h * 2.0;  // ITM head
  f += 2.0 * static_cast<double>(masked) * h * (h + static_cast<double>(dims.vocab_size));  // MLM head
  return f;
}

double batch_train_flops(const ModelOptions& m, const InputDims& dims, const Batch& batch) {
  const int64_t b = batch.size();
  auto on_host = [](const torch::Tensor& per_row) { return per_row.to(torch::kCPU).to(torch::kInt64).contiguous(); };
  const auto t = on_host(batch.text_mask.sum(1));
  torch::Tensor r;
  if (batch.image_pixels.defined()) {
    // Pixel inputs: every image has the same tokens (the grid plus the global one). Patches: a grid
    // of patch_size squares; ResNet-50: its stride-32 feature map (its own convolutions are not
    // counted).
    const int64_t stride = m.image_input == "patches" ? m.patch_size : 32;
    const int64_t g = (batch.image_pixels.size(2) / stride) * (batch.image_pixels.size(3) / stride);
    r = torch::full({b}, g + 1, torch::kInt64);
  } else {
    r = on_host(batch.region_mask.sum(1));
  }
  const auto masked = batch.mlm_labels.defined() ? on_host(batch.mlm_labels.ne(kIgnoreLabel).sum(1)) : torch::zeros({b}, torch::kInt64);
  const int64_t *tp = t.data_ptr<int64_t>(), *rp = r.data_ptr<int64_t>(), *mp = masked.data_ptr<int64_t>();
  double total = 0;
  for (int64_t i = 0; i < b; ++i) total += forward_flops(m, dims, tp[i], rp[i], mp[i]);
  return 3.0 * total;
}

}  // namespace mmt
