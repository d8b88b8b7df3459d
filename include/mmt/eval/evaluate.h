/* `mmt eval`: zero-shot retrieval of a trained run on the configured test sets, with each
 * test set's ceilings beside the model, written to <run>/eval.json and eval.md. */
#pragma once

#include <iosfwd>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

namespace mmt {

struct Ceilings;
struct ExperimentConfig;
struct RetrievalMetrics;
class Tokenizer;
class Vocab;

/// How real captions become the run's token ids: its SentencePiece model (data.tokenizer *.model),
/// else WordPiece over the run's vocabulary (vocab.txt), cased as data.cased. (Synthetic test
/// sets are read with the vocabulary's own whole-word encode, as in training.)
std::unique_ptr<Tokenizer> run_tokenizer(const ExperimentConfig& cfg, const Vocab& vocab);

/// The config `mmt eval` runs with: the run's own (<run>/config.json) with `overrides` applied,
/// validated, and checked to change only what evaluation may change (below). Distributed
/// evaluation reads its runtime options from it before joining the process group.
ExperimentConfig eval_config(const std::string& run_dir, const std::vector<std::string>& overrides);

/// Evaluates the run in `run_dir`. `overrides` ("a.b=v") may change eval.*, runtime.* and
/// data.synth.num_test_images / captions_per_image; anything else fails (the model is fixed).
/// A standard protocol on real images (eval/protocols.h): exact ITM scoring of every pair of each
/// split, written to <run>/eval-<protocol>.json / .md and the score matrices to
/// <run>/eval-<split>-scores.npy (captions x images). The label is `zero-shot` unless the run's
/// pretraining data holds test images (compared by image file name): then `not zero-shot`, with
/// the count; a run fine-tuned on retrieval data is `fine-tuned`.
nlohmann::json evaluate_protocol(const std::string& run_dir, const std::string& protocol, const std::string& karpathy,
                                 const std::string& images, const std::string& features,
                                 const std::vector<std::string>& overrides, std::ostream& out, std::ostream& log,
                                 bool best = false);

/// `best`: the weights of <run>/best (train.eval_every) instead of the final ones; results go to
/// files named with "-best" (eval-best.json, eval-<protocol>-best.json, eval-best-<set>-scores.npy).
/// Returns the eval.json content; prints the Markdown table to `out`, progress to `log`.
nlohmann::json evaluate_run(const std::string& run_dir, const std::vector<std::string>& overrides, std::ostream& out,
                            std::ostream& log, bool best = false);

/// How a config scores: "exact ITM scoring", "dual scoring", "rerank: top 128 of dual by ITM".
std::string mode_phrase(const ExperimentConfig& cfg);
/// `text` as one Markdown table cell: '|' escaped, line breaks as spaces.
std::string markdown_cell(std::string text);
/// The Markdown results table of one test set (model and ceilings).
std::string results_table(const std::string& title, const RetrievalMetrics& model, const Ceilings& ceilings);

/// JSON of one direction-pair result: image_retrieval / text_retrieval with r1, r5, r10,
/// median_rank, mean_rank, rsum.
nlohmann::json metrics_json(const RetrievalMetrics& m);

}  // namespace mmt
