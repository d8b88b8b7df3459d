/* Learning-rate schedule: linear warmup from 0 to the peak, then linear or cosine decay to 0
 * at the last step, or constant. */
#pragma once

#include <cstdint>
#include <string>

namespace mmt {

/// The learning rate of optimizer step `step` (0-based) of `total`.
double learning_rate(const std::string& schedule, double peak, int64_t step, int64_t warmup, int64_t total);

}  // namespace mmt
