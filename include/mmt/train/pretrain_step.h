/* One optimisation step of pretraining: forward, losses, backward, gradient clipping, AdamW
 * (flat_adamw.h).
 * Shared by the trainer and the benchmarks so that what is timed is what trains. */
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "mmt/config/options.h"
#include "mmt/loss/pretraining.h"
#include "mmt/train/flat_adamw.h"

#include <torch/types.h>

namespace mmt {

class MultimodalTransformerImpl;
class Communicator;
class GradBuckets;
class AlignQueue;

class PretrainStep {
 public:
  /// AdamW over the model's parameters: weight decay on matrices, none on biases / norms.
  /// Batches go to runtime.device (where the model must already be), forward passes in bf16
  /// autocast when runtime.precision = bf16. With a communicator of several ranks, each batch is
  /// this rank's share of the global batch (pretraining_loss), the gradients are summed over the
  /// ranks before the update - in buckets of runtime.dist_bucket_mb started during the last
  /// micro-batch's backward pass (grad_buckets.h), or as one flat all-reduce after it (bucket size
  /// 0, or contrastive ITM, whose chunked backward passes follow the main one) - the metrics are
  /// global, and a non-finite loss on any rank (or a non-finite summed gradient) skips the step on all.
  PretrainStep(MultimodalTransformerImpl& model, const TrainOptions& options, const RuntimeOptions& runtime = {},
               Communicator* comm = nullptr);
  ~PretrainStep();

  /// Runs one step at learning rate `lr` (`step` seeds the choice of hard ITM negatives and sets
  /// train.distill_ramp's weight). A non-finite loss skips the update (no backward), and so
  /// does a finite loss whose gradient is not (its norm is taken every step; `grad_norm` in the
  /// metrics then says so): `finite` in the result is false for both.
  struct Result {
    LossOutput loss;
    bool finite = true;
  };
  Result run(const Batch& batch, double lr, int64_t step = 0);
  /// One optimizer step over several micro-batches: the gradient is the mean of theirs (each
  /// loss scaled by 1 / n), metrics are their means. `step` seeds hard negatives per micro-batch.
  Result run(const std::vector<Batch>& micro_batches, double lr, int64_t step = 0);

  /// A step whose result may still be on the device: get() reads it (once; waits for the device).
  class Pending {
   public:
    Result get();

   private:
    friend class PretrainStep;
    Result result_;         // complete unless `device_` holds something
    DeviceMetrics device_;  // deferred: each micro-batch's metrics (factors / n), then the gradient norm
    bool deferred_ = false;
    bool log_norm_ = false;  // deferred: the gradient norm joins the metrics (clipping is on)
  };
  /// run() without waiting for the device where that is possible - CUDA, one process, the fused
  /// AdamW kernel, no contrastive ITM (whose chunked backward reads its scores): metrics and the
  /// gradient norm stay on the device, and a non-finite loss or gradient cancels the update there (the
  /// backward pass runs, the kernel leaves parameters, moments and step count alone) instead of
  /// before the backward pass. The host can then queue the next step while this one runs.
  /// Elsewhere it is run(), already read.
  Pending launch(const std::vector<Batch>& micro_batches, double lr, int64_t step = 0);
  /// Whether launch() defers (see above).
  bool defers() const { return defer_; }

  FlatAdamW& optimizer() { return *optimizer_; }
  /// train.align_queue: the momentum model and queue the align loss reads (null without); its
  /// state() belongs in a resumable checkpoint.
  AlignQueue* align_queue() { return align_queue_.get(); }
  /// Wall time spent in the gradient all-reduce so far (distributed; it includes waiting for the
  /// slowest rank; with buckets, only the wait after the backward pass).
  double all_reduce_seconds() const { return all_reduce_seconds_; }
  /// Gradient buckets (0: one flat all-reduce, or a single process).
  int64_t num_buckets() const;

 private:
  MultimodalTransformerImpl& model_;
  TrainOptions options_;
  torch::Device device_;  // runtime.device, resolved once
  bool bf16_;
  Communicator* comm_;  // null or one rank: a single process
  bool defer_ = false;  // launch() leaves the step's metrics on the device
  double all_reduce_seconds_ = 0;
  std::unique_ptr<FlatAdamW> optimizer_;
  std::unique_ptr<GradBuckets> buckets_;  // distributed, runtime.dist_bucket_mb > 0
  std::unique_ptr<AlignQueue> align_queue_;  // train.align_queue > 0
  void after_update();  // the momentum model follows the weights just updated
};

/// The parameter whose gradient holds the largest share of the whole gradient's squared norm, as
/// the last step left the gradients (clipping scales them all alike, so the share is the
/// clipped one's too): its name, that share (0-1), its gradient's norm and the whole's. One
/// parameter far above all the rest (share near 1) means the global-norm clipping shrinks every
/// other gradient by the same factor: the trainer says so after its first step.
struct GradientShare {
  std::string name;
  double share = 0, norm = 0, total = 0;
};
GradientShare largest_gradient_share(MultimodalTransformerImpl& model);

}  // namespace mmt
