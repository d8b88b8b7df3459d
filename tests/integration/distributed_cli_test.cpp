/* Data-parallel training and evaluation through the real binary (docs/distributed.md): 2
 * processes with Gloo reach the parameters of 1 process on the same global batch; a rank that
 * dies makes the other fail with a clear error within the timeout, and the job resumes from its
 * last checkpoint; distributed exact evaluation equals one process's; torchrun launches it. */
#include <gtest/gtest.h>

#include "../common/free_port.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <map>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "mmt/io/npy.h"
#include "mmt/io/safetensors.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmt::cli_test;

// Small and deterministic: no dropout, so ranks and one process draw no different random numbers.
const std::string kRun =
    "train --config " + std::string(MMT_SOURCE_DIR) +
    "/configs/demo.json --set train.batch_size=16 --set train.log_every=2 --set model.num_layers=2"
    " --set data.synth.num_train_images=300 --set data.synth.num_test_images=20 --set data.synth.max_objects=2"
    " --set model.dropout=0 --set train.warmup_steps=2";

using mmt::test_net::free_port;

Result run_to(const std::string& cmd, const std::string& stem) {
  const std::string full = cmd + " >" + stem + ".out 2>" + stem + ".err";
  const int rc = std::system(full.c_str());
  const int status = WIFEXITED(rc) ? WEXITSTATUS(rc) : WIFSIGNALED(rc) ? 128 + WTERMSIG(rc) : -1;
  return {status, slurp(stem + ".out"), slurp(stem + ".err")};
}

// `mmt args` as `world` processes, as torchrun would start them (RANK, WORLD_SIZE, MASTER_*).
std::vector<Result> launch(int world, const std::string& args, const std::string& env = "",
                           const std::string& env_rank1 = "") {
  const int port = free_port();
  // Plain threads, not std::async: a future's shared state instantiates std::call_once, the
  // instantiation that crashed wheel builds once exported (now hidden: cmake/executable_exports.map).
  std::vector<Result> out(static_cast<size_t>(world));
  std::vector<std::thread> procs;
  for (int r = 0; r < world; ++r) {
    const std::string cmd = "RANK=" + std::to_string(r) + " WORLD_SIZE=" + std::to_string(world) + " LOCAL_RANK=" +
                            std::to_string(r) + " LOCAL_WORLD_SIZE=" + std::to_string(world) +
                            " MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) + " " + env + " " +
                            (r == 1 ? env_rank1 : "") + " " + MMT_BINARY + " " + args;
    procs.emplace_back([&out, r, cmd] { out[static_cast<size_t>(r)] = run_to(cmd, own("rank" + std::to_string(r))); });
  }
  for (auto& p : procs) p.join();
  return out;
}

// Every parameter of two runs agrees to a relative 1e-5 (L2 per tensor). Tensors whose gradient
// is mathematically zero (attention key biases: softmax ignores them) hold only rounding noise
// near 1e-10, so an absolute 1e-7 per element is allowed besides.
void expect_same_parameters(const std::string& a_run, const std::string& b_run) {
  const auto a = mmt::load_safetensors(a_run + "/model.safetensors");
  const auto b = mmt::load_safetensors(b_run + "/model.safetensors");
  ASSERT_EQ(a.size(), b.size());
  const std::map<std::string, torch::Tensor> by_name(b.begin(), b.end());
  double worst = 0;
  std::string worst_name;
  for (const auto& [name, ta] : a) {
    ASSERT_TRUE(by_name.count(name)) << name;
    const torch::Tensor tb = by_name.at(name);
    const double diff = (ta.to(torch::kFloat64) - tb.to(torch::kFloat64)).norm().template item<double>();
    const double allowed = 1e-5 * ta.to(torch::kFloat64).norm().template item<double>() + 1e-7 * std::sqrt(double(ta.numel()));
    if (diff / allowed > worst) worst = diff / allowed, worst_name = name;
  }
  // The margin, passing or not (in the test's output and its XML report): which case is next to
  // tip over on another CPU (align_queue did, on machine B: docs/performance.md).
  std::printf("[ margin   ] worst parameter %s at %.3f of the tolerance\n", worst_name.c_str(), worst);
  ::testing::Test::RecordProperty("worst_parameter_ratio", std::to_string(worst));
  EXPECT_LE(worst, 1.0) << worst_name << ": difference " << worst << " x the tolerance";
}

std::string ranks_err(const std::vector<Result>& r) {
  std::string s;
  for (size_t i = 0; i < r.size(); ++i) s += "--- rank " + std::to_string(i) + ":\n" + r[i].err;
  return s;
}

struct Case {
  const char* name;
  const char* settings;
};

class TwoProcesses : public ::testing::TestWithParam<Case> {};

TEST_P(TwoProcesses, ReachTheParametersOfOneProcess) {
  const std::string one = own("one"), two = own("two");
  fs::remove_all(one), fs::remove_all(two);
  const std::string args = kRun + " --set train.steps=6 --set train.checkpoint_every=0 " + GetParam().settings;
  const auto r1 = run_mmt(args + " --out " + one);
  ASSERT_EQ(r1.status, 0) << r1.err;
  const auto r2 = launch(2, args + " --out " + two);
  ASSERT_EQ(r2[0].status, 0) << ranks_err(r2);
  ASSERT_EQ(r2[1].status, 0) << ranks_err(r2);
  EXPECT_NE(r2[0].err.find("2 processes"), std::string::npos) << r2[0].err;
  const bool flat = std::string(GetParam().settings).find("dist_bucket_mb=0 ") != std::string::npos;
  EXPECT_NE(r2[0].err.find(flat ? "gradients summed in one all-reduce" : "buckets of up to"), std::string::npos) << r2[0].err;
  EXPECT_EQ(r2[1].err, "");  // rank 1 says nothing and writes nothing
  expect_same_parameters(one, two);
  // The logged losses are the global batch's: the same as one process's.
  auto last_loss = [](const std::string& run) {
    std::ifstream in(run + "/metrics.jsonl");
    double loss = NAN;
    for (std::string line; std::getline(in, line);)
      if (json::parse(line).contains("loss")) loss = json::parse(line)["loss"].get<double>();
    return loss;
  };
  EXPECT_NEAR(last_loss(one), last_loss(two), 1e-5);
  // Held-out retrieval during training (every rank scores its share): the same RSUM.
  auto rsums = [](const std::string& run) {
    std::ifstream in(run + "/metrics.jsonl");
    std::vector<double> r;
    for (std::string line; std::getline(in, line);)
      if (json::parse(line).contains("eval")) r.push_back(json::parse(line)["eval"]["rsum"].get<double>());
    return r;
  };
  if (std::string(GetParam().settings).find("eval_every") == std::string::npos) return;
  const auto a = rsums(one), b = rsums(two);
  ASSERT_EQ(a.size(), 2u);
  ASSERT_EQ(b.size(), 2u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 2.0) << "evaluation " << i;  // a near-tie may flip
  EXPECT_TRUE(fs::exists(two + "/best/model.safetensors"));
}

// Real datasets: each rank loads only its share of every global batch's draws; the mixture
// sampler's draws per dataset are those of one process.
TEST(Distributed, RealDataRanksShareTheSamplersDraws) {
  const std::string d1 = scratch("one"), d2 = scratch("two");
  const std::string c1 = real_mixture_config(d1, 6), c2 = real_mixture_config(d2, 6);
  const std::string set = " --set train.batch_size=8 --set model.dropout=0";
  const auto r1 = run_mmt("train --config " + c1 + set + " --out " + d1 + "run");
  ASSERT_EQ(r1.status, 0) << r1.err;
  const auto r2 = launch(2, "train --config " + c2 + set + " --out " + d2 + "run");
  ASSERT_EQ(r2[0].status, 0) << ranks_err(r2);
  ASSERT_EQ(r2[1].status, 0) << ranks_err(r2);
  const json s1 = json::parse(slurp(d1 + "run/checkpoint.json"))["sampler"];
  const json s2 = json::parse(slurp(d2 + "run/checkpoint.json"))["sampler"];
  EXPECT_EQ(s1["counts"], s2["counts"]);
  EXPECT_EQ(s1["draws"], s2["draws"]);
  EXPECT_EQ(s2["draws"].get<int64_t>(), 6 * 8);
}

INSTANTIATE_TEST_SUITE_P(
    Losses, TwoProcesses,
    ::testing::Values(
        // MLM + MRM (masked regions differ per row: counts are global) + ITM, 2 micro-batches per step.
        // Held-out retrieval every 3 steps.
        Case{"mlm_mrm_itm_accumulated",
             "--set train.mrm_kl_weight=1 --set train.mrm_regression_weight=1 --set train.grad_accum_steps=2 "
             "--set train.eval_every=3 --set train.eval_max_images=10 --set eval.test_sets=easy"},
        // The same with many small gradient buckets summed during the backward pass (the
        // default 4 MiB gives this 2-layer model 2), and with one all-reduce after it.
        Case{"mlm_mrm_itm_small_buckets",
             "--set runtime.dist_bucket_mb=0.02 --set train.mrm_kl_weight=1 --set train.mrm_regression_weight=1 "
             "--set train.grad_accum_steps=2"},
        Case{"mlm_mrm_itm_one_all_reduce",
             "--set runtime.dist_bucket_mb=0 --set train.mrm_kl_weight=1 --set train.mrm_regression_weight=1"},
        // Dual-encoder InfoNCE: negatives gathered from the other rank.
        Case{"dual_encoder_infonce",
             "--set model.kind=dual_encoder --set model.attention=single_modality --set model.dual_score=dot "
             "--set model.embed_dim=64 --set train.itm_weight=0 --set train.mlm_weight=0 "
             "--set train.dual_contrastive_weight=1 --set train.itm_negative_prob=0"},
        // The align head's InfoNCE below a merged layer, next to MLM and ITM: the same gather.
        Case{"align_mlm_itm",
             "--set model.layers=single_modality,merged --set model.align=true --set model.embed_dim=64 "
             "--set train.align_weight=1"},
        // With the momentum queue and distillation: every rank embeds its rows by the momentum model, the global
        // batch's embeddings are gathered, and every rank's queue holds the same entries. Adam's epsilon is
        // 1e-4 here: with the queue, each side's embeddings get gradient from one direction of the loss
        // only, and some bias elements' gradients nearly cancel; Adam divides them by |g| + eps, so at
        // the default 1e-6 their float rounding (which differs with the rows a pass holds) came to 1.8x
        // this test's tolerance on one machine (image_embed.box.bias, already after step 1; the worst
        // tensor 2.8x at eps 1e-8, 0.09x at 1e-4). A gradient error of any real size still shows at 1e-4.
        Case{"align_queue",
             "--set model.layers=single_modality,merged --set model.align=true --set model.embed_dim=64 "
             "--set train.align_weight=1 --set train.align_queue=40 --set train.align_momentum=0.9 --set train.align_distill=0.4 "
             "--set train.adam_eps=1e-4"}),
    [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

TEST(Distributed, ADeadRankFailsTheOtherWithinTheTimeoutAndTheJobResumes) {
  const std::string dir = own("run"), straight = own("straight");
  fs::remove_all(dir), fs::remove_all(straight);
  const std::string args = kRun + " --set train.steps=8 --set train.checkpoint_every=2 --set runtime.dist_timeout_s=20";
  // Rank 1 is killed (SIGKILL) after step 3; rank 0 has written the checkpoint of step 2.
  const auto start = std::chrono::steady_clock::now();
  const auto r = launch(2, args + " --out " + dir, "", "MMT_FAULT_KILL_AFTER_STEP=3 MMT_FAULT_KILL_RANK=1");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r[1].status, 128 + 9) << ranks_err(r);
  EXPECT_EQ(r[0].status, 2) << ranks_err(r);
  EXPECT_NE(r[0].err.find("rank 0 of 2"), std::string::npos) << r[0].err;
  EXPECT_NE(r[0].err.find("failed across processes"), std::string::npos) << r[0].err;
  EXPECT_NE(r[0].err.find("--resume"), std::string::npos) << r[0].err;
  EXPECT_LT(seconds, 60) << "rank 0 should fail within the 20 s timeout, not hang";
  ASSERT_TRUE(fs::exists(dir + "/checkpoints"));
  EXPECT_FALSE(fs::exists(dir + "/model.safetensors"));

  // Relaunched as it was, with --auto-resume (what torchrun --max_restarts or a requeued SLURM job
  // does), the job continues from step 2 and ends where an uninterrupted 2-process run ends.
  const auto resumed = launch(2, args + " --out " + dir + " --auto-resume");
  ASSERT_EQ(resumed[0].status, 0) << ranks_err(resumed);
  ASSERT_EQ(resumed[1].status, 0) << ranks_err(resumed);
  EXPECT_NE(resumed[0].err.find("resuming " + dir + " at step "), std::string::npos) << resumed[0].err;
  const auto whole = launch(2, args + " --out " + straight);
  ASSERT_EQ(whole[0].status, 0) << ranks_err(whole);
  expect_same_parameters(straight, dir);
}

// A rank that cannot build its batch (unreadable images, a broken store) stops the others at
// once, at that step, instead of leaving them to the rendezvous timeout.
TEST(Distributed, ARankWithoutItsBatchStopsEveryRankAtOnce) {
  const std::string dir = own("batch-error");
  fs::remove_all(dir);
  const auto start = std::chrono::steady_clock::now();
  const auto r = launch(2, kRun + " --set train.steps=8 --set runtime.dist_timeout_s=300 --out " + dir, "",
                        "MMT_FAULT_BATCH_ERROR_AT_STEP=3");
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r[1].status, 2) << ranks_err(r);
  EXPECT_NE(r[1].err.find("step 3: injected batch error"), std::string::npos) << r[1].err;
  EXPECT_EQ(r[0].status, 2) << ranks_err(r);
  EXPECT_NE(r[0].err.find("rank 0: stopping at step 3: 1 other rank(s) could not build their batch"), std::string::npos)
      << r[0].err;
  EXPECT_NE(r[0].err.find("--resume"), std::string::npos) << r[0].err;
  EXPECT_LT(seconds, 120) << "rank 0 should stop at once, not at the 300 s timeout";
}

TEST(Distributed, ExactEvaluationEqualsOneProcess) {
  const std::string run = own("run");
  fs::remove_all(run);
  // Two shapes and two colours: many test captions are identical.
  const auto t = run_mmt(kRun + " --set train.steps=4 --set train.checkpoint_every=0 --set data.synth.num_shapes=2"
                         " --set data.synth.num_colours=2 --out " + run);
  ASSERT_EQ(t.status, 0) << t.err;
  const auto one = run_mmt("eval --run " + run + " --set eval.test_sets=easy,binding");
  ASSERT_EQ(one.status, 0) << one.err;
  const json single = json::parse(slurp(run + "/eval.json"));
  std::map<std::string, std::vector<float>> scores;
  for (const char* s : {"easy", "binding"}) {
    const std::string path = run + "/eval-" + std::string(s) + "-scores.npy";
    scores[s] = mmt::load_npy(path).to_float(path);
    fs::remove(path);
  }
  fs::remove(run + "/eval.json");
  const auto two = launch(2, "eval --run " + run + " --set eval.test_sets=easy,binding");
  ASSERT_EQ(two[0].status, 0) << ranks_err(two);
  ASSERT_EQ(two[1].status, 0) << ranks_err(two);
  EXPECT_EQ(two[1].out, "");  // rank 0 reports
  const json dist = json::parse(slurp(run + "/eval.json"));
  int identical_pairs = 0;
  for (const char* s : {"easy", "binding"}) {
    EXPECT_EQ(dist["test_sets"][s]["processes"], 2);
    for (const char* dir : {"image_retrieval", "text_retrieval"})
      for (const char* k : {"r1", "r5", "r10", "median_rank", "mean_rank"})
        EXPECT_NEAR(dist["test_sets"][s][dir][k].get<double>(), single["test_sets"][s][dir][k].get<double>(), 1e-9)
            << s << " " << dir << " " << k;
    const std::string path = run + "/eval-" + std::string(s) + "-scores.npy";
    const auto got = mmt::load_npy(path).to_float(path);
    ASSERT_EQ(got.size(), scores[s].size());
    float worst = 0;
    for (size_t i = 0; i < got.size(); ++i) worst = std::max(worst, std::abs(got[i] - scores[s][i]));
    EXPECT_LE(worst, 1e-5) << s << ": the gathered score matrix differs from one process's";
    // Identical captions share a score row in one process (bitwise equal rows); the ranks split
    // distinct captions, so such rows stay bitwise equal however the captions fall.
    const size_t ni = got.size() / dist["test_sets"][s]["num_captions"].get<size_t>();
    auto row = [&](const std::vector<float>& m, size_t r) { return std::vector<float>(m.begin() + r * ni, m.begin() + (r + 1) * ni); };
    for (size_t a = 0; a * ni < got.size(); ++a)
      for (size_t b = a + 1; b * ni < got.size(); ++b)
        if (row(scores[s], a) == row(scores[s], b)) {
          ++identical_pairs;
          EXPECT_EQ(row(got, a), row(got, b)) << s << ": captions " << a << " and " << b;
        }
  }
  EXPECT_GT(identical_pairs, 0) << "no identical captions in the test sets: the check above tested nothing";
}

TEST(Distributed, TorchrunLaunchesTraining) {
  if (!fs::exists("/usr/bin/torchrun")) GTEST_SKIP() << "no torchrun (python3-torch) on this machine";
  const std::string dir = own("run"), logs = own("logs");
  fs::remove_all(dir), fs::remove_all(logs);
  // -r 1 -t 1 --log_dir: Debian 12's torchrun (torch 1.13 on Python 3.11) fails with its default
  // redirects (docs/distributed.md).
  const std::string cmd = "torchrun --no_python --nproc_per_node=2 --master_port=" + std::to_string(free_port()) +
                          " -r 1 -t 1 --log_dir " + logs + " " + MMT_BINARY + " " + kRun +
                          " --set train.steps=4 --set train.checkpoint_every=0 --out " + dir;
  const auto r = run_to(cmd, own("torchrun"));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("2 processes (rank 0 of 2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("torchrun"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(dir + "/model.safetensors"));
}

}  // namespace
