/* Real data through the `mmt` binary: `data check` (counts, undecodable images), `data stats`
 * (vocabulary overlap against a hand count), and `mmt train` on a mixture of the fixture datasets
 * with the threaded loader, per-dataset counts in the logs and the sampler state in the checkpoint. */
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
const std::string kData = std::string(MMT_SOURCE_DIR) + "/tests/data/datasets/";

struct Result {
  int status;
  std::string out, err;
};

// Files of this test alone: ctest runs the tests of this file as parallel processes.
std::string own(const std::string& what) {
  return ::testing::TempDir() + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" + what;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result run_mmt(const std::string& args) {
  const std::string cmd = std::string(MMT_BINARY) + " " + args + " >" + own("out.txt") + " 2>" + own("err.txt");
  const int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, slurp(own("out.txt")), slurp(own("err.txt"))};
}

std::string scratch(const std::string& name) {
  const auto dir = fs::path(::testing::TempDir()) / ("mmt_data_cli_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string() + "/";
}

TEST(DataCli, CheckCountsSplitsSkippedAndUndecodableImages) {
  const std::string dir = scratch("check");
  fs::copy(kData + "folder", dir + "imgs", fs::copy_options::recursive);
  std::ofstream(dir + "imgs/broken.jpg") << "\xFF\xD8\xFF not really a jpeg";
  std::ofstream(dir + "imgs/broken.txt") << "a broken picture\n";
  std::ofstream(dir + "imgs/lonely.png") << "x";  // no caption file
  const auto r = run_mmt("data check --json --decode --dataset format=folder,path=" + dir + "imgs,name=mine");
  ASSERT_EQ(r.status, 0) << r.err;
  const json c = json::parse(r.out)[0];
  EXPECT_EQ(c["name"], "mine");
  EXPECT_EQ(c["images"], 3);
  EXPECT_EQ(c["captions"], 4);
  EXPECT_EQ(c["skipped_by_reason"]["no caption file"], 1);
  EXPECT_EQ(c["undecodable_images"], 1);
  EXPECT_NE(r.err.find("broken.jpg: corrupt JPEG"), std::string::npos) << r.err;
  const auto bad = run_mmt("data check --dataset format=coco");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("format= and path= are required"), std::string::npos) << bad.err;
}

TEST(DataCli, StatsVocabularyOverlapMatchesAHandCount) {
  const std::string dir = scratch("stats");
  fs::create_directories(dir + "a"), fs::create_directories(dir + "b");
  std::ofstream(dir + "a/1.jpg") << "x";
  std::ofstream(dir + "a/1.txt") << "a red cat\nA red, red cat\n";  // types a red cat ,
  std::ofstream(dir + "b/1.jpg") << "x";
  std::ofstream(dir + "b/1.txt") << "a blue cat\n";                  // types a blue cat
  const auto r = run_mmt("data stats --json --dataset format=folder,path=" + dir + "a,name=A --dataset format=folder,path=" + dir + "b,name=B");
  ASSERT_EQ(r.status, 0) << r.err;
  const json s = json::parse(r.out);
  EXPECT_EQ(s["datasets"][0]["vocabulary"], 4);
  EXPECT_EQ(s["datasets"][0]["words"], 3 + 5);
  EXPECT_DOUBLE_EQ(s["datasets"][0]["mean_length"].get<double>(), 4.0);
  const json& o = s["overlap"][0];
  EXPECT_DOUBLE_EQ(o["jaccard"].get<double>(), 2.0 / 5);                       // {a, cat} of {a, red, cat, ",", blue}
  EXPECT_DOUBLE_EQ(o["a_tokens_in_b_vocabulary"].get<double>(), 4.0 / 8);      // a a cat cat of 8 words
  EXPECT_DOUBLE_EQ(o["b_tokens_in_a_vocabulary"].get<double>(), 2.0 / 3);
}

TEST(DataCli, TrainsOnAMixtureOfRealDatasets) {
  const std::string dir = scratch("train");
  // A WordPiece vocabulary: the specials and the fixtures' words.
  {
    std::ofstream v(dir + "vocab.txt");
    v << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    for (const char* w : {"a", "cat", "on", "mat", "red", "brown", "dog", "web", "caption", "number", "0", "1", "2",
                          "photo", "of", "object", ",", ".", "9", "25", "30", "3", "4"})
      v << w << "\n";
  }
  const json cfg = {
      {"name", "real-mixture"},
      {"model", {{"preset", "tiny"}, {"image_input", "patches"}, {"patch_size", 8}, {"attention", "merged"}, {"num_layers", 2}}},
      {"data", {{"source", "datasets"}, {"tokenizer", dir + "vocab.txt"}, {"sampling", "dataset"}, {"image_size", 32},
                {"loader_threads", 2}, {"prefetch", 3},
                {"datasets", {{{"format", "folder"}, {"path", kData + "folder"}, {"name", "clipart"}},
                              {{"format", "webdataset"}, {"path", kData + "wds"}, {"name", "web"}},
                              {{"format", "coco"}, {"path", kData + "coco/annotations/captions_train2017.json"},
                               {"images", kData + "coco/train2017"}, {"name", "coco"}}}}}},
      {"train", {{"steps", 6}, {"batch_size", 4}, {"log_every", 3}, {"warmup_steps", 2}}}};
  std::ofstream(dir + "config.json") << cfg.dump(2);
  const auto r = run_mmt("train --config " + dir + "config.json --out " + dir + "run");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("dataset clipart: 2 images, 3 captions"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("examples per dataset: clipart"), std::string::npos) << r.err;
  std::ifstream metrics(dir + "run/metrics.jsonl");
  std::vector<json> recs;
  for (std::string line; std::getline(metrics, line);) recs.push_back(json::parse(line));
  ASSERT_EQ(recs.size(), 2u);
  int64_t drawn = 0;
  for (const auto& c : recs.back()["dataset_counts"]) drawn += c.get<int64_t>();
  EXPECT_EQ(drawn, 6 * 4);
  const json ckpt = json::parse(slurp(dir + "run/checkpoint.json"));
  EXPECT_EQ(ckpt["sampler"]["draws"], 24);
  EXPECT_EQ(ckpt["trained_on"].size(), 3u);
  EXPECT_EQ(ckpt["trained_on"][2]["name"], "coco");
  // Evaluating a real-data run needs the Karpathy protocols, not built yet: a clear refusal.
  const auto e = run_mmt("eval --run " + dir + "run");
  EXPECT_EQ(e.status, 2);
  EXPECT_NE(e.err.find("trained on real datasets"), std::string::npos) << e.err;
}

}  // namespace
