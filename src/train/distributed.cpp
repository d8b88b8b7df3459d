/* The c10d process groups behind the Communicator interface (see distributed.h): Gloo here,
 * NCCL in nccl_communicator.cpp, both through c10d_communicator.h - the only files of mmt that
 * include c10d headers. */
#include "mmt/train/distributed.h"

#if defined(MMT_HAVE_GLOO) || defined(MMT_HAVE_NCCL)  // CMakeLists.txt: what this libtorch can build
#define MMT_HAVE_C10D 1
#include "c10d_communicator.h"
#endif
#ifdef MMT_HAVE_GLOO  // gloo's headers found (USE_C10D_GLOO is set beside it)
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif

#include <algorithm>
#include <cstdlib>

#include "mmt/config/options.h"
#include "mmt/util/device.h"

namespace mmt {

namespace {

int parse_int(const char* name, const char* value, int min) {
  char* end = nullptr;
  const long v = std::strtol(value, &end, 10);
  if (!*value || *end || v < min || v > (1 << 30))
    throw Error(std::string("environment: ") + name + "='" + value + "' is not an integer >= " + std::to_string(min));
  return static_cast<int>(v);
}

std::shared_ptr<Communicator>& current() {
  static std::shared_ptr<Communicator> comm;
  return comm;
}

#ifdef MMT_HAVE_GLOO
std::shared_ptr<Communicator> connect_gloo(const DistEnv& env, std::chrono::milliseconds timeout) {
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  try {
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    options->devices.push_back(ifname && *ifname ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                                 : c10d::ProcessGroupGloo::createDefaultDevice());
    options->threads = 1;
    group = c10::make_intrusive<c10d::ProcessGroupGloo>(c10d_detail::rendezvous_store(env, timeout), env.rank, env.world,
                                                       options);
  } catch (const std::exception& e) {
    throw c10d_detail::join_failure(env, timeout, e);
  }
  return std::make_shared<c10d_detail::C10dCommunicator<c10d::ProcessGroupGloo>>(env, timeout, group, "gloo", std::nullopt);
}
#endif

}  // namespace

#ifdef MMT_HAVE_C10D
namespace c10d_detail {

c10::intrusive_ptr<c10d::Store> rendezvous_store(const DistEnv& env, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<std::uint16_t>(env.master_port);
  o.isServer = env.rank == 0 && !env.agent_store;
  o.numWorkers = env.world;
  o.waitWorkers = false;
  o.timeout = timeout;
  c10::intrusive_ptr<c10d::Store> store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, o);
  // torchrun's agent serves the store for every restart: its keys live under the attempt.
  if (env.agent_store) store = c10::make_intrusive<c10d::PrefixStore>("/worker/attempt_" + env.restart_count, store);
  return c10::make_intrusive<c10d::PrefixStore>("mmt", store);
}

std::string first_line(const std::string& s) {
  const size_t nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

DistError join_failure(const DistEnv& env, std::chrono::milliseconds timeout, const std::exception& e) {
  return DistError("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world) +
                   ": could not join the process group at " + env.master_addr + ":" + std::to_string(env.master_port) +
                   " within " + std::to_string(timeout.count() / 1000) + " s (runtime.dist_timeout_s): " +
                   first_line(e.what()));
}

}  // namespace c10d_detail
#endif

std::string DistEnv::describe() const {
  if (!distributed()) return "one process";
  return "rank " + std::to_string(rank) + " of " + std::to_string(world) + " (local rank " + std::to_string(local_rank) +
         ", " + launcher + ", rendezvous " + master_addr + ":" + std::to_string(master_port) + ")";
}

DistEnv read_dist_env(const std::function<const char*(const char*)>& get_fn) {
  auto get = [&](const char* name) -> const char* {
    const char* v = get_fn ? get_fn(name) : std::getenv(name);
    return v && *v ? v : nullptr;
  };
  DistEnv env;
  const char *rank = get("RANK"), *world = get("WORLD_SIZE");
  if (rank || world) {
    if (!rank || !world)
      throw Error(std::string("environment: ") + (rank ? "RANK" : "WORLD_SIZE") + " is set but " +
                  (rank ? "WORLD_SIZE" : "RANK") + " is not (torchrun sets both)");
    env.launcher = get("TORCHELASTIC_RUN_ID") ? "torchrun" : "environment";
    env.rank = parse_int("RANK", rank, 0);
    env.world = parse_int("WORLD_SIZE", world, 1);
    env.local_rank = get("LOCAL_RANK") ? parse_int("LOCAL_RANK", get("LOCAL_RANK"), 0) : 0;
  } else if (get("SLURM_PROCID") && get("SLURM_NTASKS")) {
    env.launcher = "slurm";
    env.rank = parse_int("SLURM_PROCID", get("SLURM_PROCID"), 0);
    env.world = parse_int("SLURM_NTASKS", get("SLURM_NTASKS"), 1);
    env.local_rank = get("SLURM_LOCALID") ? parse_int("SLURM_LOCALID", get("SLURM_LOCALID"), 0) : 0;
  } else {
    return env;
  }
  if (env.rank >= env.world)
    throw Error("environment: rank " + std::to_string(env.rank) + " is not below the world size " + std::to_string(env.world));
  if (!env.distributed()) return env;
  const char* addr = get("MASTER_ADDR");
  if (!addr && env.launcher == "slurm") addr = get("SLURM_LAUNCH_NODE_IPADDR");
  if (!addr)
    throw Error("environment: WORLD_SIZE=" + std::to_string(env.world) +
                " but MASTER_ADDR is not set (the host of rank 0; torchrun sets it, under SLURM export it)");
  env.master_addr = addr;
  const char* port = get("MASTER_PORT");
  if (!port && env.launcher != "slurm")
    throw Error("environment: WORLD_SIZE=" + std::to_string(env.world) + " but MASTER_PORT is not set");
  env.master_port = port ? parse_int("MASTER_PORT", port, 1) : 29500;
  if (env.master_port > 65535) throw Error("environment: MASTER_PORT=" + std::string(port) + " is not a TCP port");
  env.agent_store = get("TORCHELASTIC_USE_AGENT_STORE") && std::string(get("TORCHELASTIC_USE_AGENT_STORE")) == "True";
  if (get("TORCHELASTIC_RESTART_COUNT")) env.restart_count = get("TORCHELASTIC_RESTART_COUNT");
  return env;
}

std::vector<std::string> process_group_backends() {
  std::vector<std::string> b;
#ifdef MMT_HAVE_GLOO
  b.push_back("gloo");
#endif
#ifdef MMT_HAVE_NCCL
  b.push_back("nccl");
#endif
  return b;
}

std::shared_ptr<Communicator> open_process_group(const DistEnv& env, const RuntimeOptions& runtime) {
  if (runtime.dist_timeout_s <= 0) throw Error("runtime.dist_timeout_s must be > 0");
  [[maybe_unused]] const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(runtime.dist_timeout_s * 1000));
  [[maybe_unused]] const torch::Device device = resolve_device(runtime.device);
#ifdef MMT_HAVE_NCCL
  if (device.is_cuda()) return c10d_detail::connect_nccl(env, timeout, device);
#endif
#ifdef MMT_HAVE_GLOO
  return connect_gloo(env, timeout);
#else
  throw Error("WORLD_SIZE=" + std::to_string(env.world) + ": this mmt was built without a process group for " +
              (device.is_cuda() ? std::string("CUDA (neither NCCL nor gloo's headers were found)")
                                : std::string("the CPU (gloo's headers were missing: apt-get install libgloo-dev)")) +
              "; rebuild with them (docs/distributed.md)");
#endif
}

std::shared_ptr<Communicator> connect(const DistEnv& env, const RuntimeOptions& runtime) {
  if (!env.distributed()) return nullptr;
  return open_process_group(env, runtime);
}

std::shared_ptr<Communicator> current_communicator() { return current(); }
void set_current_communicator(std::shared_ptr<Communicator> comm) { current() = std::move(comm); }
bool is_root_process() { return !current() || current()->rank() == 0; }

void agree(Communicator* comm, const std::string& local_error, const char* what) {
  if (!comm || comm->size() == 1) {
    if (!local_error.empty()) throw Error(local_error);
    return;
  }
  auto failed = torch::zeros({comm->size()}, torch::kFloat64);
  if (!local_error.empty()) failed[comm->rank()] = 1.0;
  comm->all_reduce_sum(failed, what);
  if (!local_error.empty()) throw Error(local_error);
  for (int r = 0; r < comm->size(); ++r)
    if (failed[r].item<double>() > 0)
      throw DistError("rank " + std::to_string(comm->rank()) + ": stopping, rank " + std::to_string(r) + " failed " + what +
                      " (its message says why)");
}

std::vector<double> all_reduce_sum(Communicator* comm, std::vector<double> values, const char* what) {
  if (!comm || comm->size() == 1 || values.empty()) return values;
  auto t = torch::tensor(values, torch::kFloat64);
  comm->all_reduce_sum(t, what);
  std::copy(t.data_ptr<double>(), t.data_ptr<double>() + t.numel(), values.begin());
  return values;
}

torch::Tensor all_gather_rows(Communicator& comm, const torch::Tensor& local, const std::vector<int64_t>& counts,
                              const char* what) {
  const int world = comm.size();
  TORCH_CHECK(static_cast<int>(counts.size()) == world && counts[comm.rank()] == local.size(0),
              "all_gather_rows: row counts do not match the ranks");
  const int64_t most = *std::max_element(counts.begin(), counts.end());
  auto padded = torch::zeros([&] {
    auto s = local.sizes().vec();
    s[0] = most;
    return s;
  }(), local.options());
  padded.narrow(0, 0, local.size(0)).copy_(local.detach());
  const auto on_host = comm.all_gather(padded.device().is_cpu() ? padded : padded.cpu(), what).to(local.device());
  std::vector<torch::Tensor> parts;
  for (int r = 0; r < world; ++r)
    parts.push_back(r == comm.rank() ? local : on_host[r].narrow(0, 0, counts[r]));
  return torch::cat(parts, 0);
}

}  // namespace mmt
