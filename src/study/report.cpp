/* Study reports: tables, charts, one HTML page (see study.h). */
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <ostream>
#include <set>
#include <sstream>

#include "mmt/config/config.h"
#include "mmt/eval/bootstrap.h"
#include "mmt/eval/compare.h"
#include "mmt/study/study.h"
#include "mmt/train/run_dir.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {

using nlohmann::json;

namespace {

const std::vector<std::pair<std::string, std::string>> kMetrics = {
    {"image_r1", "image R@1"}, {"image_r5", "R@5"}, {"image_r10", "R@10"}, {"text_r1", "text R@1"}, {"text_r10", "text R@10"}};

struct CellResults {
  std::map<std::string, std::map<std::string, std::vector<double>>> values;  // test set -> metric -> per seed
  std::map<std::string, double> chance;                                      // test set -> chance image R@1
  std::map<int64_t, std::vector<double>> loss;                               // step -> loss per seed
  std::vector<double> itm_acc;                                               // final training ITM accuracy per seed
  std::vector<double> minutes;                                               // training + evaluation per seed
  int64_t seeds = 0;
  // Per test set, each seed's query outcomes (from its score matrices), for the paired intervals
  // against the base cell; missing where a result predates the caption -> image maps.
  std::map<std::string, std::vector<RetrievalOutcomes>> outcomes;
  std::map<std::string, std::vector<int64_t>> caption_image;
  std::map<std::string, std::set<std::string>> fingerprints;
  std::map<std::string, std::vector<std::vector<double>>> true_hits;  // test set -> per seed, each caption's true@1
};

// "+8.6 (+4.2..+13.6)": the difference of the cells' mean image R@1 and the test set's interval
// of it (paired over the test images, seeds averaged); only the difference where the outcomes are
// missing, and a note where the two cells scored different test sets.
// All six recalls' paired differences go to `rows` (report-vs-base.csv) when they could be computed.
std::string versus_base(CellResults& cell, CellResults& base, const std::string& ts, double delta,
                        std::vector<PairedDifference>& rows) {
  rows.clear();
  std::string out = signed1(delta);
  const auto& fa = base.fingerprints[ts];
  const auto& fb = cell.fingerprints[ts];
  if (fa.size() > 1 || fb.size() > 1 || (fa.size() == 1 && fb.size() == 1 && fa != fb)) return out + " (other test set)";
  const auto &oa = base.outcomes[ts], &ob = cell.outcomes[ts];
  if (oa.empty() || ob.empty() || oa.size() != base.values[ts]["image_r1"].size() ||
      ob.size() != cell.values[ts]["image_r1"].size())
    return out;
  rows = paired_bootstrap(oa, ob, base.caption_image[ts], BootstrapSettings{});  // 1,000 resamplings, 95 %
  const auto &ha = base.true_hits[ts], &hb = cell.true_hits[ts];
  if (!ha.empty() && ha.size() == oa.size() && hb.size() == ob.size()) {  // synthetic sets: true@1 too
    rows.push_back(paired_caption_means(ha, hb, base.caption_image[ts],
                                        static_cast<int64_t>(oa.front().text_retrieval.size()), BootstrapSettings{}));
    rows.back().metric = "true_at_1";
  }
  const PairedDifference& d = rows.front();  // image_r1
  return out + " (" + signed1(d.interval.low) + ".." + signed1(d.interval.high) + ")";
}

std::string fmt(double mean, double sd, int64_t n) {
  char b[64];
  if (std::isnan(mean)) return "-";
  if (n > 1) std::snprintf(b, sizeof b, "%.1f +- %.1f", mean, sd);
  else std::snprintf(b, sizeof b, "%.1f", mean);
  return b;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
  return o;
}

// One line of the report's Markdown as HTML: escaped, with **bold**, *italic* and `code`.
std::string inline_html(const std::string& md) {
  std::string o;
  bool bold = false, italic = false, code = false;
  for (size_t i = 0; i < md.size(); ++i) {
    const char c = md[i];
    if (c == '`') o += (code = !code) ? "<code>" : "</code>";
    else if (code) o += xml_escape(std::string(1, c));
    else if (c == '*' && i + 1 < md.size() && md[i + 1] == '*') o += (bold = !bold) ? "<b>" : "</b>", ++i;
    else if (c == '*') o += (italic = !italic) ? "<i>" : "</i>";
    else o += xml_escape(std::string(1, c));
  }
  return o;
}

// Bars with error bars: one per cell, mean image R@1 +- std, and a dashed chance line.
std::string bar_chart(const std::string& title, const std::vector<std::string>& labels, const std::vector<double>& means,
                      const std::vector<double>& sds, double chance) {
  const int w = 120 + 90 * static_cast<int>(labels.size()), h = 300, top = 40, bottom = 240, left = 60;
  double ymax = chance;
  for (size_t i = 0; i < means.size(); ++i)
    if (!std::isnan(means[i])) ymax = std::max(ymax, means[i] + sds[i]);
  ymax = std::max(1.0, std::ceil(ymax / 10.0) * 10.0);
  auto y = [&](double v) { return bottom - (bottom - top) * v / ymax; };
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  s << "<text x=\"" << left << "\" y=\"20\" font-size=\"13\">" << xml_escape(title) << "</text>\n";
  s << "<line x1=\"" << left << "\" y1=\"" << bottom << "\" x2=\"" << w - 20 << "\" y2=\"" << bottom << "\" stroke=\"black\"/>\n";
  for (int t = 0; t <= 4; ++t) {
    const double v = ymax * t / 4;
    s << "<text x=\"" << left - 6 << "\" y=\"" << y(v) + 4 << "\" text-anchor=\"end\">" << v << "</text>"
      << "<line x1=\"" << left << "\" y1=\"" << y(v) << "\" x2=\"" << w - 20 << "\" y2=\"" << y(v) << "\" stroke=\"#ddd\"/>\n";
  }
  for (size_t i = 0; i < labels.size(); ++i) {
    const double x = left + 20 + 90.0 * static_cast<double>(i);
    if (!std::isnan(means[i])) {
      s << "<rect x=\"" << x << "\" y=\"" << y(means[i]) << "\" width=\"50\" height=\"" << bottom - y(means[i])
        << "\" fill=\"" << (i == 0 ? "#888" : "#4a7ab5") << "\"/>\n";
      if (sds[i] > 0)
        s << "<line x1=\"" << x + 25 << "\" y1=\"" << y(means[i] + sds[i]) << "\" x2=\"" << x + 25 << "\" y2=\""
          << y(std::max(0.0, means[i] - sds[i])) << "\" stroke=\"black\" stroke-width=\"1.5\"/>\n";
      s << "<text x=\"" << x + 25 << "\" y=\"" << y(means[i] + sds[i]) - 4 << "\" text-anchor=\"middle\">" << fmt(means[i], 0, 1)
        << "</text>\n";
    }
    s << "<text x=\"" << x + 25 << "\" y=\"" << bottom + 14 << "\" text-anchor=\"end\" transform=\"rotate(-30 " << x + 25 << " "
      << bottom + 14 << ")\">" << xml_escape(labels[i]) << "</text>\n";
  }
  s << "<line x1=\"" << left << "\" y1=\"" << y(chance) << "\" x2=\"" << w - 20 << "\" y2=\"" << y(chance)
    << "\" stroke=\"red\" stroke-dasharray=\"4 3\"/><text x=\"" << w - 22 << "\" y=\"" << y(chance) - 3
    << "\" text-anchor=\"end\" fill=\"red\">chance</text>\n</svg>\n";
  return s.str();
}

// Training loss against step, one line per cell (mean over seeds).
std::string curve_chart(const std::string& title, const std::vector<std::string>& labels,
                        const std::vector<const CellResults*>& cells) {
  const int w = 640, h = 300, top = 40, bottom = 250, left = 60, right = 460;
  double xmax = 1, ymax = 0;
  for (const auto* c : cells)
    for (const auto& [step, v] : c->loss) xmax = std::max(xmax, static_cast<double>(step)), ymax = std::max(ymax, mean_std(v).first);
  ymax = std::max(1e-9, ymax * 1.05);
  const char* colours[] = {"#555", "#4a7ab5", "#d9822b", "#3d9b5b", "#b54a6b", "#7a5ab5", "#9b8b3d", "#3d8b9b"};
  std::ostringstream s;
  s << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << w << "\" height=\"" << h << "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  s << "<text x=\"" << left << "\" y=\"20\" font-size=\"13\">" << xml_escape(title) << "</text>\n";
  s << "<line x1=\"" << left << "\" y1=\"" << bottom << "\" x2=\"" << right << "\" y2=\"" << bottom << "\" stroke=\"black\"/>"
    << "<line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left << "\" y2=\"" << bottom << "\" stroke=\"black\"/>\n";
  s << "<text x=\"" << right << "\" y=\"" << bottom + 16 << "\" text-anchor=\"end\">step " << xmax << "</text>"
    << "<text x=\"" << left - 6 << "\" y=\"" << top + 4 << "\" text-anchor=\"end\">" << fmt(ymax, 0, 1) << "</text>"
    << "<text x=\"" << left - 6 << "\" y=\"" << bottom << "\" text-anchor=\"end\">0</text>\n";
  for (size_t i = 0; i < cells.size(); ++i) {
    std::string points;
    for (const auto& [step, v] : cells[i]->loss) {
      char b[64];
      std::snprintf(b, sizeof b, "%.1f,%.1f ", left + (right - left) * step / xmax, bottom - (bottom - top) * mean_std(v).first / ymax);
      points += b;
    }
    const char* colour = colours[i % 8];
    s << "<polyline fill=\"none\" stroke=\"" << colour << "\" stroke-width=\"1.5\" points=\"" << points << "\"/>\n";
    s << "<text x=\"" << right + 10 << "\" y=\"" << top + 14 * static_cast<int>(i) << "\" fill=\"" << colour << "\">"
      << xml_escape(labels[i]) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace

std::vector<int64_t> study_seeds(const json& runs, const std::vector<int64_t>& declared) {
  std::set<int64_t> all(declared.begin(), declared.end());
  for (const auto& r : runs)
    if (r.contains("seed")) all.insert(r["seed"].get<int64_t>());
  return {all.begin(), all.end()};
}

std::string report_study(const std::string& out_dir, std::ostream& log) {
  const std::string status_path = out_dir + "/study.json";
  if (!file_exists(status_path)) throw Error("'" + out_dir + "' is not a study folder (no study.json): run mmt study run first");
  const json study = parse_json_with_comments(read_file(status_path), status_path);
  std::map<std::string, CellResults> cells;
  std::set<std::string> test_sets;
  std::map<int64_t, double> seed_seconds;  // training + evaluation of the finished runs, per seed
  int64_t missing = 0;
  std::string failed;  // runs the last `mmt study run` recorded as failed, with their errors
  std::map<std::string, std::set<std::string>> run_sets;  // finished run -> the test sets its result holds
  // The runs in seed order: study.json lists them in the order invocations ran them (a later
  // `--seeds 1` moves seed 1 last), and each cell's values, sums and resamplings should not depend
  // on that history.
  std::vector<json> runs(study["runs"].begin(), study["runs"].end());
  std::stable_sort(runs.begin(), runs.end(),
                   [](const json& a, const json& b) { return a.value("seed", int64_t{0}) < b.value("seed", int64_t{0}); });
  for (const auto& r : runs) {
    const std::string dir = out_dir + "/" + r["dir"].get<std::string>();
    CellResults& c = cells[r["cell"].get<std::string>()];
    // An older study.json records no "results": its runs wrote eval.json.
    const std::string result = dir + "/" + r.value("results", RunFiles::eval_result_name());
    if (!file_exists(result)) {
      ++missing;
      if (r.value("status", std::string()) == "failed")
        failed += std::string(failed.empty() ? "" : "; ") + "`" + r["dir"].get<std::string>() + "` (" +
                  r.value("error", std::string("no message")) + ")";
      continue;
    }
    ++c.seeds;
    const json e = parse_json_with_comments(read_file(result), result);
    std::set<std::string>& held = run_sets[r["dir"].get<std::string>()];
    for (const auto& [name, t] : e.contains("test_sets") ? e["test_sets"].items() : e["splits"].items()) {
      test_sets.insert(name);
      held.insert(name);
      if (t.contains("test_set_fingerprint") && t.contains("caption_image_file")) {
        std::vector<int64_t> map;
        try {  // a missing or damaged score file costs this cell its interval, not the report
          c.outcomes[name].push_back(load_outcomes(dir, t, name, map));
          c.caption_image[name] = map;
          c.fingerprints[name].insert(t["test_set_fingerprint"].get<std::string>());
        } catch (const Error& err) {
          log << "mmt study report: warning: no interval for " << dir << " (" << name << "): " << err.what() << "\n";
        }
        try {  // each caption's true@1 hit (synthetic sets): the paired true@1 row of report-vs-base.csv
          std::vector<double> hits = load_true_hits(dir, t, map.size());
          if (!hits.empty()) c.true_hits[name].push_back(std::move(hits));
        } catch (const Error& err) {
          log << "mmt study report: warning: no true@1 comparison for " << dir << " (" << name << "): " << err.what()
              << "\n";
        }
      }
      auto& v = c.values[name];
      v["image_r1"].push_back(t["image_retrieval"]["r1"]), v["image_r5"].push_back(t["image_retrieval"]["r5"]);
      v["image_r10"].push_back(t["image_retrieval"]["r10"]), v["text_r1"].push_back(t["text_retrieval"]["r1"]);
      v["text_r10"].push_back(t["text_retrieval"]["r10"]);
      if (t.contains("true_at_1")) v["true_at_1"].push_back(t["true_at_1"]["model"]);
      if (t.contains("ceilings")) c.chance[name] = t["ceilings"]["chance"]["image_retrieval"]["r1"].get<double>();
      else if (t.value("num_images", int64_t{0}) > 0) c.chance[name] = 100.0 / t["num_images"].get<double>();
    }
    const double seconds = finished_run_seconds(dir, e);
    if (file_exists(dir + "/checkpoint.json")) {
      const json side = parse_json_with_comments(read_file(dir + "/checkpoint.json"), dir + "/checkpoint.json");
      const json fm = side.value("final_metrics", json::object());
      for (const char* k : {"itm_acc", "itm_contrastive_acc", "dual_acc"})
        if (fm.contains(k)) {
          c.itm_acc.push_back(100.0 * fm[k].get<double>());
          break;
        }
    }
    c.minutes.push_back(seconds / 60.0);
    seed_seconds[r.value("seed", int64_t{0})] += seconds;
    std::ifstream m(dir + "/metrics.jsonl");
    for (std::string line; std::getline(m, line);) {
      const json j = json::parse(line, nullptr, false);
      if (j.is_object() && j.contains("loss")) c.loss[j["step"].get<int64_t>()].push_back(j["loss"].get<double>());
    }
  }
  const std::string design = study.value("design", std::string("one_at_a_time"));
  const std::vector<std::string> order = study["cells"].get<std::vector<std::string>>();
  // Groups: one_at_a_time -> per factor, the base cell and that factor's cells; product -> all.
  std::vector<std::pair<std::string, std::vector<std::string>>> groups;
  if (design == "one_at_a_time") {
    for (const auto& f : study["factors"]) {
      std::vector<std::string> members{"base"};
      for (const auto& name : order)
        if (name.rfind(f.get<std::string>() + "=", 0) == 0) members.push_back(name);
      groups.push_back({f.get<std::string>(), members});
    }
    if (groups.empty()) groups.push_back({"base", {"base"}});
  } else {
    groups.push_back({"all cells", order});
  }

  // What every cell is compared with: the base cell, or in a product grid its first cell (every
  // factor at its first level - the base's counterpart).
  const std::string reference = design == "product" && !order.empty() ? order.front() : "base";
  const std::vector<int64_t> seeds = study_seeds(study["runs"], study.value("seeds", std::vector<int64_t>{}));
  std::string md = "# Study " + study.value("name", std::string()) + "\n\nmean +- sample std over seeds (" +
                   std::to_string(seeds.size()) + " seeds: " + json(seeds).dump() +
                   "); R@K in percent. *train match acc.*: the matching accuracy in the last logged training "
                   "interval (ITM, contrastive ITM or the dual encoder's InfoNCE; 50 = chance for ITM) - a cell whose "
                   "model never left the ITM plateau retrieves at chance whatever its factor. *image R@1 vs base*: "
                   "the difference of the means, and in brackets its 95 % interval over the luck of the test set (the "
                   "same test images resampled for every run of both cells, seeds averaged; the +- columns give the "
                   "seeds' spread); *true@1 vs base* likewise for true@1 (synthetic sets)" +
                   (reference != "base" ? "; *base* is the grid's first cell, `" + reference + "`" : std::string()) +
                   ". Generated by `mmt study report " + out_dir + "`.\n";
  int64_t expected = static_cast<int64_t>(order.size() * seeds.size()), have = 0;
  for (const auto& [name, c] : cells) have += c.seeds;
  if (have < expected)
    md += "\n**" + std::to_string(have) + " of " + std::to_string(expected) + " runs have results**; cells without any are left out" +
          (missing ? " (" + std::to_string(missing) + " started, not finished)" : "") + ".\n";
  if (!failed.empty()) md += "\n**Failed runs**: " + failed + ". `mmt study run` again retries them.\n";
  // A run evaluated on fewer test sets than the others (re-evaluated by hand on one set, or
  // evaluated before a set was added) would silently narrow its cell's mean on the others.
  std::string lacking;
  for (const auto& [dir, held] : run_sets) {
    std::string sets;
    for (const auto& ts : test_sets)
      if (!held.count(ts)) sets += (sets.empty() ? "" : ", ") + ts;
    if (sets.empty()) continue;
    lacking += std::string(lacking.empty() ? "" : "; ") + "`" + dir + "` (" + sets + ")";
    log << "mmt study report: warning: " << out_dir << "/" << dir << " has no result for " << sets << "\n";
  }
  if (!lacking.empty())
    md += "\n**Runs without a result on every test set**: " + lacking +
          ". Their cells' figures on those sets average fewer seeds (the *seeds* column says how many); `mmt eval "
          "--run DIR` with the study's `eval.test_sets` adds them.\n";
  // Time: what the runs themselves recorded, so a study run across sessions (or paused) adds up
  // only the time its runs took.
  if (!seed_seconds.empty()) {
    double total = 0;
    std::string per_seed;
    for (const auto& [seed, secs] : seed_seconds) {
      total += secs;
      char b[64];
      std::snprintf(b, sizeof b, "%sseed %lld %.0f min", per_seed.empty() ? "" : ", ", static_cast<long long>(seed), secs / 60);
      per_seed += b;
    }
    char b[128];
    std::snprintf(b, sizeof b, "%d h %02d min", static_cast<int>(total / 3600), static_cast<int>(std::fmod(total, 3600) / 60));
    md += "\n**Time: " + std::string(b) + "** for the " + std::to_string(have) + " finished runs (" + per_seed +
          "): each run's training (`train_seconds`, checkpoint.json) plus its evaluation (`wall_time_s`); the "
          "*min / run* column gives each cell's mean.\n";
  }
  std::string notes_html;  // the notes above, for report.html
  for (size_t from = md.find('\n') + 1, end; from < md.size(); from = end + 1) {
    end = md.find('\n', from);
    if (end == std::string::npos) end = md.size();
    if (end > from) notes_html += "<p>" + inline_html(md.substr(from, end - from)) + "</p>\n";
  }
  std::string csv = "group,cell,test_set,metric,mean,std,n,values\n";
  // Every recall of every cell against the base cell, paired over the test images (seeds averaged).
  std::string versus_csv = "group,cell,test_set,metric,base,cell,delta,low95,high95,share_not_better\n";
  std::vector<PairedDifference> paired;
  std::string html = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Study " + xml_escape(study.value("name", std::string())) +
                     "</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse}"
                     "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style></head><body>\n"
                     "<h1>Study " + xml_escape(study.value("name", std::string())) + "</h1>\n" + notes_html;
  std::filesystem::create_directories(out_dir + "/charts");
  for (const auto& [group, members] : groups) {
    md += "\n## " + group + "\n";
    html += "<h2>" + xml_escape(group) + "</h2>\n";
    for (const auto& ts : test_sets) {
      // true@1 (synthetic sets, docs/synthetic.md) where any run of the group has it.
      auto metrics = kMetrics;
      for (const auto& name : members)
        if (cells.count(name) && !cells[name].values[ts]["true_at_1"].empty()) {
          metrics.push_back({"true_at_1", "true@1"});
          break;
        }
      md += "\n### " + ts + "\n\n| cell | seeds |";
      html += "<h3>" + xml_escape(ts) + "</h3><table><tr><th>cell</th><th>seeds</th>";
      for (const auto& [key, label] : metrics) md += " " + label + " |", html += "<th>" + label + "</th>";
      const bool has_true = metrics.size() > kMetrics.size();
      md += std::string(" image R@1 vs base |") + (has_true ? " true@1 vs base |" : "") +
            " train match acc. | min / run |\n|---|---|";
      html += std::string("<th>image R@1 vs base</th>") + (has_true ? "<th>true@1 vs base</th>" : "") +
              "<th>train match acc.</th><th>min / run</th></tr>\n";
      for (size_t k = 0; k <= metrics.size() + 2 + (has_true ? 1 : 0); ++k) md += "---|";
      md += "\n";
      const double base_r1 = cells.count(reference) ? mean_std(cells[reference].values[ts]["image_r1"]).first : NAN;
      std::vector<std::string> labels;
      std::vector<double> means, sds;
      double chance = 0;
      for (const auto& name : members) {
        if (!cells.count(name) || cells[name].seeds == 0) continue;  // not run (yet)
        CellResults& c = cells[name];
        auto& v = c.values[ts];
        // "1 of 2" where a run of the cell has no result on this set.
        const std::string seeds_text = v["image_r1"].size() == static_cast<size_t>(c.seeds)
                                           ? std::to_string(c.seeds)
                                           : std::to_string(v["image_r1"].size()) + " of " + std::to_string(c.seeds);
        md += "| " + name + " | " + seeds_text + " |";
        html += "<tr><td>" + xml_escape(name) + "</td><td>" + seeds_text + "</td>";
        for (const auto& [key, label] : metrics) {
          const auto [m, sd] = mean_std(v[key]);
          std::string text = fmt(m, sd, static_cast<int64_t>(v[key].size()));
          if (!v[key].empty() && v[key].size() != v["image_r1"].size())  // results from before the metric existed
            text += " (" + std::to_string(v[key].size()) + " of " + std::to_string(v["image_r1"].size()) + ")";
          md += " " + text + " |";
          html += "<td>" + text + "</td>";
          std::string values;
          for (double x : v[key]) values += (values.empty() ? "" : ";") + std::to_string(x);
          char row[512];
          std::snprintf(row, sizeof row, "%s,%s,%s,%s,%.4f,%.4f,%zu,%s\n", group.c_str(), name.c_str(), ts.c_str(), key.c_str(), m, sd,
                        v[key].size(), values.c_str());
          csv += row;
        }
        const double m = mean_std(v["image_r1"]).first;
        paired.clear();  // the base cell has none: without this it repeated the previous cell's rows
        const std::string delta = name == reference || std::isnan(m) || std::isnan(base_r1)
                                      ? ""
                                      : versus_base(c, cells[reference], ts, m - base_r1, paired);
        std::vector<std::string> deltas{delta};
        if (has_true) {  // true@1's difference, with its paired interval where the caption hits allowed one
          const double t = mean_std(v["true_at_1"]).first;
          const double base_t = cells.count(reference) ? mean_std(cells[reference].values[ts]["true_at_1"]).first : NAN;
          std::string text;
          if (name != reference && !std::isnan(t) && !std::isnan(base_t)) {
            text = signed1(t - base_t);
            for (const auto& d : paired)
              if (d.metric == "true_at_1") text += " (" + signed1(d.interval.low) + ".." + signed1(d.interval.high) + ")";
          }
          deltas.push_back(text);
        }
        for (const auto& d : paired) {
          char line[512];
          std::snprintf(line, sizeof line, "%s,%s,%s,%s,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f\n", group.c_str(), name.c_str(),
                        ts.c_str(), d.metric.c_str(), d.a, d.b, d.delta, d.interval.low, d.interval.high,
                        d.share_not_better);
          versus_csv += line;
        }
        const auto [acc, acc_sd] = mean_std(c.itm_acc);
        const std::string acc_text = fmt(acc, acc_sd, static_cast<int64_t>(c.itm_acc.size()));
        char per_run[32];
        std::snprintf(per_run, sizeof per_run, "%.1f", mean_std(c.minutes).first);
        for (const auto& d : deltas) md += " " + d + " |", html += "<td>" + d + "</td>";
        md += std::string(" ") + acc_text + " | " + per_run + " |\n";
        html += std::string("<td>") + acc_text + "</td><td>" + per_run + "</td></tr>\n";
        labels.push_back(design == "product" || name == "base" ? name : name.substr(name.find('=') + 1));
        means.push_back(m), sds.push_back(mean_std(v["image_r1"]).second);
        if (c.chance.count(ts)) chance = c.chance[ts];
      }
      html += "</table>\n";
      const std::string chart = "charts/" + cell_slug(group) + "-" + cell_slug(ts) + "-r1.svg";
      const std::string svg = bar_chart(group + ": image R@1 on " + ts + " (mean +- std)", labels, means, sds, chance);
      write_file_atomic(out_dir + "/" + chart, svg);
      md += "\n![" + group + " " + ts + "](" + chart + ")\n";
      html += svg;
    }
    std::vector<std::string> labels;
    std::vector<const CellResults*> members_results;
    for (const auto& name : members)
      if (cells.count(name) && cells[name].seeds > 0) labels.push_back(name), members_results.push_back(&cells[name]);
    const std::string curve = curve_chart(group + ": training loss (mean over seeds)", labels, members_results);
    write_file_atomic(out_dir + "/charts/" + cell_slug(group) + "-loss.svg", curve);
    html += curve;
  }
  html += "</body></html>\n";
  write_file_atomic(out_dir + "/report.md", md);
  write_file_atomic(out_dir + "/report.csv", csv);
  write_file_atomic(out_dir + "/report-vs-base.csv", versus_csv);
  write_file_atomic(out_dir + "/report.html", html);
  log << "mmt study report: " << out_dir << "/report.md, report.csv, report-vs-base.csv, report.html, charts/\n";
  return md;
}

}  // namespace mmt
