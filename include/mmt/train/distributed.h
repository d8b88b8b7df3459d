/* Data-parallel training and evaluation over c10d (DESIGN.md: "Distributed training uses c10d").
 *
 * A job of N processes is launched by torchrun, SLURM's srun or by hand; each process reads its
 * place in the job from the environment (read_dist_env) and joins a process group (connect).
 * The rest of mmt sees only the small Communicator interface below, so c10d's headers (whose
 * class names moved between libtorch 1.13 and 2.x) stay inside distributed.cpp.
 *
 * How training uses it (docs/distributed.md):
 *   - every rank takes its contiguous share of the rows of the same global batch (synthetic
 *     batches are a pure function of the step; real-data draws are planned identically on every
 *     rank and each rank loads only its share), so the samples of a global batch are the same
 *     set whatever the number of processes;
 *   - each loss is normalised by its global count (masked tokens, masked regions, pairs), so the
 *     sum over ranks of the local gradients is the gradient of the single-process loss; the flat
 *     gradient buffer is summed across ranks in one all-reduce per optimizer step;
 *   - dual-encoder InfoNCE gathers every rank's embeddings (the local part keeps its gradient);
 *   - rank 0 writes the run directory; a failed collective (a rank died, or stopped answering
 *     for runtime.dist_timeout_s) ends every rank with an error naming the operation. */
#pragma once

#include <torch/types.h>

#include <memory>
#include <string>
#include <vector>

#include "mmt/train/dist_env.h"
#include "mmt/util/error.h"

namespace mmt {

/// Thrown when a collective fails: the message names the operation, the rank and the cause.
struct DistError : Error {
  using Error::Error;
};

/// The collectives mmt needs. All ranks must make the same calls in the same order.
class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "rank 1 of 2 (local rank 1, torchrun, rendezvous 127.0.0.1:29500), gloo"
  virtual std::string describe() const = 0;
  /// Sums `t` over ranks, in place (float32 / float64 / int64, contiguous). `what` names the
  /// operation in errors ("gradients", "loss counts").
  virtual void all_reduce_sum(torch::Tensor& t, const char* what) = 0;
  /// Starts summing `t` over ranks in place and returns at once (`t` must stay alive and
  /// untouched); wait_started() waits for every sum started so far. Like every collective, the
  /// same sums must be started in the same order on every rank (gradient buckets, grad_buckets.h).
  virtual void start_all_reduce_sum(const torch::Tensor& t, const char* what) = 0;
  virtual void wait_started(const char* what) = 0;
  /// Every rank's `t` (same shape everywhere), stacked: (size, *t.shape).
  virtual torch::Tensor all_gather(const torch::Tensor& t, const char* what) = 0;
  /// Rank `root`'s `t` into every rank's `t`, in place.
  virtual void broadcast(torch::Tensor& t, int root, const char* what) = 0;
  virtual void barrier(const char* what) = 0;
};

/// Ranks agree that a phase went well: `local_error` empty means it did here. Throws Error with
/// the local message where it failed, and DistError on the other ranks (no rank waits for a
/// collective that a failed rank will never join). A no-op without a communicator.
void agree(Communicator* comm, const std::string& local_error, const char* what);

/// Sums a vector of doubles over ranks (a no-op without a communicator).
std::vector<double> all_reduce_sum(Communicator* comm, std::vector<double> values, const char* what);

/// Every rank's rows of `local` (rows may differ in number between ranks), concatenated in rank
/// order; the local rows keep their autograd graph, the others are constants. `counts` is the
/// number of rows of each rank (from a previous exchange).
torch::Tensor all_gather_rows(Communicator& comm, const torch::Tensor& local, const std::vector<int64_t>& counts,
                              const char* what);

}  // namespace mmt
