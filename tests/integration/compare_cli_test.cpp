/* `mmt eval` writes what `mmt compare` needs - bootstrap intervals of the recalls, the caption ->
 * image map, the test set's fingerprint - and `mmt compare` reads two results: a run against
 * itself differs by nothing, another scoring mode of the same test set is compared, a different
 * test set or a result from before the map existed is refused with a message saying why. */
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmt::cli_test;

json read_json(const std::string& path) { return json::parse(slurp(path)); }

TEST(Compare, EvalKeepsIntervalsAndMapsAndCompareReadsThem) {
  const std::string a = own("a");
  fs::remove_all(a);
  auto r = run_mmt("train --config " + std::string(MMT_SOURCE_DIR) + "/configs/demo.json --out " + a +
                   " --set train.steps=10 --set train.batch_size=16 --set train.checkpoint_every=0 --set model.num_layers=1"
                   " --set data.synth.num_train_images=300 --set data.synth.num_test_images=30 --set data.synth.max_objects=2");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_mmt("eval --run " + a + " --set eval.test_sets=easy --set eval.bootstrap=300");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("easy, 95 % intervals (bootstrap over its 30 test images, 300 resamplings): image R@1 "),
            std::string::npos) << r.out;

  const json easy = read_json(a + "/eval.json")["test_sets"]["easy"];
  ASSERT_TRUE(easy.contains("bootstrap")) << easy.dump();
  // The evaluation's log is kept beside its results.
  const std::string eval_log = slurp(a + "/eval.log");
  EXPECT_EQ(eval_log.rfind("mmt eval: started ", 0), 0u) << eval_log;
  EXPECT_NE(eval_log.find("eval easy"), std::string::npos) << eval_log;  // its progress line, finished
  for (const char* dir : {"image_retrieval", "text_retrieval"})
    for (const char* k : {"r1", "r5", "r10"}) {
      const double v = easy[dir][k], lo = easy["bootstrap"][dir][k][0], hi = easy["bootstrap"][dir][k][1];
      EXPECT_LE(lo, v + 1e-9) << dir << " " << k;
      EXPECT_GE(hi, v - 1e-9) << dir << " " << k;
    }
  const double rsum = easy["image_retrieval"]["rsum"].get<double>() + easy["text_retrieval"]["rsum"].get<double>();
  EXPECT_LE(easy["bootstrap"]["rsum"][0].get<double>(), rsum + 1e-9);
  EXPECT_GE(easy["bootstrap"]["rsum"][1].get<double>(), rsum - 1e-9);
  EXPECT_NE(r.out.find("; RSUM "), std::string::npos) << r.out;
  EXPECT_EQ(easy["test_set_fingerprint"].get<std::string>().size(), 16u);
  // Captions missed at R@1 (eval.examples, 5): each with its own image and the other one scored
  // highest, both in words (a synthetic image by its first caption).
  ASSERT_EQ(easy["missed_at_r1"].size(), 5u) << easy.dump();  // a 10-step model misses most of 150
  for (const auto& m : easy["missed_at_r1"]) {
    EXPECT_NE(m["found_image"], m["image"]) << m.dump();
    EXPECT_FALSE(m["found"].get<std::string>().empty()) << m.dump();
  }
  EXPECT_NE(r.out.find("| caption | its image | its image's rank | scored highest instead |"), std::string::npos) << r.out;
  {  // a whole rank as a whole number ("18", not "18.0"), a tie's fraction kept
    const double rank = easy["missed_at_r1"][0]["rank"].get<double>();
    char cell[48];
    std::snprintf(cell, sizeof cell, rank == std::floor(rank) ? " | %.0f | " : " | %.1f | ", rank);
    EXPECT_NE(r.out.find(cell), std::string::npos) << cell << r.out;
  }
  EXPECT_TRUE(fs::exists(a + "/" + easy["caption_image_file"].get<std::string>()));

  // Against itself: nothing to tell.
  r = run_mmt("compare " + a + " " + a + " --samples 200 --json " + own("same.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("| image R@1 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Verdict over 6 recalls (1 test set): B better on 0, A better on 0, not resolved on 6 (each verdict at the 95 % level"),
            std::string::npos) << r.out;
  const json same = read_json(own("same.json"));
  EXPECT_EQ(same["verdicts"]["not_resolved"], 6);
  ASSERT_EQ(same["sets"]["easy"]["metrics"].size(), 7u);  // six recalls and RSUM
  EXPECT_NE(r.out.find("RSUM (the six recalls summed; one verdict a test set): easy not resolved (+0.0, +0.0 .. +0.0)."),
            std::string::npos) << r.out;
  for (const auto& m : same["sets"]["easy"]["metrics"]) {
    EXPECT_EQ(m["delta"].get<double>(), 0.0) << m.dump();
    EXPECT_EQ(m["verdict"], "not resolved") << m.dump();
  }
  // true@1 from the captions' saved hits: the run's own value on both sides, no difference.
  const json& t1 = same["sets"]["easy"]["true_at_1"];
  EXPECT_NEAR(t1["a"].get<double>(), easy["true_at_1"]["model"].get<double>(), 1e-9) << t1.dump();
  EXPECT_EQ(t1["delta"].get<double>(), 0.0);
  EXPECT_EQ(t1["low"].get<double>(), 0.0);
  EXPECT_EQ(t1["high"].get<double>(), 0.0);
  EXPECT_NE(r.out.find("true@1 (the top image is one the caption is true of, its own or another): A "), std::string::npos)
      << r.out;

  // Several results a side, comma-separated: the run twice is itself, with no spread.
  r = run_mmt("compare " + a + " " + a + "," + a + "/eval.json --samples 100 --json " + own("group.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("B, the mean of 2 results:"), std::string::npos) << r.out;
  const json group = read_json(own("group.json"));
  EXPECT_EQ(group["b_results"].size(), 2u);
  for (const auto& m : group["sets"]["easy"]["metrics"]) {
    EXPECT_EQ(m["delta"].get<double>(), 0.0) << m.dump();
    EXPECT_EQ(m["b_sd"].get<double>(), 0.0) << m.dump();
  }

  // Another scoring mode of the same test set, in a copy of the run: compared, and said so.
  const std::string b = own("b");
  fs::remove_all(b);
  fs::copy(a, b, fs::copy_options::recursive);
  r = run_mmt("eval --run " + b + " --set eval.test_sets=easy --set eval.mode=dual");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_mmt("compare " + a + "/eval.json " + b + " --samples 200 --json " + own("dual.json"));
  ASSERT_EQ(r.status, 0) << r.err;
  {  // true@1 of two scorings: each side's own value, the difference between them inside the interval
    const json t = read_json(own("dual.json"))["sets"]["easy"]["true_at_1"];
    EXPECT_NEAR(t["b"].get<double>(), read_json(b + "/eval.json")["test_sets"]["easy"]["true_at_1"]["model"].get<double>(), 1e-9);
    EXPECT_NEAR(t["delta"].get<double>(), t["b"].get<double>() - t["a"].get<double>(), 1e-9);
    EXPECT_LE(t["low"].get<double>(), t["delta"].get<double>() + 1e-9) << t.dump();
    EXPECT_GE(t["high"].get<double>(), t["delta"].get<double>() - 1e-9) << t.dump();
  }
  EXPECT_NE(r.out.find("(exact, zero-shot, step 10)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("(dual, zero-shot, step 10)"), std::string::npos) << r.out;

  // Rerank with k above every candidate is exact: it differs from exact by nothing, compared
  // through its outcomes file and again through its two ranking matrices (caption -> image and
  // image -> caption; the outcomes file's key taken out of the result).
  r = run_mmt("eval --run " + b + " --set eval.test_sets=easy --set eval.mode=rerank --set eval.rerank_k=1000");
  ASSERT_EQ(r.status, 0) << r.err;
  json rerank = read_json(b + "/eval.json");
  ASSERT_EQ(rerank["test_sets"]["easy"]["scores_files"].size(), 2u);
  ASSERT_TRUE(fs::exists(b + "/" + rerank["test_sets"]["easy"]["outcomes_file"].get<std::string>()));
  for (const bool from_matrices : {false, true}) {
    if (from_matrices) {
      rerank["test_sets"]["easy"].erase("outcomes_file");
      std::ofstream(b + "/eval.json") << rerank.dump();
    }
    r = run_mmt("compare " + a + " " + b + " --samples 100 --json " + own("rerank.json"));
    ASSERT_EQ(r.status, 0) << r.err;
    for (const auto& m : read_json(own("rerank.json"))["sets"]["easy"]["metrics"]) {
      EXPECT_NEAR(m["delta"].get<double>(), 0.0, 1e-9) << from_matrices << m.dump();
      EXPECT_NEAR(m["low"].get<double>(), 0.0, 1e-9) << from_matrices << m.dump();
      EXPECT_NEAR(m["high"].get<double>(), 0.0, 1e-9) << from_matrices << m.dump();
    }
  }

  // A different test set (fewer images) is refused, naming the set.
  r = run_mmt("eval --run " + b + " --set eval.test_sets=easy --set data.synth.num_test_images=20 "
              "--set data.synth.captions_per_image=3");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("### easy: 20 images x 60 captions, "), std::string::npos) << r.out;  // all captions
  r = run_mmt("compare " + a + " " + b);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("test set 'easy' differs between the results"), std::string::npos) << r.err;

  // A result written before the map and the fingerprint existed: evaluate again.
  json old = read_json(b + "/eval.json");
  old["test_sets"]["easy"].erase("test_set_fingerprint");
  std::ofstream(b + "/eval.json") << old.dump();
  r = run_mmt("compare " + a + " " + b);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("evaluate the run again"), std::string::npos) << r.err;

  // A run not yet evaluated.
  fs::remove(b + "/eval.json");
  r = run_mmt("compare " + a + " " + b);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("evaluate the run first"), std::string::npos) << r.err;
}

}  // namespace
