/* The NCCL process group, for CUDA tensors (GPU builds against PyTorch 2.x). CMakeLists.txt
 * compiles this file only where a test compile of it succeeded (NCCL's header found beside a CUDA
 * libtorch); elsewhere mmt uses Gloo. The CPU's small tensors (counts, metrics) travel to the GPU
 * and back, so no Gloo group is needed beside it. */
#include "c10d_communicator.h"

#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#include <c10/cuda/CUDAFunctions.h>

namespace mmt::c10d_detail {

std::shared_ptr<Communicator> connect_nccl(const DistEnv& env, std::chrono::milliseconds timeout, torch::Device device) {
  // NCCL picks the current device for its communicators (and for barrier()).
  c10::cuda::set_device(static_cast<c10::DeviceIndex>(device.index()));
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> group;
  try {
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    group = c10::make_intrusive<c10d::ProcessGroupNCCL>(rendezvous_store(env, timeout), env.rank, env.world, options);
  } catch (const std::exception& e) {
    throw join_failure(env, timeout, e);
  }
  return std::make_shared<C10dCommunicator<c10d::ProcessGroupNCCL>>(env, timeout, group, "nccl", device);
}

}  // namespace mmt::c10d_detail
