/* Study grids expand as designed (one factor at a time: base + every other level; product: every
 * combination), set values become --set assignments, bad grids fail naming the problem; mean and
 * sample standard deviation. */
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "mmt/eval/bootstrap.h"
#include "mmt/study/study.h"
#include "mmt/util/error.h"

namespace mmt {
namespace {

std::string grid_file(const std::string& name, const std::string& text) {
  const std::string dir = ::testing::TempDir() + "study_unit/";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "base.json") << R"({"train": {"steps": 5}})";
  std::ofstream(dir + name) << text;
  return dir + name;
}

const char* kFactors = R"("factors": [
  {"name": "a", "levels": [{"name": "merged"}, {"name": "co", "set": {"model.attention": "coattention"}},
                           {"name": "mixed", "set": {"model.layers": ["single_modality", "merged"]}}]},
  {"name": "b", "levels": [{"name": "one"}, {"name": "two", "set": {"train.lr": 0.5, "train.whole_word_mask": true}}]}])";

TEST(StudyGrid, OneFactorAtATimeAroundTheBase) {
  const auto g = load_grid(grid_file("oat.json", std::string(R"({"base": "base.json", "seeds": [1, 2], "set": {"train.steps": 7}, )") + kFactors + "}"));
  ASSERT_EQ(g.cells.size(), 4u);  // base + 2 other levels of a + 1 of b
  EXPECT_EQ(g.cells[0].name, "base");
  EXPECT_EQ(g.cells[1].name, "a=co");
  EXPECT_EQ(g.cells[2].name, "a=mixed");
  EXPECT_EQ(g.cells[3].name, "b=two");
  EXPECT_EQ(g.cells[3].levels.at("a"), "merged");
  const auto cfg = cell_config(g, g.cells[2], 2);
  EXPECT_EQ(cfg.model.layers, (std::vector<std::string>{"single_modality", "merged"}));
  EXPECT_EQ(cfg.train.steps, 7);  // grid set over the base file
  EXPECT_EQ(cfg.train.seed, 2u);
  const auto two = cell_config(g, g.cells[3], 1);
  EXPECT_DOUBLE_EQ(two.train.lr, 0.5);
  EXPECT_TRUE(two.train.whole_word_mask);
  EXPECT_EQ(cell_slug("a=co,b=two"), "a-co-b-two");
}

TEST(StudyGrid, ProductHasEveryCombination) {
  const auto g = load_grid(grid_file("prod.json", std::string(R"({"base": "base.json", "design": "product", )") + kFactors + "}"));
  ASSERT_EQ(g.cells.size(), 6u);
  EXPECT_EQ(g.cells[0].name, "a=merged,b=one");
  EXPECT_EQ(g.cells[5].name, "a=mixed,b=two");
}

TEST(StudyGrid, BadGridsFailNamingTheProblem) {
  auto fails_with = [](const std::string& text, const std::string& what) {
    try {
      load_grid(grid_file("bad.json", text));
      ADD_FAILURE() << "accepted: " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  fails_with(R"({"base": "base.json", "desing": "product"})", "unknown key 'desing'");
  fails_with(R"({"base": "nothere.json"})", "not found");
  fails_with(R"({"base": "base.json", "design": "random"})", "not one_at_a_time or product");
  fails_with(R"({"base": "base.json", "factors": [{"name": "a", "levels": [{"name": "x"}, {"name": "y", "set": {"model.attention": "sideways"}}]}]})",
             "cell a=y");
  fails_with(R"({"base": "base.json", "factors": [{"name": "a", "levels": [{"name": "x"}, {"name": "x"}]}]})", "two levels named 'x'");
}

TEST(StudyReport, MeanAndSampleStd) {
  const auto [m, s] = mean_std({1.0, 2.0, 3.0, 4.0});
  EXPECT_DOUBLE_EQ(m, 2.5);
  EXPECT_NEAR(s, std::sqrt(5.0 / 3.0), 1e-12);
  EXPECT_EQ(mean_std({7.0}).second, 0.0);
  EXPECT_TRUE(std::isnan(mean_std({}).first));
}

}  // namespace
}  // namespace mmt
