/* `mmt data synth` (see synthetic_export.h). */
#include "mmt/data/synthetic_export.h"

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <ostream>

#include "mmt/data/region_features.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/eval/ceilings.h"
#include "mmt/eval/evaluate.h"
#include "mmt/io/npy.h"
#include "mmt/io/png.h"
#include "mmt/text/vocab.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {

using nlohmann::json;

namespace {

json content_json(const synth::CaptionContent& c) {
  if (!c.statements.empty()) {  // a narrative: its statements, each true on its own
    json statements = json::array();
    for (const auto& st : c.statements) statements.push_back(content_json(st));
    return {{"statements", statements}};
  }
  static const char* kRel[] = {"left_of", "right_of", "above", "below"};
  static const char* kPlace[] = {"any", "left", "right", "top", "bottom"};
  json objs = json::array(), rels = json::array();
  for (const auto& o : c.objects) {
    json j = json::object();
    if (o.shape >= 0) j["shape"] = synth::shape_words()[o.shape];
    if (o.colour >= 0) j["colour"] = synth::colour_words()[o.colour];
    if (o.size >= 0) j["size"] = o.size ? "large" : "small";
    if (o.place != synth::Place::kAny) j["place"] = kPlace[static_cast<int>(o.place)];
    objs.push_back(j);
  }
  for (const auto& r : c.relations) rels.push_back({{"a", r.a}, {"relation", kRel[static_cast<int>(r.rel)]}, {"b", r.b}});
  json out = {{"objects", objs}, {"relations", rels}};
  if (c.count >= 0) out["count"] = c.count;
  return out;
}

void write_split(const std::string& dir, const std::string& name, const std::vector<synth::Scene>& scenes,
                 const std::vector<std::vector<synth::Caption>>& captions, const std::vector<int64_t>& groups,
                 const synth::RegionStore& regions, int image_size) {
  make_dirs(dir + "/images");
  json images = json::array();
  std::ofstream scenes_out(dir + "/scenes.jsonl");
  int64_t sentid = 0;
  for (size_t i = 0; i < scenes.size(); ++i) {
    char file[32];
    std::snprintf(file, sizeof file, "%06zu.png", i);
    save_png_rgb(dir + "/images/" + file, synth::render(scenes[i], image_size), image_size, image_size);
    json sentences = json::array(), sentids = json::array(), caps = json::array();
    for (const auto& c : captions[i]) {
      sentences.push_back({{"tokens", Vocab::basic_tokenize(c.text)}, {"raw", c.text}, {"imgid", i}, {"sentid", sentid}});
      sentids.push_back(sentid++);
      caps.push_back({{"text", c.text}, {"content", content_json(c.content)}});
    }
    images.push_back({{"filepath", "images"}, {"filename", file}, {"imgid", i},
                      {"split", name == "train" ? "train" : "test"}, {"sentids", sentids},
                      {"sentences", sentences}, {"group", groups[i]}});
    json objs = json::array();
    for (const auto& o : scenes[i].objects)
      objs.push_back({{"shape", synth::shape_words()[o.shape]}, {"colour", synth::colour_words()[o.colour]},
                      {"size", o.size ? "large" : "small"}, {"x", o.x}, {"y", o.y}, {"radius", o.radius}});
    scenes_out << json({{"imgid", i}, {"group", groups[i]}, {"objects", objs}, {"captions", caps}}).dump() << "\n";
  }
  write_file_atomic(dir + "/dataset_synth.json",
                    json({{"dataset", "synth-" + name}, {"images", images}}).dump() + "\n");
  const int64_t nr = regions.offsets.back();
  save_npy(dir + "/region_features.npy", regions.features.data(), {nr, regions.feature_dim});
  save_npy(dir + "/region_boxes.npy", regions.boxes.data(), {nr, synth::kBoxDim});
  save_npy(dir + "/region_classes.npy", regions.classes.data(), {nr, regions.num_classes});
  save_npy(dir + "/region_offsets.npy", regions.offsets.data(), {static_cast<int64_t>(regions.offsets.size())});
  // The same regions as a packed store keyed by imgid, so `data.datasets` can train on an export
  // (format karpathy + features regions.feat). Boxes are already normalised (image size 1 x 1);
  // the global region is left out: the loader's layout recomputes it.
  PackedWriter store(dir + "/regions.feat", {/*half=*/false, /*class_probs=*/true});
  for (int64_t i = 0; i < regions.num_scenes(); ++i) {
    RegionSet r;
    const int64_t first = regions.offsets[i] + 1, n = regions.num_regions(i) - 1;
    r.n = n, r.dim = regions.feature_dim, r.classes = regions.num_classes, r.image_w = 1, r.image_h = 1;
    r.features.assign(regions.features.begin() + first * r.dim, regions.features.begin() + (first + n) * r.dim);
    r.class_probs.assign(regions.classes.begin() + first * r.classes, regions.classes.begin() + (first + n) * r.classes);
    for (int64_t k = first; k < first + n; ++k)
      for (int c = 0; c < 4; ++c) r.boxes.push_back(regions.boxes[k * synth::kBoxDim + c]);
    store.add(std::to_string(i), r);
  }
  store.finish();
}

}  // namespace

void export_synthetic(const SynthOptions& options, const std::string& out_dir, const std::vector<std::string>& splits,
                      std::ostream& log) {
  for (const auto& s : splits) check_choice("split", s, {"easy", "binding", "train"});
  const synth::World world(options);
  make_dirs(out_dir);
  Vocab::from_words(synth::lexicon()).save(out_dir + "/vocab.txt");
  for (const auto& name : splits) {
    const std::string dir = out_dir + "/" + name;
    if (name == "train") {
      const auto& scenes = world.train_scenes();
      std::vector<std::vector<synth::Caption>> caps(scenes.size());
      std::vector<int64_t> groups(scenes.size());
      for (size_t i = 0; i < scenes.size(); ++i) {
        groups[i] = static_cast<int64_t>(i);
        for (int64_t k = 0; k < options.captions_per_image; ++k)
          caps[i].push_back(world.train_caption(static_cast<int64_t>(i), static_cast<uint64_t>(k)));
      }
      write_split(dir, name, scenes, caps, groups, world.train_regions(), static_cast<int>(options.image_size));
    } else {
      const auto& t = world.test_set(name);
      std::vector<std::vector<synth::Caption>> caps(t.images.size());
      for (size_t c = 0; c < t.captions.size(); ++c) caps[t.caption_image[c]].push_back(t.captions[c]);
      write_split(dir, name, t.images, caps, t.image_group, t.regions, static_cast<int>(options.image_size));
      const Ceilings c = test_set_ceilings(t);
      write_file_atomic(dir + "/ceilings.json", json({{"chance", metrics_json(c.chance)},
                                                      {"bag_of_words", metrics_json(c.bag_of_words)},
                                                      {"truth", metrics_json(c.truth)},
                         {"perfect", metrics_json(c.perfect)}})
                                                        .dump(2) + "\n");
    }
    log << "mmt data synth: wrote " << dir << "\n";
  }
}

}  // namespace mmt
