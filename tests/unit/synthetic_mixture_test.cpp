/* Mixtures of the synthetic analogues (data.synth.mixture; PAPER.md "Data": all datasets, UNITER's
 * set, each by instance and by dataset sampling): each part keeps its analogue's scenes and
 * captions and the world's test sets; instance sampling shows every scene once an epoch, dataset
 * sampling every part equally often; the stream stays a pure function of the step; bad mixtures
 * fail with the key named. */
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/util/error.h"

namespace mmt {
namespace {

ExperimentConfig mixture_config(const std::string& parts, const std::vector<std::string>& more = {}) {
  std::vector<std::string> o = {"data.synth.mixture=" + parts, "data.synth.num_test_images=40"};
  o.insert(o.end(), more.begin(), more.end());
  return load_config("", o);
}

TEST(Mixtures, PartsKeepTheirAnaloguesScenesAndCaptionsAndTheWorldsTestSets) {
  const ExperimentConfig cfg = mixture_config(R"(["vg","coco","coco-ln"])");
  const synth::World w(cfg.data.synth);
  const auto& parts = w.components();
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[0].analogue, "vg");
  EXPECT_EQ(parts[0].first, 0);
  EXPECT_EQ(parts[0].count, 10000);  // the analogues' own sizes, one after another
  EXPECT_EQ(parts[1].first, 10000);
  EXPECT_EQ(parts[1].count, 8000);
  EXPECT_EQ(parts[2].first, 18000);
  EXPECT_EQ(static_cast<int64_t>(w.train_scenes().size()), 26000);
  EXPECT_EQ(&w.component_of(17999), &parts[1]);
  EXPECT_EQ(&w.component_of(18000), &parts[2]);
  EXPECT_THROW(w.component_of(26000), Error);

  // The test sets are the world's, whatever is mixed.
  const synth::World plain(load_config("", {"data.synth.num_test_images=40"}).data.synth);
  for (const auto& name : synth::test_set_names()) {
    ASSERT_EQ(w.test_set(name).captions.size(), plain.test_set(name).captions.size());
    for (size_t i = 0; i < w.test_set(name).captions.size(); ++i)
      EXPECT_EQ(w.test_set(name).captions[i].text, plain.test_set(name).captions[i].text);
    EXPECT_EQ(w.test_set(name).regions.features, plain.test_set(name).regions.features);
  }

  // coco-ln describes coco's images; vg's are others, and busier.
  int64_t same_as_vg = 0;
  for (int64_t i = 0; i < 8000; ++i) {
    ASSERT_EQ(synth::describe_scene(w.train_scenes()[10000 + i]), synth::describe_scene(w.train_scenes()[18000 + i]));
    same_as_vg += synth::describe_scene(w.train_scenes()[i]) == synth::describe_scene(w.train_scenes()[10000 + i]);
  }
  EXPECT_LT(same_as_vg, 80);
  for (int64_t i = 0; i < 10000; ++i) ASSERT_GE(w.train_scenes()[i].objects.size(), 2u);

  // Each part speaks its analogue's language: vg a phrase about one object, coco a sentence
  // (the grammar's own captions), coco-ln a narrative of statements.
  for (int64_t i = 0; i < 50; ++i) {
    const auto vg = w.train_caption(i, 1), coco = w.train_caption(10000 + i, 1), ln = w.train_caption(18000 + i, 1);
    EXPECT_EQ(vg.content.objects.size(), 1u) << vg.text;
    EXPECT_TRUE(vg.content.statements.empty()) << vg.text;
    EXPECT_TRUE(coco.content.statements.empty()) << coco.text;
    EXPECT_GE(ln.content.statements.size(), 2u) << ln.text;
    EXPECT_TRUE(synth::caption_true_of(vg.content, w.train_scenes()[i])) << vg.text;
  }
  EXPECT_NE(synth::describe_mixture(w, "dataset").find("coco-ln 8000 scenes (33.3 % of examples)"), std::string::npos)
      << synth::describe_mixture(w, "dataset");
  EXPECT_NE(synth::describe_mixture(w, "instance").find("vg 10000 scenes (38.5 % of examples)"), std::string::npos)
      << synth::describe_mixture(w, "instance");
}

// How often each training scene is shown in micro-batches [0, batches).
std::map<int64_t, int64_t> shown(PretrainBatcher& b, int64_t batches) {
  std::map<int64_t, int64_t> n;
  for (int64_t m = 0; m < batches; ++m) {
    const Batch batch = b.batch(m);
    const auto* key = batch.image_key.data_ptr<int64_t>();
    for (int64_t i = 0; i < batch.size(); ++i) ++n[key[i]];
  }
  return n;
}

TEST(Mixtures, InstanceSamplingShowsEverySceneOnceAnEpoch) {
  // coco (8,000) + oi-ln (15,000): one epoch is 23,000 examples = 100 batches of 230.
  const ExperimentConfig cfg = mixture_config(R"(["coco","oi-ln"])", {"data.sampling=instance", "train.batch_size=230",
                                                                       "data.bucket_batches=10"});
  const synth::World w(cfg.data.synth);
  PretrainBatcher b(w, data_vocab(cfg), cfg);
  const auto n = shown(b, 100);
  EXPECT_EQ(n.size(), 23000u);
  for (const auto& [scene, times] : n) ASSERT_EQ(times, 1) << "scene " << scene;
}

TEST(Mixtures, DatasetSamplingShowsEveryPartEquallyOften) {
  // An epoch of dataset sampling: 2 parts x 15,000 (the larger) = 30,000 examples = 125 batches of
  // 240. oi-ln's scenes are each shown once; coco's 8,000 fill 15,000 slots: each once or twice.
  const ExperimentConfig cfg = mixture_config(R"(["coco","oi-ln"])", {"data.sampling=dataset", "train.batch_size=240",
                                                                       "data.bucket_batches=5"});
  const synth::World w(cfg.data.synth);
  PretrainBatcher b(w, data_vocab(cfg), cfg);
  const auto n = shown(b, 125);
  int64_t coco = 0, oi = 0;
  for (const auto& [scene, times] : n) {
    if (scene < 8000) {
      coco += times;
      ASSERT_GE(times, 1);
      ASSERT_LE(times, 2);
    } else {
      oi += times;
      ASSERT_EQ(times, 1) << "scene " << scene;
    }
  }
  EXPECT_EQ(coco, 15000);
  EXPECT_EQ(oi, 15000);
  EXPECT_EQ(n.size(), 23000u);
  // Mixed within batches, not part after part: without length bucketing (which sorts coco's
  // sentences and oi-ln's longer narratives into batches of their own) the first batch holds both,
  // about half each.
  ExperimentConfig unsorted = cfg;
  unsorted.data.bucket_batches = 1;
  const Batch first = PretrainBatcher(w, data_vocab(unsorted), unsorted).batch(0);
  const auto* key = first.image_key.data_ptr<int64_t>();
  int64_t first_coco = 0;
  for (int64_t i = 0; i < first.size(); ++i) first_coco += key[i] < 8000;
  EXPECT_GT(first_coco, 80);
  EXPECT_LT(first_coco, 160);

  // A pure function of the step: another batcher, asked out of order, gives the same batches.
  PretrainBatcher again(w, data_vocab(cfg), cfg);
  const Batch late = again.batch(97);
  EXPECT_TRUE(late.text_ids.equal(b.batch(97).text_ids));
  EXPECT_TRUE(late.image_key.equal(b.batch(97).image_key));
}

TEST(Mixtures, BadMixturesNameTheKey) {
  auto error_of = [](const std::vector<std::string>& o) {
    try {
      load_config("", o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(error_of({R"(data.synth.mixture=["cc","laion"])"}).find("data.synth.mixture[1]"), std::string::npos);
  EXPECT_NE(error_of({R"(data.synth.mixture=["cc","cc"])"}).find("twice"), std::string::npos);
  EXPECT_NE(error_of({R"(data.synth.mixture=["cc","sbu"])", "data.synth.analogue=vg"}).find("exclude each other"),
            std::string::npos);
  EXPECT_NE(error_of({R"(data.synth.mixture=["cc","sbu"])", "data.sampling=weights"}).find("instance or dataset"),
            std::string::npos);
  EXPECT_EQ(error_of({R"(data.synth.mixture=["cc","sbu"])", "data.sampling=dataset"}), "no error");
}

}  // namespace
}  // namespace mmt
