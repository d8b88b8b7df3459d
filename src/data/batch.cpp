/* Padding examples into a Batch. */
#include "mmt/data/batch.h"

#include <algorithm>
#include <cstring>

#include "mmt/config/options.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/util/rng.h"

namespace mmt {

torch::Tensor unmasked_text_ids(const Batch& batch) {
  if (!batch.mlm_labels.defined()) return batch.text_ids;
  return torch::where(batch.mlm_labels.ne(kIgnoreLabel), batch.mlm_labels, batch.text_ids);
}

torch::Tensor unmasked_region_feats(const Batch& batch) {
  return batch.region_targets.defined() ? batch.region_targets : batch.region_feats;
}

void pad_text(const std::vector<std::vector<int64_t>>& ids, int64_t pad_id, Batch& batch) {
  const int64_t b = static_cast<int64_t>(ids.size());
  int64_t t = 0;
  for (const auto& s : ids) t = std::max<int64_t>(t, static_cast<int64_t>(s.size()));
  batch.text_ids = torch::full({b, t}, pad_id, torch::kInt64);
  batch.text_mask = torch::zeros({b, t}, torch::kBool);
  auto* idp = batch.text_ids.data_ptr<int64_t>();
  auto* mp = batch.text_mask.data_ptr<bool>();
  for (int64_t i = 0; i < b; ++i) {
    std::copy(ids[i].begin(), ids[i].end(), idp + i * t);
    std::fill(mp + i * t, mp + i * t + static_cast<int64_t>(ids[i].size()), true);
  }
}

void gather_regions(const synth::RegionStore& store, const std::vector<int64_t>& scenes,
                    int64_t max_regions, Batch& batch) {
  const int64_t b = static_cast<int64_t>(scenes.size()), d = store.feature_dim;
  int64_t r = 0;
  for (int64_t s : scenes) r = std::max(r, std::min(store.num_regions(s), max_regions + 1));
  batch.region_feats = torch::zeros({b, r, d});
  batch.region_boxes = torch::zeros({b, r, synth::kBoxDim});
  batch.region_mask = torch::zeros({b, r}, torch::kBool);
  const int64_t nc = store.num_classes;
  batch.region_classes = torch::zeros({b, r, nc});
  float* fp = batch.region_feats.data_ptr<float>();
  float* cp = batch.region_classes.data_ptr<float>();
  float* bp = batch.region_boxes.data_ptr<float>();
  bool* mp = batch.region_mask.data_ptr<bool>();
  for (int64_t i = 0; i < b; ++i) {
    const int64_t first = store.offsets[scenes[i]];
    const int64_t n = std::min(store.num_regions(scenes[i]), max_regions + 1);
    std::memcpy(fp + i * r * d, store.features.data() + first * d, sizeof(float) * n * d);
    std::memcpy(bp + i * r * synth::kBoxDim, store.boxes.data() + first * synth::kBoxDim,
                sizeof(float) * n * synth::kBoxDim);
    if (nc > 0) std::memcpy(cp + i * r * nc, store.classes.data() + first * nc, sizeof(float) * n * nc);
    std::fill(mp + i * r, mp + i * r + n, true);
  }
}

Batch map_tensors(const Batch& batch, const std::function<torch::Tensor(const torch::Tensor&)>& f, bool negatives) {
  Batch out = batch;
  for (torch::Tensor* t : {&out.text_ids, &out.text_mask, &out.region_feats, &out.region_boxes, &out.region_mask,
                           &out.image_pixels, &out.region_classes, &out.mlm_labels, &out.mrm_mask, &out.region_targets,
                           &out.itm_labels, &out.hard_negative_rows, &out.mask_pattern, &out.image_key, &out.caption_key,
                           &out.negative_excluded})
    if (t->defined()) *t = f(*t);
  if (batch.negatives && negatives) out.negatives = std::make_shared<Batch>(map_tensors(*batch.negatives, f));
  return out;
}

bool swaps_image(const TrainOptions& train, Rng& rng) {
  if (train.itm_swap == "either") return rng.bernoulli(0.5);
  return train.itm_swap != "caption";  // both: the step adds rows instead (step_makes_negatives)
}

bool step_makes_negatives(const TrainOptions& train, int64_t micro) {
  return train.hard_negatives_at(micro) || train.itm_swap == "both";
}

void mark_step_negatives(const TrainOptions& train, int64_t micro, const std::vector<char>& pending,
                         const std::vector<char>& mask_text, const std::vector<char>& mask_image, Batch& batch) {
  const int64_t b = static_cast<int64_t>(pending.size());
  TORCH_CHECK(static_cast<int64_t>(mask_text.size()) == b && static_cast<int64_t>(mask_image.size()) == b,
              "mark_step_negatives: ", b, " rows marked, ", mask_text.size(), " / ", mask_image.size(), " masked");
  batch.hard_negative_rows = torch::zeros({b}, torch::kBool);
  batch.negatives_by_score = train.hard_negatives_at(micro);
  batch.mask_pattern = torch::zeros({b}, torch::kInt64);
  auto rows = batch.hard_negative_rows.accessor<bool, 1>();
  auto pattern = batch.mask_pattern.accessor<int64_t, 1>();
  for (int64_t i = 0; i < b; ++i) rows[i] = pending[i] != 0, pattern[i] = (mask_text[i] ? 1 : 0) | (mask_image[i] ? 2 : 0);
}

SwapSides swap_sides(const TrainOptions& train) {
  if (train.itm_swap == "either") return {0.5, 0.5};
  if (train.itm_swap == "both") return {1, 1};
  return train.itm_swap == "caption" ? SwapSides{0, 1} : SwapSides{1, 0};
}

int64_t row_with_other_image(const std::vector<int64_t>& keys, int64_t i, int64_t j) {
  const int64_t b = static_cast<int64_t>(keys.size());
  for (int64_t k = 0; k < b; ++k, j = (j + 1) % b)
    if (j != i && keys[static_cast<size_t>(j)] != keys[static_cast<size_t>(i)]) return j;
  return -1;
}

std::vector<std::vector<int64_t>> hard_partner_rows(const Batch& batch, const std::vector<int64_t>& rows) {
  const int64_t b = batch.size();
  const auto keys = batch.image_key.defined() ? batch.image_key.cpu().contiguous() : torch::arange(b, torch::kInt64);
  const auto pattern = batch.mask_pattern.defined() ? batch.mask_pattern.cpu().contiguous() : torch::zeros({b}, torch::kInt64);
  const int64_t *key = keys.data_ptr<int64_t>(), *pat = pattern.data_ptr<int64_t>();
  std::vector<std::vector<int64_t>> out;
  out.reserve(rows.size());
  for (const int64_t i : rows) {
    TORCH_CHECK(i >= 0 && i < b, "hard_partner_rows: row ", i, " of a batch of ", b);
    std::vector<int64_t> other, alike;
    for (int64_t j = 0; j < b; ++j) {
      if (j == i || key[j] == key[i]) continue;
      other.push_back(j);
      if (pat[j] == pat[i]) alike.push_back(j);
    }
    out.push_back(alike.empty() ? std::move(other) : std::move(alike));
  }
  return out;
}

int64_t caption_hash(const std::vector<int64_t>& ids) {
  uint64_t h = 14695981039346656037ULL;  // FNV-1a over the ids' 8 bytes each
  for (const int64_t id : ids) {
    auto v = static_cast<uint64_t>(id);
    for (int k = 0; k < 8; ++k, v >>= 8) h = (h ^ (v & 0xff)) * 1099511628211ULL;
  }
  return static_cast<int64_t>(h);
}

Batch batch_rows(const Batch& batch, int64_t begin, int64_t end) {
  TORCH_CHECK(0 <= begin && begin <= end && end <= batch.size(), "batch_rows: rows [", begin, ", ", end,
              ") of a batch of ", batch.size());
  // Every field but the negatives' pool is one row per example; the pool is shared by all rows.
  return map_tensors(batch, [&](const torch::Tensor& t) { return t.narrow(0, begin, end - begin).contiguous(); },
                     /*negatives=*/false);
}

}  // namespace mmt
