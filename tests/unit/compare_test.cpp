/* compare_results on hand-made protocol results of two folds (COCO 1k's shape, small): each fold
 * compared, their mean compared with each fold resampled within it, the mean's difference the
 * mean of the folds' differences; a fold missing from one result is named and the mean skipped. */
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mmt/eval/compare.h"
#include "mmt/io/npy.h"
#include "mmt/util/rng.h"

namespace mmt {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// A protocol result in `dir` of folds of 20 images x 2 captions: random scores, with the true
// image of every `boost`-th caption raised to the top.
std::string write_result(const std::string& dir, int folds, int boost, uint64_t seed, bool mean = true) {
  fs::create_directories(dir);
  Rng rng(seed);
  json result = {{"step", 1}, {"label", "zero-shot"}, {"mode", "exact"}, {"splits", json::object()}};
  const int64_t ni = 20, nc = 40;
  for (int f = 0; f < folds; ++f) {
    const std::string name = "fold" + std::to_string(f + 1);
    std::vector<float> scores(nc * ni);
    std::vector<int64_t> map(nc);
    std::vector<std::string> texts;
    for (int64_t c = 0; c < nc; ++c) {
      map[c] = c / 2;
      texts.push_back("caption " + std::to_string(c) + " of fold " + std::to_string(f));
      for (int64_t i = 0; i < ni; ++i) scores[c * ni + i] = static_cast<float>(rng.uniform());
      if (boost && c % boost == 0) scores[c * ni + map[c]] = 2.f;
    }
    save_npy(dir + "/" + name + "-scores.npy", scores.data(), {nc, ni});
    save_npy(dir + "/" + name + "-map.npy", map.data(), {nc});
    result["splits"][name] = {{"num_images", ni},
                              {"num_captions", nc},
                              {"scores_files", {name + "-scores.npy"}},
                              {"caption_image_file", name + "-map.npy"},
                              {"test_set_fingerprint", test_set_fingerprint(ni, {}, texts, map)}};
  }
  if (mean) result["mean_over_splits"] = {{"image_r1", 0.0}};  // its presence is what counts
  std::ofstream(dir + "/eval-coco-1k.json") << result.dump();
  return dir + "/eval-coco-1k.json";
}

TEST(Compare, FoldsAndTheirMean) {
  const std::string root = ::testing::TempDir() + "mmt_compare_folds";
  fs::remove_all(root);
  const std::string a = write_result(root + "/a", 2, 0, 1), b = write_result(root + "/b", 2, 3, 1);
  std::ostringstream out;
  BootstrapSettings s;
  s.samples = 500;
  const json r = compare_results(a, b, s, out);
  ASSERT_EQ(r["sets"].size(), 2u);
  ASSERT_TRUE(r.contains("mean_over_splits")) << r.dump();
  const auto& m = r["mean_over_splits"]["metrics"];
  ASSERT_EQ(m.size(), 6u);
  EXPECT_EQ(m[0]["metric"], "image_r1");
  const double d1 = r["sets"]["fold1"]["metrics"][0]["delta"], d2 = r["sets"]["fold2"]["metrics"][0]["delta"];
  EXPECT_NEAR(m[0]["delta"].get<double>(), (d1 + d2) / 2, 1e-9);
  EXPECT_GT(m[0]["delta"].get<double>(), 20.0);  // every third caption's image moved to the top
  EXPECT_GT(m[0]["low"].get<double>(), 0.0);
  EXPECT_EQ(m[0]["verdict"], "B better");
  EXPECT_NE(out.str().find("### mean of 2 folds: B against A"), std::string::npos) << out.str();

  // A result with one fold only: the shared fold is compared, the other named, no mean.
  const std::string one = write_result(root + "/one", 1, 3, 1, false);
  std::ostringstream out2;
  const json r2 = compare_results(a, one, s, out2);
  EXPECT_EQ(r2["sets"].size(), 1u);
  EXPECT_FALSE(r2.contains("mean_over_splits"));
  EXPECT_EQ(r2["skipped"], json::array({"fold2 (only in A)"}));
  EXPECT_NE(out2.str().find("Not compared: fold2 (only in A)"), std::string::npos) << out2.str();
}

}  // namespace
}  // namespace mmt
