/* Pretraining batches (see pretrain_batcher.h). */
#include "mmt/data/pretrain_batcher.h"

#include <algorithm>
#include <numeric>

#include "mmt/data/synthetic_world.h"
#include "mmt/text/vocab.h"
#include "mmt/util/rng.h"

namespace mmt {

namespace {
enum Stream : uint64_t { kEpochOrder = 11, kPoolOrder, kPairing };
}

std::vector<int64_t> mask_tokens(std::vector<int64_t>& ids, const Vocab& vocab, double prob, Rng& rng) {
  std::vector<int64_t> labels(ids.size(), kIgnoreLabel);
  const int64_t first_word = static_cast<int64_t>(Vocab::special_tokens().size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (vocab.is_special(ids[i]) || !rng.bernoulli(prob)) continue;
    labels[i] = ids[i];
    const double r = rng.uniform();
    if (r < 0.8) ids[i] = vocab.mask_id();
    else if (r < 0.9) ids[i] = first_word + rng.below(vocab.size() - first_word);
  }
  return labels;
}

PretrainBatcher::PretrainBatcher(const synth::World& world, const Vocab& vocab, const ExperimentConfig& cfg)
    : world_(world),
      vocab_(vocab),
      train_(cfg.train),
      images_(world.train_scenes(), world.train_regions(), cfg),
      max_text_len_(cfg.model.max_text_len),
      batch_size_(cfg.train.batch_size),
      pool_batches_(cfg.data.bucket_batches) {}

void PretrainBatcher::fill_pool(int64_t pool) {
  // Example k of the stream is scene perm_e[k % N] of epoch e = k / N: every scene once per epoch.
  const int64_t n = static_cast<int64_t>(world_.train_scenes().size());
  const int64_t first = pool * pool_batches_ * batch_size_, count = pool_batches_ * batch_size_;
  std::vector<Example> examples;
  examples.reserve(static_cast<size_t>(count));
  for (int64_t k = first; k < first + count; ++k) {
    const int64_t e = k / n;
    if (e != epoch_) {
      epoch_perm_.resize(static_cast<size_t>(n));
      std::iota(epoch_perm_.begin(), epoch_perm_.end(), 0);
      Rng rng(derive_seed(train_.seed, kEpochOrder, static_cast<uint64_t>(e)));
      rng.shuffle(epoch_perm_);
      epoch_ = e;
    }
    const int64_t scene = epoch_perm_[static_cast<size_t>(k % n)];
    // The caption stream id is the example index: a scene gets new captions each epoch.
    examples.push_back({scene, vocab_.encode(world_.train_caption(scene, static_cast<uint64_t>(k)).text, max_text_len_)});
  }
  // Length bucketing: sort the pool by (text length, image tokens), cut batches, shuffle batches.
  std::stable_sort(examples.begin(), examples.end(), [&](const Example& a, const Example& b) {
    if (a.ids.size() != b.ids.size()) return a.ids.size() < b.ids.size();
    return images_.tokens(a.scene) < images_.tokens(b.scene);
  });
  pool_.assign(static_cast<size_t>(pool_batches_), {});
  for (int64_t i = 0; i < count; ++i) pool_[static_cast<size_t>(i / batch_size_)].push_back(std::move(examples[i]));
  Rng rng(derive_seed(train_.seed, kPoolOrder, static_cast<uint64_t>(pool)));
  rng.shuffle(pool_);
  pool_index_ = pool;
}

Batch PretrainBatcher::batch(int64_t step) {
  const int64_t pool = step / pool_batches_;
  if (pool != pool_index_) fill_pool(pool);
  const auto& examples = pool_[static_cast<size_t>(step % pool_batches_)];
  const int64_t b = static_cast<int64_t>(examples.size());

  Rng rng(derive_seed(train_.seed, kPairing, static_cast<uint64_t>(step)));
  std::vector<std::vector<int64_t>> ids(static_cast<size_t>(b));
  std::vector<int64_t> scenes(static_cast<size_t>(b)), itm(static_cast<size_t>(b), 1);
  Batch batch;
  for (int64_t i = 0; i < b; ++i) {
    scenes[i] = examples[i].scene;
    // ITM negative: swap in the image of another example of the batch.
    if (b > 1 && rng.bernoulli(train_.itm_negative_prob)) {
      int64_t j = rng.below(b - 1);
      if (j >= i) ++j;
      scenes[i] = examples[j].scene;
      itm[i] = 0;
    }
  }
  std::vector<std::vector<int64_t>> label_rows(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) {
    ids[i] = examples[i].ids;
    label_rows[i] = mask_tokens(ids[i], vocab_, train_.mlm_weight > 0 ? train_.mlm_prob : 0.0, rng);
    // MLM is learned from matched pairs only: a mismatched image is misleading context.
    if (!itm[i]) std::fill(label_rows[i].begin(), label_rows[i].end(), kIgnoreLabel);
  }
  pad_text(ids, vocab_.pad_id(), batch);
  batch.mlm_labels = torch::full_like(batch.text_ids, kIgnoreLabel);
  auto* lp = batch.mlm_labels.data_ptr<int64_t>();
  const int64_t t = batch.text_ids.size(1);
  for (int64_t i = 0; i < b; ++i) std::copy(label_rows[i].begin(), label_rows[i].end(), lp + i * t);
  images_.fill(scenes, batch);
  batch.itm_labels = torch::from_blob(itm.data(), {b}, torch::kInt64).clone();
  return batch;
}

}  // namespace mmt
