/* Benchmark: what the recalls' bootstrap intervals and a paired comparison cost beside the
 * metrics themselves, on random score matrices of Flickr30k's and COCO 5k's shapes (1,000 x 5,000
 * and 5,000 x 25,000); and what reading a saved result costs `mmt compare` and the study report:
 * from its outcomes file, or from its score matrix ranked again. Figures and command:
 * docs/performance.md. */
#include <CLI/CLI.hpp>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "mmt/eval/bootstrap.h"
#include "mmt/eval/compare.h"
#include "mmt/io/npy.h"
#include "mmt/util/rng.h"

int main(int argc, char** argv) {
  CLI::App app{"bootstrap intervals and paired comparisons: seconds per test set"};
  int64_t samples = 1000;
  std::vector<int64_t> images = {1000, 5000};
  std::string dir = (std::filesystem::temp_directory_path() / "mmt_bench_bootstrap").string();
  app.add_option("--samples", samples, "resamplings");
  app.add_option("--images", images, "test set sizes (5 captions each)");
  app.add_option("--dir", dir, "where the saved results are written (removed at the end)");
  CLI11_PARSE(app, argc, argv);
  using Clock = std::chrono::steady_clock;
  auto since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  nlohmann::json out = nlohmann::json::array();
  for (const int64_t ni : images) {
    const int64_t nc = 5 * ni;
    std::vector<int64_t> map(nc);
    for (int64_t c = 0; c < nc; ++c) map[c] = c / 5;
    mmt::Rng rng(1);
    std::vector<float> a(nc * ni), b(nc * ni);
    for (size_t k = 0; k < a.size(); ++k) a[k] = static_cast<float>(rng.uniform()), b[k] = static_cast<float>(rng.uniform());
    auto t = Clock::now();
    const auto oa = mmt::retrieval_outcomes(a, ni, map);
    const double metrics_s = since(t);
    const auto ob = mmt::retrieval_outcomes(b, ni, map);
    mmt::BootstrapSettings s;
    s.samples = samples;
    t = Clock::now();
    const auto iv = mmt::bootstrap_intervals(oa, map, s);
    const double intervals_s = since(t);
    t = Clock::now();
    const auto d = mmt::paired_bootstrap(oa, ob, map, s);
    const double paired_s = since(t);

    // A saved result read back as mmt compare reads it: the outcomes file, then the matrix.
    std::filesystem::create_directories(dir);
    mmt::save_npy(dir + "/scores.npy", a.data(), {nc, ni});
    mmt::save_npy(dir + "/map.npy", map.data(), {nc});
    mmt::save_outcomes(dir + "/outcomes.npy", oa);
    nlohmann::json entry = {{"num_images", ni}, {"num_captions", nc}, {"scores_files", {"scores.npy"}},
                            {"caption_image_file", "map.npy"}, {"outcomes_file", "outcomes.npy"}};
    std::vector<int64_t> read_map;
    t = Clock::now();
    mmt::load_outcomes(dir, entry, "bench", read_map);
    const double read_outcomes_s = since(t);
    entry.erase("outcomes_file");
    t = Clock::now();
    mmt::load_outcomes(dir, entry, "bench", read_map);
    const double read_matrix_s = since(t);
    std::filesystem::remove_all(dir);

    out.push_back({{"images", ni}, {"captions", nc}, {"samples", samples}, {"outcomes_s", metrics_s},
                   {"intervals_s", intervals_s}, {"paired_s", paired_s}, {"image_r1_interval", {iv[0].low, iv[0].high}},
                   {"paired_image_r1", {d[0].interval.low, d[0].interval.high}},
                   {"read_outcomes_file_s", read_outcomes_s}, {"read_matrix_s", read_matrix_s}});
    std::cerr << ni << " images x " << nc << " captions: outcomes (the metrics' own work) " << metrics_s
              << " s, intervals " << intervals_s << " s, paired comparison " << paired_s
              << " s; a saved result read from its outcomes file " << read_outcomes_s << " s, from its matrix "
              << read_matrix_s << " s\n";
  }
  std::cout << out.dump(2) << "\n";
}
