/* .npy writer (see npy.h). */
#include "mmt/io/npy.h"

#include <cstring>

#include "mmt/util/fs.h"

namespace mmt {

namespace {

void save(const std::string& path, const void* data, size_t elem, const char* descr, const std::vector<int64_t>& shape) {
  std::string dims;
  int64_t n = 1;
  for (size_t i = 0; i < shape.size(); ++i) {
    dims += std::to_string(shape[i]) + (shape.size() == 1 || i + 1 < shape.size() ? "," : "");
    if (i + 1 < shape.size()) dims += " ";
    n *= shape[i];
  }
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + dims + "), }";
  const size_t unpadded = 10 + header.size() + 1;  // magic(6) + version(2) + len(2) + header + '\n'
  header.append((64 - unpadded % 64) % 64, ' ');
  header += '\n';
  std::string out = "\x93NUMPY";
  out += '\x01';
  out += '\x00';
  const uint16_t len = static_cast<uint16_t>(header.size());
  out.append(reinterpret_cast<const char*>(&len), 2);
  out += header;
  out.append(static_cast<const char*>(data), static_cast<size_t>(n) * elem);
  write_file_atomic(path, out);
}

}  // namespace

void save_npy(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
  save(path, data, sizeof(float), "<f4", shape);
}

void save_npy(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape) {
  save(path, data, sizeof(int64_t), "<i8", shape);
}

}  // namespace mmt
