/* End to end through the real `mmt` binary: train on a small synthetic world, evaluate,
 * check the loss falls and retrieval beats chance; and bad input fails with clear messages. */
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_util.h"
#include "mmt/io/npy.h"

namespace {

using nlohmann::json;
using namespace mmt::cli_test;

TEST(Cli, TrainThenEvalBeatsChanceByFiveTimes) {
  const std::string run = ::testing::TempDir() + "e2e_run";
  std::system(("rm -rf " + run).c_str());
  const std::string config = std::string(MMT_SOURCE_DIR) + "/tests/data/e2e.json";
  const auto train = run_mmt("train --config " + config + " --out " + run);
  ASSERT_EQ(train.status, 0) << train.err;
  // The closing line: throughput in examples and in model FLOPs (the main pass is all there is:
  // no share is printed).
  EXPECT_NE(train.err.find(" ex/s, "), std::string::npos) << train.err;
  EXPECT_NE(train.err.find("GFLOP/s, "), std::string::npos) << train.err;
  EXPECT_EQ(train.err.find("main pass "), std::string::npos) << train.err;
  EXPECT_NE(train.err.find("; peak memory "), std::string::npos) << train.err;
  // Peak resident memory: libtorch alone takes more than 50 MB; the tiny model far less than 8 GB.
  const double peak = json::parse(slurp(run + "/checkpoint.json")).at("peak_rss_mb").get<double>();
  EXPECT_GT(peak, 50);
  EXPECT_LT(peak, 8192);

  // The loss falls: the last logged interval is well below the first.
  std::ifstream metrics(run + "/metrics.jsonl");
  std::vector<json> recs;
  for (std::string line; std::getline(metrics, line);) recs.push_back(json::parse(line));
  ASSERT_GE(recs.size(), 4u);
  EXPECT_LT(recs.back()["loss"].get<double>(), 0.7 * recs.front()["loss"].get<double>());
  EXPECT_LT(recs.back()["itm"].get<double>(), 0.6);  // ln 2 = 0.693 is chance
  for (const char* f : {"/config.json", "/vocab.txt", "/model.safetensors", "/checkpoint.json"})
    EXPECT_TRUE(std::ifstream(run + f).good()) << f;

  const auto eval = run_mmt("eval --run " + run);
  ASSERT_EQ(eval.status, 0) << eval.err;
  EXPECT_NE(eval.out.find("| **model**"), std::string::npos) << eval.out;
  EXPECT_NE(eval.out.find("| chance"), std::string::npos) << eval.out;
  const json result = json::parse(slurp(run + "/eval.json"));
  EXPECT_EQ(result["mode"], "exact");
  EXPECT_EQ(result["label"], "zero-shot");
  EXPECT_GT(result.at("peak_rss_mb").get<double>(), 50);
  const json& easy = result["test_sets"]["easy"];
  for (const char* k : {"image_retrieval", "text_retrieval", "num_images", "num_captions", "mode", "wall_time_s"})
    EXPECT_TRUE(easy.contains(k)) << k;
  for (const char* k : {"r1", "r5", "r10", "median_rank"}) EXPECT_TRUE(easy["image_retrieval"].contains(k)) << k;
  // eval.pair_batch = 0, recorded as what it resolved to: 64 pairs a pass on a CPU, 2048 on CUDA
  EXPECT_EQ(easy.at("pair_batch"), easy.at("device") == "cpu" ? 64 : 2048) << easy.dump();
  const double r1 = easy["image_retrieval"]["r1"].get<double>();
  const double chance = easy["ceilings"]["chance"]["image_retrieval"]["r1"].get<double>();
  EXPECT_NEAR(chance, 100.0 / easy["num_images"].get<double>(), 1e-9);
  EXPECT_GE(r1, 5 * chance) << "image R@1 " << r1 << " vs chance " << chance;
  EXPECT_LE(r1, easy["ceilings"]["perfect"]["image_retrieval"]["r1"].get<double>() + 1e-9);
  // true@1 counts every image the caption is true of at the top: never below R@1 (its own image is
  // true), here above chance's share too; each missed caption says whether the image found is true.
  const json& t1 = easy["true_at_1"];
  EXPECT_GE(t1["model"].get<double>(), r1 - 1e-9) << t1.dump();
  EXPECT_GT(t1["model"].get<double>(), 3 * t1["chance"].get<double>()) << t1.dump();
  EXPECT_LE(t1["interval"][0].get<double>(), t1["model"].get<double>()) << t1.dump();  // the test set's luck
  EXPECT_GE(t1["interval"][1].get<double>(), t1["model"].get<double>()) << t1.dump();
  EXPECT_LT(t1["interval"][0].get<double>(), t1["interval"][1].get<double>()) << t1.dump();
  EXPECT_NE(eval.out.find("easy, true@1 (the top image is one the caption is true of"), std::string::npos) << eval.out;
  for (const json& m : easy["missed_at_r1"]) EXPECT_TRUE(m["found_true"].is_boolean()) << m.dump();

  // mmt retrieve with one of the test set's captions (a caption eval.json lists as missed at
  // R@1): the same scores as eval's matrix, its image at the rank eval found, the list in score
  // order with the caption's truth per image; a caption of words the run never saw is flagged.
  const json& miss = easy["missed_at_r1"].at(0);
  const auto ret = run_mmt("retrieve --run " + run + " \"" + miss["caption"].get<std::string>() +
                           "\" \"a zebra\" --top 3 --json " + own("retrieve.json"));
  ASSERT_EQ(ret.status, 0) << ret.err;
  const json rj = json::parse(slurp(own("retrieve.json")));
  ASSERT_EQ(rj["queries"].size(), 2u);
  const json& q = rj["queries"][0];
  EXPECT_EQ(rj["images"]["count"], easy["num_images"]);
  const mmt::NpyArray npy = mmt::load_npy(run + "/" + easy["scores_files"][0].get<std::string>());
  const std::vector<float> scores = npy.to_float("scores");
  const int64_t ni = npy.shape[1], row = miss["caption_index"].get<int64_t>();
  ASSERT_EQ(q["top"].size(), 3u) << q.dump();
  for (size_t k = 0; k < 3; ++k) {
    const json& hit = q["top"][k];
    const int64_t image = std::stoll(hit["image"].get<std::string>());
    EXPECT_NEAR(hit["score"].get<double>(), scores[row * ni + image], 1e-4) << hit.dump();
    if (k > 0) EXPECT_LE(hit["score"].get<double>(), q["top"][k - 1]["score"].get<double>());
    EXPECT_EQ(hit["rank"], k + 1);
    EXPECT_TRUE(hit.contains("caption_true")) << hit.dump();
  }
  bool found = false;
  for (const json& o : q["in_set"]["images"])
    if (o["image"] == std::to_string(miss["image"].get<int64_t>())) {
      found = true;  // eval's rank counts ties as half above: between the strict rank and it + ties
      EXPECT_LE(o["rank"].get<double>(), miss["rank"].get<double>() + 1e-9) << o.dump() << miss.dump();
      EXPECT_GE(o["rank"].get<double>() + o["ties"].get<double>(), miss["rank"].get<double>() - 1e-9) << o.dump();
    }
  EXPECT_TRUE(found) << q.dump();
  EXPECT_GE(q["true_of"].get<int64_t>(), 1);  // its own image at least
  // The best-ranked image the caption is true of: its own, or one listed above it.
  int64_t first_true = miss["rank"].get<int64_t>() + 100;
  for (const json& hit : q["top"])
    if (hit["caption_true"].get<bool>()) first_true = std::min(first_true, hit["rank"].get<int64_t>());
  for (const json& o : q["in_set"]["images"]) first_true = std::min(first_true, o["rank"].get<int64_t>());
  EXPECT_EQ(q["first_true_rank"].get<int64_t>(), first_true) << q.dump();
  EXPECT_EQ(q["unknown"].size(), 0u);
  EXPECT_EQ(rj["queries"][1]["unknown"], json::array({"zebra"}));
  EXPECT_FALSE(rj["queries"][1].contains("in_set"));
  EXPECT_FALSE(rj["queries"][1].contains("true_of"));  // not in the grammar: not judged
  EXPECT_NE(ret.out.find("not in the synthetic grammar"), std::string::npos) << ret.out;
  // A caption of the grammar the set may not hold is judged all the same.
  const auto free = run_mmt("retrieve --run " + run + " \"A red circle at the top.\" --top 50 --json " + own("free.json"));
  ASSERT_EQ(free.status, 0) << free.err;
  const json fq = json::parse(slurp(own("free.json")))["queries"][0];
  ASSERT_TRUE(fq.contains("true_of")) << fq.dump();
  int64_t listed_true = 0;
  for (const json& hit : fq["top"]) listed_true += hit["caption_true"].get<bool>();
  EXPECT_EQ(listed_true, fq["true_of"].get<int64_t>()) << fq.dump();  // all 50 images listed
  EXPECT_NE(ret.err.find("lacks zebra"), std::string::npos) << ret.err;
  EXPECT_NE(ret.out.find("| rank | score | image | the scene | caption true of it |"), std::string::npos) << ret.out;
  EXPECT_NE(ret.out.find(" (its own) | "), std::string::npos) << ret.out;  // missed at R@1: listed below the top 3 or in it
  // The other way: the missed caption's image against the set's distinct captions. Its own
  // captions are marked and true of it, their scores are eval's (same column of the matrix), and
  // the top caption scores at least as high as each of them.
  const std::string image = std::to_string(miss["image"].get<int64_t>());
  const auto by_image = run_mmt("retrieve --run " + run + " --image " + image + " --json " + own("by_image.json"));
  ASSERT_EQ(by_image.status, 0) << by_image.err;
  const json iq = json::parse(slurp(own("by_image.json")))["image_queries"].at(0);
  EXPECT_EQ(iq["image"], image);
  ASSERT_EQ(iq["top"].size(), 5u) << iq.dump();
  const double best = iq["top"][0]["score"].get<double>();
  bool missed_listed = false;
  for (const json& o : iq["own"]) {
    missed_listed |= o["caption"] == miss["caption"];
    EXPECT_GE(o["rank"].get<int64_t>(), 1);
  }
  EXPECT_TRUE(missed_listed) << iq.dump();
  for (const json& hit : iq["top"]) {
    EXPECT_LE(hit["score"].get<double>(), best + 1e-6);
    if (hit["own"].get<bool>()) EXPECT_TRUE(hit["true"].get<bool>()) << hit.dump();
  }
  // Eval's column for the image: the missed caption's score there is the one retrieve ranks, and
  // its rank is below every listed caption scored clearly higher.
  for (const json& o : iq["own"])
    if (o["caption"] == miss["caption"]) {
      EXPECT_NEAR(o["score"].get<double>(), scores[row * ni + miss["image"].get<int64_t>()], 1e-4) << o.dump();
      int64_t higher = 0;
      for (const json& hit : iq["top"]) higher += hit["score"].get<double>() > o["score"].get<double>() + 1e-5;
      EXPECT_GT(o["rank"].get<int64_t>(), higher) << o.dump() << iq.dump();
    }
  EXPECT_GE(iq["true_captions"].get<int64_t>(), static_cast<int64_t>(iq["own"].size()));
  const auto bad_image = run_mmt("retrieve --run " + run + " --image 999");
  EXPECT_EQ(bad_image.status, 2);
  EXPECT_NE(bad_image.err.find("an index from 0 to 49"), std::string::npos) << bad_image.err;

  const auto no_set = run_mmt("retrieve --run " + run + " \"a cross\" --test-set hard");
  EXPECT_EQ(no_set.status, 2);
  EXPECT_NE(no_set.err.find("easy"), std::string::npos) << no_set.err;  // the valid names
  EXPECT_EQ(run_mmt("retrieve --run " + run).status, 2);  // nothing to search for
  // A caption after --set is taken as an override: the error says where captions go.
  const auto late = run_mmt("retrieve --run " + run + " --set eval.mode=exact \"a cross\"");
  EXPECT_EQ(late.status, 2);
  EXPECT_NE(late.err.find("'a cross' is not one: write the captions before --set"), std::string::npos) << late.err;

  // Evaluation may change the test set size, not the model.
  const auto bad = run_mmt("eval --run " + run + " --set model.hidden=96");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("fixed by the trained run"), std::string::npos) << bad.err;
  // A finished run is not overwritten.
  const auto again = run_mmt("train --config " + config + " --out " + run);
  EXPECT_EQ(again.status, 2);
  EXPECT_NE(again.err.find("already holds a run"), std::string::npos) << again.err;
}

TEST(Cli, BadInputFailsWithMessagesThatListTheValidChoices) {
  auto r = run_mmt("config dump --set model.attention=mergd");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("valid: merged, single_modality, coattention"), std::string::npos) << r.err;
  r = run_mmt("config dump --set model.preset=huge");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("valid: tiny, base"), std::string::npos) << r.err;
  r = run_mmt("config dump --set train.stepz=3");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("unknown config key 'train.stepz'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("steps, batch_size"), std::string::npos) << r.err;
  r = run_mmt("train --config /definitely/missing.json --out /tmp/never");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("/definitely/missing.json"), std::string::npos) << r.err;
  r = run_mmt("eval --run /definitely/missing_run");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("missing_run"), std::string::npos) << r.err;
}

TEST(Cli, HelpOnEveryLevel) {
  for (const char* cmd : {"--help", "train --help", "eval --help", "retrieve --help", "data --help", "data synth --help",
                          "config --help", "config dump --help"}) {
    const auto r = run_mmt(cmd);
    EXPECT_EQ(r.status, 0) << cmd;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << cmd;
  }
}

TEST(Cli, ConfigDumpIsLoadable) {
  const std::string path = ::testing::TempDir() + "dumped.json";
  ASSERT_EQ(std::system((std::string(MMT_BINARY) + " config dump --set train.steps=5 > " + path).c_str()), 0);
  const auto r = run_mmt("config dump --plain --config " + path);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json::parse(r.out)["train"]["steps"], 5);
}

TEST(Cli, ModelSummaryCountsTheConfigsImagePositions) {
  // The FLOP count's image positions follow the config's image input unless --image-tokens says.
  auto r = run_mmt("model summary --set model.image_input=patches");  // 64 px renders, 8 px patches
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("20 text + 65 image tokens"), std::string::npos) << r.out;
  r = run_mmt("model summary --set model.image_input=patches --text-tokens 12 --image-tokens 37");
  EXPECT_NE(r.out.find("12 text + 37 image tokens"), std::string::npos) << r.out;
  r = run_mmt("model summary --set data.synth.max_objects=3");
  EXPECT_NE(r.out.find("20 text + 4 image tokens"), std::string::npos) << r.out;
  // A paper config before its data is there (run from an empty folder: its relative data/ paths
  // lead nowhere): the paper's sizes, said to be assumed, each with the file it could not read.
  const std::string paper = std::string(MMT_SOURCE_DIR) + "/configs/paper/data_mscoco.json", empty = "cd " + scratch("empty") + " &&";
  r = run_mmt("model summary --config " + paper, empty);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("**total**"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("note: region features 2048-d, 1601 classes assumed (data/features/coco.feat"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("note: vocabulary of 30522 pieces assumed (data/spm/paper-unigram-32k.model"), std::string::npos) << r.out;
  // Training still needs them.
  r = run_mmt("train --config " + paper + " --out run", empty);
  EXPECT_EQ(r.status, 2) << r.err;
}

TEST(Cli, DataSynthWritesKarpathyStyleSplits) {
  const std::string out = ::testing::TempDir() + "synth_out";
  std::system(("rm -rf " + out).c_str());
  const auto r = run_mmt("data synth --out " + out + " --set data.synth.num_test_images=20 --set data.synth.num_train_images=50");
  ASSERT_EQ(r.status, 0) << r.err;
  const json ds = json::parse(slurp(out + "/binding/dataset_synth.json"));
  ASSERT_EQ(ds["images"].size(), 20u);
  EXPECT_EQ(ds["images"][0]["sentences"].size(), 5u);
  EXPECT_EQ(ds["images"][0]["split"], "test");
  EXPECT_TRUE(std::ifstream(out + "/binding/images/000019.png").good());
  EXPECT_TRUE(std::ifstream(out + "/easy/region_features.npy").good());
  EXPECT_TRUE(json::parse(slurp(out + "/easy/ceilings.json")).contains("perfect"));
}

}  // namespace

namespace {

// mmt embed on a dual encoder: the set's own captions and its images as vectors whose
// scale * dot + bias is the score matrix mmt eval ranked with; the captions' images as eval's map;
// captions of one's own as rows of their own.
TEST(Cli, EmbedWritesTheVectorsBehindTheDualEncodersScores) {
  const std::string run = own("dual"), out = own("emb");
  std::filesystem::remove_all(run);
  auto r = run_mmt("train --config " + std::string(MMT_SOURCE_DIR) + "/configs/demo.json --out " + run +
                   " --set train.steps=10 train.batch_size=16 train.checkpoint_every=0 model.num_layers=1"
                   " data.synth.num_train_images=300 data.synth.num_test_images=20 data.synth.max_objects=2"
                   " model.kind=dual_encoder model.attention=single_modality model.dual_score=dot model.embed_dim=32"
                   " train.itm_weight=0 train.mlm_weight=0 train.dual_contrastive_weight=1 train.itm_negative_prob=0"
                   " train.mrm_kl_weight=0 eval.test_sets=easy");
  ASSERT_EQ(r.status, 0) << r.err;
  r = run_mmt("eval --run " + run);
  ASSERT_EQ(r.status, 0) << r.err;
  // A dot-scored dual encoder has no ITM head: eval.md says what it ranked by.
  EXPECT_NE(r.out.find("exact scoring by the dual encoder's scaled cosine"), std::string::npos) << r.out;
  r = run_mmt("embed --run " + run + " --out " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  const json meta = json::parse(slurp(out + ".json"));
  const json easy = json::parse(slurp(run + "/eval.json"))["test_sets"]["easy"];
  // No pair pass ran (one matrix product scored every pair): no pass size is recorded.
  EXPECT_FALSE(easy.contains("pair_batch")) << easy.dump();
  const int64_t nc = easy["num_captions"], ni = easy["num_images"], dim = meta["dim"];
  EXPECT_EQ(dim, 32);
  EXPECT_TRUE(meta["the_models_retrieval_scores"].get<bool>());
  const auto text = mmt::load_npy(out + "-text.npy"), images = mmt::load_npy(out + "-images.npy");
  ASSERT_EQ(text.shape, (std::vector<int64_t>{nc, dim}));
  ASSERT_EQ(images.shape, (std::vector<int64_t>{ni, dim}));
  const std::string scores_file = run + "/" + easy["scores_files"][0].get<std::string>();
  const auto scores = mmt::load_npy(scores_file).to_float(scores_file);
  const auto t = text.to_float("text"), im = images.to_float("images");
  const double scale = meta["scale"], bias = meta["bias"];
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t i = 0; i < ni; ++i) {
      double dot = 0;
      for (int64_t k = 0; k < dim; ++k) dot += static_cast<double>(t[c * dim + k]) * im[i * dim + k];
      ASSERT_NEAR(scale * dot + bias, scores[c * ni + i], 1e-4) << c << "," << i;
    }
  const std::string map_file = run + "/" + easy["caption_image_file"].get<std::string>();
  EXPECT_EQ(meta["caption_image"].get<std::vector<int64_t>>(), mmt::load_npy(map_file).to_int64(map_file));
  // Captions of one's own: one row each, the set's first caption giving the set's first row.
  const std::string first = meta["captions"][0];
  r = run_mmt("embed --run " + run + " \"" + first + "\" \"a red star\" --out " + out + "2");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto mine = mmt::load_npy(out + "2-text.npy");
  ASSERT_EQ(mine.shape, (std::vector<int64_t>{2, dim}));
  const auto m = mine.to_float("mine");
  for (int64_t k = 0; k < dim; ++k) EXPECT_NEAR(m[k], t[k], 1e-5);  // batched with other captions: rounding
  EXPECT_FALSE(json::parse(slurp(out + "2.json")).contains("caption_image"));
  r = run_mmt("embed --run " + run);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--out is required"), std::string::npos) << r.err;
}

// A transformer with the align head: the log shows its loss, eval.mode=dual ranks by the head and
// says so, and rerank takes it as its first stage without the warning an untrained one gets.
TEST(Cli, AlignHeadIsTrainedAndIsTheDualFirstStage) {
  const std::string run = own("align");
  std::filesystem::remove_all(run);
  auto r = run_mmt("train --config " + std::string(MMT_SOURCE_DIR) + "/configs/demo.json --out " + run +
                   " --set train.steps=10 train.batch_size=16 train.checkpoint_every=0"
                   " model.layers=single_modality,merged model.align=true model.embed_dim=32 train.align_weight=1"
                   " train.itm_negatives=hard data.synth.num_train_images=300 data.synth.num_test_images=20"
                   " data.synth.max_objects=2 train.mrm_kl_weight=0 eval.test_sets=easy");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find(" align_acc "), std::string::npos) << r.err;
  const std::string metrics = slurp(run + "/metrics.jsonl");
  const json first = json::parse(metrics.substr(0, metrics.find('\n')));
  EXPECT_GT(first.at("align").get<double>(), 0.0) << first.dump();
  r = run_mmt("eval --run " + run + " --set eval.mode=dual");
  ASSERT_EQ(r.status, 0) << r.err;
  const json dual = json::parse(slurp(run + "/eval.json"))["test_sets"]["easy"];
  EXPECT_NE(dual.at("scores").get<std::string>().find("align head"), std::string::npos) << dual.dump();
  r = run_mmt("eval --run " + run + " --set eval.mode=rerank eval.rerank_k=4");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err.find("nothing trained those vectors"), std::string::npos) << r.err;
  const json rerank = json::parse(slurp(run + "/eval.json"))["test_sets"]["easy"];
  EXPECT_NE(rerank.at("first_stage").get<std::string>().find("align head"), std::string::npos) << rerank.dump();
}

}  // namespace
