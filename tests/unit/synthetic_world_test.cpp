/* The synthetic world: determinism, disjoint splits, captions true of their images, binding
 * groups that share a bag of attributes, and ceilings in the right order. */
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <numeric>
#include <set>
#include <unordered_set>

#include "mmt/data/synthetic_world.h"
#include "mmt/eval/ceilings.h"
#include "mmt/text/vocab.h"

namespace mmt::synth {
namespace {

SynthOptions small_options() {
  SynthOptions o;
  o.num_train_images = 3000;
  o.num_test_images = 200;
  return o;
}

TEST(SyntheticWorld, DeterministicFromTheSeed) {
  const World a(small_options()), b(small_options());
  auto other = small_options();
  other.seed = 99;
  const World c(other);
  for (const auto& name : test_set_names()) {
    ASSERT_EQ(a.test_set(name).captions.size(), b.test_set(name).captions.size());
    for (size_t i = 0; i < a.test_set(name).captions.size(); ++i)
      EXPECT_EQ(a.test_set(name).captions[i].text, b.test_set(name).captions[i].text);
    EXPECT_EQ(a.test_set(name).regions.features, b.test_set(name).regions.features);
  }
  EXPECT_EQ(a.train_caption(17, 3).text, b.train_caption(17, 3).text);
  EXPECT_NE(a.test_set("easy").regions.features, c.test_set("easy").regions.features);
}

TEST(SyntheticWorld, TrainAndTestScenesAreDisjoint) {
  const World w(small_options());
  std::unordered_set<std::string> test;
  for (const auto& name : test_set_names())
    for (const auto& s : w.test_set(name).images) test.insert(World::signature(s));
  for (const auto& s : w.train_scenes()) EXPECT_EQ(test.count(World::signature(s)), 0u);
  // Disjoint also from a larger test set than the one configured (eval may ask for more).
  auto big = small_options();
  big.num_test_images = 1000;
  const World wb(big);
  for (const auto& name : test_set_names())
    for (const auto& s : wb.test_set(name).images) test.insert(World::signature(s));
  for (const auto& s : w.train_scenes()) EXPECT_EQ(test.count(World::signature(s)), 0u);
}

// The validation set (train.eval_every chooses weights on it): disjoint by layout from every train
// scene and every reserved test scene, deterministic, captions_per_image captions each, and its
// making leaves the train and test sets as they were.
TEST(SyntheticWorld, ValidationSetIsDisjointFromTrainAndTest) {
  SynthOptions o;
  o.num_train_images = 3000, o.num_test_images = 50;
  const World w(o), again(o);
  const auto train_before = w.train_scenes().size();
  const TestSet& v = w.validation_set();
  EXPECT_EQ(v.name, "val");
  ASSERT_EQ(static_cast<int64_t>(v.images.size()), kValidationImages);
  EXPECT_EQ(static_cast<int64_t>(v.captions.size()), kValidationImages * o.captions_per_image);
  EXPECT_EQ(v.regions.num_scenes(), kValidationImages);
  std::unordered_set<std::string> others;
  for (const auto& s : w.train_scenes()) others.insert(World::signature(s));
  // Test scenes beyond num_test_images are reserved too: a world with the full reserve shows them.
  SynthOptions all = o;
  all.num_test_images = 5000;
  const World reserve(all);
  for (const auto& name : test_set_names())
    for (const auto& s : reserve.test_set(name).images) others.insert(World::signature(s));
  for (const auto& s : v.images) EXPECT_EQ(others.count(World::signature(s)), 0u);
  EXPECT_EQ(w.train_scenes().size(), train_before);
  const TestSet& v2 = again.validation_set();
  for (size_t c = 0; c < v.captions.size(); c += 97) EXPECT_EQ(v.captions[c].text, v2.captions[c].text) << c;
  for (size_t i = 0; i < v.images.size(); i += 51) EXPECT_EQ(World::signature(v.images[i]), World::signature(v2.images[i]));
  EXPECT_NE(World::signature(v.images[0]), World::signature(w.test_set("easy").images[0]));
}

TEST(SyntheticWorld, TestSetShape) {
  const World w(small_options());
  for (const auto& name : test_set_names()) {
    const auto& t = w.test_set(name);
    EXPECT_EQ(t.images.size(), 200u);
    EXPECT_EQ(t.captions.size(), 1000u);
    EXPECT_EQ(t.regions.num_scenes(), 200);
    for (size_t c = 0; c < t.captions.size(); ++c) EXPECT_EQ(t.caption_image[c], static_cast<int64_t>(c / 5));
  }
}

TEST(SyntheticWorld, EveryCaptionIsTrueOfItsImage) {
  const World w(small_options());
  for (const auto& name : test_set_names()) {
    const auto& t = w.test_set(name);
    for (size_t c = 0; c < t.captions.size(); ++c) {
      EXPECT_TRUE(caption_true_of(t.captions[c].content, t.images[t.caption_image[c]])) << t.captions[c].text;
      EXPECT_TRUE(caption_bag_matches(t.captions[c].content, t.images[t.caption_image[c]])) << t.captions[c].text;
    }
  }
  for (int64_t i = 0; i < 500; ++i) {
    const auto c = w.train_caption(i, 0);
    EXPECT_TRUE(caption_true_of(c.content, w.train_scenes()[i])) << c.text;
  }
}

TEST(SyntheticWorld, CaptionsUseOnlyTheLexicon) {
  const World w(small_options());
  const auto lex = lexicon();
  const std::set<std::string> words(lex.begin(), lex.end());
  for (const auto& c : w.test_set("easy").captions)
    for (const auto& tok : Vocab::basic_tokenize(c.text)) EXPECT_TRUE(words.count(tok)) << tok << " in " << c.text;
}

TEST(SyntheticWorld, BindingGroupsShareTheBagButNotTheBinding) {
  const World w(small_options());
  const auto& t = w.test_set("binding");
  auto bag = [](const Scene& s) {
    std::multiset<std::string> b;
    for (const auto& o : s.objects) {
      b.insert("s" + std::to_string(o.shape));
      b.insert("c" + std::to_string(o.colour));
      b.insert("z" + std::to_string(o.size));
    }
    return b;
  };
  auto binding = [](const Scene& s) {
    std::multiset<std::string> b;
    for (const auto& o : s.objects) b.insert(std::to_string(o.shape) + "/" + std::to_string(o.colour) + "/" + std::to_string(o.size));
    return b;
  };
  size_t groups_seen = 0;
  for (size_t i = 0; i < t.images.size(); ++i) {
    for (size_t j = i + 1; j < t.images.size() && t.image_group[j] == t.image_group[i]; ++j) {
      EXPECT_EQ(bag(t.images[i]), bag(t.images[j]));
      EXPECT_NE(binding(t.images[i]), binding(t.images[j]));
      ASSERT_EQ(t.images[i].objects.size(), t.images[j].objects.size());
      for (size_t k = 0; k < t.images[i].objects.size(); ++k) {  // same layout
        EXPECT_EQ(t.images[i].objects[k].x, t.images[j].objects[k].x);
        EXPECT_EQ(t.images[i].objects[k].shape, t.images[j].objects[k].shape);
      }
      ++groups_seen;
    }
  }
  EXPECT_GT(groups_seen, 100u);
}

TEST(SyntheticWorld, RegionsFollowThePaperLayout) {
  const World w(small_options());
  const auto& t = w.test_set("easy");
  const auto& r = t.regions;
  for (int64_t s = 0; s < r.num_scenes(); ++s) {
    const int64_t n = r.num_regions(s), first = r.offsets[s];
    EXPECT_EQ(n, static_cast<int64_t>(t.images[s].objects.size()) + 1);
    const float* g = &r.boxes[first * kBoxDim];  // the global region covers the image
    EXPECT_EQ(g[0], 0.f);
    EXPECT_EQ(g[2], 1.f);
    EXPECT_EQ(g[4], 1.f);
    for (int64_t k = 0; k < r.feature_dim; ++k) {  // and is the mean of the regions
      double mean = 0;
      for (int64_t i = 1; i < n; ++i) mean += r.features[(first + i) * r.feature_dim + k] / (n - 1);
      EXPECT_NEAR(r.features[first * r.feature_dim + k], mean, 1e-4);
    }
    double prev = 2.0;
    for (int64_t i = 1; i < n; ++i) {
      const float* c = &r.classes[(first + i) * r.num_classes];
      double sum = 0, mx = 0;
      for (int64_t k = 0; k < r.num_classes; ++k) sum += c[k], mx = std::max<double>(mx, c[k]);
      EXPECT_NEAR(sum, 1.0, 1e-5);
      EXPECT_LE(mx, prev + 1e-7);  // ranked by max class score
      prev = mx;
      const float* b = &r.boxes[(first + i) * kBoxDim];
      EXPECT_LT(b[0], b[2]);
      EXPECT_LT(b[1], b[3]);
      EXPECT_NEAR(b[4], (b[2] - b[0]) * (b[3] - b[1]), 1e-6);
    }
  }
}

TEST(SyntheticWorld, CeilingsAreOrderedAndBindingDefeatsBagOfWords) {
  const World w(small_options());
  for (const auto& name : test_set_names()) {
    const auto c = test_set_ceilings(w.test_set(name));
    EXPECT_NEAR(c.chance.image_retrieval.r1, 100.0 / 200, 1e-9);
    EXPECT_LT(c.chance.image_retrieval.r1, c.bag_of_words.image_retrieval.r1);
    EXPECT_LT(c.bag_of_words.image_retrieval.r1, c.truth.image_retrieval.r1);
    EXPECT_LE(c.truth.image_retrieval.r1, c.perfect.image_retrieval.r1 + 1e-9);
    EXPECT_LE(c.truth.text_retrieval.r1, c.perfect.text_retrieval.r1 + 1e-9);
    EXPECT_LE(c.perfect.image_retrieval.r1, 100.0);
  }
  const auto easy = test_set_ceilings(w.test_set("easy"));
  const auto binding = test_set_ceilings(w.test_set("binding"));
  // true@1: chance is the mean share of images a caption is true of; bag-of-words knows more,
  // and on the binding set much less than on easy (its top images hold the caption's attributes
  // on the wrong objects).
  for (const auto& name : test_set_names()) {
    const auto& t = w.test_set(name);
    const std::vector<float> truth = truth_scores(t);
    const double share = std::accumulate(truth.begin(), truth.end(), 0.0) / static_cast<double>(t.captions.size() * t.images.size());
    const auto c = test_set_ceilings(t);
    EXPECT_NEAR(c.true_at_1.chance, 100.0 * share, 1e-9) << name;
    EXPECT_GT(c.true_at_1.bag_of_words, c.true_at_1.chance) << name;
    EXPECT_GE(c.true_at_1.bag_of_words, c.bag_of_words.image_retrieval.r1 - 1e-9) << name;  // its own image is true
  }
  EXPECT_LT(binding.true_at_1.bag_of_words, 0.7 * easy.true_at_1.bag_of_words);
  // On the binding set, knowing the bag of attributes is worth much less.
  EXPECT_LT(binding.bag_of_words.image_retrieval.r1 / binding.truth.image_retrieval.r1,
            0.6 * easy.bag_of_words.image_retrieval.r1 / easy.truth.image_retrieval.r1);
}

// The likelihood mirrors the sampler: frequencies of 200k captions sampled from scenes of 1-4
// objects match it (every text expected 50+ times, 5 sigma), texts of small probability match
// in aggregate, and a caption has probability > 0 only where it is true.
TEST(SyntheticWorld, CaptionLikelihoodMatchesSampledFrequencies) {
  const World w(small_options());
  const auto& t = w.test_set("easy");
  int checked_scenes = 0;
  for (size_t s = 0; s < t.images.size() && checked_scenes < 4; ++s) {
    const Scene& scene = t.images[s];
    const size_t n = scene.objects.size();
    if (static_cast<int>(n) != 1 + checked_scenes) continue;  // 1, 2, 3, 4 objects in turn
    ++checked_scenes;
    Rng rng(derive_seed(7, s));
    std::map<std::string, std::pair<int, CaptionContent>> seen;
    const int draws = 200000;
    for (int k = 0; k < draws; ++k) {
      const Caption c = sample_caption(scene, rng);
      auto& e = seen[c.text];
      if (e.first++ == 0) e.second = c.content;
    }
    double covered = 0, small_p = 0, small_freq = 0;
    for (const auto& [text, e] : seen) {
      const double p = caption_likelihood(e.second, scene), freq = static_cast<double>(e.first) / draws;
      ASSERT_GT(p, 0.0) << text;
      covered += p;
      if (p * draws >= 50) {
        EXPECT_NEAR(freq, p, 5 * std::sqrt(p * (1 - p) / draws)) << text << " (" << n << " objects)";
      } else if (p * draws >= 2) {
        small_p += p, small_freq += freq;
      }
    }
    EXPECT_NEAR(small_freq, small_p, 0.01 + 0.05 * small_p) << n << " objects";
    EXPECT_LE(covered, 1.0 + 1e-9);
    if (n <= 3) EXPECT_GT(covered, 0.97) << n << " objects";  // 4 objects: too many rare texts
  }
  EXPECT_EQ(checked_scenes, 4);
  // Relations are generated only when clear, so a true caption can have probability 0 - but
  // never the reverse.
  for (size_t c = 0; c < 300; ++c)
    for (size_t i = 0; i < 20; ++i)
      if (caption_likelihood(t.captions[c].content, t.images[i]) > 0)
        EXPECT_TRUE(caption_true_of(t.captions[c].content, t.images[i])) << t.captions[c].text;
}

TEST(SyntheticWorld, RenderPaintsEachObjectInItsColour) {
  Scene s;
  Object o;
  o.shape = 1, o.colour = 0, o.size = 1, o.x = 0.3f, o.y = 0.3f, o.radius = 0.16f;  // red square
  s.objects.push_back(o);
  const auto rgb = render(s, 64);
  const size_t centre = (static_cast<size_t>(0.3 * 64) * 64 + static_cast<size_t>(0.3 * 64)) * 3;
  EXPECT_GT(rgb[centre], 200);
  EXPECT_LT(rgb[centre + 1], 80);
  const size_t corner = ((60 * 64) + 60) * 3;  // background
  EXPECT_EQ(rgb[corner], rgb[corner + 1]);
}

// describe_scene: every object, left to right, its place as captions judge it (place_holds), so a
// scene a caption is true of reads as such ("a red star at the top" -> "red star (top ...)").
TEST(SyntheticWorld, DescribeSceneListsObjectsLeftToRightWithTheirPlaces) {
  Scene s;
  auto add = [&](int shape, int colour, int size, float x, float y) {
    Object o;
    o.shape = shape, o.colour = colour, o.size = size, o.x = x, o.y = y;
    s.objects.push_back(o);
  };
  add(4, 3, 1, 0.5f, 0.5f);   // large yellow cross, centre
  add(6, 0, 0, 0.2f, 0.2f);   // small red star, top left
  add(5, 2, 0, 0.8f, 0.5f);   // small blue ring, right
  add(1, 1, 1, 0.5f, 0.9f);   // large green square, bottom
  EXPECT_EQ(describe_scene(s),
            "small red star (top left), large yellow cross (centre), large green square (bottom), small blue ring (right)");
  EXPECT_EQ(describe_scene(Scene{}), "");
  ObjectRef red_star_top;
  red_star_top.shape = 6, red_star_top.colour = 0, red_star_top.place = Place::kTop;
  CaptionContent c;
  c.objects = {red_star_top};
  EXPECT_TRUE(caption_true_of(c, s));  // what the description says of it, the caption's truth agrees with
}

bool same_content(const CaptionContent& a, const CaptionContent& b) {
  if (a.count != b.count || a.objects.size() != b.objects.size() || a.relations.size() != b.relations.size()) return false;
  for (size_t k = 0; k < a.objects.size(); ++k) {
    const ObjectRef &x = a.objects[k], &y = b.objects[k];
    if (x.shape != y.shape || x.colour != y.colour || x.size != y.size || x.place != y.place) return false;
  }
  for (size_t k = 0; k < a.relations.size(); ++k)
    if (a.relations[k].a != b.relations[k].a || a.relations[k].b != b.relations[k].b ||
        a.relations[k].rel != b.relations[k].rel)
      return false;
  if (a.statements.size() != b.statements.size()) return false;
  for (size_t k = 0; k < a.statements.size(); ++k)
    if (!same_content(a.statements[k], b.statements[k])) return false;
  return true;
}

// parse_caption reads every test caption back to the content it was generated from (so a caption a
// user writes in the grammar is judged as the world judges its own), and refuses what the grammar
// cannot say.
TEST(SyntheticWorld, ParseCaptionReadsBackWhatTheGrammarGenerated) {
  const World w(small_options());
  int64_t read = 0;
  for (const char* set : {"easy", "binding"})
    for (const Caption& c : w.test_set(set).captions) {
      const auto parsed = parse_caption(c.text);
      ASSERT_TRUE(parsed.has_value()) << c.text;
      ASSERT_TRUE(same_content(*parsed, c.content)) << c.text;
      ++read;
    }
  EXPECT_GT(read, 500);
  // Every form, written by hand, in any case, with a final full stop.
  const auto relation = parse_caption("There is a Big Red Star to the left of a shape.");
  ASSERT_TRUE(relation.has_value());
  ASSERT_EQ(relation->objects.size(), 2u);
  EXPECT_EQ(relation->objects[0].size, 1);
  EXPECT_EQ(relation->objects[0].colour, 0);
  EXPECT_EQ(relation->objects[0].shape, 6);
  EXPECT_EQ(relation->objects[1].shape, -1);
  ASSERT_EQ(relation->relations.size(), 1u);
  EXPECT_EQ(relation->relations[0].rel, Relation::kLeftOf);
  const auto place = parse_caption("a ring at the bottom");
  ASSERT_TRUE(place.has_value());
  EXPECT_EQ(place->objects[0].place, Place::kBottom);
  const auto counted = parse_caption("three objects including a blue square");
  ASSERT_TRUE(counted.has_value());
  EXPECT_EQ(counted->count, 3);
  const auto list = parse_caption("a picture of a circle , a red shape and a small star");
  ASSERT_TRUE(list.has_value());
  EXPECT_EQ(list->objects.size(), 3u);
  // Without the article (as people, and the terse alt-text style, write it): the same objects.
  for (const auto& [bare, full] : std::vector<std::pair<const char*, const char*>>{
           {"red star", "a red star"},
           {"big red star to the left of shape", "a big red star to the left of a shape"},
           {"three objects including blue square", "three objects including a blue square"},
           {"circle , red shape and small star", "a circle , a red shape and a small star"}}) {
    const auto b = parse_caption(bare), f = parse_caption(full);
    ASSERT_TRUE(b.has_value()) << bare;
    EXPECT_TRUE(same_content(*b, *f)) << bare;
  }
  // Training styles: whatever of them parses is true of the scene it was written for (terse
  // one-object captions and "x above y", which the terse style keeps in order although its content
  // drops the relation; phrases, which are descriptive objects).
  Rng rng(3);
  int64_t parsed_styled = 0;
  for (const char* style : {"terse", "phrase"})
    for (size_t i = 0; i < 300; ++i) {
      const Scene& scene = w.train_scenes()[i];
      const Caption c = styled_caption(scene, style, rng);
      const auto p = parse_caption(c.text);
      if (!p) continue;
      ++parsed_styled;
      EXPECT_TRUE(caption_true_of(*p, scene)) << style << ": " << c.text;
      if (p->relations.empty()) EXPECT_TRUE(same_content(*p, c.content)) << style << ": " << c.text;
    }
  EXPECT_GT(parsed_styled, 300);
  // Narratives (statements joined by ", and") read back to their statements, every one true of the
  // scene it was written for - two may name the same object.
  for (size_t i = 0; i < 300; ++i) {
    const Caption c = styled_caption(w.train_scenes()[i], "narrative", rng);
    ASSERT_GE(c.content.statements.size(), 2u) << c.text;
    const auto p = parse_caption(c.text);
    ASSERT_TRUE(p.has_value()) << c.text;
    EXPECT_TRUE(same_content(*p, c.content)) << c.text;
    EXPECT_TRUE(caption_true_of(c.content, w.train_scenes()[i])) << c.text;
  }
  const auto told = parse_caption("a picture of a red star , and there is a blue ring above a circle , and a red star");
  ASSERT_TRUE(told.has_value());
  ASSERT_EQ(told->statements.size(), 3u);
  EXPECT_EQ(told->statements[1].relations.size(), 1u);
  synth::Scene one_star;  // one red star: the first and last statements name the same object
  one_star.objects.push_back(w.train_scenes()[0].objects[0]);
  one_star.objects[0].shape = told->statements[0].objects[0].shape;
  one_star.objects[0].colour = told->statements[0].objects[0].colour;
  EXPECT_TRUE(caption_true_of(*parse_caption("a picture of a red star , and a red star"), one_star));
  EXPECT_FALSE(caption_true_of(*told, one_star));  // no ring above a circle
  for (const char* bad : {"", "a zebra", "red", "red star left", "red circle blue square", "there is", "a star , and",
                          "a star , and a zebra", "a circle , a square", "a circle and", "one shapes : a circle",
                          "three shapes : a circle", "a star on the moon", "a circle above"})
    EXPECT_FALSE(parse_caption(bad).has_value()) << bad;
}

}  // namespace
}  // namespace mmt::synth
