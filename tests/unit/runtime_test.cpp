/* Threads are set as configured, and the BLAS in use is identified (so mmt can warn about
 * the slow reference BLAS). */
#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <sstream>

#include "mmt/util/runtime.h"

namespace mmt {
namespace {

TEST(Runtime, AppliesThreadSettingsAndNamesTheBlas) {
  RuntimeOptions r;
  r.threads = 1, r.blas_threads = 1;
  std::ostringstream warn;
  const std::string line = configure_runtime(r, warn);
  EXPECT_EQ(at::get_num_threads(), 1);
  const BlasInfo blas = detect_blas();
  EXPECT_FALSE(blas.name.empty());
  EXPECT_NE(line.find(blas.name), std::string::npos) << line;
  if (auto get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) {
    EXPECT_EQ(blas.name, "OpenBLAS");
    EXPECT_EQ(get(), 1);
    r.blas_threads = 2;
    configure_runtime(r, warn);
    EXPECT_EQ(get(), 2);
  }
  // The warning appears exactly when the reference BLAS is detected.
  EXPECT_EQ(warn.str().find("reference BLAS") != std::string::npos, blas.reference);
}

}  // namespace
}  // namespace mmt
