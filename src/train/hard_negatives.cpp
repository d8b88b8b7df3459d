/* ITM hard negatives (see hard_negatives.h). */
#include "mmt/train/hard_negatives.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "mmt/data/batch.h"
#include "mmt/model/transformer.h"
#include "mmt/util/rng.h"

namespace mmt {

torch::Tensor batch_score_matrix(MultimodalTransformerImpl& model, const Batch& batch, bool align_unmasked,
                                 const std::vector<int64_t>& lines, bool by_column) {
  torch::NoGradGuard no_grad;
  const int64_t b = batch.size();
  if (model.has_align()) {  // ALBEF: the align head's similarities, from the unimodal layers alone
    Batch in = batch;  // shallow
    if (align_unmasked) {  // what the align loss reads (train.align_inputs); every row is still matched
      in.text_ids = unmasked_text_ids(batch), in.region_feats = unmasked_region_feats(batch);
    }
    const auto e = model.tower_align_embeddings(in);
    return e.scale * torch::matmul(e.text, e.image.t());
  }
  const ImageTokens images = model.embed_images(batch);
  const auto text = model.text_embed(batch.text_ids);
  if (!model.crosses_modalities()) {
    const Encoded e = model.encode_embedded(text, images.states, batch.text_mask, images.mask);
    return model.match_score_matrix(e.text.select(1, 0), e.image.select(1, 0));
  }
  // The layers below the first cross-modal one see one modality: each caption and image once.
  // Then one pass of B pairs per line asked for through the rest: a caption with every image (a
  // row) or an image with every caption (a column).
  const int64_t towers = model.first_cross_modal_layer();
  auto [text_states, image_states] = model.run_layers(text, images.states, batch.text_mask, images.mask, 0, towers);
  auto scores = torch::full({b, b}, std::numeric_limits<float>::quiet_NaN(), torch::device(text.device()));
  std::vector<int64_t> all(static_cast<size_t>(lines.empty() ? b : 0));
  std::iota(all.begin(), all.end(), int64_t{0});
  for (int64_t i : lines.empty() ? all : lines) {
    TORCH_CHECK(i >= 0 && i < b, "batch_score_matrix: line ", i, " of a batch of ", b);
    if (by_column) {
      const Encoded e = model.encode_embedded(text_states, image_states[i].unsqueeze(0).expand({b, -1, -1}), batch.text_mask,
                                              images.mask[i].unsqueeze(0).expand({b, -1}), false, towers);
      scores.select(1, i).copy_(model.match_scores(e));
    } else {
      const Encoded e = model.encode_embedded(text_states[i].unsqueeze(0).expand({b, -1, -1}), image_states,
                                              batch.text_mask[i].unsqueeze(0).expand({b, -1}), images.mask, false, towers);
      scores[i].copy_(model.match_scores(e));
    }
  }
  return scores;
}

int64_t sample_partner(const torch::Tensor& scores, int64_t i, bool by_column, Rng& rng,
                       const std::vector<char>& allowed, const std::vector<char>& possible) {
  const auto row = (by_column ? scores.select(1, i) : scores.select(0, i)).to(torch::kFloat64).contiguous();
  const int64_t n = row.size(0);
  if (n < 2) throw std::invalid_argument("sample_partner: a batch of one has no partner");
  const double* s = row.data_ptr<double>();
  std::vector<char> candidate(static_cast<size_t>(n), 1);
  if (!possible.empty()) candidate = possible;
  candidate[static_cast<size_t>(i)] = 0;
  if (std::find(candidate.begin(), candidate.end(), 1) == candidate.end()) return -1;
  if (!allowed.empty()) {
    bool any = false;
    for (int64_t j = 0; j < n; ++j) any |= candidate[static_cast<size_t>(j)] && allowed[static_cast<size_t>(j)];
    if (any)
      for (int64_t j = 0; j < n; ++j) candidate[static_cast<size_t>(j)] &= allowed[static_cast<size_t>(j)];
  }
  double mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j)
    if (candidate[j]) mx = std::max(mx, s[j]);
  std::vector<double> w(static_cast<size_t>(n), 0.0);
  double total = 0;
  int64_t last = -1;
  for (int64_t j = 0; j < n; ++j)
    if (candidate[j]) total += (w[j] = std::exp(s[j] - mx)), last = j;
  double u = rng.uniform() * total;
  for (int64_t j = 0; j < n; ++j)
    if (candidate[j] && (u -= w[j]) <= 0) return j;
  return last;  // rounding
}

void apply_hard_negatives(MultimodalTransformerImpl& model, Batch& batch, bool swap_caption, uint64_t seed,
                          int64_t step, bool align_unmasked, double temperature) {
  if (!batch.hard_negative_rows.defined() || !batch.hard_negative_rows.any().item<bool>()) return;
  const bool was_training = model.is_training();
  model.eval();  // scores as the model would give them, no dropout
  const int64_t b = batch.size();
  const auto hard = batch.hard_negative_rows.cpu().contiguous();
  std::vector<int64_t> hard_rows;  // only their lines of the matrix are read
  for (int64_t i = 0; i < b; ++i)
    if (hard.data_ptr<bool>()[i]) hard_rows.push_back(i);
  auto scores = batch_score_matrix(model, batch, align_unmasked, hard_rows, swap_caption).to(torch::kCPU, torch::kFloat32);
  if (temperature != 1.0) scores = scores / temperature;
  if (was_training) model.train();
  Rng rng(derive_seed(seed, 0x4A3D, static_cast<uint64_t>(step)));
  const Batch original = batch;  // shallow: the tensors below are replaced, not written into
  auto take = [](torch::Tensor& dst, const torch::Tensor& src, const std::vector<int64_t>& rows) {
    if (src.defined()) dst = src.index_select(0, torch::tensor(rows, torch::kInt64).to(src.device()));
  };
  const auto pattern = batch.mask_pattern.defined() ? batch.mask_pattern.cpu().contiguous() : torch::zeros({b}, torch::kInt64);
  const auto keys = batch.image_key.defined() ? batch.image_key.cpu().contiguous() : torch::arange(b, torch::kInt64);
  const int64_t *key = keys.data_ptr<int64_t>(), *pat = pattern.data_ptr<int64_t>();
  std::vector<int64_t> rows(static_cast<size_t>(b));
  std::vector<char> alike(static_cast<size_t>(b)), other_image(static_cast<size_t>(b));
  std::vector<int64_t> swapped(static_cast<size_t>(b), 0);
  for (int64_t i = 0; i < b; ++i) {
    rows[i] = i;
    if (!hard.data_ptr<bool>()[i]) continue;
    for (int64_t j = 0; j < b; ++j) alike[j] = pat[j] == pat[i], other_image[j] = key[j] != key[i];
    const int64_t j = sample_partner(scores, i, swap_caption, rng, alike, other_image);
    if (j < 0) continue;  // every row shows this image: the row stays matched
    rows[i] = j, swapped[i] = 1;
  }
  if (swap_caption) {
    take(batch.text_ids, original.text_ids, rows), take(batch.text_mask, original.text_mask, rows);
    take(batch.mlm_labels, original.mlm_labels, rows);
  } else {
    take(batch.region_feats, original.region_feats, rows), take(batch.region_boxes, original.region_boxes, rows);
    take(batch.region_mask, original.region_mask, rows), take(batch.region_classes, original.region_classes, rows);
    take(batch.region_targets, original.region_targets, rows), take(batch.mrm_mask, original.mrm_mask, rows);
    take(batch.image_pixels, original.image_pixels, rows);
  }
  // The new mismatched pairs: label 0, no MLM / MRM targets (a mismatched pair is misleading context).
  const auto negative = torch::tensor(swapped, torch::kInt64).to(batch.itm_labels.device()).to(torch::kBool);
  batch.itm_labels = original.itm_labels.masked_fill(negative, 0);
  if (batch.mlm_labels.defined()) batch.mlm_labels = batch.mlm_labels.masked_fill(negative.unsqueeze(1), kIgnoreLabel);
  if (batch.mrm_mask.defined()) batch.mrm_mask = batch.mrm_mask.masked_fill(negative.unsqueeze(1), false);
  batch.hard_negative_rows = torch::Tensor();
  batch.mask_pattern = torch::Tensor();
}

}  // namespace mmt
