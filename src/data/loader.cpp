/* Batch loader (see loader.h): a producer thread plans steps in order, workers build them, a
 * reorder map hands them back in order; at most `prefetch` steps are planned but not consumed. */
#include "mmt/data/loader.h"

#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

namespace mmt {

struct BatchLoader::Impl {
  PlanFn plan;
  BuildFn build;
  int64_t threads, prefetch, next_plan, next_out;
  std::mutex mu;
  std::condition_variable changed;
  std::deque<std::pair<int64_t, Plan>> jobs;
  struct Done {
    Batch batch;
    Plan plan;
    std::exception_ptr error;
  };
  std::map<int64_t, Done> done;
  bool stop = false;
  std::vector<std::thread> pool;

  void producer() {
    for (;;) {
      int64_t step;
      {
        std::unique_lock<std::mutex> lock(mu);
        changed.wait(lock, [&] { return stop || next_plan - next_out < prefetch; });
        if (stop) return;
        step = next_plan;
      }
      Plan p;
      std::exception_ptr error;
      try {
        p = plan(step);
      } catch (...) {
        error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mu);
      ++next_plan;
      if (error) done[step] = {Batch{}, nullptr, error};
      else jobs.emplace_back(step, std::move(p));
      changed.notify_all();
      if (error) return;  // nothing after a failed plan
    }
  }

  void worker() {
    for (;;) {
      std::pair<int64_t, Plan> job;
      {
        std::unique_lock<std::mutex> lock(mu);
        changed.wait(lock, [&] { return stop || !jobs.empty(); });
        if (stop) return;
        job = std::move(jobs.front());
        jobs.pop_front();
      }
      Done d;
      d.plan = job.second;
      try {
        d.batch = build(job.first, job.second);
      } catch (...) {
        d.error = std::current_exception();
      }
      std::lock_guard<std::mutex> lock(mu);
      done[job.first] = std::move(d);
      changed.notify_all();
    }
  }
};

BatchLoader::BatchLoader(PlanFn plan, BuildFn build, int64_t threads, int64_t prefetch, int64_t first_step)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.plan = std::move(plan), m.build = std::move(build);
  m.threads = threads, m.prefetch = std::max<int64_t>(1, prefetch);
  m.next_plan = m.next_out = first_step;
  if (threads > 0) {
    m.pool.emplace_back([this] { impl_->producer(); });
    for (int64_t i = 0; i < threads; ++i) m.pool.emplace_back([this] { impl_->worker(); });
  }
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->changed.notify_all();
  for (auto& t : impl_->pool) t.join();
}

BatchLoader::Item BatchLoader::next() {
  Impl& m = *impl_;
  if (m.threads == 0) {  // synchronous
    const int64_t step = m.next_out++;
    Plan p = m.plan(step);
    Batch b = m.build(step, p);
    return {step, std::move(b), std::move(p)};
  }
  std::unique_lock<std::mutex> lock(m.mu);
  m.changed.wait(lock, [&] { return m.done.count(m.next_out) > 0; });
  auto node = m.done.extract(m.next_out);
  const int64_t step = m.next_out++;
  m.changed.notify_all();
  lock.unlock();
  if (node.mapped().error) std::rethrow_exception(node.mapped().error);
  return {step, std::move(node.mapped().batch), std::move(node.mapped().plan)};
}

}  // namespace mmt
