/* Benchmark: what the recalls' bootstrap intervals and a paired comparison cost beside the
 * metrics themselves, on random score matrices of Flickr30k's and COCO 5k's shapes (1,000 x 5,000
 * and 5,000 x 25,000). Figures and command: docs/performance.md. */
#include <CLI/CLI.hpp>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "mmt/eval/bootstrap.h"
#include "mmt/util/rng.h"

int main(int argc, char** argv) {
  CLI::App app{"bootstrap intervals and paired comparisons: seconds per test set"};
  int64_t samples = 1000;
  std::vector<int64_t> images = {1000, 5000};
  app.add_option("--samples", samples, "resamplings");
  app.add_option("--images", images, "test set sizes (5 captions each)");
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
    out.push_back({{"images", ni}, {"captions", nc}, {"samples", samples}, {"outcomes_s", metrics_s},
                   {"intervals_s", intervals_s}, {"paired_s", paired_s}, {"image_r1_interval", {iv[0].low, iv[0].high}},
                   {"paired_image_r1", {d[0].interval.low, d[0].interval.high}}});
    std::cerr << ni << " images x " << nc << " captions: outcomes (the metrics' own work) " << metrics_s
              << " s, intervals " << intervals_s << " s, paired comparison " << paired_s << " s\n";
  }
  std::cout << out.dump(2) << "\n";
}
