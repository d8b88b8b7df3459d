/* Pretraining batches from real datasets (see dataset_batcher.h). */
#include "mmt/data/dataset_batcher.h"

#include <algorithm>
#include <filesystem>
#include <functional>
#include <limits>
#include <nlohmann/json.hpp>
#include <map>
#include <ostream>
#include <set>
#include <unordered_map>
#include <utility>

#include "mmt/data/data_source.h"
#include "mmt/data/image_source.h"
#include "mmt/data/mixture.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/record_images.h"
#include "mmt/data/region_features.h"
#include "mmt/io/image.h"
#include "mmt/text/tokenizer.h"
#include "mmt/util/error.h"
#include "mmt/util/rng.h"

namespace fs = std::filesystem;

namespace mmt {
namespace {
enum Stream : uint64_t { kPairing = 21, kMasking, kNegatives };

struct StepPlan {
  std::vector<MixtureSampler::Draw> draws;
  nlohmann::json sampler_state;
};

// The photo each record shows, as a key (Batch::image_key) that tells a caption's own image among
// ITM partners and contrastive negatives. A record's identities - the photo's ids across datasets
// where a reader knows them (Record::aliases: coco:ID, flickr:ID) and its file (or tar member, or
// store entry) - all name one photo, so records sharing any identity show the same photo, however
// long the chain: a Visual Genome image with a COCO and a Flickr id joins the COCO record and the
// Flickr30k one; COCO and COCO Localized Narratives share files. Identities are hashed (a 64-bit
// collision among millions of records is negligible) and joined by union-find; a record's key is
// its group's root.
std::vector<int64_t> photo_keys(const std::vector<Dataset>& datasets) {
  const auto hash = [](const std::string& s) { return static_cast<int64_t>(std::hash<std::string>{}(s)); };
  std::unordered_map<int64_t, int64_t> parent;  // only identities of records with more than one;
                                                // the root of a group is its smallest hash, in any order
  const auto find = [&](int64_t x) {
    int64_t root = x;
    for (auto it = parent.find(root); it != parent.end() && it->second != root; it = parent.find(root)) root = it->second;
    while (x != root) {  // path compression
      auto it = parent.find(x);
      x = std::exchange(it->second, root);
    }
    return root;
  };
  const auto file = [&](const Record& r) {
    return hash(!r.image.path.empty() ? r.image.path + "#" + std::to_string(r.image.offset) : r.source + "/" + r.key);
  };
  const auto first = [&](const Record& r) { return r.aliases.empty() ? file(r) : hash(r.aliases.front()); };
  for (const auto& d : datasets)
    for (const auto& r : d.records) {
      if (r.aliases.empty()) continue;  // one identity: nothing to join
      const int64_t a0 = first(r);  // aliases[0], joined with the other aliases and the file
      for (size_t k = 1; k <= r.aliases.size(); ++k) {
        const int64_t a = find(a0), b = find(k < r.aliases.size() ? hash(r.aliases[k]) : file(r));
        parent.emplace(a, a), parent.emplace(b, b);
        if (a != b) parent[std::max(a, b)] = std::min(a, b);
      }
    }
  std::vector<int64_t> keys;
  for (const auto& d : datasets)
    for (const auto& r : d.records) keys.push_back(find(first(r)));
  return keys;
}

// What the run says about a dataset at the start: its counts; a warning when it trains on a
// held-out split (evaluation would label retrieval on those images not zero-shot, but only then);
// captions the model reads cut, from an even sample of 1,000 (long ones: Localized Narratives).
void describe_training_data(std::ostream& log, const Dataset& d, int64_t captions, const Tokenizer& tokenizer,
                            int64_t max_len) {
  log << "dataset " << d.spec.name << ": " << d.records.size() << " images, " << captions << " captions ("
      << d.bad.summary() << ")\n";
  constexpr int64_t kSample = 1000;
  const int64_t every = std::max<int64_t>(1, captions / kSample);
  int64_t sampled = 0, cut = 0, longest = 0, k = 0;
  std::map<std::string, int64_t> held_out;
  for (const auto& r : d.records) {
    if (r.split == "test" || r.split == "val") ++held_out[r.split];
    for (const auto& c : r.captions)
      if (k++ % every == 0 && sampled < kSample) {
        const auto len = static_cast<int64_t>(tokenizer.encode(c, std::numeric_limits<int>::max()).size());
        ++sampled, cut += len > max_len, longest = std::max(longest, len);
      }
  }
  if (cut > 0)
    log << "dataset " << d.spec.name << ": " << cut << " of " << sampled << " captions sampled are longer than "
        << "model.max_text_len = " << max_len << " tokens ([CLS] and [SEP] included; the longest " << longest
        << "): the model reads them cut\n";
  if (held_out.empty()) return;
  log << "dataset " << d.spec.name << ": warning: trains on its";
  for (const auto& [split, count] : held_out)
    log << (split == held_out.begin()->first ? " " : " and ") << split << " split (" << count << (count == 1 ? " image)" : " images)");
  log << "; retrieval on these images will not be zero-shot (splits = [\"train\", \"restval\"] keeps them out)\n";
}
}  // namespace

DatasetBatcher::DatasetBatcher(const ExperimentConfig& cfg, std::ostream* log) : cfg_(cfg), log_(log) {
  if (cfg.data.source != "datasets") throw Error("DatasetBatcher: data.source is not datasets");
  BasicTokenizerOptions basic;
  basic.lower_case = !cfg.data.cased;
  tokenizer_ = load_tokenizer(cfg.data.tokenizer, basic);
  const bool regions = cfg.model.image_input == "regions";
  std::vector<int64_t> sizes;
  std::vector<double> given;
  for (const auto& o : cfg.data.datasets) {
    DatasetSpec spec;
    spec.name = o.name, spec.format = o.format, spec.path = o.path, spec.images = o.images;
    spec.splits = o.splits, spec.split = o.split, spec.naming = o.naming;
    spec.max_bad_fraction = cfg.data.max_bad_fraction;
    spec.check_images = !regions;  // with region features, the features are the image
    Dataset d = read_dataset(spec, log);
    FeatureSource features;
    if (regions) {
      if (o.features.empty())
        throw Error("dataset " + d.spec.name + ": model.image_input = regions needs its `features` (a store or a folder)");
      // Records without features are skipped and counted, like any other bad record.
      features = FeatureSource::open(o.features);
      std::vector<Record> kept;
      for (auto& r : d.records) {
        if (features.has(r.key)) kept.push_back(std::move(r));
        else d.bad.skip(d.spec.name + ": " + r.key, "no region features", o.features);
      }
      d.records = std::move(kept);
      const auto [dim, classes] = features.dims();
      if (feature_dim_ && (dim != feature_dim_ || classes != classes_))
        throw Error(o.features + ": feature size / classes differ from the other datasets' features");
      feature_dim_ = dim, classes_ = classes;
    }
    if (d.records.empty()) throw Error("dataset " + d.spec.name + " (" + d.spec.path + "): no usable records (" + d.bad.summary() + ")");
    std::vector<int64_t> first;
    int64_t n = 0;
    for (const auto& r : d.records) first.push_back(n), n += static_cast<int64_t>(r.captions.size());
    first_example_.push_back(std::move(first));
    sizes.push_back(n), given.push_back(o.weight);
    if (log) describe_training_data(*log, d, n, *tokenizer_, cfg.model.max_text_len);
    datasets_.push_back(std::move(d));
    features_.push_back(std::move(features));
  }
  sampler_ = std::make_unique<MixtureSampler>(sizes, MixtureSampler::policy_weights(cfg.data.sampling, sizes, given),
                                              cfg.train.seed);
  int64_t images = 0;
  for (const auto& d : datasets_) first_record_.push_back(images), images += static_cast<int64_t>(d.records.size());
  image_keys_ = photo_keys(datasets_);
  if (cfg.model.image_input != "regions" && cfg.data.image_cache_mb > 0)
    pixel_cache_ = std::make_unique<PixelCache>(images, cfg.data.image_cache_mb);
  if (cfg.train.itm_weight > 0 && cfg.train.itm_negative_prob > 0 && images < 2)
    throw Error("ITM needs at least 2 training images (a mismatched pair shows another image than its caption's), but "
                "the datasets hold " + std::to_string(images) + " usable image" + (images == 1 ? "" : "s") +
                "; add images, or set train.itm_weight = 0");
  if (cfg.train.itm_contrastive_weight > 0 && cfg.train.itm_contrastive_negatives >= images)
    throw Error("config: train.itm_contrastive_negatives = " + std::to_string(cfg.train.itm_contrastive_negatives) +
                " negative images per step, but the datasets hold " + std::to_string(images) +
                " usable images: it must be below that");
}

std::string DatasetBatcher::describe_cache() const {
  if (!pixel_cache_) return "";
  return std::to_string(pixel_cache_->images()) + " images held (data.image_cache_mb = " +
         std::to_string(cfg_.data.image_cache_mb) + "), " + std::to_string(pixel_cache_->hits()) + " reads from it";
}

void DatasetBatcher::add_negatives(int64_t step, const std::vector<int64_t>& own, Batch& batch) const {
  // K distinct images drawn uniformly from every training image of every dataset - one pool per
  // step, the same on every rank (its stream has no rank) - shared by the batch's captions. An
  // image that cannot be read is skipped and counted like a batch image, and another drawn.
  const int64_t k = cfg_.train.itm_contrastive_negatives, n = first_record_.back() +
                                                              static_cast<int64_t>(datasets_.back().records.size());
  Rng rng(derive_seed(cfg_.train.seed, kNegatives, static_cast<uint64_t>(step)));
  std::set<int64_t> drawn;
  std::vector<int64_t> pool;  // each negative's image key
  std::vector<ModelImage> images;
  images.reserve(static_cast<size_t>(k));
  while (static_cast<int64_t>(pool.size()) < k) {
    if (static_cast<int64_t>(drawn.size()) == n)
      throw Error("step " + std::to_string(step) + ": fewer than train.itm_contrastive_negatives = " + std::to_string(k) +
                  " readable images for the contrastive ITM pool");
    const int64_t pick = rng.below(n);
    if (!drawn.insert(pick).second) continue;
    const size_t d = static_cast<size_t>(std::upper_bound(first_record_.begin(), first_record_.end(), pick) - first_record_.begin() - 1);
    const Record& r = datasets_[d].records[static_cast<size_t>(pick - first_record_[d])];
    try {
      images.push_back(load_model_image(cfg_, r, features_[d], pixel_cache_.get(), pick));
      pool.push_back(image_keys_[static_cast<size_t>(pick)]);
    } catch (const Error& e) {
      note_bad_image(e);
    }
  }
  std::vector<const ModelImage*> views;
  for (const auto& im : images) views.push_back(&im);
  batch.negatives = std::make_shared<Batch>();
  fill_model_images(cfg_, views, feature_dim_, classes_, *batch.negatives);
  // Each row's own image against the pool, by key.
  std::map<int64_t, std::vector<int64_t>> where;  // key -> its places in the pool
  for (int64_t j = 0; j < k; ++j) where[pool[static_cast<size_t>(j)]].push_back(j);
  const int64_t b = static_cast<int64_t>(own.size());
  batch.negative_excluded = torch::zeros({b, k}, torch::kBool);
  auto ex = batch.negative_excluded.accessor<bool, 2>();
  for (int64_t i = 0; i < b; ++i) {
    const auto it = where.find(own[static_cast<size_t>(i)]);
    if (it != where.end())
      for (int64_t j : it->second) ex[i][j] = true;
  }
}

void DatasetBatcher::note_bad_image(const Error& e) const {
  ++images_seen_;
  const int64_t bad = ++bad_images_;
  if (log_ && bad <= 20) {  // one write: loader threads warn while the training loop reports
    const std::string line = std::string("warning: ") + e.what() + "; example skipped\n";
    std::lock_guard<std::mutex> lock(log_mu_);
    log_->write(line.data(), static_cast<std::streamsize>(line.size())).flush();
  }
  if (images_seen_ >= 100 && bad > cfg_.data.max_bad_fraction * images_seen_)
    throw Error(std::to_string(bad) + " of " + std::to_string(images_seen_.load()) +
                " images could not be read, over data.max_bad_fraction; last: " + e.what());
}

DatasetBatcher::~DatasetBatcher() = default;

InputDims DatasetBatcher::input_dims() const {
  const auto& m = cfg_.model;
  int64_t feat = feature_dim_;
  if (m.image_input == "patches") feat = 3 * m.patch_size * m.patch_size;
  if (m.image_input == "resnet50") feat = 2048;
  return InputDims{tokenizer_->vocab().size(), feat, m.image_input == "regions" ? classes_ : 0};
}

void DatasetBatcher::shard(int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) throw Error("DatasetBatcher::shard: rank " + std::to_string(rank) + " of " + std::to_string(world));
  if (cfg_.train.batch_size < 2 * world)
    throw Error("train.batch_size " + std::to_string(cfg_.train.batch_size) + " gives fewer than 2 examples to each of " +
                std::to_string(world) + " processes");
  shard_rank_ = rank, shard_world_ = world;
}

BatchLoader::Plan DatasetBatcher::plan(int64_t step) {
  (void)step;
  auto p = std::make_shared<StepPlan>();
  // Every rank draws the whole global batch (the sampler's state stays the same everywhere) and
  // keeps its share of the draws: ranks never overlap and together see the one-process batch.
  const auto [begin, end] = shard_range(cfg_.train.batch_size, shard_rank_, shard_world_);
  for (int64_t i = 0; i < cfg_.train.batch_size; ++i) {
    const auto d = sampler_->next();
    if (i >= begin && i < end) p->draws.push_back(d);
  }
  p->sampler_state = sampler_->state();
  return p;
}

nlohmann::json DatasetBatcher::sampler_state(const BatchLoader::Plan& plan) {
  return static_cast<const StepPlan*>(plan.get())->sampler_state;
}

void DatasetBatcher::restore_sampler(const nlohmann::json& state) { sampler_->restore(state); }

std::string DatasetBatcher::counts(const nlohmann::json& state) const {
  const auto c = state.at("counts").get<std::vector<int64_t>>();
  const int64_t total = std::max<int64_t>(1, state.at("draws").get<int64_t>());
  std::string s;
  for (size_t d = 0; d < datasets_.size() && d < c.size(); ++d)
    s += (s.empty() ? "" : ", ") + datasets_[d].spec.name + " " + std::to_string(c[d]) + " (" +
         std::to_string(static_cast<int>(100.0 * c[d] / total + 0.5)) + "%)";
  return s;
}

Batch DatasetBatcher::build(int64_t step, const BatchLoader::Plan& plan) const {
  const auto& draws = static_cast<const StepPlan*>(plan.get())->draws;
  const auto& t = cfg_.train;
  // Resolve draws to (record, caption); load images; drop rows whose image cannot be decoded.
  struct Row {
    const Record* record;
    int64_t caption;
    std::shared_ptr<const ModelImage> image;
    int64_t key;  // image_keys_
  };
  std::vector<Row> rows;
  for (const auto& d : draws) {
    const auto& first = first_example_[static_cast<size_t>(d.dataset)];
    const size_t rec = static_cast<size_t>(std::upper_bound(first.begin(), first.end(), d.example) - first.begin() - 1);
    const Record& r = datasets_[static_cast<size_t>(d.dataset)].records[rec];
    const int64_t index = first_record_[static_cast<size_t>(d.dataset)] + static_cast<int64_t>(rec);  // among all records
    try {
      rows.push_back({&r, d.example - first[rec],
                      std::make_shared<const ModelImage>(
                          load_model_image(cfg_, r, features_[static_cast<size_t>(d.dataset)], pixel_cache_.get(), index)),
                      image_keys_[static_cast<size_t>(index)]});
      ++images_seen_;
    } catch (const Error& e) {
      note_bad_image(e);
    }
  }
  if (rows.size() < 2) throw Error("step " + std::to_string(step) + ": fewer than 2 readable images in the batch");
  const int64_t b = static_cast<int64_t>(rows.size());
  // ITM pairing and masking within this rank's rows; one process keeps its original stream.
  Rng rng(shard_world_ == 1 ? derive_seed(t.seed, kPairing, static_cast<uint64_t>(step))
                            : derive_seed(t.seed, kPairing, static_cast<uint64_t>(step), static_cast<uint64_t>(shard_rank_)));
  // ITM pairing: the image (or caption) of a random other row showing another image - two captions
  // of one image, or a file two datasets share, are no mismatched pair; hard negatives (and
  // itm_swap = both's added rows) are made by the step.
  std::vector<int64_t> image_of(static_cast<size_t>(b)), caption_of(static_cast<size_t>(b)), itm(static_cast<size_t>(b), 1);
  std::vector<int64_t> keys(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) keys[i] = rows[static_cast<size_t>(i)].key;
  std::vector<char> pending(static_cast<size_t>(b), 0);
  const bool marks = step_makes_negatives(t, step);  // the step makes the negatives (hard, or both)
  for (int64_t i = 0; i < b; ++i) {
    image_of[i] = caption_of[i] = i;
    if (!rng.bernoulli(t.itm_negative_prob)) continue;
    if (marks) {
      pending[i] = 1;
      continue;
    }
    int64_t j = rng.below(b - 1);
    if (j >= i) ++j;
    if ((j = row_with_other_image(keys, i, j)) < 0) continue;  // every row shows this image: stays matched
    (swaps_image(t, rng) ? image_of[i] : caption_of[i]) = j;
    itm[i] = 0;
  }
  const bool mlm = t.mlm_weight > 0;
  const bool mrm = t.mrm_kl_weight + t.mrm_regression_weight + t.mrm_class_weight > 0 && cfg_.model.image_input == "regions";
  std::vector<char> mask_text(static_cast<size_t>(b), mlm), mask_image(static_cast<size_t>(b), mrm);
  if (mlm && mrm && t.mask_modalities == "alternate")
    for (int64_t i = 0; i < b; ++i) mask_text[i] = rng.bernoulli(0.5), mask_image[i] = !mask_text[i];
  Batch batch;
  std::vector<std::vector<int64_t>> ids(static_cast<size_t>(b)), labels(static_cast<size_t>(b));
  std::vector<int64_t> caption_keys(static_cast<size_t>(b));
  for (int64_t i = 0; i < b; ++i) {
    const Row& row = rows[static_cast<size_t>(caption_of[i])];
    ids[i] = tokenizer_->encode(row.record->captions[static_cast<size_t>(row.caption)], cfg_.model.max_text_len);
    caption_keys[i] = caption_hash(ids[i]);
    labels[i] = mask_tokens(ids[i], tokenizer_->vocab(), mask_text[i] ? t.mlm_prob : 0.0, rng, t.whole_word_mask);
    if (!itm[i]) std::fill(labels[i].begin(), labels[i].end(), kIgnoreLabel);
  }
  pad_text(ids, tokenizer_->vocab().pad_id(), batch);
  batch.mlm_labels = torch::full_like(batch.text_ids, kIgnoreLabel);
  const int64_t tl = batch.text_ids.size(1);
  for (int64_t i = 0; i < b; ++i) std::copy(labels[i].begin(), labels[i].end(), batch.mlm_labels.data_ptr<int64_t>() + i * tl);
  std::vector<const ModelImage*> images;
  for (int64_t i = 0; i < b; ++i) images.push_back(rows[static_cast<size_t>(image_of[i])].image.get());
  fill_model_images(cfg_, images, feature_dim_, classes_, batch);
  if (mrm) mask_regions(batch, mask_image, std::vector<char>(itm.begin(), itm.end()), t.mrm_prob, rng);
  batch.itm_labels = torch::tensor(itm, torch::kInt64);
  batch.image_key = torch::tensor(keys, torch::kInt64);
  batch.caption_key = torch::tensor(caption_keys, torch::kInt64);
  if (marks) mark_step_negatives(t, step, pending, mask_text, mask_image, batch);
  if (t.itm_contrastive_weight > 0) {  // each row's image is its caption's own for the contrastive pool
    std::vector<int64_t> own;
    for (int64_t i = 0; i < b; ++i) own.push_back(keys[static_cast<size_t>(image_of[i])]);
    add_negatives(step, own, batch);
  }
  return batch;
}

std::unique_ptr<BatchLoader> DatasetBatcher::loader(int64_t first_step) {
  const LoaderSettings settings = loader_settings(cfg_.data);
  return std::make_unique<BatchLoader>([this](int64_t s) { return plan(s); },
                                       [this](int64_t s, const BatchLoader::Plan& p) { return build(s, p); },
                                       settings.threads, settings.prefetch, first_step);
}

}  // namespace mmt
