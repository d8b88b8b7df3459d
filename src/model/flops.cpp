/* Analytic FLOP counts (see flops.h). */
#include "mmt/model/flops.h"

#include <algorithm>
#include <cstdio>

#include "mmt/config/config.h"
#include "mmt/data/batch.h"
#include "mmt/model/transformer.h"

namespace mmt {

namespace {

// Cells per side of a pixel model's image grid.
int64_t pixel_grid(const ModelOptions& m, int64_t side) {
  return m.image_input == "patches" ? side / m.patch_size : (side + 31) / 32;
}

}  // namespace

int64_t pixel_positions(const ModelOptions& m, int64_t side) {
  const int64_t grid = pixel_grid(m, side);
  return 1 + grid * grid;
}

int64_t max_image_positions(const ExperimentConfig& cfg) {
  if (cfg.model.image_input != "regions") return pixel_positions(cfg.model, pixel_image_size(cfg));
  const int64_t regions =
      cfg.data.source == "synthetic" ? std::min(cfg.data.synth.max_objects, cfg.data.max_regions) : cfg.data.max_regions;
  return regions + 1;
}

std::string describe_positions(const ExperimentConfig& cfg) {
  const ModelOptions& m = cfg.model;
  const int64_t n = max_image_positions(cfg), side = pixel_image_size(cfg), grid = pixel_grid(m, side);
  std::string s;
  if (m.image_input == "patches")
    s = std::to_string(n) + " image positions (the global one + a " + std::to_string(grid) + " x " + std::to_string(grid) +
        " grid of " + std::to_string(m.patch_size) + " px patches of " + std::to_string(side) + " px images)";
  else if (m.image_input == "resnet50")
    s = std::to_string(n) + " image positions (the global one + the ResNet-50's " + std::to_string(grid) + " x " +
        std::to_string(grid) + " map of " + std::to_string(side) + " px images)";
  else
    s = "up to " + std::to_string(n) + " image positions (the global one + regions)";
  return s + " + up to " + std::to_string(m.max_text_len) + " text tokens";
}

std::string format_flop_rate(double flops_per_second) {
  char b[48];
  const bool tera = flops_per_second >= 1e12;
  std::snprintf(b, sizeof b, "%.1f %sFLOP/s", flops_per_second / (tera ? 1e12 : 1e9), tera ? "T" : "G");
  return b;
}

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
    // Pixel inputs: every image has the same tokens (the grid plus the global one; the ResNet-50's
    // own convolutions are not counted).
    r = torch::full({b}, pixel_positions(m, batch.image_pixels.size(2)), torch::kInt64);
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
