/* The images of real-data records as the model reads them - region features in the paper's layout
 * (from a packed store or a folder of KEY.npz) or decoded, resized, normalised pixels - and an
 * ImageSource over a list of records for evaluation. Shared by training batches and `mmt eval`. */
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mmt/config/options.h"
#include "mmt/data/dataset.h"
#include "mmt/data/image_source.h"
#include "mmt/data/region_features.h"

namespace mmt {

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

/// Loads a record's image for the model (cfg.model.image_input); throws Error naming the image.
ModelImage load_model_image(const ExperimentConfig& cfg, const Record& r, const FeatureSource& features);

/// Writes images into the batch's image fields, padded (regions) or stacked (pixels).
void fill_model_images(const ExperimentConfig& cfg, const std::vector<const ModelImage*>& images, int64_t feature_dim,
                       int64_t classes, Batch& batch);

/// Evaluation images: records loaded on first use and kept (the exact scorer asks for each image
/// once per caption block; decoding it each time would dominate), up to `cache_mb`; an
/// undecodable one is an error: a test set must be whole.
class RecordImages : public ImageSource {
 public:
  RecordImages(const ExperimentConfig& cfg, std::vector<Record> records, FeatureSource features, int64_t feature_dim,
               int64_t classes, int64_t cache_mb = 4096);
  int64_t size() const override { return static_cast<int64_t>(records_.size()); }
  int64_t tokens(int64_t i) const override;
  void fill(const std::vector<int64_t>& images, Batch& batch) const override;

 private:
  ExperimentConfig cfg_;
  std::vector<Record> records_;
  FeatureSource features_;
  int64_t feature_dim_, classes_;
  mutable int64_t cache_bytes_left_;
  mutable std::vector<std::shared_ptr<const ModelImage>> cache_;
  mutable std::mutex cache_mu_;
};

}  // namespace mmt
