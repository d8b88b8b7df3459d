/* ITM hard negatives (see hard_negatives.h). */
#include "mmt/train/hard_negatives.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <stdexcept>

#include "mmt/config/options.h"
#include "mmt/data/batch.h"
#include "mmt/model/transformer.h"
#include "mmt/util/rng.h"

namespace mmt {

torch::Tensor batch_score_pairs(MultimodalTransformerImpl& model, const Batch& batch, bool align_unmasked,
                                const std::vector<ScorePair>& pairs) {
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
  // Then the pairs asked for through the rest, B at a time.
  const int64_t towers = model.first_cross_modal_layer();
  auto [text_states, image_states] = model.run_layers(text, images.states, batch.text_mask, images.mask, 0, towers);
  auto scores = torch::full({b, b}, std::numeric_limits<float>::quiet_NaN(), torch::device(text.device()));
  std::vector<int64_t> captions, pictures;
  captions.reserve(pairs.size()), pictures.reserve(pairs.size());
  for (const ScorePair& p : pairs) {
    TORCH_CHECK(p.caption >= 0 && p.caption < b && p.image >= 0 && p.image < b, "batch_score_pairs: pair (",
                p.caption, ", ", p.image, ") in a batch of ", b);
    captions.push_back(p.caption), pictures.push_back(p.image);
  }
  const int64_t n = static_cast<int64_t>(captions.size());
  const auto caption_rows = torch::tensor(captions, torch::kInt64).to(text.device());
  const auto image_rows = torch::tensor(pictures, torch::kInt64).to(text.device());
  for (int64_t from = 0; from < n; from += b) {
    const auto c = caption_rows.narrow(0, from, std::min(b, n - from));
    const auto im = image_rows.narrow(0, from, std::min(b, n - from));
    const Encoded e = model.encode_embedded(text_states.index_select(0, c), image_states.index_select(0, im),
                                            batch.text_mask.index_select(0, c), images.mask.index_select(0, im), false, towers);
    scores.index_put_({c, im}, model.match_scores(e).to(scores.scalar_type()));
  }
  return scores;
}

torch::Tensor batch_score_matrix(MultimodalTransformerImpl& model, const Batch& batch, bool align_unmasked) {
  const int64_t b = batch.size();
  std::vector<ScorePair> pairs;
  pairs.reserve(static_cast<size_t>(b * b));
  for (int64_t i = 0; i < b; ++i)
    for (int64_t j = 0; j < b; ++j) pairs.push_back({i, j});
  return batch_score_pairs(model, batch, align_unmasked, pairs);
}

std::vector<int64_t> draw_candidates(const std::vector<int64_t>& rows, int64_t k, Rng& rng) {
  const int64_t n = static_cast<int64_t>(rows.size());
  if (k <= 0 || k >= n) return rows;
  std::vector<int64_t> pool = rows;
  for (int64_t m = 0; m < k; ++m) std::swap(pool[m], pool[m + rng.below(n - m)]);  // partial Fisher-Yates
  pool.resize(static_cast<size_t>(k));
  std::sort(pool.begin(), pool.end());
  return pool;
}

int64_t sample_partner(const torch::Tensor& scores, int64_t i, bool by_column, Rng& rng,
                       const std::vector<int64_t>& candidates) {
  const auto row = (by_column ? scores.select(1, i) : scores.select(0, i)).to(torch::kFloat64).contiguous();
  const int64_t n = row.size(0);
  if (n < 2) throw std::invalid_argument("sample_partner: a batch of one has no partner");
  const double* s = row.data_ptr<double>();
  std::vector<int64_t> pool;
  if (candidates.empty()) {
    for (int64_t j = 0; j < n; ++j)
      if (j != i) pool.push_back(j);
  } else {
    for (const int64_t j : candidates) {
      TORCH_CHECK(j >= 0 && j < n, "sample_partner: candidate ", j, " of a batch of ", n);
      if (j != i) pool.push_back(j);
    }
  }
  if (pool.empty()) return -1;
  double mx = -INFINITY;
  for (const int64_t j : pool) mx = std::max(mx, s[j]);
  std::vector<double> w;
  w.reserve(pool.size());
  double total = 0;
  for (const int64_t j : pool) total += w.emplace_back(std::exp(s[j] - mx));
  double u = rng.uniform() * total;
  for (size_t k = 0; k < pool.size(); ++k)
    if ((u -= w[k]) <= 0) return pool[k];
  return pool.back();  // rounding
}

void apply_hard_negatives(MultimodalTransformerImpl& model, Batch& batch, const TrainOptions& train, int64_t step) {
  if (!batch.hard_negative_rows.defined() || !batch.hard_negative_rows.any().item<bool>()) return;
  const int64_t b = batch.size();
  const bool both = train.itm_swap == "both";
  const auto hard = batch.hard_negative_rows.cpu().contiguous();
  std::vector<int64_t> hard_rows;  // only their lines of the matrix are read
  for (int64_t i = 0; i < b; ++i)
    if (hard.data_ptr<bool>()[i]) hard_rows.push_back(i);
  // Each negative to make: its row, its side (itm_swap = either: drawn; both: one of each), its
  // candidates (K of the rows it may take, or all); then only those pairs are scored - the row's
  // caption with the candidates' images, or its image with their captions.
  struct Negative {
    int64_t row;
    bool image_side;
    std::vector<int64_t> candidates;
  };
  Rng rng(derive_seed(train.seed, 0x4A3D, static_cast<uint64_t>(step)));
  const auto partners = hard_partner_rows(batch, hard_rows);
  const bool by_score = batch.negatives_by_score;  // else uniformly among the allowed rows (both, random)
  std::vector<Negative> negatives;
  std::vector<ScorePair> pairs;
  for (size_t k = 0; k < hard_rows.size(); ++k) {
    if (partners[k].empty()) continue;  // every row shows this image: the row stays matched
    const int64_t i = hard_rows[k];
    for (const bool image_side : both ? std::vector<bool>{true, false} : std::vector<bool>{swaps_image(train, rng)}) {
      // Drawn uniformly later, a negative takes any allowed row: no candidates drawn, nothing scored.
      negatives.push_back({i, image_side, by_score ? draw_candidates(partners[k], train.itm_hard_candidates, rng) : partners[k]});
      if (by_score)
        for (const int64_t j : negatives.back().candidates) pairs.push_back(image_side ? ScorePair{i, j} : ScorePair{j, i});
    }
  }
  if (negatives.empty()) {  // no row can be turned: all stay matched, with their targets
    batch.hard_negative_rows = torch::Tensor(), batch.mask_pattern = torch::Tensor();
    return;
  }
  torch::Tensor scores;
  if (by_score) {
    const bool was_training = model.is_training();
    model.eval();  // scores as the model would give them, no dropout
    scores = batch_score_pairs(model, batch, train.align_inputs == "unmasked", pairs).to(torch::kCPU, torch::kFloat32);
    if (train.itm_hard_temperature != 1.0) scores = scores / train.itm_hard_temperature;
    if (was_training) model.train();
  }
  // The rows of the new batch: where each takes its caption, its image and the rest from (its origin:
  // the row it was made for). Swapping, the batch keeps its rows; with both, every pair stays and
  // the negatives are added after them.
  std::vector<int64_t> caption_of(static_cast<size_t>(b)), image_of(static_cast<size_t>(b)), origin(static_cast<size_t>(b));
  std::iota(caption_of.begin(), caption_of.end(), int64_t{0});
  std::iota(image_of.begin(), image_of.end(), int64_t{0});
  std::iota(origin.begin(), origin.end(), int64_t{0});
  std::vector<int64_t> negative(static_cast<size_t>(b), 0);
  bool captions_moved = false, images_moved = false;
  for (const Negative& n : negatives) {
    const int64_t j = by_score ? sample_partner(scores, n.row, !n.image_side, rng, n.candidates)
                               : n.candidates[static_cast<size_t>(rng.below(static_cast<int64_t>(n.candidates.size())))];
    size_t at = static_cast<size_t>(n.row);
    if (both) {
      at = caption_of.size();
      caption_of.push_back(n.row), image_of.push_back(n.row), origin.push_back(n.row), negative.push_back(0);
    }
    (n.image_side ? image_of[at] : caption_of[at]) = j, negative[at] = 1;
    (n.image_side ? images_moved : captions_moved) = true;
  }
  // Each row list goes to the batch's device once and indexes every field it moves (with both,
  // every marked row has a negative of each side, so both lists move).
  const torch::Device device = batch.itm_labels.device();
  auto take = [&](std::initializer_list<torch::Tensor*> fields, const std::vector<int64_t>& rows) {
    const auto index = torch::tensor(rows, torch::kInt64).to(device);
    for (torch::Tensor* t : fields)
      if (t->defined()) *t = t->index_select(0, t->device() == device ? index : index.to(t->device()));
  };
  if (captions_moved) take({&batch.text_ids, &batch.text_mask, &batch.mlm_labels, &batch.caption_key}, caption_of);
  if (images_moved)
    take({&batch.region_feats, &batch.region_boxes, &batch.region_mask, &batch.region_classes, &batch.region_targets,
          &batch.mrm_mask, &batch.image_pixels},
         image_of);
  if (both) take({&batch.itm_labels, &batch.image_key, &batch.negative_excluded}, origin);  // the added rows': their row's
  // The new mismatched pairs: label 0, no MLM / MRM targets (a mismatched pair is misleading context).
  const auto is_negative = torch::tensor(negative, torch::kInt64).to(batch.itm_labels.device()).to(torch::kBool);
  batch.itm_labels = batch.itm_labels.masked_fill(is_negative, 0);
  if (batch.mlm_labels.defined()) batch.mlm_labels = batch.mlm_labels.masked_fill(is_negative.unsqueeze(1), kIgnoreLabel);
  if (batch.mrm_mask.defined()) batch.mrm_mask = batch.mrm_mask.masked_fill(is_negative.unsqueeze(1), false);
  batch.hard_negative_rows = torch::Tensor();
  batch.mask_pattern = torch::Tensor();
}

}  // namespace mmt
