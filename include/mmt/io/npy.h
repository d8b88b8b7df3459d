/* NumPy .npy writing (format version 1.0, FORMATS.md), for region features and score
 * matrices that Python users open with numpy.load; and .npy / .npz reading (versions 1-3,
 * little- or big-endian float16/32/64, integers, bool; C order), for feature stores. */
#pragma once

#include <cstdint>
#include <string>
#include <map>
#include <vector>

namespace mmt {

/// Writes a little-endian float32 array of the given shape.
void save_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape);
/// Writes a little-endian float64 array of the given shape.
void save_npy(const std::string& path, const double* data, const std::vector<int64_t>& shape);
/// Writes a little-endian int64 array of the given shape.
void save_npy(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape);

/// A loaded array: its dtype (numpy's descr, e.g. "<f4"), shape and raw bytes (C order).
struct NpyArray {
  std::string descr;
  std::vector<int64_t> shape;
  std::string data;
  int64_t numel() const;
  /// The values as float32 (any supported dtype converted); throws naming `name` otherwise.
  std::vector<float> to_float(const std::string& name) const;
  std::vector<double> to_double(const std::string& name) const;
  /// Integer and bool dtypes only (exact); a floating-point dtype is an error naming `name`.
  std::vector<int64_t> to_int64(const std::string& name) const;
};

/// Parses .npy bytes; errors name `name` and what is wrong (magic, header, dtype, size).
NpyArray parse_npy(const std::string& bytes, const std::string& name);
NpyArray load_npy(const std::string& path);
/// All arrays of an .npz (zip, stored or deflated), by name without ".npy".
std::map<std::string, NpyArray> load_npz(const std::string& path);

}  // namespace mmt
