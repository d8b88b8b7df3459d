/* Config resolution: the JSON reader/writers that walk the options structs' visit() lists,
 * `--set` overrides, presets and validation. */
#include "mmt/config/config.h"

#include <algorithm>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>

#include "mmt/model/attention.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {

using nlohmann::json;

// Names validated here are owned by the areas that implement them.
std::vector<AttentionType> layer_types(const ModelOptions& m);  // model/transformer.cpp
const std::vector<std::string>& synthetic_test_set_names();  // data/synthetic_world.cpp

namespace {

std::string type_name(const json& j) {
  return std::string(j.type_name()) + " " + j.dump();
}

// Edit distance (insertions, deletions, substitutions, swaps of neighbours) between two keys.
size_t key_distance(const std::string& a, const std::string& b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

// Where else a key is valid: the dotted paths of every config field named `key` (from the
// defaults), for a key given in the wrong section ("model.lr" -> train.lr).
std::vector<std::string> sections_with(const std::string& key) {
  std::vector<std::string> found;
  std::vector<std::pair<const json*, std::string>> todo{{nullptr, ""}};
  static const json defaults = config_to_json(ExperimentConfig{});
  todo.front().first = &defaults;
  while (!todo.empty()) {
    const auto [node, path] = todo.back();
    todo.pop_back();
    for (auto it = node->begin(); it != node->end(); ++it) {
      const std::string here = path.empty() ? it.key() : path + "." + it.key();
      if (it.key() == key) found.push_back(here);
      if (it->is_object()) todo.emplace_back(&*it, here);
    }
  }
  std::sort(found.begin(), found.end());
  return found;
}

// The valid key a typo most likely meant ("" if none is close: within a third of its length,
// at least 2 edits allowed; a unique one wins).
std::string closest_key(const std::string& key, const std::vector<std::string>& valid) {
  const size_t allowed = std::max<size_t>(2, key.size() / 3);
  std::string best;
  size_t best_d = allowed + 1;
  bool tie = false;
  for (const auto& v : valid) {
    const size_t d = key_distance(key, v);
    if (d < best_d) best = v, best_d = d, tie = false;
    else if (d == best_d) tie = true;
  }
  return tie ? "" : best;
}

// ---- reading -------------------------------------------------------------------------

class JsonReader {
 public:
  JsonReader(const json& j, std::string prefix) : j_(j), prefix_(std::move(prefix)) {}

  template <class T>
  void field(const char* name, T& value, const char*) {
    names_.emplace_back(name);
    auto it = j_.find(name);
    if (it == j_.end()) return;
    assign(*it, value, prefix_ + name);
  }

  template <class S>
  void section(const char* name, S& sub, const char*) {
    names_.emplace_back(name);
    auto it = j_.find(name);
    if (it == j_.end()) return;
    if (!it->is_object())
      throw Error("config key '" + prefix_ + name + "' is a section and expects an object, got " +
                  type_name(*it));
    JsonReader reader(*it, prefix_ + name + ".");
    sub.visit(reader);
    reader.check_unknown();
  }

  template <class S>
  void list(const char* name, std::vector<S>& items, const char*) {
    names_.emplace_back(name);
    auto it = j_.find(name);
    if (it == j_.end()) return;
    if (!it->is_array())
      throw Error("config key '" + prefix_ + name + "' expects a list of objects, got " + type_name(*it));
    items.clear();
    for (size_t i = 0; i < it->size(); ++i) {
      const json& e = (*it)[i];
      const std::string where = prefix_ + name + "[" + std::to_string(i) + "]";
      if (!e.is_object()) throw Error("config key '" + where + "' expects an object, got " + type_name(e));
      S item;
      JsonReader reader(e, where + ".");
      item.visit(reader);
      reader.check_unknown();
      items.push_back(std::move(item));
    }
  }

  void check_unknown() const {
    for (auto it = j_.begin(); it != j_.end(); ++it) {
      if (std::find(names_.begin(), names_.end(), it.key()) != names_.end()) continue;
      const std::string where =
          prefix_.empty() ? "" : " of '" + prefix_.substr(0, prefix_.size() - 1) + "'";
      // A key of another section (model.lr: train.lr), else the closest key of this one.
      std::string hint;
      const auto elsewhere = sections_with(it.key());
      if (!elsewhere.empty()) hint = " (did you mean '" + join(elsewhere, "' or '") + "'?)";
      else if (const std::string guess = closest_key(it.key(), names_); !guess.empty())
        hint = " (did you mean '" + prefix_ + guess + "'?)";
      throw Error("unknown config key '" + prefix_ + it.key() + "'" + hint + "; valid keys" + where + ": " +
                  join(names_));
    }
  }

 private:
  static void assign(const json& j, int64_t& v, const std::string& key) {
    if (!j.is_number_integer()) throw Error("config key '" + key + "' expects an integer, got " + type_name(j));
    v = j.get<int64_t>();
  }
  static void assign(const json& j, uint64_t& v, const std::string& key) {
    if (!j.is_number_integer() || (j.is_number_integer() && !j.is_number_unsigned() && j.get<int64_t>() < 0))
      throw Error("config key '" + key + "' expects a non-negative integer, got " + type_name(j));
    v = j.get<uint64_t>();
  }
  static void assign(const json& j, double& v, const std::string& key) {
    if (!j.is_number()) throw Error("config key '" + key + "' expects a number, got " + type_name(j));
    v = j.get<double>();
  }
  static void assign(const json& j, bool& v, const std::string& key) {
    if (!j.is_boolean()) throw Error("config key '" + key + "' expects true or false, got " + type_name(j));
    v = j.get<bool>();
  }
  static void assign(const json& j, std::string& v, const std::string& key) {
    if (j.is_string()) v = j.get<std::string>();
    else if (j.is_number() || j.is_boolean()) v = j.dump();  // `--set name=123`
    else throw Error("config key '" + key + "' expects a string, got " + type_name(j));
  }
  static void assign(const json& j, std::vector<std::string>& v, const std::string& key) {
    v.clear();
    if (j.is_string()) {  // "a,b,c" - convenient on the command line
      std::stringstream ss(j.get<std::string>());
      std::string item;
      while (std::getline(ss, item, ',')) if (!item.empty()) v.push_back(item);
      return;
    }
    if (!j.is_array()) throw Error("config key '" + key + "' expects a list of strings, got " + type_name(j));
    for (const auto& e : j) {
      if (!e.is_string())
        throw Error("config key '" + key + "' expects a list of strings, got element " + type_name(e));
      v.push_back(e.get<std::string>());
    }
  }

  const json& j_;
  std::string prefix_;
  std::vector<std::string> names_;
};

// ---- writing -------------------------------------------------------------------------

class JsonWriter {
 public:
  explicit JsonWriter(json& j) : j_(j) {}
  template <class T>
  void field(const char* name, const T& value, const char*) {
    j_[name] = value;
  }
  template <class S>
  void section(const char* name, S& sub, const char*) {
    json child = json::object();
    JsonWriter w(child);
    sub.visit(w);
    j_[name] = child;
  }
  template <class S>
  void list(const char* name, std::vector<S>& items, const char*) {
    j_[name] = to_array(items);
  }
  /// A list of option structs as a JSON array of objects.
  template <class S>
  static json to_array(std::vector<S>& items) {
    json arr = json::array();
    for (auto& item : items) {
      json child = json::object();
      JsonWriter w(child);
      item.visit(w);
      arr.push_back(child);
    }
    return arr;
  }

 private:
  json& j_;
};

class CommentedWriter {
 public:
  explicit CommentedWriter(int indent) : indent_(indent) {}
  template <class T>
  void field(const char* name, const T& value, const char* doc) {
    entries_.push_back({name, doc, json(value).dump(), false});
  }
  template <class S>
  void section(const char* name, S& sub, const char* doc) {
    CommentedWriter w(indent_ + 2);
    sub.visit(w);
    entries_.push_back({name, doc, w.str(), true});
  }
  template <class S>
  void list(const char* name, std::vector<S>& items, const char* doc) {
    entries_.push_back({name, doc, JsonWriter::to_array(items).dump(), false});
  }
  std::string str() const {
    const std::string pad(indent_ + 2, ' ');
    std::string out = "{\n";
    for (size_t i = 0; i < entries_.size(); ++i) {
      const auto& e = entries_[i];
      out += pad + "// " + e.doc + "\n";
      out += pad + "\"" + e.name + "\": " + e.value + (i + 1 < entries_.size() ? "," : "") + "\n";
    }
    out += std::string(indent_, ' ') + "}";
    return out;
  }

 private:
  struct Entry {
    std::string name, doc, value;
    bool is_section;
  };
  int indent_;
  std::vector<Entry> entries_;
};

}  // namespace

// ---- presets -------------------------------------------------------------------------

const std::vector<std::string>& model_preset_names() {
  static const std::vector<std::string> names = {"tiny", "base"};
  return names;
}

void apply_model_preset(ModelOptions& m) {
  check_choice("model preset", m.preset, model_preset_names());
  if (m.preset == "tiny") {  // fits `make demo` on 2 CPU cores
    m.hidden = 128, m.num_layers = 4, m.num_heads = 4, m.head_dim = 32, m.ffn_dim = 512;
    m.dropout = 0.0;
  } else if (m.preset == "base") {  // the paper's base model: 6 layers, 768, 12 heads
    m.hidden = 768, m.num_layers = 6, m.num_heads = 12, m.head_dim = 64, m.ffn_dim = 3072;
    m.dropout = 0.1;
  }
}

const std::vector<std::string>& synthetic_analogue_names() {
  static const std::vector<std::string> names = {"cc", "sbu", "vg", "coco", "coco-ln", "oi-ln"};
  return names;
}

// The six analogues of PAPER.md's datasets differ in the factors the paper names: caption noise,
// language style, size, image distribution (objects per training scene: the test sets stay the
// world's, so every analogue is scored on the same ones). docs/synthetic.md has the table.
void apply_synthetic_analogue(SynthOptions& s) {
  if (s.analogue.empty()) return;
  check_choice("synthetic analogue", s.analogue, synthetic_analogue_names());
  const std::string a = s.analogue;
  // Every key an analogue owns starts from its default, so a preset is the whole of its data
  // whatever `s` held (a mixture's part starts from the world's options).
  const SynthOptions defaults;
  s.num_train_images = defaults.num_train_images, s.caption_style = defaults.caption_style;
  s.caption_noise = defaults.caption_noise, s.caption_corruption = defaults.caption_corruption;
  s.train_min_objects = defaults.train_min_objects, s.train_max_objects = defaults.train_max_objects;
  if (a == "cc") {  // Conceptual Captions: large, web alt-text: terse, misaligned, corrupted
    s.num_train_images = 30000, s.caption_style = "terse", s.caption_noise = 0.3, s.caption_corruption = 0.1;
  } else if (a == "sbu") {  // SBU: web captions, sentences but noisy, smaller
    s.num_train_images = 10000, s.caption_style = "descriptive", s.caption_noise = 0.25, s.caption_corruption = 0.05;
  } else if (a == "vg") {  // Visual Genome: clean region phrases about one object, busy images
    s.num_train_images = 10000, s.caption_style = "phrase", s.train_min_objects = 2;
  } else if (a == "coco") {  // COCO: clean descriptive sentences
    s.num_train_images = 8000, s.caption_style = "descriptive";
  } else if (a == "coco-ln") {  // COCO Localized Narratives: COCO's images, long spoken descriptions
    s.num_train_images = 8000, s.caption_style = "narrative";
  } else if (a == "oi-ln") {  // Open Images Localized Narratives: narratives of other, busier images
    s.num_train_images = 15000, s.caption_style = "narrative", s.train_min_objects = 3;
  }
  s.caption_noise = std::min(s.caption_noise, 1.0);
}

SynthOptions mixture_component(const SynthOptions& world, const std::string& analogue) {
  SynthOptions s = world;
  s.mixture.clear();
  s.analogue = analogue;
  apply_synthetic_analogue(s);
  return s;
}

// ---- API -----------------------------------------------------------------------------

json parse_json_with_comments(const std::string& text, const std::string& origin) {
  try {
    return json::parse(text, nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
  } catch (const json::parse_error& e) {
    size_t line = 1, col = 1;
    for (size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
      if (text[i] == '\n') ++line, col = 1;
      else ++col;
    }
    std::string what = e.what();
    const auto p = what.find("parse error");
    throw Error(origin + ":" + std::to_string(line) + ":" + std::to_string(col) + ": invalid JSON (" +
                (p == std::string::npos ? what : what.substr(p)) + ")");
  }
}

void apply_json(ExperimentConfig& cfg, const json& j) {
  if (!j.is_object()) throw Error("a config must be a JSON object, got " + type_name(j));
  JsonReader reader(j, "");
  cfg.visit(reader);
  reader.check_unknown();
}

void apply_override(ExperimentConfig& cfg, const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw Error("--set expects key=value (e.g. train.steps=100), got '" + assignment + "'");
  const std::string key = assignment.substr(0, eq), raw = assignment.substr(eq + 1);
  json value;
  try {
    value = json::parse(raw);
  } catch (const json::parse_error&) {
    value = raw;  // bare words (merged, tiny) are strings
  }
  // a.b.c=v -> {"a": {"b": {"c": v}}}
  json patch = value;
  std::vector<std::string> parts;
  std::stringstream ss(key);
  for (std::string part; std::getline(ss, part, '.');) parts.push_back(part);
  for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
    if (it->empty()) throw Error("--set: empty component in key '" + key + "'");
    json parent = json::object();
    parent[*it] = std::move(patch);
    patch = std::move(parent);
  }
  apply_json(cfg, patch);
}

int64_t pixel_image_size(const ExperimentConfig& cfg) {
  return cfg.data.source == "synthetic" ? cfg.data.synth.image_size : cfg.data.image_size;
}

void validate_config(const ExperimentConfig& cfg) {
  const auto& m = cfg.model;
  auto key_choice = [](const std::string& key, const std::string& what, const std::string& v,
                       const std::vector<std::string>& valid) {
    try {
      check_choice(what, v, valid);
    } catch (const Error& e) {
      throw Error("config key '" + key + "': " + e.what());
    }
  };
  auto positive = [](const std::string& key, double v) {
    if (!(v > 0)) throw Error("config key '" + key + "' must be > 0, got " + json(v).dump());
  };
  auto in_range = [](const std::string& key, double v, double lo, double hi) {
    if (!(v >= lo && v <= hi))
      throw Error("config key '" + key + "' must be in [" + json(lo).dump() + ", " + json(hi).dump() +
                  "], got " + json(v).dump());
  };
  key_choice("model.preset", "model preset", m.preset, model_preset_names());
  key_choice("model.attention", "attention type", m.attention, attention_type_names());
  for (size_t i = 0; i < m.layers.size(); ++i)  // "name" or "name*N"
    key_choice("model.layers[" + std::to_string(i) + "]", "attention type",
               m.layers[i].substr(0, m.layers[i].find('*')), attention_type_names());
  key_choice("model.itm_pooling", "ITM pooling", m.itm_pooling, {"product", "cls"});
  key_choice("model.image_input", "image input", m.image_input, {"regions", "patches", "resnet50"});
  key_choice("model.kind", "model kind", m.kind, {"transformer", "dual_encoder"});
  key_choice("model.dual_score", "dual-encoder score", m.dual_score, {"dot", "classifier"});
  positive("model.embed_dim", m.embed_dim);
  if (m.kind == "dual_encoder") {
    const auto& names = m.layers.empty() ? std::vector<std::string>{m.attention} : m.layers;
    for (const auto& n : names)
      if (n.substr(0, n.find('*')) != "single_modality")
        throw Error("config: a dual encoder has no multimodal attention: model.attention / model.layers must be "
                    "single_modality, got '" + n + "'");
  }
  if (m.align) {  // the head reads the states below the first cross-modal layer: there must be some, and a layer above
    if (m.kind != "transformer")
      throw Error("config: model.align is a transformer's head below its fusion layers; a dual encoder's towers are "
                  "aligned by train.dual_contrastive_weight");
    const auto types = layer_types(m);
    const int64_t first = first_cross_modal_layer(types);
    if (first == 0)
      throw Error("config: model.align needs single_modality layers below the first cross-modal one (e.g. "
                  "model.layers=[\"single_modality*3\", \"merged\"]); this stack mixes modalities from layer 0, "
                  "where [CLS] is the same embedding for every caption");
    if (first == static_cast<int64_t>(types.size()))
      throw Error("config: model.align: no layer of this stack mixes modalities, so there is nothing to align before; "
                  "for two towers use model.kind=dual_encoder, model.dual_score=dot and train.dual_contrastive_weight");
  }
  positive("model.patch_size", m.patch_size);
  {
    // The pixel side the model reads: the synthetic world's renders or the datasets' centre crops.
    const bool synthetic = cfg.data.source == "synthetic";
    const std::string key = synthetic ? "data.synth.image_size" : "data.image_size";
    const int64_t side = pixel_image_size(cfg);
    if (!synthetic) in_range(key, side, 8, 4096);
    if (m.image_input == "patches" && side % m.patch_size != 0)
      throw Error("config: " + key + " " + std::to_string(side) + " is not a multiple of model.patch_size " +
                  std::to_string(m.patch_size));
  }
  positive("model.hidden", m.hidden);
  positive("model.num_heads", m.num_heads);
  positive("model.head_dim", m.head_dim);
  positive("model.ffn_dim", m.ffn_dim);
  if (m.layers.empty()) positive("model.num_layers", m.num_layers);
  in_range("model.dropout", m.dropout, 0, 0.9);
  in_range("model.max_text_len", m.max_text_len, 3, 4096);

  key_choice("data.source", "data source", cfg.data.source, {"synthetic", "datasets"});
  key_choice("data.sampling", "mixture sampling", cfg.data.sampling, {"instance", "dataset", "weights"});
  in_range("data.max_bad_fraction", cfg.data.max_bad_fraction, 0, 1);
  if (cfg.data.image_cache_mb < 0) throw Error("config: data.image_cache_mb must be >= 0 (0 = no cache)");
  if (cfg.eval.image_cache_mb < 0) throw Error("config: eval.image_cache_mb must be >= 0 (0 = no cache)");
  if (cfg.data.loader_threads < -1 || cfg.data.prefetch < 1)
    throw Error("config: data.loader_threads must be >= 0 (or -1 = auto) and data.prefetch >= 1");
  if (cfg.data.source == "datasets") {
    if (cfg.data.datasets.empty()) throw Error("config: data.source = datasets needs data.datasets (a list of datasets)");
    if (cfg.data.tokenizer.empty())
      throw Error("config: data.source = datasets needs data.tokenizer (a vocab.txt or a SentencePiece .model)");
    for (size_t i = 0; i < cfg.data.datasets.size(); ++i) {
      const auto& d = cfg.data.datasets[i];
      const std::string key = "data.datasets[" + std::to_string(i) + "]";
      key_choice(key + ".format", "dataset format", d.format,
                 {"coco", "karpathy", "tsv", "webdataset", "files", "folder", "narratives", "vg"});
      if (d.path.empty()) throw Error("config: " + key + ".path is empty");
      if (!(d.weight >= 0)) throw Error("config: " + key + ".weight must be >= 0");
    }
  }
  const auto& s = cfg.data.synth;
  in_range("data.synth.min_objects", s.min_objects, 1, 4);
  in_range("data.synth.max_objects", s.max_objects, s.min_objects, 4);
  if (s.train_min_objects >= 0) in_range("data.synth.train_min_objects", s.train_min_objects, 1, 4);
  if (s.train_max_objects >= 0) in_range("data.synth.train_max_objects", s.train_max_objects, 1, 4);
  if (s.train_objects_min() > s.train_objects_max())
    throw Error("config: data.synth.train_min_objects (" + std::to_string(s.train_objects_min()) +
                ") exceeds the training scenes' maximum (" + std::to_string(s.train_objects_max()) + ")");
  in_range("data.synth.num_shapes", s.num_shapes, 2, 8);
  in_range("data.synth.num_colours", s.num_colours, 2, 8);
  in_range("data.synth.binding_group_size", s.binding_group_size, 2, 8);
  positive("data.synth.num_train_images", s.num_train_images);
  positive("data.synth.num_test_images", s.num_test_images);
  positive("data.synth.captions_per_image", s.captions_per_image);
  in_range("data.synth.image_size", s.image_size, 8, 1024);
  positive("data.synth.feature_dim", s.feature_dim);
  in_range("data.synth.detector_confusion", s.detector_confusion, 0, 1);
  in_range("data.synth.feature_noise", s.feature_noise, 0, 100);
  positive("data.max_regions", cfg.data.max_regions);
  positive("data.bucket_batches", cfg.data.bucket_batches);

  const auto& t = cfg.train;
  key_choice("train.schedule", "schedule", t.schedule, {"linear", "cosine", "constant"});
  in_range("train.steps", t.steps, 0, 1e12);
  positive("train.batch_size", t.batch_size);
  positive("train.lr", t.lr);
  in_range("train.mlm_prob", t.mlm_prob, 0, 1);
  in_range("train.itm_negative_prob", t.itm_negative_prob, 0, 1);
  in_range("train.warmup_steps", t.warmup_steps, 0, 1e12);
  positive("train.log_every", t.log_every);
  const double mrm = t.mrm_kl_weight + t.mrm_regression_weight + t.mrm_class_weight;
  positive("train.itm_contrastive_negatives", t.itm_contrastive_negatives);
  positive("train.itm_contrastive_chunk", t.itm_contrastive_chunk);
  if (t.itm_contrastive_weight > 0 && cfg.data.source == "synthetic" && t.itm_contrastive_negatives >= s.num_train_images)
    throw Error("config: train.itm_contrastive_negatives must be below data.synth.num_train_images");
  if (t.mlm_weight <= 0 && t.itm_weight <= 0 && t.dual_contrastive_weight <= 0 && mrm <= 0 &&
      t.itm_contrastive_weight <= 0 && t.align_weight <= 0)
    throw Error("config: every loss weight is 0: nothing to train");
  if (mrm > 0 && m.image_input != "regions")
    throw Error("config: MRM predicts detector regions: it needs model.image_input=regions");
  in_range("train.mrm_prob", t.mrm_prob, 0, 1);
  key_choice("train.mask_modalities", "masking policy", t.mask_modalities, {"both", "alternate"});
  key_choice("train.itm_swap", "ITM swap", t.itm_swap, {"image", "caption", "either", "both"});
  key_choice("train.itm_negatives", "ITM negatives", t.itm_negatives, {"random", "hard"});
  in_range("train.itm_hard_from_step", t.itm_hard_from_step, 0, 1e12);
  if (!(t.itm_hard_temperature > 0 && t.itm_hard_temperature < 1e6))
    throw Error("config key 'train.itm_hard_temperature' must be in (0, 1e6)");
  if (t.itm_hard_from_step > 0 && t.itm_negatives != "hard")
    throw Error("config: train.itm_hard_from_step is when hard ITM negatives start; it needs train.itm_negatives=hard");
  in_range("train.itm_hard_candidates", t.itm_hard_candidates, 0, 1e9);
  if (t.itm_hard_candidates > 0 && t.itm_negatives != "hard")
    throw Error("config: train.itm_hard_candidates is how many rows a hard ITM negative is drawn among; it needs "
                "train.itm_negatives=hard");
  key_choice("train.optimizer", "optimizer", t.optimizer, {"adamw", "adam"});
  if (t.grad_accum_steps < 1) throw Error("config key 'train.grad_accum_steps' must be >= 1");
  if (!(t.cross_modal_lr_mult >= 0)) throw Error("config key 'train.cross_modal_lr_mult' must be >= 0");
  if (t.keep_checkpoints < 1) throw Error("config key 'train.keep_checkpoints' must be >= 1");
  in_range("train.eval_every", t.eval_every, 0, 1e12);
  positive("train.max_bad_steps", t.max_bad_steps);
  positive("train.eval_max_images", t.eval_max_images);
  key_choice("train.stage", "training stage", t.stage, {"pretrain", "finetune"});
  if (t.dual_contrastive_weight > 0 && !(m.kind == "dual_encoder" && m.dual_score == "dot"))
    throw Error("config: train.dual_contrastive_weight needs model.kind=dual_encoder with model.dual_score=dot");
  if (t.align_weight > 0 && !m.align) throw Error("config: train.align_weight needs model.align=true (the head it trains)");
  key_choice("train.align_inputs", "align-loss inputs", t.align_inputs, {"unmasked", "masked"});
  key_choice("train.contrastive_same_caption", "same-caption rule", t.contrastive_same_caption, {"negative", "excluded"});
  in_range("train.align_queue", t.align_queue, 0, 1e8);
  if (t.align_queue > 0 && t.align_weight <= 0)
    throw Error("config: train.align_queue holds negatives for the align loss; it needs train.align_weight > 0");
  if (!(t.align_momentum >= 0 && t.align_momentum < 1)) throw Error("config key 'train.align_momentum' must be in [0, 1)");
  in_range("train.align_distill", t.align_distill, 0, 1);
  if (t.align_distill > 0 && t.align_queue <= 0)
    throw Error("config: train.align_distill takes its targets from the momentum model; it needs train.align_queue > 0");
  in_range("train.mlm_distill", t.mlm_distill, 0, 1);
  if (t.mlm_distill > 0 && (t.align_queue <= 0 || t.mlm_weight <= 0))
    throw Error("config: train.mlm_distill takes MLM's targets from the align queue's momentum model; it needs "
                "train.align_queue > 0 and train.mlm_weight > 0");
  in_range("train.distill_ramp", t.distill_ramp, 0, 1e12);
  if (t.distill_ramp > 0 && t.align_distill <= 0 && t.mlm_distill <= 0)
    throw Error("config: train.distill_ramp ramps up train.align_distill and train.mlm_distill; it needs one of them > 0");
  positive("model.temperature_init", m.temperature_init);
  positive("model.max_logit_scale", m.max_logit_scale);

  for (size_t i = 0; i < cfg.eval.test_sets.size(); ++i)
    key_choice("eval.test_sets[" + std::to_string(i) + "]", "test set", cfg.eval.test_sets[i],
               synthetic_test_set_names());
  for (const auto& name : cfg.eval.test_sets)
    if (name == "binding" && s.max_objects < 2)
      throw Error("config: the binding test set needs data.synth.max_objects >= 2; drop it from eval.test_sets");
  key_choice("eval.mode", "evaluation mode", cfg.eval.mode, {"exact", "dual", "rerank"});
  positive("eval.rerank_k", cfg.eval.rerank_k);
  key_choice("runtime.precision", "precision", cfg.runtime.precision, {"auto", "fp32", "bf16"});
  key_choice("runtime.fused_layers", "fused layer kernels", cfg.runtime.fused_layers, {"auto", "on", "off"});
  if (cfg.runtime.device != "cpu" && cfg.runtime.device != "auto" && cfg.runtime.device.rfind("cuda", 0) != 0)
    throw Error("config key 'runtime.device': '" + cfg.runtime.device + "' is not a device (cpu, cuda, cuda:N, auto)");
  if (!s.analogue.empty()) key_choice("data.synth.analogue", "synthetic analogue", s.analogue, synthetic_analogue_names());
  if (!s.mixture.empty()) {
    if (!s.analogue.empty())
      throw Error("config: data.synth.analogue and data.synth.mixture exclude each other (a mixture's parts are "
                  "analogues, each with its own preset); drop one");
    for (size_t i = 0; i < s.mixture.size(); ++i) {
      key_choice("data.synth.mixture[" + std::to_string(i) + "]", "synthetic analogue", s.mixture[i],
                 synthetic_analogue_names());
      for (size_t j = 0; j < i; ++j)
        if (s.mixture[j] == s.mixture[i]) throw Error("config: data.synth.mixture names '" + s.mixture[i] + "' twice");
    }
    if (cfg.data.source == "synthetic" && cfg.data.sampling == "weights")
      throw Error("config: data.sampling = weights needs data.datasets' weights; a synthetic mixture samples by "
                  "instance or dataset");
  }
  key_choice("data.synth.caption_style", "caption style", s.caption_style, {"descriptive", "terse", "phrase", "narrative"});
  in_range("data.synth.caption_noise", s.caption_noise, 0, 1);
  in_range("data.synth.caption_corruption", s.caption_corruption, 0, 1);
  in_range("eval.pair_batch", cfg.eval.pair_batch, 0, int64_t{1} << 24);  // 0 = auto
  in_range("eval.threads", cfg.eval.threads, 0, 1024);
  in_range("eval.bootstrap", cfg.eval.bootstrap, 0, 1e6);
  in_range("eval.examples", cfg.eval.examples, 0, 1000);
  if (cfg.eval.bootstrap == 1) throw Error("config key 'eval.bootstrap': 1 resampling gives no interval; use 0 (none) or >= 2");
  in_range("runtime.threads", cfg.runtime.threads, 0, 1024);  // 0 = auto
  in_range("runtime.blas_threads", cfg.runtime.blas_threads, 0, 1024);
  positive("runtime.dist_timeout_s", cfg.runtime.dist_timeout_s);
  in_range("runtime.dist_bucket_mb", cfg.runtime.dist_bucket_mb, 0, 1 << 20);
}

namespace {

// Applies a config file, after the file named by its "base" key (relative to it), if any.
void apply_file(ExperimentConfig& cfg, const std::string& path, int depth) {
  if (depth > 8) throw Error("config file '" + path + "': chain of \"base\" files deeper than 8 (a cycle?)");
  if (!file_exists(path)) throw Error("config file '" + path + "' not found");
  json j = parse_json_with_comments(read_file(path), path);
  if (j.is_object() && j.contains("base")) {
    if (!j["base"].is_string()) throw Error(path + ": \"base\" must be a path to another config file");
    const std::string dir = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
    const std::string base = j["base"].get<std::string>();
    apply_file(cfg, base.rfind('/', 0) == 0 ? base : dir + "/" + base, depth + 1);
    j.erase("base");
  }
  try {
    apply_json(cfg, j);
  } catch (const Error& e) {
    throw Error(path + ": " + e.what());
  }
}

}  // namespace

ExperimentConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  // The preset applies first, whichever source names it last (--set over file over base file);
  // every other key then applies over it. So `--set model.preset=tiny` shrinks whatever the
  // config does not set itself. Pass 1 finds the preset, pass 2 builds the config.
  auto apply_all = [&](ExperimentConfig& cfg) {
    if (!path.empty()) apply_file(cfg, path, 0);
    for (const auto& o : overrides) apply_override(cfg, o);
  };
  ExperimentConfig scratch;
  apply_all(scratch);
  ExperimentConfig cfg;
  cfg.model.preset = scratch.model.preset;
  apply_model_preset(cfg.model);
  cfg.data.synth.analogue = scratch.data.synth.analogue;  // likewise the synthetic analogue
  apply_synthetic_analogue(cfg.data.synth);
  apply_all(cfg);
  validate_config(cfg);
  return cfg;
}

json config_to_json(const ExperimentConfig& cfg) {
  json j = json::object();
  JsonWriter w(j);
  const_cast<ExperimentConfig&>(cfg).visit(w);
  return j;
}

json config_identity(const ExperimentConfig& cfg) {
  json j = config_to_json(cfg);
  j.erase("runtime");
  j["train"].erase("steps");
  j["data"].erase("loader_threads");
  j["data"].erase("prefetch");
  j["data"].erase("image_cache_mb");
  j["eval"].erase("image_cache_mb");
  return j;
}

std::vector<std::string> keys_not_in_file(const ExperimentConfig& cfg, const std::string& path) {
  const json file = parse_json_with_comments(read_file(path), path);
  std::vector<std::string> missing;
  // Leaves of the resolved config (an array is one value) absent from the file's objects.
  std::function<void(const json&, const json*, const std::string&)> walk = [&](const json& have, const json* set,
                                                                               const std::string& prefix) {
    for (const auto& [key, value] : have.items()) {
      const std::string name = prefix.empty() ? key : prefix + "." + key;
      const json* in_file = set && set->is_object() && set->contains(key) ? &(*set)[key] : nullptr;
      if (value.is_object()) walk(value, in_file, name);
      else if (!in_file) missing.push_back(name + " = " + value.dump());
    }
  };
  walk(config_to_json(cfg), &file, "");
  return missing;
}

std::string config_to_commented_json(const ExperimentConfig& cfg) {
  CommentedWriter w(0);
  const_cast<ExperimentConfig&>(cfg).visit(w);
  return w.str() + "\n";
}

}  // namespace mmt
