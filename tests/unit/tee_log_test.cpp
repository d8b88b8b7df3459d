/* TeeLog (a run's console log copied into train.log): the console gets every byte, the file the
 * finished lines - a progress line redrawn in place ends up as its last state, ANSI erases
 * dropped; only lines after open_file; threads writing at once lose no line and mix none. The
 * progress line a run prints there: rate and ETA of a resumed run count its own steps only. */
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <thread>
#include <vector>

#include "mmt/util/error.h"
#include "mmt/util/fs.h"
#include "mmt/train/progress.h"
#include "mmt/util/tee_log.h"

namespace mmt {
namespace {

TEST(TeeLog, FileGetsFinishedLinesConsoleEverything) {
  const std::string path = ::testing::TempDir() + "mmt_tee.log";
  std::filesystem::remove(path);
  std::ostringstream console;
  {
    TeeLog log(console);
    log << "before the file\n";
    log.open_file(path);
    log << "step " << 1 << " of " << 3 << "\n";
    log << "\r\033[Ktrain 1/3" << std::flush << "\r\033[Ktrain 2/3" << std::flush << "\r\033[Ktrain 3/3\n";
    log.file_only("only in the file");
    log << "unfinished";
  }
  EXPECT_EQ(console.str(), "before the file\nstep 1 of 3\n\r\033[Ktrain 1/3\r\033[Ktrain 2/3\r\033[Ktrain 3/3\nunfinished");
  EXPECT_EQ(read_file(path), "step 1 of 3\ntrain 3/3\nonly in the file\n");
  // Appends: a resumed run's session follows the first.
  {
    TeeLog log(console);
    log.open_file(path);
    log << "resumed\n";
  }
  EXPECT_EQ(read_file(path), "step 1 of 3\ntrain 3/3\nonly in the file\nresumed\n");
  TeeLog bad(console);
  EXPECT_THROW(bad.open_file(::testing::TempDir() + "no/such/dir/train.log"), Error);
}

TEST(TeeLog, ThreadsWritingAtOnceKeepTheirLinesWhole) {
  const std::string path = ::testing::TempDir() + "mmt_tee_threads.log";
  std::filesystem::remove(path);
  std::ostringstream console;
  {
    TeeLog log(console);
    log.open_file(path);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&log, t] {
        for (int i = 0; i < 500; ++i) {
          const std::string line = "thread " + std::to_string(t) + " line " + std::to_string(i) + "\n";
          log.write(line.data(), static_cast<std::streamsize>(line.size()));  // one block, as the loader warns
        }
      });
    for (auto& th : threads) th.join();
  }
  std::istringstream in(read_file(path));
  int lines = 0;
  for (std::string line; std::getline(in, line); ++lines) ASSERT_EQ(line.rfind("thread ", 0), 0u) << line;
  EXPECT_EQ(lines, 2000);
}

// A run resumed at step 100 of 200 that has done 50 more in 10 s: 5 steps/s (x 32 examples)
// and 10 s to go - not 150 steps over 10 s (the rate of every session over this one's time).
TEST(Progress, ResumedRunsRateAndEtaCountItsOwnSteps) {
  std::ostringstream out;
  Progress fresh("train", 200, out, "ex", 32);
  EXPECT_EQ(fresh.line(50, "loss 1.5", 10.0), "train 50/200 [ 25%] 160.0 ex/s, 10s elapsed, ETA 30s | loss 1.5");
  Progress resumed("train", 200, out, "ex", 32);
  resumed.start_at(100);
  EXPECT_EQ(resumed.line(150, "", 10.0), "train 150/200 [ 75%] 160.0 ex/s, 10s elapsed, ETA 10s");
  EXPECT_EQ(resumed.line(100, "", 0.0), "train 100/200 [ 50%] 0.0 ex/s, 0s elapsed, ETA 0s");
  EXPECT_EQ(resumed.line(200, "", 20.0), "train 200/200 [100%] 160.0 ex/s, 20s elapsed, ETA 0s");
}

// Hard negatives from step 100 of 200, their steps expected 4x slower: after 50 steps in 50 s the
// ETA is 50 s for the easy steps left and 400 s for the hard ones; once step 100 is passed, the
// hard steps' own rate counts (here 150 - 100 steps in 100 s since the switch: 2 s a step).
TEST(Progress, EtaCountsStepsExpectedSlowerAtTheirCost) {
  std::ostringstream out;
  Progress p("train", 200, out, "ex", 1);
  p.expect_slower_from(100, 4.0);
  EXPECT_EQ(p.line(50, "", 50.0), "train 50/200 [ 25%] 1.0 ex/s, 50s elapsed, ETA 7m30s");
  EXPECT_EQ(p.line(100, "", 100.0), "train 100/200 [ 50%] 1.0 ex/s, 1m40s elapsed, ETA 6m40s");
  p.update(100);  // the switch is timed now, at about 0 s
  EXPECT_EQ(p.line(150, "", 100.0), "train 150/200 [ 75%] 1.5 ex/s, 1m40s elapsed, ETA 1m40s");
  // A run resumed past the switch: every step left is alike.
  Progress resumed("train", 200, out, "ex", 1);
  resumed.start_at(120);
  resumed.expect_slower_from(100, 4.0);
  EXPECT_EQ(resumed.line(140, "", 20.0), "train 140/200 [ 70%] 1.0 ex/s, 20s elapsed, ETA 1m00s");
}

}  // namespace
}  // namespace mmt
