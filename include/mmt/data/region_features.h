/* Region features of real images (bottom-up-attention style detectors): per-image .npz / .npy
 * files, or a packed store - one memory-mapped data file plus an index - that serves datasets
 * larger than RAM. Both give raw detections; `paper_layout` turns them into what the model
 * reads: the top `max_regions` by max class score, preceded by the global mean region, with 5-d
 * boxes (x1/W, y1/H, x2/W, y2/H, area fraction). Torch-free. Format: docs/formats.md. */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mmt {

/// One image's detections: n regions of `dim` features, pixel boxes (x1, y1, x2, y2), and
/// optionally a class distribution per region.
struct RegionSet {
  int64_t n = 0, dim = 0, classes = 0;
  std::vector<float> features;     // n x dim
  std::vector<float> boxes;        // n x 4, pixels
  std::vector<float> class_probs;  // n x classes, or empty
  float image_w = 0, image_h = 0;  // 0 = unknown: boxes are normalised by their extent
};

/// Reads KEY.npz (arrays features|x, boxes|bbox, optional cls_prob|class_probs, image_w, image_h)
/// or KEY.npy (features; boxes / classes from KEY_boxes.npy / KEY_cls_prob.npy if present).
RegionSet load_region_file(const std::string& path);

/// The model's layout: global mean first, then the top max_regions regions by max class score
/// (by feature norm without class scores), 5-d normalised boxes. Outputs (1 + k) rows.
struct RegionLayout {
  int64_t tokens = 0, dim = 0, classes = 0;
  std::vector<float> features;     // tokens x dim
  std::vector<float> boxes;        // tokens x 5
  std::vector<float> class_probs;  // tokens x classes (the global token's is the mean), or empty
};
RegionLayout paper_layout(const RegionSet& r, int64_t max_regions);

/// The packed store: NAME (data) + NAME.idx (index). Features and class probabilities are kept as
/// float16 (or float32), boxes as float32.
struct PackOptions {
  bool half = true;
  bool class_probs = true;
};

class PackedWriter {
 public:
  PackedWriter(const std::string& path, const PackOptions& options);
  ~PackedWriter();
  void add(const std::string& key, const RegionSet& r);
  /// Writes the index and renames both files into place (atomic: a crash leaves no half store).
  void finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class PackedStore {
 public:
  /// Maps NAME and reads NAME.idx; errors name the file and what is wrong.
  explicit PackedStore(const std::string& path);
  ~PackedStore();
  int64_t size() const;
  int64_t dim() const;
  int64_t classes() const;
  const std::string& key(int64_t i) const;
  /// Index of a key, or -1.
  int64_t find(const std::string& key) const;
  /// Entry i as floats. Copies out of the mapping and releases the pages it touched, so reading
  /// a store far larger than RAM keeps the resident set small.
  RegionSet get(int64_t i) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Packs every KEY.npz / KEY.npy of `folder` (sorted) into a store; returns the entries written.
int64_t pack_region_folder(const std::string& folder, const std::string& out, const PackOptions& options,
                           std::ostream* progress = nullptr);

}  // namespace mmt
