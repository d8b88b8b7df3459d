/* The committed configs stay loadable: every configs/ file resolves, validates and builds its
 * model at the tiny preset, keeping the factor its row varies. And "base" includes. */
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/model/transformer.h"
#include "mmt/util/error.h"

namespace mmt {
namespace {

const std::string kConfigs = std::string(MMT_SOURCE_DIR) + "/configs";

TEST(Configs, EveryCommittedConfigLoadsAndBuildsSmall) {
  int n = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(kConfigs)) {
    if (entry.path().extension() != ".json") continue;
    const std::string path = entry.path().string();
    ExperimentConfig cfg;
    ASSERT_NO_THROW(cfg = load_config(path, {"model.preset=tiny"})) << path;
    EXPECT_NO_THROW(MultimodalTransformer(cfg.model, data_input_dims(cfg))) << path;
    ++n;
  }
  EXPECT_GE(n, 20);
}

TEST(Configs, PaperRowsKeepTheirFactorAtTheTinyPreset) {
  const auto heads = load_config(kConfigs + "/paper/architecture_heads1-768.json", {"model.preset=tiny"});
  EXPECT_EQ(heads.model.hidden, 128);
  EXPECT_EQ(heads.model.num_heads, 1);
  EXPECT_EQ(heads.model.head_dim, 768);
  const auto mixed = load_config(kConfigs + "/paper/architecture_mixed-modality.json", {"model.preset=tiny"});
  EXPECT_EQ(layer_types(mixed.model).size(), 6u);
  EXPECT_EQ(layer_types(mixed.model).back(), AttentionType::kMerged);
  const auto full = load_config(kConfigs + "/paper/architecture_single-stream.json", {});
  EXPECT_EQ(full.model.hidden, 768);  // the paper's size without the override
  EXPECT_EQ(full.model.attention, "single_stream");
  EXPECT_EQ(full.name, "architecture_single-stream");
}

TEST(Configs, BaseFilesApplyFirstAndCyclesFail) {
  const std::string dir = ::testing::TempDir() + "cfgbase/";
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "a.json") << R"({"train": {"steps": 5, "lr": 0.5}})";
  std::ofstream(dir + "b.json") << R"({"base": "a.json", "train": {"steps": 7}})";
  const auto cfg = load_config(dir + "b.json", {});
  EXPECT_EQ(cfg.train.steps, 7);
  EXPECT_EQ(cfg.train.lr, 0.5);
  std::ofstream(dir + "c.json") << R"({"base": "c.json"})";
  try {
    load_config(dir + "c.json", {});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cycle"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mmt
