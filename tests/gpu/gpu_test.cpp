/* GPU tests (ctest label `gpu`): the CUDA path against the CPU path. Each test skips itself when
 * libtorch sees no CUDA device, so the suite builds and passes on CPU-only machines; on a GPU
 * machine, `ctest -L gpu` (or scripts/gpu_check.sh) runs them.
 *   - one training step on CUDA in fp32 gives the CPU step's parameters;
 *   - so do steps with contrastive ITM in chunks and the align loss with its momentum queue;
 *   - a bf16 autocast step stays finite and near the fp32 losses, and gives every parameter that
 *     an fp32 step gives a gradient one along the same direction (with hard negatives, contrastive
 *     ITM, the align queue, recomputed layers);
 *   - exact scores on CUDA equal the CPU's; so do hard negatives' scores of sampled candidates;
 *   - the pinned prefetcher delivers the batcher's batches;
 *   - libtorch's fused AdamW (the CUDA default) gives the flat-buffer update's parameters;
 *   - steps launched ahead (metrics read late) equal steps read at once; a non-finite loss,
 *     or a finite loss with a non-finite gradient, leaves the model alone, decided on the device;
 *   - a one-rank NCCL group runs every collective (built with -DMMT_NCCL=ON);
 *   - runtime.precision = auto is bf16 on a GPU of compute capability 8 on. */
#include <gtest/gtest.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <limits>

#include "mmt/config/config.h"
#include "mmt/data/batch.h"
#include "mmt/data/data_source.h"
#include "mmt/data/image_source.h"
#include "mmt/data/prefetch.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/eval/exact_scorer.h"
#include "mmt/model/transformer.h"
#include "mmt/train/flat_adamw.h"
#include "mmt/train/hard_negatives.h"
#include "mmt/train/distributed.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/util/device.h"
#include "../common/free_port.h"
#include "../unit/test_util.h"

namespace mmt {
namespace {

// MMT_GPU_TESTS_ON_CPU=1 runs the tests with "cpu" for the GPU: it checks the tests themselves
// on a machine without one (both sides are then the CPU path).
std::string gpu() { return std::getenv("MMT_GPU_TESTS_ON_CPU") ? "cpu" : "cuda"; }
#define SKIP_WITHOUT_CUDA() \
  if (gpu() == "cuda" && !torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device: the GPU path is not exercised here"

ExperimentConfig small_config() {
  ExperimentConfig cfg;
  cfg.model.preset = "tiny";
  cfg.model.num_layers = 2;
  cfg.model.dropout = 0;
  cfg.data.synth.num_train_images = 300, cfg.data.synth.num_test_images = 10, cfg.data.synth.max_objects = 2;
  cfg.train.batch_size = 16, cfg.train.mrm_kl_weight = 1;
  cfg.runtime.precision = "fp32";  // the tests compare against the CPU's fp32 (auto is bf16 on the GPU)
  validate_config(cfg);
  return cfg;
}

using NamedGradients = std::vector<std::pair<std::string, torch::Tensor>>;

// Parameters after `steps` steps on `device` in `precision`, and the losses of each step; with
// `gradients`, every parameter's gradient of the last step by name (on the CPU in float64;
// undefined where the step gave it none).
std::pair<std::vector<torch::Tensor>, std::vector<double>> train(const ExperimentConfig& base, const std::string& device,
                                                                 const std::string& precision, int steps,
                                                                 bool recompute_layers = false,
                                                                 NamedGradients* gradients = nullptr) {
  ExperimentConfig cfg = base;
  cfg.runtime.device = device, cfg.runtime.precision = precision;
  const synth::World world(cfg.data.synth);
  torch::manual_seed(3);
  MultimodalTransformer model(cfg.model, data_input_dims(cfg));
  model->to(torch::Device(device));
  model->train();
  model->set_recompute_layers(recompute_layers);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  PretrainStep step(*model, cfg.train, cfg.runtime);
  std::vector<double> losses;
  for (int s = 0; s < steps; ++s) losses.push_back(step.run(batcher.batch(s), 1e-3, s).loss.metrics.at("loss"));
  std::vector<torch::Tensor> params;
  for (const auto& p : model->parameters()) params.push_back(p.detach().cpu().clone());
  if (gradients)
    for (const auto& item : model->named_parameters()) {
      const auto& g = item.value().grad();
      gradients->push_back({item.key(), g.defined() ? g.detach().to(torch::kCPU, torch::kFloat64) : torch::Tensor()});
    }
  return {params, losses};
}

// Three fp32 steps on the GPU give the CPU steps' losses and parameters (to 1e-3 relative).
void expect_gpu_steps_equal_cpu_steps(const ExperimentConfig& cfg) {
  const auto [cpu, cpu_loss] = train(cfg, "cpu", "fp32", 3);
  const auto [dev, dev_loss] = train(cfg, gpu(), "fp32", 3);
  for (size_t s = 0; s < cpu_loss.size(); ++s) EXPECT_NEAR(dev_loss[s], cpu_loss[s], 1e-3 * std::abs(cpu_loss[s])) << s;
  ASSERT_EQ(cpu.size(), dev.size());
  for (size_t i = 0; i < cpu.size(); ++i) {
    const double diff = (cpu[i] - dev[i]).norm().item<double>(), norm = cpu[i].norm().item<double>();
    EXPECT_LE(diff, 1e-3 * norm + 1e-6 * std::sqrt(double(cpu[i].numel()))) << "parameter " << i;
  }
}

TEST(Gpu, TrainingStepsEqualTheCpuSteps) {
  SKIP_WITHOUT_CUDA();
  const auto cfg = small_config();
  expect_gpu_steps_equal_cpu_steps(cfg);
}

// The passes beside the main one: contrastive ITM in several chunks (the generator state replayed
// per chunk: the CUDA generator's here) with the towers of a mixed stack run once, and the align
// loss with its momentum model and queue (the whole model as momentum model, for MLM's
// distillation, its EMA by foreach; the distillation ramped).
TEST(Gpu, ContrastiveChunksAndTheAlignQueueEqualTheCpuSteps) {
  SKIP_WITHOUT_CUDA();
  auto cfg = small_config();
  cfg.model.layers = {"single_modality", "merged"}, cfg.model.align = true;
  cfg.train.align_weight = 1, cfg.train.align_queue = 24, cfg.train.align_momentum = 0.9, cfg.train.align_distill = 0.4;
  cfg.train.mlm_distill = 0.4, cfg.train.distill_ramp = 2;
  cfg.train.itm_contrastive_weight = 1, cfg.train.itm_contrastive_negatives = 4, cfg.train.itm_contrastive_chunk = 16;
  validate_config(cfg);
  expect_gpu_steps_equal_cpu_steps(cfg);
}

TEST(Gpu, Bf16AutocastStepsStayFiniteAndNearFp32) {
  SKIP_WITHOUT_CUDA();
  const auto cfg = small_config();
  const auto [fp32, fp32_loss] = train(cfg, gpu(), "fp32", 5);
  const auto [bf16, bf16_loss] = train(cfg, gpu(), "bf16", 5);
  for (size_t s = 0; s < fp32_loss.size(); ++s) {
    EXPECT_TRUE(std::isfinite(bf16_loss[s])) << s;
    EXPECT_NEAR(bf16_loss[s], fp32_loss[s], 0.03 * std::abs(fp32_loss[s])) << "step " << s;
  }
}

// runtime.recompute_layers on the GPU in bf16: the backward pass runs on CUDA's device thread,
// where autocast is off and the CUDA generator has moved on; the recomputation must put back both
// (bf16 products, the same dropout masks) to train what the plain graph trains.
TEST(Gpu, RecomputedLayersTrainAsThePlainGraphInBf16) {
  SKIP_WITHOUT_CUDA();
  auto cfg = small_config();
  cfg.model.dropout = 0.1;
  validate_config(cfg);
  const auto [plain, plain_loss] = train(cfg, gpu(), "bf16", 3);
  const auto [recomputed, recomputed_loss] = train(cfg, gpu(), "bf16", 3, /*recompute_layers=*/true);
  for (size_t s = 0; s < plain_loss.size(); ++s)
    EXPECT_NEAR(recomputed_loss[s], plain_loss[s], 1e-4 * std::abs(plain_loss[s])) << "step " << s;
  ASSERT_EQ(plain.size(), recomputed.size());
  for (size_t i = 0; i < plain.size(); ++i)
    EXPECT_LE((plain[i] - recomputed[i]).norm().item<double>(), 1e-4 * plain[i].norm().item<double>() + 1e-7)
        << "parameter " << i;
}

// Every parameter's gradient after one step on the GPU in `precision`, by name.
NamedGradients step_gradients(const ExperimentConfig& cfg, const std::string& precision) {
  NamedGradients g;
  const auto loss = train(cfg, gpu(), precision, 1, cfg.runtime.recompute_layers, &g).second;
  EXPECT_TRUE(std::isfinite(loss.front())) << precision;
  return g;
}

// A bf16 step gives every parameter that an fp32 step gives a gradient one too, within bf16's
// error of it. The passes without a graph before the one with it - hard negatives' and
// contrastive ITM's scoring, the align loss's momentum model, a recomputed layer's first run -
// must take no weight's gradient away: libtorch's autocast cache did before PyTorch 2.10
// (docs/gpu.md), and the losses of a few steps, which the other bf16 tests compare, barely move
// when a bias loses its gradient. "Within bf16's error": 5 % of the parameter's gradient plus 1 %
// of the whole gradient's norm - a sum that cancels to little in fp32 (the align loss's image
// projection at initialisation: its images' embeddings are alike) keeps bf16's rounding of its
// terms. Gradients below 1e-6 of the whole are rounding noise (the keys' biases: softmax ignores
// them) and are skipped. With hard negatives the two precisions may draw different partners:
// there the gradients are only required to exist.
struct Bf16GradientCase {
  std::string name;
  std::function<void(ExperimentConfig&)> set;
  bool same_partners = true;
};

void PrintTo(const Bf16GradientCase& c, std::ostream* os) { *os << c.name; }

class Bf16Gradients : public ::testing::TestWithParam<Bf16GradientCase> {};

TEST_P(Bf16Gradients, ReachEveryParameterFp32Reaches) {
  SKIP_WITHOUT_CUDA();
  auto cfg = small_config();
  GetParam().set(cfg);
  validate_config(cfg);
  const auto fp32 = step_gradients(cfg, "fp32"), bf16 = step_gradients(cfg, "bf16");
  ASSERT_EQ(fp32.size(), bf16.size());
  double whole = 0;
  for (const auto& [name, g] : fp32)
    if (g.defined()) whole += g.square().sum().item<double>();
  whole = std::sqrt(whole);
  ASSERT_GT(whole, 0);
  int compared = 0;
  double least_cosine = 1;
  for (size_t k = 0; k < fp32.size(); ++k) {
    const auto& [name, g] = fp32[k];
    if (!g.defined() || g.norm().item<double>() < 1e-6 * whole) continue;
    const auto& h = bf16[k].second;
    ASSERT_TRUE(h.defined()) << name << ": no gradient in bf16";
    ASSERT_GT(h.norm().item<double>(), 0) << name << ": a zero gradient in bf16";
    ++compared;
    if (!GetParam().same_partners) continue;
    const double norm = g.norm().item<double>(), diff = (h - g).norm().item<double>();
    EXPECT_LE(diff, 0.05 * norm + 0.01 * whole) << name << ": gradient norm " << norm << " in fp32, "
                                                 << h.norm().item<double>() << " in bf16";
    least_cosine = std::min(least_cosine, (g * h).sum().item<double>() / (norm * h.norm().item<double>()));
  }
  EXPECT_GT(compared, 30);
  std::cout << compared << " gradients";
  if (GetParam().same_partners) std::cout << ", least cosine to fp32's " << least_cosine;
  std::cout << "\n";
}

INSTANTIATE_TEST_SUITE_P(
    Gpu, Bf16Gradients,
    ::testing::Values(
        Bf16GradientCase{"random_negatives", [](ExperimentConfig&) {}},
        Bf16GradientCase{"hard_negatives",
                         [](ExperimentConfig& c) { c.train.itm_negatives = "hard", c.train.itm_hard_candidates = 4; },
                         false},
        Bf16GradientCase{"contrastive_itm",
                         [](ExperimentConfig& c) {
                           c.train.itm_contrastive_weight = 1, c.train.itm_contrastive_negatives = 4;
                           c.train.itm_contrastive_chunk = 16;
                         }},
        Bf16GradientCase{"align_queue",
                         [](ExperimentConfig& c) {
                           c.model.layers = {"single_modality", "merged"}, c.model.align = true;
                           c.train.align_weight = 1, c.train.align_queue = 24, c.train.align_momentum = 0.9;
                           c.train.align_distill = 0.4, c.train.mlm_distill = 0.4;
                         }},
        Bf16GradientCase{"recomputed_layers", [](ExperimentConfig& c) { c.runtime.recompute_layers = true; }}),
    [](const ::testing::TestParamInfo<Bf16GradientCase>& info) { return info.param.name; });

// The GPU memory the trainer's closing line and the training-step bench report: a 1 GiB tensor
// more shows as about 1 GiB more in use (the caching allocator keeps it after it is freed).
TEST(Gpu, MemoryInUseSeesAnAllocation) {
  SKIP_WITHOUT_CUDA();
  if (gpu() == "cpu") GTEST_SKIP() << "a CPU has no device memory to ask for";
  EXPECT_EQ(cuda_memory_in_use_mb(torch::kCPU), -1);
  const torch::Device cuda(gpu());
  torch::zeros({1}, torch::device(cuda)).item<float>();  // the context exists
  const double before = cuda_memory_in_use_mb(cuda);
  ASSERT_GE(before, 0) << "cudaMemGetInfo was not found in the process";
  const auto big = torch::ones({256 * 1024 * 1024}, torch::device(cuda));  // 1 GiB of floats
  EXPECT_EQ(big[-1].item<float>(), 1.0f);
  EXPECT_NEAR(cuda_memory_in_use_mb(cuda) - before, 1024, 64);
}

TEST(Gpu, ExactScoresEqualTheCpuScores) {
  SKIP_WITHOUT_CUDA();
  const auto cfg = small_config();
  torch::manual_seed(5);
  MultimodalTransformer model(cfg.model, data_input_dims(cfg));
  model->eval();
  const synth::World world(cfg.data.synth);
  const std::vector<synth::Scene> scenes(world.train_scenes().begin(), world.train_scenes().begin() + 12);
  const SyntheticImages images(scenes, world.train_regions(), cfg);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  const Batch b = batcher.batch(0);
  const auto captions = testing::token_rows(b);  // the first batch's 16 captions, as token ids
  ExactScorerOptions so;
  so.pair_batch = 64;
  const auto cpu = score_exact(*model, captions, images, so);
  model->to(torch::Device(gpu()));
  so.device = gpu();
  const auto dev = score_exact(*model, captions, images, so);
  ASSERT_EQ(cpu.size(), dev.size());
  for (size_t k = 0; k < cpu.size(); ++k) EXPECT_NEAR(dev[k], cpu[k], 1e-3) << "pair " << k;
}

// Hard ITM negatives on the device: the pairs asked for (train.itm_hard_candidates' entries) are
// scored in passes indexed on the GPU and equal the CPU's scores, the rest NaN; bf16 training steps
// with hard negatives among 4 candidates stay finite.
TEST(Gpu, HardNegativeCandidatesScoreAsOnTheCpu) {
  SKIP_WITHOUT_CUDA();
  auto cfg = small_config();
  cfg.train.itm_negatives = "hard", cfg.train.itm_hard_candidates = 4;
  validate_config(cfg);
  torch::manual_seed(6);
  MultimodalTransformer model(cfg.model, data_input_dims(cfg));
  model->eval();
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  const Batch b = batcher.batch(0);
  const std::vector<int64_t> lines{1, 6, 9};
  const std::vector<std::vector<int64_t>> entries{{0, 2, 3, 15}, {4}, {0, 1, 2, 3, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15}};
  const auto pairs = mmt::testing::line_pairs(b.size(), lines, false, entries);
  const auto cpu = batch_score_pairs(*model, b, false, pairs);
  model->to(torch::Device(gpu()));
  const auto dev = batch_score_pairs(*model, batch_to(b, torch::Device(gpu())), false, pairs).cpu();
  EXPECT_EQ(torch::isnan(dev).sum().item<int64_t>(), 16 * 16 - 19);
  EXPECT_TRUE(torch::isnan(cpu).equal(torch::isnan(dev)));
  EXPECT_TRUE(torch::allclose(dev.nan_to_num(0), cpu.nan_to_num(0), 1e-3, 1e-3)) << (dev - cpu).abs().nan_to_num(0).max();
  const auto losses = train(cfg, gpu(), "bf16", 3).second;
  for (size_t s = 0; s < losses.size(); ++s) EXPECT_TRUE(std::isfinite(losses[s])) << "step " << s;
}

TEST(Gpu, PinnedPrefetcherDeliversTheBatchersBatches) {
  SKIP_WITHOUT_CUDA();
  const auto cfg = small_config();
  const synth::World world(cfg.data.synth);
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  const bool pin = gpu() == "cuda";
  BatchPrefetcher prefetch([&](int64_t i) { return batcher.batch(i); }, 2, 6, 2, pin);
  for (int64_t i = 2; i < 6; ++i) {
    const Batch got = prefetch.next();
    EXPECT_EQ(got.text_ids.is_pinned(), pin) << i;
    EXPECT_TRUE(got.text_ids.equal(batcher.batch(i).text_ids)) << i;
  }
}

// Three AdamW steps over parameters of mixed decay and learning-rate scale, fused or flat.
std::vector<torch::Tensor> adamw_steps(bool fused, bool decoupled, const std::string& device) {
  torch::manual_seed(11);
  std::vector<torch::Tensor> params;
  for (auto shape : {std::vector<int64_t>{7, 5}, {5}, {3, 4, 2}, {9}})
    params.push_back(torch::randn(shape).to(torch::Device(device)).requires_grad_(true));
  const std::vector<bool> decay = {true, false, true, false};
  const std::vector<double> scale = {1.0, 1.0, 0.5, 2.0};
  AdamWSettings s;
  s.weight_decay = 0.1, s.decoupled = decoupled;
  FlatAdamW opt(params, decay, s, scale, fused);
  if (fused && device == "cuda" && TORCH_VERSION_MAJOR >= 2) EXPECT_TRUE(opt.fused());
  for (int step = 0; step < 3; ++step) {
    opt.zero_grad();
    torch::Tensor loss = torch::zeros({}, torch::Device(device));
    for (const auto& p : params) loss = loss + (p * p * p).sum();
    loss.backward();
    opt.step(1e-2);
  }
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.detach().cpu().clone());
  return out;
}

TEST(Gpu, FusedAdamWEqualsTheFlatUpdate) {
  SKIP_WITHOUT_CUDA();
  for (bool decoupled : {true, false}) {
    const auto flat = adamw_steps(false, decoupled, gpu()), fused = adamw_steps(true, decoupled, gpu());
    const auto cpu = adamw_steps(false, decoupled, "cpu");  // the CPU's flat update as well
    for (size_t i = 0; i < flat.size(); ++i) {
      EXPECT_TRUE(torch::allclose(fused[i], flat[i], 1e-5, 1e-6)) << "parameter " << i << " decoupled " << decoupled;
      EXPECT_TRUE(torch::allclose(flat[i], cpu[i], 1e-5, 1e-6)) << "parameter " << i << " decoupled " << decoupled;
    }
  }
}

// A model, its batcher and its step on the test device (fp32, no dropout).
struct Stepper {
  ExperimentConfig cfg;
  synth::World world;
  MultimodalTransformer model;
  PretrainBatcher batcher;
  PretrainStep step;
  explicit Stepper(const ExperimentConfig& c)
      : cfg(on_test_device(c)), world(cfg.data.synth), model(make(cfg)), batcher(world, data_vocab(cfg), cfg),
        step(*model, cfg.train, cfg.runtime) {}
  static ExperimentConfig on_test_device(ExperimentConfig c) {
    c.runtime.device = gpu();
    return c;
  }
  static MultimodalTransformer make(const ExperimentConfig& cfg) {
    torch::manual_seed(3);
    MultimodalTransformer m(cfg.model, data_input_dims(cfg));
    m->to(torch::Device(cfg.runtime.device));
    m->train();
    return m;
  }
  std::vector<torch::Tensor> state() {  // parameters and moments, on the host
    auto& o = step.optimizer();
    return {o.params().cpu().clone(), o.exp_avg().cpu().clone(), o.exp_avg_sq().cpu().clone()};
  }
};

// launch(): on a GPU (fused AdamW) the step's metrics stay on the device until read, so the
// trainer queues step s + 1 before reading step s. Reading late changes nothing.
TEST(Gpu, StepsLaunchedAheadEqualStepsReadAtOnce) {
  SKIP_WITHOUT_CUDA();
  Stepper at_once(small_config()), ahead(small_config());
  EXPECT_EQ(ahead.step.defers(), ahead.step.optimizer().fused());
  if (gpu() == "cuda" && TORCH_VERSION_MAJOR >= 2) EXPECT_TRUE(ahead.step.defers());
  std::vector<PretrainStep::Result> read;
  for (int64_t s = 0; s < 4; ++s) read.push_back(at_once.step.run(at_once.batcher.batch(s), 1e-3, s));
  std::vector<PretrainStep::Pending> pending;
  for (int64_t s = 0; s < 4; ++s) pending.push_back(ahead.step.launch({ahead.batcher.batch(s)}, 1e-3, s));
  for (int64_t s = 0; s < 4; ++s) {
    const auto late = pending[s].get();
    EXPECT_TRUE(late.finite) << s;
    ASSERT_EQ(late.loss.metrics.size(), read[s].loss.metrics.size()) << s;
    for (const auto& [k, v] : read[s].loss.metrics) EXPECT_NEAR(late.loss.metrics.at(k), v, 1e-5 * std::abs(v) + 1e-7) << k;
  }
  EXPECT_EQ(ahead.step.optimizer().steps(), 4);
  const auto a = at_once.state(), b = ahead.state();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::allclose(a[i], b[i], 1e-5, 1e-7)) << i;
}

// A non-finite loss leaves parameters, moments and the step count alone: on a GPU the fused
// kernel is told on the device (nothing waits for the loss), on the CPU the step stops before
// its backward pass. Training then goes on.
TEST(Gpu, NonFiniteLossLeavesTheModelAlone) {
  SKIP_WITHOUT_CUDA();
  Stepper t(small_config());
  ASSERT_TRUE(t.step.run(t.batcher.batch(0), 1e-3, 0).finite);
  const auto before = t.state();
  Batch bad = t.batcher.batch(1);
  bad.region_feats.fill_(std::nan(""));
  const auto r = t.step.launch({bad}, 1e-3, 1).get();
  EXPECT_FALSE(r.finite);
  EXPECT_FALSE(std::isfinite(r.loss.metrics.at("loss")));
  EXPECT_EQ(r.loss.metrics.count("grad_norm"), 0u);
  EXPECT_EQ(t.step.optimizer().steps(), 1);
  const auto after = t.state();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i])) << i;
  ASSERT_TRUE(t.step.run(t.batcher.batch(2), 1e-3, 2).finite);
  EXPECT_EQ(t.step.optimizer().steps(), 2);
  EXPECT_FALSE(torch::equal(t.state()[0], before[0]));
}

// A finite loss with a non-finite gradient (a hook puts NaN or infinity into one weight's
// gradient): on a GPU the fused kernel is told by the gradient norm, on the device, and the step
// reads as skipped a step later, naming the norm; clipping off (the norm is taken anyway) and on.
TEST(Gpu, NonFiniteGradientLeavesTheModelAlone) {
  SKIP_WITHOUT_CUDA();
  for (double clip : {0.0, 1.0}) {
    auto cfg = small_config();
    cfg.train.grad_clip = clip;
    Stepper t(cfg);
    ASSERT_TRUE(t.step.run(t.batcher.batch(0), 1e-3, 0).finite);
    const auto before = t.state();
    auto weight = t.model->parameters()[3];
    for (float bad : {std::nanf(""), std::numeric_limits<float>::infinity()}) {
      const auto hook = weight.register_hook([bad](torch::Tensor g) { return g.clone().fill_(bad); });
      auto pending = t.step.launch({t.batcher.batch(1)}, 1e-3, 1);
      weight.remove_hook(hook);
      const auto r = pending.get();
      EXPECT_FALSE(r.finite) << "clip " << clip << " gradient " << bad;
      EXPECT_TRUE(std::isfinite(r.loss.metrics.at("loss")));
      ASSERT_EQ(r.loss.metrics.count("grad_norm"), 1u);
      EXPECT_FALSE(std::isfinite(r.loss.metrics.at("grad_norm")));
      EXPECT_EQ(t.step.optimizer().steps(), 1);
      const auto after = t.state();
      for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i])) << i;
    }
    const auto r = t.step.launch({t.batcher.batch(2)}, 1e-3, 2).get();
    EXPECT_TRUE(r.finite);
    EXPECT_EQ(r.loss.metrics.count("grad_norm"), clip > 0 ? 1u : 0u);
    EXPECT_EQ(t.step.optimizer().steps(), 2);
    EXPECT_FALSE(torch::equal(t.state()[0], before[0]));
  }
}

// NCCL (cmake -DMMT_NCCL=ON): a group of one rank on this GPU - the lent machines have one GPU,
// and NCCL refuses two ranks on one device. Sums and gathers are then the identity; what is
// checked is the path: rendezvous, collectives, and CPU tensors travelling to the GPU and back.
TEST(Gpu, NcclGroupOfOneRankRunsEveryCollective) {
  SKIP_WITHOUT_CUDA();
  const auto backends = process_group_backends();
  if (std::find(backends.begin(), backends.end(), "nccl") == backends.end())
    GTEST_SKIP() << "built without NCCL (cmake -DMMT_NCCL=ON)";
  if (gpu() == "cpu") GTEST_SKIP() << "NCCL needs a GPU";
  DistEnv env;
  env.master_addr = "127.0.0.1", env.master_port = test_net::free_port(), env.launcher = "test";
  RuntimeOptions runtime;
  runtime.device = "cuda", runtime.dist_timeout_s = 60;
  const auto comm = open_process_group(env, runtime);
  EXPECT_NE(comm->describe().find("nccl"), std::string::npos) << comm->describe();
  auto host = torch::tensor({1.5, -2.0}, torch::kFloat64);
  comm->all_reduce_sum(host, "host sum");
  EXPECT_TRUE(host.device().is_cpu());
  EXPECT_TRUE(torch::equal(host, torch::tensor({1.5, -2.0}, torch::kFloat64)));
  auto dev = torch::arange(6, torch::device(torch::kCUDA).dtype(torch::kFloat32));
  comm->start_all_reduce_sum(dev, "bucket");
  comm->wait_started("buckets");
  EXPECT_TRUE(torch::equal(dev.cpu(), torch::arange(6, torch::kFloat32)));
  const auto gathered = comm->all_gather(torch::ones({2, 3}, torch::kInt64), "gather");
  EXPECT_TRUE(gathered.device().is_cpu());
  EXPECT_EQ(gathered.sizes(), (std::vector<int64_t>{1, 2, 3}));
  auto b = torch::full({4}, 7.0);
  comm->broadcast(b, 0, "broadcast");
  EXPECT_TRUE(torch::equal(b, torch::full({4}, 7.0)));
  comm->barrier("barrier");
  // Gradient buckets must already be on the group's GPU.
  EXPECT_THROW(comm->start_all_reduce_sum(torch::ones({2}), "host bucket"), c10::Error);
}

// A warning from libtorch reaches stderr and the process goes on. In a build against a PyTorch
// wheel the one-rank NCCL test crashed while libc10 wrote a warning (inside std::ostream code the
// backtrace placed in our executable; docs/gpu.md): if every warning does that, this test shows
// it apart from NCCL. Runs (and passes) on the CPU build too.
// runtime.precision = auto on this GPU: the CUDA runtime answers its compute capability, and auto
// is bf16 from 8.0 (Ampere) on.
TEST(Gpu, AutoPrecisionFollowsTheComputeCapability) {
  SKIP_WITHOUT_CUDA();
  RuntimeOptions r;
  r.device = gpu(), r.precision = "auto";
  const int major = cuda_compute_major(resolve_device(gpu()));
  if (gpu() == "cpu") {
    EXPECT_EQ(major, -1);
    EXPECT_EQ(resolved_precision(r), "fp32");
    return;
  }
  EXPECT_GE(major, 3) << "the CUDA runtime was not asked (cudaDeviceGetAttribute not found)";
  EXPECT_EQ(resolved_precision(r), major >= 8 ? "bf16" : "fp32");
  std::cout << "compute capability " << major << ".x: auto is " << resolved_precision(r) << "\n";
}

TEST(Gpu, LibtorchWarningsAreWrittenWithoutACrash) {
  ::testing::internal::CaptureStderr();
  TORCH_WARN("mmt GPU test: a warning written by libc10");
  const std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("a warning written by libc10"), std::string::npos) << err;
}

}  // namespace
}  // namespace mmt
