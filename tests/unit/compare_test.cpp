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
#include "mmt/util/error.h"
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
  ASSERT_EQ(m.size(), 7u);  // six recalls and RSUM
  EXPECT_EQ(m[6]["metric"], "rsum");
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

// Several results a side (seeds of one configuration): compared as their means, with their
// spread beside; a set not every result holds is named with the results that lack it; a result of
// another test set is refused, naming it.
TEST(Compare, GroupsOfResultsAreComparedAsTheirMeans) {
  const std::string root = ::testing::TempDir() + "mmt_compare_groups";
  fs::remove_all(root);
  const std::string a1 = write_result(root + "/a1", 2, 0, 1), a2 = write_result(root + "/a2", 2, 0, 2),
                    b1 = write_result(root + "/b1", 2, 3, 3), b2 = write_result(root + "/b2", 2, 2, 4);
  BootstrapSettings s;
  s.samples = 400;
  std::ostringstream sink, out;
  const json one = compare_results(a1, b1, s, sink), two = compare_results(a2, b2, s, sink);
  const json r = compare_results(a1 + "," + a2, b1 + "," + b2, s, out);
  EXPECT_EQ(r["a_results"], json::array({a1, a2}));
  EXPECT_EQ(r["b_results"], json::array({b1, b2}));
  for (const char* fold : {"fold1", "fold2"})
    for (size_t k = 0; k < 7; ++k) {  // six recalls and RSUM
      const json &m = r["sets"][fold]["metrics"][k], &m1 = one["sets"][fold]["metrics"][k], &m2 = two["sets"][fold]["metrics"][k];
      EXPECT_NEAR(m["a"].get<double>(), (m1["a"].get<double>() + m2["a"].get<double>()) / 2, 1e-9) << fold << k;
      EXPECT_NEAR(m["b"].get<double>(), (m1["b"].get<double>() + m2["b"].get<double>()) / 2, 1e-9) << fold << k;
      EXPECT_NEAR(m["delta"].get<double>(), m["b"].get<double>() - m["a"].get<double>(), 1e-9);
      EXPECT_LE(m["low"].get<double>(), m["delta"].get<double>() + 1e-9);
      EXPECT_GE(m["high"].get<double>(), m["delta"].get<double>() - 1e-9);
      // Two values: their sample sd is |x1 - x2| / sqrt(2).
      EXPECT_NEAR(m["a_sd"].get<double>(), std::abs(m1["a"].get<double>() - m2["a"].get<double>()) / std::sqrt(2.0), 1e-9);
      EXPECT_NEAR(m["b_sd"].get<double>(), std::abs(m1["b"].get<double>() - m2["b"].get<double>()) / std::sqrt(2.0), 1e-9);
    }
  EXPECT_EQ(r["sets"]["fold1"]["metrics"][0]["verdict"], "B better");
  ASSERT_TRUE(r.contains("mean_over_splits"));
  const double d1 = r["sets"]["fold1"]["metrics"][0]["delta"], d2 = r["sets"]["fold2"]["metrics"][0]["delta"];
  EXPECT_NEAR(r["mean_over_splits"]["metrics"][0]["delta"].get<double>(), (d1 + d2) / 2, 1e-9);
  EXPECT_NE(out.str().find("A, the mean of 2 results:  \n- " + a1 + " (exact, zero-shot, step 1)\n- " + a2), std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("Across results (sample sd over 2 A, 2 B; seeds' noise, which the interval leaves out): image R@1 A "),
            std::string::npos) << out.str();

  // One against two: A's spread is not printed (one result has none), B's is.
  std::ostringstream out1;
  const json r1 = compare_results(a1, b1 + "," + b2, s, out1);
  EXPECT_FALSE(r1["sets"]["fold1"]["metrics"][0].contains("a_sd"));
  EXPECT_TRUE(r1["sets"]["fold1"]["metrics"][0].contains("b_sd"));

  // A result with fold1 only: fold2 is named with it and not compared, nor is the mean.
  const std::string b3 = write_result(root + "/b3", 1, 3, 5, false);
  std::ostringstream out3;
  const json r3 = compare_results(a1 + "," + a2, b1 + "," + b3, s, out3);
  EXPECT_EQ(r3["sets"].size(), 1u);
  EXPECT_EQ(r3["skipped"], json::array({"fold2 (not in " + b3 + ")"}));
  EXPECT_FALSE(r3.contains("mean_over_splits"));

  // A result of another test set among them: refused, naming it.
  json other = json::parse(std::ifstream(b2));
  other["splits"]["fold1"]["test_set_fingerprint"] = "0000000000000000";
  std::ofstream(b2) << other.dump();
  try {
    compare_results(a1 + "," + a2, b1 + "," + b2, s, sink);
    ADD_FAILURE() << "a result of another test set was compared";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("0000000000000000 in " + b2), std::string::npos) << e.what();
  }
}

// A run directory without eval.json means its only result (eval-test.json after `mmt eval
// --protocol test`); with several, the error names them; with none, it says to evaluate the run.
TEST(Compare, RunDirectoryMeansItsOnlyResultWithoutEvalJson) {
  const std::string root = ::testing::TempDir() + "mmt_compare_dirs";
  fs::remove_all(root);
  const std::string a = write_result(root + "/a", 1, 0, 1), b = write_result(root + "/b", 1, 3, 2);
  BootstrapSettings s;
  s.samples = 50;
  std::ostringstream sink;
  const json r = compare_results(root + "/a", root + "/b", s, sink);
  EXPECT_EQ(r["a"], a);
  EXPECT_EQ(r["b"], b);
  const json direct = compare_results(a, b, s, sink);
  EXPECT_EQ(r["sets"], direct["sets"]);

  fs::copy_file(b, root + "/b/eval-best.json");
  try {
    compare_results(root + "/a", root + "/b", s, sink);
    ADD_FAILURE() << "a directory with two results was read as one";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("several results (" + root + "/b/eval-best.json, " + b + ")"), std::string::npos)
        << e.what();
  }
  fs::create_directories(root + "/c");
  try {
    compare_results(root + "/a", root + "/c", s, sink);
    ADD_FAILURE() << "a directory without results was compared";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("evaluate the run first (mmt eval --run " + root + "/c)"), std::string::npos)
        << e.what();
  }
}

// The outcomes file gives what ranking the matrices gives - ties' expected values and rerank's
// second (image -> caption) matrix included - and one from another evaluation is refused.
TEST(Compare, OutcomesFileEqualsTheMatricesRankedAgain) {
  const std::string dir = ::testing::TempDir() + "mmt_compare_outcomes";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const int64_t ni = 12, nc = 36;
  Rng rng(7);
  std::vector<float> c2i(nc * ni), i2c(nc * ni);
  std::vector<int64_t> map(nc);
  for (int64_t c = 0; c < nc; ++c) {
    map[c] = c / 3;
    for (int64_t i = 0; i < ni; ++i) {  // coarse values: many ties
      c2i[c * ni + i] = static_cast<float>(std::floor(4 * rng.uniform()));
      i2c[c * ni + i] = static_cast<float>(std::floor(4 * rng.uniform()));
    }
  }
  save_npy(dir + "/s.npy", c2i.data(), {nc, ni});
  save_npy(dir + "/s-i2t.npy", i2c.data(), {nc, ni});
  save_npy(dir + "/map.npy", map.data(), {nc});
  json entry = {{"num_images", ni}, {"num_captions", nc}, {"scores_files", {"s.npy", "s-i2t.npy"}},
                {"caption_image_file", "map.npy"}};
  std::vector<int64_t> got_map;
  const RetrievalOutcomes ranked = load_outcomes(dir, entry, "set", got_map);
  EXPECT_EQ(got_map, map);
  const RetrievalOutcomes want = retrieval_outcomes(c2i, ni, map, &i2c);
  ASSERT_EQ(ranked.image_retrieval.size(), want.image_retrieval.size());
  bool fractional = false;
  for (size_t q = 0; q < want.image_retrieval.size(); ++q) {
    EXPECT_EQ(ranked.image_retrieval[q].rank, want.image_retrieval[q].rank);
    fractional |= want.image_retrieval[q].r1 > 0 && want.image_retrieval[q].r1 < 1;
  }
  EXPECT_TRUE(fractional);  // the ties are there

  save_outcomes(dir + "/o.npy", ranked);
  const RetrievalMetrics m = summarise(ranked);
  entry["outcomes_file"] = "o.npy";
  entry["image_retrieval"] = {{"r1", m.image_retrieval.r1}, {"r5", m.image_retrieval.r5}, {"r10", m.image_retrieval.r10}};
  entry["text_retrieval"] = {{"r1", m.text_retrieval.r1}, {"r5", m.text_retrieval.r5}, {"r10", m.text_retrieval.r10}};
  fs::remove(dir + "/s.npy");  // the file alone answers
  const RetrievalOutcomes read = load_outcomes(dir, entry, "set", got_map);
  for (const auto& [x, y] : {std::pair{&read.image_retrieval, &ranked.image_retrieval},
                             std::pair{&read.text_retrieval, &ranked.text_retrieval}}) {
    ASSERT_EQ(x->size(), y->size());
    for (size_t q = 0; q < x->size(); ++q) {
      EXPECT_EQ((*x)[q].r1, (*y)[q].r1);
      EXPECT_EQ((*x)[q].r5, (*y)[q].r5);
      EXPECT_EQ((*x)[q].r10, (*y)[q].r10);
      EXPECT_EQ((*x)[q].rank, (*y)[q].rank);
    }
  }

  entry["text_retrieval"]["r5"] = m.text_retrieval.r5 + 1;  // a result the file does not belong to
  try {
    load_outcomes(dir, entry, "set", got_map);
    ADD_FAILURE() << "a stale outcomes file was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/o.npy: its text_retrieval r5"), std::string::npos) << e.what();
  }

  // The map must be integers within the images.
  const std::vector<float> float_map(map.begin(), map.end());
  save_npy(dir + "/map.npy", float_map.data(), {nc});
  EXPECT_THROW(load_outcomes(dir, entry, "set", got_map), Error);
  map[5] = ni;
  save_npy(dir + "/map.npy", map.data(), {nc});
  try {
    load_outcomes(dir, entry, "set", got_map);
    ADD_FAILURE() << "a caption of image " << ni << " of " << ni << " was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("caption 5 belongs to image 12 of 12"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mmt
