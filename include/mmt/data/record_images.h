/* The images of real-data records as the model reads them - region features in the paper's layout
 * (from a packed store or a folder of KEY.npz) or decoded, resized, normalised pixels - and an
 * ImageSource over a list of records for evaluation. Shared by training batches and `mmt eval`. */
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mmt/config/options.h"
#include "mmt/data/dataset.h"
#include "mmt/data/image_source.h"
#include "mmt/data/region_features.h"

namespace mmt {

struct RgbImage;

/// Where a dataset's region features are: a packed store, or a folder of KEY.npz / KEY.npy.
struct FeatureSource {
  std::shared_ptr<PackedStore> store;
  std::string folder;
  std::string path;  // as given, for messages
  bool has(const std::string& key) const;
  /// The detections of `key`; throws Error naming it when there are none.
  RegionSet get(const std::string& key) const;
  /// (feature size, classes): the store's header, or the folder's first feature file.
  std::pair<int64_t, int64_t> dims() const;
  static FeatureSource open(const std::string& path);  // "" = none
};

struct ModelImage {
  int64_t tokens = 0;                       // regions: global + kept regions
  std::vector<float> features, boxes, classes;  // regions: (tokens, D), (tokens, 5), (tokens, C)
  std::vector<float> pixels;                // pixels: (3, S, S), normalised
};

/// Decoded, resized pixels (before normalisation: 3 bytes a pixel) of training images, kept in
/// memory up to a byte budget - the first ones read, never evicted: a run reads its images again
/// every epoch, and decoding them (PNG clip art, large JPEGs) can take a third of a CPU step.
/// Exact: the crop is the same every time. The pixels live in 64 MB blocks mapped for the cache
/// alone: held among the heap's transient buffers, they would pin its freed pages (kept as small
/// vectors, 60 MB of images raised the peak resident set by 370 MB). Shared by the loader threads.
class PixelCache {
 public:
  struct Pixels {
    const uint8_t* data = nullptr;  // height rows of width x 3 bytes
    int width = 0, height = 0;
  };
  PixelCache(int64_t slots, int64_t budget_mb);
  ~PixelCache();
  PixelCache(const PixelCache&) = delete;
  PixelCache& operator=(const PixelCache&) = delete;
  /// The image kept in `slot`; data == nullptr when none is.
  Pixels find(int64_t slot) const;
  /// Keeps a copy of `image` in `slot` while the budget lasts.
  void offer(int64_t slot, const RgbImage& image) const;
  int64_t hits() const { return hits_.load(); }
  int64_t images() const;  // held now

 private:
  mutable std::vector<Pixels> slots_;
  mutable std::vector<std::pair<void*, size_t>> blocks_;  // mapped: address, size
  mutable size_t block_used_ = 0;                         // in the last block
  mutable int64_t bytes_left_, held_ = 0;
  mutable std::atomic<int64_t> hits_{0};
  mutable std::mutex mu_;
};

/// Loads a record's image for the model (cfg.model.image_input); throws Error naming the image.
/// With a cache, a pixel model's image is looked up in `slot` first and offered to it after decoding.
ModelImage load_model_image(const ExperimentConfig& cfg, const Record& r, const FeatureSource& features,
                            const PixelCache* cache = nullptr, int64_t slot = -1);

/// Writes images into the batch's image fields, padded (regions) or stacked (pixels).
void fill_model_images(const ExperimentConfig& cfg, const std::vector<const ModelImage*>& images, int64_t feature_dim,
                       int64_t classes, Batch& batch);

/// Evaluation images: records loaded on first use and kept (the exact scorer asks for each image
/// once per caption block; decoding it each time would dominate), up to eval.image_cache_mb - pixels as
/// their decoded bytes (a PixelCache: a quarter of the floats the model reads; 5,000 COCO test
/// images at 224 px are 750 MB), region layouts as the model reads them; an undecodable one is
/// an error: a test set must be whole.
class RecordImages : public ImageSource {
 public:
  RecordImages(const ExperimentConfig& cfg, std::vector<Record> records, FeatureSource features, int64_t feature_dim,
               int64_t classes);
  int64_t size() const override { return static_cast<int64_t>(records_.size()); }
  int64_t tokens(int64_t i) const override;
  void fill(const std::vector<int64_t>& images, Batch& batch) const override;

 private:
  ExperimentConfig cfg_;
  std::vector<Record> records_;
  FeatureSource features_;
  int64_t feature_dim_, classes_;
  mutable int64_t cache_bytes_left_;
  mutable std::vector<std::shared_ptr<const ModelImage>> cache_;  // regions
  mutable std::mutex cache_mu_;
  std::unique_ptr<PixelCache> pixels_;  // pixel models
};

}  // namespace mmt
