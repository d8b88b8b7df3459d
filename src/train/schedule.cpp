/* Learning-rate schedule (see schedule.h). */
#include "mmt/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "mmt/util/error.h"

namespace mmt {

double learning_rate(const std::string& schedule, double peak, int64_t step, int64_t warmup, int64_t total) {
  if (step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (schedule == "constant") return peak;
  const double span = static_cast<double>(std::max<int64_t>(1, total - warmup));
  const double progress = std::clamp(static_cast<double>(step - warmup) / span, 0.0, 1.0);
  if (schedule == "linear") return peak * (1.0 - progress);
  if (schedule == "cosine") return peak * 0.5 * (1.0 + std::cos(3.141592653589793 * progress));
  throw Error("unknown schedule '" + schedule + "'; valid: linear, cosine, constant");
}

}  // namespace mmt
