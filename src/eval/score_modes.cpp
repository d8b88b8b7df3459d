/* Scoring a test set in the configured mode (see score_modes.h). */
#include "mmt/eval/score_modes.h"

#include <algorithm>
#include <ostream>

#include "mmt/config/options.h"
#include "mmt/data/image_source.h"
#include "mmt/eval/exact_scorer.h"
#include "mmt/io/npy.h"
#include "mmt/model/transformer.h"
#include "mmt/train/distributed.h"
#include "mmt/train/progress.h"
#include "mmt/data/batch.h"
#include "mmt/util/device.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"
#include "mmt/util/runtime.h"

namespace mmt {

namespace {

std::vector<float> first_stage_file(std::string path, const std::string& name, int64_t nc, int64_t ni) {
  const auto at = path.find("{split}");
  if (at != std::string::npos) path.replace(at, 7, name);
  if (!file_exists(path)) throw Error("eval.first_stage: '" + path + "' not found (a .npy of captions x images scores)");
  const NpyArray a = load_npy(path);
  if (a.shape != std::vector<int64_t>{nc, ni})
    throw Error("eval.first_stage: '" + path + "' has shape " + shape_string(a.shape) + ", but the test set '" + name +
                "' has " + std::to_string(nc) + " captions x " + std::to_string(ni) + " images");
  return a.to_float(path);
}

// Distributed exact scoring (mmt eval under torchrun / srun): the distinct captions are split
// between the ranks by rows, each rank scores its rows against every image, the rows are gathered
// and every rank holds the whole matrix. Sharding distinct captions (not caption items) keeps the
// single-process guarantee that identical captions get bitwise identical scores, and scores each
// of them once.
std::vector<float> distributed_exact(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
                                     const ImageSource& images, const ExactScorerOptions& so, Communicator& comm,
                                     Progress& progress) {
  const int64_t nc = static_cast<int64_t>(captions.size()), ni = images.size();
  const DistinctCaptions distinct = distinct_captions(captions);
  const int64_t nd = static_cast<int64_t>(distinct.rows.size());
  std::vector<int64_t> rows_of;
  for (int r = 0; r < comm.size(); ++r) {
    const auto [b, end] = shard_range(nd, r, comm.size());
    rows_of.push_back(end - b);
  }
  const auto [begin, end] = shard_range(nd, comm.rank(), comm.size());
  const std::vector<std::vector<int64_t>> mine(distinct.rows.begin() + begin, distinct.rows.begin() + end);
  std::vector<float> local;
  if (!mine.empty()) {
    PairScorer shard(model, mine, images, so);
    // Progress in pairs of the whole matrix: this rank's share, times the ranks, times the
    // captions each distinct row stands for on average.
    local = shard.all_pairs([&](int64_t done, int64_t) { progress.update(done * comm.size() * nc / std::max<int64_t>(1, nd)); });
  }
  const auto rows = torch::from_blob(local.data(), {end - begin, ni}, torch::kFloat32);
  const auto all = all_gather_rows(comm, rows, rows_of, "exact score rows").contiguous();
  const float* a = all.data_ptr<float>();
  std::vector<float> scores(static_cast<size_t>(nc * ni));
  for (int64_t c = 0; c < nc; ++c) {
    const int64_t row = distinct.row_of[static_cast<size_t>(c)];
    std::copy(a + row * ni, a + (row + 1) * ni, scores.begin() + c * ni);
  }
  return scores;
}

}  // namespace

ExactScorerOptions scorer_options(const ExperimentConfig& cfg) {
  const auto& e = cfg.eval;
  ExactScorerOptions so;
  so.cache = e.cache, so.device = cfg.runtime.device, so.bf16 = use_bf16(cfg.runtime);
  const bool cpu = resolve_device(cfg.runtime.device).is_cpu();
  so.pair_batch = e.pair_batch > 0 ? e.pair_batch : cpu ? so.kCpuPairBatch : so.kCudaPairBatch;  // 0 = by device
  if (cpu) so.threads = e.threads > 0 ? e.threads : cores_per_process();
  return so;
}

TestSetScores score_captions(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
                             const ImageSource& images, const ExperimentConfig& cfg, const std::string& name,
                             std::ostream& log) {
  const auto& e = cfg.eval;
  const int64_t nc = static_cast<int64_t>(captions.size()), ni = images.size();
  const ExactScorerOptions so = scorer_options(cfg);
  TestSetScores out;
  out.info = {{"mode", e.mode}, {"device", resolve_device(cfg.runtime.device).str()}, {"precision", resolved_precision(cfg.runtime)}};
  if (e.mode == "exact") out.info["cache"] = e.cache;
  // How the pair passes ran, where any run: what their speed and memory depend on.
  if (e.mode != "dual" && !scores_by_one_product(model, so)) {
    out.info["pair_batch"] = so.pair_batch;
    if (so.threads > 1) out.info["scoring_threads"] = so.threads;
  }
  Progress progress("eval " + name, nc * ni, log, "pairs");  // dual: every pair at once
  int64_t itm_pairs = 0;
  const auto group = current_communicator();
  if (e.mode == "exact" && group && group->size() > 1) {
    out.scores = distributed_exact(model, captions, images, so, *group, progress);
    out.info["processes"] = group->size();
    itm_pairs = nc * ni;
    progress.finish(nc * ni);
  } else {
    PairScorer scorer(model, captions, images, so);
    if (e.mode == "exact") {
      out.scores = scorer.all_pairs([&](int64_t done, int64_t) { progress.update(done); });
      itm_pairs = nc * ni;
      progress.finish(nc * ni);
    } else if (e.mode == "dual") {
      out.scores = scorer.dual_scores();
      out.info["scores"] = scorer.dual_description();
      progress.finish(nc * ni);
    } else {  // rerank
      std::vector<float> first;
      if (e.first_stage == "dual") {
        first = scorer.dual_scores();
        out.info["first_stage"] = "dual: " + scorer.dual_description();
        if (model.crosses_modalities() && !model.has_align())
          log << "mmt eval: warning: the rerank first stage is this model's " << scorer.dual_description()
              << "; nothing trained those vectors to match, so the right candidate is often outside the top "
              << e.rerank_k << " (docs/performance.md measured image R@1 18 -> 4). A trained dual encoder's scores make "
              << "a good first stage: eval.first_stage=<its eval-{split}-scores.npy>\n";
      } else {
        first = first_stage_file(e.first_stage, name, nc, ni);
        out.info["first_stage"] = e.first_stage;
      }
      RerankScores r = rerank(scorer, first, e.rerank_k, [&](int64_t done, int64_t total) {
        progress.update(done * nc * ni / std::max<int64_t>(1, total));
      });
      progress.finish(nc * ni);
      itm_pairs = r.pairs_scored;
      out.info["rerank_k"] = {{"images_per_caption", r.k_images}, {"captions_per_image", r.k_captions}};
      out.scores = std::move(r.caption_to_image);
      out.image_to_caption = std::move(r.image_to_caption);
    }
  }
  out.seconds = progress.elapsed();
  out.info["wall_time_s"] = out.seconds;
  out.info["pairs_per_s"] = static_cast<double>(nc * ni) / std::max(1e-9, out.seconds);  // pairs ranked
  out.info["itm_pairs"] = itm_pairs;  // pairs through the ITM head
  return out;
}

TestSetScores score_test_set(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
                             const ImageSource& images, const std::vector<int64_t>& caption_image,
                             const ExperimentConfig& cfg, const std::string& name, std::ostream& log) {
  TestSetScores out = score_captions(model, captions, images, cfg, name, log);
  out.outcomes = retrieval_outcomes(out.scores, images.size(), caption_image,
                                    out.image_to_caption.empty() ? nullptr : &out.image_to_caption);
  out.metrics = summarise(out.outcomes);
  return out;
}

std::vector<std::string> save_scores(const TestSetScores& s, const std::string& dir, const std::string& stem,
                                     int64_t num_captions, int64_t num_images) {
  std::vector<std::string> names{stem + "-scores.npy"};
  save_npy(dir + "/" + names[0], s.scores.data(), {num_captions, num_images});
  if (!s.image_to_caption.empty()) {
    names.push_back(stem + "-scores-i2t.npy");
    save_npy(dir + "/" + names[1], s.image_to_caption.data(), {num_captions, num_images});
  }
  return names;
}

}  // namespace mmt
