/* `mmt data check` and `mmt data stats`: validate and count a dataset (optionally decoding every
 * image), and describe its captions - lengths, vocabulary, and the vocabulary overlap between
 * datasets (the paper's language-similarity factor). Torch-free. */
#pragma once

#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "mmt/data/dataset.h"

namespace mmt {

/// "format=coco,path=a.json,images=dir,splits=test+val,name=x" -> DatasetSpec (errors name the key).
DatasetSpec parse_dataset_arg(const std::string& arg);

/// Reads (and with `decode`, decodes every image of) a dataset; counts per split, skipped records
/// by reason, undecodable images. Bad-fraction limits are not applied: everything is counted.
nlohmann::json check_dataset(DatasetSpec spec, bool decode, std::ostream* warn);

/// Caption statistics of each dataset and, for every pair, the vocabulary overlap: the Jaccard
/// index of their word types and the share of one's word tokens covered by the other's vocabulary.
/// Exact repeats (the same words after the basic tokenizer) are counted too, and for a queue of
/// `queue` other captions drawn at random without replacement (a contrastive queue's negatives,
/// capped at the captions there are) the expected copies of a caption's text in it and the
/// share of captions with at least one - the repeats train.contrastive_same_caption concerns.
constexpr int64_t kStatsQueue = 65536;  // ALBEF's queue
nlohmann::json dataset_stats(const std::vector<Dataset>& datasets, int64_t queue = kStatsQueue);

/// Human-readable renderings of the two results.
std::string format_check(const nlohmann::json& check);
std::string format_stats(const nlohmann::json& stats);

}  // namespace mmt
