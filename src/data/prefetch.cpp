/* Background batch building (see prefetch.h). */
#include "mmt/data/prefetch.h"

#include <stdexcept>

namespace mmt {

BatchPrefetcher::BatchPrefetcher(std::function<Batch(int64_t)> make, int64_t first, int64_t end, int64_t depth, bool pin)
    : make_(std::move(make)), next_(first), end_(end), depth_(static_cast<size_t>(std::max<int64_t>(1, depth))), pin_(pin) {
  thread_ = std::thread([this] { produce(); });
}

BatchPrefetcher::~BatchPrefetcher() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_.join();
}

void BatchPrefetcher::produce() {
  try {
    for (int64_t i = next_; i < end_; ++i) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [&] { return stop_ || ready_.size() < depth_; });
        if (stop_) return;
      }
      Batch b = make_(i);
      if (pin_) b = map_tensors(b, [](const torch::Tensor& t) { return t.pin_memory(); });
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ready_.push_back(std::move(b));
      }
      changed_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    finished_ = true;
  }
  changed_.notify_all();
}

Batch BatchPrefetcher::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  changed_.wait(lock, [&] { return !ready_.empty() || error_ || finished_; });
  if (ready_.empty()) {
    if (error_) std::rethrow_exception(error_);
    throw std::out_of_range("BatchPrefetcher: no batch left");
  }
  Batch b = std::move(ready_.front());
  ready_.pop_front();
  lock.unlock();
  changed_.notify_all();
  return b;
}

}  // namespace mmt
