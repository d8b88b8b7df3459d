/* Pretraining batches from real datasets (data.source = datasets): the configured datasets are
 * read (bad records skipped and counted), mixed by the MixtureSampler, tokenised, masked and
 * paired into the same Batch the synthetic world gives, through the BatchLoader's plan / build
 * split so worker threads can build them. Images are region features (model.image_input =
 * regions, from each dataset's `features` store or folder) or decoded pixels (patches, resnet50). */
#pragma once

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "mmt/config/options.h"
#include "mmt/data/batch.h"
#include "mmt/data/dataset.h"
#include "mmt/data/loader.h"
#include "mmt/data/record_images.h"
#include "mmt/model/input_dims.h"

namespace mmt {

class Error;
class Tokenizer;
class MixtureSampler;
class PackedStore;

class DatasetBatcher {
 public:
  DatasetBatcher(const ExperimentConfig& cfg, std::ostream* log);
  ~DatasetBatcher();

  const Tokenizer& tokenizer() const { return *tokenizer_; }
  InputDims input_dims() const;
  const std::vector<Dataset>& datasets() const { return datasets_; }

  /// Distributed: this process builds only its share (shard_range) of every global batch's
  /// draws; the ITM pairing and masking happen within the share. Call before loader().
  void shard(int rank, int world);

  /// Loader plumbing: plan = the step's draws (sequential, moves the sampler), build = the batch.
  /// `step` is the micro-batch index (optimizer step x train.grad_accum_steps + k).
  BatchLoader::Plan plan(int64_t step);
  Batch build(int64_t step, const BatchLoader::Plan& plan) const;
  /// A loader over this batcher from `first_step` (threads and prefetch from the config).
  std::unique_ptr<BatchLoader> loader(int64_t first_step);

  /// Sampler state after a planned step (for checkpoints), and restoring one.
  static nlohmann::json sampler_state(const BatchLoader::Plan& plan);
  void restore_sampler(const nlohmann::json& state);
  /// "coco 812 (63%), cc 480 (37%)": examples drawn per dataset, from a sampler_state() (the
  /// live sampler runs ahead of training by the prefetch, on the loader's thread).
  std::string counts(const nlohmann::json& sampler_state) const;
  int64_t bad_images() const { return bad_images_.load(); }
  /// "8950 images held (data.image_cache_mb = 1024), 29211 reads from it"; "" without a cache.
  std::string describe_cache() const;

 private:
  // Contrastive ITM: the step's pool of negative images, and which of them is a row's own image
  // (`own`: each row's image key).
  void add_negatives(int64_t step, const std::vector<int64_t>& own, Batch& batch) const;
  // An image that could not be read: counted, the first few logged, an error past data.max_bad_fraction.
  void note_bad_image(const Error& e) const;

  ExperimentConfig cfg_;
  std::ostream* log_;
  std::vector<Dataset> datasets_;
  std::vector<std::vector<int64_t>> first_example_;  // per dataset: first example index of each record
  std::vector<int64_t> first_record_;                // per dataset: its first record's index among all datasets' records
  std::vector<int64_t> image_keys_;  // per record (that index): its photo, equal across datasets (Batch::image_key)
  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<MixtureSampler> sampler_;
  std::vector<FeatureSource> features_;  // per dataset (regions)
  std::unique_ptr<PixelCache> pixel_cache_;  // pixel models, data.image_cache_mb > 0: by record index
  int64_t feature_dim_ = 0, classes_ = 0;
  int shard_rank_ = 0, shard_world_ = 1;
  mutable std::atomic<int64_t> bad_images_{0}, images_seen_{0};
  mutable std::mutex log_mu_;
};

}  // namespace mmt
