/* Gradient all-reduce in buckets, started while the backward pass is still running (the idea of
 * PyTorch DDP's reducer), over mmt's Communicator.
 *
 * The flat gradient buffer (FlatAdamW) is cut into buckets of consecutive parameters, the last
 * parameters first: backward produces their gradients first. A hook after each parameter's
 * gradient accumulation counts its bucket down; a full bucket is summed over the ranks
 * asynchronously, so communication overlaps the rest of the backward pass. Buckets start in bucket
 * order on every rank (collectives must be issued in the same order everywhere): a bucket holding
 * a parameter that got no gradient in this pass (unused on this rank, e.g. a head whose loss had
 * no rows here) waits, with every later bucket, for finish(). The sums equal one flat all-reduce
 * of the buffer. */
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace mmt {

class Communicator;

class GradBuckets {
 public:
  /// `params`' gradients must be views into `flat_grads` (FlatAdamW); `bucket_bytes` > 0.
  GradBuckets(const std::vector<torch::Tensor>& params, const torch::Tensor& flat_grads, int64_t bucket_bytes,
              Communicator& comm);
  ~GradBuckets();  // removes the hooks
  GradBuckets(const GradBuckets&) = delete;
  GradBuckets& operator=(const GradBuckets&) = delete;

  /// The next backward pass completes the step's gradient: start buckets as they fill.
  void arm();
  /// Starts the buckets still waiting, waits for every sum, and disarms.
  void finish();

  int64_t num_buckets() const;
  /// Buckets started during the last armed backward pass, before finish().
  int64_t started_during_backward() const;

  struct State;  // defined in grad_buckets.cpp, shared with the hooks

 private:
  std::shared_ptr<State> state_;
};

}  // namespace mmt
