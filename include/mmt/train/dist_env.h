/* A process's place in a distributed job (the environment torchrun or SLURM sets) and joining
 * its process group - without torch headers, for the CLI. The collectives: distributed.h. */
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mmt {

struct RuntimeOptions;
class Communicator;

/// A process's place in the job, from the environment.
struct DistEnv {
  int rank = 0, world = 1, local_rank = 0;
  std::string master_addr;  // where rank 0 (or torchrun's agent) serves the rendezvous store
  int master_port = 0;
  bool agent_store = false;        // torchrun's agent already serves the store (TORCHELASTIC_USE_AGENT_STORE)
  std::string restart_count = "0";  // TORCHELASTIC_RESTART_COUNT: torchrun's store keys are per attempt
  std::string launcher = "none";    // torchrun / env, slurm, none
  bool distributed() const { return world > 1; }
  std::string describe() const;
};

/// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT (torchrun, or set by hand), else
/// SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID (srun; MASTER_ADDR defaults to
/// SLURM_LAUNCH_NODE_IPADDR, MASTER_PORT to 29500). No variables: one process. Inconsistent
/// values are errors naming the variable. `get` is getenv (a parameter for the tests).
DistEnv read_dist_env(const std::function<const char*(const char*)>& get = nullptr);

/// Joins the process group of `env` (TCPStore rendezvous, then NCCL when runtime.device is CUDA
/// and mmt was built with it, else Gloo - which also sums CUDA tensors, through the host),
/// waiting at most runtime.dist_timeout_s for the other ranks. Null for a single process.
std::shared_ptr<Communicator> connect(const DistEnv& env, const RuntimeOptions& runtime);

/// connect() for any world size, one included (the GPU tests' one-rank NCCL group).
std::shared_ptr<Communicator> open_process_group(const DistEnv& env, const RuntimeOptions& runtime);

/// The process groups this mmt was built with: "gloo", "nccl" (empty: one process only).
std::vector<std::string> process_group_backends();

/// The process group of this process, set once by the CLI (null: a single process).
std::shared_ptr<Communicator> current_communicator();
void set_current_communicator(std::shared_ptr<Communicator> comm);
/// Whether this process reports and writes files: one process, or rank 0.
bool is_root_process();

}  // namespace mmt
