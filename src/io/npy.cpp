/* .npy writer and .npy / .npz reader (see npy.h). */
#include "mmt/io/npy.h"

#include <archive.h>
#include <archive_entry.h>

#include <cstring>
#include <algorithm>
#include <regex>

#include "mmt/util/error.h"
#include "mmt/util/half.h"

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

void save_npy(const std::string& path, const double* data, const std::vector<int64_t>& shape) {
  save(path, data, sizeof(double), "<f8", shape);
}

void save_npy(const std::string& path, const int64_t* data, const std::vector<int64_t>& shape) {
  save(path, data, sizeof(int64_t), "<i8", shape);
}

int64_t NpyArray::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

template <typename T>
T load_value(const char* p, bool swap) {
  char b[sizeof(T)];
  std::memcpy(b, p, sizeof(T));
  if (swap) std::reverse(b, b + sizeof(T));
  T v;
  std::memcpy(&v, b, sizeof(T));
  return v;
}

}  // namespace

namespace {

// The values converted to T; `integers_only` refuses floating-point dtypes (an index read as a
// float would lose its exactness silently).
template <typename Out>
std::vector<Out> convert(const NpyArray& a, const std::string& name, bool integers_only) {
  const int64_t n = a.numel();
  std::vector<Out> out(static_cast<size_t>(n));
  const bool swap = a.descr[0] == '>';
  const std::string kind = a.descr.substr(1);
  const char* p = a.data.data();
  auto fill = [&](auto tag) {
    using T = decltype(tag);
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(load_value<T>(p + i * sizeof(T), swap));
  };
  const bool floating = kind == "f2" || kind == "f4" || kind == "f8";
  if (floating && integers_only) throw Error(name + ": dtype " + a.descr + " where integers were expected");
  if (kind == "f4") fill(float{});
  else if (kind == "f8") fill(double{});
  else if (kind == "f2") {
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<Out>(half_to_float(load_value<uint16_t>(p + i * 2, swap)));
  } else if (kind == "i8") fill(int64_t{});
  else if (kind == "i4") fill(int32_t{});
  else if (kind == "i2") fill(int16_t{});
  else if (kind == "i1") fill(int8_t{});
  else if (kind == "u1" || kind == "b1") fill(uint8_t{});
  else if (kind == "u2") fill(uint16_t{});
  else if (kind == "u4") fill(uint32_t{});
  else throw Error(name + ": dtype " + a.descr + " cannot be read as numbers");
  return out;
}

}  // namespace

std::vector<float> NpyArray::to_float(const std::string& name) const { return convert<float>(*this, name, false); }
std::vector<double> NpyArray::to_double(const std::string& name) const { return convert<double>(*this, name, false); }
std::vector<int64_t> NpyArray::to_int64(const std::string& name) const { return convert<int64_t>(*this, name, true); }

NpyArray parse_npy(const std::string& bytes, const std::string& name) {
  if (bytes.size() < 10 || bytes.compare(0, 6, "\x93NUMPY") != 0) throw Error(name + ": not a .npy file (bad magic)");
  const int major = static_cast<uint8_t>(bytes[6]);
  size_t header_len, offset;
  if (major == 1) {
    header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8), offset = 10;
  } else if (major == 2 || major == 3) {
    if (bytes.size() < 12) throw Error(name + ": truncated .npy header");
    header_len = 0;
    for (int i = 0; i < 4; ++i) header_len |= static_cast<size_t>(static_cast<uint8_t>(bytes[8 + i])) << (8 * i);
    offset = 12;
  } else {
    throw Error(name + ": unsupported .npy version " + std::to_string(major));
  }
  if (bytes.size() < offset + header_len) throw Error(name + ": truncated .npy header");
  const std::string header = bytes.substr(offset, header_len);
  std::smatch m;
  NpyArray a;
  if (!std::regex_search(header, m, std::regex(R"('descr'\s*:\s*'([^']+)')"))) throw Error(name + ": .npy header lacks descr");
  a.descr = m[1];
  if (std::regex_search(header, m, std::regex(R"('fortran_order'\s*:\s*True)")))
    throw Error(name + ": Fortran-order arrays are not supported; save with np.ascontiguousarray");
  if (!std::regex_search(header, m, std::regex(R"('shape'\s*:\s*\(([^)]*)\))"))) throw Error(name + ": .npy header lacks shape");
  const std::string dims = m[1];
  static const std::regex number(R"(\d+)");
  for (std::sregex_iterator it(dims.begin(), dims.end(), number), end; it != end; ++it)
    a.shape.push_back(std::stoll(it->str()));
  static const std::map<std::string, size_t> sizes = {{"f2", 2}, {"f4", 4}, {"f8", 8}, {"i1", 1}, {"i2", 2}, {"i4", 4},
                                                      {"i8", 8}, {"u1", 1}, {"u2", 2}, {"u4", 4}, {"b1", 1}};
  auto it = sizes.find(a.descr.substr(1));
  if (a.descr.size() < 2 || it == sizes.end()) throw Error(name + ": unsupported dtype " + a.descr);
  const size_t want = static_cast<size_t>(a.numel()) * it->second, at = offset + header_len;
  if (bytes.size() - at < want)
    throw Error(name + ": truncated .npy data: " + std::to_string(bytes.size() - at) + " bytes of " + std::to_string(want));
  a.data = bytes.substr(at, want);
  return a;
}

NpyArray load_npy(const std::string& path) { return parse_npy(read_file(path), path); }

std::map<std::string, NpyArray> load_npz(const std::string& path) {
  struct archive* a = archive_read_new();
  archive_read_support_format_zip(a);
  if (archive_read_open_filename(a, path.c_str(), 1 << 16) != ARCHIVE_OK) {
    const std::string msg = archive_error_string(a) ? archive_error_string(a) : "cannot open";
    archive_read_free(a);
    throw Error(path + ": " + msg);
  }
  std::map<std::string, NpyArray> out;
  struct archive_entry* e;
  int rc;
  while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
    std::string member = archive_entry_pathname(e);
    std::string bytes;
    char buf[1 << 16];
    la_ssize_t got;
    while ((got = archive_read_data(a, buf, sizeof buf)) > 0) bytes.append(buf, static_cast<size_t>(got));
    if (got < 0) {
      const std::string msg = archive_error_string(a) ? archive_error_string(a) : "read error";
      archive_read_free(a);
      throw Error(path + ": " + member + ": " + msg);
    }
    if (member.size() > 4 && member.compare(member.size() - 4, 4, ".npy") == 0) member.resize(member.size() - 4);
    out[member] = parse_npy(bytes, path + ":" + member);
  }
  const bool bad = rc != ARCHIVE_EOF;
  const std::string msg = bad && archive_error_string(a) ? archive_error_string(a) : "";
  archive_read_free(a);
  if (bad) throw Error(path + ": not a readable .npz (zip): " + msg);
  return out;
}

}  // namespace mmt
