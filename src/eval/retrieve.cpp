/* `mmt retrieve` (see retrieve.h). */
#include "mmt/eval/retrieve.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "mmt/config/config.h"
#include "mmt/data/image_source.h"
#include "mmt/data/record_images.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/eval/evaluate.h"
#include "mmt/eval/exact_scorer.h"
#include "mmt/eval/protocols.h"
#include "mmt/eval/score_modes.h"
#include "mmt/model/transformer.h"
#include "mmt/text/tokenizer.h"
#include "mmt/train/run_dir.h"
#include "mmt/util/error.h"
#include "mmt/util/runtime.h"

namespace mmt {

using nlohmann::json;

namespace {

// The images queried, how results name them, and the set's own captions.
struct Gallery {
  std::string name;  // "easy", "flickr30k-1k"
  std::unique_ptr<synth::World> world;
  const synth::TestSet* synthetic = nullptr;  // for the truth of the set's own captions
  std::unique_ptr<ImageSource> source;
  std::vector<std::string> image_names;  // an index, or a file name
  std::vector<std::string> captions;     // the set's, image-major
  std::vector<int64_t> caption_image;
  std::vector<std::string> shows;  // each image in words: a synthetic scene's objects, a real image's first caption
  std::function<std::vector<int64_t>(const std::string&, int64_t)> encode;
  int64_t unk = 1;
};

Gallery open_gallery(const RetrieveRequest& req, const ExperimentConfig& cfg, const LoadedRun& run) {
  Gallery g;
  if (req.protocol.empty()) {
    if (cfg.data.source != "synthetic")
      throw Error(req.run_dir + " was trained on real datasets: give the images to search with --protocol and --karpathy "
                  "(a synthetic test set is for runs trained on the synthetic world)");
    g.name = req.test_set.empty() ? cfg.eval.test_sets.at(0) : req.test_set;
    g.world = std::make_unique<synth::World>(cfg.data.synth);
    g.synthetic = &g.world->test_set(g.name);
    g.source = std::make_unique<SyntheticImages>(g.synthetic->images, g.synthetic->regions, cfg);
    for (const auto& c : g.synthetic->captions) g.captions.push_back(c.text);
    g.caption_image = g.synthetic->caption_image;
    for (size_t i = 0; i < g.synthetic->images.size(); ++i) {
      g.image_names.push_back(std::to_string(i));
      g.shows.push_back(synth::describe_scene(g.synthetic->images[i]));
    }
    const Vocab* vocab = &run.vocab;
    g.encode = [vocab](const std::string& text, int64_t max_len) { return vocab->encode(text, max_len); };
    g.unk = run.vocab.unk_id();
  } else {
    if (!req.test_set.empty()) throw Error("mmt retrieve: --test-set names a synthetic set; with --protocol give --split");
    if (req.karpathy.empty()) throw Error("mmt retrieve: --protocol " + req.protocol + " needs --karpathy FILE");
    auto splits = load_protocol(req.protocol, req.karpathy, req.images);
    auto it = splits.begin();
    if (!req.split.empty()) {
      std::string names;
      for (const auto& s : splits) names += (names.empty() ? "" : ", ") + s.name;
      it = std::find_if(splits.begin(), splits.end(), [&](const RetrievalSplit& s) { return s.name == req.split; });
      if (it == splits.end()) throw Error("mmt retrieve: protocol " + req.protocol + " has no split '" + req.split + "' (its splits: " + names + ")");
    }
    RetrievalSplit& split = *it;
    g.name = split.name;
    for (const auto& r : split.images) g.image_names.push_back(image_file_name(r));
    g.captions = split.captions, g.caption_image = split.caption_image;
    g.source = std::make_unique<RecordImages>(cfg, std::move(split.images), FeatureSource::open(req.features),
                                              run.model->dims().region_feat_dim, run.model->dims().region_classes);
    std::shared_ptr<Tokenizer> tokenizer = run_tokenizer(cfg, run.vocab);
    g.encode = [tokenizer](const std::string& text, int64_t max_len) { return tokenizer->encode(text, max_len); };
    g.unk = tokenizer->vocab().unk_id();
  }
  if (g.shows.empty()) {
    g.shows.assign(g.image_names.size(), "");
    for (size_t k = g.captions.size(); k-- > 0;) g.shows[static_cast<size_t>(g.caption_image[k])] = g.captions[k];
  }
  return g;
}

// The words of `text` the tokenizer can only read as [UNK].
std::vector<std::string> unknown_words(const Gallery& g, const std::string& text) {
  std::vector<std::string> out;
  std::istringstream words(text);
  for (std::string w; words >> w;) {
    const auto ids = g.encode(w, 1 << 20);
    if (std::find(ids.begin(), ids.end(), g.unk) != ids.end()) out.push_back(w);
  }
  return out;
}

std::string format_score(double s) {
  char b[32];
  std::snprintf(b, sizeof b, "%.3f", s);
  return b;
}

}  // namespace

json retrieve(const RetrieveRequest& req, std::ostream& out, std::ostream& log) {
  if (req.queries.empty()) throw Error("mmt retrieve: no caption to search for (give captions as arguments or --captions FILE)");
  if (req.top < 1) throw Error("mmt retrieve: --top must be at least 1");
  LoadedRun run = load_run(req.run_dir, req.best);
  const ExperimentConfig cfg = eval_config(req.run_dir, req.overrides);
  log << "mmt retrieve: " << configure_runtime(cfg.runtime, log) << "\n";
  const Gallery g = open_gallery(req, cfg, run);
  const int64_t ni = static_cast<int64_t>(g.image_names.size()), nq = static_cast<int64_t>(req.queries.size());
  const int64_t max_len = cfg.model.max_text_len;

  std::vector<std::vector<int64_t>> ids;
  for (const auto& q : req.queries) ids.push_back(g.encode(q, max_len));
  const TestSetScores scored = score_captions(*run.model, ids, *g.source, cfg, "retrieve " + g.name, log);
  const std::vector<float>& s = scored.scores;  // (queries x images): the caption -> image ranking
  const auto top = top_k(s, nq, ni, req.top, /*by_row=*/true);

  // The set's captions as the model reads them, to recognise a query that is one of them.
  std::vector<std::vector<int64_t>> set_ids;
  for (const auto& c : g.captions) set_ids.push_back(g.encode(c, max_len));

  json result = {{"run", req.run_dir},
                 {"step", run.step},
                 {"weights", req.best ? "best (validation RSUM during training)" : "final"},
                 {"mode", cfg.eval.mode},
                 {"images", {{"set", g.name}, {"count", ni}}},
                 {"queries", json::array()}};
  std::string md = "## mmt retrieve: " + req.run_dir + " (step " + std::to_string(run.step) + ", " +
                   (req.best ? "best" : "final") + " weights, " + mode_phrase(cfg) + "), " + g.name + ": " +
                   std::to_string(ni) + " images\n";
  for (int64_t q = 0; q < nq; ++q) {
    const float* row = s.data() + q * ni;
    json entry = {{"caption", req.queries[q]}, {"tokens", ids[q].size()}, {"top", json::array()}};
    md += "\n**" + markdown_cell(req.queries[q]) + "**";
    const auto unknown = unknown_words(g, req.queries[q]);
    entry["unknown"] = unknown;
    if (!unknown.empty()) {
      std::string list;
      for (const auto& w : unknown) list += (list.empty() ? "" : ", ") + w;
      md += " - read with [UNK] for: " + markdown_cell(list);
      log << "mmt retrieve: warning: '" << req.queries[q] << "': the run's vocabulary lacks " << list << " (read as [UNK])\n";
    }
    const bool truncated = static_cast<int64_t>(g.encode(req.queries[q], 1 << 20).size()) > max_len;
    entry["truncated"] = truncated;
    if (truncated) {
      md += " - cut to the model's " + std::to_string(max_len) + " tokens";
      log << "mmt retrieve: warning: '" << req.queries[q] << "' is longer than model.max_text_len (" << max_len
          << " tokens with [CLS] and [SEP]); the rest is not read\n";
    }
    // One of the set's own captions: its image(s) and where they rank (1 + the images scored
    // higher; ties counted apart), and on a synthetic set how many images it is true of.
    const synth::CaptionContent* content = nullptr;
    std::vector<int64_t> own;
    for (size_t k = 0; k < set_ids.size(); ++k)
      if (set_ids[k] == ids[q]) {
        if (std::find(own.begin(), own.end(), g.caption_image[k]) == own.end()) own.push_back(g.caption_image[k]);
        if (g.synthetic && !content) content = &g.synthetic->captions[k].content;
      }
    if (own.empty()) {
      md += " - not one of the set's captions\n\n";
    } else {
      entry["in_set"] = {{"images", json::array()}};
      std::string where;
      for (int64_t i : own) {
        int64_t above = 0, ties = 0;
        for (int64_t j = 0; j < ni; ++j) above += row[j] > row[i], ties += j != i && row[j] == row[i];
        entry["in_set"]["images"].push_back({{"image", g.image_names[i]}, {"rank", above + 1}, {"ties", ties}});
        where += std::string(where.empty() ? "" : "; ") + "image " + g.image_names[i] + " ranks " + std::to_string(above + 1) +
                 (ties ? " (tied with " + std::to_string(ties) + ")" : "");
      }
      md += " - the set's caption of " + markdown_cell(where);
      if (content) {
        int64_t true_of = 0;
        for (const auto& scene : g.synthetic->images) true_of += synth::caption_true_of(*content, scene);
        entry["in_set"]["true_of"] = true_of;
        md += "; true of " + std::to_string(true_of) + " of the " + std::to_string(ni) + " images";
      }
      md += "\n\n";
    }
    md += std::string("| rank | score | image | ") + (g.synthetic ? "the scene" : "its first caption") + " |" +
          (content ? " caption true of it |" : "") +
          "\n|---:|---:|---|---|" + (content ? "---|" : "") + "\n";
    // The top images, then the caption's own images ranked below them (rank as above).
    std::vector<std::pair<int64_t, int64_t>> rows;  // (rank, image)
    for (size_t r = 0; r < top[q].size(); ++r) rows.push_back({static_cast<int64_t>(r) + 1, top[q][r]});
    for (size_t k = 0; k < own.size(); ++k)
      if (std::find(top[q].begin(), top[q].end(), own[k]) == top[q].end())
        rows.push_back({entry["in_set"]["images"][k]["rank"].get<int64_t>(), own[k]});
    for (const auto& [rank, i] : rows) {
      json hit = {{"rank", rank}, {"image", g.image_names[i]}, {"score", row[i]}, {"shows", g.shows[i]}};
      const bool is_own = std::find(own.begin(), own.end(), i) != own.end();
      md += "| " + std::to_string(rank) + " | " + format_score(row[i]) + " | " + markdown_cell(g.image_names[i]) +
            (is_own ? " (its own)" : "") + " | " + markdown_cell(g.shows[i]) + " |";
      if (content) {
        const bool t = synth::caption_true_of(*content, g.synthetic->images[i]);
        hit["caption_true"] = t;
        md += t ? " yes |" : " no |";
      }
      if (rank > req.top) entry["own_below"].push_back(hit);
      else entry["top"].push_back(hit);
      md += "\n";
    }
    result["queries"].push_back(entry);
  }
  md += "\nScores: " + mode_phrase(cfg) + " (the ITM logit margin, or a dual encoder's scaled cosine: higher is a better "
        "match; comparable within a query). Ties keep the lower image index first.\n";
  out << md << std::flush;
  return result;
}

}  // namespace mmt
