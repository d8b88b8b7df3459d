/* Distributed plumbing: the environment torchrun / SLURM set, shares of a batch, and the Gloo
 * collectives in-process (two ranks as two threads): sums, gathers that keep the local rows'
 * gradient, agreement on a failure, and a rank that stops answering failing the other with an
 * error instead of a hang; gradient buckets summed during backward; one rank's non-finite gradient
 * skipping the step on both. The end-to-end checks (2 processes = 1 process) are CLI tests. */
#include <gtest/gtest.h>
#include <torch/nn/modules/linear.h>
#include <torch/types.h>

#include "../common/free_port.h"

#include <chrono>
#include <cmath>
#include <map>
#include <thread>

#include "mmt/config/config.h"
#include "mmt/config/options.h"
#include "mmt/data/batch.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/model/transformer.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/train/distributed.h"
#include "mmt/train/flat_adamw.h"
#include "mmt/train/grad_buckets.h"

namespace mmt {
namespace {

DistEnv env_of(const std::map<std::string, std::string>& vars) {
  return read_dist_env([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(DistEnv, ReadsTorchrunAndSlurmVariables) {
  EXPECT_FALSE(env_of({}).distributed());
  const DistEnv t = env_of({{"RANK", "1"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"}, {"MASTER_ADDR", "10.0.0.2"},
                            {"MASTER_PORT", "29400"}, {"TORCHELASTIC_RUN_ID", "x"},
                            {"TORCHELASTIC_USE_AGENT_STORE", "True"}, {"TORCHELASTIC_RESTART_COUNT", "2"}});
  EXPECT_EQ(t.rank, 1);
  EXPECT_EQ(t.world, 4);
  EXPECT_EQ(t.local_rank, 1);
  EXPECT_EQ(t.master_addr, "10.0.0.2");
  EXPECT_EQ(t.master_port, 29400);
  EXPECT_TRUE(t.agent_store);
  EXPECT_EQ(t.restart_count, "2");
  EXPECT_EQ(t.launcher, "torchrun");
  const DistEnv s = env_of({{"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                            {"SLURM_LAUNCH_NODE_IPADDR", "10.1.1.1"}});
  EXPECT_EQ(s.rank, 3);
  EXPECT_EQ(s.world, 8);
  EXPECT_EQ(s.local_rank, 1);
  EXPECT_EQ(s.master_addr, "10.1.1.1");
  EXPECT_EQ(s.master_port, 29500);
  EXPECT_EQ(s.launcher, "slurm");
  // torchrun's variables win over SLURM's (torchrun inside an allocation).
  EXPECT_EQ(env_of({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"SLURM_PROCID", "3"}, {"SLURM_NTASKS", "8"}}).world, 1);
}

TEST(DistEnv, InconsistentVariablesAreErrorsNamingThem) {
  auto message = [](const std::map<std::string, std::string>& vars) {
    try {
      env_of(vars);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message({{"RANK", "0"}}).find("WORLD_SIZE"), std::string::npos);
  EXPECT_NE(message({{"RANK", "2"}, {"WORLD_SIZE", "2"}}).find("not below the world size"), std::string::npos);
  EXPECT_NE(message({{"RANK", "x"}, {"WORLD_SIZE", "2"}}).find("RANK='x'"), std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}}).find("MASTER_ADDR"), std::string::npos);
  EXPECT_NE(message({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}).find("MASTER_PORT"),
            std::string::npos);
}

TEST(Shards, RowsAreSplitContiguouslyWithoutOverlap) {
  for (int64_t total : {1, 7, 8, 128})
    for (int world : {1, 2, 3, 8}) {
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        const auto [b, e] = shard_range(total, r, world);
        EXPECT_EQ(b, next);
        EXPECT_LE(e - b, total / world + 1);
        EXPECT_GE(e - b, total / world);
        next = e;
      }
      EXPECT_EQ(next, total);
    }
  Batch b;
  b.text_ids = torch::arange(12).reshape({6, 2});
  b.itm_labels = torch::arange(6);
  b.negatives = std::make_shared<Batch>();
  b.negatives->region_feats = torch::ones({3, 2, 4});
  b.negative_excluded = torch::zeros({6, 3}, torch::kBool);
  const Batch part = batch_rows(b, 2, 5);
  EXPECT_TRUE(part.text_ids.equal(b.text_ids.narrow(0, 2, 3)));
  EXPECT_TRUE(part.itm_labels.equal(torch::arange(2, 5)));
  EXPECT_EQ(part.negative_excluded.size(0), 3);
  EXPECT_EQ(part.negatives, b.negatives);  // the pool of negatives is shared by every row: kept whole
}

using test_net::free_port;

// Runs f(rank, communicator) on two threads joined in one process group.
void two_ranks(double timeout_s, const std::function<void(int, Communicator&)>& f) {
  const int port = free_port();
  RuntimeOptions rt;
  rt.dist_timeout_s = timeout_s;
  std::vector<std::thread> threads;
  std::vector<std::string> errors(2);
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      try {
        DistEnv env;
        env.rank = r, env.world = 2, env.master_addr = "127.0.0.1", env.master_port = port;
        auto comm = connect(env, rt);
        f(r, *comm);
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
}

TEST(Gloo, SumsGathersAndBroadcasts) {
  two_ranks(30, [](int r, Communicator& comm) {
    EXPECT_EQ(comm.rank(), r);
    auto t = torch::full({3}, static_cast<double>(r + 1), torch::kFloat64);
    comm.all_reduce_sum(t, "test sum");
    EXPECT_TRUE(t.equal(torch::full({3}, 3.0, torch::kFloat64)));
    EXPECT_EQ(all_reduce_sum(&comm, {1.0, static_cast<double>(r)}, "test"), (std::vector<double>{2.0, 1.0}));
    auto b = torch::full({2}, static_cast<float>(r + 5));
    comm.broadcast(b, 1, "test broadcast");
    EXPECT_TRUE(b.equal(torch::full({2}, 6.f)));
    // Rank 0 has 1 row, rank 1 has 3: gathered in rank order, the local rows keep their graph.
    const std::vector<int64_t> counts{1, 3};
    auto x = torch::full({counts[r], 2}, static_cast<float>(r + 1)).requires_grad_(true);
    const auto all = all_gather_rows(comm, x * 2, counts, "test gather");
    ASSERT_EQ(all.size(0), 4);
    EXPECT_TRUE(all.narrow(0, 0, 1).equal(torch::full({1, 2}, 2.f)));
    EXPECT_TRUE(all.narrow(0, 1, 3).equal(torch::full({3, 2}, 4.f)));
    all.sum().backward();
    EXPECT_TRUE(x.grad().equal(torch::full({counts[r], 2}, 2.f)));  // only through this rank's rows
  });
}

// open_process_group serves any world size: one rank on the CPU takes Gloo (what the GPU tests
// do with NCCL), and connect() stays null for one process.
TEST(Gloo, AGroupOfOneRankIsTheIdentity) {
  DistEnv env;
  env.master_addr = "127.0.0.1", env.master_port = free_port();
  RuntimeOptions rt;
  rt.dist_timeout_s = 30;
  EXPECT_EQ(connect(env, rt), nullptr);
  const auto comm = open_process_group(env, rt);
  EXPECT_NE(comm->describe().find("gloo"), std::string::npos) << comm->describe();
  auto t = torch::tensor({1.5, -2.0}, torch::kFloat64);
  comm->all_reduce_sum(t, "sum");
  EXPECT_TRUE(t.equal(torch::tensor({1.5, -2.0}, torch::kFloat64)));
  comm->start_all_reduce_sum(t, "bucket");
  comm->wait_started("buckets");
  EXPECT_TRUE(t.equal(torch::tensor({1.5, -2.0}, torch::kFloat64)));
  EXPECT_EQ(comm->all_gather(torch::ones({2, 3}), "gather").sizes(), (std::vector<int64_t>{1, 2, 3}));
  comm->barrier("barrier");
}

TEST(Gloo, AFailureOnOneRankStopsTheOtherWithAMessage) {
  two_ranks(30, [](int r, Communicator& comm) {
    try {
      agree(&comm, r == 1 ? "rank 1's own problem" : "", "setting up");
      ADD_FAILURE() << "agree() passed on rank " << r;
    } catch (const DistError& e) {
      EXPECT_EQ(r, 0);
      EXPECT_NE(std::string(e.what()).find("rank 1 failed setting up"), std::string::npos) << e.what();
    } catch (const Error& e) {
      EXPECT_EQ(r, 1);
      EXPECT_EQ(std::string(e.what()), "rank 1's own problem");
    }
    agree(&comm, "", "the next phase");  // both fine: no throw
  });
}

TEST(Gloo, ARankThatStopsAnsweringFailsTheOtherWithinTheTimeout) {
  two_ranks(2, [](int r, Communicator& comm) {
    if (r == 1) {  // joined, then silent for longer than the timeout
      std::this_thread::sleep_for(std::chrono::seconds(5));
      return;
    }
    auto t = torch::ones({4});
    const auto start = std::chrono::steady_clock::now();
    try {
      comm.all_reduce_sum(t, "gradients");
      ADD_FAILURE() << "the all-reduce returned without rank 1";
    } catch (const DistError& e) {
      const std::string m = e.what();
      EXPECT_NE(m.find("rank 0 of 2: gradients failed"), std::string::npos) << m;
      EXPECT_NE(m.find("--resume"), std::string::npos) << m;
    }
    EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 4.5);
  });
}

// Gradient buckets: summed over the ranks while backward runs, equal to one flat all-reduce; a
// parameter unused on one rank holds its bucket (and the later ones) back until finish().
TEST(GradBuckets, SumEveryRanksGradientsAndStartDuringBackward) {
  two_ranks(30, [](int r, Communicator& comm) {
    torch::nn::Linear l0(6, 8), l1(8, 8), l2(8, 8), l3(8, 3), unused_on_rank_1(3, 2);
    // Laid out in the flat buffer in this order; buckets are cut from its end (l3 first).
    std::vector<torch::Tensor> params;
    for (const auto& m : {l0, l1, unused_on_rank_1, l2, l3})
      for (const auto& p : m->parameters()) params.push_back(p);
    FlatAdamW opt(params, std::vector<bool>(params.size(), true), AdamWSettings{});
    const auto x = torch::randn({5, 6}) * static_cast<double>(r + 1);  // each rank its own data
    auto loss = [&] {
      const auto y = l3(torch::tanh(l2(torch::tanh(l1(torch::tanh(l0(x)))))));
      return r == 0 ? (y.pow(2).sum() + unused_on_rank_1(y).sum()) : y.pow(2).sum();
    };
    // Expected: this rank's gradient, summed by one flat all-reduce.
    opt.zero_grad();
    loss().backward();
    const auto local = opt.grads().clone();
    auto expected = local.clone();
    comm.all_reduce_sum(expected, "expected");

    GradBuckets buckets(params, opt.grads(), /*bucket_bytes=*/40, comm);  // 10 floats: about one tensor each
    EXPECT_GE(buckets.num_buckets(), 5);
    for (int step = 0; step < 2; ++step) {
      opt.zero_grad();
      loss().backward();  // not armed (an earlier micro-batch): nothing is summed
      EXPECT_TRUE(torch::allclose(opt.grads(), local, 1e-6, 1e-7)) << "rank " << r << ", step " << step;
      buckets.arm();
      loss().backward();
      const int64_t early = buckets.started_during_backward();
      buckets.finish();
      EXPECT_TRUE(torch::allclose(opt.grads(), expected * 2, 1e-5, 1e-6)) << "rank " << r << ", step " << step;
      // Rank 0 uses every parameter: all buckets go out during backward. On rank 1 the buckets of
      // l3 and l2 do; the unused layer's bucket holds itself and the later ones back.
      if (r == 0) EXPECT_EQ(early, buckets.num_buckets());
      else EXPECT_TRUE(early >= 2 && early < buckets.num_buckets() - 1) << early << " of " << buckets.num_buckets();
    }
  });
}

// One rank's non-finite gradient (a hook puts a NaN into one weight's gradient on rank 1 only)
// skips the step on both: the summed gradient they share is NaN, so they agree without asking,
// keep equal weights, and train on together.
// One layer of the tiny preset, no dropout, batches of 8 from a small world.
ExperimentConfig small_step_config() {
  ExperimentConfig cfg;
  cfg.model.preset = "tiny";
  cfg.model.num_layers = 1, cfg.model.dropout = 0;
  cfg.data.synth.num_train_images = 200, cfg.data.synth.num_test_images = 10;
  cfg.train.batch_size = 8;
  return cfg;
}

TEST(PretrainStep, OneRanksNonFiniteGradientSkipsTheStepOnEveryRank) {
  ExperimentConfig cfg = small_step_config();
  validate_config(cfg);
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  std::vector<Batch> shares[2];  // step s: rows [0, 4) on rank 0, [4, 8) on rank 1
  for (int64_t s = 0; s < 3; ++s) {
    const Batch b = batcher.batch(s);
    for (int r = 0; r < 2; ++r) shares[r].push_back(batch_rows(b, 4 * r, 4 * r + 4));
  }
  std::vector<MultimodalTransformer> models;
  for (int r = 0; r < 2; ++r) {
    torch::manual_seed(6);  // equal initial weights (the trainer broadcasts rank 0's)
    models.emplace_back(cfg.model, data_input_dims(cfg));
  }
  torch::Tensor after[2];
  two_ranks(60, [&](int r, Communicator& comm) {
    PretrainStep step(*models[r], cfg.train, cfg.runtime, &comm);
    ASSERT_TRUE(step.run(shares[r][0], 1e-3, 0).finite) << "rank " << r;
    const auto before = step.optimizer().params().clone();
    auto weight = models[r]->parameters()[2];
    unsigned hook = 0;
    if (r == 1) hook = weight.register_hook([](torch::Tensor g) { return g.clone().fill_(std::nanf("")); });
    const auto bad = step.run(shares[r][1], 1e-3, 1);
    if (r == 1) weight.remove_hook(hook);
    EXPECT_FALSE(bad.finite) << "rank " << r;
    EXPECT_TRUE(std::isfinite(bad.loss.metrics.at("loss"))) << "rank " << r;
    EXPECT_TRUE(torch::equal(step.optimizer().params(), before)) << "rank " << r;
    EXPECT_EQ(step.optimizer().steps(), 1);
    EXPECT_TRUE(step.run(shares[r][2], 1e-3, 2).finite) << "rank " << r;
    after[r] = step.optimizer().params().clone();
  });
  ASSERT_TRUE(after[0].defined() && after[1].defined());
  EXPECT_TRUE(torch::equal(after[0], after[1]));
  EXPECT_TRUE(torch::isfinite(after[0]).all().item<bool>());
}

// A batch (or a rank's share) can hold no target of any loss of the main pass: MLM the only one
// and no token drawn. It gives no gradient - the step neither fails ("does not require grad") nor
// leaves the other rank waiting for its buckets.
TEST(PretrainStep, AShareWithoutLossTargetsGivesNoGradientAndNoFailure) {
  ExperimentConfig cfg = small_step_config();
  cfg.train.itm_weight = 0, cfg.train.mrm_kl_weight = 0, cfg.train.mrm_regression_weight = 0, cfg.train.mrm_class_weight = 0;
  validate_config(cfg);
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  const Batch b = batcher.batch(0);
  ASSERT_GT(b.mlm_labels.ne(kIgnoreLabel).sum().item<int64_t>(), 0);
  Batch empty = batch_rows(b, 4, 8);
  empty.mlm_labels.fill_(kIgnoreLabel);
  {  // one process
    torch::manual_seed(6);
    MultimodalTransformer model(cfg.model, data_input_dims(cfg));
    PretrainStep step(*model, cfg.train);
    const auto r = step.run(empty, 1e-3, 0);
    EXPECT_TRUE(r.finite);
    EXPECT_TRUE(torch::equal(step.optimizer().grads(), torch::zeros_like(step.optimizer().grads())));
  }
  std::vector<MultimodalTransformer> models;
  for (int r = 0; r < 2; ++r) {
    torch::manual_seed(6);
    models.emplace_back(cfg.model, data_input_dims(cfg));
  }
  torch::Tensor before, after[2];
  two_ranks(60, [&](int r, Communicator& comm) {
    PretrainStep step(*models[r], cfg.train, cfg.runtime, &comm);
    if (r == 0) before = step.optimizer().params().clone();
    EXPECT_TRUE(step.run(r == 0 ? batch_rows(b, 0, 4) : empty, 1e-3, 0).finite) << "rank " << r;
    after[r] = step.optimizer().params().clone();
  });
  ASSERT_TRUE(after[0].defined() && after[1].defined());
  EXPECT_TRUE(torch::equal(after[0], after[1]));  // rank 0's gradient reached both
  EXPECT_FALSE(torch::equal(after[0], before));
}

// Dual-encoder InfoNCE over two ranks with images repeated across them (rows 0 / 4 and 1 / 6 show
// one image each): the image keys travel with the gathered embeddings, so both ranks leave the same
// pairs out and the summed gradient is the one-process gradient - which the repeats do change.
TEST(PretrainStep, DualInfoNceLeavesOutTheSameImageAcrossRanks) {
  ExperimentConfig cfg = small_step_config();
  cfg.model.kind = "dual_encoder", cfg.model.attention = "single_modality", cfg.model.dual_score = "dot";
  cfg.train.itm_weight = 0, cfg.train.mlm_weight = 0, cfg.train.dual_contrastive_weight = 1, cfg.train.itm_negative_prob = 0;
  validate_config(cfg);
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  Batch b = batcher.batch(0);
  ASSERT_EQ(b.size(), 8);
  auto one_process = [&](const Batch& batch) {
    torch::manual_seed(6);
    MultimodalTransformer model(cfg.model, data_input_dims(cfg));
    PretrainStep step(*model, cfg.train);
    EXPECT_TRUE(step.run(batch, 1e-2, 0).finite);
    return step.optimizer().grads().clone();
  };
  const auto distinct = one_process(b);
  b.image_key = torch::tensor(std::vector<int64_t>{0, 1, 2, 3, 0, 5, 1, 7});
  const auto expected = one_process(b);
  auto relative = [](const torch::Tensor& a, const torch::Tensor& ref) { return ((a - ref).norm() / ref.norm()).item<double>(); };
  EXPECT_GT(relative(distinct, expected), 1e-3) << "the repeats change the gradient";
  std::vector<MultimodalTransformer> models;
  for (int r = 0; r < 2; ++r) {
    torch::manual_seed(6);
    models.emplace_back(cfg.model, data_input_dims(cfg));
  }
  torch::Tensor after[2];
  two_ranks(60, [&](int r, Communicator& comm) {
    PretrainStep step(*models[r], cfg.train, cfg.runtime, &comm);
    EXPECT_TRUE(step.run(batch_rows(b, 4 * r, 4 * r + 4), 1e-2, 0).finite) << "rank " << r;
    after[r] = step.optimizer().grads().clone();  // summed over the ranks
  });
  ASSERT_TRUE(after[0].defined() && after[1].defined());
  EXPECT_TRUE(torch::equal(after[0], after[1]));
  EXPECT_LE(relative(after[0], expected), 1e-5);
}

}  // namespace
}  // namespace mmt
