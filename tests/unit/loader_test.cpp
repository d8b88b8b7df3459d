/* Mixtures and the loader: instance vs dataset sampling frequencies against theory, epochs, exact
 * resume of the sampler mid-epoch, the same batches whatever the number of loader threads, worker
 * errors reaching the caller, and real-data batches from the fixtures (pixels and regions). */
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "mmt/config/config.h"
#include "mmt/data/dataset_batcher.h"
#include "mmt/data/loader.h"
#include "mmt/data/mixture.h"
#include "mmt/data/record_images.h"
#include "mmt/io/image.h"
#include "mmt/io/npy.h"
#include "mmt/text/tokenizer.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"
#include "test_util.h"

namespace mmt {
namespace {

namespace fs = std::filesystem;
const std::string kData = std::string(MMT_SOURCE_DIR) + "/tests/data/datasets/";

TEST(Mixture, InstanceAndDatasetSamplingFrequenciesMatchTheory) {
  const std::vector<int64_t> sizes = {1000, 300, 50};
  for (const std::string policy : {"instance", "dataset"}) {
    MixtureSampler s(sizes, MixtureSampler::policy_weights(policy, sizes), 7);
    const int n = 100000;
    for (int i = 0; i < n; ++i) s.next();
    for (size_t d = 0; d < sizes.size(); ++d) {
      const double want = policy == "instance" ? sizes[d] / 1350.0 : 1.0 / 3;
      EXPECT_NEAR(s.counts()[d] / double(n), want, 0.01) << policy << " dataset " << d;  // within 1 point
    }
  }
  MixtureSampler w(sizes, MixtureSampler::policy_weights("weights", sizes, {1, 0, 3}), 1);
  for (int i = 0; i < 20000; ++i) w.next();
  EXPECT_EQ(w.counts()[1], 0);
  EXPECT_NEAR(w.counts()[2] / 20000.0, 0.75, 0.01);
  EXPECT_THROW(MixtureSampler::policy_weights("weights", sizes, {1}), Error);
}

TEST(Mixture, EveryExampleOncePerEpochAndEpochsDiffer) {
  MixtureSampler s({10, 7}, {1, 1}, 3);
  std::vector<std::vector<int64_t>> seen(2);
  while (seen[1].size() < 14) {
    const auto d = s.next();
    seen[static_cast<size_t>(d.dataset)].push_back(d.example);
  }
  const std::vector<int64_t> first(seen[1].begin(), seen[1].begin() + 7), second(seen[1].begin() + 7, seen[1].begin() + 14);
  EXPECT_EQ(std::set<int64_t>(first.begin(), first.end()).size(), 7u);
  EXPECT_EQ(std::set<int64_t>(second.begin(), second.end()).size(), 7u);
  EXPECT_NE(first, second);
}

TEST(Mixture, RestoredMidEpochGivesTheSameNextDraws) {
  const std::vector<int64_t> sizes = {13, 5, 29};
  MixtureSampler a(sizes, {1, 2, 3}, 11);
  for (int i = 0; i < 37; ++i) a.next();
  const nlohmann::json state = nlohmann::json::parse(a.state().dump());  // as a checkpoint holds it
  MixtureSampler b(sizes, {1, 2, 3}, 11);
  b.restore(state);
  for (int i = 0; i < 200; ++i) {
    const auto x = a.next(), y = b.next();
    ASSERT_EQ(x.dataset, y.dataset) << i;
    ASSERT_EQ(x.example, y.example) << i;
  }
  EXPECT_EQ(a.counts(), b.counts());
  MixtureSampler other(sizes, {1, 2, 3}, 12);
  EXPECT_THROW(other.restore(state), Error);
}

TEST(Loader, WorkerErrorsReachTheCallerAtTheirStep) {
  BatchLoader loader([](int64_t s) { return std::make_shared<int64_t>(s); },
                     [](int64_t s, const BatchLoader::Plan&) {
                       if (s == 3) throw Error("bad image at step 3");
                       Batch b;
                       b.text_ids = torch::full({1, 1}, s, torch::kInt64);
                       return b;
                     },
                     2, 3);
  for (int64_t s = 0; s < 3; ++s) EXPECT_EQ(loader.next().batch.text_ids.item<int64_t>(), s);
  EXPECT_THROW(loader.next(), Error);
}

// A vocabulary of every word of the fixtures' captions.
std::string fixture_vocab() {
  const std::string path = ::testing::TempDir() + "mmt_loader_vocab.txt";
  std::set<std::string> words;
  BasicTokenizer basic;
  for (const auto& spec : {std::pair<std::string, std::string>{"folder", "folder"}, {"webdataset", "wds"},
                           {"coco", "coco/annotations/captions_train2017.json"}}) {
    DatasetSpec s;
    s.format = spec.first, s.path = kData + spec.second;
    if (spec.first == "coco") s.images = kData + "coco/train2017";
    for (const auto& r : read_dataset(s).records)
      for (const auto& c : r.captions)
        for (const auto& w : basic.tokenize(c)) words.insert(w);
  }
  std::ofstream out(path);
  for (const auto& t : Vocab::special_tokens()) out << t << "\n";
  for (const auto& w : words) out << w << "\n";
  return path;
}

ExperimentConfig real_config(const std::string& image_input) {
  ExperimentConfig cfg;
  cfg.data.source = "datasets";
  cfg.data.tokenizer = fixture_vocab();
  DatasetOptions folder, wds, coco;
  folder.format = "folder", folder.path = kData + "folder";
  wds.format = "webdataset", wds.path = kData + "wds";
  coco.format = "coco", coco.path = kData + "coco/annotations/captions_train2017.json", coco.images = kData + "coco/train2017";
  cfg.data.datasets = {folder, wds, coco};
  cfg.data.sampling = "dataset";
  cfg.data.image_size = 32;
  cfg.model.image_input = image_input, cfg.model.patch_size = 8;
  cfg.train.batch_size = 6, cfg.train.seed = 5;
  return cfg;
}

std::vector<Batch> batches(const ExperimentConfig& cfg, int64_t threads, int64_t n) {
  ExperimentConfig c = cfg;
  c.data.loader_threads = threads;
  DatasetBatcher b(c, nullptr);
  auto loader = b.loader(0);
  std::vector<Batch> out;
  for (int64_t i = 0; i < n; ++i) out.push_back(loader->next().batch);
  return out;
}

TEST(Loader, SameBatchesWhateverTheNumberOfThreads) {
  const auto cfg = real_config("patches");
  const auto ref = batches(cfg, 0, 6);
  for (int64_t threads : {1, 2, 4}) {
    const auto got = batches(cfg, threads, 6);
    for (size_t i = 0; i < ref.size(); ++i) {
      EXPECT_TRUE(got[i].text_ids.equal(ref[i].text_ids)) << threads << " threads, step " << i;
      EXPECT_TRUE(got[i].mlm_labels.equal(ref[i].mlm_labels)) << threads << " threads, step " << i;
      EXPECT_TRUE(got[i].image_pixels.equal(ref[i].image_pixels)) << threads << " threads, step " << i;
      EXPECT_TRUE(got[i].itm_labels.equal(ref[i].itm_labels)) << threads << " threads, step " << i;
    }
  }
}

// data.image_cache_mb: later epochs read the kept images, and the batches are the same as with
// no cache (and with a budget that holds only some), loader threads or not; the contrastive pool
// reads it too.
TEST(Loader, ImageCacheGivesTheSameBatches) {
  auto cfg = real_config("patches");
  cfg.train.itm_contrastive_weight = 1, cfg.train.itm_contrastive_negatives = 3;
  cfg.data.image_cache_mb = 0;
  const auto ref = batches(cfg, 0, 12);  // about 10 epochs of the fixtures' 8 images
  for (int64_t threads : {0, 2}) {
    cfg.data.image_cache_mb = 64;
    cfg.data.loader_threads = threads;
    DatasetBatcher b(cfg, nullptr);
    auto loader = b.loader(0);
    for (size_t i = 0; i < ref.size(); ++i) {
      const Batch got = loader->next().batch;
      EXPECT_TRUE(got.image_pixels.equal(ref[i].image_pixels)) << threads << " threads, step " << i;
      EXPECT_TRUE(got.negatives->image_pixels.equal(ref[i].negatives->image_pixels)) << threads << " threads, step " << i;
      EXPECT_TRUE(got.text_ids.equal(ref[i].text_ids)) << threads << " threads, step " << i;
    }
    EXPECT_NE(b.describe_cache().find("images held (data.image_cache_mb = 64)"), std::string::npos) << b.describe_cache();
    EXPECT_EQ(b.describe_cache().find(", 0 reads"), std::string::npos) << b.describe_cache();
  }
  // A budget smaller than one 32 px image (3 kB) keeps none, and changes nothing either.
  PixelCache tiny(4, 0);
  tiny.offer(0, RgbImage{32, 32, std::vector<uint8_t>(3 * 32 * 32)});
  EXPECT_EQ(tiny.images(), 0);
  EXPECT_EQ(tiny.find(0).data, nullptr);
  // What is kept is a copy, read back as it was; a slot is filled once.
  PixelCache some(4, 1);
  RgbImage a{2, 1, {1, 2, 3, 4, 5, 6}};
  some.offer(2, a);
  a.pixels[0] = 99;
  some.offer(2, a);
  const PixelCache::Pixels p = some.find(2);
  ASSERT_NE(p.data, nullptr);
  EXPECT_EQ(std::vector<uint8_t>(p.data, p.data + 6), (std::vector<uint8_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(p.width, 2);
  EXPECT_EQ(some.images(), 1);
  EXPECT_EQ(some.hits(), 1);
}

// Evaluation images are decoded once: after the first fill the file may go, and the same
// normalised pixels come back; a budget (eval.image_cache_mb) too small to keep it reads the file
// again; a negative one is refused.
TEST(Loader, EvaluationImagesAreDecodedOnce) {
  const std::string dir = ::testing::TempDir() + "mmt_eval_images/";
  std::filesystem::create_directories(dir);
  auto cfg = real_config("patches");
  Record r;
  r.key = "cat", r.image.path = dir + "cat.png";
  for (int64_t budget : {16, 0}) {
    std::filesystem::copy_file(kData + "folder/cat.png", dir + "cat.png", std::filesystem::copy_options::overwrite_existing);
    cfg.eval.image_cache_mb = budget;
    const RecordImages images(cfg, {r}, FeatureSource{}, 0, 0);
    Batch first, again;
    images.fill({0}, first);
    std::filesystem::remove(dir + "cat.png");
    if (budget > 0) {
      images.fill({0}, again);
      EXPECT_TRUE(again.image_pixels.equal(first.image_pixels));
    } else {
      EXPECT_THROW(images.fill({0}, again), Error);
    }
  }
  cfg.eval.image_cache_mb = -1;
  EXPECT_THROW(validate_config(cfg), Error);
}

TEST(DatasetBatches, PixelsFromJpegPngAndShardsAreNormalisedCrops) {
  const auto cfg = real_config("patches");
  DatasetBatcher b(cfg, nullptr);
  EXPECT_EQ(b.datasets().size(), 3u);
  auto loader = b.loader(0);
  const auto item = loader->next();
  const Batch& batch = item.batch;
  EXPECT_EQ(batch.size(), 6);
  EXPECT_EQ(batch.image_pixels.sizes(), (std::vector<int64_t>{6, 3, 32, 32}));
  EXPECT_TRUE(torch::isfinite(batch.image_pixels).all().item<bool>());
  EXPECT_EQ(batch.text_ids.select(1, 0).eq(b.tokenizer().vocab().cls_id()).sum().item<int64_t>(), 6);
  // Every caption token is known to the fixture vocabulary: no [UNK] unless MLM put a random word there.
  EXPECT_EQ(batch.text_ids.eq(b.tokenizer().vocab().unk_id()).sum().item<int64_t>(), 0);
  EXPECT_EQ(DatasetBatcher::sampler_state(item.plan)["draws"].get<int64_t>(), 6);
  EXPECT_EQ(b.input_dims().region_feat_dim, 3 * 8 * 8);
}

// The flickr30k fixture (4 images, 5 captions each) as 32 px patches, batches of 8, seed 3.
ExperimentConfig flickr_patch_batches() {
  ExperimentConfig cfg;
  cfg.data.source = "datasets";
  cfg.data.tokenizer = fixture_vocab();
  DatasetOptions flickr;
  flickr.format = "karpathy", flickr.path = kData + "flickr30k/dataset_flickr30k.json", flickr.images = kData + "flickr30k/flickr30k-images";
  cfg.data.datasets = {flickr};
  cfg.data.image_size = 32;
  cfg.model.image_input = "patches", cfg.model.patch_size = 8;
  cfg.train.batch_size = 8, cfg.train.seed = 3;
  return cfg;
}

// train.itm_hard_from_step in the datasets' batcher: micro-batches of optimizer steps before it
// pair random negatives, later ones leave every row matched and mark rows for the model; with
// itm_swap = both every one marks rows.
TEST(DatasetBatches, HardNegativesStartAtTheConfiguredStep) {
  ExperimentConfig cfg = flickr_patch_batches();
  cfg.train.grad_accum_steps = 3;
  cfg.train.itm_negatives = "hard", cfg.train.itm_hard_from_step = 1;
  DatasetBatcher b(cfg, nullptr);
  auto loader = b.loader(0);
  int64_t random_negatives = 0;
  for (int64_t micro = 0; micro < 6; ++micro) {
    const Batch batch = loader->next().batch;
    EXPECT_EQ(batch.hard_negative_rows.defined(), micro >= 3) << "micro-batch " << micro;
    if (micro >= 3) EXPECT_EQ(batch.itm_labels.sum().item<int64_t>(), batch.size()) << micro;
    else random_negatives += batch.size() - batch.itm_labels.sum().item<int64_t>();
  }
  EXPECT_GT(random_negatives, 0);
  // itm_swap = both: the step adds its rows at every step, so every batch marks rows (all matched),
  // drawn by score only from the hard step on.
  cfg.train.itm_swap = "both";
  DatasetBatcher both(cfg, nullptr);
  auto marked = both.loader(0);
  for (int64_t micro = 0; micro < 6; ++micro) {
    const Batch batch = marked->next().batch;
    ASSERT_TRUE(batch.hard_negative_rows.defined()) << "micro-batch " << micro;
    EXPECT_EQ(batch.itm_labels.sum().item<int64_t>(), batch.size()) << micro;
    EXPECT_EQ(batch.negatives_by_score, micro >= 3) << micro;
  }
}

// ITM negatives never pair a caption with its own image through another row: the flickr30k fixture
// has 4 images of 5 captions, so a batch of 8 repeats images (the old pairing labelled about one
// swap in seven "mismatched" while it showed the caption's own image); with one image there is no
// negative at all.
TEST(DatasetBatches, ItmNegativesShowAnotherImage) {
  ExperimentConfig cfg = flickr_patch_batches();
  cfg.train.mlm_weight = 0;  // captions unmasked, so equal texts are equal tensors
  for (const std::string swap : {"image", "caption", "either"}) {
    cfg.train.itm_swap = swap;
    DatasetBatcher b(cfg, nullptr);
    auto loader = b.loader(0);
    int64_t negatives = 0, repeats = 0, image_swaps = 0, caption_swaps = 0;
    for (int step = 0; step < 30; ++step) {
      const Batch batch = loader->next().batch;
      ASSERT_TRUE(batch.image_key.defined());
      const auto key = batch.image_key.accessor<int64_t, 1>();
      const auto label = batch.itm_labels.accessor<int64_t, 1>();
      // Each image's pixels, from the matched rows (which show their own image).
      std::map<int64_t, torch::Tensor> own;
      for (int64_t i = 0; i < batch.size(); ++i)
        if (label[i] == 1) own[key[i]] = batch.image_pixels[i];
      // Caption keys (Batch::caption_key) agree exactly where the captions shown do, swapped or not.
      ASSERT_TRUE(batch.caption_key.defined());
      for (int64_t i = 0; i < batch.size(); ++i)
        for (int64_t j = i + 1; j < batch.size(); ++j)
          EXPECT_EQ(batch.text_ids[i].equal(batch.text_ids[j]), batch.caption_key[i].item<int64_t>() == batch.caption_key[j].item<int64_t>())
              << "step " << step << " rows " << i << ", " << j;
      std::set<int64_t> distinct;
      for (int64_t i = 0; i < batch.size(); ++i) distinct.insert(key[i]);
      repeats += batch.size() - static_cast<int64_t>(distinct.size());
      for (int64_t i = 0; i < batch.size(); ++i) {
        if (label[i] != 0) continue;
        ++negatives;
        // Which side was swapped: image_key is the row's image before the swap, so with the caption
        // swapped the row still shows it - seen where a matched row shows that image; with either and
        // no such row the side is unknown, and the row is not counted for a side.
        if (swap == "either" && !own.count(key[i])) continue;
        const bool image_swapped = swap == "either" ? !batch.image_pixels[i].equal(own[key[i]]) : swap == "image";
        ++(image_swapped ? image_swaps : caption_swaps);
        if (image_swapped) {  // the caption stays: the image shown is not the caption's own
          if (own.count(key[i])) EXPECT_FALSE(batch.image_pixels[i].equal(own[key[i]])) << "step " << step << " row " << i;
        } else {  // the image stays: the caption shown is no caption a matched row of this image shows
          bool same = false;
          for (int64_t j = 0; j < batch.size(); ++j)
            if (j != i && label[j] == 1 && key[j] == key[i] && batch.text_ids[i].equal(batch.text_ids[j])) same = true;
          EXPECT_FALSE(same) << "step " << step << " row " << i;
        }
      }
    }
    EXPECT_GT(repeats, 30) << swap;    // the batches do repeat images
    EXPECT_GT(negatives, 40) << swap;  // and still get their negatives
    if (swap == "either") {  // both sides, about half each (of the rows whose own image is in view)
      EXPECT_GT(image_swaps, negatives / 5) << image_swaps << " image swaps of " << negatives;
      EXPECT_GT(caption_swaps, negatives / 5) << caption_swaps << " caption swaps of " << negatives;
    }
  }
  // One image only: no mismatched pair can be made - refused up front (it used to train ITM on the
  // image with itself labelled "mismatched"); without ITM it trains.
  cfg.data.datasets[0].splits = {"train"};
  try {
    DatasetBatcher one(cfg, nullptr);
    ADD_FAILURE() << "one image with ITM accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("ITM needs at least 2 training images"), std::string::npos) << e.what();
  }
  cfg.train.itm_weight = 0, cfg.train.mlm_weight = 1;
  DatasetBatcher one(cfg, nullptr);
  EXPECT_EQ(one.loader(0)->next().batch.size(), 8);
}

// The distinct image keys (Batch::image_key) `steps` batches of 8 from these datasets show.
size_t photos_seen(const std::vector<DatasetOptions>& datasets, int steps) {
  ExperimentConfig cfg;
  cfg.data.source = "datasets";
  cfg.data.tokenizer = fixture_vocab();
  cfg.data.datasets = datasets;
  cfg.data.sampling = "dataset";
  cfg.data.image_size = 32;
  cfg.model.image_input = "patches", cfg.model.patch_size = 8;
  cfg.train.batch_size = 8;
  DatasetBatcher b(cfg, nullptr);
  auto loader = b.loader(0);
  std::set<int64_t> keys;
  for (int step = 0; step < steps; ++step) {
    const Batch batch = loader->next().batch;
    for (int64_t i = 0; i < batch.size(); ++i) keys.insert(batch.image_key[i].item<int64_t>());
  }
  return keys.size();
}

// One photo in two datasets is one image to the pairing: the vg fixture's image 2 is the coco
// fixture's image 9 (its image_data.json says so), so 3 + 2 files show 4 photos.
TEST(DatasetBatches, OnePhotoInTwoDatasetsIsOneImage) {
  DatasetOptions coco, vg;
  coco.format = "coco", coco.path = kData + "coco/annotations/captions_train2017.json", coco.images = kData + "coco/train2017";
  vg.format = "vg", vg.path = kData + "vg/region_descriptions.json", vg.images = kData + "vg/VG_100K";
  EXPECT_EQ(photos_seen({coco, vg}, 20), 4u);
}

// A chain of ids: a COCO image whose flickr_url is the Flickr30k fixture's train photo is that
// photo, though the COCO record's first id is its COCO one: 3 + 4 files show 6 photos.
TEST(DatasetBatches, ImagesSharingAnyIdAreOnePhoto) {
  const std::string dir = ::testing::TempDir() + "mmt_photo_chain/";
  std::filesystem::create_directories(dir);
  nlohmann::json coco = nlohmann::json::parse(mmt::read_file(kData + "coco/annotations/captions_train2017.json"));
  coco["images"][0]["flickr_url"] = "http://farm1.staticflickr.com/1/1000092795_0123456789_z.jpg";
  mmt::write_file_atomic(dir + "captions_train2017.json", coco.dump());
  DatasetOptions c, f;
  c.format = "coco", c.path = dir + "captions_train2017.json", c.images = kData + "coco/train2017";
  f.format = "karpathy", f.path = kData + "flickr30k/dataset_flickr30k.json", f.images = kData + "flickr30k/flickr30k-images";
  EXPECT_EQ(photos_seen({c, f}, 30), 6u);
}

// Contrastive ITM on real data: each step a pool of K distinct training images (the paper's
// negatives), decoded like the batch's, the same for every rank and on a rebuilt batcher, another
// the next step; a caption's own image in the pool is marked excluded for that caption.
TEST(DatasetBatches, ContrastiveNegativePoolOfDistinctTrainingImages) {
  auto cfg = real_config("patches");
  cfg.train.itm_contrastive_weight = 1, cfg.train.itm_weight = 0, cfg.train.itm_negative_prob = 0;
  cfg.train.itm_contrastive_negatives = 2;
  DatasetBatcher all(cfg, nullptr);
  int64_t images = 0;
  for (const auto& d : all.datasets()) images += static_cast<int64_t>(d.records.size());
  ASSERT_GE(images, 5);
  cfg.train.itm_contrastive_negatives = images - 1;  // all but one: the own images are often among them
  DatasetBatcher b(cfg, nullptr);
  // Every training image once, as a reference for which pool entry is which image.
  ExperimentConfig one = cfg;
  std::vector<torch::Tensor> reference;
  for (const auto& d : b.datasets())
    for (const auto& r : d.records) {
      const ModelImage im = load_model_image(one, r, FeatureSource{});
      reference.push_back(torch::from_blob(const_cast<float*>(im.pixels.data()), {3, 32, 32}).clone());
    }
  auto which = [&](const torch::Tensor& pixels) {
    for (size_t k = 0; k < reference.size(); ++k)
      if (pixels.equal(reference[k])) return static_cast<int64_t>(k);
    return int64_t{-1};
  };
  int64_t excluded = 0;
  torch::Tensor first_pool;
  for (int64_t step = 0; step < 4; ++step) {
    const Batch batch = b.build(step, b.plan(step));
    ASSERT_TRUE(batch.negatives);
    const auto& pool = batch.negatives->image_pixels;
    ASSERT_EQ(pool.sizes(), (std::vector<int64_t>{images - 1, 3, 32, 32}));
    ASSERT_EQ(batch.negative_excluded.sizes(), (std::vector<int64_t>{batch.size(), images - 1}));
    std::set<int64_t> ids;
    std::vector<int64_t> pool_ids;
    for (int64_t j = 0; j < pool.size(0); ++j) {
      pool_ids.push_back(which(pool[j]));
      ASSERT_GE(pool_ids.back(), 0) << "pool image " << j << " is no training image";
      ids.insert(pool_ids.back());
    }
    EXPECT_EQ(static_cast<int64_t>(ids.size()), images - 1) << "step " << step << ": images drawn twice";
    for (int64_t i = 0; i < batch.size(); ++i) {
      const int64_t own = which(batch.image_pixels[i]);
      ASSERT_GE(own, 0);
      for (int64_t j = 0; j < pool.size(0); ++j) {
        EXPECT_EQ(batch.negative_excluded[i][j].item<bool>(), pool_ids[static_cast<size_t>(j)] == own) << i << "," << j;
        excluded += pool_ids[static_cast<size_t>(j)] == own;
      }
    }
    if (step == 0) first_pool = pool.clone();
  }
  EXPECT_GT(excluded, 0);  // all but one image in every pool: own images were drawn
  // The pool depends on the step only: a fresh batcher and another rank's share see the same one.
  DatasetBatcher again(cfg, nullptr);
  EXPECT_TRUE(again.build(0, again.plan(0)).negatives->image_pixels.equal(first_pool));
  DatasetBatcher rank1(cfg, nullptr);
  rank1.shard(1, 2);
  const Batch share = rank1.build(0, rank1.plan(0));
  EXPECT_TRUE(share.negatives->image_pixels.equal(first_pool));
  EXPECT_EQ(share.negative_excluded.size(0), share.size());
  // More negatives than images: refused when the data are read.
  cfg.train.itm_contrastive_negatives = images;
  try {
    DatasetBatcher too_many(cfg, nullptr);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("the datasets hold " + std::to_string(images) + " usable images"), std::string::npos)
        << e.what();
  }
}

TEST(DatasetBatches, RegionFeaturesFromAFolderAndRecordsWithoutThemSkipped) {
  // Features for two of the three COCO fixture images.
  const std::string dir = ::testing::TempDir() + "mmt_loader_feats/";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* key : {"9", "25"})
    fs::copy_file(std::string(MMT_SOURCE_DIR) + "/tests/data/images/features.npz", dir + key + ".npz");
  auto cfg = real_config("regions");
  DatasetOptions coco = cfg.data.datasets[2];
  coco.features = dir;
  cfg.data.datasets = {coco};
  cfg.data.max_bad_fraction = 0.5;
  cfg.train.mrm_kl_weight = 1;
  DatasetBatcher b(cfg, nullptr);
  EXPECT_EQ(b.datasets()[0].records.size(), 2u);
  EXPECT_EQ(b.datasets()[0].bad.by_reason().at("no region features"), 1);
  EXPECT_EQ(b.input_dims().region_feat_dim, 6);
  EXPECT_EQ(b.input_dims().region_classes, 3);
  auto loader = b.loader(0);
  const Batch batch = loader->next().batch;
  EXPECT_EQ(batch.region_feats.sizes(), (std::vector<int64_t>{6, 5, 6}));  // 4 regions + global
  EXPECT_EQ(batch.region_classes.size(2), 3);
  EXPECT_TRUE(batch.mrm_mask.defined());
}

}  // namespace
}  // namespace mmt

namespace mmt {
namespace {

TEST(DatasetBatches, ResumedSamplerGivesTheSameNextBatches) {
  const auto cfg = real_config("patches");
  DatasetBatcher a(cfg, nullptr);
  auto la = a.loader(0);
  std::vector<Batch> straight;
  nlohmann::json state_after_2;
  for (int64_t s = 0; s < 5; ++s) {
    auto item = la->next();
    if (s == 2) state_after_2 = nlohmann::json::parse(DatasetBatcher::sampler_state(item.plan).dump());
    straight.push_back(item.batch);
  }
  DatasetBatcher b(cfg, nullptr);
  b.restore_sampler(state_after_2);
  auto lb = b.loader(3);  // the step after the checkpoint
  for (int64_t s = 3; s < 5; ++s) {
    const Batch r = lb->next().batch;
    EXPECT_TRUE(r.text_ids.equal(straight[static_cast<size_t>(s)].text_ids)) << s;
    EXPECT_TRUE(r.image_pixels.equal(straight[static_cast<size_t>(s)].image_pixels)) << s;
    EXPECT_TRUE(r.mlm_labels.equal(straight[static_cast<size_t>(s)].mlm_labels)) << s;
  }
}

}  // namespace
}  // namespace mmt

namespace mmt {
namespace {

// Distributed training (docs/distributed.md): every rank plans the whole global batch and builds
// its share of the draws. Without ITM swaps or masking (which happen within a share), the shares of
// 3 ranks, in rank order, are the one-process batch row for row: the same samples, no overlap.
TEST(DatasetBatches, RankSharesOfEachGlobalBatchAreTheOneProcessBatch) {
  auto cfg = real_config("patches");
  cfg.train.itm_negative_prob = 0, cfg.train.mlm_prob = 0;
  cfg.train.batch_size = 7;  // shares of 2, 2 and 3 rows
  DatasetBatcher one(cfg, nullptr);
  std::vector<std::unique_ptr<DatasetBatcher>> ranks;
  for (int r = 0; r < 3; ++r) {
    ranks.push_back(std::make_unique<DatasetBatcher>(cfg, nullptr));
    ranks.back()->shard(r, 3);
  }
  for (int64_t step = 0; step < 4; ++step) {
    const Batch whole = one.build(step, one.plan(step));
    std::vector<std::vector<int64_t>> joined;
    std::vector<torch::Tensor> pixels;
    for (int r = 0; r < 3; ++r) {
      const Batch part = ranks[r]->build(step, ranks[r]->plan(step));
      const auto [begin, end] = shard_range(7, r, 3);
      EXPECT_EQ(part.size(), end - begin) << "rank " << r;
      for (auto& row : testing::token_rows(part)) joined.push_back(row);
      pixels.push_back(part.image_pixels);
    }
    EXPECT_EQ(joined, testing::token_rows(whole)) << "step " << step;
    EXPECT_TRUE(torch::cat(pixels).equal(whole.image_pixels)) << "step " << step;
  }
  EXPECT_THROW(ranks[0]->shard(3, 3), Error);
  EXPECT_THROW(ranks[0]->shard(0, 4), Error);  // fewer than 2 examples per rank
}

}  // namespace
}  // namespace mmt
