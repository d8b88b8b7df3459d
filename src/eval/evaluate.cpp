/* `mmt eval` (see evaluate.h). */
#include "mmt/eval/evaluate.h"

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <ostream>

#include "mmt/config/config.h"
#include "mmt/data/image_source.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/eval/ceilings.h"
#include "mmt/eval/exact_scorer.h"
#include "mmt/train/progress.h"
#include "mmt/train/run_dir.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"
#include "mmt/util/runtime.h"

namespace mmt {

using nlohmann::json;

namespace {

json direction_json(const DirectionMetrics& d) {
  return {{"r1", d.r1},
          {"r5", d.r5},
          {"r10", d.r10},
          {"median_rank", d.median_rank},
          {"mean_rank", d.mean_rank},
          {"rsum", d.rsum()}};
}

std::string row(const std::string& name, const RetrievalMetrics& m) {
  char buf[256];
  const auto &ir = m.image_retrieval, &tr = m.text_retrieval;
  std::snprintf(buf, sizeof buf, "| %-13s | %6.1f | %6.1f | %6.1f | %7.1f | %6.1f | %6.1f | %6.1f | %7.1f |\n",
                name.c_str(), ir.r1, ir.r5, ir.r10, ir.median_rank, tr.r1, tr.r5, tr.r10, tr.median_rank);
  return buf;
}

// Overrides allowed at evaluation: they change what is measured, not the trained model.
void check_eval_overrides(const ExperimentConfig& trained, const ExperimentConfig& now) {
  json a = config_to_json(trained), b = config_to_json(now);
  for (auto* j : {&a, &b}) {
    j->erase("eval");
    j->erase("runtime");
    (*j)["data"]["synth"].erase("num_test_images");
    (*j)["data"]["synth"].erase("captions_per_image");
  }
  if (a != b)
    throw Error("mmt eval --set may change only eval.*, runtime.*, data.synth.num_test_images and "
                "data.synth.captions_per_image; the rest is fixed by the trained run");
}

}  // namespace

json metrics_json(const RetrievalMetrics& m) {
  return {{"image_retrieval", direction_json(m.image_retrieval)},
          {"text_retrieval", direction_json(m.text_retrieval)},
          {"num_images", m.num_images},
          {"num_captions", m.num_captions}};
}

std::string results_table(const std::string& title, const RetrievalMetrics& model, const Ceilings& c) {
  std::string out = "### " + title + "\n\n";
  out += "|               | image retrieval (caption -> image) |||| text retrieval (image -> caption) ||||\n";
  out += "| scorer        |    R@1 |    R@5 |   R@10 | median |    R@1 |    R@5 |   R@10 | median |\n";
  out += "|---------------|-------:|-------:|-------:|-------:|-------:|-------:|-------:|-------:|\n";
  out += row("**model**", model);
  out += row("chance", c.chance);
  out += row("bag-of-words", c.bag_of_words);
  out += row("truth", c.truth);
  out += row("perfect", c.perfect);
  return out;
}

json evaluate_run(const std::string& run_dir, const std::vector<std::string>& overrides, std::ostream& out,
                  std::ostream& log) {
  LoadedRun run = load_run(run_dir);
  ExperimentConfig cfg = run.config;
  for (const auto& o : overrides) apply_override(cfg, o);
  validate_config(cfg);
  check_eval_overrides(run.config, cfg);
  log << "mmt eval: " << configure_runtime(cfg.runtime, log) << "\n";

  const json side = parse_json_with_comments(read_file(RunFiles(run_dir).checkpoint()), "checkpoint.json");
  const bool fine_tuned = side.contains("fine_tuned_on") && !side["fine_tuned_on"].empty();
  const std::string label = fine_tuned ? "fine-tuned" : "zero-shot";

  if (cfg.data.source != "synthetic")
    throw Error(run_dir + " was trained on real datasets; evaluating it on Karpathy test splits (Flickr30k 1k, COCO "
                "5k / 1k) is not built yet (the evaluation-protocols issue); mmt eval reads the synthetic test sets only");
  const synth::World world(cfg.data.synth);
  json result = {{"run", run_dir},
                 {"step", run.step},
                 {"mode", cfg.eval.mode},
                 {"label", label},
                 {"label_reason", fine_tuned ? "the run was fine-tuned on retrieval data"
                                             : "pretrained only, on synthetic train scenes disjoint from every "
                                               "test scene; no retrieval fine-tuning"},
                 {"test_sets", json::object()}};
  std::string markdown = "## Zero-shot retrieval: " + run_dir + " (step " + std::to_string(run.step) + ", " +
                         cfg.eval.mode + " ITM scoring, " + label + ")\n\n";
  double total_seconds = 0;
  for (const auto& name : cfg.eval.test_sets) {
    const synth::TestSet& test = world.test_set(name);
    std::vector<std::vector<int64_t>> captions;
    for (const auto& c : test.captions) captions.push_back(run.vocab.encode(c.text, cfg.model.max_text_len));
    const int64_t ni = static_cast<int64_t>(test.images.size()), nc = static_cast<int64_t>(captions.size());
    Progress progress("eval " + name, ni * nc, log, "pairs");
    ExactScorerOptions so;
    so.pair_batch = cfg.eval.pair_batch;
    const SyntheticImages images(test.images, test.regions, cfg);
    const auto scores = score_exact(*run.model, captions, images, so,
                                    [&](int64_t done, int64_t) { progress.update(done); });
    const double seconds = progress.elapsed();
    progress.finish(ni * nc);
    total_seconds += seconds;

    const RetrievalMetrics m = retrieval_metrics(scores, ni, test.caption_image);
    const Ceilings c = test_set_ceilings(test);
    json entry = metrics_json(m);
    entry["mode"] = cfg.eval.mode;
    entry["label"] = label;
    entry["wall_time_s"] = seconds;
    entry["pairs_per_s"] = static_cast<double>(ni * nc) / std::max(1e-9, seconds);
    entry["ceilings"] = {{"chance", metrics_json(c.chance)},
                         {"bag_of_words", metrics_json(c.bag_of_words)},
                         {"truth", metrics_json(c.truth)},
                         {"perfect", metrics_json(c.perfect)}};
    result["test_sets"][name] = entry;
    char title[256];
    std::snprintf(title, sizeof title, "%s: %ld images x %ld captions, %.1f s (%.0f pairs/s)", name.c_str(),
                  long(ni), long(nc / std::max<int64_t>(1, ni)), seconds, entry["pairs_per_s"].get<double>());
    markdown += results_table(title, m, c) + "\n";
  }
  result["wall_time_s"] = total_seconds;
  markdown +=
      "R@K in percent; median = median rank of the first correct item; ties count as a uniformly random\n"
      "order. Reference scorers on the same test set: chance (constant score); bag-of-words (knows the\n"
      "attributes present, not which object has which); truth (knows whether the caption is true of the\n"
      "image); perfect (Bayes-optimal: the grammar's exact likelihood - the ceiling). docs/evaluation.md\n";
  const RunFiles files(run_dir);
  write_file_atomic(files.eval_json(), result.dump(2) + "\n");
  write_file_atomic(files.eval_md(), markdown);
  out << markdown << std::flush;
  return result;
}

}  // namespace mmt
