/* Synthetic world: scene sampling, the two test sets, train/test disjointness and the
 * simulated detector that turns scenes into region features. */
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <unordered_set>

#include "mmt/data/synthetic_world.h"
#include "mmt/text/vocab.h"
#include "mmt/util/error.h"

namespace mmt {
const std::vector<std::string>& synthetic_test_set_names() { return synth::test_set_names(); }
}  // namespace mmt

namespace mmt::synth {

namespace {

constexpr float kRadius[kNumSizes] = {0.09f, 0.16f};
constexpr int64_t kReservedTestScenes = 5000;  // COCO's 5k test size

// Stream ids keep the random streams of different purposes independent.
enum Stream : uint64_t { kTrainScenes = 1, kEasyScenes, kBindingScenes, kTestCaptions, kTrainCaptions,
                         kDetector, kPrototypes, kValidationScenes, kMixtureScenes };

// Fixed captions of an evaluation set: `per_image` distinct ones for each image (20 redraws of a
// repeat, then it stays), image-major, from the stream `seed`.
void add_test_captions(TestSet& t, int64_t per_image, uint64_t seed) {
  Rng rng(seed);
  for (size_t i = 0; i < t.images.size(); ++i) {
    std::unordered_set<std::string> texts;
    for (int64_t k = 0; k < per_image; ++k) {
      Caption c = sample_caption(t.images[i], rng);
      for (int retry = 0; retry < 20 && texts.count(c.text); ++retry) c = sample_caption(t.images[i], rng);
      texts.insert(c.text);
      t.captions.push_back(std::move(c));
      t.caption_image.push_back(static_cast<int64_t>(i));
    }
  }
}

// Places the objects (attributes already set) without overlap; false if it fails.
bool place_objects(std::vector<Object>& objs, Rng& rng) {
  for (int attempt = 0; attempt < 50; ++attempt) {
    bool ok = true;
    for (size_t i = 0; i < objs.size() && ok; ++i) {
      auto& o = objs[i];
      o.radius = kRadius[o.size];
      bool placed = false;
      for (int t = 0; t < 100 && !placed; ++t) {
        o.x = static_cast<float>(rng.uniform(o.radius + 0.02, 0.98 - o.radius));
        o.y = static_cast<float>(rng.uniform(o.radius + 0.02, 0.98 - o.radius));
        placed = true;
        for (size_t j = 0; j < i; ++j) {
          const float dx = o.x - objs[j].x, dy = o.y - objs[j].y;
          if (std::sqrt(dx * dx + dy * dy) < o.radius + objs[j].radius + 0.03f) placed = false;
        }
      }
      ok = placed;
    }
    if (ok) return true;
  }
  return false;
}

Scene random_scene(const SynthOptions& opt, Rng& rng) {
  for (;;) {
    Scene s;
    const int64_t n = rng.range(opt.min_objects, opt.max_objects);
    for (int64_t i = 0; i < n; ++i) {
      Object o;
      o.shape = static_cast<int>(rng.below(opt.num_shapes));
      o.colour = static_cast<int>(rng.below(opt.num_colours));
      o.size = static_cast<int>(rng.below(kNumSizes));
      s.objects.push_back(o);
    }
    if (place_objects(s.objects, rng)) return s;
  }
}

// A group of scenes with one layout and one bag of attributes, differing only in which
// object carries which colour and size. Distinct shapes and colours make every variant's
// binding different.
std::vector<Scene> binding_group(const SynthOptions& opt, Rng& rng) {
  const int64_t group = opt.binding_group_size;
  const int64_t lo = std::max<int64_t>(2, opt.min_objects);
  const int64_t hi = std::min({opt.max_objects, opt.num_shapes, opt.num_colours});
  for (int attempt = 0;; ++attempt) {
    if (attempt == 10000 || hi < 2)
      throw Error("cannot build binding groups of " + std::to_string(group) + " scenes with at most " +
                  std::to_string(hi) + " objects of distinct shapes and colours; lower "
                  "data.synth.binding_group_size or raise data.synth.max_objects");
    const int n = static_cast<int>(rng.range(lo, std::max(lo, hi)));
    std::vector<int> shapes(opt.num_shapes), colours(opt.num_colours);
    std::iota(shapes.begin(), shapes.end(), 0);
    std::iota(colours.begin(), colours.end(), 0);
    rng.shuffle(shapes);
    rng.shuffle(colours);
    Scene base;
    for (int i = 0; i < n; ++i) {
      Object o;
      o.shape = shapes[i], o.colour = colours[i], o.size = static_cast<int>(rng.below(kNumSizes));
      base.objects.push_back(o);
    }
    // Enumerate colour permutations x size permutations, keep distinct bindings.
    std::vector<int> cperm(n), sizes(n);
    std::iota(cperm.begin(), cperm.end(), 0);
    for (int i = 0; i < n; ++i) sizes[i] = base.objects[i].size;
    std::vector<std::vector<Object>> variants;
    std::unordered_set<std::string> seen;
    do {
      std::vector<int> sperm = sizes;
      std::sort(sperm.begin(), sperm.end());
      do {
        std::vector<Object> v = base.objects;
        std::string key;
        for (int i = 0; i < n; ++i) {
          v[i].colour = base.objects[cperm[i]].colour;
          v[i].size = sperm[i];
          key += std::to_string(v[i].colour) + "/" + std::to_string(v[i].size) + ";";
        }
        if (seen.insert(key).second) variants.push_back(v);
      } while (std::next_permutation(sperm.begin(), sperm.end()));
    } while (std::next_permutation(cperm.begin(), cperm.end()));
    if (static_cast<int64_t>(variants.size()) < group) continue;
    rng.shuffle(variants);
    variants.resize(group);
    // One layout for the whole group: place with the largest sizes any variant uses.
    std::vector<Object> layout = variants[0];
    for (int i = 0; i < n; ++i) layout[i].size = 1;
    if (!place_objects(layout, rng)) continue;
    std::vector<Scene> out;
    for (auto& v : variants) {
      for (int i = 0; i < n; ++i) {
        v[i].x = layout[i].x, v[i].y = layout[i].y, v[i].radius = kRadius[v[i].size];
      }
      out.push_back(Scene{v});
    }
    return out;
  }
}

}  // namespace

const std::vector<std::string>& test_set_names() {
  static const std::vector<std::string> names = {"easy", "binding"};
  return names;
}

std::string World::signature(const Scene& scene) {
  std::vector<std::string> parts;
  for (const auto& o : scene.objects) {
    const int cx = std::min(2, static_cast<int>(o.x * 3)), cy = std::min(2, static_cast<int>(o.y * 3));
    parts.push_back(std::to_string(o.shape) + "." + std::to_string(o.colour) + "." +
                    std::to_string(o.size) + "@" + std::to_string(cx) + std::to_string(cy));
  }
  std::sort(parts.begin(), parts.end());
  return join(parts, "|");
}

World::World(const SynthOptions& opt) : options_(opt) {
  // Fixed random prototypes: what the simulated detector's features encode.
  Rng prng(derive_seed(opt.seed, kPrototypes));
  auto protos = [&](int64_t n) {
    std::vector<float> p(static_cast<size_t>(n * opt.feature_dim));
    for (auto& x : p) x = static_cast<float>(prng.normal());
    return p;
  };
  shape_proto_ = protos(8), colour_proto_ = protos(8), size_proto_ = protos(kNumSizes);

  // Test sets first, so train scenes can avoid their signatures. The test streams are drawn
  // to kReservedTestScenes scenes and the test set is their prefix: evaluating later with a
  // larger num_test_images (up to the reserve) still never meets a training scene.
  std::unordered_set<std::string>& test_signatures = test_signatures_;
  const int64_t reserve = std::max(kReservedTestScenes, opt.num_test_images);
  for (const auto& name : test_set_names()) {
    TestSet t;
    t.name = name;
    const bool binding = name == "binding";
    if (binding && std::min({opt.max_objects, opt.num_shapes, opt.num_colours}) < 2) continue;  // impossible
    Rng rng(derive_seed(opt.seed, binding ? kBindingScenes : kEasyScenes));
    int64_t group_id = 0, drawn = 0;
    while (drawn < reserve) {
      std::vector<Scene> scenes = binding ? binding_group(opt, rng) : std::vector<Scene>{random_scene(opt, rng)};
      for (auto& s : scenes) {
        if (drawn == reserve) break;
        ++drawn;
        test_signatures.insert(signature(s));
        if (static_cast<int64_t>(t.images.size()) == opt.num_test_images) continue;
        t.images.push_back(std::move(s));
        t.image_group.push_back(group_id);
      }
      ++group_id;
    }
    add_test_captions(t, opt.captions_per_image, derive_seed(opt.seed, kTestCaptions, binding ? 1 : 0));
    t.regions = make_regions(t.images, binding ? kBindingScenes : kEasyScenes);
    tests_.push_back(std::move(t));
  }

  // Training scenes come from the training distribution (an analogue's object counts); the test
  // and validation sets above and below keep the world's, whatever the analogue.
  auto draw_train = [&](Component c, Rng& rng) {
    SynthOptions train_opt = c.options;
    train_opt.min_objects = c.options.train_objects_min(), train_opt.max_objects = c.options.train_objects_max();
    c.first = static_cast<int64_t>(train_.size()), c.count = c.options.num_train_images;
    while (static_cast<int64_t>(train_.size()) < c.first + c.count) {
      Scene s = random_scene(train_opt, rng);
      if (!test_signatures.count(signature(s))) train_.push_back(std::move(s));
    }
    components_.push_back(std::move(c));
  };
  if (opt.mixture.empty()) {
    Rng rng(derive_seed(opt.seed, kTrainScenes));
    draw_train({"", opt}, rng);
  } else {
    // Each part draws scenes of its own, as the paper's datasets hold different images - but
    // coco-ln's are coco's (Localized Narratives describe COCO's images).
    const auto& names = synthetic_analogue_names();
    for (const auto& a : opt.mixture) {
      const std::string images = a == "coco-ln" ? "coco" : a;
      const auto source = static_cast<uint64_t>(std::find(names.begin(), names.end(), images) - names.begin());
      Rng rng(derive_seed(opt.seed, kMixtureScenes, source));
      draw_train({a, mixture_component(opt, a)}, rng);
    }
  }
  train_regions_ = make_regions(train_, kTrainScenes);
}

const TestSet& World::validation_set() const {
  std::call_once(validation_once_, [this] {
    // Drawn after the fact from a stream of its own, keeping only scenes whose layout no train
    // scene and no reserved test scene has: the train and test sets stay exactly what they were.
    const SynthOptions& opt = options_;
    std::unordered_set<std::string> taken = test_signatures_;
    for (const auto& s : train_) taken.insert(signature(s));
    TestSet& v = validation_;
    v.name = "val";
    Rng rng(derive_seed(opt.seed, kValidationScenes));
    for (int64_t tries = 0; static_cast<int64_t>(v.images.size()) < kValidationImages; ++tries) {
      if (tries > 100 * kValidationImages)
        throw Error("synthetic world: too few scene layouts left for a validation set (data.synth: more objects, "
                    "shapes or colours)");
      Scene s = random_scene(opt, rng);
      if (taken.count(signature(s))) continue;
      v.image_group.push_back(static_cast<int64_t>(v.images.size()));
      v.images.push_back(std::move(s));
    }
    add_test_captions(v, opt.captions_per_image, derive_seed(opt.seed, kTestCaptions, 2));
    v.regions = make_regions(v.images, kValidationScenes);
  });
  return validation_;
}

const TestSet& World::test_set(const std::string& name) const {
  check_choice("test set", name, test_set_names());
  for (const auto& t : tests_)
    if (t.name == name) return t;
  throw Error("the " + name + " test set needs scenes of 2 or more objects (data.synth.max_objects >= 2)");
}

const World::Component& World::component_of(int64_t index) const {
  if (index < 0 || index >= static_cast<int64_t>(train_.size()))
    throw Error("synthetic world: training scene " + std::to_string(index) + " of " + std::to_string(train_.size()));
  auto it = std::upper_bound(components_.begin(), components_.end(), index,
                             [](int64_t i, const Component& c) { return i < c.first; });
  return *(it - 1);
}

Caption World::train_caption(int64_t index, uint64_t stream) const {
  Rng rng(derive_seed(options_.seed, kTrainCaptions, stream, static_cast<uint64_t>(index)));
  const Component& part = component_of(index);
  const auto& o = part.options;
  if (o.caption_style == "descriptive" && o.caption_noise == 0 && o.caption_corruption == 0)
    return sample_caption(train_[static_cast<size_t>(index)], rng);  // the default world's exact stream
  int64_t described = index;
  if (o.caption_noise > 0 && part.count > 1 && rng.bernoulli(o.caption_noise)) {  // misaligned: another scene
    described = part.first + rng.below(part.count - 1);
    if (described >= index) ++described;
  }
  Caption c = styled_caption(train_[static_cast<size_t>(described)], o.caption_style, rng);
  if (o.caption_corruption > 0) {
    static const std::vector<std::string> words = lexicon();
    std::string text;
    for (const auto& w : Vocab::basic_tokenize(c.text))
      text += (text.empty() ? "" : " ") + (rng.bernoulli(o.caption_corruption) ? rng.pick(words) : w);
    c.text = text;
  }
  return c;
}

std::string describe_mixture(const World& world, const std::string& sampling) {
  const auto& parts = world.components();
  const bool by_part = parts.size() > 1 && sampling == "dataset";
  const double n = static_cast<double>(world.train_scenes().size());
  std::string s = std::string("mixture by ") + (by_part ? "dataset" : "instance") + ":";
  char buf[160];
  for (size_t i = 0; i < parts.size(); ++i) {
    const double share = by_part ? 1.0 / static_cast<double>(parts.size()) : static_cast<double>(parts[i].count) / n;
    std::snprintf(buf, sizeof buf, "%s %s %lld scenes (%.1f %% of examples)", i ? "," : "",
                  parts[i].analogue.empty() ? "world" : parts[i].analogue.c_str(),
                  static_cast<long long>(parts[i].count), 100.0 * share);
    s += buf;
  }
  return s;
}

RegionStore World::make_regions(const std::vector<Scene>& scenes, uint64_t split) const {
  const int64_t d = options_.feature_dim, nc = options_.num_shapes;
  RegionStore st;
  st.feature_dim = d, st.num_classes = nc;
  st.offsets.push_back(0);
  std::vector<float> feat(d), cls(nc);
  for (size_t si = 0; si < scenes.size(); ++si) {
    const auto& scene = scenes[si];
    Rng rng(derive_seed(options_.seed, kDetector, split, si));
    struct Region {
      std::vector<float> f, c;
      float box[kBoxDim];
      float score;
    };
    std::vector<Region> regions;
    for (const auto& o : scene.objects) {
      // Detector class distribution: the true shape, a confusable partner, and the rest.
      const int partner = (o.shape ^ 1) < nc ? (o.shape ^ 1) : (o.shape + 1) % static_cast<int>(nc);
      const double mass = std::min(0.95, options_.detector_confusion * 2.0 * rng.uniform());
      std::vector<double> rest(nc, 0.0);
      double rest_sum = 0;
      for (int64_t c = 0; c < nc; ++c)
        if (c != o.shape && c != partner) rest_sum += (rest[c] = rng.uniform());
      for (int64_t c = 0; c < nc; ++c) cls[c] = rest_sum > 0 ? static_cast<float>(0.4 * mass * rest[c] / rest_sum) : 0.f;
      float p_true = static_cast<float>(1.0 - mass), p_partner = static_cast<float>((rest_sum > 0 ? 0.6 : 1.0) * mass);
      if (rng.bernoulli(options_.detector_confusion / 3.0)) std::swap(p_true, p_partner);  // misdetection
      cls[o.shape] = p_true, cls[partner] = p_partner;
      // Feature: the detected shape's appearance mixed as the detector saw it, plus the
      // colour and size prototypes, plus noise.
      const float wt = p_true / (p_true + p_partner), wp = 1.f - wt;
      for (int64_t k = 0; k < d; ++k) {
        feat[k] = wt * shape_proto_[o.shape * d + k] + wp * shape_proto_[partner * d + k] +
                  colour_proto_[o.colour * d + k] + size_proto_[o.size * d + k] +
                  static_cast<float>(options_.feature_noise * rng.normal());
      }
      Region r;
      r.f = feat, r.c = cls;
      r.box[0] = std::max(0.f, o.x - o.radius), r.box[1] = std::max(0.f, o.y - o.radius);
      r.box[2] = std::min(1.f, o.x + o.radius), r.box[3] = std::min(1.f, o.y + o.radius);
      r.box[4] = (r.box[2] - r.box[0]) * (r.box[3] - r.box[1]);
      r.score = *std::max_element(cls.begin(), cls.end());
      regions.push_back(std::move(r));
    }
    // The paper's layout: regions ranked by max class score, after one global region.
    std::stable_sort(regions.begin(), regions.end(), [](const Region& a, const Region& b) { return a.score > b.score; });
    Region global;
    global.f.assign(d, 0.f), global.c.assign(nc, 0.f);
    for (const auto& r : regions) {
      for (int64_t k = 0; k < d; ++k) global.f[k] += r.f[k] / regions.size();
      for (int64_t c = 0; c < nc; ++c) global.c[c] += r.c[c] / regions.size();
    }
    const float whole[kBoxDim] = {0.f, 0.f, 1.f, 1.f, 1.f};
    std::copy(whole, whole + kBoxDim, global.box);
    regions.insert(regions.begin(), std::move(global));
    for (const auto& r : regions) {
      st.features.insert(st.features.end(), r.f.begin(), r.f.end());
      st.classes.insert(st.classes.end(), r.c.begin(), r.c.end());
      st.boxes.insert(st.boxes.end(), r.box, r.box + kBoxDim);
    }
    st.offsets.push_back(st.offsets.back() + static_cast<int64_t>(regions.size()));
  }
  return st;
}

}  // namespace mmt::synth
