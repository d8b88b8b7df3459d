/* Evaluation during training, best weights, fine-tuning and the eval modes through the real
 * binary: held-out RSUM logged every N steps with the best weights kept and evaluable with
 * --best; a fine-tuned run's results are labelled fine-tuned (its pretrained parent's zero-shot);
 * `rerank` with k >= every candidate gives exact's metrics, a first stage read from a .npy is
 * used as given, and `dual` writes its matrix; non-finite steps are skipped, logged and counted,
 * and too many in a row stop the run. */
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmt::cli_test;

const std::string kSmall =
    " --set train.batch_size=32 --set train.log_every=5 --set train.checkpoint_every=0 --set model.num_layers=2"
    " --set data.synth.num_train_images=600 --set data.synth.num_test_images=20 --set data.synth.max_objects=2";

std::string pretrain(const std::string& name, int steps, const std::string& extra = "") {
  const std::string dir = own(name);
  fs::remove_all(dir);
  const auto r = run_mmt("train --config " + std::string(MMT_SOURCE_DIR) + "/configs/demo.json --out " + dir + kSmall +
                         " --set train.steps=" + std::to_string(steps) + extra);
  EXPECT_EQ(r.status, 0) << r.err;
  return dir;
}

json read_json(const std::string& path) { return json::parse(slurp(path)); }

TEST(TrainEval, HeldOutRsumIsLoggedAndTheBestWeightsKept) {
  const std::string dir =
      pretrain("run", 40, " --set train.eval_every=10 --set train.eval_max_images=12 --set eval.test_sets=easy");
  // Chosen on the world's validation scenes, never on a test set.
  EXPECT_NE(slurp(own("err.txt")).find("every 10 steps: retrieval on val (12 images x 60 captions"), std::string::npos)
      << slurp(own("err.txt"));
  EXPECT_EQ(read_json(dir + "/best/checkpoint.json")["best"]["set"].get<std::string>().rfind("val (12 images", 0), 0u);
  std::vector<std::pair<int64_t, double>> evals;
  std::ifstream in(dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    if (j.contains("eval")) evals.push_back({j["step"].get<int64_t>(), j["eval"]["rsum"].get<double>()});
  }
  ASSERT_EQ(evals.size(), 4u);
  int64_t best_step = 0;
  double best = -1;
  for (const auto& [step, rsum] : evals) {
    EXPECT_EQ(step % 10, 0);
    EXPECT_GE(rsum, 0);
    EXPECT_LE(rsum, 600);
    if (rsum > best) best = rsum, best_step = step;
  }
  const json side = read_json(dir + "/best/checkpoint.json");
  EXPECT_EQ(side["best"]["step"].get<int64_t>(), best_step);
  EXPECT_DOUBLE_EQ(side["best"]["rsum"].get<double>(), best);
  EXPECT_TRUE(fs::exists(dir + "/best/model.safetensors"));
  EXPECT_FALSE(fs::exists(dir + "/.tmp-best"));

  // mmt eval --best scores those weights into eval-best.*, the final ones stay in eval.*.
  const auto r = run_mmt("eval --run " + dir + " --best --set eval.test_sets=easy");
  ASSERT_EQ(r.status, 0) << r.err;
  const json e = read_json(dir + "/eval-best.json");
  EXPECT_EQ(e["step"].get<int64_t>(), best_step);
  EXPECT_NE(e["weights"].get<std::string>().find("best"), std::string::npos);
  EXPECT_EQ(e["label"], "zero-shot");
  EXPECT_TRUE(fs::exists(dir + "/eval-best-easy-scores.npy"));
  EXPECT_FALSE(fs::exists(dir + "/eval.json"));

  // No best weights without evaluation during training: a clear error.
  const std::string plain = pretrain("plain", 5);
  const auto none = run_mmt("eval --run " + plain + " --best");
  EXPECT_EQ(none.status, 2);
  EXPECT_NE(none.err.find("train.eval_every"), std::string::npos) << none.err;
}

// A run that diverges at once (learning rate 1e30 from step 0, no clipping) into `dir`.
Result diverging_run(const std::string& dir, const std::string& settings) {
  fs::remove_all(dir);
  return run_mmt("train --config " + std::string(MMT_SOURCE_DIR) + "/configs/demo.json --out " + dir + kSmall +
                 " --set train.lr=1e30 --set train.warmup_steps=0 --set train.grad_clip=0" + settings);
}

// A diverging run (an absurd learning rate) skips its non-finite steps and stops after
// train.max_bad_steps of them in a row, naming the step and the losses.
TEST(TrainEval, NonFiniteLossesStopTheRunAfterMaxBadSteps) {
  const auto r = diverging_run(own("nan"), " --set train.steps=20 --set train.max_bad_steps=3");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("3 non-finite steps in a row"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("training stopped at step"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nan"), std::string::npos) << r.err;
}

// Skipped steps below the limit: each is named in the log as it happens (which value was not
// finite), counted per logging interval in metrics.jsonl and in total in checkpoint.json.
TEST(TrainEval, SkippedStepsAreLoggedAndCounted) {
  const std::string dir = own("skips");
  const auto r = diverging_run(dir, " --set train.steps=8 --set train.log_every=4 --set train.max_bad_steps=100");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string said = r.out + r.err;
  EXPECT_NE(said.find("mmt train: step 1 skipped (no update): non-finite "), std::string::npos) << said;
  int64_t logged = 0, records = 0;
  std::ifstream in(dir + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    const json rec = json::parse(line);
    ++records;
    logged += rec.value("skipped_steps", int64_t{0});
  }
  EXPECT_EQ(records, 2);
  const int64_t total = read_json(dir + "/checkpoint.json").at("skipped_steps").get<int64_t>();
  EXPECT_GE(total, 6);  // the first update (lr 1e30) ruins the weights: the later steps are all skipped
  EXPECT_EQ(logged, total);
}

TEST(TrainEval, FineTunedRunsAreLabelledFineTuned) {
  const std::string pre = pretrain("pre", 30);
  const std::string data = scratch("data");
  auto r = run_mmt("data synth --out " + data + " --splits train,easy --set data.synth.num_train_images=200"
                   " --set data.synth.num_test_images=20 --set data.synth.max_objects=2");
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string ft = own("ft");
  fs::remove_all(ft);
  r = run_mmt("finetune --run " + pre + " --karpathy " + data + "train/dataset_synth.json --features " + data +
              "train/regions.feat --out " + ft + " --set train.steps=12 --set train.batch_size=16 --set train.log_every=4");
  ASSERT_EQ(r.status, 0) << r.err;
  const json cfg = read_json(ft + "/config.json");
  EXPECT_EQ(cfg["train"]["stage"], "finetune");
  EXPECT_EQ(cfg["train"]["mlm_weight"].get<double>(), 0.0);
  EXPECT_EQ(cfg["train"]["itm_negatives"], "hard");
  const json side = read_json(ft + "/checkpoint.json");
  ASSERT_TRUE(side["fine_tuned_on"].is_array());
  ASSERT_EQ(side["fine_tuned_on"].size(), 1u);
  EXPECT_EQ(side["fine_tuned_on"][0]["format"], "karpathy");
  EXPECT_EQ(side["pretrained_from"], pre);
  EXPECT_EQ(side["trained_on"], read_json(pre + "/checkpoint.json")["trained_on"]);
  EXPECT_NE(r.err.find("initialised from " + pre), std::string::npos) << r.err;

  const std::string protocol = " --protocol test --karpathy " + data + "easy/dataset_synth.json --features " + data +
                               "easy/regions.feat";
  r = run_mmt("eval --run " + ft + protocol);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_json(ft + "/eval-test.json")["label"], "fine-tuned");
  r = run_mmt("eval --run " + pre + protocol);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_json(pre + "/eval-test.json")["label"], "zero-shot");
  // --set may not change what the run was trained with (here: how its captions are tokenized).
  r = run_mmt("eval --run " + pre + protocol + " --set data.cased=true");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("may change only eval.*, runtime.*"), std::string::npos) << r.err;
  // Nor what a resumed training run may change: it would mean nothing here.
  r = run_mmt("eval --run " + pre + protocol + " --set train.steps=5");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("may change only eval.*, runtime.*"), std::string::npos) << r.err;

  // More synthetic test images than training kept out of its data: they could be training scenes.
  r = run_mmt("eval --run " + pre + " --set data.synth.num_test_images=6000");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("could include scenes it trained on"), std::string::npos) << r.err;

  // A run that is not finished cannot be fine-tuned.
  r = run_mmt("finetune --run " + own("nothing") + " --karpathy " + data + "train/dataset_synth.json --out " + own("ft2"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("not a finished run"), std::string::npos) << r.err;
}

TEST(TrainEval, RerankOfEveryCandidateEqualsExactAndFirstStagesAreRead) {
  // A stack with a cross-modal layer above a unimodal one, so exact, dual and rerank all differ.
  const std::string dir = pretrain("run", 20, " --set model.layers=single_modality,merged --set eval.test_sets=easy");
  auto metrics = [&](const std::string& file) {
    const json j = read_json(dir + "/" + file)["test_sets"]["easy"];
    return std::vector<double>{j["image_retrieval"]["r1"], j["image_retrieval"]["r5"], j["image_retrieval"]["mean_rank"],
                               j["text_retrieval"]["r1"], j["text_retrieval"]["r5"], j["text_retrieval"]["mean_rank"]};
  };
  auto r = run_mmt("eval --run " + dir);
  ASSERT_EQ(r.status, 0) << r.err;
  const auto exact = metrics("eval.json");
  fs::copy_file(dir + "/eval-easy-scores.npy", own("exact.npy"), fs::copy_options::overwrite_existing);

  r = run_mmt("eval --run " + dir + " --set eval.mode=rerank --set eval.rerank_k=1000");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto all = metrics("eval.json");
  for (size_t k = 0; k < exact.size(); ++k) EXPECT_NEAR(all[k], exact[k], 1e-9) << k;
  EXPECT_EQ(read_json(dir + "/eval.json")["test_sets"]["easy"]["itm_pairs"].get<int64_t>(), 20 * 100);

  // The exact matrix as the first stage: rerank with any k keeps exact's ranking.
  r = run_mmt("eval --run " + dir + " --set eval.mode=rerank --set eval.rerank_k=3 --set eval.first_stage=" + own("exact.npy"));
  ASSERT_EQ(r.status, 0) << r.err;
  const auto staged = metrics("eval.json");
  for (size_t k : {0, 1, 3, 4}) EXPECT_NEAR(staged[k], exact[k], 1e-9) << k;
  EXPECT_NE(slurp(dir + "/eval.md").find("rerank: top 3"), std::string::npos);
  EXPECT_TRUE(fs::exists(dir + "/eval-easy-scores-i2t.npy"));

  // dual: cheap, and says what it compared.
  r = run_mmt("eval --run " + dir + " --set eval.mode=dual");
  ASSERT_EQ(r.status, 0) << r.err;
  const json dual = read_json(dir + "/eval.json")["test_sets"]["easy"];
  EXPECT_EQ(dual["mode"], "dual");
  EXPECT_NE(dual["scores"].get<std::string>().find("after layer 1"), std::string::npos) << dual["scores"];
  EXPECT_EQ(dual["itm_pairs"].get<int64_t>(), 0);

  // A first stage of the wrong shape is refused, naming the file.
  std::ofstream(own("bad.npy")) << "not numpy";
  r = run_mmt("eval --run " + dir + " --set eval.mode=rerank --set eval.first_stage=" + own("bad.npy"));
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("bad.npy"), std::string::npos) << r.err;
}

}  // namespace

// runtime.recompute_layers reaches the model (the run says so) and trains what the plain graph
// trains: with dropout, the logged losses of the two runs agree (on this CPU bit for bit).
TEST(TrainEval, RecomputedLayersTrainAsThePlainGraph) {
  const std::string plain = pretrain("rc-plain", 10, " --set model.dropout=0.1");
  const std::string recomputed = pretrain("rc-on", 10, " --set model.dropout=0.1 --set runtime.recompute_layers=true");
  EXPECT_EQ(slurp(plain + "/train.log").find("recompute_layers"), std::string::npos);
  EXPECT_NE(slurp(recomputed + "/train.log").find("runtime.recompute_layers: each layer keeps its inputs"),
            std::string::npos);
  std::ifstream a(plain + "/metrics.jsonl"), b(recomputed + "/metrics.jsonl");
  int records = 0;
  for (std::string la, lb; std::getline(a, la) && std::getline(b, lb); ++records) {
    const json ja = json::parse(la), jb = json::parse(lb);
    for (const char* key : {"loss", "mlm", "itm", "grad_norm"})
      EXPECT_NEAR(ja.at(key).get<double>(), jb.at(key).get<double>(), 1e-5 * std::abs(ja.at(key).get<double>()))
          << key << " at step " << ja.at("step");
  }
  EXPECT_EQ(records, 2);
}
