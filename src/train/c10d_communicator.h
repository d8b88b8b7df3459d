/* A Communicator over one c10d process group - Gloo (distributed.cpp) or NCCL
 * (nccl_communicator.cpp). Private to src/train: c10d's headers, whose class names moved between
 * libtorch 1.13 and 2.x, stay in the files that include this one. */
#pragma once

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/Types.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "mmt/train/distributed.h"

namespace mmt::c10d_detail {

/// The job's rendezvous store: a TCPStore at MASTER_ADDR:MASTER_PORT served by rank 0 (or by
/// torchrun's agent, its keys then under this restart's attempt), its keys under "mmt".
c10::intrusive_ptr<c10d::Store> rendezvous_store(const DistEnv& env, std::chrono::milliseconds timeout);

std::string first_line(const std::string& s);

/// The error of a rank that could not join the group within the timeout.
DistError join_failure(const DistEnv& env, std::chrono::milliseconds timeout, const std::exception& e);

/// Whether a process group has abort() (ProcessGroupNCCL; libtorch 1.x's ProcessGroupGloo does not).
template <class Group, class = void>
struct HasAbort : std::false_type {};
template <class Group>
struct HasAbort<Group, std::void_t<decltype(std::declval<Group&>().abort())>> : std::true_type {};

/// `Group`: c10d's ProcessGroupGloo or ProcessGroupNCCL. `staging`: the device the group's
/// collectives need their tensors on (NCCL: this rank's GPU), none when any will do (Gloo);
/// tensors elsewhere (the CPU's counts and metrics) travel there and back.
template <class Group>
class C10dCommunicator : public Communicator {
 public:
  C10dCommunicator(const DistEnv& env, std::chrono::milliseconds timeout, c10::intrusive_ptr<Group> group,
                   std::string backend, std::optional<torch::Device> staging)
      : env_(env), timeout_(timeout), group_(std::move(group)), backend_(std::move(backend)), staging_(staging) {}

  // What the destructor of a ProcessGroupNCCL nobody shut down does (abort its communicators,
  // without blocking: a rank may have died), minus the warning it writes first - which, written
  // by a PyTorch wheel's libc10 in the one-rank GPU test on an H200, crashed the process
  // (docs/gpu.md). Not yet run on a GPU.
  ~C10dCommunicator() override {
    if constexpr (HasAbort<Group>::value) {
      try {
        group_->abort();
      } catch (...) {  // a group already aborted or broken: its own destructor cleans up
      }
    }
  }

  int rank() const override { return env_.rank; }
  int size() const override { return env_.world; }
  std::string describe() const override { return env_.describe() + ", " + backend_; }

  void all_reduce_sum(torch::Tensor& t, const char* what) override {
    std::vector<torch::Tensor> v{staged(t)};
    run(what, [&] { return group_->allreduce(v); });
    if (!v[0].is_same(t)) t.copy_(v[0]);
  }

  void start_all_reduce_sum(const torch::Tensor& t, const char* what) override {
    TORCH_CHECK(!staging_ || t.device() == *staging_, "start_all_reduce_sum (", what, "): a ", backend_,
                " group sums tensors on ", staging_->str(), ", not ", t.device().str());
    std::lock_guard<std::mutex> lock(mu_);
    try {
      std::vector<torch::Tensor> v{t};
      started_.push_back(group_->allreduce(v));
    } catch (const std::exception& e) {
      throw failure(what, e);
    }
  }

  void wait_started(const char* what) override {
    std::vector<c10::intrusive_ptr<c10d::Work>> started;
    {  // taken under the lock, waited for without it: a collective started meanwhile is not held up
      std::lock_guard<std::mutex> lock(mu_);
      started.swap(started_);
    }
    for (auto& work : started) {
      try {
        wait(*work);
      } catch (const std::exception& e) {
        throw failure(what, e);
      }
    }
  }

  torch::Tensor all_gather(const torch::Tensor& t, const char* what) override {
    std::vector<torch::Tensor> in{staged(t.contiguous())};
    std::vector<std::vector<torch::Tensor>> out(1);
    for (int r = 0; r < env_.world; ++r) out[0].push_back(torch::empty_like(in[0]));
    run(what, [&] { return group_->allgather(out, in); });
    return torch::stack(out[0]).to(t.device());
  }

  void broadcast(torch::Tensor& t, int root, const char* what) override {
    std::vector<torch::Tensor> v{staged(t)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    run(what, [&] { return group_->broadcast(v, o); });
    if (!v[0].is_same(t)) t.copy_(v[0]);
  }

  void barrier(const char* what) override {
    run(what, [&] { return group_->barrier(); });
  }

 private:
  torch::Tensor staged(const torch::Tensor& t) const {
    return staging_ && t.device() != *staging_ ? t.to(*staging_) : t;
  }

  DistError failure(const char* what, const std::exception& e) const {
    return DistError("rank " + std::to_string(env_.rank) + " of " + std::to_string(env_.world) + ": " + what +
                     " failed across processes (another rank died or did not answer within " +
                     std::to_string(timeout_.count() / 1000) + " s, runtime.dist_timeout_s): " + first_line(e.what()) +
                     ". Relaunch the job with --resume to continue from the last checkpoint");
  }

  // Collectives are issued under the lock - every rank must issue them in the same order, and
  // gradient buckets start theirs from autograd's threads - and waited for outside it.
  template <class F>
  void run(const char* what, F&& start) {
    try {
      c10::intrusive_ptr<c10d::Work> work;
      {
        std::lock_guard<std::mutex> lock(mu_);
        work = start();
      }
      wait(*work);
    } catch (const std::exception& e) {
      throw failure(what, e);
    }
  }

  // Gloo: the host waits, at most the timeout. NCCL: the current stream waits (the host goes on
  // launching; a copy to the host then waits for the result), and NCCL's watchdog enforces the
  // group's timeout (options->timeout) - a host wait here would cost the overlap.
  void wait(c10d::Work& work) const {
    if (staging_) work.wait();
    else work.wait(timeout_);
  }

  DistEnv env_;
  std::chrono::milliseconds timeout_;
  c10::intrusive_ptr<Group> group_;
  std::string backend_;
  std::optional<torch::Device> staging_;
  std::mutex mu_;
  std::vector<c10::intrusive_ptr<c10d::Work>> started_;  // start_all_reduce_sum's, not yet waited for
};

#ifdef MMT_HAVE_NCCL
/// The NCCL group of this job on `device` (nccl_communicator.cpp).
std::shared_ptr<Communicator> connect_nccl(const DistEnv& env, std::chrono::milliseconds timeout, torch::Device device);
#endif

}  // namespace mmt::c10d_detail
