/* Where the model runs and in which precision: runtime.device (cpu, cuda, cuda:N, auto) and
 * runtime.precision (auto, fp32, bf16 autocast). CPU fp32 is the default and the reference; the CUDA
 * path is compiled in whatever libtorch the build found and is only taken when a GPU exists. */
#pragma once

#include <torch/types.h>

#include <functional>
#include <optional>
#include <string>

namespace mmt {

struct RuntimeOptions;
struct Batch;

/// The device named by runtime.device; "auto" is CUDA when libtorch sees a GPU, else the CPU.
/// "cuda" (or "auto") without an index is the GPU of this process's local rank (LOCAL_RANK from
/// torchrun, SLURM_LOCALID from srun) modulo the visible GPUs, GPU 0 in a single process.
/// Fails with a clear message for "cuda" on a machine or build without CUDA.
torch::Device resolve_device(const std::string& name);

/// LOCAL_RANK (else SLURM_LOCALID, else 0) modulo `visible` GPUs; `get` reads a variable
/// (std::getenv when null; tests pass their own, as to read_dist_env).
int default_cuda_index(int64_t visible, const std::function<const char*(const char*)>& get = nullptr);

/// runtime.fused_layers for this process (configure_runtime sets it): whether layers built with
/// LayerOptions::fused = -1 run the fused q/k/v product and joint attention on `device`
/// (auto: CUDA only).
void set_fused_layers(const std::string& mode);
bool fused_layers_on(torch::Device device);

/// runtime.precision = auto: bf16 on a CUDA device of compute capability 8.0 or later (Ampere on:
/// bf16 matrix units), fp32 on the CPU (the reference) and on older GPUs (which emulate bf16,
/// slower than fp32). `compute_major` < 0: not known (the CUDA runtime could not be asked), taken
/// as new enough.
bool auto_precision_is_bf16(torch::Device device, int compute_major);

/// The compute capability's major number of a CUDA device (9 for an H100), asked of the CUDA
/// runtime libtorch loaded; -1 where it cannot be asked (a CPU device, a CPU-only libtorch).
int cuda_compute_major(torch::Device device);

/// MB of a CUDA device's memory in use (total - free, by cudaMemGetInfo on the current device:
/// every process's; libtorch's caching allocator keeps what it reserved, so after training this
/// is about the peak reservation), asked as cuda_compute_major asks; -1 where it cannot be asked.
double cuda_memory_in_use_mb(torch::Device device);

/// What runtime.precision means where runtime.device resolves: "fp32" or "bf16" (auto decided by
/// auto_precision_is_bf16). Logs and eval.json record this, not "auto".
std::string resolved_precision(const RuntimeOptions& r);

/// True when runtime.precision resolves to bf16 autocast.
bool use_bf16(const RuntimeOptions& r);

/// One line for logs: "device cuda:0 (NVIDIA H100 80GB HBM3), bf16 autocast".
std::string describe_device(torch::Device device, bool bf16);

/// Mixed precision for the lifetime of the guard: matrix products and attention in bf16 on
/// `device`, reductions and norms in fp32 (libtorch's autocast lists), weights stay fp32.
/// A disabled guard does nothing. libtorch's cache of cast weights is off inside: before
/// PyTorch 2.10 it kept a weight's cast made without grad mode and handed it to the next pass
/// with grad mode in the same region, whose products then gave that weight no gradient
/// (pytorch/pytorch#112583) - and mmt runs such passes before the graph's: hard negatives'
/// scoring, contrastive ITM's scoring, a recomputed layer's first run.
class AutocastGuard {
 public:
  AutocastGuard(torch::Device device, bool enabled);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool enabled_;
  bool cuda_;
  bool was_enabled_ = false;
  bool was_caching_ = true;
  torch::ScalarType was_dtype_ = torch::kFloat32;
};

/// The lower-precision type autocast gives matrix products on `device` right now, or nullopt
/// when autocast is off there.
std::optional<torch::ScalarType> autocast_dtype(torch::Device device);

/// A copy of the batch with every tensor on `device` (shallow when it is there already).
Batch batch_to(const Batch& batch, torch::Device device);

}  // namespace mmt
