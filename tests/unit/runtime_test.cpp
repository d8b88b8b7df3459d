/* Threads are set as configured, the BLAS in use is identified (so mmt can warn about the slow
 * reference BLAS), and a distributed process picks the GPU of its local rank. */
#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <dlfcn.h>

#include <sstream>

#include "mmt/util/device.h"
#include "mmt/util/runtime.h"

#include <cstdlib>

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

TEST(Runtime, CudaWithoutIndexIsTheLocalRanksGpu) {
  const char* keep_local = std::getenv("LOCAL_RANK");
  const char* keep_slurm = std::getenv("SLURM_LOCALID");
  const std::string local = keep_local ? keep_local : "", slurm = keep_slurm ? keep_slurm : "";
  ::unsetenv("LOCAL_RANK"), ::unsetenv("SLURM_LOCALID");
  EXPECT_EQ(default_cuda_index(4), 0);  // one process
  ::setenv("SLURM_LOCALID", "5", 1);
  EXPECT_EQ(default_cuda_index(4), 1);  // srun: its local id
  ::setenv("LOCAL_RANK", "3", 1);
  EXPECT_EQ(default_cuda_index(4), 3);  // torchrun's variable first
  EXPECT_EQ(default_cuda_index(2), 1);  // more processes than GPUs: round-robin
  EXPECT_EQ(default_cuda_index(1), 0);
  ::setenv("LOCAL_RANK", "x", 1), ::unsetenv("SLURM_LOCALID");
  EXPECT_EQ(default_cuda_index(4), 0);  // not a number: GPU 0
  if (keep_local) ::setenv("LOCAL_RANK", local.c_str(), 1);
  else ::unsetenv("LOCAL_RANK");
  if (keep_slurm) ::setenv("SLURM_LOCALID", slurm.c_str(), 1);
  else ::unsetenv("SLURM_LOCALID");
}

}  // namespace
}  // namespace mmt
