/* `mmt retrieve`: what a trained run finds for captions you write. Each query caption is scored
 * against every image of a test set - a synthetic one, or a real protocol's split - in the run's
 * eval.mode (exact ITM scores by default, as `mmt eval` ranks them), and the top images are listed
 * with their scores and what they show. A query that is one of the set's own captions also gets
 * the rank of its image. On a synthetic set, a query the caption grammar can say (any of the set's
 * captions, or one written in its words) is judged true or false of each image listed and counted
 * over all of them (the world decides it exactly): an image ranked above the caption's own is then
 * either a mistake or another image the caption also describes. The other direction too: an image of the
 * set (--image) against the set's distinct captions, its own ones marked, and on a synthetic set
 * which captions are true of it. Nothing is written to the run. */
#pragma once
#include <cstdint>
#include <iosfwd>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace mmt {

struct RetrieveRequest {
  std::string run_dir;
  bool best = false;                   // <run>/best's weights
  std::vector<std::string> queries;    // captions, as written
  std::vector<std::string> image_queries;  // images of the set (synthetic: index; real: file name)
  std::string test_set;                // synthetic: easy, binding (default: the run's first eval.test_sets)
  std::string protocol, karpathy;      // real images: a protocol (eval/protocols.h) of a Karpathy file
  std::string images, features;        // its image folder, region features
  std::string split;                   // which of the protocol's splits (coco-1k's folds; default the first)
  int64_t top = 5;                     // images listed per query
  std::vector<std::string> overrides;  // eval.* and runtime.*, as for mmt eval
};

/// Scores the queries and returns {"run", "step", "weights", "images": {set, count}, "mode",
/// "queries": [{"caption", "tokens", "unknown", "truncated", "top": [{"rank", "image", "score",
/// "shows", "caption_true"?}], "in_set"?: {"images": [{"image", "rank", "ties"}]}, "true_of"?, "first_true_rank"?,
/// "own_below"?: [the caption's own images ranked below the top, as in "top"]}],
/// "image_queries": [{"image", "shows", "top": [{"rank", "caption", "score", "own", "true"?}],
/// "own": [{"caption", "score", "rank", "ties"}], "true_captions"?}]}.
/// Prints a Markdown table per query to `out`, progress and warnings (words the vocabulary lacks,
/// truncation) to `log`.
nlohmann::json retrieve(const RetrieveRequest& request, std::ostream& out, std::ostream& log);

/// `mmt embed`: the vectors behind the run's dual scores (eval.mode=dual; for a dual encoder its
/// retrieval scores) for the request's captions - or, without any, the set's own - and the set's
/// images: PREFIX-text.npy (captions x dim), PREFIX-images.npy (images x dim), float32, and
/// PREFIX.json (run, step, set, dim, scale, bias - score = scale * text . image + bias -, what they
/// are, whether they are the model's retrieval scores, the captions, the image names, and for
/// the set's own captions their images). Returns that JSON.
nlohmann::json embed(const RetrieveRequest& request, const std::string& out_prefix, std::ostream& log);

}  // namespace mmt
