/* Benchmark: pretraining steps of a configured model (default: the demo's tiny preset) on
 * synthetic batches, on the configured device and precision. Reports examples/s, ms/step, useful
 * GFLOP/s (real tokens only) against the matrix-product peak measured in the same process, in the
 * step's precision on a CPU (on a GPU: bf16 8192^3 products), optionally a Kineto trace of a few steps (--profile). With --dump
 * DIR it also writes the batches as .npy so that bench/reference_train_step.py can run the same
 * step in plain PyTorch.
 * Figures and commands: docs/performance.md. */
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <memory>
#include <optional>
#include <set>
#include <thread>

#include "mmt/config/config.h"
#include "mmt/data/batch.h"
#include "mmt/data/data_source.h"
#include "mmt/data/prefetch.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/io/npy.h"
#include "mmt/model/flops.h"
#include "mmt/model/transformer.h"
#include "mmt/text/vocab.h"
#include "mmt/train/flat_adamw.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/util/device.h"
#include "mmt/util/fs.h"
#include "mmt/util/runtime.h"

#include <torch/cuda.h>
#include <torch/version.h>
// The Kineto profiler (CPU ops and CUDA kernels in one trace) of libtorch >= 2: --profile.
#if TORCH_VERSION_MAJOR >= 2 && __has_include(<torch/csrc/autograd/profiler_kineto.h>)
#include <torch/csrc/autograd/profiler_kineto.h>
#define MMT_BENCH_KINETO 1
#endif

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void sync(torch::Device d) {
  if (d.is_cuda()) torch::cuda::synchronize();
}

// A GPU's bf16 matrix peak as measured (8192^3 products, the figure docs/gpu.md quotes).
double cuda_bf16_peak_gflops(torch::Device d) {
  const int64_t n = 8192;
  auto a = torch::randn({n, n}, torch::device(d).dtype(torch::kBFloat16)), b = torch::randn_like(a);
  for (int i = 0; i < 3; ++i) torch::mm(a, b);
  sync(d);
  const auto t0 = Clock::now();
  const int reps = 20;
  for (int i = 0; i < reps; ++i) torch::mm(a, b);
  sync(d);
  return 2.0 * n * n * n * reps / since(t0) / 1e9;
}

// Best matrix-product throughput over a few square sizes, in the step's precision (sgemm for fp32;
// bf16 products - oneDNN's on libtorch's threads - for bf16 autocast): the ceiling for this
// process's settings.
double matmul_peak_gflops(torch::ScalarType dtype) {
  double best = 0;
  for (int64_t n : {256, 512, 1024}) {
    auto a = torch::randn({n, n}).to(dtype), b = torch::randn({n, n}).to(dtype);
    auto c = torch::mm(a, b);
    const int reps = static_cast<int>(std::max<int64_t>(3, 4'000'000'000 / (2 * n * n * n)));
    const auto t0 = Clock::now();
    for (int i = 0; i < reps; ++i) c = torch::mm(a, b);
    best = std::max(best, 2.0 * n * n * n * reps / since(t0) / 1e9);
  }
  return best;
}

void dump_batch(const std::string& dir, int64_t i, const mmt::Batch& b) {
  char prefix[64];
  std::snprintf(prefix, sizeof prefix, "/batch_%03ld_", long(i));
  auto save_long = [&](const char* name, const torch::Tensor& t) {
    auto c = t.to(torch::kInt64).contiguous();
    mmt::save_npy(dir + prefix + name + ".npy", c.data_ptr<int64_t>(), c.sizes().vec());
  };
  auto save_float = [&](const char* name, const torch::Tensor& t) {
    auto c = t.contiguous();
    mmt::save_npy(dir + prefix + name + ".npy", c.data_ptr<float>(), c.sizes().vec());
  };
  save_long("text_ids", b.text_ids);
  save_long("text_mask", b.text_mask);
  save_float("region_feats", b.region_feats);
  save_float("region_boxes", b.region_boxes);
  save_long("region_mask", b.region_mask);
  save_long("mlm_labels", b.mlm_labels);
  save_long("itm_labels", b.itm_labels);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mmt_bench_train_step: time pretraining steps"};
  std::string config_path, dump_dir;
  std::vector<std::string> overrides;
  int64_t steps = 60, warmup = 10, profile_steps = 3;
  std::string profile_path, batches_on = "host";
  app.add_option("--config", config_path, "experiment config (default: built-in defaults = tiny preset)");
  app.add_option("--set", overrides, "config override, repeatable")->take_all();
  app.add_option("--steps", steps, "timed steps");
  app.add_option("--warmup", warmup, "untimed steps first");
  app.add_option("--dump", dump_dir,
                 "also write, as .npy into this directory, the batches a plain implementation would see: "
                 "the same examples drawn without length bucketing (for bench/reference_train_step.py)");
  app.add_option("--batches", batches_on,
                 "where the prepared batches wait: host (pageable), pinned (page-locked, copied non-blocking: "
                 "what training with prefetching does on a GPU) or device (already there: the step alone)")
      ->check(CLI::IsMember({"host", "pinned", "device"}));
  app.add_option("--profile", profile_path,
                 "after the timed steps, profile --profile-steps more with libtorch's Kineto profiler (CPU ops "
                 "and CUDA kernels) and write the Chrome trace here (libtorch >= 2)");
  app.add_option("--profile-steps", profile_steps, "steps in the profile");
  bool read_each_step = false;
  app.add_flag("--read-each-step", read_each_step,
               "read each step's result before queuing the next (the trainer reads it one step late, so that "
               "on a GPU the host queues step s + 1 while the device runs step s)");
  CLI11_PARSE(app, argc, argv);
  try {
    const auto cfg = mmt::load_config(config_path, overrides);
    const std::string threads = mmt::configure_runtime(cfg.runtime, std::cerr);
    torch::manual_seed(cfg.train.seed);
    const mmt::synth::World world(cfg.data.synth);
    const auto vocab = mmt::data_vocab(cfg);
    const mmt::InputDims dims = mmt::data_input_dims(cfg);
    mmt::MultimodalTransformer model(cfg.model, dims);
    const torch::Device device = mmt::resolve_device(cfg.runtime.device);
    model->to(device);  // before the optimizer flattens the parameters
    model->train();
    model->set_recompute_layers(cfg.runtime.recompute_layers);
    mmt::PretrainStep stepper(*model, cfg.train, cfg.runtime);
    mmt::PretrainBatcher batcher(world, vocab, cfg);

    // The first batch on this thread: the cost of building one; the rest on every core (their
    // own batchers, the same batches) - on a GPU machine the device waits while they are built.
    const auto t_data = Clock::now();
    std::vector<mmt::Batch> batches{batcher.batch(0)};
    const double data_s = since(t_data);
    if (warmup + steps > 1) {
      const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(std::thread::hardware_concurrency(), warmup + steps - 1));
      auto per_thread = [&]() -> mmt::BatchPrefetcher::Make {
        auto own = std::make_shared<mmt::PretrainBatcher>(world, vocab, cfg, &batcher);  // its pools shared
        return [own](int64_t i) { return own->batch(i); };
      };
      mmt::BatchPrefetcher ahead(per_thread, threads, 1, warmup + steps, warmup + steps, /*pin=*/false);
      for (int64_t s = 1; s < warmup + steps; ++s) batches.push_back(ahead.next());
    }
    std::vector<mmt::Batch> staged;  // the batches as the step receives them
    for (const auto& b : batches) {
      if (batches_on == "pinned" && device.is_cuda())
        staged.push_back(mmt::map_tensors(b, [](const torch::Tensor& t) { return t.pin_memory(); }));
      else if (batches_on == "device")
        staged.push_back(mmt::batch_to(b, device));
      else
        staged.push_back(b);
    }
    if (!dump_dir.empty()) {
      mmt::make_dirs(dump_dir);
      auto plain_cfg = cfg;
      plain_cfg.data.bucket_batches = 1;
      mmt::PretrainBatcher plain(world, vocab, plain_cfg);
      for (int64_t s = 0; s < steps; ++s) dump_batch(dump_dir, s, plain.batch(warmup + s));
      vocab.save(dump_dir + "/vocab.txt");
    }
    const bool bf16 = mmt::use_bf16(cfg.runtime);
    const double peak = device.is_cuda() ? cuda_bf16_peak_gflops(device)
                                         : matmul_peak_gflops(bf16 ? torch::kBFloat16 : torch::kFloat32);

    // Steps first..end-1 (batch `batch_of(s)`), each read once the next is queued, as the trainer
    // does (PretrainStep::launch: on a GPU the host then need not wait for the device).
    auto run_steps = [&](int64_t first, int64_t end, const std::function<int64_t(int64_t)>& batch_of) {
      if (read_each_step) {
        for (int64_t s = first; s < end; ++s) stepper.run(staged[batch_of(s)], cfg.train.lr, s);
        return;
      }
      std::optional<mmt::PretrainStep::Pending> behind;
      for (int64_t s = first; s < end; ++s) {
        auto now = stepper.launch({staged[batch_of(s)]}, cfg.train.lr, s);
        if (behind) behind->get();
        behind = std::move(now);
      }
      if (behind) behind->get();
    };
    auto same = [](int64_t s) { return s; };
    run_steps(0, warmup, same);
    sync(device);
    double flops = 0, text_real = 0, text_all = 0, img_real = 0, img_all = 0;
    int64_t examples = 0;
    const auto t0 = Clock::now();
    run_steps(warmup, warmup + steps, same);
    for (int64_t s = warmup; s < warmup + steps; ++s) examples += batches[s].size();
    sync(device);
    const double secs = since(t0);
    if (!profile_path.empty()) {
#ifdef MMT_BENCH_KINETO
      namespace prof = torch::autograd::profiler;
      const prof::ProfilerConfig pc(prof::ProfilerState::KINETO);
      std::set<prof::ActivityType> activities{prof::ActivityType::CPU};
      if (device.is_cuda()) activities.insert(prof::ActivityType::CUDA);
      prof::prepareProfiler(pc, activities);
      prof::enableProfiler(pc, activities);
      run_steps(warmup + steps, warmup + steps + profile_steps, [&](int64_t s) { return warmup + (s - warmup - steps) % steps; });
      sync(device);
      prof::disableProfiler()->save(profile_path);
      std::fprintf(stderr, "mmt train step: %ld profiled steps written to %s\n", long(profile_steps), profile_path.c_str());
#else
      std::fprintf(stderr, "mmt train step: --profile needs libtorch >= 2 with Kineto; not profiled\n");
#endif
    }
    for (int64_t s = warmup; s < warmup + steps; ++s) {
      const auto& b = batches[s];
      flops += mmt::step_train_flops(cfg, dims, b).total();  // every pass the step runs
      text_real += b.text_mask.sum().item<double>(), text_all += static_cast<double>(b.text_mask.numel());
      if (b.region_mask.defined())
        img_real += b.region_mask.sum().item<double>(), img_all += static_cast<double>(b.region_mask.numel());
    }
    const double gflops = flops / secs / 1e9;
    const double held_mb = mmt::cuda_memory_in_use_mb(device);  // asked once: JSON and line agree
    nlohmann::json out = {{"config", config_path.empty() ? "defaults" : config_path},
                          {"overrides", overrides},
                          {"threads", threads},
                          {"steps", steps},
                          {"batch_size", cfg.train.batch_size},
                          {"device", mmt::describe_device(device, mmt::use_bf16(cfg.runtime))},
                          {"batches", batches_on},
                          {"fused_adamw", stepper.optimizer().fused()},
                          {"read_ahead", stepper.defers() && !read_each_step},
                          {"examples_per_s", examples / secs},
                          {"ms_per_step", 1000.0 * secs / steps},
                          {"batch_prep_ms_per_step", 1000.0 * data_s},  // one batch, one thread
                          {"useful_gflops_per_s", gflops},
                          {"matmul_peak_gflops_per_s", peak},
                          {"fraction_of_peak", gflops / peak},
                          {"text_padding_fraction", 1.0 - text_real / text_all},
                          {"region_padding_fraction", img_all > 0 ? 1.0 - img_real / img_all : 0.0},
                          {"cuda_memory_in_use_mb", held_mb}};  // -1: not CUDA
    std::cout << out.dump() << std::endl;
    char held[48] = "";
    if (held_mb >= 0) std::snprintf(held, sizeof held, ", GPU memory in use %.1f GB", held_mb / 1024);
    std::fprintf(stderr, "mmt train step: %.0f ex/s, %.1f ms/step, %.1f useful GFLOP/s = %.1f%% of the %.1f GFLOP/s %s peak (%s, %s%s)\n",
                 examples / secs, 1000.0 * secs / steps, gflops, 100.0 * gflops / peak, peak,
                 device.is_cuda() || bf16 ? "bf16 matmul" : "sgemm", mmt::describe_device(device, bf16).c_str(),
                 threads.c_str(), held);
  } catch (const std::exception& e) {
    std::cerr << "mmt_bench_train_step: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
