/* How often an ITM "mismatched" pair is in fact a true one. On the synthetic world every caption's
 * truth on every scene is known (synth::caption_true_of), so for batches as the batcher makes them
 * this counts, of the pairs ITM is told are mismatched, the share whose caption is true of the image
 * it was given: under uniform random negatives (exact: every other-image row of the batch equally
 * likely) and under hard negatives sampled by a model's own scores (train.itm_negatives = hard;
 * the align head's where the model has one, else ITM's) - a run's weights, or an untrained model.
 * Label noise that hard negatives add, measured. docs/losses.md.
 * usage: mmt_bench_negative_truth [--config C] [--weights W] [--set k=v ...] [--batches N] */
#include <CLI/CLI.hpp>

#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>

#include "mmt/config/config.h"
#include "mmt/data/batch.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/io/safetensors.h"
#include "mmt/model/transformer.h"
#include "mmt/text/vocab.h"
#include "mmt/train/hard_negatives.h"
#include "mmt/util/runtime.h"

int main(int argc, char** argv) {
  CLI::App app{"mmt_bench_negative_truth: the share of ITM negatives whose caption is true of their image"};
  std::string config, weights;
  std::vector<std::string> overrides;
  int64_t batches = 20;
  app.add_option("--config", config, "experiment config (a run's config.json for its weights)");
  app.add_option("--weights", weights, "model.safetensors of a run (default: an untrained model)");
  app.add_option("--set", overrides, "config overrides")->take_all();
  app.add_option("--batches", batches, "batches to count over");
  CLI11_PARSE(app, argc, argv);
  try {
    auto cfg = mmt::load_config(config, overrides);
    cfg.train.itm_negatives = "hard", cfg.train.itm_hard_from_step = 0;
    mmt::validate_config(cfg);
    mmt::configure_runtime(cfg.runtime, std::cerr);
    const mmt::synth::World world(cfg.data.synth);
    torch::manual_seed(0);
    mmt::MultimodalTransformer model(cfg.model, mmt::data_input_dims(cfg));
    if (!weights.empty()) mmt::load_module_state(*model, mmt::load_safetensors(weights), /*strict=*/true);
    const mmt::Vocab vocab = mmt::data_vocab(cfg);
    mmt::PretrainBatcher batcher(world, vocab, cfg);
    const auto& scenes = world.train_scenes();
    mmt::TrainOptions swap_images = cfg.train;  // the partners are found by their images' features
    swap_images.itm_swap = "image";
    int64_t hard = 0, hard_true = 0, unparsed = 0;
    double uniform = 0, uniform_true = 0;
    for (int64_t step = 0; step < batches; ++step) {
      mmt::Batch batch = batcher.batch(step);
      const auto keys = batch.image_key.contiguous();
      const auto ids = mmt::unmasked_text_ids(batch), mask = batch.text_mask;  // every row matched before the swaps
      const int64_t b = batch.size();
      // Each row's caption as the grammar's content (the synthetic vocabulary is whole words).
      std::vector<std::optional<mmt::synth::CaptionContent>> content(static_cast<size_t>(b));
      for (int64_t i = 0; i < b; ++i) {
        std::string text;
        for (int64_t t = 0; t < ids.size(1); ++t) {
          if (!mask[i][t].item<bool>()) continue;
          const std::string& w = vocab.token(ids[i][t].item<int64_t>());
          if (mmt::Vocab::is_special_token(w)) continue;
          text += (text.empty() ? "" : " ") + w;
        }
        content[static_cast<size_t>(i)] = mmt::synth::parse_caption(text);
        if (!content[static_cast<size_t>(i)]) ++unparsed;
      }
      auto true_of = [&](int64_t caption_row, int64_t scene) {
        return content[static_cast<size_t>(caption_row)] &&
               mmt::synth::caption_true_of(*content[static_cast<size_t>(caption_row)], scenes.at(static_cast<size_t>(scene)));
      };
      // Uniform random negatives, exactly: each marked row's expected truth over the other-image rows.
      const auto marked = batch.hard_negative_rows.clone();
      for (int64_t i = 0; i < b; ++i) {
        if (!marked[i].item<bool>()) continue;
        int64_t others = 0, truths = 0;
        for (int64_t j = 0; j < b; ++j)
          if (keys[j].item<int64_t>() != keys[i].item<int64_t>()) ++others, truths += true_of(i, keys[j].item<int64_t>());
        if (others > 0) uniform += 1, uniform_true += static_cast<double>(truths) / static_cast<double>(others);
      }
      // Hard negatives: the rows' images after the model's choice, found by their features.
      const auto before = batch.region_feats.clone();
      {
        torch::NoGradGuard no_grad;
        mmt::apply_hard_negatives(*model, batch, swap_images, step);
      }
      for (int64_t i = 0; i < b; ++i) {
        if (batch.itm_labels[i].item<int64_t>() != 0) continue;
        for (int64_t j = 0; j < b; ++j) {
          if (keys[j].item<int64_t>() == keys[i].item<int64_t>() || !torch::equal(batch.region_feats[i], before[j])) continue;
          ++hard, hard_true += true_of(i, keys[j].item<int64_t>());
          break;
        }
      }
    }
    std::cout << nlohmann::json({{"weights", weights.empty() ? "untrained" : weights},
                                 {"temperature", cfg.train.itm_hard_temperature},
                                 {"overrides", overrides},
                                 {"scored_by", model->has_align() ? "align head" : "ITM"},
                                 {"uniform_negatives", uniform},
                                 {"uniform_true_share", uniform > 0 ? uniform_true / uniform : 0.0},
                                 {"hard_negatives", hard},
                                 {"hard_true_share", hard > 0 ? static_cast<double>(hard_true) / static_cast<double>(hard) : 0.0},
                                 {"captions_not_parsed", unparsed}})
                     .dump()
              << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "mmt_bench_negative_truth: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
