/* Helpers of the CLI tests: run the real `mmt` binary with per-test output files (ctest runs the
 * tests of a file as parallel processes), read files, and a small real-data mixture config. */
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

namespace mmt::cli_test {

/// This test's name as a file name (parameterized tests have a '/' in theirs).
inline std::string test_name() {
  std::string n = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  for (auto& c : n)
    if (c == '/') c = '_';
  return n;
}

/// A path of this test alone.
inline std::string own(const std::string& what) { return ::testing::TempDir() + test_name() + "_" + what; }

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Result {
  int status;  // exit status, or 128 + signal
  std::string out, err;
};

/// Runs `env mmt args [< stdin]`, capturing stdout and stderr.
inline Result run_mmt(const std::string& args, const std::string& env = "", const std::string* input = nullptr) {
  std::string cmd = env + " " + std::string(MMT_BINARY) + " " + args;
  if (input) {
    std::ofstream(own("in.txt")) << *input;
    cmd += " <" + own("in.txt");
  }
  cmd += " >" + own("out.txt") + " 2>" + own("err.txt");
  const int rc = std::system(cmd.c_str());
  const int status = WIFEXITED(rc) ? WEXITSTATUS(rc) : WIFSIGNALED(rc) ? 128 + WTERMSIG(rc) : -1;
  return {status, slurp(own("out.txt")), slurp(own("err.txt"))};
}

/// A fresh, empty folder of this test.
inline std::string scratch(const std::string& name) {
  const auto dir = std::filesystem::path(::testing::TempDir()) / (std::string("mmt_cli_") + test_name() + "_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string() + "/";
}

/// Writes DIR/vocab.txt and DIR/config.json: a tiny patch model on a mixture of three fixture
/// datasets (folder, webdataset shard, COCO), dataset sampling, 2 loader threads.
inline std::string real_mixture_config(const std::string& dir, int64_t steps) {
  const std::string data = std::string(MMT_SOURCE_DIR) + "/tests/data/datasets/";
  {
    std::ofstream v(dir + "vocab.txt");
    v << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    for (const char* w : {"a", "cat", "on", "mat", "red", "brown", "dog", "web", "caption", "number", "0", "1", "2",
                          "photo", "of", "object", ",", ".", "9", "25", "30", "3", "4"})
      v << w << "\n";
  }
  using nlohmann::json;
  const json cfg = {
      {"name", "real-mixture"},
      {"model", {{"preset", "tiny"}, {"image_input", "patches"}, {"patch_size", 8}, {"attention", "merged"}, {"num_layers", 2}}},
      {"data", {{"source", "datasets"}, {"tokenizer", dir + "vocab.txt"}, {"sampling", "dataset"}, {"image_size", 32},
                {"loader_threads", 2}, {"prefetch", 3},
                {"datasets", {{{"format", "folder"}, {"path", data + "folder"}, {"name", "clipart"}},
                              {{"format", "webdataset"}, {"path", data + "wds"}, {"name", "web"}},
                              {{"format", "coco"}, {"path", data + "coco/annotations/captions_train2017.json"},
                               {"images", data + "coco/train2017"}, {"name", "coco"}}}}}},
      {"train", {{"steps", steps}, {"batch_size", 4}, {"log_every", 3}, {"warmup_steps", 2}, {"checkpoint_every", 3}}}};
  std::ofstream(dir + "config.json") << cfg.dump(2);
  return dir + "config.json";
}

}  // namespace mmt::cli_test
