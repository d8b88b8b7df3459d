/* Gradient buckets all-reduced during the backward pass (see grad_buckets.h). */
#include "mmt/train/grad_buckets.h"

#include <torch/csrc/autograd/function.h>
#include <torch/csrc/autograd/function_hook.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>

#include "mmt/train/distributed.h"
#include "mmt/util/error.h"

namespace mmt {

struct GradBuckets::State {
  Communicator* comm = nullptr;
  torch::Tensor flat;
  std::vector<std::pair<int64_t, int64_t>> range;  // bucket -> [begin, end) of the flat buffer
  std::vector<int64_t> expected;                   // bucket -> parameters with a gradient accumulator
  std::vector<int64_t> pending;                    // bucket -> parameters not yet accumulated this pass
  std::vector<size_t> bucket_of;                   // parameter -> bucket
  size_t next = 0;                                 // the first bucket not started
  bool armed = false;
  int64_t started_early = 0;
  // The hooks: each parameter's AccumulateGrad node (kept alive: the parameter holds it weakly)
  // and the key that removes the hook again.
  std::vector<std::pair<std::shared_ptr<torch::autograd::Node>, uintptr_t>> hooks;

  void start_ready() {
    while (next < range.size() && pending[next] == 0) start(next++), ++started_early;
  }
  void start(size_t b) {
    comm->start_all_reduce_sum(flat.narrow(0, range[b].first, range[b].second - range[b].first), "gradients");
  }
};

namespace {

// Runs after the parameter's AccumulateGrad node: its gradient for this pass is in the buffer.
struct AccumulatedHook : torch::autograd::FunctionPostHook {
  AccumulatedHook(std::weak_ptr<GradBuckets::State> s, size_t param) : state(std::move(s)), param(param) {}
  torch::autograd::variable_list operator()(const torch::autograd::variable_list& outputs,
                                            const torch::autograd::variable_list& /*inputs*/) override {
    if (auto s = state.lock(); s && s->armed) {
      const size_t b = s->bucket_of[param];
      if (--s->pending[b] == 0) s->start_ready();
    }
    return outputs;
  }
  std::weak_ptr<GradBuckets::State> state;
  size_t param;
};

}  // namespace

GradBuckets::GradBuckets(const std::vector<torch::Tensor>& params, const torch::Tensor& flat_grads, int64_t bucket_bytes,
                         Communicator& comm)
    : state_(std::make_shared<State>()) {
  if (bucket_bytes <= 0) throw Error("GradBuckets: the bucket size must be positive");
  State& s = *state_;
  s.comm = &comm;
  s.flat = flat_grads;
  const float* base = flat_grads.data_ptr<float>();
  // Each parameter's place in the buffer, from its gradient view.
  std::vector<std::pair<int64_t, size_t>> by_offset;  // (offset, parameter)
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& g = params[i].grad();
    if (!g.defined() || g.data_ptr<float>() < base || g.data_ptr<float>() + g.numel() > base + flat_grads.numel())
      throw Error("GradBuckets: parameter " + std::to_string(i) + "'s gradient is not a view into the flat buffer");
    by_offset.push_back({g.data_ptr<float>() - base, i});
  }
  std::sort(by_offset.begin(), by_offset.end());
  // Buckets from the end of the buffer (the last parameters, whose gradients come first).
  s.bucket_of.assign(params.size(), 0);
  const int64_t per_bucket = std::max<int64_t>(1, bucket_bytes / static_cast<int64_t>(sizeof(float)));
  int64_t end = flat_grads.numel(), begin = end;
  for (size_t k = by_offset.size(); k-- > 0;) {
    const auto [offset, i] = by_offset[k];
    begin = offset;
    s.bucket_of[i] = s.range.size();
    if (end - begin >= per_bucket || k == 0) {
      s.range.push_back({k == 0 ? 0 : begin, end});
      end = begin;
    }
  }
  s.expected.assign(s.range.size(), 0);
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].requires_grad()) continue;  // never accumulates: its bucket waits for finish()
    auto acc = torch::autograd::impl::grad_accumulator(params[i]);
    if (!acc) continue;
    ++s.expected[s.bucket_of[i]];
    const uintptr_t key = acc->add_post_hook(std::make_unique<AccumulatedHook>(state_, i));
    s.hooks.push_back({std::move(acc), key});
  }
  s.pending = s.expected;
}

GradBuckets::~GradBuckets() {
  for (auto& [accumulator, key] : state_->hooks) accumulator->del_post_hook(key);
}

void GradBuckets::arm() {
  State& s = *state_;
  s.pending = s.expected;
  s.next = 0;
  s.armed = true;
  s.start_ready();  // buckets without a parameter that accumulates are ready at once
  s.started_early = 0;  // from here on: the buckets the backward pass's hooks start
}

void GradBuckets::finish() {
  State& s = *state_;
  s.armed = false;
  while (s.next < s.range.size()) s.start(s.next++);
  s.comm->wait_started("gradients");
}

int64_t GradBuckets::num_buckets() const { return static_cast<int64_t>(state_->range.size()); }
int64_t GradBuckets::started_during_backward() const { return state_->started_early; }

}  // namespace mmt
