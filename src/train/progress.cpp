/* Progress line (see progress.h). */
#include "mmt/train/progress.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "mmt/util/tee_log.h"

namespace mmt {

Progress::Progress(std::string label, int64_t total, std::ostream& out, std::string unit, double units_per_item,
                   double plain_every)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      units_per_item_(units_per_item),
      plain_every_(plain_every),
      out_(out),
      tty_(writes_to_terminal(out)),
      start_(std::chrono::steady_clock::now()),
      last_print_(start_) {}

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

std::string Progress::format_duration(double s) {
  char buf[32];
  const int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", long(t / 3600), long(t % 3600 / 60));
  else if (t >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", long(t / 60), long(t % 60));
  else std::snprintf(buf, sizeof buf, "%lds", long(t));
  return buf;
}

std::string Progress::line(int64_t done, const std::string& tail, double el) const {
  const int64_t here = done - first_;  // done by this process
  const double rate = el > 0 ? here * units_per_item_ / el : 0.0;
  double eta = here > 0 ? el * (total_ - done) / here : 0.0;
  if (here > 0 && slower_at_ > first_ && slower_at_ < total_) {
    if (done <= slower_at_ || at_slower_ < 0)  // the items before at their rate, the slower ones at ratio x it
      eta = el / here * (std::max<int64_t>(0, slower_at_ - done) + slower_ratio_ * (total_ - std::max(done, slower_at_)));
    else  // past the switch: the slower items' own rate
      eta = (el - at_slower_) / (done - slower_at_) * (total_ - done);
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %ld/%ld [%3.0f%%] %.1f %s/s, %s elapsed, ETA %s", label_.c_str(), long(done),
                long(total_), total_ > 0 ? 100.0 * done / total_ : 100.0, rate, unit_.c_str(),
                format_duration(el).c_str(), done >= total_ ? "0s" : format_duration(eta).c_str());
  return tail.empty() ? std::string(buf) : std::string(buf) + " | " + tail;
}

void Progress::update(int64_t done, const std::string& tail) {
  if (slower_at_ >= 0 && at_slower_ < 0 && done >= slower_at_) at_slower_ = elapsed();
  const auto now = std::chrono::steady_clock::now();
  const double since = std::chrono::duration<double>(now - last_print_).count();
  if (since < (tty_ ? 0.25 : plain_every_)) return;
  last_print_ = now;
  if (tty_) out_ << "\r\033[K" << line(done, tail, elapsed()) << std::flush;
  else out_ << line(done, tail, elapsed()) << std::endl;
}

void Progress::finish(int64_t done, const std::string& tail) {
  if (tty_) out_ << "\r\033[K";
  out_ << line(done, tail, elapsed()) << std::endl;
}

}  // namespace mmt
