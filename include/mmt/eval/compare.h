/* `mmt compare A B`: is run B better than run A on the same test sets, beyond the luck of the
 * test set? Reads the two evaluations' score matrices and caption -> image maps (written by
 * `mmt eval`), checks that they scored the same test set (by fingerprint), and resamples the test
 * images once for both (bootstrap.h, paired). docs/evaluation.md. */
#pragma once

#include <cstdint>
#include <iosfwd>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "mmt/eval/bootstrap.h"

namespace mmt {

/// A difference in points with its sign always written: "+8.6", "-0.3" ("%+.1f").
std::string signed1(double v);

/// A test set's identity across runs: FNV-1a over the number of images, each image's key (file
/// name; empty for synthetic test sets, whose images follow from their captions' world), and
/// each caption's text and image. Hex, 16 digits.
std::string test_set_fingerprint(int64_t num_images, const std::vector<std::string>& image_keys,
                                 const std::vector<std::string>& captions, const std::vector<int64_t>& caption_image);

/// Writes every query's outcome (float64, (captions + images) x 4: r1, r5, r10, expected rank;
/// the caption queries first): what `mmt compare` and the study report resample, without the
/// score matrices (COCO 5k: 1 MB against 500 MB, and no ranking to redo).
void save_outcomes(const std::string& path, const RetrievalOutcomes& outcomes);

/// The outcomes of an evaluation entry (a test set of eval.json, a split of eval-<protocol>.json)
/// from its saved files in `dir` - its outcomes file where it has one (its recalls checked against
/// the entry's), else its score matrices ranked again; `caption_image` receives the map. Errors
/// name the file.
RetrievalOutcomes load_outcomes(const std::string& dir, const nlohmann::json& entry, const std::string& name,
                                std::vector<int64_t>& caption_image);

/// Each caption's true@1 hit (0..1) of a synthetic test set's entry, from its per_caption_file in
/// `dir`; empty where the entry has none (real images, or evaluated before the hits were saved).
/// Errors name the file, also when it does not hold `num_captions` values.
std::vector<double> load_true_hits(const std::string& dir, const nlohmann::json& entry, size_t num_captions);

/// `a` and `b`: run directories (their eval.json) or result files (eval-best.json,
/// eval-flickr30k-1k.json, ...), one or several each (several: the seeds of one configuration,
/// compared as the mean of their recalls - every result resampled with the same test images - with
/// each group's spread over its results beside). Every test set or split all of them hold is
/// compared; one they do not all share is named and skipped, one scored on different test sets is
/// an error. Prints a Markdown table per set on `out` and returns the comparison as JSON.
nlohmann::json compare_results(const std::vector<std::string>& a, const std::vector<std::string>& b,
                               const BootstrapSettings& settings, std::ostream& out);
/// The same with each side one path or several, comma-separated (the command line's A and B).
nlohmann::json compare_results(const std::string& a, const std::string& b, const BootstrapSettings& settings,
                               std::ostream& out);

}  // namespace mmt
