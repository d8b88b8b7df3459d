/* `mmt study status`: where a study folder stands (see study.h). Reads only what the runs wrote:
 * study.json, grid.json, each run's results, checkpoints and metrics.jsonl. */
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "mmt/config/config.h"
#include "mmt/study/study.h"
#include "mmt/train/progress.h"
#include "mmt/train/run_dir.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {

using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Whether a `mmt study run` holds the folder's lock now.
bool runner_active(const std::string& out_dir) {
  const std::string path = out_dir + "/.lock";
  if (!file_exists(path)) return false;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0;
  ::close(fd);
  return held;
}

// The last logged training line of metrics.jsonl: its step and elapsed seconds.
std::pair<int64_t, double> last_logged(const std::string& run_dir) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::pair<int64_t, double> last{-1, 0.0};
  for (std::string line; std::getline(in, line);) {
    const json j = json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("loss") && j.contains("step"))
      last = {j["step"].get<int64_t>(), j.value("elapsed_s", 0.0)};
  }
  return last;
}

}  // namespace

double finished_run_seconds(const std::string& run_dir, const json& result) {
  double seconds = result.value("wall_time_s", 0.0);
  const std::string side = run_dir + "/checkpoint.json";
  if (file_exists(side)) seconds += parse_json_with_comments(read_file(side), side).value("train_seconds", 0.0);
  return seconds;
}

std::string study_status(const std::string& out_dir, json* out_json) {
  const std::string status_path = out_dir + "/study.json";
  if (!file_exists(status_path)) throw Error("'" + out_dir + "' is not a study folder (no study.json): run mmt study run first");
  const json study = parse_json_with_comments(read_file(status_path), status_path);
  json grid = json::object();
  if (file_exists(out_dir + "/grid.json")) grid = parse_json_with_comments(read_file(out_dir + "/grid.json"), out_dir + "/grid.json");
  // The whole grid: every cell (study.json lists them all, even after a --cells run), every seed
  // the grid declares and any run recorded with another.
  const std::vector<std::string> cells = study.value("cells", std::vector<std::string>{});
  std::vector<int64_t> declared = grid.value("seeds", std::vector<int64_t>{1});
  for (int64_t s : study.value("seeds", std::vector<int64_t>{})) declared.push_back(s);
  const std::vector<int64_t> seeds = study_seeds(study.value("runs", json::array()), declared);
  const std::string protocol = grid.contains("eval") ? grid["eval"].value("protocol", std::string("test")) : "";
  const std::string result_file = RunFiles::eval_result_name(protocol);
  std::map<std::pair<std::string, int64_t>, json> recorded;
  for (const auto& r : study.value("runs", json::array())) recorded[{r.value("cell", std::string()), r.value("seed", int64_t{0})}] = r;
  const bool active = runner_active(out_dir);

  int64_t finished = 0, failed = 0, partial = 0, untouched = 0;
  double done_seconds = 0, remaining_fraction = 0;  // in runs: the unfinished part of each started run
  json rows = json::array();
  std::string md = "| cell | seed | state | steps | time |\n|---|---:|---|---:|---:|\n";
  for (int64_t seed : seeds)
    for (const auto& cell : cells) {
      const std::string rel = "cells/" + cell_slug(cell) + "/seed-" + std::to_string(seed);
      const std::string dir = out_dir + "/" + rel;
      const json rec = recorded.count({cell, seed}) ? recorded[{cell, seed}] : json::object();
      int64_t steps = -1;
      if (file_exists(dir + "/config.json"))
        steps = parse_json_with_comments(read_file(dir + "/config.json"), dir + "/config.json")["train"].value("steps", int64_t{-1});
      std::string state;
      int64_t at = -1;
      double seconds = 0;
      if (file_exists(dir + "/" + result_file)) {
        state = "finished", ++finished, at = steps;
        // What the run recorded, as the report counts it: its training plus its (last) evaluation.
        seconds = finished_run_seconds(dir, parse_json_with_comments(read_file(dir + "/" + result_file), dir + "/" + result_file));
        done_seconds += seconds;
      } else if (rec.value("status", std::string()) == "failed") {
        state = "failed: " + rec.value("error", std::string("no message")), ++failed;
        at = std::max(latest_train_checkpoint(RunFiles(dir)), last_logged(dir).first);
        remaining_fraction += 1;  // a rerun retries it; its share of the remaining time is a guess
      } else if (file_exists(dir + "/checkpoint.json")) {
        state = "trained, not evaluated", ++partial, at = steps;
        seconds = last_logged(dir).second;
      } else if (fs::exists(dir)) {
        const int64_t checkpoint = latest_train_checkpoint(RunFiles(dir));
        const auto [logged, elapsed] = last_logged(dir);
        at = std::max(checkpoint, logged);
        state = std::string(active ? "training or stopped" : "stopped") + " (checkpoint at step " +
                std::to_string(std::max<int64_t>(checkpoint, 0)) + ")";
        ++partial;
        seconds = elapsed;
        if (steps > 0 && at > 0) remaining_fraction += 1.0 - static_cast<double>(at) / static_cast<double>(steps);
        else remaining_fraction += 1;
      } else {
        state = "not started", ++untouched;
        remaining_fraction += 1;
      }
      const std::string steps_text = steps > 0 && at >= 0 ? std::to_string(at) + " / " + std::to_string(steps) : "";
      md += "| " + cell + " | " + std::to_string(seed) + " | " + state + " | " + steps_text + " | " +
            (seconds > 0 ? Progress::format_duration(seconds) : "") + " |\n";
      rows.push_back({{"cell", cell}, {"seed", seed}, {"dir", rel}, {"state", state}, {"step", at}, {"steps", steps},
                      {"seconds", seconds}});
    }
  const int64_t total = static_cast<int64_t>(cells.size() * seeds.size());
  std::string head = "# Study " + study.value("name", std::string()) + ": " + std::to_string(finished) + " of " +
                     std::to_string(total) + " runs finished";
  if (failed) head += ", " + std::to_string(failed) + " failed";
  if (partial) head += ", " + std::to_string(partial) + " started";
  if (untouched) head += ", " + std::to_string(untouched) + " not started";
  head += "\n\n";
  if (active) head += "A `mmt study run` is working in this folder now.\n\n";
  if (finished > 0) {
    const double per_run = done_seconds / static_cast<double>(finished);
    head += "Time: " + Progress::format_duration(done_seconds) + " for the finished runs (" +
            Progress::format_duration(per_run) + " each on average)";
    if (remaining_fraction > 0)
      head += "; the rest at that pace: about " + Progress::format_duration(per_run * remaining_fraction) +
              " (cells differ in cost: the mean of the finished ones is only a guide)";
    head += ".\n\n";
  }
  if (failed) head += "`mmt study run` again retries the failed runs and continues the others.\n\n";
  if (out_json)
    *out_json = {{"name", study.value("name", std::string())}, {"runs", rows}, {"finished", finished}, {"failed", failed},
                 {"started", partial}, {"not_started", untouched}, {"runner_active", active}, {"seconds", done_seconds}};
  return head + md;
}

}  // namespace mmt
