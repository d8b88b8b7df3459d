/* Threads and BLAS detection (see runtime.h). */
#include "mmt/util/runtime.h"

#include "mmt/util/device.h"

#include <ATen/Context.h>
#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <link.h>
#include <sys/resource.h>
#include <torch/cuda.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <ostream>
#include <sstream>
#include <thread>

namespace mmt {

namespace {

int find_blas_library(dl_phdr_info* info, size_t, void* data) {
  std::string name = info->dlpi_name ? info->dlpi_name : "";
  if (name.find("libblas.so") != std::string::npos || name.find("libopenblas") != std::string::npos ||
      name.find("libmkl") != std::string::npos) {
    auto* out = static_cast<std::string*>(data);
    if (!out->empty()) *out += ", ";
    *out += name;
  }
  return 0;
}

// OpenBLAS's thread-count setter, or null for another BLAS (looked up once).
void (*openblas_set_threads())(int) {
  static const auto set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return set;
}

}  // namespace

BlasInfo detect_blas() {
  BlasInfo info;
  dl_iterate_phdr(find_blas_library, &info.detail);
  if (auto get_config = reinterpret_cast<char* (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    info.name = "OpenBLAS";
    info.detail = get_config();
  } else if (dlsym(RTLD_DEFAULT, "mkl_get_max_threads") || dlsym(RTLD_DEFAULT, "MKL_Get_Max_Threads")) {
    info.name = "MKL";
  } else if (info.detail.find("libblas.so") != std::string::npos) {
    // libblas.so.3 that exports no OpenBLAS entry point: Netlib's reference implementation.
    info.name = "reference BLAS";
    info.reference = true;
  } else {
    info.name = "unknown";
  }
  return info;
}

int cores_per_process() {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  // Processes sharing this machine (torchrun sets LOCAL_WORLD_SIZE) share its cores.
  const char* local_env = std::getenv("LOCAL_WORLD_SIZE");
  if (!local_env) local_env = std::getenv("SLURM_NTASKS_PER_NODE");  // "8" or "8(x2)": atoi reads 8
  const int local_procs = local_env ? std::max(1, std::atoi(local_env)) : 1;
  return std::max(1, cores / local_procs);
}

namespace {
// runtime.device names a GPU, or "auto" finds one (resolve_device decides which later; here only
// whether the products run on a GPU matters).
bool runs_on_gpu(const RuntimeOptions& r) {
  return r.device.rfind("cuda", 0) == 0 || (r.device == "auto" && torch::cuda::is_available());
}

// bf16 autocast whose products run on this CPU: oneDNN, on libtorch's threads.
bool bf16_on_cpu(const RuntimeOptions& r) { return use_bf16(r) && !runs_on_gpu(r); }
}  // namespace

int torch_threads(const RuntimeOptions& r) {
  if (r.threads > 0) return static_cast<int>(r.threads);
  return bf16_on_cpu(r) ? cores_per_process() : 1;
}

bool cpu_has_bf16_instructions() {
  static const bool has = [] {  // read once: the CPU does not change
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    while (std::getline(cpuinfo, line)) {
      if (line.rfind("flags", 0) != 0) continue;
      std::istringstream flags(line.substr(line.find(':') + 1));
      std::string flag;
      while (flags >> flag)
        if (flag == "avx512_bf16" || flag == "amx_bf16") return true;
      return false;  // every core lists the same flags
    }
    return false;
  }();
  return has;
}

bool cpu_bf16_is_native() { return at::hasMKLDNN() && cpu_has_bf16_instructions(); }

std::string configure_runtime(const RuntimeOptions& r, std::ostream& warn) {
  const int threads = torch_threads(r);
  at::set_num_threads(threads);
  set_fused_layers(r.fused_layers);
  const int blas_threads = r.blas_threads > 0 ? static_cast<int>(r.blas_threads) : cores_per_process();
  const BlasInfo blas = detect_blas();
  if (auto set = openblas_set_threads()) set(blas_threads);
  if (bf16_on_cpu(r)) {
    if (!at::hasMKLDNN())
      warn << "mmt: WARNING: runtime.precision = bf16 on the CPU, but this libtorch has no oneDNN: its bf16 matrix "
              "products take a slow path (fp32 is faster)\n";
    else if (!cpu_has_bf16_instructions())
      warn << "mmt: WARNING: runtime.precision = bf16 on a CPU without bf16 instructions (avx512_bf16, amx_bf16): "
              "libtorch emulates them, slower than fp32\n";
  }
  if (blas.reference) {
    warn << "mmt: WARNING: matrix products use the reference BLAS (" << blas.detail
         << "), about 20x slower than OpenBLAS. Install it: apt-get install libopenblas0-pthread\n";
  }
  return "threads: torch " + std::to_string(threads) + (r.threads > 0 ? "" : " (auto)") + ", " + blas.name + " " +
         (blas.name == "OpenBLAS" ? std::to_string(blas_threads) : std::string("default"));
}

int blas_threads() {
  auto get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return get ? get() : 0;
}

SingleThreadedProducts::SingleThreadedProducts() : saved_blas_(blas_threads()), saved_torch_(at::get_num_threads()) {
  if (auto set = openblas_set_threads(); set && saved_blas_ > 0) set(1);
  at::set_num_threads(1);
}

SingleThreadedProducts::~SingleThreadedProducts() {
  if (auto set = openblas_set_threads(); set && saved_blas_ > 0) set(saved_blas_);
  at::set_num_threads(saved_torch_);
}

double peak_resident_mb() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_maxrss / 1024.0;  // kB on Linux
}

}  // namespace mmt
