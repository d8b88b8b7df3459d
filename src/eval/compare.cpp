/* `mmt compare` (see compare.h). */
#include "mmt/eval/compare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>

#include "mmt/config/config.h"
#include "mmt/io/npy.h"
#include "mmt/train/run_dir.h"
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

// A run directory's result: its eval.json, else its only other evaluation result (eval-test.json
// from `mmt eval --protocol test`, eval-best.json, ...: RunFiles::eval_result_name); several of
// those must be named.
std::string result_in(const std::string& dir) {
  const std::string plain = RunFiles(dir).eval_json();
  if (file_exists(plain)) return plain;
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_regular_file() && name.rfind("eval-", 0) == 0 && e.path().extension() == ".json") found.push_back(name);
  }
  std::sort(found.begin(), found.end());
  if (found.size() == 1) return (fs::path(dir) / found[0]).string();
  if (found.empty()) return plain;  // the caller says to evaluate the run
  std::string names;
  for (const auto& n : found) names += (names.empty() ? "" : ", ") + (fs::path(dir) / n).string();
  throw Error("'" + dir + "' has no eval.json but several results (" + names + "): name the one to compare");
}

Result read_result(const std::string& path) {
  Result r;
  if (!fs::exists(path)) throw Error("'" + path + "' not found (a run directory or an evaluation result file)");
  r.file = fs::is_directory(path) ? result_in(path) : path;
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

// image_r1 -> image R@1; rsum -> RSUM.
std::string label_of(std::string metric) {
  if (metric == "rsum") return "RSUM";
  metric.replace(metric.find("_r"), 2, " R@");
  return metric;
}

// Verdicts counted over the recalls of every test set compared.
struct Tally {
  int64_t b_better = 0, a_better = 0, open = 0;
  std::string rsum;  // each set's RSUM verdict, for the closing line
  void add_rsum(const std::string& set, const json& row) {
    rsum += (rsum.empty() ? "" : "; ") + set + " " + row.at("verdict").get<std::string>() + " (" +
            signed1(row.at("delta").get<double>()) + ", " + signed1(row.at("low").get<double>()) + " .. " +
            signed1(row.at("high").get<double>()) + ")";
  }
};

// The Markdown rows and JSON of a comparison's six recalls and RSUM; `tally` (optional) counts the
// recalls' verdicts.
std::string table(const std::vector<PairedDifference>& diffs, json& rows, Tally* tally = nullptr) {
  std::string md = "| recall | A | B | B - A | interval | resamplings with B <= A | verdict |\n|---|---|---|---|---|---|---|\n";
  rows = json::array();
  for (const auto& d : diffs) {
    const bool b_better = d.interval.low > 0, a_better = d.interval.high < 0;
    const std::string verdict = b_better ? "B better" : a_better ? "A better" : "not resolved";
    const bool rsum = d.metric == "rsum";
    if (tally && !rsum) ++(b_better ? tally->b_better : a_better ? tally->a_better : tally->open);
    const std::string label = rsum ? "RSUM (the six summed)" : label_of(d.metric);
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

std::string signed1(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%+.1f", v);
  return b;
}

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

std::vector<double> load_true_hits(const std::string& dir, const json& entry, size_t num_captions) {
  if (!entry.contains("true_at_1") || !entry["true_at_1"].contains("per_caption_file")) return {};
  const std::string f = dir + "/" + entry["true_at_1"]["per_caption_file"].get<std::string>();
  std::vector<double> hits = load_npy(f).to_double(f);
  if (hits.size() != num_captions)
    throw Error(f + ": " + std::to_string(hits.size()) + " true@1 values for " + std::to_string(num_captions) + " captions");
  return hits;
}

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

namespace {

std::string files_of(const std::vector<Result>& group) {
  std::string s;
  for (const auto& r : group) s += (s.empty() ? "" : ", ") + r.file;
  return s;
}

// "A: file (exact, zero-shot, step 600)", or for several results one per line under "A, the mean
// of N results:".
std::string describe(const char* side, const std::vector<Result>& group, const std::string& set) {
  if (group.size() == 1) {
    const Result& r = group.front();
    return std::string(side) + ": " + r.file + " (" + what_of(r.j, r.j.at(r.sets_key).at(set)) + ")  \n";
  }
  std::string s = std::string(side) + ", the mean of " + std::to_string(group.size()) + " results:  \n";
  for (const auto& r : group) s += "- " + r.file + " (" + what_of(r.j, r.j.at(r.sets_key).at(set)) + ")\n";
  return s + "\n";
}

// Sample standard deviation of each recall and of RSUM over a group's results (seeds); empty for
// one result.
std::vector<double> spread(const std::vector<RetrievalOutcomes>& runs) {
  if (runs.size() < 2) return {};
  std::vector<std::vector<double>> values(7);  // the six recalls and RSUM
  for (const auto& o : runs) {
    const std::vector<double> v = recall_values(summarise(o));
    values[6].push_back(0);
    for (size_t k = 0; k < 6; ++k) values[k].push_back(v[k]), values[6].back() += v[k];
  }
  std::vector<double> sd;
  for (const auto& v : values) sd.push_back(mean_std(v).second);
  return sd;
}

// true@1 of a synthetic set, B against A, from each result's saved caption hits: a line added to
// `md`, and its JSON.
json true_at_1_line(const std::vector<std::vector<double>>& hits_a, const std::vector<std::vector<double>>& hits_b,
                    const std::vector<int64_t>& caption_image, int64_t num_images, const BootstrapSettings& s,
                    std::string& md) {
  const PairedDifference d = paired_caption_means(hits_a, hits_b, caption_image, num_images, s);
  char line[320];
  std::snprintf(line, sizeof line,
                "\ntrue@1 (the top image is one the caption is true of, its own or another): A %.1f, B %.1f, B - A "
                "%+.1f (%+.1f..%+.1f), B not better in %.1f %% of the resamplings\n",
                d.a, d.b, d.delta, d.interval.low, d.interval.high, 100.0 * d.share_not_better);
  md += line;
  return {{"a", d.a}, {"b", d.b}, {"delta", d.delta}, {"low", d.interval.low}, {"high", d.interval.high},
          {"share_not_better", d.share_not_better}};
}

}  // namespace

json compare_results(const std::vector<std::string>& a_paths, const std::vector<std::string>& b_paths,
                     const BootstrapSettings& settings, std::ostream& out) {
  if (a_paths.empty() || b_paths.empty()) throw Error("mmt compare: A and B need a result each at least");
  std::vector<Result> a, b;
  for (const auto& p : a_paths) a.push_back(read_result(p));
  for (const auto& p : b_paths) b.push_back(read_result(p));
  const Result& first = a.front();
  for (const auto* group : {&a, &b})
    for (const Result& r : *group)
      if (std::string(r.sets_key) != first.sets_key)
        throw Error("'" + first.file + "' holds " + first.sets_key + ", '" + r.file + "' " + r.sets_key +
                    ": compare a synthetic evaluation with a synthetic one, a protocol with the same protocol");
  const bool groups = a.size() > 1 || b.size() > 1;
  char level[16];
  std::snprintf(level, sizeof level, "%g %%", 100 * settings.level);
  json result = {{"a", first.file},       {"b", b.front().file},   {"samples", settings.samples},
                 {"level", settings.level}, {"seed", settings.seed}, {"unit", "test image with its captions"},
                 {"sets", json::object()}, {"skipped", json::array()}};
  if (groups) {
    result["a_results"] = json::array(), result["b_results"] = json::array();
    for (const auto& r : a) result["a_results"].push_back(r.file);
    for (const auto& r : b) result["b_results"].push_back(r.file);
  }
  auto holds = [](const std::vector<Result>& group, const std::string& name) {
    int64_t n = 0;
    for (const auto& r : group) n += r.j.at(r.sets_key).contains(name);
    return n;
  };
  // Compared: the sets every result holds; the others named, with the results that lack them.
  std::vector<std::string> all, names;
  for (const auto* group : {&a, &b})
    for (const Result& r : *group)
      for (auto it = r.j.at(r.sets_key).begin(); it != r.j.at(r.sets_key).end(); ++it)
        if (std::find(all.begin(), all.end(), it.key()) == all.end()) all.push_back(it.key());
  for (const std::string& name : all) {
    const int64_t in_a = holds(a, name), in_b = holds(b, name);
    if (in_a == static_cast<int64_t>(a.size()) && in_b == static_cast<int64_t>(b.size())) {
      names.push_back(name);
    } else if (!groups) {
      result["skipped"].push_back(name + (in_a ? " (only in A)" : " (only in B)"));
    } else {
      std::string missing;
      for (const auto* group : {&a, &b})
        for (const auto& r : *group)
          if (!r.j.at(r.sets_key).contains(name)) missing += (missing.empty() ? "" : ", ") + r.file;
      result["skipped"].push_back(name + " (not in " + missing + ")");
    }
  }

  // Per set: the outcomes of every result (runs x sets, for the mean over folds).
  std::vector<std::vector<RetrievalOutcomes>> runs_a(a.size()), runs_b(b.size());
  std::vector<std::vector<int64_t>> maps;
  Tally tally;
  for (const std::string& name : names) {
    const json& e0 = first.j.at(first.sets_key).at(name);
    const std::string fingerprint = e0.value("test_set_fingerprint", std::string());
    std::vector<int64_t> map0;
    std::vector<RetrievalOutcomes> set_a, set_b;
    std::vector<std::vector<double>> hits_a, hits_b;  // true@1 per caption, where every result saved it
    bool all_hits = true;
    for (auto* group : {&a, &b})
      for (const Result& r : *group) {
        const json& e = r.j.at(r.sets_key).at(name);
        const std::string f = e.value("test_set_fingerprint", std::string());
        if (fingerprint.empty() || f.empty())
          throw Error("test set '" + name + "' of " + (fingerprint.empty() ? first.file : r.file) + " has no fingerprint: "
                      "it was evaluated before mmt eval recorded one (2026-11-28); evaluate the run again");
        if (f != fingerprint)
          throw Error("test set '" + name + "' differs between the results (" + std::to_string(e0.value("num_images", 0)) +
                      " images x " + std::to_string(e0.value("num_captions", 0)) + " captions, fingerprint " + fingerprint +
                      " in " + first.file + "; " + std::to_string(e.value("num_images", 0)) + " x " +
                      std::to_string(e.value("num_captions", 0)) + ", " + f + " in " + r.file +
                      "): a paired comparison needs the same images and captions");
        std::vector<int64_t> map;
        (group == &a ? set_a : set_b).push_back(load_outcomes(r.dir, e, name, map));
        std::vector<double> hits = load_true_hits(r.dir, e, map.size());
        all_hits = all_hits && !hits.empty();
        (group == &a ? hits_a : hits_b).push_back(std::move(hits));
        if (&r == &first) map0 = map;
        else if (map != map0)
          throw Error("test set '" + name + "': " + r.file + " maps captions to images differently from " + first.file);
      }
    for (size_t i = 0; i < set_a.size(); ++i) runs_a[i].push_back(set_a[i]);
    for (size_t i = 0; i < set_b.size(); ++i) runs_b[i].push_back(set_b[i]);
    maps.push_back(map0);
    const auto diffs = paired_bootstrap(set_a, set_b, map0, settings);

    // Built as a string: the paths have no length limit.
    std::string md = "### " + name + ": B against A (" + std::to_string(e0.value("num_images", 0)) + " images x " +
                     std::to_string(e0.value("num_captions", 0)) + " captions)\n\n" + describe("A", a, name) +
                     describe("B", b, name) + "paired bootstrap over the test images (each with its captions), " +
                     std::to_string(settings.samples) + " resamplings, " + level + " intervals\n\n";
    json rows;
    md += table(diffs, rows, &tally);
    tally.add_rsum(name, rows.back());
    const json true1 =
        all_hits ? true_at_1_line(hits_a, hits_b, map0, e0.value("num_images", int64_t{0}), settings, md) : json();
    const std::vector<double> sd_a = spread(set_a), sd_b = spread(set_b);
    if (!sd_a.empty() || !sd_b.empty()) {
      md += "\nAcross results (sample sd over " + std::to_string(a.size()) + " A, " + std::to_string(b.size()) +
            " B; seeds' noise, which the interval leaves out):";
      for (size_t k = 0; k < std::max(sd_a.size(), sd_b.size()); ++k) {
        char part[96];
        std::snprintf(part, sizeof part, "%s %s", k ? "," : "", label_of(rows[k]["metric"]).c_str());
        md += part;
        if (!sd_a.empty()) std::snprintf(part, sizeof part, " A %.1f", sd_a[k]), md += part, rows[k]["a_sd"] = sd_a[k];
        if (!sd_b.empty()) std::snprintf(part, sizeof part, " B %.1f", sd_b[k]), md += part, rows[k]["b_sd"] = sd_b[k];
      }
      md += "\n";
    }
    std::set<std::string> labels;
    for (const auto* group : {&a, &b})
      for (const Result& r : *group) labels.insert(r.j.at(r.sets_key).at(name).value("label", r.j.value("label", std::string())));
    if (labels.size() > 1)
      md += "\nThe results carry different labels (zero-shot, fine-tuned, ...): they answer different questions.\n";
    out << md << "\n" << std::flush;
    result["sets"][name] = {{"num_images", e0.value("num_images", 0)}, {"num_captions", e0.value("num_captions", 0)},
                            {"fingerprint", fingerprint}, {"metrics", rows}};
    if (!true1.is_null()) result["sets"][name]["true_at_1"] = true1;
  }
  // Folds reported as their mean (COCO 1k): the mean compared too, each fold resampled within it.
  bool folds = names.size() > 1;
  for (const auto* group : {&a, &b})
    for (const Result& r : *group)
      folds = folds && r.j.contains("mean_over_splits") && r.j.at(r.sets_key).size() == names.size();
  if (folds) {
    json rows;
    const std::string md = table(paired_bootstrap_groups(runs_a, runs_b, maps, settings), rows);
    out << "### mean of " << names.size() << " folds: B against A\n\neach fold's images resampled within it, "
        << settings.samples << " resamplings, " << level << " intervals\n\n" << md << "\n" << std::flush;
    result["mean_over_splits"] = {{"folds", names.size()}, {"metrics", rows}};
  }
  if (result["sets"].empty())
    throw Error("'" + files_of(a) + "' and '" + files_of(b) + "' share no test set");
  // What to take away: RSUM's verdict per set (one each, no multiplicity), then the recalls' count.
  out << "RSUM (the six recalls summed; one verdict a test set): " << tally.rsum << ".\n";
  out << "Verdict over " << tally.b_better + tally.a_better + tally.open << " recalls (" << result["sets"].size()
      << " test set" << (result["sets"].size() == 1 ? "" : "s") << "): B better on " << tally.b_better
      << ", A better on " << tally.a_better << ", not resolved on " << tally.open << " (each verdict at the " << level
      << " level: of many recalls of two equal models, about " << (1 - settings.level) * 100
      << " % would read better by luck).\n";
  result["verdicts"] = {{"b_better", tally.b_better}, {"a_better", tally.a_better}, {"not_resolved", tally.open}};
  if (!result["skipped"].empty()) {
    std::string skipped;
    for (const auto& sk : result["skipped"]) skipped += (skipped.empty() ? "" : ", ") + sk.get<std::string>();
    out << "Not compared: " << skipped << "\n";
  }
  out << "B - A in percentage points" << (groups ? " (of the results' means)" : "") << "; the interval is the central "
      << level << " of B - A over the resamplings (the same test images drawn for every result); it measures the luck "
      << "of the test set, not of training (seeds). docs/evaluation.md\n";
  return result;
}

json compare_results(const std::string& a, const std::string& b, const BootstrapSettings& settings, std::ostream& out) {
  auto split = [](const std::string& list) {
    std::vector<std::string> paths;
    size_t from = 0;
    for (size_t comma; (comma = list.find(',', from)) != std::string::npos; from = comma + 1)
      paths.push_back(list.substr(from, comma - from));
    paths.push_back(list.substr(from));
    for (const auto& p : paths)
      if (p.empty()) throw Error("mmt compare: '" + list + "' has an empty path in its comma-separated list");
    return paths;
  };
  return compare_results(split(a), split(b), settings, out);
}

}  // namespace mmt
