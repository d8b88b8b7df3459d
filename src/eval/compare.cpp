/* `mmt compare` (see compare.h). */
#include "mmt/eval/compare.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>

#include "mmt/config/config.h"
#include "mmt/io/npy.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {

using nlohmann::json;
namespace fs = std::filesystem;

std::string test_set_fingerprint(int64_t num_images, const std::vector<std::string>& image_keys,
                                 const std::vector<std::string>& captions, const std::vector<int64_t>& caption_image) {
  uint64_t h = 0xcbf29ce484222325ull;
  auto add = [&h](const std::string& bytes) {
    for (unsigned char ch : bytes) h = (h ^ ch) * 0x100000001b3ull;
    h = (h ^ 0xffu) * 0x100000001b3ull;  // a separator no UTF-8 text contains
  };
  add(std::to_string(num_images));
  for (const auto& k : image_keys) add(k);
  for (size_t c = 0; c < captions.size(); ++c) add(std::to_string(c < caption_image.size() ? caption_image[c] : -1)), add(captions[c]);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

namespace {

// An evaluation result: the file and the folder its score files lie in.
struct Result {
  std::string file, dir;
  json j;
  const char* sets_key = nullptr;  // "test_sets" (synthetic) or "splits" (protocols)
};

Result read_result(const std::string& path) {
  Result r;
  if (!fs::exists(path)) throw Error("'" + path + "' not found (a run directory or an evaluation result file)");
  r.file = fs::is_directory(path) ? (fs::path(path) / "eval.json").string() : path;
  if (!file_exists(r.file))
    throw Error("'" + r.file + "' not found: evaluate the run first (mmt eval --run " +
                (fs::is_directory(path) ? path : fs::path(path).parent_path().string()) + ")");
  r.dir = fs::path(r.file).parent_path().string();
  if (r.dir.empty()) r.dir = ".";
  r.j = parse_json_with_comments(read_file(r.file), r.file);
  if (r.j.contains("test_sets")) r.sets_key = "test_sets";
  else if (r.j.contains("splits")) r.sets_key = "splits";
  else throw Error("'" + r.file + "' is not an mmt eval result (no test_sets or splits)");
  return r;
}

std::string what_of(const json& result, const json& entry) {
  return entry.value("mode", result.value("mode", std::string("?"))) + ", " +
         entry.value("label", result.value("label", std::string("?"))) + ", step " +
         std::to_string(result.value("step", int64_t{-1}));
}

std::string signed1(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%+.1f", v);
  return b;
}

// Verdicts counted over the recalls of every test set compared.
struct Tally {
  int64_t b_better = 0, a_better = 0, open = 0;
};

// The Markdown rows and JSON of a comparison's six recalls; `tally` (optional) counts their verdicts.
std::string table(const std::vector<PairedDifference>& diffs, json& rows, Tally* tally = nullptr) {
  std::string md = "| recall | A | B | B - A | interval | resamplings with B <= A | verdict |\n|---|---|---|---|---|---|---|\n";
  rows = json::array();
  for (const auto& d : diffs) {
    const bool b_better = d.interval.low > 0, a_better = d.interval.high < 0;
    const std::string verdict = b_better ? "B better" : a_better ? "A better" : "not resolved";
    if (tally) ++(b_better ? tally->b_better : a_better ? tally->a_better : tally->open);
    std::string label = d.metric;  // image_r1 -> image R@1
    label.replace(label.find("_r"), 2, " R@");
    char line[256];
    std::snprintf(line, sizeof line, "| %s | %.1f | %.1f | %s | %s .. %s | %.1f %% | %s |\n", label.c_str(), d.a, d.b,
                  signed1(d.delta).c_str(), signed1(d.interval.low).c_str(), signed1(d.interval.high).c_str(),
                  100 * d.share_not_better, verdict.c_str());
    md += line;
    rows.push_back({{"metric", d.metric}, {"a", d.a}, {"b", d.b}, {"delta", d.delta}, {"low", d.interval.low},
                    {"high", d.interval.high}, {"share_not_better", d.share_not_better}, {"verdict", verdict}});
  }
  return md;
}

}  // namespace

void save_outcomes(const std::string& path, const RetrievalOutcomes& o) {
  std::vector<double> rows;
  rows.reserve(4 * (o.image_retrieval.size() + o.text_retrieval.size()));
  for (const auto* direction : {&o.image_retrieval, &o.text_retrieval})
    for (const QueryOutcome& q : *direction) rows.insert(rows.end(), {q.r1, q.r5, q.r10, q.rank});
  save_npy(path, rows.data(), {static_cast<int64_t>(rows.size() / 4), 4});
}

namespace {

// The outcomes file of an entry; its recalls must be the entry's (a file left from another
// evaluation would otherwise pass silently).
RetrievalOutcomes read_outcomes_file(const std::string& path, const json& entry, int64_t nc, int64_t ni) {
  const NpyArray a = load_npy(path);
  if (a.shape != std::vector<int64_t>{nc + ni, 4})
    throw Error(path + ": expected " + std::to_string(nc) + " caption and " + std::to_string(ni) +
                " image queries' outcomes (" + std::to_string(nc + ni) + " x 4)");
  const std::vector<double> v = a.to_double(path);
  RetrievalOutcomes o;
  for (int64_t q = 0; q < nc + ni; ++q)
    (q < nc ? o.image_retrieval : o.text_retrieval).push_back({v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]});
  const RetrievalMetrics m = summarise(o);
  for (const auto& [key, d] : {std::pair{"image_retrieval", &m.image_retrieval}, std::pair{"text_retrieval", &m.text_retrieval}}) {
    if (!entry.contains(key)) continue;
    const json& saved = entry.at(key);
    for (const auto& [k, value] : {std::pair{"r1", d->r1}, std::pair{"r5", d->r5}, std::pair{"r10", d->r10}})
      if (std::abs(saved.value(k, value) - value) > 1e-6)
        throw Error(path + ": its " + key + " " + k + " is " + std::to_string(value) + ", the result says " +
                    std::to_string(saved.value(k, value)) + ": the file is from another evaluation; evaluate the run again");
  }
  return o;
}

}  // namespace

RetrievalOutcomes load_outcomes(const std::string& dir, const json& entry, const std::string& name,
                                std::vector<int64_t>& caption_image) {
  if (!entry.contains("caption_image_file") || !(entry.contains("scores_files") || entry.contains("outcomes_file")))
    throw Error("test set '" + name + "' in " + dir + " has no caption -> image map: it was evaluated before mmt eval "
                "kept one (2026-11-28); evaluate the run again");
  const int64_t ni = entry.at("num_images").get<int64_t>(), nc = entry.at("num_captions").get<int64_t>();
  const std::string map_file = (fs::path(dir) / entry.at("caption_image_file").get<std::string>()).string();
  const NpyArray m = load_npy(map_file);
  if (m.shape != std::vector<int64_t>{nc}) throw Error(map_file + ": expected " + std::to_string(nc) + " captions' images");
  caption_image = m.to_int64(map_file);
  for (int64_t c = 0; c < nc; ++c)
    if (caption_image[c] < 0 || caption_image[c] >= ni)
      throw Error(map_file + ": caption " + std::to_string(c) + " belongs to image " + std::to_string(caption_image[c]) +
                  " of " + std::to_string(ni));
  if (entry.contains("outcomes_file"))  // a few MB at most, where the matrices are nc x ni floats
    return read_outcomes_file((fs::path(dir) / entry.at("outcomes_file").get<std::string>()).string(), entry, nc, ni);
  auto matrix = [&](const std::string& file) {
    const std::string path = (fs::path(dir) / file).string();
    const NpyArray a = load_npy(path);
    if (a.shape != std::vector<int64_t>{nc, ni})
      throw Error(path + ": expected a " + std::to_string(nc) + " x " + std::to_string(ni) + " score matrix");
    return a.to_float(path);
  };
  const auto& files = entry.at("scores_files");
  const std::vector<float> scores = matrix(files.at(0).get<std::string>());
  if (files.size() > 1) {
    const std::vector<float> i2t = matrix(files.at(1).get<std::string>());
    return retrieval_outcomes(scores, ni, caption_image, &i2t);
  }
  return retrieval_outcomes(scores, ni, caption_image);
}

json compare_results(const std::string& a_path, const std::string& b_path, const BootstrapSettings& settings,
                     std::ostream& out) {
  const Result a = read_result(a_path), b = read_result(b_path);
  if (std::string(a.sets_key) != b.sets_key)
    throw Error("'" + a.file + "' holds " + a.sets_key + ", '" + b.file + "' " + b.sets_key +
                ": compare a synthetic evaluation with a synthetic one, a protocol with the same protocol");
  char level[16];
  std::snprintf(level, sizeof level, "%g %%", 100 * settings.level);
  json result = {{"a", a.file},          {"b", b.file},           {"samples", settings.samples},
                 {"level", settings.level}, {"seed", settings.seed}, {"unit", "test image with its captions"},
                 {"sets", json::object()}, {"skipped", json::array()}};
  const json& sets_a = a.j.at(a.sets_key);
  const json& sets_b = b.j.at(b.sets_key);
  std::vector<RetrievalOutcomes> folds_a, folds_b;  // the sets compared, in A's order
  std::vector<std::vector<int64_t>> fold_maps;
  Tally tally;
  for (auto it = sets_a.begin(); it != sets_a.end(); ++it) {
    const std::string& name = it.key();
    if (!sets_b.contains(name)) {
      result["skipped"].push_back(name + " (only in A)");
      continue;
    }
    const json &ea = it.value(), &eb = sets_b.at(name);
    const std::string fa = ea.value("test_set_fingerprint", std::string()), fb = eb.value("test_set_fingerprint", std::string());
    if (fa.empty() || fb.empty())
      throw Error("test set '" + name + "' of " + (fa.empty() ? a.file : b.file) + " has no fingerprint: it was "
                  "evaluated before mmt eval recorded one (2026-11-28); evaluate the run again");
    if (fa != fb)
      throw Error("test set '" + name + "' differs between the two results (" + std::to_string(ea.value("num_images", 0)) +
                  " images x " + std::to_string(ea.value("num_captions", 0)) + " captions, fingerprint " + fa + " in " +
                  a.file + "; " + std::to_string(eb.value("num_images", 0)) + " x " +
                  std::to_string(eb.value("num_captions", 0)) + ", " + fb + " in " + b.file +
                  "): a paired comparison needs the same images and captions");
    std::vector<int64_t> map_a, map_b;
    const RetrievalOutcomes oa = load_outcomes(a.dir, ea, name, map_a), ob = load_outcomes(b.dir, eb, name, map_b);
    if (map_a != map_b) throw Error("test set '" + name + "': the two results map captions to images differently");
    const auto diffs = paired_bootstrap(oa, ob, map_a, settings);

    // Built as a string: the paths have no length limit.
    std::string md = "### " + name + ": B against A (" + std::to_string(ea.value("num_images", 0)) + " images x " +
                     std::to_string(ea.value("num_captions", 0)) + " captions)\n\nA: " + a.file + " (" + what_of(a.j, ea) +
                     ")  \nB: " + b.file + " (" + what_of(b.j, eb) + ")  \npaired bootstrap over the test images (each "
                     "with its captions), " + std::to_string(settings.samples) + " resamplings, " + level + " intervals\n\n";
    json rows;
    md += table(diffs, rows, &tally);
    const std::string label_a = ea.value("label", a.j.value("label", std::string())),
                      label_b = eb.value("label", b.j.value("label", std::string()));
    if (label_a != label_b)
      md += "\nThe two results carry different labels (zero-shot, fine-tuned, ...): they answer different questions.\n";
    out << md << "\n" << std::flush;
    result["sets"][name] = {{"num_images", ea.value("num_images", 0)}, {"num_captions", ea.value("num_captions", 0)},
                            {"fingerprint", fa}, {"metrics", rows}};
    folds_a.push_back(oa), folds_b.push_back(ob), fold_maps.push_back(map_a);
  }
  // Folds reported as their mean (COCO 1k): the mean compared too, each fold resampled within it.
  if (a.j.contains("mean_over_splits") && b.j.contains("mean_over_splits") && folds_a.size() == sets_a.size() &&
      folds_a.size() == sets_b.size() && folds_a.size() > 1) {
    json rows;
    const std::string md = table(paired_fold_mean(folds_a, folds_b, fold_maps, settings), rows);
    out << "### mean of " << folds_a.size() << " folds: B against A\n\neach fold's images resampled within it, "
        << settings.samples << " resamplings, " << level << " intervals\n\n" << md << "\n" << std::flush;
    result["mean_over_splits"] = {{"folds", folds_a.size()}, {"metrics", rows}};
  }
  for (auto it = sets_b.begin(); it != sets_b.end(); ++it)
    if (!sets_a.contains(it.key())) result["skipped"].push_back(it.key() + " (only in B)");
  if (result["sets"].empty())
    throw Error("'" + a.file + "' and '" + b.file + "' share no test set");
  // One line to take away: the verdicts counted over every set's recalls.
  out << "Verdict over " << tally.b_better + tally.a_better + tally.open << " recalls (" << result["sets"].size()
      << " test set" << (result["sets"].size() == 1 ? "" : "s") << "): B better on " << tally.b_better
      << ", A better on " << tally.a_better << ", not resolved on " << tally.open << " (each verdict at the " << level
      << " level: of many recalls of two equal models, about " << (1 - settings.level) * 100
      << " % would read better by luck).\n";
  result["verdicts"] = {{"b_better", tally.b_better}, {"a_better", tally.a_better}, {"not_resolved", tally.open}};
  if (!result["skipped"].empty()) {
    std::string names;
    for (const auto& s : result["skipped"]) names += (names.empty() ? "" : ", ") + s.get<std::string>();
    out << "Not compared: " << names << "\n";
  }
  out << "B - A in percentage points; the interval is the central " << level << " of B - A over the resamplings "
      << "(the same test images drawn for both); it measures the luck of the test set, not of training (seeds). "
         "docs/evaluation.md\n";
  return result;
}

}  // namespace mmt
