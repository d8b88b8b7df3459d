/* Region feature files and the packed store (see region_features.h). */
#include "mmt/data/region_features.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <ostream>
#include <unordered_map>

#include "mmt/io/npy.h"
#include "mmt/util/error.h"
#include "mmt/util/half.h"

namespace fs = std::filesystem;

namespace mmt {
namespace {

const NpyArray* pick(const std::map<std::string, NpyArray>& arrays, std::initializer_list<const char*> names) {
  for (const char* n : names) {
    auto it = arrays.find(n);
    if (it != arrays.end()) return &it->second;
  }
  return nullptr;
}

float scalar(const NpyArray* a, const std::string& name) {
  if (!a) return 0;
  const auto v = a->to_float(name);
  return v.empty() ? 0 : v[0];
}

RegionSet from_arrays(const std::map<std::string, NpyArray>& arrays, const std::string& path) {
  const NpyArray* f = pick(arrays, {"features", "x", "feat", "feats"});
  if (!f) throw Error(path + ": no features array (named features or x)");
  if (f->shape.size() != 2) throw Error(path + ": features must be 2-d (regions, dim), not " + std::to_string(f->shape.size()) + "-d");
  RegionSet r;
  r.n = f->shape[0], r.dim = f->shape[1];
  r.features = f->to_float(path + ":features");
  if (const NpyArray* b = pick(arrays, {"boxes", "bbox", "boxes_xyxy"})) {
    if (b->shape.size() != 2 || b->shape[0] != r.n || b->shape[1] < 4)
      throw Error(path + ": boxes must be (" + std::to_string(r.n) + ", 4)");
    const auto all = b->to_float(path + ":boxes");
    r.boxes.resize(static_cast<size_t>(r.n) * 4);
    for (int64_t i = 0; i < r.n; ++i)
      for (int k = 0; k < 4; ++k) r.boxes[i * 4 + k] = all[i * b->shape[1] + k];
  } else {
    r.boxes.assign(static_cast<size_t>(r.n) * 4, 0.f);
  }
  if (const NpyArray* c = pick(arrays, {"cls_prob", "class_probs", "probs"})) {
    if (c->shape.size() != 2 || c->shape[0] != r.n) throw Error(path + ": cls_prob must be (" + std::to_string(r.n) + ", classes)");
    r.classes = c->shape[1];
    r.class_probs = c->to_float(path + ":cls_prob");
  }
  r.image_w = scalar(pick(arrays, {"image_w", "image_width", "width"}), path);
  r.image_h = scalar(pick(arrays, {"image_h", "image_height", "height"}), path);
  for (float v : r.features)
    if (!std::isfinite(v)) throw Error(path + ": features hold NaN or infinity");
  return r;
}

}  // namespace

RegionSet load_region_file(const std::string& path) {
  const fs::path p(path);
  if (p.extension() == ".npz") return from_arrays(load_npz(path), path);
  std::map<std::string, NpyArray> arrays;
  arrays["features"] = load_npy(path);
  const std::string stem = (p.parent_path() / p.stem()).string();
  if (fs::exists(stem + "_boxes.npy")) arrays["boxes"] = load_npy(stem + "_boxes.npy");
  if (fs::exists(stem + "_cls_prob.npy")) arrays["cls_prob"] = load_npy(stem + "_cls_prob.npy");
  return from_arrays(arrays, path);
}

RegionLayout paper_layout(const RegionSet& r, int64_t max_regions) {
  std::vector<int64_t> order(static_cast<size_t>(r.n));
  std::iota(order.begin(), order.end(), 0);
  std::vector<float> score(static_cast<size_t>(r.n), 0.f);
  for (int64_t i = 0; i < r.n; ++i) {
    if (r.classes > 0) {
      // Max over the object classes; class 0 is the detectors' background.
      float best = 0;
      for (int64_t c = r.classes > 1 ? 1 : 0; c < r.classes; ++c) best = std::max(best, r.class_probs[i * r.classes + c]);
      score[i] = best;
    } else {
      double s = 0;
      for (int64_t d = 0; d < r.dim; ++d) s += double(r.features[i * r.dim + d]) * r.features[i * r.dim + d];
      score[i] = static_cast<float>(s);
    }
  }
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return score[a] > score[b]; });
  const int64_t k = std::min(r.n, max_regions);
  RegionLayout out;
  out.tokens = k + 1, out.dim = r.dim, out.classes = r.classes;
  out.features.assign(static_cast<size_t>(out.tokens * r.dim), 0.f);
  out.boxes.assign(static_cast<size_t>(out.tokens * 5), 0.f);
  if (r.classes > 0) out.class_probs.assign(static_cast<size_t>(out.tokens * r.classes), 0.f);
  // Image size: given, or the extent of the boxes.
  float w = r.image_w, h = r.image_h;
  if (w <= 0 || h <= 0) {
    w = h = 1;
    for (int64_t i = 0; i < r.n; ++i) w = std::max(w, r.boxes[i * 4 + 2]), h = std::max(h, r.boxes[i * 4 + 3]);
  }
  for (int64_t j = 0; j < k; ++j) {
    const int64_t i = order[j], row = j + 1;
    std::copy_n(r.features.begin() + i * r.dim, r.dim, out.features.begin() + row * r.dim);
    const float x1 = r.boxes[i * 4] / w, y1 = r.boxes[i * 4 + 1] / h, x2 = r.boxes[i * 4 + 2] / w, y2 = r.boxes[i * 4 + 3] / h;
    float* b = out.boxes.data() + row * 5;
    b[0] = x1, b[1] = y1, b[2] = x2, b[3] = y2, b[4] = std::max(0.f, (x2 - x1) * (y2 - y1));
    if (r.classes > 0) std::copy_n(r.class_probs.begin() + i * r.classes, r.classes, out.class_probs.begin() + row * r.classes);
  }
  // The global token: mean of the kept regions, box = the whole image.
  for (int64_t j = 1; j <= k; ++j) {
    for (int64_t d = 0; d < r.dim; ++d) out.features[d] += out.features[j * r.dim + d] / static_cast<float>(k);
    for (int64_t c = 0; c < r.classes; ++c) out.class_probs[c] += out.class_probs[j * r.classes + c] / static_cast<float>(k);
  }
  out.boxes[2] = out.boxes[3] = out.boxes[4] = 1.f;
  return out;
}

// ---- packed store ------------------------------------------------------------------------------
// Data: "MMTFEAT1", u32 version, u32 flags (1 = half, 2 = classes), u32 dim, u32 classes, 8 bytes
// reserved (32 bytes); then entries, each 64-byte aligned: u32 n, u32 0, f32 image_w, f32 image_h,
// n x 4 f32 boxes, n x dim features, n x classes class probabilities (f16 or f32).
// Index: "MMTFIDX1", u64 count, u32 dim, u32 classes, u32 flags, u32 0; count x (u64 offset,
// u32 n, u32 key bytes); then the keys, concatenated.
namespace {
constexpr char kDataMagic[8] = {'M', 'M', 'T', 'F', 'E', 'A', 'T', '1'};
constexpr char kIndexMagic[8] = {'M', 'M', 'T', 'F', 'I', 'D', 'X', '1'};
constexpr uint32_t kHalf = 1, kClasses = 2;

template <typename T>
void put(std::string& s, T v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}
template <typename T>
T get_at(const char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
}  // namespace

struct PackedWriter::Impl {
  std::string path, tmp;
  PackOptions options;
  std::ofstream out;
  uint64_t offset = 0;
  int64_t dim = -1, classes = -1;
  struct Entry {
    uint64_t offset;
    uint32_t n;
    std::string key;
  };
  std::vector<Entry> entries;
  bool finished = false;
};

PackedWriter::PackedWriter(const std::string& path, const PackOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->path = path, impl_->tmp = path + ".tmp", impl_->options = options;
  impl_->out.open(impl_->tmp, std::ios::binary | std::ios::trunc);
  if (!impl_->out) throw Error(path + ": cannot create");
  impl_->offset = 0;
}

PackedWriter::~PackedWriter() {
  if (!impl_->finished) {
    impl_->out.close();
    std::error_code ec;
    fs::remove(impl_->tmp, ec);
  }
}

void PackedWriter::add(const std::string& key, const RegionSet& r) {
  Impl& m = *impl_;
  const int64_t classes = m.options.class_probs ? r.classes : 0;
  if (m.dim < 0) {
    m.dim = r.dim, m.classes = classes;
    std::string h(kDataMagic, 8);
    put<uint32_t>(h, 1);
    put<uint32_t>(h, (m.options.half ? kHalf : 0) | (classes > 0 ? kClasses : 0));
    put<uint32_t>(h, static_cast<uint32_t>(r.dim));
    put<uint32_t>(h, static_cast<uint32_t>(classes));
    put<uint64_t>(h, 0);
    m.out.write(h.data(), static_cast<std::streamsize>(h.size()));
    m.offset = h.size();
  }
  if (r.dim != m.dim || classes != m.classes)
    throw Error("features pack: " + key + " has dim " + std::to_string(r.dim) + " / " + std::to_string(classes) +
                " classes; the store has " + std::to_string(m.dim) + " / " + std::to_string(m.classes));
  const uint64_t pad = (64 - m.offset % 64) % 64;
  std::string e(pad, '\0');
  const uint64_t at = m.offset + pad;
  put<uint32_t>(e, static_cast<uint32_t>(r.n));
  put<uint32_t>(e, 0);
  put<float>(e, r.image_w);
  put<float>(e, r.image_h);
  e.append(reinterpret_cast<const char*>(r.boxes.data()), r.boxes.size() * 4);
  auto values = [&](const std::vector<float>& v) {
    if (m.options.half)
      for (float x : v) put<uint16_t>(e, float_to_half(x));
    else
      e.append(reinterpret_cast<const char*>(v.data()), v.size() * 4);
  };
  values(r.features);
  if (classes > 0) values(r.class_probs);
  m.out.write(e.data(), static_cast<std::streamsize>(e.size()));
  if (!m.out) throw Error(m.path + ": write failed (disk full?)");
  m.offset += e.size();
  m.entries.push_back({at, static_cast<uint32_t>(r.n), key});
}

void PackedWriter::finish() {
  Impl& m = *impl_;
  m.out.flush();
  m.out.close();
  std::string idx(kIndexMagic, 8);
  put<uint64_t>(idx, m.entries.size());
  put<uint32_t>(idx, static_cast<uint32_t>(std::max<int64_t>(m.dim, 0)));
  put<uint32_t>(idx, static_cast<uint32_t>(std::max<int64_t>(m.classes, 0)));
  put<uint32_t>(idx, (m.options.half ? kHalf : 0) | (m.classes > 0 ? kClasses : 0));
  put<uint32_t>(idx, 0);
  for (const auto& e : m.entries) {
    put<uint64_t>(idx, e.offset);
    put<uint32_t>(idx, e.n);
    put<uint32_t>(idx, static_cast<uint32_t>(e.key.size()));
  }
  for (const auto& e : m.entries) idx += e.key;
  const std::string idx_tmp = m.path + ".idx.tmp";
  {
    std::ofstream out(idx_tmp, std::ios::binary | std::ios::trunc);
    out.write(idx.data(), static_cast<std::streamsize>(idx.size()));
    if (!out) throw Error(m.path + ".idx: write failed");
  }
  for (const auto& f : {m.tmp, idx_tmp}) {  // durable before the renames
    const int fd = ::open(f.c_str(), O_RDONLY);
    if (fd >= 0) ::fsync(fd), ::close(fd);
  }
  fs::rename(m.tmp, m.path);
  fs::rename(idx_tmp, m.path + ".idx");
  m.finished = true;
}

struct PackedStore::Impl {
  std::string path;
  int fd = -1;
  const char* base = nullptr;
  size_t length = 0;
  int64_t dim = 0, classes = 0;
  bool half = true;
  std::vector<uint64_t> offsets;
  std::vector<uint32_t> counts;
  std::vector<std::string> keys;
  std::unordered_map<std::string, int64_t> by_key;
};

PackedStore::PackedStore(const std::string& path) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.path = path;
  std::ifstream in(path + ".idx", std::ios::binary);
  if (!in) throw Error(path + ".idx: cannot open the store's index");
  const std::string idx((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (idx.size() < 32 || idx.compare(0, 8, kIndexMagic, 8) != 0) throw Error(path + ".idx: not an mmt feature index");
  const uint64_t count = get_at<uint64_t>(idx.data() + 8);
  m.dim = get_at<uint32_t>(idx.data() + 16), m.classes = get_at<uint32_t>(idx.data() + 20);
  m.half = get_at<uint32_t>(idx.data() + 24) & kHalf;
  if (idx.size() < 32 + count * 16) throw Error(path + ".idx: truncated (" + std::to_string(count) + " entries announced)");
  size_t key_at = 32 + count * 16;
  for (uint64_t i = 0; i < count; ++i) {
    const char* e = idx.data() + 32 + i * 16;
    const uint32_t len = get_at<uint32_t>(e + 12);
    if (key_at + len > idx.size()) throw Error(path + ".idx: truncated keys at entry " + std::to_string(i));
    m.offsets.push_back(get_at<uint64_t>(e)), m.counts.push_back(get_at<uint32_t>(e + 8));
    m.keys.emplace_back(idx.data() + key_at, len);
    m.by_key.emplace(m.keys.back(), static_cast<int64_t>(i));
    key_at += len;
  }
  m.fd = ::open(path.c_str(), O_RDONLY);
  if (m.fd < 0) throw Error(path + ": cannot open the store's data");
  struct stat st;
  ::fstat(m.fd, &st);
  m.length = static_cast<size_t>(st.st_size);
  if (m.length < 32) throw Error(path + ": not an mmt feature store (too short)");
  void* p = ::mmap(nullptr, m.length, PROT_READ, MAP_SHARED, m.fd, 0);
  if (p == MAP_FAILED) throw Error(path + ": mmap failed");
  m.base = static_cast<const char*>(p);
  if (std::memcmp(m.base, kDataMagic, 8) != 0) throw Error(path + ": not an mmt feature store (bad magic)");
  ::madvise(p, m.length, MADV_RANDOM);
}

PackedStore::~PackedStore() {
  if (impl_->base) ::munmap(const_cast<char*>(impl_->base), impl_->length);
  if (impl_->fd >= 0) ::close(impl_->fd);
}

int64_t PackedStore::size() const { return static_cast<int64_t>(impl_->keys.size()); }
int64_t PackedStore::dim() const { return impl_->dim; }
int64_t PackedStore::classes() const { return impl_->classes; }
const std::string& PackedStore::key(int64_t i) const { return impl_->keys.at(static_cast<size_t>(i)); }
int64_t PackedStore::find(const std::string& key) const {
  auto it = impl_->by_key.find(key);
  return it == impl_->by_key.end() ? -1 : it->second;
}

RegionSet PackedStore::get(int64_t i) const {
  const Impl& m = *impl_;
  if (i < 0 || i >= size()) throw Error(m.path + ": entry " + std::to_string(i) + " out of range");
  const size_t at = m.offsets[i];
  const int64_t n = m.counts[i], vb = m.half ? 2 : 4;
  const size_t bytes = 16 + n * 16 + n * (m.dim + m.classes) * vb;
  if (at + bytes > m.length) throw Error(m.path + ": entry " + std::to_string(i) + " (" + m.keys[i] + ") runs past the end of the file");
  const char* p = m.base + at;
  RegionSet r;
  r.n = n, r.dim = m.dim, r.classes = m.classes;
  if (get_at<uint32_t>(p) != n) throw Error(m.path + ": entry " + std::to_string(i) + " does not match the index");
  r.image_w = get_at<float>(p + 8), r.image_h = get_at<float>(p + 12);
  p += 16;
  r.boxes.resize(static_cast<size_t>(n) * 4);
  std::memcpy(r.boxes.data(), p, r.boxes.size() * 4);
  p += r.boxes.size() * 4;
  auto values = [&](std::vector<float>& v, int64_t count) {
    v.resize(static_cast<size_t>(count));
    if (m.half)
      for (int64_t k = 0; k < count; ++k) v[k] = half_to_float(get_at<uint16_t>(p + k * 2));
    else
      std::memcpy(v.data(), p, static_cast<size_t>(count) * 4);
    p += count * vb;
  };
  values(r.features, n * m.dim);
  if (m.classes > 0) values(r.class_probs, n * m.classes);
  // Give the pages back: the kernel keeps them in the page cache, this process stops holding them.
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = reinterpret_cast<uintptr_t>(m.base + at) & ~(page - 1);
  const uintptr_t hi = reinterpret_cast<uintptr_t>(m.base + at + bytes);
  ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
  return r;
}

int64_t pack_region_folder(const std::string& folder, const std::string& out, const PackOptions& options, std::ostream* progress) {
  if (!fs::is_directory(folder)) throw Error(folder + ": not a folder");
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(folder)) {
    if (!e.is_regular_file()) continue;
    const std::string name = e.path().filename().string();
    const auto ext = e.path().extension();
    const bool sibling = name.size() > 10 && (name.find("_boxes.npy") != std::string::npos || name.find("_cls_prob.npy") != std::string::npos);
    if ((ext == ".npz" || ext == ".npy") && !sibling) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) throw Error(folder + ": no .npz / .npy feature files");
  PackedWriter w(out, options);
  int64_t n = 0;
  for (const auto& f : files) {
    w.add(f.stem().string(), load_region_file(f.string()));
    if (progress && ++n % 10000 == 0) *progress << "packed " << n << " / " << files.size() << "\n";
  }
  w.finish();
  return static_cast<int64_t>(files.size());
}

}  // namespace mmt
