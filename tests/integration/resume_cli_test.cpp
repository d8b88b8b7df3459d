/* Resumable training through the real binary: 2N steps straight vs N steps, killed (SIGKILL),
 * resumed for N more - identical losses and weights on CPU; a SIGKILL while a checkpoint is being
 * written leaves the previous one loadable and the run still resumes to the same result; SIGTERM
 * writes a checkpoint and exits with 128 + 15; a real-data run resumes its sampler exactly. */
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "cli_util.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmt::cli_test;

int run(const std::string& args, const std::string& env = "") { return run_mmt(args, env).status; }

// The logged losses of a run: "step loss itm mlm" per line.
std::string losses(const std::string& dir) {
  std::ifstream in(dir + "/metrics.jsonl");
  std::string out;
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line);
    std::ostringstream s;
    s.precision(17);
    s << j["step"] << " " << j["loss"].get<double>() << " " << j["itm"].get<double>() << " " << j["mlm"].get<double>() << "\n";
    out += s.str();
  }
  return out;
}

const std::string kSmall =
    " --set train.steps=40 --set train.checkpoint_every=10 --set train.log_every=5 --set train.batch_size=32"
    " --set data.synth.num_train_images=1500 --set data.synth.num_test_images=20 --set model.dropout=0.1"
    " --set model.num_layers=2";

std::string fresh(const std::string& name) {
  const std::string dir = own(name);
  fs::remove_all(dir);
  return dir;
}

// --auto-resume: the same command relaunched continues the run its --out holds; a new folder
// starts one; a finished run is left as it is (exit 0); a folder holding a run of another
// config is refused.
TEST(Resume, AutoResumeContinuesTheSameCommandsRun) {
  const std::string straight = fresh("straight"), killed = fresh("killed");
  ASSERT_EQ(run("train --out " + straight + kSmall + " --auto-resume"), 0) << slurp(own("err.txt"));  // new: starts
  EXPECT_EQ(run("train --out " + killed + kSmall + " --auto-resume", "MMT_FAULT_KILL_AFTER_STEP=20"), 128 + 9);
  EXPECT_EQ(run("train --out " + killed + kSmall + " --set train.lr=0.5 --auto-resume"), 2);
  EXPECT_NE(slurp(own("err.txt")).find("holds a run with another config"), std::string::npos) << slurp(own("err.txt"));
  // Relaunched with other batch-building settings (the batches are the same): accepted.
  ASSERT_EQ(run("train --out " + killed + kSmall + " --set data.loader_threads=0 --set data.prefetch=2 --auto-resume"), 0)
      << slurp(own("err.txt"));
  EXPECT_NE(slurp(own("err.txt")).find("resuming " + killed + " at step 20"), std::string::npos);
  EXPECT_EQ(slurp(killed + "/model.safetensors"), slurp(straight + "/model.safetensors"));
  // Relaunched once more after it finished (a requeued job): nothing to do, and success.
  const std::string weights = slurp(killed + "/model.safetensors");
  ASSERT_EQ(run("train --out " + killed + kSmall + " --auto-resume"), 0) << slurp(own("err.txt"));
  EXPECT_NE(slurp(own("err.txt")).find("has finished its 40 steps; nothing to do"), std::string::npos) << slurp(own("err.txt"));
  EXPECT_EQ(slurp(killed + "/model.safetensors"), weights);
  EXPECT_EQ(run("train --out " + straight + kSmall), 2);  // without the flag a used folder is still refused
}

TEST(Resume, KilledAndResumedEqualsUninterrupted) {
  const std::string straight = fresh("straight"), killed = fresh("killed");
  ASSERT_EQ(run("train --out " + straight + kSmall), 0) << slurp(own("err.txt"));
  EXPECT_EQ(run("train --out " + killed + kSmall, "MMT_FAULT_KILL_AFTER_STEP=20"), 128 + 9);  // SIGKILL
  EXPECT_FALSE(fs::exists(killed + "/model.safetensors"));
  // Evaluating the stopped run says where it stopped and how to finish it.
  EXPECT_EQ(run("eval --run " + killed), 2);
  EXPECT_NE(slurp(own("err.txt")).find("newest checkpoint is step 20: finish it with mmt train --resume " + killed),
            std::string::npos) << slurp(own("err.txt"));
  ASSERT_EQ(run("train --resume " + killed), 0) << slurp(own("err.txt"));
  EXPECT_NE(slurp(own("err.txt")).find("resuming " + killed + " at step 20"), std::string::npos);
  EXPECT_EQ(losses(killed), losses(straight));
  EXPECT_EQ(slurp(killed + "/model.safetensors"), slurp(straight + "/model.safetensors"));  // bit for bit
  // Training time counts every session: elapsed_s never falls back at the resume, and
  // checkpoint.json's train_seconds covers both sessions.
  double elapsed = 0;
  std::ifstream metrics(killed + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    const double e = json::parse(line).at("elapsed_s").get<double>();
    EXPECT_GE(e, elapsed) << line;
    elapsed = e;
  }
  EXPECT_GE(json::parse(slurp(killed + "/checkpoint.json")).at("train_seconds").get<double>(), elapsed);
  // keep_checkpoints (2): only the newest remain.
  EXPECT_FALSE(fs::exists(killed + "/checkpoints/step-000000010"));
  EXPECT_TRUE(fs::exists(killed + "/checkpoints/step-000000030"));
  // A finished run refuses to resume unless asked for more steps; a fresh --out refuses an old run.
  EXPECT_EQ(run("train --resume " + killed), 2);
  EXPECT_NE(slurp(own("err.txt")).find("has finished its 40 steps"), std::string::npos) << slurp(own("err.txt"));
  EXPECT_EQ(run("train --out " + killed + kSmall), 2);
  EXPECT_NE(slurp(own("err.txt")).find("--resume"), std::string::npos);
  EXPECT_EQ(run("train --resume " + killed + " --set model.hidden=64"), 2);
  EXPECT_NE(slurp(own("err.txt")).find("may change only train.steps"), std::string::npos);
}

// The align loss's momentum model and queue (train.align_queue) are training state too: a run
// killed and resumed takes them from its checkpoint and ends where the uninterrupted one does.
TEST(Resume, AlignQueueRunResumesItsMomentumModelAndQueue) {
  const std::string straight = fresh("queue_straight"), killed = fresh("queue_killed");
  const std::string queue = kSmall + " --set model.layers=single_modality,merged --set model.align=true"
                                     " --set train.align_weight=1 --set train.align_queue=48";
  ASSERT_EQ(run("train --out " + straight + queue), 0) << slurp(own("err.txt"));
  EXPECT_EQ(run("train --out " + killed + queue, "MMT_FAULT_KILL_AFTER_STEP=20"), 128 + 9);
  ASSERT_EQ(run("train --resume " + killed), 0) << slurp(own("err.txt"));
  EXPECT_EQ(losses(killed), losses(straight));
  EXPECT_EQ(slurp(killed + "/model.safetensors"), slurp(straight + "/model.safetensors"));  // bit for bit
  // The checkpoint holds them beside the optimizer's moments.
  EXPECT_NE(slurp(killed + "/checkpoints/step-000000040/optimizer.safetensors").find("align_queue.momentum.text_proj.weight"),
            std::string::npos);
}

// A finished run trained longer: its last step was checkpointed (even with checkpoint_every = 0),
// so `--resume --set train.steps=M` continues from it; at a constant learning rate 20 steps, then
// 20 more, are the 40 steps of one run, bit for bit.
TEST(Resume, AFinishedRunTrainsLongerFromWhereItEnded) {
  const std::string straight = fresh("straight"), extended = fresh("extended");
  const std::string flat = kSmall + " --set train.schedule=constant --set train.warmup_steps=0 --set train.checkpoint_every=0";
  ASSERT_EQ(run("train --out " + straight + flat), 0) << slurp(own("err.txt"));
  ASSERT_EQ(run("train --out " + extended + flat + " --set train.steps=20"), 0) << slurp(own("err.txt"));
  EXPECT_TRUE(fs::exists(extended + "/checkpoints/step-000000020"));
  ASSERT_EQ(run("train --resume " + extended + " --set train.steps=40"), 0) << slurp(own("err.txt"));
  EXPECT_NE(slurp(own("err.txt")).find("resuming " + extended + " at step 20"), std::string::npos) << slurp(own("err.txt"));
  EXPECT_EQ(losses(extended), losses(straight));
  EXPECT_EQ(slurp(extended + "/model.safetensors"), slurp(straight + "/model.safetensors"));
}

// DIR/train.log keeps each session's log - when and where it started, what it printed, why it
// stopped - appended across resumes.
TEST(Resume, TrainLogKeepsEverySessionAndWhyItStopped) {
  const std::string dir = fresh("logged");
  EXPECT_EQ(run("train --out " + dir + kSmall, "MMT_FAULT_BATCH_ERROR_AT_STEP=25"), 2);
  std::string log = slurp(dir + "/train.log");
  EXPECT_EQ(log.rfind("mmt train: started ", 0), 0u) << log;
  EXPECT_NE(log.find("mmt train: model "), std::string::npos) << log;
  EXPECT_NE(log.find("stopped"), std::string::npos) << log;
  EXPECT_NE(log.find("step 25: injected batch error"), std::string::npos) << log;
  ASSERT_EQ(run("train --resume " + dir), 0) << slurp(own("err.txt"));
  log = slurp(dir + "/train.log");
  EXPECT_NE(log.find("mmt train: resumed at step 20, "), std::string::npos) << log;
  EXPECT_NE(log.find("train 40/40 [100%]"), std::string::npos) << log;  // the progress line, once finished
  EXPECT_NE(log.find("mmt train: wrote " + dir + "/model.safetensors\n"), std::string::npos) << log;
  EXPECT_EQ(log.find('\r'), std::string::npos);
}

TEST(Resume, KilledWhileWritingACheckpointLeavesThePreviousOne) {
  const std::string straight = fresh("straight"), dir = fresh("crash");
  ASSERT_EQ(run("train --out " + straight + kSmall), 0);
  EXPECT_EQ(run("train --out " + dir + kSmall, "MMT_FAULT_KILL_AFTER_STEP=20"), 128 + 9);
  // Resumed, then killed halfway through writing the step-30 checkpoint.
  EXPECT_EQ(run("train --resume " + dir, "MMT_FAULT_CHECKPOINT=kill"), 128 + 9);
  EXPECT_TRUE(fs::exists(dir + "/checkpoints/step-000000020/state.json"));
  EXPECT_FALSE(fs::exists(dir + "/checkpoints/step-000000030"));
  ASSERT_EQ(run("train --resume " + dir), 0) << slurp(own("err.txt"));
  EXPECT_NE(slurp(own("err.txt")).find("at step 20"), std::string::npos);
  EXPECT_EQ(losses(dir), losses(straight));
  EXPECT_EQ(slurp(dir + "/model.safetensors"), slurp(straight + "/model.safetensors"));
}

TEST(Resume, RealDataRunResumesItsSamplerExactly) {
  const std::string a = scratch("a"), b = scratch("b");
  ASSERT_EQ(run("train --config " + real_mixture_config(a, 9) + " --out " + a + "run"), 0) << slurp(own("err.txt"));
  EXPECT_EQ(run("train --config " + real_mixture_config(b, 9) + " --out " + b + "run", "MMT_FAULT_KILL_AFTER_STEP=3"), 128 + 9);
  ASSERT_EQ(run("train --resume " + b + "run"), 0) << slurp(own("err.txt"));
  const auto counts = [](const std::string& dir) {
    std::ifstream in(dir + "/metrics.jsonl");
    std::string out;
    for (std::string line; std::getline(in, line);) out += json::parse(line)["dataset_counts"].dump() + "\n";
    return out;
  };
  EXPECT_EQ(losses(b + "run"), losses(a + "run"));
  EXPECT_EQ(counts(b + "run"), counts(a + "run"));
  EXPECT_EQ(slurp(b + "run/model.safetensors"), slurp(a + "run/model.safetensors"));
}

TEST(Resume, SigtermWritesACheckpointAndExits) {
  const std::string dir = fresh("term");
  const std::string cmd = std::string(MMT_BINARY) + " train --out " + dir +
                          " --set train.steps=100000 --set train.checkpoint_every=0 --set train.log_every=1"
                          " --set data.synth.num_train_images=1500 --set data.synth.num_test_images=20"
                          " --set train.batch_size=16 --set model.num_layers=1 >/dev/null 2>" + own("err.txt") +
                          " & echo $! > " + own("pid");
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string pid = slurp(own("pid"));
  for (int i = 0; i < 300 && !fs::exists(dir + "/metrics.jsonl"); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  for (int i = 0; i < 300 && slurp(dir + "/metrics.jsonl").empty(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(std::system(("kill -TERM " + pid).c_str()), 0);
  // The process writes its checkpoint and says so as it exits (its exit status is checked by
  // the CLI's `return 128 + signal`; a detached child cannot be waited for here).
  for (int i = 0; i < 600 && slurp(own("err.txt")).find("mmt: interrupted") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const std::string err = slurp(own("err.txt"));
  EXPECT_NE(err.find("interrupted by SIGTERM after step"), std::string::npos) << err;
  EXPECT_NE(err.find("--resume " + dir), std::string::npos) << err;
  bool found = false;
  for (const auto& e : fs::directory_iterator(dir + "/checkpoints")) found |= fs::exists(e.path() / "state.json");
  EXPECT_TRUE(found);
}

}  // namespace
