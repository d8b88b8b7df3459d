/* mmt study through the real binary: a 2-cell grid runs end to end and reports; a re-run skips
 * finished cells; a cell killed mid-run resumes from its checkpoint to the same result as an
 * uninterrupted study. */
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "mmt/eval/compare.h"
#include "mmt/io/npy.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmt::cli_test;

std::string write_grid(const std::string& dir) {
  const json grid = {
      {"name", "two"},
      {"base", std::string(MMT_SOURCE_DIR) + "/configs/demo.json"},
      {"set", {{"train.steps", 30}, {"train.batch_size", 32}, {"train.log_every", 5}, {"train.checkpoint_every", 10},
               {"model.num_layers", 2}, {"data.synth.num_train_images", 600}, {"data.synth.num_test_images", 20},
               {"data.synth.max_objects", 2}, {"eval.test_sets", json::array({"easy"})}}},
      {"seeds", {1}},
      {"factors", {{{"name", "attention"},
                    {"levels", {{{"name", "merged"}}, {{"name", "single_modality"}, {"set", {{"model.attention", "single_modality"}}}}}}}}}};
  std::ofstream(dir + "grid.json") << grid.dump(2);
  return dir + "grid.json";
}

json runs(const std::string& study) { return json::parse(slurp(study + "/study.json"))["runs"]; }

// The 30-step models retrieve at chance, and so alike that a report pairing the wrong runs would
// show the same "vs base" as the right one. This gives a run's `set` a clear gain instead: every
// second caption finds its image first (its saved outcomes and its result's recalls together).
void lift_every_second_caption(const std::string& run_dir, const std::string& set) {
  json result = json::parse(slurp(run_dir + "/eval.json"));
  json& entry = result["test_sets"][set];
  std::vector<int64_t> map;
  mmt::RetrievalOutcomes o = mmt::load_outcomes(run_dir, entry, set, map);
  for (size_t q = 0; q < o.image_retrieval.size(); q += 2) o.image_retrieval[q] = {1, 1, 1, 1};
  mmt::save_outcomes(run_dir + "/" + entry["outcomes_file"].get<std::string>(), o);
  const mmt::DirectionMetrics m = mmt::summarise(o.image_retrieval);
  entry["image_retrieval"]["r1"] = m.r1, entry["image_retrieval"]["r5"] = m.r5, entry["image_retrieval"]["r10"] = m.r10;
  std::ofstream(run_dir + "/eval.json") << result.dump(2);
}

TEST(Study, TwoCellsRunReportAndRerunSkips) {
  const std::string dir = scratch("s");
  const std::string grid = write_grid(dir), out = dir + "study";
  auto r = run_mmt("study run " + grid + " --out " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  json s = runs(out);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0]["cell"], "base");
  EXPECT_EQ(s[1]["cell"], "attention=single_modality");
  for (const auto& run : s) {
    EXPECT_EQ(run["status"], "ran");
    EXPECT_TRUE(fs::exists(out + "/" + run["dir"].get<std::string>() + "/eval.json"));
  }
  const auto written = fs::last_write_time(out + "/cells/base/seed-1/eval.json");

  r = run_mmt("study run " + grid + " --out " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  for (const auto& run : runs(out)) EXPECT_EQ(run["status"], "skipped (finished earlier)");
  EXPECT_EQ(fs::last_write_time(out + "/cells/base/seed-1/eval.json"), written);

  lift_every_second_caption(out + "/" + s[1]["dir"].get<std::string>(), "easy");
  r = run_mmt("study report " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string md = slurp(out + "/report.md");
  EXPECT_NE(md.find("| base | 1 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| attention=single_modality | 1 |"), std::string::npos) << md;
  const double base_r1 = json::parse(slurp(out + "/cells/base/seed-1/eval.json"))["test_sets"]["easy"]["image_retrieval"]["r1"];
  char cell[64];
  std::snprintf(cell, sizeof cell, "| base | 1 | %.1f |", base_r1);
  EXPECT_NE(md.find(cell), std::string::npos) << md;
  // Time: the runs' own records (training + evaluation), per cell and in all.
  const double base_minutes = (json::parse(slurp(out + "/cells/base/seed-1/checkpoint.json"))["train_seconds"].get<double>() +
                               json::parse(slurp(out + "/cells/base/seed-1/eval.json"))["wall_time_s"].get<double>()) / 60;
  EXPECT_NE(md.find("**Time: 0 h "), std::string::npos) << md;
  EXPECT_NE(md.find("for the 2 finished runs (seed 1 "), std::string::npos) << md;
  const size_t row = md.find("| base | 1 |");
  ASSERT_NE(row, std::string::npos);
  const std::string line = md.substr(row, md.find('\n', row) - row);
  std::snprintf(cell, sizeof cell, "| %.1f |", base_minutes);
  ASSERT_GT(line.size(), std::strlen(cell));
  EXPECT_EQ(line.substr(line.size() - std::strlen(cell)), cell) << line;  // the last column: min / run
  // vs base: the difference with its test-set interval - what mmt compare finds for the two runs.
  r = run_mmt("compare " + out + "/" + s[0]["dir"].get<std::string>() + " " + out + "/" + s[1]["dir"].get<std::string>() +
              " --json " + dir + "cmp.json");
  ASSERT_EQ(r.status, 0) << r.err;
  const json d = json::parse(slurp(dir + "cmp.json"))["sets"]["easy"]["metrics"][0];
  ASSERT_EQ(d["metric"], "image_r1");
  EXPECT_GT(d["delta"].get<double>(), 30.0) << d.dump();  // half the captions found, against chance (5 %)
  EXPECT_GT(d["low"].get<double>(), 20.0) << d.dump();
  EXPECT_LT(d["high"].get<double>(), 70.0) << d.dump();
  char versus[96];
  std::snprintf(versus, sizeof versus, "| %+.1f (%+.1f..%+.1f) |", d["delta"].get<double>(), d["low"].get<double>(),
                d["high"].get<double>());
  EXPECT_NE(md.find(versus), std::string::npos) << versus << "\n" << md;
  // report-vs-base.csv: all six recalls of the cell against the base, the same numbers.
  const std::string vs = slurp(out + "/report-vs-base.csv");
  char csv_row[160];
  std::snprintf(csv_row, sizeof csv_row, "attention,attention=single_modality,easy,image_r1,%.4f,%.4f,%.4f,%.4f,%.4f,",
                d["a"].get<double>(), d["b"].get<double>(), d["delta"].get<double>(), d["low"].get<double>(),
                d["high"].get<double>());
  EXPECT_NE(vs.find(csv_row), std::string::npos) << csv_row << "\n" << vs;
  EXPECT_NE(vs.find("attention,attention=single_modality,easy,text_r10,"), std::string::npos) << vs;
  // true@1 against the base from the captions' saved hits: what mmt compare pairs.
  const json t = json::parse(slurp(dir + "cmp.json"))["sets"]["easy"]["true_at_1"];
  std::snprintf(csv_row, sizeof csv_row, "attention,attention=single_modality,easy,true_at_1,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f",
                t["a"].get<double>(), t["b"].get<double>(), t["delta"].get<double>(), t["low"].get<double>(),
                t["high"].get<double>(), t["share_not_better"].get<double>());
  EXPECT_NE(vs.find(csv_row), std::string::npos) << csv_row << "\n" << vs;
  // ... and in report.md's own column, right after image R@1's.
  char true_versus[192];
  std::snprintf(true_versus, sizeof true_versus, "%s %+.1f (%+.1f..%+.1f) |", versus, t["delta"].get<double>(),
                t["low"].get<double>(), t["high"].get<double>());
  EXPECT_NE(md.find(true_versus), std::string::npos) << true_versus << "\n" << md;
  EXPECT_NE(slurp(out + "/report.csv").find("attention,attention=single_modality,easy,image_r1,"), std::string::npos);
  // true@1 (synthetic sets): a column of its own, each run's value in report.csv.
  EXPECT_NE(md.find("| text R@10 | true@1 | image R@1 vs base | true@1 vs base |"), std::string::npos) << md;
  char true1[128];
  std::snprintf(true1, sizeof true1, "attention,base,easy,true_at_1,%.4f,",
                json::parse(slurp(out + "/cells/base/seed-1/eval.json"))["test_sets"]["easy"]["true_at_1"]["model"].get<double>());
  EXPECT_NE(slurp(out + "/report.csv").find(true1), std::string::npos) << true1;
  EXPECT_NE(slurp(out + "/report.html").find("<svg"), std::string::npos);
  EXPECT_TRUE(fs::exists(out + "/charts/attention-easy-r1.svg"));
  EXPECT_TRUE(fs::exists(out + "/charts/attention-loss.svg"));

  // The same two runs as a product grid (no cell named base): every cell is compared with the
  // grid's first cell, with the same numbers.
  json product = json::parse(slurp(out + "/study.json"));
  product["design"] = "product";
  product["cells"] = {"attention=merged", "attention=single_modality"};
  for (auto& run : product["runs"])
    if (run["cell"] == "base") run["cell"] = "attention=merged";
  std::ofstream(out + "/study.json") << product.dump(2);
  r = run_mmt("study report " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string pmd = slurp(out + "/report.md");
  EXPECT_NE(pmd.find("*base* is the grid's first cell, `attention=merged`"), std::string::npos) << pmd;
  EXPECT_NE(pmd.find("## all cells"), std::string::npos) << pmd;
  EXPECT_NE(pmd.find(true_versus), std::string::npos) << true_versus << "\n" << pmd;
  EXPECT_NE(slurp(out + "/report-vs-base.csv").find("all cells,attention=single_modality,easy,image_r1,"), std::string::npos);
}

TEST(Study, PartOfAGridRunsAloneAndTheRestLater) {
  const std::string dir = scratch("p");
  const std::string grid = write_grid(dir), out = dir + "study";
  auto r = run_mmt("study run " + grid + " --out " + out + " --cells attention=single_modality --seeds 1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_FALSE(fs::exists(out + "/cells/base"));
  ASSERT_EQ(runs(out).size(), 1u);
  r = run_mmt("study report " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(slurp(out + "/report.md").find("1 of 2 runs have results"), std::string::npos) << slurp(out + "/report.md");
  r = run_mmt("study run " + grid + " --out " + out);  // the rest; the part already run is kept
  ASSERT_EQ(r.status, 0) << r.err;
  const json s = runs(out);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0]["status"], "ran");
  EXPECT_EQ(s[1]["status"], "skipped (finished earlier)");
  r = run_mmt("study run " + grid + " --out " + out + " --cells attention=sideways");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("its cells: base, attention=single_modality"), std::string::npos) << r.err;

  // A second runner on the same folder is refused while the first holds it.
  const int fd = ::open((out + "/.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::flock(fd, LOCK_EX | LOCK_NB), 0);
  r = run_mmt("study run " + grid + " --out " + out);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("another mmt study run is working in"), std::string::npos) << r.err;
  r = run_mmt("study status " + out);  // ... and study status says a runner is at work
  EXPECT_NE(r.out.find("A `mmt study run` is working in this folder now."), std::string::npos) << r.out;
  ::close(fd);
  EXPECT_EQ(run_mmt("study run " + grid + " --out " + out).status, 0);

  // Another seed of one cell, run later: study.json and the report count both seeds (they listed
  // the last invocation's only), and the report says which runs are missing.
  r = run_mmt("study run " + grid + " --out " + out + " --cells attention=single_modality --seeds 2");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(json::parse(slurp(out + "/study.json"))["seeds"], json::array({1, 2}));
  ASSERT_EQ(run_mmt("study report " + out).status, 0);
  const std::string md = slurp(out + "/report.md");
  EXPECT_NE(md.find("(2 seeds: [1,2])"), std::string::npos) << md;
  EXPECT_NE(md.find("3 of 4 runs have results"), std::string::npos) << md;
  EXPECT_NE(md.find("| attention=single_modality | 2 |"), std::string::npos) << md;
  EXPECT_EQ(md.find("without a result on every test set"), std::string::npos) << md;

  // The report reads the runs in seed order, not in study.json's order (which follows the
  // invocations): listing them the other way round changes nothing.
  const std::string csv_before = slurp(out + "/report.csv"), vs_before = slurp(out + "/report-vs-base.csv");
  json reversed = json::parse(slurp(out + "/study.json"));
  std::reverse(reversed["runs"].begin(), reversed["runs"].end());
  std::ofstream(out + "/study.json") << reversed.dump(2);
  ASSERT_EQ(run_mmt("study report " + out).status, 0);
  EXPECT_EQ(slurp(out + "/report.csv"), csv_before);
  EXPECT_EQ(slurp(out + "/report-vs-base.csv"), vs_before);

  // One run holds a test set the others lack (another set evaluated on it alone): the report names
  // the runs without it, and that set's rows say how many of the cell's seeds they average.
  const std::string one = out + "/cells/attention-single_modality/seed-1/eval.json";
  json e = json::parse(slurp(one));
  e["test_sets"]["easy_again"] = e["test_sets"]["easy"];
  std::ofstream(one) << e.dump(2);
  r = run_mmt("study report " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string md2 = slurp(out + "/report.md");
  const size_t note = md2.find("**Runs without a result on every test set**: `cells/attention-single_modality/seed-2` (easy_again)");
  EXPECT_NE(note, std::string::npos) << md2;
  EXPECT_NE(md2.find("`cells/base/seed-1` (easy_again)"), std::string::npos) << md2;
  EXPECT_NE(r.err.find("cells/base/seed-1 has no result for easy_again"), std::string::npos) << r.err;
  const size_t section = md2.find("### easy_again");
  ASSERT_NE(section, std::string::npos) << md2;
  char row[96];  // the one seed's value, no spread
  std::snprintf(row, sizeof row, "| attention=single_modality | 1 of 2 | %.1f |",
                e["test_sets"]["easy"]["image_retrieval"]["r1"].get<double>());
  EXPECT_NE(md2.find(row, section), std::string::npos) << row << "\n" << md2;
  EXPECT_NE(md2.find("| base | 0 of 1 | - |", section), std::string::npos) << md2;
  EXPECT_NE(md2.find("| attention=single_modality | 2 |"), std::string::npos) << md2;  // easy: both seeds
  // report-vs-base.csv: nothing on easy_again, where the base has no result (no row of the base
  // against itself either: those once repeated the previous set's last rows under its name).
  const std::string vs2 = slurp(out + "/report-vs-base.csv");
  EXPECT_EQ(vs2.find(",easy_again,"), std::string::npos) << vs2;
  EXPECT_EQ(vs2.find(",base,"), vs2.find(",base,cell,")) << vs2;  // the header's only
  EXPECT_NE(vs2.find("attention,attention=single_modality,easy,image_r1,"), std::string::npos) << vs2;
}

TEST(Study, KilledCellResumesToTheUninterruptedResult) {
  const std::string dir = scratch("k");
  const std::string grid = write_grid(dir);
  // Reference: the study straight through.
  auto r = run_mmt("study run " + grid + " --out " + dir + "straight");
  ASSERT_EQ(r.status, 0) << r.err;
  // The same study killed (SIGKILL) after step 20 of its first cell, then run again.
  r = run_mmt("study run " + grid + " --out " + dir + "killed", "MMT_FAULT_KILL_AFTER_STEP=20");
  EXPECT_EQ(r.status, 128 + 9);
  EXPECT_FALSE(fs::exists(dir + "killed/cells/base/seed-1/eval.json"));
  // study status: the killed run stopped at its checkpoint of step 20, the other not started.
  r = run_mmt("study status " + dir + "killed --json " + dir + "status.json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("0 of 2 runs finished, 1 started, 1 not started"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| base | 1 | stopped (checkpoint at step 20) | 20 / 30 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| attention=single_modality | 1 | not started |"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("is working in this folder"), std::string::npos) << r.out;
  const json st = json::parse(slurp(dir + "status.json"));
  EXPECT_EQ(st["runs"][0]["step"], 20);
  EXPECT_EQ(st["not_started"], 1);
  r = run_mmt("study run " + grid + " --out " + dir + "killed");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("resuming from its last checkpoint"), std::string::npos) << r.err;
  const json s = runs(dir + "killed");
  EXPECT_EQ(s[0]["status"], "resumed");
  EXPECT_EQ(s[1]["status"], "ran");
  for (const char* cell : {"base", "attention-single_modality"}) {
    const std::string a = dir + "straight/cells/" + cell + "/seed-1/", b = dir + "killed/cells/" + cell + "/seed-1/";
    EXPECT_EQ(slurp(a + "model.safetensors"), slurp(b + "model.safetensors")) << cell;
    const json ea = json::parse(slurp(a + "eval.json"))["test_sets"]["easy"], eb = json::parse(slurp(b + "eval.json"))["test_sets"]["easy"];
    EXPECT_EQ(ea["image_retrieval"], eb["image_retrieval"]) << cell;
    EXPECT_EQ(ea["text_retrieval"], eb["text_retrieval"]) << cell;
  }
}

}  // namespace

namespace {

// A cell that fails at training time (its dataset folder does not exist: the grid resolves, the
// data cannot be read) costs that cell only: the other cell is trained and evaluated, the study
// exits non-zero naming the failed run, study.json records it, the report names it, and a rerun
// retries it while skipping the finished one.
TEST(Study, AFailedCellIsRecordedAndTheOthersRun) {
  const std::string dir = scratch("f");
  json grid = json::parse(slurp(write_grid(dir)));
  {
    std::ofstream v(dir + "vocab.txt");
    v << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\n";
  }
  grid["factors"][0]["levels"][1] = {
      {"name", "broken"},
      {"config", {{"data", {{"source", "datasets"}, {"tokenizer", dir + "vocab.txt"}, {"image_size", 32},
                            {"datasets", {{{"format", "folder"}, {"path", dir + "no-such-folder"}}}}}},
                  {"model", {{"image_input", "patches"}, {"patch_size", 8}}},
                  {"train", {{"mrm_kl_weight", 0}}}}}};
  std::ofstream(dir + "grid.json") << grid.dump(2);
  const std::string out = dir + "study";
  auto r = run_mmt("study run " + dir + "grid.json --out " + out);
  EXPECT_EQ(r.status, 2) << r.err;
  // Named before any training, and the study goes on.
  const size_t warned = r.err.find("mmt study: warning: cell attention=broken: data.datasets[0].path '" + dir +
                                   "no-such-folder' not found - its runs will fail");
  EXPECT_NE(warned, std::string::npos) << r.err;
  EXPECT_LT(warned, r.err.find("mmt train")) << r.err;
  EXPECT_EQ(r.err.find("cell base: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("1 of 2 runs failed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("attention=broken seed 1: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no-such-folder"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::exists(out + "/cells/base/seed-1/eval.json"));
  // study.log: the whole session - the runs' training and evaluation, the failure, the verdict.
  const std::string study_log = slurp(out + "/study.log");
  EXPECT_EQ(study_log.rfind("mmt study: run of " + dir + "grid.json started ", 0), 0u) << study_log;
  EXPECT_NE(study_log.find("mmt train: wrote " + out + "/cells/base/seed-1/model.safetensors"), std::string::npos) << study_log;
  EXPECT_NE(study_log.find("mmt eval"), std::string::npos) << study_log;
  EXPECT_NE(study_log.find("FAILED: "), std::string::npos) << study_log;
  EXPECT_NE(study_log.find("mmt study: 1 of 2 runs failed"), std::string::npos) << study_log;
  EXPECT_TRUE(fs::exists(out + "/cells/base/seed-1/train.log"));
  json s = runs(out);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s[0]["status"], "ran");
  EXPECT_EQ(s[1]["status"], "failed");
  EXPECT_NE(s[1]["error"].get<std::string>().find("no-such-folder"), std::string::npos) << s[1].dump();

  r = run_mmt("study status " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("1 of 2 runs finished, 1 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| attention=broken | 1 | failed: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| base | 1 | finished | 30 / 30 |"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("retries the failed runs"), std::string::npos) << r.out;
  r = run_mmt("study report " + out);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("**Failed runs**: `cells/attention-broken/seed-1` ("), std::string::npos) << r.out;
  EXPECT_NE(slurp(out + "/report.html").find("<p><b>Failed runs</b>: <code>cells/attention-broken/seed-1</code> ("),
            std::string::npos);  // the page carries the report's notes too
  EXPECT_NE(r.out.find("| base | 1 |"), std::string::npos) << r.out;

  // Rerun: the finished cell is skipped, the failed one tried again (and fails again).
  r = run_mmt("study run " + dir + "grid.json --out " + out);
  EXPECT_EQ(r.status, 2) << r.err;
  s = runs(out);
  EXPECT_EQ(s[0]["status"], "skipped (finished earlier)");
  EXPECT_EQ(s[1]["status"], "failed");
  // SIGTERM stops the study - the run checkpoints and the study exits - rather than failing that
  // cell and going on to the next.
  grid["set"]["train.steps"] = 100000, grid["set"]["train.log_every"] = 1;
  std::ofstream(dir + "grid3.json") << grid.dump(2);
  const std::string term = dir + "study3";
  const std::string cmd = std::string(MMT_BINARY) + " study run " + dir + "grid3.json --out " + term + " >/dev/null 2>" +
                          dir + "term.txt & echo $! > " + dir + "pid";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  const std::string metrics = term + "/cells/base/seed-1/metrics.jsonl";
  for (int i = 0; i < 600 && (!fs::exists(metrics) || slurp(metrics).empty()); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(std::system(("kill -TERM " + slurp(dir + "pid")).c_str()), 0);
  for (int i = 0; i < 600 && slurp(dir + "term.txt").find("mmt: interrupted") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string err = slurp(dir + "term.txt");
  EXPECT_NE(err.find("interrupted by SIGTERM"), std::string::npos) << err;
  EXPECT_EQ(err.find("FAILED"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(term + "/cells/attention-broken")) << err;  // the study stopped there
  for (const auto& run : runs(term)) EXPECT_NE(run["status"], "failed") << run.dump();

  // A grid whose evaluation file is missing fails before any training.
  grid["eval"] = {{"protocol", "flickr30k-1k"}, {"karpathy", dir + "missing.json"}};
  std::ofstream(dir + "grid2.json") << grid.dump(2);
  r = run_mmt("study run " + dir + "grid2.json --out " + dir + "study2");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("eval.karpathy '" + dir + "missing.json' not found"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir + "study2/cells"));
}

}  // namespace
