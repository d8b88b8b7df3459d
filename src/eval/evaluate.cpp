/* `mmt eval` (see evaluate.h). */
#include "mmt/eval/evaluate.h"

#include "mmt/train/dist_env.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <ostream>

#include "mmt/config/config.h"
#include "mmt/data/image_source.h"
#include "mmt/data/record_images.h"
#include "mmt/eval/protocols.h"
#include "mmt/text/tokenizer.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/eval/bootstrap.h"
#include "mmt/eval/ceilings.h"
#include "mmt/eval/compare.h"
#include "mmt/io/npy.h"
#include "mmt/eval/score_modes.h"
#include "mmt/train/progress.h"
#include "mmt/train/run_dir.h"
#include "mmt/util/error.h"
#include "mmt/util/tee_log.h"
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

BootstrapSettings bootstrap_settings(const ExperimentConfig& cfg) {
  BootstrapSettings s;
  s.samples = cfg.eval.bootstrap;
  return s;
}

// Bootstrap intervals as eval.json keeps them: {samples, level, seed, unit, image_retrieval: {r1:
// [low, high], ...}, text_retrieval: {...}, rsum: [low, high]}.
json intervals_json(const std::vector<Interval>& intervals, const BootstrapSettings& s, const std::string& unit) {
  json b = {{"samples", s.samples}, {"level", s.level}, {"seed", s.seed}, {"unit", unit}};
  b["rsum"] = {intervals.at(6).low, intervals.at(6).high};
  for (size_t k = 0; k < 6; ++k) {
    const std::string& metric = recall_names()[k];  // image_r1 -> image_retrieval.r1
    const size_t cut = metric.find('_');
    b[metric.substr(0, cut) + "_retrieval"][metric.substr(cut + 1)] = {intervals[k].low, intervals[k].high};
  }
  return b;
}

// Bootstrap intervals as one line under a table; `images` says what was resampled.
std::string interval_line(const std::string& name, const json& b, const std::string& images) {
  char buf[512];
  auto iv = [&](const char* dir, const char* k) {
    const auto& v = b.at(dir).at(k);
    char s[32];
    std::snprintf(s, sizeof s, "%.1f-%.1f", v[0].get<double>(), v[1].get<double>());
    return std::string(s);
  };
  std::snprintf(buf, sizeof buf,
                "%s, %.0f %% intervals (bootstrap over %s, %lld resamplings): image R@1 %s, R@5 %s, "
                "R@10 %s; text R@1 %s, R@5 %s, R@10 %s; RSUM %.1f-%.1f\n",
                name.c_str(), 100 * b.at("level").get<double>(), images.c_str(),
                static_cast<long long>(b.at("samples").get<int64_t>()), iv("image_retrieval", "r1").c_str(),
                iv("image_retrieval", "r5").c_str(), iv("image_retrieval", "r10").c_str(),
                iv("text_retrieval", "r1").c_str(), iv("text_retrieval", "r5").c_str(), iv("text_retrieval", "r10").c_str(),
                b.at("rsum")[0].get<double>(), b.at("rsum")[1].get<double>());
  return buf;
}

// A rank (a median, or a rank with ties counted in random order) as written: whole, or with its
// fraction (36.5 - printf's %.0f made it 36, and 51.5 52).
std::string rank_text(double rank) {
  char buf[32];
  std::snprintf(buf, sizeof buf, rank == std::floor(rank) ? "%.0f" : "%.1f", rank);
  return buf;
}

// eval.examples captions missed at R@1, each with its image and the other image scored highest
// (`describe(i)`: image i in words - a synthetic scene's objects, a real image's file; `is_true(c,
// i)`, where the data can tell, whether caption c is true of image i - a miss or another image the
// caption describes): a Markdown table, and the same in entry["missed_at_r1"].
std::string missed_section(const std::string& name, const TestSetScores& scored, int64_t ni,
                           const std::vector<int64_t>& caption_image, const std::vector<std::string>& captions,
                           const std::function<std::string(int64_t)>& describe,
                           const std::function<bool(int64_t, int64_t)>& is_true, int64_t k, json& entry) {
  const int64_t nc = static_cast<int64_t>(caption_image.size());
  if (k <= 0 || static_cast<int64_t>(scored.scores.size()) != nc * ni || ni < 2) return "";
  int64_t total = 0;
  const auto missed = missed_captions(scored.scores, ni, caption_image, scored.outcomes, k, &total);
  entry["missed_at_r1"] = json::array();
  if (missed.empty()) return "";
  std::string md = name + ": " + std::to_string(total) + " of the " + std::to_string(nc) + " captions missed at R@1; " +
                   std::to_string(missed.size()) + " of them (evenly spaced), each with the other image scored highest\n\n| caption | its image | its "
                   "image's rank | scored highest instead |" + (is_true ? " caption true of it |" : "") + "\n|---|---|---|---|" +
                   (is_true ? "---|" : "") + "\n";
  for (const auto& m : missed) {
    const int64_t own = caption_image[m.caption];
    const std::string rank = rank_text(m.rank);
    const std::string found = describe(m.found);
    md += "| " + markdown_cell(captions[m.caption]) + " | " + markdown_cell(describe(own)) + " | " + rank + " | " +
          markdown_cell(found) + " |";
    json row = {{"caption_index", m.caption}, {"caption", captions[m.caption]}, {"image", own},
                {"rank", m.rank},          {"found_image", m.found},           {"found", found}};
    if (is_true) {
      row["found_true"] = is_true(m.caption, m.found);
      md += row["found_true"].get<bool>() ? " yes |" : " no |";
    }
    md += "\n";
    entry["missed_at_r1"].push_back(row);
  }
  return md;
}

// Whether the weights evaluated (the final ones, or <run>/best) come from retrieval fine-tuning:
// their sidecar lists what they were fine-tuned on.
bool was_fine_tuned(const std::string& run_dir, bool best) {
  const RunFiles weights_dir(best ? RunFiles(run_dir).best() : run_dir);
  const json side = parse_json_with_comments(read_file(weights_dir.checkpoint()), weights_dir.checkpoint());
  return side.contains("fine_tuned_on") && !side["fine_tuned_on"].empty();
}

// Overrides allowed at evaluation: they change what is measured, not the trained model.
void check_eval_overrides(const ExperimentConfig& trained, const ExperimentConfig& now) {
  // Not config_identity: what it lets a resumed run change (train.steps, the loader's threads)
  // means nothing to an evaluation, and accepting it silently would suggest it did.
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
  // Training excluded the layouts of the first max(5,000, its num_test_images) scenes of each test
  // stream; more test images could include training scenes.
  const int64_t reserved = std::max<int64_t>(5000, trained.data.synth.num_test_images);
  if (now.data.synth.num_test_images > reserved)
    throw Error("data.synth.num_test_images = " + std::to_string(now.data.synth.num_test_images) + ": this run's "
                "training kept only the first " + std::to_string(reserved) + " scenes of each test stream out of its "
                "training data; more test images could include scenes it trained on");
}

ExperimentConfig with_eval_overrides(const ExperimentConfig& trained, const std::vector<std::string>& overrides) {
  ExperimentConfig cfg = trained;
  for (const auto& o : overrides) apply_override(cfg, o);
  validate_config(cfg);
  check_eval_overrides(trained, cfg);
  return cfg;
}

// What both evaluations share: the run loaded, the overrides applied and checked, the threads
// set; under torchrun every rank scores its share and rank 0 alone prints and writes.
struct Evaluation {
  std::ostream discard{nullptr};
  const bool root = is_root_process();
  std::ostream& out;
  TeeLog tee;  // the log, also appended to <run>/eval.log (rank 0)
  std::ostream& log;
  LoadedRun run;
  ExperimentConfig cfg;
  const bool best;  // <run>/best's weights

  // The stem of a test set's or split's files beside the result: eval[-best]-<name>.
  std::string set_stem(const std::string& name) const {
    return std::string(best ? "eval-best-" : "eval-") + name;
  }

  Evaluation(const std::string& run_dir, const std::vector<std::string>& overrides, std::ostream& out_all,
             std::ostream& log_all, bool best)
      : out(root ? out_all : discard), tee(log_all), log(root ? static_cast<std::ostream&>(tee) : discard),
        run(load_run(run_dir, best)), cfg(with_eval_overrides(run.config, overrides)), best(best) {
    if (root) {
      tee.open_file(run_dir + "/eval.log");
      tee.file_only("mmt eval: started " + utc_timestamp() + (best ? " (best weights)" : ""));
    }
    log << "mmt eval: " << configure_runtime(cfg.runtime, log) << "\n";
  }

  // One test set's or split's entry of the result: metrics, how they were scored, the score files,
  // the caption -> image map and the test set's fingerprint (what `mmt compare` reads), and the
  // bootstrap intervals of the recalls.
  json entry(const TestSetScores& scored, const std::string& run_dir, const std::string& name, int64_t nc, int64_t ni,
             const std::vector<int64_t>& caption_image, const std::string& fingerprint) const {
    json e = metrics_json(scored.metrics);
    e.update(scored.info);
    e["test_set_fingerprint"] = fingerprint;
    if (root) {
      const std::string stem = set_stem(name);
      e["scores_files"] = save_scores(scored, run_dir, stem, nc, ni);
      e["caption_image_file"] = stem + "-caption-image.npy";
      save_npy(run_dir + "/" + stem + "-caption-image.npy", caption_image.data(), {nc});
      e["outcomes_file"] = stem + "-outcomes.npy";
      save_outcomes(run_dir + "/" + stem + "-outcomes.npy", scored.outcomes);
    }
    if (cfg.eval.bootstrap > 0) {
      const BootstrapSettings s = bootstrap_settings(cfg);
      e["bootstrap"] = intervals_json(bootstrap_intervals(scored.outcomes, caption_image, s), s, "test image with its captions");
    }
    return e;
  }

  // The result file (RunFiles::eval_result) and the .md beside it (rank 0); the Markdown on `out`.
  void finish(const std::string& file, json result, const std::string& markdown) {
    result["peak_rss_mb"] = peak_resident_mb();  // this process's, at the end
    if (root) {
      write_file_atomic(file, result.dump(2) + "\n");
      write_file_atomic(std::filesystem::path(file).replace_extension(".md").string(), markdown);
    }
    out << markdown << std::flush;
  }
};

// true@1 of a synthetic test set (docs/synthetic.md): R@1 with every image the caption is true
// of a hit, not its own only. Into `entry`: the model's value beside the reference scorers', its
// interval over the test images (the recalls' resamplings) and the file of each caption's hit
// (what mmt compare and the study report pair). Returns eval.md's line.
std::string true_at_1_section(const std::string& name, const std::vector<float>& scores, const std::vector<float>& truth,
                              const std::vector<int64_t>& caption_image, const TrueAtOne& reference,
                              const std::string& run_dir, const Evaluation& ev, json& entry) {
  const int64_t nc = static_cast<int64_t>(caption_image.size()), ni = static_cast<int64_t>(scores.size()) / nc;
  std::vector<double> hits;
  const double t1 = r1_any_relevant(scores, truth, ni, &hits);
  entry["true_at_1"] = {{"model", t1}, {"chance", reference.chance}, {"bag_of_words", reference.bag_of_words}};
  if (ev.root) {
    const std::string file = ev.set_stem(name) + "-true-at-1.npy";
    save_npy(run_dir + "/" + file, hits.data(), {nc});
    entry["true_at_1"]["per_caption_file"] = file;
  }
  char interval[64] = "";
  if (ev.cfg.eval.bootstrap > 0) {
    const Interval iv = bootstrap_caption_mean(hits, caption_image, ni, bootstrap_settings(ev.cfg));
    entry["true_at_1"]["interval"] = {iv.low, iv.high};
    std::snprintf(interval, sizeof interval, " (%.1f-%.1f)", iv.low, iv.high);
  }
  char line[448];
  std::snprintf(line, sizeof line,
                "%s, true@1 (the top image is one the caption is true of, its own or another): model %.1f%s, chance "
                "%.1f, bag-of-words %.1f (truth and perfect: 100 by construction); R@1 counts its own image only\n\n",
                name.c_str(), t1, interval, reference.chance, reference.bag_of_words);
  return line;
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

std::string mode_phrase(const ExperimentConfig& cfg) {
  const auto& e = cfg.eval;
  const bool cosine = cfg.model.kind == "dual_encoder" && cfg.model.dual_score == "dot";  // no ITM head
  if (e.mode == "exact")
    return std::string(cosine ? "exact scoring by the dual encoder's scaled cosine" : "exact ITM scoring") +
           (e.cache ? "" : " (uncached)");
  if (e.mode == "dual") return "dual scoring";
  return "rerank: top " + std::to_string(e.rerank_k) + " of " + (e.first_stage == "dual" ? "dual" : e.first_stage) +
         " by ITM";
}

std::string markdown_cell(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  for (size_t at = 0; (at = text.find('|', at)) != std::string::npos; at += 2) text.insert(at, "\\");
  return text;
}

std::unique_ptr<Tokenizer> run_tokenizer(const ExperimentConfig& cfg, const Vocab& vocab) {
  const std::string& tk = cfg.data.tokenizer;
  if (tk.size() > 6 && tk.compare(tk.size() - 6, 6, ".model") == 0) return SentencePieceTokenizer::load(tk);
  BasicTokenizerOptions basic;
  basic.lower_case = !cfg.data.cased;
  return std::make_unique<WordPieceTokenizer>(vocab, basic);
}

ExperimentConfig eval_config(const std::string& run_dir, const std::vector<std::string>& overrides) {
  return with_eval_overrides(load_config(run_dir + "/config.json", {}), overrides);
}

json evaluate_run(const std::string& run_dir, const std::vector<std::string>& overrides, std::ostream& out_all,
                  std::ostream& log_all, bool best) {
  Evaluation ev(run_dir, overrides, out_all, log_all, best);
  const ExperimentConfig& cfg = ev.cfg;
  LoadedRun& run = ev.run;
  const bool fine_tuned = was_fine_tuned(run_dir, best);
  const std::string label = fine_tuned ? "fine-tuned" : "zero-shot";

  if (cfg.data.source != "synthetic")
    throw Error(run_dir + " was trained on real datasets: evaluate it on real images with --protocol (flickr30k-1k, "
                "coco-5k, coco-1k, test, val) and --karpathy FILE; without them mmt eval reads the synthetic test sets");
  const synth::World world(cfg.data.synth);
  json result = {{"run", run_dir},
                 {"step", run.step},
                 {"weights", best ? "best (validation RSUM during training)" : "final"},
                 {"mode", cfg.eval.mode},
                 {"label", label},
                 {"label_reason", fine_tuned ? "the run was fine-tuned on retrieval data"
                                             : "pretrained only, on synthetic train scenes disjoint from every "
                                               "test scene; no retrieval fine-tuning"},
                 {"test_sets", json::object()}};
  std::string markdown = "## Zero-shot retrieval: " + run_dir + " (step " + std::to_string(run.step) + ", " +
                         mode_phrase(cfg) + ", " + label + ")\n\n";
  double total_seconds = 0;
  for (const auto& name : cfg.eval.test_sets) {
    const synth::TestSet& test = world.test_set(name);
    std::vector<std::vector<int64_t>> captions;
    for (const auto& c : test.captions) captions.push_back(run.vocab.encode(c.text, cfg.model.max_text_len));
    const int64_t ni = static_cast<int64_t>(test.images.size()), nc = static_cast<int64_t>(captions.size());
    const SyntheticImages images(test.images, test.regions, cfg);
    const TestSetScores scored = score_test_set(*run.model, captions, images, test.caption_image, cfg, name, ev.log);
    total_seconds += scored.seconds;
    const RetrievalMetrics& m = scored.metrics;
    const std::vector<float> truth = truth_scores(test);  // caption x image: the ceilings, true@1, the misses
    const Ceilings c = test_set_ceilings(test, truth);
    std::vector<std::string> texts;
    for (const auto& c : test.captions) texts.push_back(c.text);
    json entry = ev.entry(scored, run_dir, name, nc, ni, test.caption_image,
                          test_set_fingerprint(ni, {}, texts, test.caption_image));
    entry["label"] = label;
    entry["ceilings"] = {{"chance", metrics_json(c.chance)},
                         {"bag_of_words", metrics_json(c.bag_of_words)},
                         {"truth", metrics_json(c.truth)},
                         {"perfect", metrics_json(c.perfect)}};
    char title[256];
    // Total captions, as training's evaluation lines say (it read "x 5 captions" for 1,500).
    std::snprintf(title, sizeof title, "%s: %ld images x %ld captions, %.1f s (%.0f pairs/s)", name.c_str(),
                  long(ni), long(nc), scored.seconds, entry["pairs_per_s"].get<double>());
    markdown += results_table(title, m, c) + "\n";
    if (entry.contains("bootstrap"))
      markdown += interval_line(name, entry["bootstrap"], "its " + std::to_string(ni) + " test images") + "\n";
    if (static_cast<int64_t>(scored.scores.size()) == nc * ni)
      markdown += true_at_1_section(name, scored.scores, truth, test.caption_image, c.true_at_1, run_dir, ev, entry);
    const std::string missed = missed_section(
        name, scored, ni, test.caption_image, texts, [&](int64_t i) { return synth::describe_scene(test.images[i]); },
        [&](int64_t cap, int64_t i) { return truth[cap * ni + i] != 0; },
        cfg.eval.examples, entry);
    result["test_sets"][name] = entry;
    if (!missed.empty()) markdown += missed + "\n";
  }
  result["wall_time_s"] = total_seconds;
  markdown +=
      "R@K in percent; median = median rank of the first correct item; ties count as a uniformly random\n"
      "order. Reference scorers on the same test set: chance (constant score); bag-of-words (knows the\n"
      "attributes present, not which object has which); truth (knows whether the caption is true of the\n"
      "image); perfect (Bayes-optimal: the grammar's exact likelihood - the ceiling). docs/evaluation.md\n";
  ev.finish(RunFiles(run_dir).eval_result("", ev.best), result, markdown);
  return result;
}

namespace {

// Which test images the run's pretraining data holds, by image file name and by the ids one
// photo has in several datasets (Record::aliases: a Visual Genome image that is a COCO or Flickr
// photo under another file name).
std::pair<int64_t, std::string> pretraining_overlap(const ExperimentConfig& cfg, const std::vector<Record>& test) {
  if (cfg.data.source != "datasets") return {0, "pretrained on the synthetic world only"};
  std::set<std::string> names;
  for (const auto& r : test) {
    names.insert(image_file_name(r));
    names.insert(r.aliases.begin(), r.aliases.end());
  }
  int64_t overlap = 0;
  std::string where, checked, unchecked;
  for (const auto& o : cfg.data.datasets) {
    DatasetSpec spec;
    spec.name = o.name, spec.format = o.format, spec.path = o.path, spec.images = o.images, spec.splits = o.splits;
    spec.split = o.split, spec.naming = o.naming, spec.check_images = false, spec.max_bad_fraction = 1.0;
    Dataset d;
    try {
      d = read_dataset(spec);
    } catch (const Error& e) {
      return {-1, "could not re-read pretraining dataset " + o.path + " to check for test images: " + e.what()};
    }
    int64_t here = 0;
    for (const auto& r : d.records) {
      bool in = names.count(image_file_name(r)) > 0;
      for (const auto& a : r.aliases) in = in || names.count(a) > 0;
      here += in;
    }
    if (here) where += (where.empty() ? "" : ", ") + d.spec.name + " (" + std::to_string(here) + ")";
    checked += (checked.empty() ? "" : ", ") + d.spec.name;
    if (o.format == "vg" && !std::filesystem::exists(vg_image_data_path(o.path)))
      unchecked += "; " + d.spec.name + "'s COCO and Flickr photos unchecked: Visual Genome's image_data.json (their ids) "
                   "is not beside " + o.path;
    overlap += here;
  }
  return {overlap, (overlap ? where : "checked by image file name and COCO / Flickr id against " + checked) + unchecked};
}

}  // namespace

json evaluate_protocol(const std::string& run_dir, const std::string& protocol, const std::string& karpathy,
                       const std::string& images, const std::string& features, const std::vector<std::string>& overrides,
                       std::ostream& out_all, std::ostream& log_all, bool best) {
  Evaluation ev(run_dir, overrides, out_all, log_all, best);
  const ExperimentConfig& cfg = ev.cfg;
  LoadedRun& run = ev.run;
  const std::unique_ptr<Tokenizer> tokenizer = run_tokenizer(cfg, run.vocab);
  const auto splits = load_protocol(protocol, karpathy, images);
  const bool fine_tuned = was_fine_tuned(run_dir, best);
  std::vector<Record> all;
  for (const auto& s : splits) all.insert(all.end(), s.images.begin(), s.images.end());
  const auto [overlap, where] = pretraining_overlap(cfg, all);
  std::string label = "zero-shot", reason = "no test image in the pretraining data (" + where + ")";
  if (cfg.data.source != "datasets") reason = where;
  if (overlap < 0) reason = "unverified: " + where;
  if (overlap > 0) label = "not zero-shot", reason = std::to_string(overlap) + " of " + std::to_string(all.size()) +
                                                    " test images are in the pretraining data: " + where;
  if (fine_tuned) label = "fine-tuned", reason = "the run was fine-tuned on retrieval data";

  const FeatureSource feats = FeatureSource::open(features);
  json result = {{"run", run_dir}, {"step", run.step}, {"protocol", protocol}, {"karpathy", karpathy}, {"mode", cfg.eval.mode},
                 {"label", label}, {"label_reason", reason}, {"splits", json::object()}};
  std::string markdown = "## " + protocol + ": " + run_dir + " (step " + std::to_string(run.step) + ", " + mode_phrase(cfg) + ", " +
                         label + ")\n\n" + reason + "\n\n| split | image R@1 | R@5 | R@10 | text R@1 | R@5 | R@10 | RSUM | "
                         "median rank (img / txt) | s | pairs/s |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
  std::map<std::string, double> mean;
  double total_seconds = 0;
  std::string intervals;  // one line per split, under the table
  std::string examples;   // captions missed at R@1, per split, under the intervals
  std::vector<RetrievalOutcomes> fold_outcomes;  // for the mean over folds' intervals
  std::vector<std::vector<int64_t>> fold_maps;
  for (const auto& split : splits) {
    std::vector<std::vector<int64_t>> captions;
    for (const auto& c : split.captions) captions.push_back(tokenizer->encode(c, cfg.model.max_text_len));
    const int64_t ni = static_cast<int64_t>(split.images.size()), nc = static_cast<int64_t>(captions.size());
    const RecordImages source(cfg, split.images, feats, run.model->dims().region_feat_dim, run.model->dims().region_classes);
    const TestSetScores scored = score_test_set(*run.model, captions, source, split.caption_image, cfg, split.name, ev.log);
    const double seconds = scored.seconds;
    total_seconds += seconds;
    const RetrievalMetrics& m = scored.metrics;
    std::vector<std::string> image_keys;
    for (const auto& r : split.images)
      image_keys.push_back(image_file_name(r));
    json entry = ev.entry(scored, run_dir, split.name, nc, ni, split.caption_image,
                          test_set_fingerprint(ni, image_keys, split.captions, split.caption_image));
    if (entry.contains("bootstrap"))
      intervals += interval_line(split.name, entry["bootstrap"],
                                 "its " + std::to_string(ni) + (protocol == "val" ? " val images" : " test images"));
    const std::string missed = missed_section(split.name, scored, ni, split.caption_image, split.captions,
                                              [&](int64_t i) { return image_keys[i]; }, nullptr, cfg.eval.examples, entry);
    if (!missed.empty()) examples += "\n" + missed;
    fold_outcomes.push_back(scored.outcomes), fold_maps.push_back(split.caption_image);
    result["splits"][split.name] = entry;
    const auto& ir = m.image_retrieval;
    const auto& tr = m.text_retrieval;
    for (const auto& [k, v] : std::map<std::string, double>{{"image_r1", ir.r1}, {"image_r5", ir.r5}, {"image_r10", ir.r10},
                                                            {"text_r1", tr.r1}, {"text_r5", tr.r5}, {"text_r10", tr.r10}})
      mean[k] += v / static_cast<double>(splits.size());
    char row[512];
    std::snprintf(row, sizeof row, "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %s / %s | %.1f | %.0f |\n",
                  split.name.c_str(), ir.r1, ir.r5, ir.r10, tr.r1, tr.r5, tr.r10, ir.rsum() + tr.rsum(),
                  rank_text(ir.median_rank).c_str(), rank_text(tr.median_rank).c_str(), seconds, entry["pairs_per_s"].get<double>());
    markdown += row;
  }
  if (splits.size() > 1) {
    result["mean_over_splits"] = mean;
    char row[256];
    std::snprintf(row, sizeof row, "| **mean of %zu folds** | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | | | |\n",
                  splits.size(), mean["image_r1"], mean["image_r5"], mean["image_r10"], mean["text_r1"], mean["text_r5"],
                  mean["text_r10"], mean["image_r1"] + mean["image_r5"] + mean["image_r10"] + mean["text_r1"] +
                                        mean["text_r5"] + mean["text_r10"]);
    markdown += row;
    if (cfg.eval.bootstrap > 0) {
      const BootstrapSettings s = bootstrap_settings(cfg);
      result["mean_over_splits_bootstrap"] = intervals_json(bootstrap_fold_mean(fold_outcomes, fold_maps, s), s,
                                                            "test image with its captions, within each fold");
      intervals += interval_line("mean of " + std::to_string(splits.size()) + " folds",
                                 result["mean_over_splits_bootstrap"], "each fold's images within it");
    }
  }
  result["wall_time_s"] = total_seconds;
  if (!intervals.empty()) markdown += "\n" + intervals;
  markdown += examples;
  markdown += "\nR@K in percent; ties count as a uniformly random order (docs/evaluation.md).\n";
  result["weights"] = best ? "best (validation RSUM during training)" : "final";
  ev.finish(RunFiles(run_dir).eval_result(protocol, ev.best), result, markdown);
  return result;
}

}  // namespace mmt
