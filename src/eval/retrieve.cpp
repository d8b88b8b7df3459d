/* `mmt retrieve` (see retrieve.h). */
#include "mmt/eval/retrieve.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <optional>
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
#include "mmt/eval/retrieval_metrics.h"
#include "mmt/eval/score_modes.h"
#include "mmt/model/transformer.h"
#include "mmt/text/tokenizer.h"
#include "mmt/train/run_dir.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"
#include "mmt/io/npy.h"
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
    if (!req.karpathy.empty() || !req.split.empty())
      throw Error("mmt retrieve: --karpathy and --split choose a real protocol's images; give --protocol too");
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
      if (it == splits.end())
        throw Error("mmt retrieve: protocol " + req.protocol + " has no split '" + req.split + "' (its splits: " + names + ")");
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

// Where the best-scored of the `marked` candidates ranks: 1 + the others scored strictly higher,
// and how many others tie with it (rank_query's counts).
std::pair<int64_t, int64_t> rank_of(const std::vector<float>& scores, const std::vector<char>& marked) {
  const QueryRank r = rank_query(scores.data(), marked, static_cast<int64_t>(scores.size()));
  return {r.greater + 1, r.tied_irrelevant + r.tied_relevant - 1};
}

std::pair<int64_t, int64_t> rank_of(const std::vector<float>& scores, int64_t c) {
  std::vector<char> one(scores.size(), 0);
  one[static_cast<size_t>(c)] = 1;
  return rank_of(scores, one);
}

// Some of a source's images, addressed 0..n-1: the images an image query asks about.
class SubsetImages : public ImageSource {
 public:
  SubsetImages(const ImageSource& all, std::vector<int64_t> ids) : all_(all), ids_(std::move(ids)) {}
  int64_t size() const override { return static_cast<int64_t>(ids_.size()); }
  int64_t tokens(int64_t i) const override { return all_.tokens(ids_[i]); }
  void fill(const std::vector<int64_t>& images, Batch& batch) const override {
    std::vector<int64_t> mapped;
    for (int64_t i : images) mapped.push_back(ids_[i]);
    all_.fill(mapped, batch);
  }

 private:
  const ImageSource& all_;
  std::vector<int64_t> ids_;
};

// What retrieve() needs beside the gallery: the loaded run, the config, the request, the output.
struct Search {
  const RetrieveRequest& req;
  const ExperimentConfig& cfg;
  LoadedRun& run;
  const Gallery& g;
  std::ostream& log;
  std::vector<std::vector<int64_t>> set_ids;  // the set's captions as the model reads them
};

// Caption queries -> images.
std::string caption_queries(Search& x, json& result) {
  const Gallery& g = x.g;
  const int64_t ni = static_cast<int64_t>(g.image_names.size()), nq = static_cast<int64_t>(x.req.queries.size());
  const int64_t max_len = x.cfg.model.max_text_len;
  std::vector<std::vector<int64_t>> ids;
  for (const auto& q : x.req.queries) ids.push_back(g.encode(q, max_len));
  const TestSetScores scored = score_captions(*x.run.model, ids, *g.source, x.cfg, "retrieve " + g.name, x.log);
  const auto top = top_k(scored.scores, nq, ni, x.req.top, /*by_row=*/true);
  std::string md;
  result["queries"] = json::array();
  for (int64_t q = 0; q < nq; ++q) {
    const std::vector<float> row(scored.scores.begin() + q * ni, scored.scores.begin() + (q + 1) * ni);
    const std::string& text = x.req.queries[q];
    json entry = {{"caption", text}, {"tokens", ids[q].size()}, {"top", json::array()}};
    md += "\n**" + markdown_cell(text) + "**";
    const auto unknown = unknown_words(g, text);
    entry["unknown"] = unknown;
    if (!unknown.empty()) {
      std::string list;
      for (const auto& w : unknown) list += (list.empty() ? "" : ", ") + w;
      md += " - read with [UNK] for: " + markdown_cell(list);
      x.log << "mmt retrieve: warning: '" << text << "': the run's vocabulary lacks " << list << " (read as [UNK])\n";
    }
    const bool truncated = static_cast<int64_t>(g.encode(text, 1 << 20).size()) > max_len;
    entry["truncated"] = truncated;
    if (truncated) {
      md += " - cut to the model's " + std::to_string(max_len) + " tokens";
      x.log << "mmt retrieve: warning: '" << text << "' is longer than model.max_text_len (" << max_len
            << " tokens with [CLS] and [SEP]); the rest is not read\n";
    }
    // One of the set's own captions: its image(s) and where they rank. On a synthetic set, what
    // the caption asserts (the set caption's content, or the query read in the grammar) judges
    // every image.
    std::optional<synth::CaptionContent> content;
    std::vector<int64_t> own;
    for (size_t k = 0; k < x.set_ids.size(); ++k)
      if (x.set_ids[k] == ids[q]) {
        if (std::find(own.begin(), own.end(), g.caption_image[k]) == own.end()) own.push_back(g.caption_image[k]);
        if (g.synthetic && !content) content = g.synthetic->captions[k].content;
      }
    if (g.synthetic && !content) content = synth::parse_caption(text);
    std::vector<std::pair<int64_t, int64_t>> rows;  // (rank, image): the top, then its own images below it
    for (size_t r = 0; r < top[q].size(); ++r) rows.push_back({static_cast<int64_t>(r) + 1, top[q][r]});
    if (own.empty()) {
      md += " - not one of the set's captions";
    } else {
      entry["in_set"] = {{"images", json::array()}};
      std::string where;
      for (int64_t i : own) {
        const auto [rank, ties] = rank_of(row, i);
        entry["in_set"]["images"].push_back({{"image", g.image_names[i]}, {"rank", rank}, {"ties", ties}});
        where += std::string(where.empty() ? "" : "; ") + "image " + g.image_names[i] + " ranks " + std::to_string(rank) +
                 (ties ? " (tied with " + std::to_string(ties) + ")" : "");
        if (std::find(top[q].begin(), top[q].end(), i) == top[q].end()) rows.push_back({rank, i});
      }
      md += " - the set's caption of " + markdown_cell(where);
    }
    std::vector<char> is_true;  // per image, where the caption can be judged
    if (content) {  // how many images it is true of, and where the best-ranked of them is
      for (const auto& scene : g.synthetic->images) is_true.push_back(synth::caption_true_of(*content, scene));
      const int64_t true_of = std::count(is_true.begin(), is_true.end(), 1);
      entry["true_of"] = true_of;
      md += "; true of " + std::to_string(true_of) + " of the " + std::to_string(ni) + " images";
      if (true_of) {
        const int64_t first_true = rank_of(row, is_true).first;
        entry["first_true_rank"] = first_true;
        md += ", the best-ranked of them at rank " + std::to_string(first_true);
      }
    } else if (g.synthetic) {
      md += "; not in the synthetic grammar, so not judged true or false";
    }
    md += "\n\n";
    md += std::string("| rank | score | image | ") + (g.synthetic ? "the scene" : "its first caption") + " |" +
          (content ? " caption true of it |" : "") + "\n|---:|---:|---|---|" + (content ? "---|" : "") + "\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      const auto [rank, i] = rows[r];
      json hit = {{"rank", rank}, {"image", g.image_names[i]}, {"score", row[i]}, {"shows", g.shows[i]}};
      const bool is_own = std::find(own.begin(), own.end(), i) != own.end();
      md += "| " + std::to_string(rank) + " | " + format_score(row[i]) + " | " + markdown_cell(g.image_names[i]) +
            (is_own ? " (its own)" : "") + " | " + markdown_cell(g.shows[i]) + " |";
      if (content) {
        hit["caption_true"] = is_true[i] != 0;
        md += is_true[i] ? " yes |" : " no |";
      }
      entry[r < top[q].size() ? "top" : "own_below"].push_back(hit);
      md += "\n";
    }
    result["queries"].push_back(entry);
  }
  return md;
}

// Image queries -> the set's distinct captions (identical token ids once).
std::string image_queries(Search& x, json& result) {
  const Gallery& g = x.g;
  std::vector<int64_t> images;
  for (const auto& name : x.req.image_queries) {
    auto it = std::find(g.image_names.begin(), g.image_names.end(), name);
    if (it == g.image_names.end())
      throw Error("mmt retrieve: --image '" + name + "' is not an image of " + g.name + " (" +
                  (g.synthetic ? "an index from 0 to " + std::to_string(g.image_names.size() - 1)
                               : "a file name such as " + g.image_names.front()) + ")");
    images.push_back(it - g.image_names.begin());
  }
  const DistinctCaptions distinct = distinct_captions(x.set_ids);
  const int64_t nd = static_cast<int64_t>(distinct.rows.size()), nq = static_cast<int64_t>(images.size());
  std::vector<std::vector<bool>> own(static_cast<size_t>(nq), std::vector<bool>(static_cast<size_t>(nd), false));
  std::vector<int64_t> first_text(static_cast<size_t>(nd), -1);  // a caption text of each distinct row
  for (size_t k = x.set_ids.size(); k-- > 0;) {
    const int64_t d = distinct.row_of[k];
    first_text[d] = static_cast<int64_t>(k);
    for (int64_t q = 0; q < nq; ++q)
      if (g.caption_image[k] == images[q]) own[q][d] = true;
  }
  const SubsetImages asked(*g.source, images);
  const TestSetScores scored = score_captions(*x.run.model, distinct.rows, asked, x.cfg, "retrieve captions", x.log);
  // Ranking captions for an image: rerank's image -> caption matrix where it has one.
  const std::vector<float>& ranked = scored.image_to_caption.empty() ? scored.scores : scored.image_to_caption;
  const auto top = top_k(ranked, nd, nq, x.req.top, /*by_row=*/false);
  std::string md;
  result["image_queries"] = json::array();
  for (int64_t q = 0; q < nq; ++q) {
    const int64_t i = images[q];
    std::vector<float> column(static_cast<size_t>(nd));
    for (int64_t d = 0; d < nd; ++d) column[d] = ranked[d * nq + q];
    json entry = {{"image", g.image_names[i]}, {"shows", g.shows[i]}, {"top", json::array()}, {"own", json::array()}};
    md += "\n**image " + markdown_cell(g.image_names[i]) + "**: " + markdown_cell(g.shows[i]);
    std::vector<std::pair<int64_t, int64_t>> rows;  // (rank, distinct caption)
    for (size_t r = 0; r < top[q].size(); ++r) rows.push_back({static_cast<int64_t>(r) + 1, top[q][r]});
    int64_t best = nd + 1, own_count = 0;
    for (int64_t d = 0; d < nd; ++d)
      if (own[q][d]) {
        const auto [rank, ties] = rank_of(column, d);
        ++own_count, best = std::min(best, rank);
        entry["own"].push_back({{"caption", g.captions[first_text[d]]}, {"score", column[d]}, {"rank", rank}, {"ties", ties}});
        if (std::find(top[q].begin(), top[q].end(), d) == top[q].end()) rows.push_back({rank, d});
      }
    std::sort(rows.begin() + static_cast<std::ptrdiff_t>(top[q].size()), rows.end());
    md += " - its " + std::to_string(own_count) + " caption" + (own_count == 1 ? "" : "s") + " rank" +
          (own_count == 1 ? "s " : " ") + (own_count ? std::to_string(best) + " at best" : "nowhere") +
          " among the set's " + std::to_string(nd) + " distinct captions";
    std::vector<char> is_true;  // per distinct caption, on a synthetic set
    if (g.synthetic) {
      for (int64_t d = 0; d < nd; ++d)
        is_true.push_back(synth::caption_true_of(g.synthetic->captions[first_text[d]].content, g.synthetic->images[i]));
      const int64_t true_count = std::count(is_true.begin(), is_true.end(), 1);
      entry["true_captions"] = true_count;
      md += "; " + std::to_string(true_count) + " of them are true of it";
    }
    md += std::string("\n\n| rank | score | caption |") + (g.synthetic ? " true of it |" : "") + "\n|---:|---:|---|" +
          (g.synthetic ? "---|" : "") + "\n";
    for (size_t r = 0; r < rows.size(); ++r) {
      const auto [rank, d] = rows[r];
      const std::string& text = g.captions[first_text[d]];
      json hit = {{"rank", rank}, {"caption", text}, {"score", column[d]}, {"own", static_cast<bool>(own[q][d])}};
      md += "| " + std::to_string(rank) + " | " + format_score(column[d]) + " | " + markdown_cell(text) +
            (own[q][d] ? " (its own)" : "") + " |";
      if (g.synthetic) {
        hit["true"] = is_true[d] != 0;
        md += is_true[d] ? " yes |" : " no |";
      }
      if (r < top[q].size()) entry["top"].push_back(hit);
      md += "\n";
    }
    result["image_queries"].push_back(entry);
  }
  return md;
}

// --set takes every word after it (as in mmt train / eval), so a caption written after it lands
// among the overrides: say so rather than "nothing to search for" or a bare key=value error.
void check_overrides(const char* command, const RetrieveRequest& req) {
  for (const auto& o : req.overrides)
    if (o.find('=') == std::string::npos)
      throw Error(std::string(command) + ": --set takes every argument after it as a key=value override, and '" + o +
                  "' is not one: write the captions before --set (" + command +
                  " --run DIR \"a caption\" --set eval.mode=dual)");
}

}  // namespace

json retrieve(const RetrieveRequest& req, std::ostream& out, std::ostream& log) {
  check_overrides("mmt retrieve", req);
  if (req.queries.empty() && req.image_queries.empty())
    throw Error("mmt retrieve: nothing to search for (give captions as arguments or --captions FILE, or --image)");
  if (req.top < 1) throw Error("mmt retrieve: --top must be at least 1");
  LoadedRun run = load_run(req.run_dir, req.best);
  const ExperimentConfig cfg = eval_config(req.run_dir, req.overrides);
  log << "mmt retrieve: " << configure_runtime(cfg.runtime, log) << "\n";
  const Gallery g = open_gallery(req, cfg, run);
  Search x{req, cfg, run, g, log, {}};
  for (const auto& c : g.captions) x.set_ids.push_back(g.encode(c, cfg.model.max_text_len));

  json result = {{"run", req.run_dir},
                 {"step", run.step},
                 {"weights", req.best ? "best (validation RSUM during training)" : "final"},
                 {"mode", cfg.eval.mode},
                 {"images", {{"set", g.name}, {"count", g.image_names.size()}}}};
  std::string md = "## mmt retrieve: " + req.run_dir + " (step " + std::to_string(run.step) + ", " +
                   (req.best ? "best" : "final") + " weights, " + mode_phrase(cfg) + "), " + g.name + ": " +
                   std::to_string(g.image_names.size()) + " images, " + std::to_string(g.captions.size()) + " captions\n";
  if (!req.queries.empty()) md += caption_queries(x, result);
  if (!req.image_queries.empty()) md += image_queries(x, result);
  md += "\nScores: " + mode_phrase(cfg) + " (the ITM logit margin, or a dual encoder's scaled cosine: higher is a better "
        "match; comparable within a query). Rank: 1 + the candidates scored higher; in the top rows ties keep the lower "
        "index first.\n";
  out << md << std::flush;
  return result;
}

json embed(const RetrieveRequest& req, const std::string& out_prefix, std::ostream& log) {
  check_overrides("mmt embed", req);
  if (out_prefix.empty()) throw Error("mmt embed: give --out PREFIX (writes PREFIX-text.npy, PREFIX-images.npy, PREFIX.json)");
  LoadedRun run = load_run(req.run_dir, req.best);
  const ExperimentConfig cfg = eval_config(req.run_dir, req.overrides);
  log << "mmt embed: " << configure_runtime(cfg.runtime, log) << "\n";
  const Gallery g = open_gallery(req, cfg, run);
  // The captions given, or without any the set's own (image-major, with their images).
  const bool own = req.queries.empty();
  const std::vector<std::string>& texts = own ? g.captions : req.queries;
  std::vector<std::vector<int64_t>> ids;
  for (const auto& t : texts) ids.push_back(g.encode(t, cfg.model.max_text_len));
  PairScorer scorer(*run.model, ids, *g.source, scorer_options(cfg));
  const PairScorer::DualEmbeddings e = scorer.dual_embeddings();
  const int64_t nc = static_cast<int64_t>(texts.size()), ni = static_cast<int64_t>(g.image_names.size());
  save_npy(out_prefix + "-text.npy", e.text.data(), {nc, e.dim});
  save_npy(out_prefix + "-images.npy", e.image.data(), {ni, e.dim});
  const bool retrieves_with_them = scorer.dual_is_exact();
  json meta = {{"run", req.run_dir},
               {"step", run.step},
               {"weights", req.best ? "best (validation RSUM during training)" : "final"},
               {"set", g.name},
               {"dim", e.dim},
               {"scale", e.scale},
               {"bias", e.bias},
               {"score", "scale * dot(text[c], image[i]) + bias"},
               {"what", scorer.dual_description()},
               {"the_models_retrieval_scores", retrieves_with_them},
               {"text_file", out_prefix + "-text.npy"},
               {"image_file", out_prefix + "-images.npy"},
               {"captions", texts},
               {"images", g.image_names}};
  if (own) meta["caption_image"] = g.caption_image;
  write_file_atomic(out_prefix + ".json", meta.dump(2) + "\n");
  log << "mmt embed: " << nc << " captions and " << ni << " images of " << g.name << ", " << e.dim
      << " dimensions -> " << out_prefix << "-text.npy, " << out_prefix << "-images.npy, " << out_prefix << ".json\n";
  if (!retrieves_with_them)
    log << "mmt embed: note: this model attends across modalities, so it retrieves with a joint pass per pair; "
           "these are its " << scorer.dual_description() << " - eval.mode=dual's scores, not its exact ones\n";
  return meta;
}

}  // namespace mmt
