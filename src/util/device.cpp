/* Device and precision selection (see device.h). */
#include "mmt/util/device.h"

#include <atomic>

#include <cstdlib>

#include <dlfcn.h>

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "mmt/config/options.h"
#include "mmt/data/batch.h"
#include "mmt/util/error.h"

// libtorch 2.4 replaced the per-backend autocast setters by ones taking the device type.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define MMT_AUTOCAST_BY_DEVICE 1
#endif

namespace mmt {

int default_cuda_index(int64_t visible, const std::function<const char*(const char*)>& get) {
  // One process per GPU, as torchrun and srun launch them: the local rank picks the GPU (more
  // processes than GPUs share them round-robin).
  for (const char* var : {"LOCAL_RANK", "SLURM_LOCALID"}) {
    const char* v = get ? get(var) : std::getenv(var);
    if (!v || !*v || visible <= 0) continue;
    char* end = nullptr;
    const long r = std::strtol(v, &end, 10);
    if (*end == '\0' && r >= 0) return static_cast<int>(r % visible);
  }
  return 0;
}

namespace {
std::atomic<int> fused_layers_mode{-1};  // -1 auto, 0 off, 1 on
}

void set_fused_layers(const std::string& mode) {
  if (mode != "auto" && mode != "on" && mode != "off")
    throw Error("runtime.fused_layers: '" + mode + "' is not auto, on or off");
  fused_layers_mode = mode == "auto" ? -1 : mode == "on" ? 1 : 0;
}

bool fused_layers_on(torch::Device device) {
  const int m = fused_layers_mode;
  return m < 0 ? device.is_cuda() : m > 0;
}

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "auto")
    return torch::cuda::is_available()
               ? torch::Device(torch::kCUDA, default_cuda_index(static_cast<int64_t>(torch::cuda::device_count())))
               : torch::Device(torch::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("runtime.device = " + name + ", but libtorch sees no CUDA device (a CPU-only build, or no GPU "
                  "visible); use runtime.device = cpu or auto");
    torch::Device d(torch::kCPU);
    try {
      d = torch::Device(name);
    } catch (const std::exception&) {
      throw Error("runtime.device: '" + name + "' is not a device (cpu, cuda, cuda:N or auto)");
    }
    const int64_t n = static_cast<int64_t>(torch::cuda::device_count());
    if (d.has_index() && d.index() >= n)
      throw Error("runtime.device = " + name + ", but only " + std::to_string(n) + " CUDA device(s) are visible");
    return d.has_index() ? d : torch::Device(torch::kCUDA, default_cuda_index(n));
  }
  throw Error("runtime.device: '" + name + "' is not a device (cpu, cuda, cuda:N or auto)");
}

bool auto_precision_is_bf16(torch::Device device, int compute_major) {
  return device.is_cuda() && (compute_major < 0 || compute_major >= 8);
}

int cuda_compute_major(torch::Device device) {
  if (!device.is_cuda()) return -1;
  // The CUDA runtime's C entry point, looked up where libtorch's CUDA library loaded it: no CUDA
  // header is needed, so the CPU build compiles this too (and never calls it).
  using GetAttribute = int (*)(int*, int, int);  // cudaDeviceGetAttribute(value, attribute, device)
  const auto get = reinterpret_cast<GetAttribute>(dlsym(RTLD_DEFAULT, "cudaDeviceGetAttribute"));
  constexpr int kComputeCapabilityMajor = 75;  // cudaDevAttrComputeCapabilityMajor
  int major = -1;
  if (!get || get(&major, kComputeCapabilityMajor, device.has_index() ? device.index() : 0) != 0) return -1;
  return major;
}

double cuda_memory_in_use_mb(torch::Device device) {
  if (!device.is_cuda()) return -1;
  using MemGetInfo = int (*)(size_t*, size_t*);  // cudaMemGetInfo(free, total)
  const auto get = reinterpret_cast<MemGetInfo>(dlsym(RTLD_DEFAULT, "cudaMemGetInfo"));
  size_t free = 0, total = 0;
  if (!get || get(&free, &total) != 0 || total < free) return -1;
  return static_cast<double>(total - free) / (1024.0 * 1024.0);
}

std::string resolved_precision(const RuntimeOptions& r) {
  if (r.precision != "auto") return r.precision;
  // Asks no GPU question on a machine without one (runtime.device = cuda there fails later, in
  // resolve_device, with its own error).
  if (r.device == "cpu" || !torch::cuda::is_available()) return "fp32";
  const torch::Device device = resolve_device(r.device);
  return auto_precision_is_bf16(device, cuda_compute_major(device)) ? "bf16" : "fp32";
}

bool use_bf16(const RuntimeOptions& r) { return resolved_precision(r) == "bf16"; }

std::string describe_device(torch::Device device, bool bf16) {
  return "device " + device.str() + (bf16 ? ", bf16 autocast" : ", fp32");
}

namespace {
// libtorch's autocast state of the CPU or of CUDA, whichever API this libtorch has.
bool autocast_enabled(bool cuda) {
#ifdef MMT_AUTOCAST_BY_DEVICE
  return at::autocast::is_autocast_enabled(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}
torch::ScalarType autocast_type(bool cuda) {
#ifdef MMT_AUTOCAST_BY_DEVICE
  return at::autocast::get_autocast_dtype(cuda ? at::kCUDA : at::kCPU);
#else
  return cuda ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}
void set_autocast(bool cuda, bool enabled, torch::ScalarType type) {
#ifdef MMT_AUTOCAST_BY_DEVICE
  const auto device = cuda ? at::kCUDA : at::kCPU;
  at::autocast::set_autocast_dtype(device, type);
  at::autocast::set_autocast_enabled(device, enabled);
#else
  if (cuda) at::autocast::set_autocast_gpu_dtype(type), at::autocast::set_enabled(enabled);
  else at::autocast::set_autocast_cpu_dtype(type), at::autocast::set_cpu_enabled(enabled);
#endif
}
}  // namespace

AutocastGuard::AutocastGuard(torch::Device device, bool enabled) : enabled_(enabled), cuda_(device.is_cuda()) {
  if (!enabled_) return;
  was_enabled_ = autocast_enabled(cuda_), was_dtype_ = autocast_type(cuda_);
  was_caching_ = at::autocast::is_autocast_cache_enabled();
  set_autocast(cuda_, true, at::kBFloat16);
  at::autocast::set_autocast_cache_enabled(false);  // see the header: casts without grad mode
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!enabled_) return;
  // Anything cached all the same (by code outside mmt's guards) goes with the outermost region.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_autocast_cache_enabled(was_caching_);
  set_autocast(cuda_, was_enabled_, was_dtype_);
}

std::optional<torch::ScalarType> autocast_dtype(torch::Device device) {
  if (!autocast_enabled(device.is_cuda())) return std::nullopt;
  return autocast_type(device.is_cuda());
}

Batch batch_to(const Batch& batch, torch::Device device) {
  const bool non_blocking = device.is_cuda();  // for pinned tensors (BatchPrefetcher)
  return map_tensors(batch, [&](const torch::Tensor& t) {
    return t.device() == device ? t : t.to(device, non_blocking && t.is_pinned());
  });
}

}  // namespace mmt
