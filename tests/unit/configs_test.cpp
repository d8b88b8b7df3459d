/* The committed configs stay loadable: every configs/ file resolves, validates and builds its
 * model at the tiny preset, keeping the factor its row varies. And "base" includes. */
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/model/transformer.h"
#include "mmt/study/study.h"
#include "mmt/util/error.h"

namespace mmt {
namespace {

const std::string kConfigs = std::string(MMT_SOURCE_DIR) + "/configs";

TEST(Configs, EveryCommittedConfigLoadsAndBuildsSmall) {
  int n = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(kConfigs)) {
    if (entry.path().extension() != ".json") continue;
    const std::string path = entry.path().string();
    if (path.find("/configs/studies/") != std::string::npos) continue;  // grids (next test)
    ExperimentConfig cfg;
    ASSERT_NO_THROW(cfg = load_config(path, {"model.preset=tiny"})) << path;
    ++n;
    // Real-data configs name files relative to the repository root that scripts build (data/real,
    // the BERT vocabulary): their model is built with a stand-in vocabulary size.
    if (cfg.data.source == "datasets") {
      EXPECT_NO_THROW(MultimodalTransformer(cfg.model, InputDims{30522, 3 * cfg.model.patch_size * cfg.model.patch_size, 0})) << path;
      continue;
    }
    EXPECT_NO_THROW(MultimodalTransformer(cfg.model, data_input_dims(cfg))) << path;
  }
  EXPECT_GE(n, 20);
}

// Every committed study grid expands, and each of its cells resolves to a valid config.
TEST(Configs, EveryStudyGridExpands) {
  std::map<std::string, size_t> cells;
  for (const auto& entry : std::filesystem::directory_iterator(kConfigs + "/studies"))
    if (entry.path().extension() == ".json") {
      StudyGrid g;
      ASSERT_NO_THROW(g = load_grid(entry.path().string())) << entry.path();
      cells[g.name] = g.cells.size();
    }
  EXPECT_EQ(cells["mini"], 21u);  // with the four synthetic mixtures of the data factor
  EXPECT_EQ(cells["clipart"], 4u);
  EXPECT_EQ(cells["precision"], 2u);
  EXPECT_EQ(cells["paper"], 35u);  // every configs/paper row but _base: data_cc is the base cell
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

#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/train/pretrain_step.h"

#include <map>

namespace mmt {
namespace {

// Each paper loss ablation and baseline trains from its own config (tiny preset, small world):
// each of its losses, averaged over the last steps where it occurs, sums below the same over the
// first steps (the total itself jumps when a batch happens to mask no region).
class PaperLossRow : public ::testing::TestWithParam<std::string> {};

TEST_P(PaperLossRow, TrainsWithAFallingLoss) {
  const auto cfg = load_config(kConfigs + "/paper/" + GetParam() + ".json",
                               {"model.preset=tiny", "data.synth.num_train_images=3000", "data.synth.num_test_images=10",
                                "data.synth.max_objects=2", "train.batch_size=16", "train.itm_contrastive_chunk=4096"});
  const synth::World world(cfg.data.synth);
  torch::manual_seed(0);
  MultimodalTransformer model(cfg.model, data_input_dims(cfg));
  model->train();
  PretrainBatcher batcher(world, data_vocab(cfg), cfg);
  PretrainStep step(*model, cfg.train);
  const int64_t steps = 40, window = 10;
  std::map<std::string, std::pair<double, int>> first, last;
  for (int64_t s = 0; s < steps; ++s) {
    const auto r = step.run(batcher.batch(s), 1e-3);
    ASSERT_TRUE(r.finite) << GetParam() << " step " << s;
    for (const auto& [k, v] : r.loss.metrics) {
      if (k == "loss" || k == "grad_norm" || k.size() > 4 && k.compare(k.size() - 4, 4, "_acc") == 0) continue;
      auto& w = s < window ? first[k] : last[k];
      if (s < window || s >= steps - window) w.first += v, ++w.second;
    }
  }
  double before = 0, after = 0;
  for (const auto& [k, w] : first) {
    ASSERT_TRUE(last.count(k) && last[k].second > 0) << k;
    before += w.first / w.second, after += last[k].first / last[k].second;
  }
  EXPECT_LT(after, before) << GetParam();
}

INSTANTIATE_TEST_SUITE_P(Rows, PaperLossRow,
                         ::testing::Values("loss_itm_mrm", "loss_itm_mlm", "loss_single-modality-contrastive32",
                                           "loss_single-modality-contrastive1024", "loss_v1-contrastive32",
                                           "architecture_single-modality-hloss", "baseline_baseline-cls",
                                           "baseline_baseline-no-bert-transfer"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string n = info.param;
                           for (auto& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

}  // namespace
}  // namespace mmt
