/* Builds batches ahead of the training step on one background thread, in order: for batch
 * functions that are deterministic in the batch index (the synthetic PretrainBatcher), so the
 * stream is the same with or without prefetching. With `pin`, batches are put in page-locked
 * memory so the copy to a GPU can overlap (batch_to copies pinned tensors non-blocking). */
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

#include "mmt/data/batch.h"

namespace mmt {

class BatchPrefetcher {
 public:
  /// Batches make(first), make(first + 1), ... up to (not including) end, `depth` ahead.
  BatchPrefetcher(std::function<Batch(int64_t)> make, int64_t first, int64_t end, int64_t depth, bool pin);
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  /// The next batch in order; rethrows what building it threw.
  Batch next();

 private:
  void produce();

  std::function<Batch(int64_t)> make_;
  int64_t next_, end_;
  size_t depth_;
  bool pin_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Batch> ready_;
  std::exception_ptr error_;
  bool stop_ = false, finished_ = false;
  std::thread thread_;
};

}  // namespace mmt
