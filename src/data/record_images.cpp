/* Images of real-data records for the model (see record_images.h). */
#include "mmt/data/record_images.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "mmt/data/batch.h"
#include "mmt/data/region_features.h"
#include "mmt/io/image.h"
#include "mmt/util/error.h"

namespace fs = std::filesystem;

namespace mmt {

FeatureSource FeatureSource::open(const std::string& path) {
  FeatureSource f;
  f.path = path;
  if (path.empty()) return f;
  if (fs::is_directory(path)) f.folder = path;
  else f.store = std::make_shared<PackedStore>(path);
  return f;
}

bool FeatureSource::has(const std::string& key) const {
  if (store) return store->find(key) >= 0;
  return !folder.empty() && (fs::exists(fs::path(folder) / (key + ".npz")) || fs::exists(fs::path(folder) / (key + ".npy")));
}

RegionSet FeatureSource::get(const std::string& key) const {
  if (store) {
    const int64_t i = store->find(key);
    if (i < 0) throw Error(path + ": no region features for key " + key);
    return store->get(i);
  }
  if (folder.empty()) throw Error("no region features for key " + key + " (model.image_input = regions needs them)");
  const fs::path dir(folder);
  const fs::path npz = dir / (key + ".npz"), npy = dir / (key + ".npy");
  if (!fs::exists(npz) && !fs::exists(npy)) throw Error(folder + ": no region features for key " + key);
  return load_region_file((fs::exists(npz) ? npz : npy).string());
}

std::pair<int64_t, int64_t> FeatureSource::dims() const {
  if (store) return {store->dim(), store->classes()};
  if (!folder.empty())
    for (const auto& e : fs::directory_iterator(folder)) {
      const std::string name = e.path().filename().string();
      const bool sibling = name.find("_boxes.npy") != std::string::npos || name.find("_cls_prob.npy") != std::string::npos;
      if (!sibling && (e.path().extension() == ".npz" || e.path().extension() == ".npy")) {
        const RegionSet r = load_region_file(e.path().string());
        return {r.dim, r.classes};
      }
    }
  throw Error((folder.empty() ? std::string("region features") : folder) + ": no feature files");
}

PixelCache::PixelCache(int64_t slots, int64_t budget_mb) : slots_(static_cast<size_t>(slots)), bytes_left_(budget_mb << 20) {}

PixelCache::~PixelCache() {
  for (const auto& [address, size] : blocks_) ::munmap(address, size);
}

PixelCache::Pixels PixelCache::find(int64_t slot) const {
  std::lock_guard<std::mutex> lock(mu_);
  const Pixels p = slots_.at(static_cast<size_t>(slot));
  if (p.data) ++hits_;
  return p;
}

void PixelCache::offer(int64_t slot, const RgbImage& image) const {
  constexpr size_t kBlock = size_t{64} << 20;
  const size_t bytes = image.pixels.size();
  std::lock_guard<std::mutex> lock(mu_);
  Pixels& p = slots_.at(static_cast<size_t>(slot));
  if (p.data || bytes_left_ < static_cast<int64_t>(bytes)) return;
  if (blocks_.empty() || block_used_ + bytes > blocks_.back().second) {
    // A new block (its pages become resident as images fill them); an image larger than a block
    // gets one of its own size.
    const size_t size = std::max(kBlock, bytes);
    void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (address == MAP_FAILED) return;  // no memory for the cache: the image is decoded again next time
    blocks_.emplace_back(address, size), block_used_ = 0;
  }
  uint8_t* dst = static_cast<uint8_t*>(blocks_.back().first) + block_used_;
  std::memcpy(dst, image.pixels.data(), bytes);
  block_used_ += bytes, bytes_left_ -= static_cast<int64_t>(bytes), ++held_;
  p = {dst, image.width, image.height};
}

int64_t PixelCache::images() const {
  std::lock_guard<std::mutex> lock(mu_);
  return held_;
}

ModelImage load_model_image(const ExperimentConfig& cfg, const Record& r, const FeatureSource& features,
                            const PixelCache* cache, int64_t slot) {
  ModelImage img;
  if (cfg.model.image_input == "regions") {
    const RegionLayout l = paper_layout(features.get(r.key), cfg.data.max_regions);
    img.tokens = l.tokens, img.features = l.features, img.boxes = l.boxes, img.classes = l.class_probs;
  } else {
    const int side = static_cast<int>(cfg.data.image_size);
    img.pixels.resize(static_cast<size_t>(3 * side * side));
    const PixelCache::Pixels kept = cache ? cache->find(slot) : PixelCache::Pixels{};
    if (kept.data) {
      normalize_chw(kept.data, kept.width, kept.height, kImageMean, kImageStd, img.pixels.data());
    } else {
      const RgbImage rgb = load_image_for_model(read_image_bytes(r.image), r.image.describe(), side);
      if (cache) cache->offer(slot, rgb);
      normalize_chw(rgb, kImageMean, kImageStd, img.pixels.data());
    }
  }
  return img;
}

void fill_model_images(const ExperimentConfig& cfg, const std::vector<const ModelImage*>& images, int64_t f, int64_t c,
                       Batch& batch) {
  const int64_t b = static_cast<int64_t>(images.size());
  if (cfg.model.image_input == "regions") {
    int64_t r = 0;
    for (const auto* im : images) r = std::max(r, im->tokens);
    batch.region_feats = torch::zeros({b, r, f});
    batch.region_boxes = torch::zeros({b, r, 5});
    batch.region_mask = torch::zeros({b, r}, torch::kBool);
    if (c > 0) batch.region_classes = torch::zeros({b, r, c});
    for (int64_t i = 0; i < b; ++i) {
      const ModelImage& im = *images[static_cast<size_t>(i)];
      std::copy(im.features.begin(), im.features.end(), batch.region_feats.data_ptr<float>() + i * r * f);
      std::copy(im.boxes.begin(), im.boxes.end(), batch.region_boxes.data_ptr<float>() + i * r * 5);
      if (c > 0) std::copy(im.classes.begin(), im.classes.end(), batch.region_classes.data_ptr<float>() + i * r * c);
      batch.region_mask[i].narrow(0, 0, im.tokens).fill_(true);
    }
  } else {
    const int64_t s = cfg.data.image_size;
    batch.image_pixels = torch::empty({b, 3, s, s});
    for (int64_t i = 0; i < b; ++i)
      std::copy(images[static_cast<size_t>(i)]->pixels.begin(), images[static_cast<size_t>(i)]->pixels.end(),
                batch.image_pixels.data_ptr<float>() + i * 3 * s * s);
  }
}

RecordImages::RecordImages(const ExperimentConfig& cfg, std::vector<Record> records, FeatureSource features,
                           int64_t feature_dim, int64_t classes)
    : cfg_(cfg),
      records_(std::move(records)),
      features_(std::move(features)),
      feature_dim_(feature_dim),
      classes_(classes),
      cache_bytes_left_(cfg.eval.image_cache_mb << 20) {
  if (cfg_.model.image_input == "regions") cache_.resize(records_.size());
  else pixels_ = std::make_unique<PixelCache>(static_cast<int64_t>(records_.size()), cfg.eval.image_cache_mb);
  // A test set must be whole: every image needs its features before any scoring starts.
  if (cfg_.model.image_input == "regions")
    for (const auto& r : records_)
      if (!features_.has(r.key)) throw Error(r.image.describe() + ": no region features for key " + r.key);
}

// Every image counts as one block: the exact token count needs a read, and grouping images by
// length is only an optimisation of the scorer.
int64_t RecordImages::tokens(int64_t) const { return 1; }

void RecordImages::fill(const std::vector<int64_t>& images, Batch& batch) const {
  std::vector<std::shared_ptr<const ModelImage>> loaded;
  loaded.reserve(images.size());
  for (int64_t i : images) {
    if (pixels_) {  // decoded once, normalised each time
      loaded.push_back(std::make_shared<const ModelImage>(
          load_model_image(cfg_, records_.at(static_cast<size_t>(i)), features_, pixels_.get(), i)));
      continue;
    }
    const size_t k = static_cast<size_t>(i);
    {
      std::lock_guard<std::mutex> lock(cache_mu_);
      if (cache_.at(k)) {
        loaded.push_back(cache_[k]);
        continue;
      }
    }
    auto img = std::make_shared<const ModelImage>(load_model_image(cfg_, records_.at(k), features_));
    const int64_t bytes = static_cast<int64_t>(sizeof(float) * (img->pixels.size() + img->features.size() +
                                                                img->boxes.size() + img->classes.size()));
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_bytes_left_ >= bytes) cache_[k] = img, cache_bytes_left_ -= bytes;
    loaded.push_back(std::move(img));
  }
  std::vector<const ModelImage*> ptrs;
  for (const auto& m : loaded) ptrs.push_back(m.get());
  fill_model_images(cfg_, ptrs, feature_dim_, classes_, batch);
}

}  // namespace mmt
