/* Learning-rate schedule shapes. */
#include <gtest/gtest.h>

#include "mmt/train/schedule.h"

namespace mmt {
namespace {

TEST(Schedule, WarmupThenDecayToZero) {
  EXPECT_DOUBLE_EQ(learning_rate("linear", 1.0, 0, 10, 110), 0.1);
  EXPECT_DOUBLE_EQ(learning_rate("linear", 1.0, 9, 10, 110), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate("linear", 1.0, 10, 10, 110), 1.0);
  EXPECT_DOUBLE_EQ(learning_rate("linear", 1.0, 60, 10, 110), 0.5);
  EXPECT_NEAR(learning_rate("cosine", 1.0, 60, 10, 110), 0.5, 1e-12);
  EXPECT_NEAR(learning_rate("cosine", 1.0, 110, 10, 110), 0.0, 1e-12);
  EXPECT_DOUBLE_EQ(learning_rate("constant", 2.0, 100, 10, 110), 2.0);
  EXPECT_THROW(learning_rate("step", 1.0, 50, 10, 110), std::exception);
}

}  // namespace
}  // namespace mmt
