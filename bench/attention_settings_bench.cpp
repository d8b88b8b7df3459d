/* Benchmark: forward + backward time per example of one model for every attention setting, at
 * the tiny and base presets, on fixed-shape random inputs (text and image token counts given),
 * so settings are compared on equal work. Reports ms per example and each setting's time
 * relative to merged. Figures and commands: docs/performance.md. */
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "mmt/config/config.h"
#include "mmt/data/batch.h"
#include "mmt/model/attention.h"
#include "mmt/model/transformer.h"
#include "mmt/util/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"mmt_bench_attention: forward+backward time per example for each attention setting"};
  std::string preset = "tiny";
  int64_t batch = 32, text = 20, image = 101, reps = 5, feat = 2048;
  app.add_option("--preset", preset, "model preset (tiny, base)");
  app.add_option("--batch", batch, "examples per step");
  app.add_option("--text-tokens", text, "text tokens per example");
  app.add_option("--image-tokens", image, "image tokens per example (regions + global)");
  app.add_option("--feature-dim", feat, "region feature size");
  app.add_option("--reps", reps, "timed steps per setting (best is kept)");
  CLI11_PARSE(app, argc, argv);
  try {
    auto cfg = mmt::load_config("", {"model.preset=" + preset});
    const std::string threads = mmt::configure_runtime(cfg.runtime, std::cerr);
    torch::manual_seed(0);
    mmt::Batch b;
    b.text_ids = torch::randint(5, 100, {batch, text}, torch::kInt64);
    b.text_mask = torch::ones({batch, text}, torch::kBool);
    b.region_feats = torch::randn({batch, image, feat});
    b.region_boxes = torch::rand({batch, image, 5});
    b.region_mask = torch::ones({batch, image}, torch::kBool);
    nlohmann::json rows = nlohmann::json::array();
    double merged_ms = 0;
    for (const auto& name : mmt::attention_type_names()) {
      cfg.model.attention = name;
      mmt::MultimodalTransformer model(cfg.model, mmt::InputDims{100, feat});
      model->train();
      auto step = [&] {
        model->zero_grad();
        const auto e = model->encode(b);
        (model->itm_logits(e).sum() + e.text.mean() + e.image.mean()).backward();
      };
      step();  // warm up
      double best = 1e30;
      for (int64_t r = 0; r < reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        step();
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      const double ms = 1000.0 * best / batch;
      if (name == "merged") merged_ms = ms;
      rows.push_back({{"attention", name}, {"ms_per_example", ms}, {"relative_to_merged", ms / merged_ms}});
      std::fprintf(stderr, "%-26s %8.3f ms/example  %.2fx merged\n", name.c_str(), ms, ms / merged_ms);
    }
    std::cout << nlohmann::json({{"preset", preset}, {"batch", batch}, {"text_tokens", text}, {"image_tokens", image},
                                 {"threads", threads}, {"settings", rows}})
                     .dump()
              << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "mmt_bench_attention: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
