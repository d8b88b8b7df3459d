/* Studies (docs/study.md): a grid of training runs that vary the paper's factors around a base
 * config, each trained and evaluated, then compared with mean +- std over seeds.
 *
 * A grid file (JSON with comments):
 *   {"name": "mini",
 *    "base": "../demo.json",                 config file every cell starts from (relative to the grid)
 *    "set": {"train.steps": 1000},           --set overrides of every cell (equal steps per cell)
 *    "seeds": [1, 2, 3],                     each cell once per seed (train.seed)
 *    "design": "one_at_a_time",              or "product"
 *    "factors": [{"name": "attention",
 *                 "levels": [{"name": "merged"},                          the first level is the base's
 *                            {"name": "coattention", "set": {"model.attention": "coattention"},
 *                             "config": {...nested config JSON, e.g. a data.datasets list...}},
 *                            {"name": "sbu", "file": "../paper/data_sbu.json"}]}],  a config file's own keys
 *    "eval": {"protocol": "test", "karpathy": "...", "images": "..."}}  real-image protocol (optional;
 *                                            default: the synthetic test sets of eval.test_sets)
 * one_at_a_time: the base cell (every factor at its first level) plus, for each factor, each
 * other level with the rest at their first (the paper's design); product: every combination.
 * Set values may be strings, numbers, booleans or arrays (joined with ','). */
#pragma once

#include <cstdint>
#include <iosfwd>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mmt/config/options.h"

namespace mmt {

struct StudyCell {
  std::string name;                         // "base", "attention=coattention", "a=x,b=y"
  std::map<std::string, std::string> levels;  // factor -> level name
  std::vector<std::string> overrides;       // --set assignments (grid set + levels), seed excluded
  std::vector<nlohmann::json> configs;      // nested config fragments of its levels
};

struct StudyGrid {
  std::string name, path, base, design;
  std::string protocol, karpathy, images, features;  // "eval": a real-image protocol instead of the synthetic test sets
  std::vector<int64_t> seeds;
  std::vector<std::string> factors;                         // in file order
  std::map<std::string, std::vector<std::string>> levels;   // factor -> level names, base level first
  std::vector<StudyCell> cells;
  nlohmann::json source;                                    // the grid file's JSON
};

/// Reads and expands a grid file; errors name the file and the key.
StudyGrid load_grid(const std::string& path);

/// The resolved config of one cell and seed (validated).
ExperimentConfig cell_config(const StudyGrid& grid, const StudyCell& cell, int64_t seed);

/// A finished run's time as the report and `mmt study status` count it: its training
/// (checkpoint.json's train_seconds, every session) plus the evaluation that wrote `result` (its
/// wall_time_s).
double finished_run_seconds(const std::string& run_dir, const nlohmann::json& result);

/// The input files a run of `cfg` reads that are not there, each as "key 'path'": the datasets'
/// files, folders and feature stores, the tokenizer, and the checkpoints it starts from.
std::vector<std::string> missing_inputs(const ExperimentConfig& cfg);

/// "attention=coattention" -> "attention-coattention" (a folder name).
std::string cell_slug(const std::string& name);

/// Runs every cell x seed under out_dir (cells/<slug>/seed-<s>/), seed by seed (every cell of
/// the first seed, then of the second, ...): trains, then evaluates. A cell
/// with eval.json is skipped, one with a checkpoint resumes, one trained but not evaluated is
/// evaluated. Progress (cells done, ETA) on `log`. Writes out_dir/grid.json (the grid) and
/// out_dir/study.json (cells, seeds, status, seconds).
/// `only_cells` / `only_seeds` (empty = all) run a part of the grid (make demo).
void run_study(const std::string& grid_path, const std::string& out_dir, std::ostream& log,
               const std::vector<std::string>& only_cells = {}, const std::vector<int64_t>& only_seeds = {});

/// Tables (Markdown + CSV), SVG charts and one HTML page from a study folder: report.md,
/// report.csv, report.html, charts/*.svg. Returns the Markdown.
std::string report_study(const std::string& out_dir, std::ostream& log);

/// Where a study folder stands, from what its runs wrote: every cell x seed of the grid as
/// finished, failed (with its error), trained but not evaluated, started (its newest checkpoint
/// and last logged step) or not started; the time the finished runs took and, at their pace, an
/// estimate for the rest; whether a `mmt study run` works in it now (its lock is held). Markdown;
/// `out_json` (optional) the same as JSON.
std::string study_status(const std::string& out_dir, nlohmann::json* out_json = nullptr);

/// The seeds of a study folder: those `declared` and those of its recorded `runs` (study.json's
/// "runs"), sorted - a grid run in parts (--seeds 1, then --seeds 2) has them all.
std::vector<int64_t> study_seeds(const nlohmann::json& runs, const std::vector<int64_t>& declared);

}  // namespace mmt
