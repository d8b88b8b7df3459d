/* Study grids and running them (see study.h). */
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <thread>

#include "mmt/config/config.h"
#include "mmt/eval/evaluate.h"
#include "mmt/study/study.h"
#include "mmt/train/progress.h"
#include "mmt/train/run_dir.h"
#include "mmt/train/trainer.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"
#include "mmt/util/tee_log.h"

namespace mmt {

using nlohmann::json;

namespace {

// A --set value from JSON: strings as they are, arrays joined with ','.
std::string set_value(const json& v, const std::string& where) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  if (v.is_number()) return v.dump();
  if (v.is_array()) {
    std::string out;
    for (const auto& e : v) out += (out.empty() ? "" : ",") + set_value(e, where);
    return out;
  }
  throw Error(where + ": a set value must be a string, number, boolean or array (nested objects go in \"config\")");
}

std::vector<std::string> set_list(const json& j, const std::string& where) {
  std::vector<std::string> out;
  if (j.is_null()) return out;
  if (!j.is_object()) throw Error(where + " must be an object of \"key\": value");
  for (const auto& [k, v] : j.items()) out.push_back(k + "=" + set_value(v, where + "." + k));
  return out;
}

}  // namespace

std::string cell_slug(const std::string& name) {
  std::string s;
  for (char c : name) s += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '-';
  return s;
}

StudyGrid load_grid(const std::string& path) {
  if (!file_exists(path)) throw Error("study grid '" + path + "' not found");
  StudyGrid g;
  g.path = path;
  g.source = parse_json_with_comments(read_file(path), path);
  const json& j = g.source;
  if (!j.is_object()) throw Error(path + ": a study grid is a JSON object");
  for (const auto& [k, v] : j.items())
    if (k != "name" && k != "base" && k != "set" && k != "seeds" && k != "design" && k != "factors" && k != "eval")
      throw Error(path + ": unknown key '" + k + "' (name, base, set, seeds, design, factors, eval)");
  g.name = j.value("name", std::filesystem::path(path).stem().string());
  g.design = j.value("design", std::string("one_at_a_time"));
  if (g.design != "one_at_a_time" && g.design != "product")
    throw Error(path + ": design '" + g.design + "' is not one_at_a_time or product");
  const std::string dir = std::filesystem::path(path).parent_path().string();
  if (j.contains("base")) {
    const std::string b = j["base"].get<std::string>();
    g.base = b.empty() || b[0] == '/' || dir.empty() ? b : dir + "/" + b;
    if (!file_exists(g.base)) throw Error(path + ": base config '" + g.base + "' not found");
  }
  g.seeds = j.value("seeds", std::vector<int64_t>{1});
  if (j.contains("eval")) {
    const json& e = j["eval"];
    for (const auto& [k, v] : e.items())
      if (k != "protocol" && k != "karpathy" && k != "images" && k != "features")
        throw Error(path + ": unknown key 'eval." + k + "' (protocol, karpathy, images, features)");
    auto rel = [&](const std::string& p) { return p.empty() || p[0] == '/' || dir.empty() ? p : dir + "/" + p; };
    g.protocol = e.value("protocol", std::string("test"));
    g.karpathy = rel(e.value("karpathy", std::string()));
    g.images = e.contains("images") ? rel(e["images"].get<std::string>()) : "";
    g.features = e.contains("features") ? rel(e["features"].get<std::string>()) : "";
    if (g.karpathy.empty()) throw Error(path + ": eval needs \"karpathy\": the split file of the protocol");
  }
  if (g.seeds.empty()) throw Error(path + ": seeds is empty");
  const auto common = set_list(j.value("set", json()), path + ": set");

  struct Level {
    std::string name;
    std::vector<std::string> set;
    json config;
  };
  std::vector<std::vector<Level>> factors;
  for (const auto& f : j.value("factors", json::array())) {
    const std::string fname = f.value("name", std::string());
    if (fname.empty()) throw Error(path + ": every factor needs a name");
    if (!f.contains("levels") || f["levels"].empty()) throw Error(path + ": factor '" + fname + "' has no levels");
    std::vector<Level> levels;
    for (const auto& l : f["levels"]) {
      Level lv;
      lv.name = l.value("name", std::string());
      if (lv.name.empty()) throw Error(path + ": a level of factor '" + fname + "' has no name");
      for (const auto& s : g.levels[fname])
        if (s == lv.name) throw Error(path + ": factor '" + fname + "' has two levels named '" + lv.name + "'");
      lv.set = set_list(l.value("set", json()), path + ": " + fname + "=" + lv.name + ".set");
      lv.config = l.value("config", json());
      if (l.contains("file")) {
        // A config file's own keys (not its "base" or "name"): e.g. a configs/paper row on top of the grid's base.
        const std::string f = l["file"].get<std::string>();
        const std::string file = f.empty() || f[0] == '/' || dir.empty() ? f : dir + "/" + f;
        if (!file_exists(file)) throw Error(path + ": " + fname + "=" + lv.name + ": file '" + file + "' not found");
        json fragment = parse_json_with_comments(read_file(file), file);
        fragment.erase("base"), fragment.erase("name");
        if (lv.config.is_null()) lv.config = fragment;
        else lv.config = fragment, lv.config.merge_patch(l["config"]);
      }
      g.levels[fname].push_back(lv.name);
      levels.push_back(lv);
    }
    g.factors.push_back(fname);
    factors.push_back(levels);
  }
  auto make = [&](const std::vector<size_t>& pick, const std::string& name) {
    StudyCell c;
    c.name = name;
    c.overrides = common;
    for (size_t f = 0; f < factors.size(); ++f) {
      const Level& l = factors[f][pick[f]];
      c.levels[g.factors[f]] = l.name;
      c.overrides.insert(c.overrides.end(), l.set.begin(), l.set.end());
      if (!l.config.is_null()) c.configs.push_back(l.config);
    }
    g.cells.push_back(c);
  };
  const std::vector<size_t> base(factors.size(), 0);
  if (g.design == "one_at_a_time") {
    make(base, "base");
    for (size_t f = 0; f < factors.size(); ++f)
      for (size_t l = 1; l < factors[f].size(); ++l) {
        auto pick = base;
        pick[f] = l;
        make(pick, g.factors[f] + "=" + factors[f][l].name);
      }
  } else {
    std::vector<size_t> pick = base;
    while (true) {
      std::string name;
      for (size_t f = 0; f < factors.size(); ++f) name += (f ? "," : "") + g.factors[f] + "=" + factors[f][pick[f]].name;
      make(pick, name.empty() ? "base" : name);
      size_t f = 0;
      for (; f < factors.size(); ++f) {
        if (++pick[f] < factors[f].size()) break;
        pick[f] = 0;
      }
      if (f == factors.size()) break;
    }
  }
  // Every cell must resolve: a typo fails now, not hours into the study.
  for (const auto& c : g.cells) {
    try {
      cell_config(g, c, g.seeds.front());
    } catch (const Error& e) {
      throw Error(path + ": cell " + c.name + ": " + e.what());
    }
  }
  return g;
}

std::vector<std::string> missing_inputs(const ExperimentConfig& cfg) {
  std::vector<std::string> out;
  auto need = [&](const std::string& key, const std::string& path) {
    if (!path.empty() && !std::filesystem::exists(path)) out.push_back(key + " '" + path + "'");
  };
  if (cfg.data.source == "datasets") {
    need("data.tokenizer", cfg.data.tokenizer);
    for (size_t i = 0; i < cfg.data.datasets.size(); ++i) {
      const auto& d = cfg.data.datasets[i];
      const std::string key = "data.datasets[" + std::to_string(i) + "]";
      need(key + ".path", d.path), need(key + ".images", d.images), need(key + ".features", d.features);
    }
  }
  need("model.text_init", cfg.model.text_init), need("model.resnet_init", cfg.model.resnet_init);
  need("train.init", cfg.train.init);
  return out;
}

ExperimentConfig cell_config(const StudyGrid& grid, const StudyCell& cell, int64_t seed) {
  std::vector<std::string> overrides = cell.overrides;
  overrides.push_back("train.seed=" + std::to_string(seed));
  ExperimentConfig cfg = load_config(grid.base, overrides);
  for (const auto& fragment : cell.configs) apply_json(cfg, fragment);
  if (!cell.configs.empty()) {
    for (const auto& o : overrides) apply_override(cfg, o);  // the --set keys still win
    validate_config(cfg);
  }
  cfg.name = grid.name + "/" + cell.name + "/seed-" + std::to_string(seed);
  return cfg;
}

void run_study(const std::string& grid_path, const std::string& out_dir, std::ostream& console,
               const std::vector<std::string>& only_cells, const std::vector<int64_t>& only_seeds) {
  // Everything the study prints - its runs' training and evaluation included - goes to the console
  // and, once the folder is open, to OUT/study.log (each run's own part also to its train.log).
  TeeLog log(console);
  StudyGrid grid = load_grid(grid_path);
  std::vector<std::string> cell_names;
  for (const auto& c : grid.cells) cell_names.push_back(c.name);  // the whole grid, for the report
  if (!only_cells.empty()) {
    std::vector<StudyCell> kept;
    for (const auto& name : only_cells) {
      auto it = std::find_if(grid.cells.begin(), grid.cells.end(), [&](const StudyCell& c) { return c.name == name; });
      if (it == grid.cells.end()) {
        std::string all;
        for (const auto& c : cell_names) all += (all.empty() ? "" : ", ") + c;
        throw Error("study " + grid.name + " has no cell '" + name + "'; its cells: " + all);
      }
      kept.push_back(*it);
    }
    grid.cells = kept;
  }
  if (!only_seeds.empty()) grid.seeds = only_seeds;
  // The evaluation's files are checked before hours of training, not after the first cell's.
  for (const auto& [what, path] : {std::pair<const char*, std::string>{"karpathy", grid.karpathy}, {"images", grid.images},
                                   {"features", grid.features}})
    if (!path.empty() && !std::filesystem::exists(path))
      throw Error(grid_path + ": eval." + what + " '" + path + "' not found (every cell is evaluated on it)");
  // And each cell's own inputs: a missing dataset, tokenizer or checkpoint is named now, though
  // the study still runs (that cell fails; the others may be what is wanted tonight).
  std::vector<std::string> missing;
  for (const auto& cell : grid.cells)
    for (const auto& m : missing_inputs(cell_config(grid, cell, grid.seeds.front())))
      missing.push_back("cell " + cell.name + ": " + m);
  make_dirs(out_dir);
  // One runner per study folder: a second would train the same cells and race on study.json.
  const std::string lock_path = out_dir + "/.lock";
  const int lock = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (lock < 0) throw Error("cannot create " + lock_path);
  // A runner holds it for hours; `mmt study status` for an instant (to see whether a runner
  // works here), so a few short retries tell the two apart.
  bool locked = false;
  for (int attempt = 0; attempt < 5 && !(locked = ::flock(lock, LOCK_EX | LOCK_NB) == 0); ++attempt)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (!locked) {
    ::close(lock);
    throw Error("another mmt study run is working in " + out_dir + " (it holds " + lock_path +
                "); wait for it, or stop it - a rerun continues where it stopped");
  }
  struct Unlock {
    int fd;
    ~Unlock() { ::close(fd); }
  } unlock{lock};
  log.open_file(out_dir + "/study.log");
  log.file_only("mmt study: run of " + grid_path + " started " + utc_timestamp());
  write_file_atomic(out_dir + "/grid.json", grid.source.dump(2) + "\n");
  const int64_t total = static_cast<int64_t>(grid.cells.size() * grid.seeds.size());
  log << "mmt study: " << grid.name << ": " << grid.cells.size() << " cells x " << grid.seeds.size() << " seeds = " << total
      << " runs (" << grid.design << ") -> " << out_dir << "\n";
  for (const auto& m : missing) log << "mmt study: warning: " << m << " not found - its runs will fail\n";
  // Runs recorded earlier (another part of the grid) stay in study.json.
  json status = json::array();
  if (file_exists(out_dir + "/study.json")) {
    const json old = parse_json_with_comments(read_file(out_dir + "/study.json"), out_dir + "/study.json");
    for (const auto& r : old.value("runs", json::array())) {
      bool now = false;
      for (const auto& c : grid.cells)
        for (int64_t seed : grid.seeds) now |= r["cell"] == c.name && r["seed"] == seed;
      if (!now) status.push_back(r);
    }
  }
  int64_t done = 0, ran = 0;
  std::vector<std::string> failed;  // "cell seed s: message"
  double ran_seconds = 0;
  const auto t_start = std::chrono::steady_clock::now();
  auto save_status = [&] {
    write_file_atomic(out_dir + "/study.json",
                      json{{"name", grid.name}, {"design", grid.design}, {"factors", grid.factors}, {"levels", grid.levels},
                           {"seeds", study_seeds(status, grid.seeds)}, {"cells", cell_names}, {"runs", status}}.dump(2) + "\n");
  };
  save_status();  // from the start, so `mmt study status` can read a study killed in its first run
  // Seeds outermost: a study cut short still has every cell once.
  for (int64_t seed : grid.seeds) {
    for (const auto& cell : grid.cells) {
      const std::string dir = out_dir + "/cells/" + cell_slug(cell.name) + "/seed-" + std::to_string(seed);
      json entry = {{"cell", cell.name}, {"levels", cell.levels}, {"seed", seed}, {"dir", "cells/" + cell_slug(cell.name) + "/seed-" + std::to_string(seed)}};
      const int64_t remaining = total - done;
      std::string eta;
      if (ran > 0) eta = ", ETA " + Progress::format_duration(ran_seconds / ran * remaining);
      log << "mmt study: [" << done + 1 << "/" << total << "] " << cell.name << " seed " << seed << eta << "\n";
      const auto t0 = std::chrono::steady_clock::now();
      const std::string result = RunFiles::eval_result_name(grid.protocol);
      entry["results"] = result;
      if (file_exists(dir + "/" + result)) {
        log << "mmt study:   finished earlier: skipped\n";
        entry["status"] = "skipped (finished earlier)";
      } else {
        // A run that fails (bad data met at step 40,000, a diverged loss, a full disk) costs its own
        // cell, not the grid's other cells: it is recorded, the study goes on and fails at the end;
        // a rerun retries it from what it left (its last checkpoint, or its trained weights).
        const bool trained = file_exists(dir + "/checkpoint.json");
        const bool started = !trained && std::filesystem::is_directory(dir + "/checkpoints");
        bool went_through = false;
        try {
          const ExperimentConfig cfg = cell_config(grid, cell, seed);
          if (!trained) {
            if (started) log << "mmt study:   resuming from its last checkpoint\n";
            else if (std::filesystem::exists(dir)) std::filesystem::remove_all(dir);  // died before its first checkpoint
            train_run(cfg, dir, log, /*resume=*/started);
          }
          std::ostringstream table;
          if (grid.protocol.empty()) evaluate_run(dir, {}, table, log);
          else evaluate_protocol(dir, grid.protocol, grid.karpathy, grid.images, grid.features, {}, table, log);
          entry["status"] = trained ? "evaluated" : started ? "resumed" : "ran";
          went_through = true;
        } catch (const Interrupted& e) {
          log.file_only(std::string("mmt study: stopped: ") + e.what());
          throw;  // SIGINT / SIGTERM stop the study (the run wrote its checkpoint), they fail no cell
        } catch (const std::exception& e) {
          std::string what = e.what();
          what = what.substr(0, what.find('\n'));  // a libtorch error's first line, not its stack
          log << "mmt study:   FAILED: " << what << "\nmmt study:   the other runs go on; rerun the study to retry this one\n";
          entry["status"] = "failed";
          entry["error"] = what;
          failed.push_back(cell.name + " seed " + std::to_string(seed) + ": " + what);
        }
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (went_through) ran_seconds += s, ++ran;  // the ETA's pace: failed runs left out
        entry["seconds"] = s;
      }
      ++done;
      status.push_back(entry);
      save_status();
    }
  }
  const std::string took =
      Progress::format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count());
  if (!failed.empty()) {
    std::string list;
    for (const auto& f : failed) list += "\n  " + f;
    const std::string message = std::to_string(failed.size()) + " of " + std::to_string(total) + " runs failed (" + took +
                                "; study.json records them, their folders keep what they wrote):" + list +
                                "\nrerun `mmt study run` to retry them; the others are skipped; `mmt study report " +
                                out_dir + "` reports what finished";
    log.file_only("mmt study: " + message);  // the CLI prints it to the console
    throw Error(message);
  }
  log << "mmt study: " << total << " runs done in " << took << "; report: mmt study report " << out_dir << "\n";
}

}  // namespace mmt
