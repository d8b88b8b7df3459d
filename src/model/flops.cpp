/* Analytic FLOP counts (see flops.h). */
#include "mmt/model/flops.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <tuple>
#include <utility>
#include <vector>

#include "mmt/config/config.h"
#include "mmt/data/batch.h"
#include "mmt/model/attention.h"
#include "mmt/model/transformer.h"

namespace mmt {

namespace {

// A convolution's output side (square input and kernel).
int64_t conv_out(int64_t side, int64_t kernel, int64_t stride, int64_t pad) { return (side + 2 * pad - kernel) / stride + 1; }

// Cells per side of a pixel model's image grid.
int64_t pixel_grid(const ModelOptions& m, int64_t side) {
  return m.image_input == "patches" ? side / m.patch_size : (side + 31) / 32;
}

}  // namespace

double resnet50_forward_flops(int64_t side) {
  double f = 0;
  // A k x k convolution from `in` to `out` channels on a side s image; returns its output side.
  auto conv = [&f](int64_t s, int64_t k, int64_t in, int64_t out, int64_t stride, int64_t pad) {
    const int64_t o = conv_out(s, k, stride, pad);
    f += 2.0 * static_cast<double>(k * k * in * out) * static_cast<double>(o * o);
    return o;
  };
  int64_t s = conv(side, 7, 3, 64, 2, 3);
  s = conv_out(s, 3, 2, 1);  // max pool
  int64_t in = 64;
  for (const auto& [width, blocks, stride] : {std::tuple<int64_t, int64_t, int64_t>{64, 3, 1}, {128, 4, 2}, {256, 6, 2}, {512, 3, 2}}) {
    for (int64_t i = 0; i < blocks; ++i) {  // bottleneck: 1x1, 3x3 (the block's stride), 1x1 to 4 x width
      const int64_t st = i == 0 ? stride : 1;
      conv(s, 1, in, width, 1, 0);
      const int64_t o = conv(s, 3, width, width, st, 1);
      conv(o, 1, width, 4 * width, 1, 0);
      if (i == 0) conv(s, 1, in, 4 * width, st, 0);  // the projection shortcut
      in = 4 * width, s = o;
    }
  }
  return f;
}

int64_t pixel_positions(const ModelOptions& m, int64_t side) {
  const int64_t grid = pixel_grid(m, side);
  return 1 + grid * grid;
}

int64_t max_image_positions(const ExperimentConfig& cfg) {
  if (cfg.model.image_input != "regions") return pixel_positions(cfg.model, pixel_image_size(cfg));
  const int64_t regions =
      cfg.data.source == "synthetic"
          ? std::min(std::max(cfg.data.synth.max_objects, cfg.data.synth.train_objects_max()), cfg.data.max_regions)
          : cfg.data.max_regions;
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

namespace {

// layers_forward_flops over the stack's layer types, listed once by the caller.
double stack_flops(const ModelOptions& m, const std::vector<AttentionType>& types, int64_t text_len, int64_t regions,
                   int64_t begin, int64_t end) {
  const double h = static_cast<double>(m.hidden), inner = static_cast<double>(m.num_heads * m.head_dim);
  const double t = static_cast<double>(text_len), r = static_cast<double>(regions);
  double f = 0;
  for (int64_t l = std::max<int64_t>(begin, 0); l < std::min<int64_t>(end, static_cast<int64_t>(types.size())); ++l) {
    const AttentionPattern p = attention_pattern(types[static_cast<size_t>(l)]);
    const double tokens = t + r;
    f += 2.0 * tokens * h * inner * 4.0;                            // q, k, v, out
    f += 2.0 * tokens * h * static_cast<double>(m.ffn_dim) * 2.0;  // feed-forward
    const double text_keys = (p.text_to_text ? t : 0) + (p.text_to_image ? r : 0);
    const double image_keys = (p.image_to_text ? t : 0) + (p.image_to_image ? r : 0);
    f += 2.0 * 2.0 * inner * (t * text_keys + r * image_keys);  // scores and weighted values
  }
  return f;
}

double image_embed_flops(const ModelOptions& m, const InputDims& dims, int64_t regions) {
  return 2.0 * static_cast<double>(regions) * (static_cast<double>(dims.region_feat_dim) + 5.0) * static_cast<double>(m.hidden);
}

double itm_head_flops(const ModelOptions& m) {
  const double h = static_cast<double>(m.hidden);
  return 2.0 * h * h * (m.itm_pooling == "product" ? 2.0 : 1.0) + 2.0 * h * 2.0;
}

std::vector<int64_t> per_row(const torch::Tensor& counts) {
  const auto c = counts.to(torch::kCPU).to(torch::kInt64).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// Image tokens of each row: the pixel grid and the global token, or the real regions.
std::vector<int64_t> image_tokens(const ModelOptions& m, const Batch& batch) {
  if (batch.image_pixels.defined())
    return std::vector<int64_t>(static_cast<size_t>(batch.image_pixels.size(0)), pixel_positions(m, batch.image_pixels.size(2)));
  return per_row(batch.region_mask.sum(1));
}

// forward_flops over the stack's layer types, listed once by the caller.
double example_flops(const ModelOptions& m, const std::vector<AttentionType>& types, const InputDims& dims, int64_t text_len,
                     int64_t regions, int64_t masked) {
  const double h = static_cast<double>(m.hidden);
  return image_embed_flops(m, dims, regions) + stack_flops(m, types, text_len, regions, 0, static_cast<int64_t>(types.size())) +
         itm_head_flops(m) + 2.0 * static_cast<double>(masked) * h * (h + static_cast<double>(dims.vocab_size));  // MLM head
}

// The main pass, forward + backward, of rows of t text and r image tokens with `masked` MLM tokens.
double main_pass_flops(const ModelOptions& m, const std::vector<AttentionType>& types, const InputDims& dims,
                       const std::vector<int64_t>& t, const std::vector<int64_t>& r, const Batch& batch) {
  const auto masked = batch.mlm_labels.defined() ? per_row(batch.mlm_labels.ne(kIgnoreLabel).sum(1)) : std::vector<int64_t>(t.size(), 0);
  double total = 0;
  for (size_t i = 0; i < t.size(); ++i) total += example_flops(m, types, dims, t[i], r[i], masked[i]);
  return 3.0 * total;
}

}  // namespace

double layers_forward_flops(const ModelOptions& m, int64_t text_len, int64_t regions, int64_t begin, int64_t end) {
  return stack_flops(m, layer_types(m), text_len, regions, begin, end);
}

double backbone_forward_flops(const ModelOptions& m, int64_t regions, int64_t image_side) {
  if (m.image_input != "resnet50" || regions < 2) return 0;
  if (image_side > 0) return resnet50_forward_flops(image_side);
  return resnet50_forward_flops(32 * std::llround(std::sqrt(static_cast<double>(regions - 1))));  // 1 + grid^2 tokens
}

double forward_flops(const ModelOptions& m, const InputDims& dims, int64_t text_len, int64_t regions, int64_t masked,
                     int64_t image_side) {
  return example_flops(m, layer_types(m), dims, text_len, regions, masked) + backbone_forward_flops(m, regions, image_side);
}

double batch_train_flops(const ModelOptions& m, const InputDims& dims, const Batch& batch) {
  return main_pass_flops(m, layer_types(m), dims, per_row(batch.text_mask.sum(1)), image_tokens(m, batch), batch);
}

StepFlops& StepFlops::operator+=(const StepFlops& o) {
  main += o.main, contrastive += o.contrastive, align_towers += o.align_towers, hard_negatives += o.hard_negatives;
  momentum_mlm += o.momentum_mlm;
  return *this;
}

std::string StepFlops::shares() const {
  const double all = total();
  if (all <= 0 || main >= all) return "";
  std::string s;
  for (const auto& [name, part] : std::vector<std::pair<const char*, double>>{
           {"main pass", main}, {"contrastive ITM", contrastive}, {"align towers", align_towers},
           {"hard-negative scoring", hard_negatives}, {"momentum MLM teacher", momentum_mlm}}) {
    if (part <= 0) continue;
    char b[64];
    std::snprintf(b, sizeof b, "%s%s %.0f%%", s.empty() ? "" : ", ", name, 100.0 * part / all);
    s += b;
  }
  return s;
}

StepFlops step_train_flops(const ExperimentConfig& cfg, const InputDims& dims, const Batch& batch) {
  const ModelOptions& m = cfg.model;
  const TrainOptions& tr = cfg.train;
  const std::vector<AttentionType> types = layer_types(m);
  const int64_t b = batch.size(), layers = static_cast<int64_t>(types.size()), towers = first_cross_modal_layer(types);
  const bool crosses = towers < layers;
  const double h = static_cast<double>(m.hidden);
  const auto t = per_row(batch.text_mask.sum(1)), r = image_tokens(m, batch);
  // A ResNet-50 runs once for every image a pass embeds: forward, and backward too where the pass
  // has gradient and the backbone trains (model.resnet_frozen = false).
  const double backbone =
      m.image_input != "resnet50"
          ? 0.0
          : resnet50_forward_flops(batch.image_pixels.defined() ? batch.image_pixels.size(2) : pixel_image_size(cfg));
  const double backbone_trained = backbone * (m.resnet_frozen ? 1.0 : 3.0);
  const double main_pass = main_pass_flops(m, types, dims, t, r, batch);
  StepFlops f;
  f.main = main_pass + static_cast<double>(b) * backbone_trained;
  if (m.align && tr.momentum_mlm_teacher())
    // The momentum model's forward pass over the batch with its MLM head (no ITM head).
    f.momentum_mlm = main_pass / 3.0 + static_cast<double>(b) * (backbone - itm_head_flops(m));
  if (batch.mrm_mask.defined()) {  // the MRM heads on the masked regions
    const double regions = static_cast<double>(batch.mrm_mask.sum().item<int64_t>());
    double head = 0;
    if (tr.mrm_regression_weight > 0) head += 2.0 * h * (h + static_cast<double>(dims.region_feat_dim));
    if (tr.mrm_kl_weight > 0 || tr.mrm_class_weight > 0) head += 2.0 * h * (h + static_cast<double>(dims.region_classes));
    f.main += 3.0 * regions * head;
  }
  if (b == 0) return f;

  // The rows the step turns negative (hard negatives), and those matched when the losses read them.
  const auto hard_rows = batch.hard_negative_rows.defined() ? per_row(batch.hard_negative_rows) : std::vector<int64_t>(static_cast<size_t>(b), 0);
  const bool hard = std::find(hard_rows.begin(), hard_rows.end(), 1) != hard_rows.end();
  std::vector<char> matched(static_cast<size_t>(b), 1);
  const auto labels = batch.itm_labels.defined() ? per_row(batch.itm_labels) : std::vector<int64_t>(static_cast<size_t>(b), 1);
  const bool rows_stay = tr.itm_swap == "both";  // both keeps the marked rows matched and adds the negatives
  for (int64_t i = 0; i < b; ++i) matched[i] = labels[i] == 1 && (!hard_rows[i] || rows_stay);

  if (tr.itm_contrastive_weight > 0 && batch.negatives && batch.negative_excluded.defined()) {
    const auto pool = image_tokens(m, *batch.negatives);
    double fwd = 0;
    for (int64_t p : pool) fwd += image_embed_flops(m, dims, p);
    if (crosses)  // the pool's images through the layers below the first cross-modal one, once
      for (int64_t p : pool) fwd += stack_flops(m, types, 0, p, 0, towers);
    int64_t captions = 0;
    for (int64_t a = 0; a < b; ++a) {
      if (!matched[a]) continue;
      ++captions;
      fwd += image_embed_flops(m, dims, r[a]);
      if (crosses) {  // the caption and its image below, once; above, one pass per (caption, candidate) pair
        fwd += stack_flops(m, types, t[a], r[a], 0, towers);
        fwd += stack_flops(m, types, t[a], r[a], towers, layers) + itm_head_flops(m);
        for (int64_t p : pool) fwd += stack_flops(m, types, t[a], p, towers, layers) + itm_head_flops(m);
      } else {  // one pass per caption with its image; the pool's images once
        fwd += stack_flops(m, types, t[a], r[a], 0, layers);
      }
    }
    if (!crosses && captions > 0) {
      for (int64_t p : pool) fwd += stack_flops(m, types, 1, p, 0, layers);
      fwd += 2.0 * static_cast<double>(captions) * static_cast<double>(captions + static_cast<int64_t>(pool.size())) * h;
    }
    f.contrastive = 3.0 * fwd + static_cast<double>(captions + static_cast<int64_t>(pool.size())) * backbone_trained;
  }

  if (m.align && tr.align_weight > 0 && tr.align_inputs == "unmasked") {
    // The towers rerun, with gradient, for a modality the batch masked (pretraining.cpp align_states).
    const bool text = batch.mlm_labels.defined() && batch.mlm_labels.ne(kIgnoreLabel).any().item<bool>();
    const bool image = batch.mrm_mask.defined() && batch.mrm_mask.any().item<bool>();
    double fwd = 0;
    for (int64_t a = 0; a < b; ++a) {
      if (!matched[a]) continue;
      if (text) fwd += stack_flops(m, types, t[a], 0, 0, towers);
      if (image) fwd += image_embed_flops(m, dims, r[a]) + stack_flops(m, types, 0, r[a], 0, towers);
    }
    f.align_towers = 3.0 * fwd;
  }
  if (m.align && tr.momentum_model()) {  // the momentum model's towers, forward only
    for (int64_t a = 0; a < b; ++a)
      if (matched[a]) f.align_towers += stack_flops(m, types, t[a], r[a], 0, towers) + image_embed_flops(m, dims, r[a]) + backbone;
  }

  if (hard) {  // the negatives the step makes (hard_negatives.cpp)
    // The rows turned negative, the partners each may take, and the sides: itm_swap = either draws
    // one per row (counted at its mean), both makes one negative of each side.
    std::vector<int64_t> lines;
    for (int64_t i = 0; i < b; ++i)
      if (hard_rows[i]) lines.push_back(i);
    const auto partners = hard_partner_rows(batch, lines);
    const SwapSides sides = swap_sides(tr);
    if (tr.itm_swap == "both") {  // the added rows through the main pass (without targets), at their mean over the partners
      for (size_t k = 0; k < lines.size(); ++k) {
        const int64_t i = lines[k], n = static_cast<int64_t>(partners[k].size());
        if (n == 0) continue;
        double added = 0;
        for (const int64_t j : partners[k])
          added += 3.0 * (example_flops(m, types, dims, t[i], r[j], 0) + example_flops(m, types, dims, t[j], r[i], 0));
        f.main += added / static_cast<double>(n) + 2.0 * backbone_trained;
      }
    }
    if (!batch.negatives_by_score) return f;  // partners drawn uniformly: nothing is scored
    // batch_score_pairs, without a graph
    double fwd = static_cast<double>(b) * backbone;
    for (int64_t j = 0; j < b; ++j) fwd += image_embed_flops(m, dims, r[j]);
    if (m.align) {  // the towers, each row once
      for (int64_t i = 0; i < b; ++i) fwd += stack_flops(m, types, t[i], r[i], 0, towers);
    } else if (!crosses) {  // the stack, each row once
      for (int64_t i = 0; i < b; ++i) fwd += stack_flops(m, types, t[i], r[i], 0, layers);
      fwd += 2.0 * static_cast<double>(b) * static_cast<double>(b) * h;
    } else {  // the towers once; each negative: its caption with the images it may be given (or its
              // image with the captions) through the layers above them - K of them drawn at random
              // with train.itm_hard_candidates = K, counted at their mean cost
      for (int64_t i = 0; i < b; ++i) fwd += stack_flops(m, types, t[i], r[i], 0, towers);
      for (size_t k = 0; k < lines.size(); ++k) {
        const int64_t i = lines[k], n = static_cast<int64_t>(partners[k].size());
        if (n == 0) continue;
        double pairs = 0;
        for (const int64_t j : partners[k]) {
          if (sides.image > 0) pairs += sides.image * (stack_flops(m, types, t[i], r[j], towers, layers) + itm_head_flops(m));
          if (sides.caption > 0) pairs += sides.caption * (stack_flops(m, types, t[j], r[i], towers, layers) + itm_head_flops(m));
        }
        const int64_t scored = tr.itm_hard_candidates > 0 ? std::min(tr.itm_hard_candidates, n) : n;
        fwd += pairs * static_cast<double>(scored) / static_cast<double>(n);
      }
    }
    f.hard_negatives = fwd;
  }
  return f;
}

StepFlops typical_step_flops(const ExperimentConfig& cfg, const InputDims& dims, int64_t text_tokens, int64_t image_tokens) {
  const TrainOptions& t = cfg.train;
  const int64_t b = t.batch_size;
  if (b < 1 || text_tokens < 1 || image_tokens < 1) return {};
  // A batch as the batcher draws it, every example of these sizes: itm_negative_prob of the rows
  // mismatched (with hard negatives: marked, still matched, to be swapped by the step), the
  // matched ones with their MLM / MRM targets, contrastive ITM's pool of K images.
  Batch batch;
  batch.text_ids = torch::zeros({b, text_tokens}, torch::kInt64);
  batch.text_mask = torch::ones({b, text_tokens}, torch::kBool);
  batch.region_mask = torch::ones({b, image_tokens}, torch::kBool);
  const int64_t mismatched = t.itm_weight > 0 || t.itm_negatives == "hard" ? std::llround(static_cast<double>(b) * t.itm_negative_prob) : 0;
  const bool hard = (t.itm_negatives == "hard" || t.itm_swap == "both") && mismatched > 0;  // the step makes them
  batch.itm_labels = torch::ones({b}, torch::kInt64);
  if (hard) {
    batch.hard_negative_rows = torch::zeros({b}, torch::kBool);
    batch.negatives_by_score = t.itm_negatives == "hard";
    batch.hard_negative_rows.narrow(0, 0, mismatched).fill_(true);
  } else {
    batch.itm_labels.narrow(0, 0, mismatched).fill_(0);
  }
  const int64_t matched_from = hard ? 0 : mismatched;
  const int64_t masked = t.mlm_weight > 0 ? std::max<int64_t>(1, std::llround(static_cast<double>(text_tokens - 1) * t.mlm_prob)) : 0;
  batch.mlm_labels = torch::full({b, text_tokens}, kIgnoreLabel, torch::kInt64);
  if (masked > 0 && text_tokens > 1)
    batch.mlm_labels.narrow(0, matched_from, b - matched_from).narrow(1, 1, std::min(masked, text_tokens - 1)).fill_(1);
  if (cfg.model.image_input == "regions" && (t.mrm_kl_weight > 0 || t.mrm_regression_weight > 0 || t.mrm_class_weight > 0)) {
    batch.mrm_mask = torch::zeros({b, image_tokens}, torch::kBool);
    const int64_t regions = std::max<int64_t>(1, std::llround(static_cast<double>(image_tokens - 1) * t.mrm_prob));
    if (image_tokens > 1)
      batch.mrm_mask.narrow(0, matched_from, b - matched_from).narrow(1, 1, std::min(regions, image_tokens - 1)).fill_(true);
  }
  if (t.itm_contrastive_weight > 0) {
    batch.negatives = std::make_shared<Batch>();
    batch.negatives->region_mask = torch::ones({t.itm_contrastive_negatives, image_tokens}, torch::kBool);
    batch.negative_excluded = torch::zeros({b, t.itm_contrastive_negatives}, torch::kBool);
  }
  return step_train_flops(cfg, dims, batch);
}

}  // namespace mmt
