/* Threads are set as configured, the BLAS in use is identified (so mmt can warn about the slow
 * reference BLAS), and a distributed process picks the GPU of its local rank. */
#include <gtest/gtest.h>

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>
#include <dlfcn.h>

#include <iostream>
#include <map>
#include <sstream>
#include <thread>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/util/device.h"
#include "mmt/util/error.h"
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

// runtime.threads = 0 (the default) picks libtorch's threads by where the matrix products run:
// OpenBLAS's threads for fp32 on a CPU (libtorch gets 1), libtorch's own for bf16 on a CPU (oneDNN).
TEST(Runtime, AutoThreadsFollowThePrecisionAndTheDevice) {
  RuntimeOptions r;
  ASSERT_EQ(r.threads, 0);
  EXPECT_EQ(torch_threads(r), 1);
  r.precision = "bf16";
  EXPECT_EQ(torch_threads(r), cores_per_process());
  r.device = "cuda:0";
  EXPECT_EQ(torch_threads(r), 1);  // the GPU runs the products
  r.device = "cpu", r.threads = 3;
  EXPECT_EQ(torch_threads(r), 3);  // asked for: as asked
  r.threads = 0, r.precision = "fp32";
  std::ostringstream warn;
  EXPECT_NE(configure_runtime(r, warn).find("torch 1 (auto)"), std::string::npos);
  EXPECT_EQ(at::get_num_threads(), 1);
  EXPECT_EQ(warn.str().find("bf16"), std::string::npos);
  EXPECT_THROW(load_config("", {"runtime.threads=-1"}), Error);
  EXPECT_EQ(load_config("", {"runtime.threads=0"}).runtime.threads, 0);
}

// bf16 on a CPU warns exactly when it would be slower than fp32: no oneDNN in libtorch, or no bf16
// instructions in the CPU (/proc/cpuinfo, checked against the compiler's own CPU detection).
TEST(Runtime, Bf16OnACpuWithoutBf16InstructionsWarns) {
  const bool has = __builtin_cpu_supports("avx512bf16") != 0 || __builtin_cpu_supports("amx-bf16") != 0;
  EXPECT_EQ(cpu_has_bf16_instructions(), has);
  RuntimeOptions r;
  r.precision = "bf16", r.threads = 1;
  std::ostringstream warn;
  configure_runtime(r, warn);
  EXPECT_EQ(warn.str().find("bf16 instructions") != std::string::npos, at::hasMKLDNN() && !has) << warn.str();
  EXPECT_EQ(warn.str().find("no oneDNN") != std::string::npos, !at::hasMKLDNN()) << warn.str();
  EXPECT_EQ(cpu_bf16_is_native(), at::hasMKLDNN() && has);
  at::set_num_threads(1);
}

// Scoring threads started inside the scope run their parallel operations on one thread each; the
// process's count comes back after it.
// Both libraries that run products: libtorch's intra-op threads (also in threads started inside the
// scope) and OpenBLAS's (where the BLAS is OpenBLAS, as `make test` installs it) are 1 inside and
// restored after.
TEST(Runtime, SingleThreadedProductsHoldForThreadsStartedInIt) {
  const auto set_blas = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  const int blas_before = blas_threads();
  if (set_blas) set_blas(2);
  at::set_num_threads(2);
  int inside = 0, blas_inside = -1;
  {
    const SingleThreadedProducts one;
    blas_inside = blas_threads();
    std::thread t([&] {
      at::parallel_for(0, 4, 1, [](int64_t, int64_t) {});  // the thread's first parallel operation
      inside = at::get_num_threads();
    });
    t.join();
  }
  EXPECT_EQ(inside, 1);
  EXPECT_EQ(at::get_num_threads(), 2);
  at::set_num_threads(1);
  if (!set_blas) {
    EXPECT_EQ(blas_inside, 0) << "no OpenBLAS: blas_threads() says 0";
    std::cout << "(not OpenBLAS: " << detect_blas().name << "; its threads were not checked)\n";
    return;
  }
  EXPECT_EQ(blas_inside, 1);
  EXPECT_EQ(blas_threads(), 2);
  set_blas(blas_before);
}

// runtime.precision = auto (the default): bf16 on GPUs with bf16 matrix units (compute capability
// 8.0 on), fp32 on the CPU - the reference, bit for bit - and on older GPUs. What logs and eval.json
// record is the resolved precision.
TEST(Runtime, AutoPrecisionIsBf16OnlyOnGpusWithBf16Units) {
  const torch::Device cpu(torch::kCPU), gpu(torch::kCUDA, 0);
  EXPECT_FALSE(auto_precision_is_bf16(cpu, -1));
  EXPECT_FALSE(auto_precision_is_bf16(cpu, 9));
  EXPECT_TRUE(auto_precision_is_bf16(gpu, 9));   // Hopper
  EXPECT_TRUE(auto_precision_is_bf16(gpu, 8));   // Ampere
  EXPECT_FALSE(auto_precision_is_bf16(gpu, 7));  // Volta, Turing: emulated bf16
  EXPECT_TRUE(auto_precision_is_bf16(gpu, -1));  // the runtime could not be asked: taken as new
  EXPECT_EQ(cuda_compute_major(cpu), -1);
  RuntimeOptions r;
  EXPECT_EQ(r.precision, "auto");
  EXPECT_EQ(resolved_precision(r), "fp32");  // runtime.device = cpu
  EXPECT_FALSE(use_bf16(r));
  r.precision = "bf16";
  EXPECT_EQ(resolved_precision(r), "bf16");  // asked for: as asked, anywhere
  r.precision = "fp32", r.device = "auto";
  EXPECT_EQ(resolved_precision(r), "fp32");
  r.precision = "auto";
  if (!torch::cuda::is_available()) {
    EXPECT_EQ(resolved_precision(r), "fp32");  // auto finds no GPU: the CPU
    r.device = "cuda";  // refused later by resolve_device, not here
    EXPECT_EQ(resolved_precision(r), "fp32");
  } else {
    const int major = cuda_compute_major(resolve_device("cuda"));
    EXPECT_GT(major, 0) << "the CUDA runtime could not be asked";
    EXPECT_EQ(resolved_precision(r), major >= 8 ? "bf16" : "fp32");
  }
  EXPECT_EQ(load_config("", {"runtime.precision=auto"}).runtime.precision, "auto");
  try {
    load_config("", {"runtime.precision=fp16"});
    ADD_FAILURE() << "fp16 accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("auto"), std::string::npos) << e.what();
  }
}

TEST(Runtime, CudaWithoutIndexIsTheLocalRanksGpu) {
  auto index = [](int64_t visible, const std::map<std::string, std::string>& vars) {
    return default_cuda_index(visible, [&](const char* name) -> const char* {
      const auto it = vars.find(name);
      return it == vars.end() ? nullptr : it->second.c_str();
    });
  };
  EXPECT_EQ(index(4, {}), 0);                       // one process
  EXPECT_EQ(index(4, {{"SLURM_LOCALID", "5"}}), 1);  // srun: its local id
  const std::map<std::string, std::string> both{{"LOCAL_RANK", "3"}, {"SLURM_LOCALID", "5"}};
  EXPECT_EQ(index(4, both), 3);  // torchrun's variable first
  EXPECT_EQ(index(2, both), 1);  // more processes than GPUs: round-robin
  EXPECT_EQ(index(1, both), 0);
  EXPECT_EQ(index(4, {{"LOCAL_RANK", "x"}}), 0);  // not a number: GPU 0
  EXPECT_EQ(index(4, {{"LOCAL_RANK", ""}, {"SLURM_LOCALID", "2"}}), 2);  // empty: the next variable
}

TEST(Runtime, LoaderThreadsAutoLeavesTheTrainingThreadACore) {
  DataOptions d;
  ASSERT_EQ(d.loader_threads, -1);  // the default is auto
  const LoaderSettings a = loader_settings(d);
  EXPECT_EQ(a.threads, std::max(1, cores_per_process() - 1));
  EXPECT_EQ(a.prefetch, std::max<int64_t>(d.prefetch, a.threads));
  d.loader_threads = 0, d.prefetch = 3;
  EXPECT_EQ(loader_settings(d).threads, 0);
  EXPECT_EQ(loader_settings(d).prefetch, 3);
  d.loader_threads = 6;  // one batch ahead per thread at least
  EXPECT_EQ(loader_settings(d).prefetch, 6);
}

}  // namespace
}  // namespace mmt
