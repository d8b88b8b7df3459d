/* Config resolution: defaults <- file <- --set, presets, strictness and error messages. */
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "mmt/config/config.h"
#include "mmt/util/error.h"

namespace mmt {
namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(Config, DefaultsAreTheTinyPreset) {
  const auto cfg = load_config("", {});
  EXPECT_EQ(cfg.model.preset, "tiny");
  EXPECT_EQ(cfg.model.hidden, 128);
  EXPECT_EQ(cfg.model.attention, "merged");
}

TEST(Config, FileWithCommentsThenOverrides) {
  const auto path = write_temp("c1.json", R"({
    // a comment
    "name": "x", /* block */ "model": {"preset": "base", "hidden": 512},
    "train": {"steps": 7}
  })");
  const auto cfg = load_config(path, {"train.steps=9", "model.layers=single_modality,merged", "name=run42"});
  EXPECT_EQ(cfg.name, "run42");
  EXPECT_EQ(cfg.model.hidden, 512);     // field beside the preset wins over the preset
  EXPECT_EQ(cfg.model.num_layers, 6);   // from the base preset
  EXPECT_EQ(cfg.model.num_heads, 12);
  EXPECT_EQ(cfg.train.steps, 9);        // --set wins over the file
  EXPECT_EQ(cfg.model.layers, (std::vector<std::string>{"single_modality", "merged"}));
}

TEST(Config, PresetOverrideResetsSizes) {
  const auto path = write_temp("c2.json", R"({"model": {"preset": "base"}})");
  const auto cfg = load_config(path, {"model.preset=tiny"});
  EXPECT_EQ(cfg.model.hidden, 128);
  EXPECT_EQ(cfg.model.num_layers, 4);
}

TEST(Config, RoundTripThroughJsonAndCommentedJson) {
  auto cfg = load_config("", {"train.lr=0.003", "model.layers=[\"merged\",\"single_stream\"]", "data.synth.seed=99"});
  ExperimentConfig back;
  apply_json(back, config_to_json(cfg));
  EXPECT_EQ(config_to_json(back), config_to_json(cfg));
  const auto path = write_temp("c3.json", config_to_commented_json(cfg));
  EXPECT_EQ(config_to_json(load_config(path, {})), config_to_json(cfg));
}

// A run's config.json from an older mmt lacks the keys added since: keys_not_in_file names them
// with the values they take (what `train --resume` prints), and nothing for a complete file.
TEST(Config, KeysAddedSinceARunsConfigAreNamedWithTheirDefaults) {
  const ExperimentConfig cfg = load_config("", {"train.steps=7"});
  nlohmann::json old = config_to_json(cfg);
  old["train"].erase("align_inputs");
  old["eval"].erase("image_cache_mb");
  const std::string path = ::testing::TempDir() + "mmt_old_config.json";
  std::ofstream(path) << old.dump(2);
  const auto added = keys_not_in_file(load_config(path, {}), path);
  ASSERT_EQ(added.size(), 2u);
  EXPECT_EQ(added[0], "eval.image_cache_mb = 4096");  // in key order
  EXPECT_EQ(added[1], "train.align_inputs = \"unmasked\"");
  std::ofstream(path) << config_to_json(cfg).dump(2);
  EXPECT_TRUE(keys_not_in_file(cfg, path).empty());
}

TEST(Config, UnknownKeyListsValidKeys) {
  const auto msg = error_of([] { load_config("", {"model.hiden=3"}); });
  EXPECT_NE(msg.find("unknown config key 'model.hiden'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("hidden"), std::string::npos) << msg;
  EXPECT_NE(msg.find("num_heads"), std::string::npos) << msg;
  const auto top = error_of([] { load_config("", {"modle.hidden=3"}); });
  EXPECT_NE(top.find("valid keys: name, model, data, train, eval, runtime"), std::string::npos) << top;
}

// A typo gets the key it most likely meant, a key in the wrong section the section it belongs to;
// nothing close, or two equally close, no guess.
TEST(Config, UnknownKeySuggestsTheClosestOne) {
  auto msg = error_of([] { load_config("", {"model.hiden=3"}); });
  EXPECT_NE(msg.find("'model.hiden' (did you mean 'model.hidden'?)"), std::string::npos) << msg;
  msg = error_of([] { load_config("", {"train.gradclip=1"}); });
  EXPECT_NE(msg.find("(did you mean 'train.grad_clip'?)"), std::string::npos) << msg;
  msg = error_of([] { load_config("", {"modle.hidden=3"}); });  // a swap of neighbours is one edit
  EXPECT_NE(msg.find("(did you mean 'model'?)"), std::string::npos) << msg;
  msg = error_of([] { load_config("", {"model.lr=1"}); });  // a key of another section
  EXPECT_NE(msg.find("'model.lr' (did you mean 'train.lr'?)"), std::string::npos) << msg;
  msg = error_of([] { load_config("", {"train.completely_different=1"}); });
  EXPECT_EQ(msg.find("did you mean"), std::string::npos) << msg;
  EXPECT_NE(msg.find("valid keys of 'train'"), std::string::npos) << msg;
}

TEST(Config, UnknownKeyInFileNamesTheFile) {
  const auto path = write_temp("c4.json", R"({"train": {"stepz": 3}})");
  const auto msg = error_of([&] { load_config(path, {}); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.stepz"), std::string::npos) << msg;
}

TEST(Config, UnknownAttentionListsValidNames) {
  const auto msg = error_of([] { load_config("", {"model.attention=mergd"}); });
  for (const char* name : {"merged", "single_modality", "coattention", "asymmetric_text_queries",
                           "asymmetric_image_queries", "single_stream"})
    EXPECT_NE(msg.find(name), std::string::npos) << msg;
  const auto layer = error_of([] { load_config("", {"model.layers=merged,bogus"}); });
  EXPECT_NE(layer.find("model.layers[1]"), std::string::npos) << layer;
}

TEST(Config, UnknownPresetListsValidPresets) {
  const auto msg = error_of([] { load_config("", {"model.preset=huge"}); });
  EXPECT_NE(msg.find("huge"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tiny, base"), std::string::npos) << msg;
}

TEST(Config, MissingFileNamesThePath) {
  const auto msg = error_of([] { load_config("/no/such/dir/cfg.json", {}); });
  EXPECT_NE(msg.find("/no/such/dir/cfg.json"), std::string::npos) << msg;
}

TEST(Config, WrongTypeAndBadJsonAreExplained) {
  const auto type = error_of([] { load_config("", {"train.steps=lots"}); });
  EXPECT_NE(type.find("train.steps"), std::string::npos) << type;
  EXPECT_NE(type.find("integer"), std::string::npos) << type;
  const auto path = write_temp("c5.json", "{\n  \"train\": {\n    \"steps\": 3,,\n  }\n}\n");
  const auto bad = error_of([&] { load_config(path, {}); });
  EXPECT_NE(bad.find(path + ":3:"), std::string::npos) << bad;  // file and line
  const auto noeq = error_of([] { load_config("", {"train.steps"}); });
  EXPECT_NE(noeq.find("key=value"), std::string::npos) << noeq;
}

TEST(Config, RangesAreChecked) {
  EXPECT_NE(error_of([] { load_config("", {"train.mlm_prob=1.5"}); }).find("train.mlm_prob"), std::string::npos);
  EXPECT_NE(error_of([] { load_config("", {"data.synth.max_objects=9"}); }).find("max_objects"), std::string::npos);
}

TEST(Config, PatchSizeDividesTheImagesTheModelReads) {
  // The synthetic world's renders, or the datasets' centre crops (data.image_size): a ViT-style
  // 14 px patch on 224 px crops is fine although the (unused) synthetic side 64 is no multiple of 14.
  const std::vector<std::string> datasets = {"data.source=datasets", "data.tokenizer=v.txt",
                                             R"(data.datasets=[{"format": "coco", "path": "a.json"}])",
                                             "model.image_input=patches"};
  auto with = [&](std::vector<std::string> extra) {
    extra.insert(extra.begin(), datasets.begin(), datasets.end());
    return extra;
  };
  EXPECT_NO_THROW(load_config("", with({"model.patch_size=14"})));
  EXPECT_NE(error_of([&] { load_config("", with({"model.patch_size=16", "data.image_size=200"})); })
                .find("data.image_size 200 is not a multiple of model.patch_size 16"),
            std::string::npos);
  EXPECT_NE(error_of([&] { load_config("", with({"data.image_size=0"})); }).find("data.image_size"), std::string::npos);
  EXPECT_NE(error_of([] { load_config("", {"model.image_input=patches", "model.patch_size=14"}); })
                .find("data.synth.image_size 64 is not a multiple of model.patch_size 14"),
            std::string::npos);
}

}  // namespace
}  // namespace mmt

namespace mmt {
namespace {

TEST(ConfigDatasets, ListsOfDatasetsParseAndNameTheirBadElements) {
  const auto cfg = load_config("", {"data.source=datasets", "data.tokenizer=v.txt",
                                    R"(data.datasets=[{"format": "coco", "path": "a.json", "weight": 2}, {"format": "tsv", "path": "b.tsv"}])"});
  ASSERT_EQ(cfg.data.datasets.size(), 2u);
  EXPECT_EQ(cfg.data.datasets[0].weight, 2.0);
  EXPECT_EQ(cfg.data.datasets[1].format, "tsv");
  // Round trip through the written config.
  EXPECT_EQ(config_to_json(cfg)["data"]["datasets"][1]["path"], "b.tsv");
  try {
    load_config("", {"data.source=datasets", "data.tokenizer=v.txt", R"(data.datasets=[{"format": "coco", "path": "a", "colour": 1}])"});
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("data.datasets[0].colour"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_config("", {"data.source=datasets", "data.tokenizer=v.txt", R"(data.datasets=[{"format": "parquet", "path": "a"}])"}),
               Error);
  EXPECT_THROW(load_config("", {"data.source=datasets", R"(data.datasets=[{"format": "coco", "path": "a"}])"}), Error);  // no tokenizer
}

}  // namespace
}  // namespace mmt
