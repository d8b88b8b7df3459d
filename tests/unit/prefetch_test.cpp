/* The background batch builder returns make(first), make(first + 1), ... in order whatever the
 * timing and number of threads, rethrows what building threw (after the batches before it),
 * stops cleanly mid-stream, and gives the synthetic batcher's stream unchanged. */
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>

#include "mmt/config/config.h"
#include "mmt/data/prefetch.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/data/data_source.h"
#include "mmt/util/error.h"

namespace mmt {
namespace {

Batch numbered(int64_t i) {
  if (i % 3 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));  // uneven build times
  Batch b;
  b.text_ids = torch::full({1, 1}, i, torch::kInt64);
  return b;
}

TEST(Prefetch, InOrderAndThenDone) {
  BatchPrefetcher p(numbered, 5, 25, 3, /*pin=*/false);
  for (int64_t i = 5; i < 25; ++i) EXPECT_EQ(p.next().text_ids.item<int64_t>(), i);
  EXPECT_THROW(p.next(), std::out_of_range);
}

// Takes batches first, first + 1, ... and expects the next one to rethrow `message`.
void expect_batches_then_error(BatchPrefetcher& p, int64_t first, int64_t failing, const char* message) {
  for (int64_t i = first; i < failing; ++i) EXPECT_EQ(p.next().text_ids.item<int64_t>(), i);
  try {
    p.next();
    FAIL() << "batch " << failing << " should have rethrown";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), message);
  }
}

TEST(Prefetch, RethrowsWhatBuildingThrew) {
  BatchPrefetcher p([](int64_t i) -> Batch {
    if (i == 2) throw std::runtime_error("bad batch 2");
    return numbered(i);
  }, 0, 10, 4, false);
  expect_batches_then_error(p, 0, 2, "bad batch 2");
}

TEST(Prefetch, StopsMidStream) {
  std::atomic<int64_t> built{0};
  auto p = std::make_unique<BatchPrefetcher>([&](int64_t i) { ++built; return numbered(i); }, 0, 1000000, 2, false);
  p->next();
  p.reset();  // joins without building the rest
  EXPECT_LE(built.load(), 4);  // the one taken, `depth` ahead, and at most one in flight
}

void expect_same_batch(const Batch& a, const Batch& b, int64_t i) {
  EXPECT_TRUE(torch::equal(a.text_ids, b.text_ids)) << i;
  EXPECT_TRUE(torch::equal(a.region_feats, b.region_feats)) << i;
  EXPECT_TRUE(torch::equal(a.itm_labels, b.itm_labels)) << i;
  EXPECT_TRUE(torch::equal(a.mlm_labels, b.mlm_labels)) << i;
}

TEST(Prefetch, SyntheticStreamIsUnchanged) {
  ExperimentConfig cfg = load_config("", {"data.synth.num_train_images=300", "train.batch_size=8"});
  const synth::World world(cfg.data.synth);
  PretrainBatcher direct(world, data_vocab(cfg), cfg), ahead(world, data_vocab(cfg), cfg);
  BatchPrefetcher p([&](int64_t i) { return ahead.batch(i); }, 3, 12, 4, false);
  for (int64_t i = 3; i < 12; ++i) {
    expect_same_batch(direct.batch(i), p.next(), i);
  }
}

TEST(Prefetch, ThreadsDeliverInOrder) {
  std::atomic<int> running{0}, most{0};
  auto make = [&](int64_t i) {
    const int now = ++running;
    int seen = most.load();
    while (now > seen && !most.compare_exchange_weak(seen, now)) {
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(i % 4 == 1 ? 6 : 1));  // later ones finish first
    --running;
    return numbered(i);
  };
  BatchPrefetcher p([&] { return BatchPrefetcher::Make(make); }, 3, 4, 40, 6, false);
  for (int64_t i = 4; i < 40; ++i) EXPECT_EQ(p.next().text_ids.item<int64_t>(), i);
  EXPECT_THROW(p.next(), std::out_of_range);
  EXPECT_GE(most.load(), 2);  // the threads did build side by side
}

TEST(Prefetch, ThreadsRethrowAfterTheBatchesBeforeTheFailure) {
  // Batch 5 fails at once while batches 3 and 4 (other threads) are still being built.
  auto make = [](int64_t i) -> Batch {
    if (i == 5) throw std::runtime_error("bad batch 5");
    std::this_thread::sleep_for(std::chrono::milliseconds(i >= 3 ? 20 : 0));
    return numbered(i);
  };
  BatchPrefetcher p([&] { return BatchPrefetcher::Make(make); }, 3, 0, 30, 6, false);
  expect_batches_then_error(p, 0, 5, "bad batch 5");
}

TEST(Prefetch, SyntheticStreamIsUnchangedWithThreads) {
  // Each thread its own batcher; the threads' batchers share their pools of examples (each pool
  // built once) or not. 300 scenes, 32 examples a pool: pools straddle epochs.
  ExperimentConfig cfg = load_config("", {"data.synth.num_train_images=300", "train.batch_size=8", "data.bucket_batches=4"});
  const synth::World world(cfg.data.synth);
  const Vocab vocab = data_vocab(cfg);
  PretrainBatcher direct(world, vocab, cfg);
  for (const bool shared : {true, false}) {
    std::shared_ptr<PretrainBatcher> first;
    BatchPrefetcher p([&]() -> BatchPrefetcher::Make {
      auto own = std::make_shared<PretrainBatcher>(world, vocab, cfg, shared ? first.get() : nullptr);
      if (!first) first = own;
      return [own](int64_t i) { return own->batch(i); };
    }, 3, 1, 42, 4, false);
    for (int64_t i = 1; i < 42; ++i) expect_same_batch(direct.batch(i), p.next(), i);
    // Batches 1..41 lie in pools 0..10: shared, each is built once (none is evicted while
    // wanted: the threads are at most 4 + 3 batches apart; unshared, each thread builds them all).
    if (shared) EXPECT_EQ(first->pools_built(), 11);
  }
}

TEST(Prefetch, SharingPoolsNeedsTheSameStream) {
  ExperimentConfig cfg = load_config("", {"data.synth.num_train_images=300", "train.batch_size=8"});
  const synth::World world(cfg.data.synth);
  PretrainBatcher a(world, data_vocab(cfg), cfg);
  EXPECT_NO_THROW(PretrainBatcher(world, data_vocab(cfg), cfg, &a));
  // Whatever the pools' contents depend on: batch size, the image tokens the length sort reads,
  // the vocabulary that encodes the captions, the world itself.
  ExperimentConfig other = cfg;
  other.train.batch_size = 16;
  EXPECT_THROW(PretrainBatcher(world, data_vocab(other), other, &a), Error);
  other = cfg;
  other.data.max_regions = cfg.data.max_regions - 1;
  EXPECT_THROW(PretrainBatcher(world, data_vocab(other), other, &a), Error);
  Vocab smaller = Vocab::from_words({"a", "red", "cube"});
  EXPECT_THROW(PretrainBatcher(world, smaller, cfg, &a), Error);
  const synth::World twin(cfg.data.synth);
  EXPECT_THROW(PretrainBatcher(twin, data_vocab(cfg), cfg, &a), Error);
}

}  // namespace
}  // namespace mmt
