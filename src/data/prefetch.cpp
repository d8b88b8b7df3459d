/* Background batch building (see prefetch.h). */
#include "mmt/data/prefetch.h"

#include <algorithm>
#include <stdexcept>

namespace mmt {

BatchPrefetcher::BatchPrefetcher(Make make, int64_t first, int64_t end, int64_t depth, bool pin)
    : BatchPrefetcher([&make] { return make; }, 1, first, end, depth, pin) {}

BatchPrefetcher::BatchPrefetcher(const std::function<Make()>& per_thread, int64_t threads, int64_t first, int64_t end,
                                 int64_t depth, bool pin)
    : first_(first), next_(first), end_(end), pin_(pin) {
  if (threads < 1) throw std::invalid_argument("BatchPrefetcher: needs at least one thread");
  for (int64_t w = 0; w < threads; ++w) makers_.push_back(per_thread());
  // At least one batch in flight per thread.
  depth_ = std::max<int64_t>({1, depth, static_cast<int64_t>(makers_.size())});
  for (size_t w = 0; w < makers_.size(); ++w) threads_.emplace_back([this, w] { produce(w); });
}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  for (auto& t : threads_) t.join();
}

void BatchPrefetcher::produce(size_t worker) {
  const int64_t n = static_cast<int64_t>(makers_.size());
  for (int64_t i = first_ + static_cast<int64_t>(worker); i < end_; i += n) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      // After a failure, the indices before it are still built (next() returns them first).
      changed_.wait(lock, [&] { return stop_ || (error_ && error_at_ < i) || i < next_ + depth_; });
      if (stop_ || (error_ && error_at_ < i)) return;
    }
    try {
      Batch b = makers_[worker](i);
      if (pin_) b = map_tensors(b, [](const torch::Tensor& t) { return t.pin_memory(); });
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(i, std::move(b));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_ || i < error_at_) error_ = std::current_exception(), error_at_ = i;
    }
    changed_.notify_all();
  }
}

Batch BatchPrefetcher::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (next_ >= end_) throw std::out_of_range("BatchPrefetcher: no batch left");
  changed_.wait(lock, [&] { return ready_.count(next_) > 0 || (error_ && error_at_ <= next_); });
  auto it = ready_.find(next_);
  if (it == ready_.end()) std::rethrow_exception(error_);
  Batch b = std::move(it->second);
  ready_.erase(it);
  ++next_;
  lock.unlock();
  changed_.notify_all();
  return b;
}

}  // namespace mmt
