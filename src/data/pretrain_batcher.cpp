/* Pretraining batches (see pretrain_batcher.h). */
#include "mmt/data/pretrain_batcher.h"

#include <algorithm>
#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <numeric>

#include "mmt/config/config.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/text/vocab.h"
#include "mmt/util/error.h"
#include "mmt/util/rng.h"

namespace mmt {

namespace {
enum Stream : uint64_t { kEpochOrder = 11, kPoolOrder, kPairing, kNegatives, kPartSlots, kPartEpochs };

// What a stream's pools depend on: the config (scenes, batch and pool sizes, seed, text length,
// the image settings that the length sort reads) and the vocabulary that encodes the captions.
std::string stream_identity(const ExperimentConfig& cfg, const Vocab& vocab) {
  std::string id = config_identity(cfg).dump();
  for (int64_t t = 0; t < vocab.size(); ++t) id += "\n" + vocab.token(t);
  return id;
}
}

std::vector<int64_t> mask_tokens(std::vector<int64_t>& ids, const Vocab& vocab, double prob, Rng& rng,
                                 bool whole_words) {
  std::vector<int64_t> labels(ids.size(), kIgnoreLabel);
  const int64_t first_word = static_cast<int64_t>(Vocab::special_tokens().size());
  bool word_selected = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (vocab.is_special(ids[i])) continue;
    // A ## continuation piece follows its word's decision when masking whole words.
    const bool selected = whole_words && vocab.is_continuation(ids[i]) ? word_selected : rng.bernoulli(prob);
    word_selected = selected;
    if (!selected) continue;
    labels[i] = ids[i];
    const double r = rng.uniform();
    if (r < 0.8) ids[i] = vocab.mask_id();
    else if (r < 0.9) ids[i] = first_word + rng.below(vocab.size() - first_word);
  }
  return labels;
}

void mask_regions(Batch& batch, const std::vector<char>& mask_example, const std::vector<char>& targets,
                  double prob, Rng& rng) {
  const int64_t b = batch.region_feats.size(0), r = batch.region_feats.size(1), f = batch.region_feats.size(2);
  batch.region_targets = batch.region_feats.clone();
  batch.mrm_mask = torch::zeros({b, r}, torch::kBool);
  float* feats = batch.region_feats.data_ptr<float>();
  const bool* real = batch.region_mask.data_ptr<bool>();
  bool* masked = batch.mrm_mask.data_ptr<bool>();
  std::vector<char> hidden(static_cast<size_t>(r));
  for (int64_t i = 0; i < b; ++i) {
    if (!mask_example[i]) continue;
    std::fill(hidden.begin(), hidden.end(), 0);
    int64_t kept = 0;
    std::vector<double> mean(static_cast<size_t>(f), 0.0);
    for (int64_t k = 1; k < r; ++k) {  // region 0 is the global one: recomputed below, never a target
      if (!real[i * r + k]) continue;
      hidden[k] = rng.bernoulli(prob);
      float* row = feats + (i * r + k) * f;
      if (hidden[k]) {
        std::fill(row, row + f, 0.f);
        masked[i * r + k] = targets[i];
      } else {
        for (int64_t d = 0; d < f; ++d) mean[d] += row[d];
        ++kept;
      }
    }
    // The global region is the mean of the regions: recomputed from the unmasked ones, or it
    // would carry the masked features to the model.
    float* global = feats + i * r * f;
    for (int64_t d = 0; d < f; ++d) global[d] = kept > 0 ? static_cast<float>(mean[d] / kept) : 0.f;
  }
}

// The pools of examples of one stream, shared by the batchers of several threads. A pool is a
// pure function of its index, so the cache only saves work: the kKeep latest pools are kept
// (threads building batches ahead span data.prefetch + threads batches), and one evicted and
// wanted again is rebuilt. A pool being built is a slot the other threads wait on.
//
// Not std::promise / std::shared_future: their std::call_once instantiation (inline, exported by
// the executable) then interposes the one inside a PyTorch wheel's libtorch, built by another
// compiler - oneDNN's primitive cache and c10d use std::promise too, and crashed in our copy
// (CPU GELU in the GPU tests, the NCCL group; seen on an H200 with PyTorch 2.11, docs/gpu.md).
class PretrainBatcher::Pools {
 public:
  const synth::World* world;
  const std::string identity;  // stream_identity() of the batchers that share these pools

  Pools(const synth::World& w, std::string id) : world(&w), identity(std::move(id)) {}

  std::shared_ptr<const Pool> get(int64_t index, const PretrainBatcher& builder) {
    std::shared_ptr<Slot> slot;
    bool mine = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = pools_.find(index);
      if (it != pools_.end()) {
        slot = it->second;
      } else {
        slot = std::make_shared<Slot>();
        pools_.emplace(index, slot);
        while (pools_.size() > kKeep) pools_.erase(pools_.begin());  // the oldest (waiters hold theirs)
        ++built_, mine = true;
      }
    }
    if (mine) {  // built outside the lock: other threads may build other pools meanwhile
      std::shared_ptr<const Pool> pool;
      std::exception_ptr error;
      try {
        pool = std::make_shared<const Pool>(builder.build_pool(index));
      } catch (...) {
        error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        slot->pool = std::move(pool), slot->error = error, slot->ready = true;
      }
      ready_.notify_all();
    }
    std::unique_lock<std::mutex> lock(mutex_);
    ready_.wait(lock, [&] { return slot->ready; });  // another thread may be building it
    if (slot->error) std::rethrow_exception(slot->error);  // what building threw, in every waiter
    return slot->pool;
  }

  int64_t built() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return built_;
  }

 private:
  struct Slot {
    std::shared_ptr<const Pool> pool;
    std::exception_ptr error;
    bool ready = false;
  };
  static constexpr size_t kKeep = 16;  // ~1 MB each at batch 1,024 x 8: ids and scene numbers only
  mutable std::mutex mutex_;
  std::condition_variable ready_;
  std::map<int64_t, std::shared_ptr<Slot>> pools_;
  int64_t built_ = 0;
};

PretrainBatcher::PretrainBatcher(const synth::World& world, const Vocab& vocab, const ExperimentConfig& cfg,
                                 const PretrainBatcher* share_pools_with)
    : world_(world),
      vocab_(vocab),
      train_(cfg.train),
      images_(world.train_scenes(), world.train_regions(), cfg),
      sampling_(cfg.data.sampling),
      max_text_len_(cfg.model.max_text_len),
      batch_size_(cfg.train.batch_size),
      pool_batches_(cfg.data.bucket_batches),
      pools_(share_pools_with ? share_pools_with->pools_
                              : std::make_shared<Pools>(world, stream_identity(cfg, vocab))) {
  if (share_pools_with && (pools_->world != &world || pools_->identity != stream_identity(cfg, vocab)))
    throw Error("PretrainBatcher: pools can be shared only between batchers of one world, config and vocabulary");
}

PretrainBatcher::~PretrainBatcher() = default;

int64_t PretrainBatcher::pools_built() const { return pools_->built(); }

namespace {

// Which scene example k of the stream shows, for examples taken in increasing k (it keeps the
// current epoch's orders).
//  - instance sampling (and a world of one part): scene perm_e[k % N] of epoch e = k / N, every
//    scene once per epoch - every example equally likely;
//  - dataset sampling (data.sampling = dataset, a mixture of D parts): an epoch is D x M slots (M:
//    the largest part's size), M per part in a shuffled order, and a part's j-th slot of all takes
//    the j-th example of the part's own endless stream (a fresh permutation of its scenes per
//    epoch of it) - every part equally likely, every scene of a part once per epoch of the part.
class SceneOrder {
 public:
  SceneOrder(const synth::World& world, const std::string& sampling, uint64_t seed) : world_(world), seed_(seed) {
    const auto& parts = world.components();
    by_part_ = parts.size() > 1 && sampling == "dataset";
    for (const auto& p : parts) largest_ = std::max(largest_, p.count);
    part_perms_.resize(parts.size(), {-1, {}});
  }

  int64_t scene(int64_t k) {
    if (!by_part_) {
      const int64_t n = static_cast<int64_t>(world_.train_scenes().size()), e = k / n;
      if (e != epoch_) epoch_ = e, perm_ = permutation(n, derive_seed(seed_, kEpochOrder, static_cast<uint64_t>(e)));
      return perm_[static_cast<size_t>(k % n)];
    }
    const auto& parts = world_.components();
    const int64_t slots = static_cast<int64_t>(parts.size()) * largest_, e = k / slots;
    if (e != epoch_) {
      epoch_ = e;
      slot_part_.resize(static_cast<size_t>(slots)), slot_rank_.resize(static_cast<size_t>(slots));
      for (int64_t i = 0; i < slots; ++i) slot_part_[i] = i / largest_;
      Rng rng(derive_seed(seed_, kPartSlots, static_cast<uint64_t>(e)));
      rng.shuffle(slot_part_);
      std::vector<int64_t> taken(parts.size(), 0);
      for (int64_t i = 0; i < slots; ++i) slot_rank_[i] = taken[static_cast<size_t>(slot_part_[i])]++;
    }
    const int64_t r = k % slots, d = slot_part_[static_cast<size_t>(r)];
    const auto& part = parts[static_cast<size_t>(d)];
    const int64_t j = e * largest_ + slot_rank_[static_cast<size_t>(r)], pe = j / part.count;
    auto& cached = part_perms_[static_cast<size_t>(d)];
    if (cached.first != pe)
      cached = {pe, permutation(part.count, derive_seed(seed_, kPartEpochs, static_cast<uint64_t>(d), static_cast<uint64_t>(pe)))};
    return part.first + cached.second[static_cast<size_t>(j % part.count)];
  }

 private:
  static std::vector<int64_t> permutation(int64_t n, uint64_t seed) {
    std::vector<int64_t> p(static_cast<size_t>(n));
    std::iota(p.begin(), p.end(), 0);
    Rng rng(seed);
    rng.shuffle(p);
    return p;
  }

  const synth::World& world_;
  uint64_t seed_;
  bool by_part_ = false;
  int64_t largest_ = 0, epoch_ = -1;
  std::vector<int64_t> perm_, slot_part_, slot_rank_;
  std::vector<std::pair<int64_t, std::vector<int64_t>>> part_perms_;  // per part: (its epoch, its order)
};

}  // namespace

PretrainBatcher::Pool PretrainBatcher::build_pool(int64_t pool) const {
  const int64_t first = pool * pool_batches_ * batch_size_, count = pool_batches_ * batch_size_;
  std::vector<Example> examples;
  examples.reserve(static_cast<size_t>(count));
  SceneOrder order(world_, sampling_, train_.seed);
  for (int64_t k = first; k < first + count; ++k) {
    const int64_t scene = order.scene(k);
    // The caption stream id is the example index: a scene gets new captions each epoch.
    examples.push_back({scene, vocab_.encode(world_.train_caption(scene, static_cast<uint64_t>(k)).text, max_text_len_)});
  }
  // Length bucketing: sort the pool by (text length, image tokens), cut batches, shuffle batches.
  std::stable_sort(examples.begin(), examples.end(), [&](const Example& a, const Example& b) {
    if (a.ids.size() != b.ids.size()) return a.ids.size() < b.ids.size();
    return images_.tokens(a.scene) < images_.tokens(b.scene);
  });
  Pool out(static_cast<size_t>(pool_batches_));
  for (int64_t i = 0; i < count; ++i) out[static_cast<size_t>(i / batch_size_)].push_back(std::move(examples[i]));
  Rng rng(derive_seed(train_.seed, kPoolOrder, static_cast<uint64_t>(pool)));
  rng.shuffle(out);
  return out;
}

Batch PretrainBatcher::batch(int64_t micro) {
  const int64_t pool = micro / pool_batches_;
  if (pool != pool_index_) pool_ = pools_->get(pool, *this), pool_index_ = pool;
  const auto& examples = (*pool_)[static_cast<size_t>(micro % pool_batches_)];
  const int64_t b = static_cast<int64_t>(examples.size());

  Rng rng(derive_seed(train_.seed, kPairing, static_cast<uint64_t>(micro)));
  std::vector<std::vector<int64_t>> ids(static_cast<size_t>(b));
  std::vector<int64_t> scenes(static_cast<size_t>(b)), captions(static_cast<size_t>(b)), itm(static_cast<size_t>(b), 1);
  Batch batch;
  const bool marks = step_makes_negatives(train_, micro);  // the step makes them (hard, or both)
  std::vector<char> pending(static_cast<size_t>(b), 0);
  std::vector<int64_t> keys(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) keys[i] = examples[i].scene;
  for (int64_t i = 0; i < b; ++i) {
    scenes[i] = examples[i].scene, captions[i] = i;
    // ITM negative: swap in the image (or the caption) of another example of the batch that shows
    // another scene. Hard negatives (and itm_swap = both's added rows) are made later, by the step
    // (train/hard_negatives.h): the row stays matched for now and is marked.
    if (b > 1 && marks) {
      pending[i] = rng.bernoulli(train_.itm_negative_prob);
    } else if (b > 1 && rng.bernoulli(train_.itm_negative_prob)) {
      int64_t j = rng.below(b - 1);
      if (j >= i) ++j;
      if ((j = row_with_other_image(keys, i, j)) < 0) continue;  // one scene only: stays matched
      if (swaps_image(train_, rng)) scenes[i] = examples[j].scene;
      else captions[i] = j;
      itm[i] = 0;
    }
  }
  // Which modality each example masks. Every example is masked the same way, matched or not, so
  // masking carries no hint of the ITM label; only matched pairs get MLM / MRM targets (a
  // mismatched image is misleading context).
  const bool mlm = train_.mlm_weight > 0;
  const bool mrm = train_.mrm_kl_weight + train_.mrm_regression_weight + train_.mrm_class_weight > 0;
  std::vector<char> mask_text(static_cast<size_t>(b), mlm), mask_image(static_cast<size_t>(b), mrm);
  if (mlm && mrm && train_.mask_modalities == "alternate")
    for (int64_t i = 0; i < b; ++i) mask_text[i] = rng.bernoulli(0.5), mask_image[i] = !mask_text[i];
  std::vector<std::vector<int64_t>> label_rows(static_cast<size_t>(b));
  std::vector<int64_t> caption_keys(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) {
    ids[i] = examples[captions[i]].ids;
    caption_keys[i] = caption_hash(ids[i]);
    label_rows[i] = mask_tokens(ids[i], vocab_, mask_text[i] ? train_.mlm_prob : 0.0, rng, train_.whole_word_mask);
    if (!itm[i]) std::fill(label_rows[i].begin(), label_rows[i].end(), kIgnoreLabel);
  }
  pad_text(ids, vocab_.pad_id(), batch);
  batch.mlm_labels = torch::full_like(batch.text_ids, kIgnoreLabel);
  auto* lp = batch.mlm_labels.data_ptr<int64_t>();
  const int64_t t = batch.text_ids.size(1);
  for (int64_t i = 0; i < b; ++i) std::copy(label_rows[i].begin(), label_rows[i].end(), lp + i * t);
  images_.fill(scenes, batch);
  if (mrm) {
    std::vector<char> matched(itm.begin(), itm.end());
    mask_regions(batch, mask_image, matched, train_.mrm_prob, rng);
  }
  batch.itm_labels = torch::from_blob(itm.data(), {b}, torch::kInt64).clone();
  batch.image_key = torch::from_blob(keys.data(), {b}, torch::kInt64).clone();
  batch.caption_key = torch::tensor(caption_keys, torch::kInt64);
  if (marks) mark_step_negatives(train_, micro, pending, mask_text, mask_image, batch);
  if (train_.itm_contrastive_weight > 0) {
    // K distinct negative images from the whole training set, shared by the batch's captions;
    // a caption's own image, if drawn, is excluded for that caption.
    Rng neg(derive_seed(train_.seed, kNegatives, static_cast<uint64_t>(micro)));
    const int64_t k = train_.itm_contrastive_negatives, n = static_cast<int64_t>(world_.train_scenes().size());
    std::vector<int64_t> pool;
    std::vector<char> taken(static_cast<size_t>(n), 0);
    while (static_cast<int64_t>(pool.size()) < k) {
      const int64_t c = neg.below(n);
      if (!taken[c]) taken[c] = 1, pool.push_back(c);
    }
    batch.negatives = std::make_shared<Batch>();
    images_.fill(pool, *batch.negatives);
    batch.negative_excluded = torch::zeros({b, k}, torch::kBool);
    auto ex = batch.negative_excluded.accessor<bool, 2>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < k; ++j) ex[i][j] = pool[j] == scenes[i];
  }
  return batch;
}

}  // namespace mmt
