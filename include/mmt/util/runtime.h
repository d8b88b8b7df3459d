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

/// Applies runtime.threads / runtime.blas_threads (0: cores_per_process()); warns on `warn` when the reference BLAS
/// is in use. Returns a one-line description for logs.
std::string configure_runtime(const RuntimeOptions& r, std::ostream& warn);

/// The most memory this process has held resident so far, in MB (getrusage's maximum RSS).
double peak_resident_mb();

/// OpenBLAS's thread count (0 when the BLAS is not OpenBLAS).
int blas_threads();

/// Sets OpenBLAS's thread count for its lifetime and restores it after (nothing for other BLAS):
/// threads that each run their own matrix products want single-threaded ones.
class BlasThreadsScope {
 public:
  explicit BlasThreadsScope(int threads);
  ~BlasThreadsScope();
  BlasThreadsScope(const BlasThreadsScope&) = delete;
  BlasThreadsScope& operator=(const BlasThreadsScope&) = delete;

 private:
  int saved_ = 0;
};

}  // namespace mmt
