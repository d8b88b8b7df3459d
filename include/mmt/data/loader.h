/* The batch loader: worker threads build batches ahead of the training step, through a bounded
 * queue, and hand them over in step order.
 *
 * Work is split in two: `plan(step)` runs on one producer thread in step order and does the
 * sequential, cheap part (drawing the examples from the mixture sampler, whose state moves);
 * `build(step, plan)` runs on any worker and does the expensive part (decoding, tokenising,
 * masking, negative pairing) as a function of (step, plan) only. So the batches are the same
 * whatever the number of threads (0 threads = build on the caller's thread). A worker's
 * exception reaches the caller at that step. */
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "mmt/data/batch.h"

namespace mmt {

class BatchLoader {
 public:
  using Plan = std::shared_ptr<const void>;
  using PlanFn = std::function<Plan(int64_t step)>;
  using BuildFn = std::function<Batch(int64_t step, const Plan& plan)>;
  struct Item {
    int64_t step;
    Batch batch;
    Plan plan;  // what plan() returned for this step (e.g. the sampler state after it)
  };

  BatchLoader(PlanFn plan, BuildFn build, int64_t threads, int64_t prefetch, int64_t first_step = 0);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  /// The next step's batch (blocks until it is built).
  Item next();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mmt
