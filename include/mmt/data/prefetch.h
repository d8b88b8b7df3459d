/* Builds batches ahead of the training step on background threads, delivered in order: for
 * batch functions that are deterministic in the batch index (the synthetic PretrainBatcher), so
 * the stream is the same with or without prefetching and whatever the number of threads. With
 * `pin`, batches are put in page-locked memory so the copy to a GPU can overlap (batch_to copies
 * pinned tensors non-blocking). */
#pragma once

#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "mmt/data/batch.h"

namespace mmt {

class BatchPrefetcher {
 public:
  using Make = std::function<Batch(int64_t)>;
  /// Batches make(first), make(first + 1), ... up to (not including) end, `depth` ahead.
  BatchPrefetcher(Make make, int64_t first, int64_t end, int64_t depth, bool pin);
  /// `threads` threads, each with the function per_thread() gave it (its own state, e.g. its own
  /// batcher): thread w builds indices first + w, first + w + threads, ...; next() still returns
  /// them in order.
  BatchPrefetcher(const std::function<Make()>& per_thread, int64_t threads, int64_t first, int64_t end, int64_t depth,
                  bool pin);
  ~BatchPrefetcher();
  BatchPrefetcher(const BatchPrefetcher&) = delete;
  BatchPrefetcher& operator=(const BatchPrefetcher&) = delete;

  /// The next batch in order; rethrows what building it threw.
  Batch next();

 private:
  void produce(size_t worker);

  std::vector<Make> makers_;
  int64_t first_, next_, end_;
  int64_t depth_;
  bool pin_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<int64_t, Batch> ready_;
  std::exception_ptr error_;
  int64_t error_at_ = -1;  // the index whose building threw
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace mmt
