/* Process-wide runtime settings: threads chosen deliberately (libtorch intra-op threads and
 * OpenBLAS threads are separate knobs), and detection of the BLAS that matrix products use:
 * Debian's libtorch falls back to the reference BLAS, about 20x slower, unless OpenBLAS is
 * installed, so mmt says so loudly. */
#pragma once

#include <iosfwd>
#include <string>

#include "mmt/config/options.h"

namespace mmt {

struct BlasInfo {
  std::string name;        // "OpenBLAS", "MKL", "reference BLAS" or "unknown"
  std::string detail;      // e.g. OpenBLAS's config string, or the library path
  bool reference = false;  // the slow Netlib reference implementation
};

BlasInfo detect_blas();

/// This machine's cores over the processes sharing it (LOCAL_WORLD_SIZE, SLURM_NTASKS_PER_NODE).
int cores_per_process();

/// The libtorch intra-op threads runtime.threads asks for: itself when positive; 0 (auto) is 1
/// for fp32 on a CPU - OpenBLAS runs the matrix products there, on its own threads - and on a GPU,
/// and cores_per_process() for bf16 on a CPU, where oneDNN runs the bf16 products on libtorch's
/// threads (one thread left the second core idle: docs/performance.md).
int torch_threads(const RuntimeOptions& r);

/// Whether this CPU has bf16 matrix instructions (avx512_bf16 or amx_bf16 in /proc/cpuinfo).
/// Without them libtorch's bf16 products are emulated: bf16 autocast is slower than fp32.
bool cpu_has_bf16_instructions();

/// Both: this CPU has bf16 instructions and this libtorch has oneDNN to use them - bf16 autocast
/// then trains faster than fp32 here (docs/performance.md, "bf16 on a CPU").
bool cpu_bf16_is_native();

/// Applies runtime.threads (torch_threads()) / runtime.blas_threads (0: cores_per_process());
/// warns on `warn` when the reference BLAS is in use, and when bf16 is asked of a CPU without bf16
/// instructions or of a libtorch without oneDNN. Returns a one-line description for logs.
std::string configure_runtime(const RuntimeOptions& r, std::ostream& warn);

/// The most memory this process has held resident so far, in MB (getrusage's maximum RSS).
double peak_resident_mb();

/// OpenBLAS's thread count (0 when the BLAS is not OpenBLAS).
int blas_threads();

/// Matrix products on one thread, in both libraries that run them: OpenBLAS's thread count
/// (fp32 products; nothing for other BLAS) and libtorch's intra-op threads (bf16 products on a
/// CPU, through oneDNN) are 1 for its lifetime and restored after. For threads that each run their
/// own passes (exact scoring): threads started inside the scope take libtorch's count when they
/// first run a parallel operation; two scoring threads with two torch threads each ran bf16 at
/// 0.66x on 2 cores.
class SingleThreadedProducts {
 public:
  SingleThreadedProducts();
  ~SingleThreadedProducts();
  SingleThreadedProducts(const SingleThreadedProducts&) = delete;
  SingleThreadedProducts& operator=(const SingleThreadedProducts&) = delete;

 private:
  int saved_blas_ = 0, saved_torch_ = 0;
};

}  // namespace mmt
