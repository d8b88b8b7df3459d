/* The synthetic world: mmt's embedded default data (docs/synthetic.md).
 *
 * Scenes of 1-4 objects (shape, colour, size, position). Each scene is given both as a small
 * rendered RGB image and as detector-style regions: one feature vector per object, a 5-d box
 * (x1, y1, x2, y2 normalised, area), a detector class distribution with confusion noise, plus
 * a global region (the mean of the regions) - the input layout of PAPER.md. Captions come from
 * a grammar over objects, attributes, spatial relations and counts, and carry their structured
 * content so that the truth of any caption about any scene can be decided exactly; that is how
 * the test sets' ceilings (chance, a perfect bag-of-words matcher, a perfect matcher) are
 * computed.
 *
 * Everything is a pure function of SynthOptions (seed included). Train scenes never share a
 * layout signature with a test scene. Two test sets: `easy` (random scenes) and `binding`
 * (groups of scenes with the same bag of attributes that differ only in which object carries
 * which attribute); and a validation set for choosing weights, disjoint from both and from
 * train. No torch here: features are plain float arrays. */
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "mmt/config/options.h"
#include "mmt/util/rng.h"

namespace mmt::synth {

constexpr int kMaxObjects = 4;
constexpr int kNumSizes = 2;  // small, large
constexpr int kBoxDim = 5;    // x1, y1, x2, y2, area
constexpr int64_t kValidationImages = 1000;  // World::validation_set()

const std::vector<std::string>& shape_words();   // circle, square, ...
const std::vector<std::string>& colour_words();  // red, green, ...

struct Object {
  int shape = 0;   // index into shape_words()
  int colour = 0;  // index into colour_words()
  int size = 0;    // 0 small, 1 large
  float x = 0.5f, y = 0.5f;  // centre, normalised to [0, 1]; y grows downwards
  float radius = 0.1f;       // half extent, normalised
};

struct Scene {
  std::vector<Object> objects;
};

enum class Relation { kLeftOf, kRightOf, kAbove, kBelow };
enum class Place { kAny, kLeft, kRight, kTop, kBottom };

/// A mentioned object: -1 leaves an attribute unspecified ("a circle", "a red shape").
struct ObjectRef {
  int shape = -1, colour = -1, size = -1;
  Place place = Place::kAny;  // "on the left", "at the top"
};
struct RelationRef {
  int a = 0, b = 0;  // indices into CaptionContent::objects
  Relation rel = Relation::kLeftOf;
};
/// What a caption asserts: distinct objects with attributes, relations between them, and
/// optionally the exact number of objects in the scene.
struct CaptionContent {
  std::vector<ObjectRef> objects;
  std::vector<RelationRef> relations;
  int count = -1;
  /// A narrative's statements ("a picture of ... , and there is ..."): each holds on its own - two
  /// may name the same object - and the fields above stay empty.
  std::vector<CaptionContent> statements;
};
struct Caption {
  std::string text;  // lower-case words separated by single spaces
  CaptionContent content;
};

/// Relation / place predicates used to judge truth (generation only uses clear cases).
bool relation_holds(const Object& a, Relation rel, const Object& b);
bool place_holds(const Object& o, Place place);

/// The whole scene in words, objects left to right, places as captions judge them:
/// "small red star (top left), large yellow cross (centre)".
std::string describe_scene(const Scene& scene);

/// Samples a caption that is true of `scene`.
Caption sample_caption(const Scene& scene, Rng& rng);

/// A training caption in a language style: descriptive (sample_caption), terse (alt-text: the
/// content words only), phrase (one object's noun phrase, Visual Genome), narrative (two or three
/// statements joined, Localized Narratives). Always true of `scene` (noise is applied by World).
Caption styled_caption(const Scene& scene, const std::string& style, Rng& rng);

/// What a caption of the grammar asserts, read back from its text (any case; a final "." is
/// ignored; an object's article may be left out: "red star"): the content sample_caption
/// generated it from, or nullopt for text the grammar cannot produce. Lets any grammatical caption
/// - one a user writes - be judged with caption_true_of.
std::optional<CaptionContent> parse_caption(const std::string& text);

/// The perfect matcher: the caption's objects map to distinct scene objects satisfying every
/// attribute, place and relation, and the count (if any) is right.
bool caption_true_of(const CaptionContent& c, const Scene& scene);

/// The perfect bag-of-words matcher: knows which attribute words occur (as a multiset) and
/// the number of objects, but not which object carries which attribute nor where it is.
bool caption_bag_matches(const CaptionContent& c, const Scene& scene);

/// P(sample_caption(scene) produces this caption's text): the grammar's exact likelihood,
/// summed over every way of generating the text. Ranking images by it is the Bayes-optimal
/// matcher of the world (the "perfect" ceiling), which can beat mere truth: a fully specified
/// caption is likelier to come from a scene it singles out than a vague one.
double caption_likelihood(const CaptionContent& c, const Scene& scene);

/// Every word the grammar can produce, sorted (the tokenizer's vocabulary).
std::vector<std::string> lexicon();

/// Renders a scene as RGB bytes, row-major (size x size x 3).
std::vector<uint8_t> render(const Scene& scene, int size);

/// Detector-style regions of many scenes, packed: scene i owns regions
/// [offsets[i], offsets[i+1]); its first region is the global one (mean of the others).
struct RegionStore {
  int64_t feature_dim = 0;
  int64_t num_classes = 0;
  std::vector<int64_t> offsets;  // num_scenes + 1
  std::vector<float> features;   // (num_regions, feature_dim)
  std::vector<float> boxes;      // (num_regions, 5)
  std::vector<float> classes;    // (num_regions, num_classes), rows sum to 1
  int64_t num_scenes() const { return static_cast<int64_t>(offsets.size()) - 1; }
  int64_t num_regions(int64_t scene) const { return offsets[scene + 1] - offsets[scene]; }
};

/// A retrieval test set: images x captions_per_image captions, image-major.
struct TestSet {
  std::string name;
  std::vector<Scene> images;
  RegionStore regions;
  std::vector<Caption> captions;
  std::vector<int64_t> caption_image;  // image index of each caption
  std::vector<int64_t> image_group;    // binding group of each image (easy: own index)
};

const std::vector<std::string>& test_set_names();  // easy, binding

class World {
 public:
  explicit World(const SynthOptions& options);

  const SynthOptions& options() const { return options_; }
  /// The training data's parts: one, the world's options, or with data.synth.mixture one per
  /// mixed analogue (mixture_component), their scenes one after another in train_scenes().
  struct Component {
    std::string analogue;  // "" = the world's own options
    SynthOptions options;
    int64_t first = 0, count = 0;  // train_scenes()[first, first + count)
  };
  const std::vector<Component>& components() const { return components_; }
  /// The part training scene `index` belongs to.
  const Component& component_of(int64_t index) const;
  const std::vector<Scene>& train_scenes() const { return train_; }
  const RegionStore& train_regions() const { return train_regions_; }
  /// A test set by name (easy, binding); throws Error listing the valid names.
  const TestSet& test_set(const std::string& name) const;
  /// The validation set: kValidationImages random scenes (easy-style, captions_per_image captions
  /// each) whose layouts no train scene and no reserved test scene has - for choosing weights
  /// during training (train.eval_every) without looking at a test set. Built on first use.
  const TestSet& validation_set() const;
  /// Samples a training caption for scene `index`, deterministic in (seed, stream, index): in its
  /// part's caption_style, describing another scene of its part with probability caption_noise,
  /// and each word replaced by a random lexicon word with probability caption_corruption.
  Caption train_caption(int64_t index, uint64_t stream) const;

  /// Layout signature: objects with attributes and a coarse 3x3 cell, order-free.
  static std::string signature(const Scene& scene);

 private:
  RegionStore make_regions(const std::vector<Scene>& scenes, uint64_t split) const;

  SynthOptions options_;
  std::vector<Component> components_;
  std::vector<float> shape_proto_, colour_proto_, size_proto_;  // (N, feature_dim)
  std::vector<Scene> train_;
  RegionStore train_regions_;
  std::vector<TestSet> tests_;  // in test_set_names() order
  std::unordered_set<std::string> test_signatures_;  // of every reserved test scene
  mutable std::once_flag validation_once_;
  mutable TestSet validation_;
};

/// A mixture's parts for the logs: "mixture by dataset: cc 30000 scenes (25.0 % of examples), ...".
std::string describe_mixture(const World& world, const std::string& sampling);

}  // namespace mmt::synth
