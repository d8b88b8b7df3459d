/* NumPy .npy writing (format version 1.0, FORMATS.md), for region features and score
 * matrices that Python users open with numpy.load. */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmt {

/// Writes a little-endian float32 array of the given shape.
void save_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);
/// Writes a little-endian int64 array of the given shape.
void save_npy(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape);

}  // namespace mmt
