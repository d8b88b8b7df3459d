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

/// Applies runtime.threads / runtime.blas_threads; warns on `warn` when the reference BLAS
/// is in use. Returns a one-line description for logs.
std::string configure_runtime(const RuntimeOptions& r, std::ostream& warn);

}  // namespace mmt
