/* Synthetic world: the caption grammar and the two structured matchers (perfect and
 * bag-of-words) that define the test sets' ceilings. */
#include <algorithm>
#include <array>
#include <iterator>
#include <optional>
#include <set>

#include "mmt/data/synthetic_world.h"
#include "mmt/text/vocab.h"
#include "mmt/util/error.h"

namespace mmt::synth {

namespace {

const char* const kSizeWords[kNumSizes][2] = {{"small", "little"}, {"large", "big"}};
const char* const kCountWords[kMaxObjects + 1] = {"zero", "one", "two", "three", "four"};

const char* relation_words(Relation r) {
  switch (r) {
    case Relation::kLeftOf: return "to the left of";
    case Relation::kRightOf: return "to the right of";
    case Relation::kAbove: return "above";
    case Relation::kBelow: return "below";
  }
  return "";
}

const char* place_words(Place p) {
  switch (p) {
    case Place::kLeft: return "on the left";
    case Place::kRight: return "on the right";
    case Place::kTop: return "at the top";
    case Place::kBottom: return "at the bottom";
    case Place::kAny: break;
  }
  return "";
}

// Generation uses a relation only when it is clear: a large offset along the dominant axis.
bool clear_relation(const Object& a, const Object& b, Relation* rel) {
  const float dx = b.x - a.x, dy = b.y - a.y;
  if (std::fabs(dx) >= 0.12f && std::fabs(dx) > 1.5f * std::fabs(dy)) {
    *rel = dx > 0 ? Relation::kLeftOf : Relation::kRightOf;
    return true;
  }
  if (std::fabs(dy) >= 0.12f && std::fabs(dy) > 1.5f * std::fabs(dx)) {
    *rel = dy > 0 ? Relation::kAbove : Relation::kBelow;
    return true;
  }
  return false;
}

class CaptionBuilder {
 public:
  explicit CaptionBuilder(Rng& rng) : rng_(rng) {}

  // Appends "a <size>? <colour>? <shape|shape-noun>" for object o; returns its ref index.
  int object(const Object& o) {
    ObjectRef ref;
    const double r = rng_.uniform();
    std::vector<std::string> words;
    if (r < 0.55) {  // colour + shape
      ref.colour = o.colour, ref.shape = o.shape;
    } else if (r < 0.75) {  // size + colour + shape
      ref.size = o.size, ref.colour = o.colour, ref.shape = o.shape;
    } else if (r < 0.85) {  // shape only
      ref.shape = o.shape;
    } else if (r < 0.90) {  // size + shape
      ref.size = o.size, ref.shape = o.shape;
    } else {  // colour only: "a red shape"
      ref.colour = o.colour;
    }
    if (ref.size >= 0) words.push_back(kSizeWords[ref.size][rng_.below(2)]);
    if (ref.colour >= 0) words.push_back(colour_words()[ref.colour]);
    words.push_back(ref.shape >= 0 ? shape_words()[ref.shape] : (rng_.bernoulli(0.5) ? "shape" : "object"));
    article(words.front());
    for (auto& w : words) word(w);
    content_.objects.push_back(ref);
    return static_cast<int>(content_.objects.size()) - 1;
  }
  void article(const std::string& next) {
    word(std::string("aeiou").find(next[0]) != std::string::npos ? "an" : "a");
  }
  void word(const std::string& w) {
    if (!text_.empty()) text_ += ' ';
    text_ += w;
  }
  void words(const char* phrase) { word(phrase); }
  CaptionContent& content() { return content_; }
  Caption finish() { return Caption{text_, content_}; }

 private:
  Rng& rng_;
  std::string text_;
  CaptionContent content_;
};

// What the grammar can say about a scene: ordered pairs with a clear relation, and objects
// with a clear place.
struct SceneFacts {
  std::vector<std::array<int, 3>> relations;  // a, b, relation
  std::vector<std::pair<int, Place>> places;
};

SceneFacts scene_facts(const Scene& scene) {
  SceneFacts f;
  const int n = static_cast<int>(scene.objects.size());
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      Relation rel;
      if (i != j && clear_relation(scene.objects[i], scene.objects[j], &rel))
        f.relations.push_back({i, j, static_cast<int>(rel)});
    }
  for (int i = 0; i < n; ++i)
    for (Place p : {Place::kLeft, Place::kRight, Place::kTop, Place::kBottom})
      if (place_holds(scene.objects[i], p)) f.places.push_back({i, p});
  return f;
}

// Template probabilities of sample_caption (its thresholds on r), and the description modes
// of CaptionBuilder::object: kept next to them so the likelihood below mirrors the sampler.
constexpr double kRelationCut = 0.35, kConjunctionCut = 0.6, kCountCut = 0.75, kPlaceCut = 0.87;
constexpr double kPrefixProb = 0.25;  // one of 4 prefixes

void prefix(CaptionBuilder& b, Rng& rng) {
  static const char* const kPrefixes[] = {"", "there is", "a picture of", "an image with"};
  const char* p = kPrefixes[rng.below(4)];
  if (*p) b.words(p);
}

}  // namespace

Caption sample_caption(const Scene& scene, Rng& rng) {
  const auto& objs = scene.objects;
  const int n = static_cast<int>(objs.size());
  CaptionBuilder b(rng);

  const SceneFacts facts = scene_facts(scene);
  const auto& relations = facts.relations;
  const auto& places = facts.places;

  const double r = rng.uniform();
  if (n >= 2 && !relations.empty() && r < kRelationCut) {  // "a red circle to the left of a blue square"
    const auto& rel = rng.pick(relations);
    prefix(b, rng);
    const int a = b.object(objs[rel[0]]);
    b.words(relation_words(static_cast<Relation>(rel[2])));
    const int c = b.object(objs[rel[1]]);
    b.content().relations.push_back({a, c, static_cast<Relation>(rel[2])});
  } else if (n >= 2 && r < kConjunctionCut) {  // "a red circle , a blue square and a star"
    std::vector<int> order(n);
    for (int i = 0; i < n; ++i) order[i] = i;
    rng.shuffle(order);
    const int k = static_cast<int>(rng.range(2, n));
    prefix(b, rng);
    for (int i = 0; i < k; ++i) {
      if (i > 0) b.word(i + 1 == k ? "and" : ",");
      b.object(objs[order[i]]);
    }
  } else if (r < kCountCut) {  // "three shapes including a red circle" / "one object : a red circle"
    b.word(kCountWords[n]);
    b.word(n == 1 ? (rng.bernoulli(0.5) ? "shape" : "object") : (rng.bernoulli(0.5) ? "shapes" : "objects"));
    b.word(n == 1 ? ":" : "including");
    b.object(objs[rng.below(n)]);
    b.content().count = n;
  } else if (!places.empty() && r < kPlaceCut) {  // "a red circle on the left"
    const auto& pl = rng.pick(places);
    prefix(b, rng);
    const int a = b.object(objs[pl.first]);
    b.words(place_words(pl.second));
    b.content().objects[a].place = pl.second;
  } else {  // "there is a red circle"
    prefix(b, rng);
    b.object(objs[rng.below(n)]);
  }
  return b.finish();
}

namespace {

bool ref_matches(const ObjectRef& r, const Object& o) {
  return (r.shape < 0 || r.shape == o.shape) && (r.colour < 0 || r.colour == o.colour) &&
         (r.size < 0 || r.size == o.size) && place_holds(o, r.place);
}

// Backtracking over injective maps caption object -> scene object.
bool assign(const CaptionContent& c, const Scene& s, std::vector<int>& map, std::vector<bool>& used) {
  const size_t k = map.size();
  if (k == c.objects.size()) {
    for (const auto& rel : c.relations)
      if (!relation_holds(s.objects[map[rel.a]], rel.rel, s.objects[map[rel.b]])) return false;
    return true;
  }
  for (size_t i = 0; i < s.objects.size(); ++i) {
    if (used[i] || !ref_matches(c.objects[k], s.objects[i])) continue;
    used[i] = true;
    map.push_back(static_cast<int>(i));
    if (assign(c, s, map, used)) return true;
    map.pop_back();
    used[i] = false;
  }
  return false;
}

}  // namespace

namespace {

// A reader of the grammar's word sequences (parse_caption): each method consumes what it accepts.
class CaptionReader {
 public:
  explicit CaptionReader(std::vector<std::string> words) : w_(std::move(words)) {}
  bool done() const { return at_ == w_.size(); }
  // Consumes the phrase if the next words are it.
  bool accept(const std::string& phrase) {
    size_t at = at_;
    for (size_t from = 0, space; from <= phrase.size(); from = space + 1) {
      space = std::min(phrase.find(' ', from), phrase.size());
      if (at == w_.size() || w_[at] != phrase.substr(from, space - from)) return false;
      ++at;
    }
    at_ = at;
    return true;
  }
  // The index of the phrase of `options` the next words are (consumed), or -1.
  template <typename Options>
  int one_of(const Options& options) {
    for (size_t i = 0; i < std::size(options); ++i)
      if (*options[i] && accept(options[i])) return static_cast<int>(i);
    return -1;
  }
  // "a|an <size>? <colour>? <shape|shape|object>"; the article may be left out, as people (and the
  // terse alt-text style) write "red star": the same object.
  bool object(CaptionContent& c) {
    const size_t start = at_;
    accept("a") || accept("an");
    ObjectRef ref;
    for (int size = 0; size < kNumSizes && ref.size < 0; ++size)
      if (accept(kSizeWords[size][0]) || accept(kSizeWords[size][1])) ref.size = size;
    const auto& colours = colour_words();
    for (size_t k = 0; k < colours.size() && ref.colour < 0; ++k)
      if (accept(colours[k])) ref.colour = static_cast<int>(k);
    const auto& shapes = shape_words();
    for (size_t k = 0; k < shapes.size() && ref.shape < 0; ++k)
      if (accept(shapes[k])) ref.shape = static_cast<int>(k);
    if (ref.shape < 0 && !accept("shape") && !accept("object")) {
      at_ = start;
      return false;
    }
    c.objects.push_back(ref);
    return true;
  }

 private:
  std::vector<std::string> w_;
  size_t at_ = 0;
};

// One statement of the grammar (sample_caption's forms), as words.
std::optional<CaptionContent> parse_statement(std::vector<std::string> words) {
  CaptionReader in(std::move(words));
  CaptionContent c;
  static const char* const kRelations[] = {"to the left of", "to the right of", "above", "below"};
  static const char* const kPlaces[] = {"", "on the left", "on the right", "at the top", "at the bottom"};
  const int count = in.one_of(kCountWords);
  if (count >= 0) {  // "three shapes including <a>", "one object : <a>"
    const bool one = count == 1;
    if (!(one ? in.accept("shape") || in.accept("object") : in.accept("shapes") || in.accept("objects")) ||
        !in.accept(one ? ":" : "including") || !in.object(c) || !in.done())
      return std::nullopt;
    c.count = count;
    return c;
  }
  in.accept("there is") || in.accept("a picture of") || in.accept("an image with");
  if (!in.object(c)) return std::nullopt;
  if (const int rel = in.one_of(kRelations); rel >= 0) {  // "<a> <relation> <b>"
    if (!in.object(c)) return std::nullopt;
    c.relations.push_back({0, 1, static_cast<Relation>(rel)});
  } else if (const int place = in.one_of(kPlaces); place > 0) {  // "<a> <place>"
    c.objects[0].place = static_cast<Place>(place);
  } else {  // "<a>", "<a> and <b>", "<a> , <b> and <c>"
    int commas = 0;
    for (; in.accept(","); ++commas)
      if (!in.object(c)) return std::nullopt;
    if (in.accept("and")) {
      if (!in.object(c)) return std::nullopt;
    } else if (commas > 0) {
      return std::nullopt;  // a list ends with "and <x>"
    }
  }
  if (!in.done()) return std::nullopt;
  return c;
}

}  // namespace

std::optional<CaptionContent> parse_caption(const std::string& text) {
  std::vector<std::string> words = Vocab::basic_tokenize(text);
  if (!words.empty() && words.back() == ".") words.pop_back();
  // The narrative style: statements joined by ", and" ("a picture of <s> , and there is <s> , and
  // <s>"; the grammar's own lists never put "and" after a comma), each read on its own.
  std::vector<std::vector<std::string>> parts(1);
  for (size_t k = 0; k < words.size(); ++k) {
    if (words[k] == "," && k + 1 < words.size() && words[k + 1] == "and") {
      parts.emplace_back(), ++k;
      continue;
    }
    parts.back().push_back(words[k]);
  }
  if (parts.size() == 1) return parse_statement(std::move(parts.front()));
  CaptionContent narrative;
  for (size_t p = 0; p < parts.size(); ++p) {
    auto& w = parts[p];
    // The narrator's openings come before a statement's own prefix ("a picture of there is a
    // star"): taken off where the rest is a statement without them.
    const std::vector<std::string> opening =
        p == 0 ? std::vector<std::string>{"a", "picture", "of"} : std::vector<std::string>{"there", "is"};
    std::optional<CaptionContent> c;
    if (w.size() > opening.size() && std::equal(opening.begin(), opening.end(), w.begin()))
      c = parse_statement({w.begin() + static_cast<std::ptrdiff_t>(opening.size()), w.end()});
    if (!c) c = parse_statement(std::move(w));
    if (!c) return std::nullopt;
    narrative.statements.push_back(std::move(*c));
  }
  return narrative;
}

bool caption_true_of(const CaptionContent& c, const Scene& scene) {
  if (!c.statements.empty())
    return std::all_of(c.statements.begin(), c.statements.end(), [&](const CaptionContent& s) { return caption_true_of(s, scene); });
  if (c.count >= 0 && c.count != static_cast<int>(scene.objects.size())) return false;
  if (c.objects.size() > scene.objects.size()) return false;
  std::vector<int> map;
  std::vector<bool> used(scene.objects.size(), false);
  return assign(c, scene, map, used);
}

bool caption_bag_matches(const CaptionContent& c, const Scene& scene) {
  if (!c.statements.empty())
    return std::all_of(c.statements.begin(), c.statements.end(),
                       [&](const CaptionContent& s) { return caption_bag_matches(s, scene); });
  if (c.count >= 0 && c.count != static_cast<int>(scene.objects.size())) return false;
  if (c.objects.size() > scene.objects.size()) return false;
  int shapes[8] = {}, colours[8] = {}, sizes[kNumSizes] = {};
  for (const auto& o : scene.objects) ++shapes[o.shape], ++colours[o.colour], ++sizes[o.size];
  for (const auto& r : c.objects) {
    if (r.shape >= 0 && --shapes[r.shape] < 0) return false;
    if (r.colour >= 0 && --colours[r.colour] < 0) return false;
    if (r.size >= 0 && --sizes[r.size] < 0) return false;
  }
  return true;
}

namespace {

// P(the words describing an object | the object): mode probability x synonym choices.
double describe_prob(const ObjectRef& r) {
  const bool s = r.shape >= 0, c = r.colour >= 0, z = r.size >= 0;
  if (s && c && !z) return 0.55;
  if (s && c && z) return 0.20 * 0.5;   // small|little, large|big
  if (s && !c && !z) return 0.10;
  if (s && !c && z) return 0.05 * 0.5;
  if (!s && c && !z) return 0.10 * 0.5;  // shape|object
  return 0.0;
}

bool describes(const ObjectRef& r, const Object& o) {
  return (r.shape < 0 || r.shape == o.shape) && (r.colour < 0 || r.colour == o.colour) &&
         (r.size < 0 || r.size == o.size);
}

// Sum over ordered injective maps refs[k..] -> unused objects of prod describe_prob.
double ordered_matches(const std::vector<ObjectRef>& refs, size_t k, const Scene& s, std::vector<bool>& used) {
  if (k == refs.size()) return 1.0;
  double total = 0;
  for (size_t i = 0; i < s.objects.size(); ++i) {
    if (used[i] || !describes(refs[k], s.objects[i])) continue;
    used[i] = true;
    total += describe_prob(refs[k]) * ordered_matches(refs, k + 1, s, used);
    used[i] = false;
  }
  return total;
}

}  // namespace

double caption_likelihood(const CaptionContent& c, const Scene& scene) {
  if (!c.statements.empty())  // the test sets' captions are descriptive; a narrative's would need its own sampler
    throw Error("caption_likelihood: a narrative caption has no likelihood under the descriptive grammar");
  const int n = static_cast<int>(scene.objects.size());
  const SceneFacts f = scene_facts(scene);
  const double p_relation = n >= 2 && !f.relations.empty() ? kRelationCut : 0.0;
  const double p_conjunction = n >= 2 ? kConjunctionCut - p_relation : 0.0;
  const double p_count = kCountCut - (n >= 2 ? kConjunctionCut : 0.0);
  const double p_place = f.places.empty() ? 0.0 : kPlaceCut - kCountCut;
  const double p_single = 1.0 - p_relation - p_conjunction - p_count - p_place;
  if (c.objects.empty() || static_cast<int>(c.objects.size()) > n) return 0.0;
  const ObjectRef& r0 = c.objects[0];

  if (!c.relations.empty()) {  // "<a> <relation> <b>"
    if (p_relation == 0 || c.objects.size() != 2) return 0.0;
    double total = 0;
    for (const auto& rel : f.relations)
      if (rel[2] == static_cast<int>(c.relations[0].rel) && describes(r0, scene.objects[rel[0]]) &&
          describes(c.objects[1], scene.objects[rel[1]]))
        total += describe_prob(r0) * describe_prob(c.objects[1]);
    return p_relation * kPrefixProb * total / static_cast<double>(f.relations.size());
  }
  if (c.count >= 0) {  // "<count> shapes including <a>"
    if (c.count != n) return 0.0;
    double total = 0;
    for (const auto& o : scene.objects) total += describes(r0, o) ? describe_prob(r0) : 0.0;
    return p_count * 0.5 * total / n;  // 0.5: shapes|objects
  }
  if (r0.place != Place::kAny) {  // "<a> <place>"
    double total = 0;
    for (const auto& [i, place] : f.places)
      if (place == r0.place && describes(r0, scene.objects[i])) total += describe_prob(r0);
    return f.places.empty() ? 0.0 : p_place * kPrefixProb * total / static_cast<double>(f.places.size());
  }
  if (c.objects.size() >= 2) {  // "<a> , <b> and <c>": k of a random order, k uniform in [2, n]
    const int k = static_cast<int>(c.objects.size());
    double order = 1.0;  // P(a given ordered k-tuple leads a uniform permutation) = (n-k)!/n!
    for (int i = 0; i < k; ++i) order /= (n - i);
    std::vector<bool> used(scene.objects.size(), false);
    return p_conjunction / (n - 1) * kPrefixProb * order * ordered_matches(c.objects, 0, scene, used);
  }
  double total = 0;  // "there is <a>"
  for (const auto& o : scene.objects) total += describes(r0, o) ? describe_prob(r0) : 0.0;
  return p_single * kPrefixProb * total / n;
}

Caption styled_caption(const Scene& scene, const std::string& style, Rng& rng) {
  if (style == "descriptive") return sample_caption(scene, rng);
  if (style == "phrase") {  // Visual Genome: one object's noun phrase, sometimes with its place
    CaptionBuilder b(rng);
    const SceneFacts facts = scene_facts(scene);
    const int i = static_cast<int>(rng.below(static_cast<int64_t>(scene.objects.size())));
    const int a = b.object(scene.objects[static_cast<size_t>(i)]);
    std::vector<Place> places;
    for (const auto& p : facts.places)
      if (p.first == i) places.push_back(p.second);
    if (!places.empty() && rng.bernoulli(0.4)) {
      const Place p = rng.pick(places);
      b.words(place_words(p));
      b.content().objects[static_cast<size_t>(a)].place = p;
    }
    return b.finish();
  }
  if (style == "terse") {  // alt-text: content words only, no grammar ("large red circle left")
    Caption c = sample_caption(scene, rng);
    static const std::set<std::string> keep = [] {
      std::set<std::string> k = {"left", "right", "top", "bottom", "above", "below"};
      for (const auto& w : shape_words()) k.insert(w);
      for (const auto& w : colour_words()) k.insert(w);
      for (const auto& s : kSizeWords) k.insert(s[0]), k.insert(s[1]);
      for (const char* w : kCountWords) k.insert(w);
      return k;
    }();
    std::string text;
    for (const auto& w : Vocab::basic_tokenize(c.text))
      if (keep.count(w)) text += (text.empty() ? "" : " ") + w;
    c.text = text.empty() ? c.text : text;
    c.content.relations.clear();  // word order no longer carries them
    return c;
  }
  if (style == "narrative") {  // Localized Narratives: several statements about one picture
    const int parts = static_cast<int>(rng.range(2, 3));
    Caption first = sample_caption(scene, rng);
    Caption out;
    out.text = "a picture of " + first.text;
    out.content.statements.push_back(std::move(first.content));
    for (int k = 1; k < parts; ++k) {
      Caption more = sample_caption(scene, rng);
      out.text += std::string(" , and ") + (k + 1 == parts ? "" : "there is ") + more.text;
      out.content.statements.push_back(std::move(more.content));
    }
    return out;
  }
  throw Error("synthetic caption style '" + style + "' unknown; valid: descriptive, terse, phrase, narrative");
}

std::vector<std::string> lexicon() {
  std::set<std::string> words = {"a", "an", "there", "is", "picture", "of", "image", "with",
                                 "and", ",", ":", "including", "shape", "shapes", "object",
                                 "objects", "to", "the", "left", "right", "above", "below",
                                 "on", "at", "top", "bottom"};
  for (const auto& w : shape_words()) words.insert(w);
  for (const auto& w : colour_words()) words.insert(w);
  for (const auto& s : kSizeWords) words.insert(s[0]), words.insert(s[1]);
  for (const char* w : kCountWords) words.insert(w);
  return {words.begin(), words.end()};
}

}  // namespace mmt::synth
