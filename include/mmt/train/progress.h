/* A progress line for long loops: done/total, rate, ETA and a caller-supplied tail (losses).
 * On a terminal it redraws one line in place a few times a second; otherwise (logs, CI) it
 * prints a plain line every `plain_every` seconds and at the end. */
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace mmt {

class Progress {
 public:
  /// unit: what is counted ("ex", "pairs"); per_item: units per counted item (rate display).
  Progress(std::string label, int64_t total, std::ostream& out, std::string unit = "it",
           double units_per_item = 1.0, double plain_every = 15.0);
  /// Reports `done` items; `tail` is appended (e.g. "loss 1.23 itm_acc 0.61").
  void update(int64_t done, const std::string& tail = "");
  /// Prints the final line (always), with `done` items.
  void finish(int64_t done, const std::string& tail = "");
  /// The count this process started from (a resumed run's first step): the rate and the ETA
  /// count only the items done since, in the time since.
  void start_at(int64_t done) { first_ = done; }
  /// Items from `at` on are expected to take `ratio` times as long as those before (training
  /// steps with hard negatives from train.itm_hard_from_step on): until `at` the ETA counts them
  /// so; from then on it uses the rate of the items since `at` alone.
  void expect_slower_from(int64_t at, double ratio) { slower_at_ = at, slower_ratio_ = ratio; }
  double elapsed() const;
  /// The line for `done` items after `elapsed` seconds (what update/finish print).
  std::string line(int64_t done, const std::string& tail, double elapsed) const;

  static std::string format_duration(double seconds);  // 1h02m, 3m05s, 12s

 private:
  std::string label_, unit_;
  int64_t total_, first_ = 0;
  int64_t slower_at_ = -1;
  double slower_ratio_ = 1.0, at_slower_ = -1.0;  // the elapsed seconds when `slower_at_` items were done
  double units_per_item_, plain_every_;
  std::ostream& out_;
  bool tty_;
  std::chrono::steady_clock::time_point start_, last_print_;
};

}  // namespace mmt
