/* Synthetic analogues of the paper's datasets: each caption style says what it should (and stays
 * true of its scene), caption noise misaligns the fraction it names, corruption replaces the
 * fraction of words it names, the named analogues set their factors (and explicit keys win), every
 * analogue is scored on the same test sets, and an exported analogue trains through the real-data
 * pipeline (Karpathy reader + packed regions). */
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <sstream>

#include "mmt/config/config.h"
#include "mmt/data/dataset_batcher.h"
#include "mmt/data/region_features.h"
#include "mmt/data/synthetic_export.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/text/tokenizer.h"
#include "mmt/text/vocab.h"
#include "mmt/util/error.h"
#include "mmt/util/rng.h"

namespace mmt {
namespace {

SynthOptions small_world() {
  SynthOptions o;
  o.num_train_images = 400, o.num_test_images = 20;
  return o;
}

TEST(CaptionStyles, EachStyleSaysWhatItShould) {
  const synth::World world(small_world());
  Rng rng(3);
  std::set<std::string> content_words = {"left", "right", "top", "bottom", "above", "below"};
  for (const auto& w : synth::shape_words()) content_words.insert(w);
  for (const auto& w : synth::colour_words()) content_words.insert(w);
  int narrative_joins = 0;
  for (int i = 0; i < 300; ++i) {
    const auto& scene = world.train_scenes()[static_cast<size_t>(i)];
    const auto phrase = synth::styled_caption(scene, "phrase", rng);
    EXPECT_TRUE(synth::caption_true_of(phrase.content, scene)) << phrase.text;
    EXPECT_EQ(phrase.content.objects.size(), 1u) << phrase.text;
    const auto terse = synth::styled_caption(scene, "terse", rng);
    for (const auto& w : Vocab::basic_tokenize(terse.text)) {
      const bool size_or_count = w == "small" || w == "large" || w == "big" || w == "little" || w == "one" || w == "two" ||
                                 w == "three" || w == "four";
      EXPECT_TRUE(content_words.count(w) || size_or_count) << "terse caption has '" << w << "': " << terse.text;
    }
    const auto narrative = synth::styled_caption(scene, "narrative", rng);
    EXPECT_EQ(narrative.text.rfind("a picture of ", 0), 0u) << narrative.text;
    narrative_joins += narrative.text.find(" , and ") != std::string::npos;
    const auto d = synth::styled_caption(scene, "descriptive", rng);
    EXPECT_TRUE(synth::caption_true_of(d.content, scene)) << d.text;
  }
  EXPECT_EQ(narrative_joins, 300);
  EXPECT_THROW(synth::styled_caption(world.train_scenes()[0], "haiku", rng), Error);
}

TEST(CaptionNoise, MisalignsTheFractionItNames) {
  SynthOptions o = small_world();
  o.caption_noise = 0.3;
  const synth::World noisy(o);
  int false_of_scene = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    const auto c = noisy.train_caption(i % 400, static_cast<uint64_t>(i / 400));
    false_of_scene += !synth::caption_true_of(c.content, noisy.train_scenes()[static_cast<size_t>(i % 400)]);
  }
  // A misaligned caption is sometimes true of its scene by chance: between 0.2 and 0.3 are false.
  EXPECT_GT(false_of_scene / double(n), 0.2);
  EXPECT_LE(false_of_scene / double(n), 0.3 + 0.025);

}

TEST(CaptionNoise, CorruptionRateMatchesWordByWord) {
  // Same scene, same stream: with corruption 0 and 1e-9 the sampled caption is identical; with
  // corruption p, each word differs from the p = 1e-9 caption with probability p (1 - 1 / |lexicon|).
  SynthOptions base = small_world();
  base.caption_corruption = 1e-12;  // takes the styled path without corrupting
  SynthOptions cor = small_world();
  cor.caption_corruption = 0.25;
  const synth::World a(base), b(cor);
  int64_t words = 0, differ = 0;
  for (int i = 0; i < 400; ++i)
    for (uint64_t s = 0; s < 5; ++s) {
      const auto x = Vocab::basic_tokenize(a.train_caption(i, s).text), y = Vocab::basic_tokenize(b.train_caption(i, s).text);
      ASSERT_EQ(x.size(), y.size());
      for (size_t k = 0; k < x.size(); ++k) ++words, differ += x[k] != y[k];
    }
  const double expected = 0.25 * (1.0 - 1.0 / static_cast<double>(synth::lexicon().size()));
  EXPECT_NEAR(differ / double(words), expected, 0.015);
}

TEST(Analogues, PresetsSetTheirFactorsAndExplicitKeysWin) {
  const auto cc = load_config("", {"data.synth.analogue=cc"});
  EXPECT_EQ(cc.data.synth.caption_style, "terse");
  EXPECT_GT(cc.data.synth.caption_noise, 0.2);
  EXPECT_GT(cc.data.synth.num_train_images, 20000);
  const auto vg = load_config("", {"data.synth.caption_noise=0.5", "data.synth.analogue=vg"});
  EXPECT_EQ(vg.data.synth.caption_style, "phrase");
  EXPECT_EQ(vg.data.synth.caption_noise, 0.5);  // the explicit key, whatever its order
  for (const char* a : {"sbu", "coco", "coco-ln", "oi-ln"}) EXPECT_NO_THROW(load_config("", {std::string("data.synth.analogue=") + a}));
  EXPECT_THROW(load_config("", {"data.synth.analogue=laion"}), Error);
  EXPECT_THROW(load_config("", {"data.synth.caption_style=poem"}), Error);
}

// The paper scores every pretraining dataset on the same Flickr30k test set: an analogue changes
// the training scenes (vg's and oi-ln's are busier), never the test scenes or their captions.
TEST(Analogues, EveryAnalogueIsScoredOnTheSameTestSets) {
  auto world_of = [](const std::string& analogue) {
    ExperimentConfig cfg = load_config("", {"data.synth.analogue=" + analogue, "data.synth.num_train_images=300",
                                            "data.synth.num_test_images=40"});
    return synth::World(cfg.data.synth);
  };
  const synth::World cc = world_of("cc");
  for (const std::string a : {"sbu", "vg", "coco", "coco-ln", "oi-ln"}) {
    const synth::World w = world_of(a);
    for (const auto& name : synth::test_set_names()) {
      const synth::TestSet &mine = w.test_set(name), &base = cc.test_set(name);
      ASSERT_EQ(mine.images.size(), base.images.size()) << a << " " << name;
      for (size_t i = 0; i < mine.images.size(); ++i)
        ASSERT_EQ(synth::describe_scene(mine.images[i]), synth::describe_scene(base.images[i])) << a << " " << name << " image " << i;
      ASSERT_EQ(mine.captions.size(), base.captions.size());
      for (size_t i = 0; i < mine.captions.size(); ++i) EXPECT_EQ(mine.captions[i].text, base.captions[i].text) << a;
      EXPECT_EQ(mine.regions.features, base.regions.features) << a << " " << name;
    }
    // ... while the training scenes follow the analogue's image distribution.
    const int64_t fewest = w.options().train_objects_min();
    for (const auto& s : w.train_scenes()) ASSERT_GE(static_cast<int64_t>(s.objects.size()), fewest) << a;
  }
  EXPECT_EQ(world_of("vg").options().train_objects_min(), 2);
  EXPECT_EQ(world_of("oi-ln").options().train_objects_min(), 3);
  int64_t single = 0;  // the test sets keep scenes of one object, which vg never trains on
  for (const auto& s : cc.test_set("easy").images) single += s.objects.size() == 1;
  EXPECT_GT(single, 0);
  EXPECT_THROW(load_config("", {"data.synth.train_min_objects=3", "data.synth.train_max_objects=2"}), Error);
}

TEST(Analogues, AnExportedAnalogueTrainsThroughTheRealDataPipeline) {
  const std::string dir = ::testing::TempDir() + "mmt_analogue_export";
  std::filesystem::remove_all(dir);
  SynthOptions o = small_world();
  o.analogue = "coco";
  o.num_train_images = 60, o.captions_per_image = 2;
  std::ostringstream log;
  export_synthetic(o, dir, {"train"}, log);
  PackedStore store(dir + "/train/regions.feat");
  EXPECT_EQ(store.size(), 60);
  ExperimentConfig cfg;
  cfg.data.source = "datasets", cfg.data.tokenizer = dir + "/vocab.txt";
  DatasetOptions d;
  d.format = "karpathy", d.path = dir + "/train/dataset_synth.json", d.features = dir + "/train/regions.feat";
  cfg.data.datasets = {d};
  cfg.train.batch_size = 8, cfg.train.mrm_kl_weight = 1;
  DatasetBatcher b(cfg, nullptr);
  EXPECT_EQ(b.datasets()[0].records.size(), 60u);
  EXPECT_EQ(b.datasets()[0].captions(), 120);
  EXPECT_EQ(b.input_dims().region_feat_dim, o.feature_dim);
  auto loader = b.loader(0);
  const Batch batch = loader->next().batch;
  EXPECT_EQ(batch.size(), 8);
  EXPECT_EQ(batch.text_ids.eq(b.tokenizer().vocab().unk_id()).sum().item<int64_t>(), 0);
}

}  // namespace
}  // namespace mmt
