/* Data benchmarks (docs/performance.md, issue 5):
 *   jpeg   --dir D           decode + resize + centre crop to 224 px of every .jpg in D, one thread
 *   store  --path P --gb G   write a packed region store of about G GB (unless it exists), then read
 *                            every entry in random order: latency and resident-set growth
 *   loader --store P ...     region-feature batches per second through DatasetBatcher + BatchLoader
 *   synthetic [--config F] [--set k=v]... synthetic pretraining batches per second through PretrainBatcher +
 *                            BatchPrefetcher (what training on a GPU uses), by thread count, and
 *                            the time of a batch that fills a length-bucketing pool against one
 *                            that does not
 * Each prints one JSON line. */
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/dataset_batcher.h"
#include "mmt/data/prefetch.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/data/region_features.h"
#include "mmt/io/image.h"
#include "mmt/util/fs.h"
#include "mmt/util/runtime.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

static double seconds(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

static int64_t rss_kb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

int main(int argc, char** argv) {
  CLI::App app{"mmt_bench_data"};
  app.require_subcommand(1);
  std::string dir, path, vocab;
  double gb = 2.0;
  int64_t batch = 128, batches = 50, threads = 2, regions = 100, dim = 2048, images = 2000;
  auto* jpeg = app.add_subcommand("jpeg", "JPEG decode + resize + crop to 224 px");
  jpeg->add_option("--dir", dir)->required();
  auto* store = app.add_subcommand("store", "packed store: random reads, RSS");
  store->add_option("--path", path)->required();
  store->add_option("--gb", gb, "size of the store to create");
  store->add_option("--dim", dim, "feature size");
  auto* loader = app.add_subcommand("loader", "region-feature batches per second");
  loader->add_option("--store-dir", dir, "folder for the store and its dataset")->required();
  loader->add_option("--dim", dim, "feature size (64: tiny preset's synthetic detector; 2048: base)");
  loader->add_option("--regions", regions, "regions per image");
  loader->add_option("--images", images, "images in the store");
  loader->add_option("--batch", batch, "batch size");
  loader->add_option("--batches", batches, "batches timed");
  loader->add_option("--threads", threads, "loader threads");
  auto* synthetic = app.add_subcommand("synthetic", "synthetic pretraining batches per second, by thread count");
  std::vector<std::string> overrides;
  std::vector<int64_t> thread_counts{1, 2};
  std::string config_path;
  synthetic->add_option("--config", config_path, "experiment config (default: built-in defaults = tiny preset)");
  synthetic->add_option("--set", overrides, "config override, repeatable")->take_all();
  synthetic->add_option("--batches", batches, "batches timed per thread count");
  synthetic->add_option("--threads", thread_counts, "thread counts to time")->take_all();
  CLI11_PARSE(app, argc, argv);
  try {
    nlohmann::json out;
    if (jpeg->parsed()) {
      std::vector<std::string> files;
      for (const auto& e : fs::directory_iterator(dir))
        if (e.path().extension() == ".jpg") files.push_back(e.path().string());
      std::sort(files.begin(), files.end());
      std::vector<std::string> bytes;
      for (const auto& f : files) bytes.push_back(mmt::read_file(f));  // decode speed, not disk
      double best = 1e30;
      for (int rep = 0; rep < 3; ++rep) {
        const auto t0 = Clock::now();
        int64_t check = 0;
        for (size_t i = 0; i < bytes.size(); ++i) check += mmt::load_image_for_model(bytes[i], files[i], 224).pixels[0];
        best = std::min(best, seconds(t0));
        if (check < 0) return 1;
      }
      out = {{"bench", "jpeg"}, {"images", files.size()}, {"images_per_s", files.size() / best}};
    } else if (store->parsed()) {
      const int64_t per_image = 36 + 100 * dim * 2 + 100 * 16;  // f16 features + boxes
      const int64_t n = static_cast<int64_t>(gb * 1e9 / per_image);
      double write_s = 0;
      if (!fs::exists(path) || !fs::exists(path + ".idx")) {
        const auto t0 = Clock::now();
        mmt::PackedWriter w(path, {true, false});
        std::mt19937 rng(1);
        std::normal_distribution<float> normal;
        mmt::RegionSet r;
        r.n = 100, r.dim = dim, r.image_w = 640, r.image_h = 480;
        r.features.resize(static_cast<size_t>(100 * dim));
        r.boxes.assign(400, 10.f);
        for (auto& v : r.features) v = normal(rng);
        for (int64_t i = 0; i < n; ++i) {
          r.features[static_cast<size_t>(i % (100 * dim))] = static_cast<float>(i);  // entries differ
          w.add(std::to_string(i), r);
        }
        w.finish();
        write_s = seconds(t0);
      }
      mmt::PackedStore s(path);
      std::vector<int64_t> order(static_cast<size_t>(s.size()));
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), std::mt19937(2));
      const int64_t rss0 = rss_kb();
      int64_t rss_max = rss0;
      std::vector<double> lat;
      const auto t0 = Clock::now();
      double sum = 0;
      for (size_t k = 0; k < order.size(); ++k) {
        const auto t1 = Clock::now();
        const auto r = s.get(order[k]);
        lat.push_back(seconds(t1));
        sum += r.features[0];
        if (k % 256 == 0) rss_max = std::max(rss_max, rss_kb());
      }
      const double total = seconds(t0);
      std::sort(lat.begin(), lat.end());
      out = {{"bench", "store"}, {"entries", s.size()}, {"bytes", fs::file_size(path)}, {"write_s", write_s},
             {"read_s", total}, {"latency_ms_p50", 1e3 * lat[lat.size() / 2]},
             {"latency_ms_p99", 1e3 * lat[lat.size() * 99 / 100]}, {"rss_growth_mb", (rss_max - rss0) / 1024.0},
             {"checksum", sum}};
    } else if (synthetic->parsed()) {
      const auto cfg = mmt::load_config(config_path, overrides);
      const mmt::synth::World world(cfg.data.synth);
      const mmt::Vocab vocab = mmt::data_vocab(cfg);
      // One batcher alone: the first batch of a pool builds the pool (captions drawn, encoded and
      // sorted by length for data.bucket_batches batches); the others only render and mask.
      mmt::PretrainBatcher alone(world, vocab, cfg);
      const auto t0 = Clock::now();
      alone.batch(0);
      const double first_ms = 1e3 * seconds(t0);
      const auto t1 = Clock::now();
      const int64_t rest = std::max<int64_t>(1, cfg.data.bucket_batches - 1);
      for (int64_t i = 1; i <= rest; ++i) alone.batch(i);
      const double other_ms = 1e3 * seconds(t1) / static_cast<double>(rest);
      out = {{"bench", "synthetic"}, {"overrides", overrides}, {"batch", cfg.train.batch_size},
             {"bucket_batches", cfg.data.bucket_batches}, {"pool_filling_batch_ms", first_ms}, {"other_batch_ms", other_ms}};
      // Per thread count: each thread its own batcher, with the pools of examples shared between
      // them (what training does) and, for comparison, each building every pool itself.
      for (const int64_t n : thread_counts)
        for (const bool shared : {true, false}) {
          std::shared_ptr<mmt::PretrainBatcher> first_batcher;
          auto per_thread = [&]() -> mmt::BatchPrefetcher::Make {
            auto own = std::make_shared<mmt::PretrainBatcher>(world, vocab, cfg, shared ? first_batcher.get() : nullptr);
            if (!first_batcher) first_batcher = own;
            return [own](int64_t i) { return own->batch(i); };
          };
          // Starting at a pool boundary far from step 0, as a resumed run would.
          const int64_t first = 1000 * cfg.data.bucket_batches;
          mmt::BatchPrefetcher p(per_thread, n, first, first + batches + 1, std::max<int64_t>(4, 2 * n), false);
          p.next();  // threads started
          const auto t2 = Clock::now();
          for (int64_t i = 0; i < batches; ++i) p.next();
          const double s = seconds(t2);
          out[(shared ? "shared_pools_threads_" : "own_pools_threads_") + std::to_string(n)] = {
              {"batches_per_s", batches / s}, {"examples_per_s", batches * cfg.train.batch_size / s},
              {"pools_built", first_batcher->pools_built()}};
        }
    } else {
      // A store of random detections plus a folder dataset whose keys match it.
      fs::create_directories(dir + "/images");
      const std::string store_path = dir + "/regions.feat";
      if (!fs::exists(store_path + ".idx")) {
        mmt::PackedWriter w(store_path, {true, true});
        std::mt19937 rng(3);
        std::uniform_real_distribution<float> u;
        mmt::RegionSet r;
        r.n = regions, r.dim = dim, r.classes = 16, r.image_w = 640, r.image_h = 480;
        r.features.resize(static_cast<size_t>(regions * dim));
        r.class_probs.resize(static_cast<size_t>(regions * 16));
        for (int64_t i = 0; i < regions; ++i) r.boxes.insert(r.boxes.end(), {10, 10, 200, 150});
        for (int64_t i = 0; i < images; ++i) {
          for (auto& v : r.features) v = u(rng);
          for (auto& v : r.class_probs) v = u(rng);
          const std::string key = std::to_string(i);
          w.add(key, r);
          std::ofstream(dir + "/images/" + key + ".jpg") << "x";
          std::ofstream(dir + "/images/" + key + ".txt") << "a photo of a small dog running on the grass near the water " << i;
        }
        w.finish();
        std::ofstream v(dir + "/vocab.txt");
        for (const char* t : {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "small", "dog", "running",
                              "on", "the", "grass", "near", "water"})
          v << t << "\n";
      }
      mmt::ExperimentConfig cfg;
      cfg.data.source = "datasets", cfg.data.tokenizer = dir + "/vocab.txt";
      mmt::DatasetOptions d;
      d.format = "folder", d.path = dir + "/images", d.features = store_path;
      cfg.data.datasets = {d};
      cfg.data.loader_threads = threads, cfg.data.prefetch = 8, cfg.data.max_regions = 100;
      cfg.model.image_input = "regions";
      cfg.train.batch_size = batch, cfg.train.mrm_kl_weight = 1;
      mmt::configure_runtime(cfg.runtime, std::cerr);
      mmt::DatasetBatcher b(cfg, nullptr);
      auto l = b.loader(0);
      l->next();  // warm-up
      const auto t0 = Clock::now();
      for (int64_t i = 0; i < batches; ++i) l->next();
      const double s = seconds(t0);
      out = {{"bench", "loader"}, {"dim", dim}, {"regions", regions}, {"batch", batch}, {"threads", threads},
             {"batches_per_s", batches / s}, {"examples_per_s", batches * batch / s}};
    }
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "mmt_bench_data: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
