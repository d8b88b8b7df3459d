/* Benchmark: retrieval scoring throughput (pairs/s) of one untrained model on fixed-shape random
 * captions and region images - exact (cached or not), dual, or rerank - with the FLOP-based
 * expectation of what caching the unimodal layers should save. Figures and commands:
 * docs/performance.md (bench/run_eval.sh). */
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "mmt/config/config.h"
#include "mmt/data/batch.h"
#include "mmt/data/image_source.h"
#include "mmt/eval/exact_scorer.h"
#include "mmt/eval/score_modes.h"
#include "mmt/model/flops.h"
#include "mmt/model/input_dims.h"
#include "mmt/model/transformer.h"
#include "mmt/util/runtime.h"

namespace {

// Random region images, all with the same number of tokens.
class RandomRegions : public mmt::ImageSource {
 public:
  RandomRegions(int64_t n, int64_t tokens, int64_t feat)
      : feats_(torch::randn({n, tokens, feat})), boxes_(torch::rand({n, tokens, 5})), tokens_(tokens) {}
  int64_t size() const override { return feats_.size(0); }
  int64_t tokens(int64_t) const override { return tokens_; }
  void fill(const std::vector<int64_t>& images, mmt::Batch& b) const override {
    const auto idx = torch::tensor(images);
    b.region_feats = feats_.index_select(0, idx), b.region_boxes = boxes_.index_select(0, idx);
    b.region_mask = torch::ones({static_cast<int64_t>(images.size()), tokens_}, torch::kBool);
  }

 private:
  torch::Tensor feats_, boxes_;
  int64_t tokens_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mmt_bench_eval: retrieval scoring throughput"};
  std::vector<std::string> sets;
  int64_t images = 50, captions = 250, text = 20, image_tokens = 37, feat = 2048, k = 128;
  std::string mode = "exact";
  bool no_cache = false;
  app.add_option("--set", sets, "config overrides (model.preset=base, model.layers=..., eval.pair_batch=...)")->take_all();
  app.add_option("--images", images, "images of the set");
  app.add_option("--captions", captions, "captions of the set");
  app.add_option("--text-tokens", text, "tokens per caption ([CLS] and [SEP] included)");
  app.add_option("--image-tokens", image_tokens, "tokens per image (regions + global)");
  app.add_option("--feature-dim", feat, "region feature size");
  app.add_option("--mode", mode, "exact, dual or rerank");
  app.add_option("--k", k, "rerank: candidates per query");
  app.add_flag("--no-cache", no_cache, "exact: every pair from the embeddings up");
  CLI11_PARSE(app, argc, argv);
  try {
    std::vector<std::string> overrides;
    for (const auto& s : sets) overrides.push_back(s);
    const auto cfg = mmt::load_config("", overrides);
    const std::string threads = mmt::configure_runtime(cfg.runtime, std::cerr);
    torch::manual_seed(0);
    const mmt::InputDims dims{1000, feat};
    mmt::MultimodalTransformer model(cfg.model, dims);
    std::vector<std::vector<int64_t>> caps(static_cast<size_t>(captions));
    for (auto& c : caps) {
      c.push_back(2);
      for (int64_t t = 0; t < text - 2; ++t) c.push_back(5 + torch::randint(900, {1}).item<int64_t>());
      c.push_back(3);
    }
    const RandomRegions source(images, image_tokens, feat);
    mmt::ExactScorerOptions so = mmt::scorer_options(cfg);  // as `mmt eval` scores (eval.threads: all cores)
    so.cache = so.cache && !no_cache;
    const auto t0 = std::chrono::steady_clock::now();
    mmt::PairScorer scorer(*model, caps, source, so);
    int64_t itm_pairs = 0;
    if (mode == "exact") scorer.all_pairs(), itm_pairs = images * captions;
    else if (mode == "dual") scorer.dual_scores();
    else itm_pairs = mmt::rerank(scorer, scorer.dual_scores(), k).pairs_scored;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    // What caching should save: per pair, the layers from the first cross-modal one up, plus the
    // unimodal prefix once per caption and once per image, against the whole stack per pair.
    const int64_t prefix = model->first_cross_modal_layer(), layers = static_cast<int64_t>(model->layers->size());
    auto stack = [&](int64_t begin, int64_t end) {
      mmt::ModelOptions m = cfg.model;
      const auto types = mmt::layer_types(cfg.model);
      m.layers.clear();
      for (int64_t l = begin; l < end; ++l) m.layers.push_back(mmt::attention_type_name(types[l]));
      m.num_layers = end - begin;
      return m;
    };
    const double full = mmt::forward_flops(cfg.model, dims, text, image_tokens, 0);
    double expected = 1.0;
    if (prefix > 0 && prefix < layers) {
      const double top = mmt::forward_flops(stack(prefix, layers), dims, text, image_tokens, 0);
      const double bottom = mmt::forward_flops(stack(0, prefix), dims, text, image_tokens, 0);
      expected = full / (top + bottom * (1.0 / images + 1.0 / captions));
    }
    const nlohmann::json out = {{"mode", mode},
                                {"cache", !no_cache},
                                {"images", images},
                                {"captions", captions},
                                {"seconds", s},
                                {"pairs_per_s", images * captions / s},
                                {"itm_pairs", itm_pairs},
                                {"prefix_layers", prefix},
                                {"layers", layers},
                                {"expected_cache_speedup_by_flops", expected},
                                {"threads", threads},
                                {"scoring_threads", so.threads}};
    std::cout << out.dump() << "\n";
  } catch (const std::exception& e) {
    std::cerr << "mmt_bench_eval: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
