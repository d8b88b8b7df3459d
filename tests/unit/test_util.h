/* Helpers shared by the unit tests: small models and random batches. */
#pragma once

#include <torch/csrc/autograd/function.h>
#include <torch/types.h>

#include <map>
#include <set>
#include <string>
#include <vector>

#include "mmt/config/options.h"
#include "mmt/data/batch.h"
#include "mmt/model/transformer.h"
#include "mmt/train/hard_negatives.h"

namespace mmt::testing {

/// A small model: hidden 32, 2 heads of 16, FFN 64, `layers` layers of `attention`.
inline ModelOptions small_model_options(const std::string& attention, int64_t layers = 2) {
  ModelOptions m;
  m.hidden = 32, m.num_heads = 2, m.head_dim = 16, m.ffn_dim = 64, m.num_layers = layers;
  m.attention = attention, m.max_text_len = 16, m.dropout = 0.0;
  return m;
}

constexpr int64_t kVocab = 30, kFeat = 8;

/// The autograd operations behind a tensor: each node's name and how many nodes bear it.
inline std::map<std::string, int> graph_op_counts(const torch::Tensor& t) {
  std::map<std::string, int> names;
  std::set<const torch::autograd::Node*> seen;
  std::vector<const torch::autograd::Node*> todo{t.grad_fn().get()};
  while (!todo.empty()) {
    const auto* node = todo.back();
    todo.pop_back();
    if (!node || !seen.insert(node).second) continue;
    ++names[node->name()];
    for (const auto& edge : node->next_edges()) todo.push_back(edge.function.get());
  }
  return names;
}

/// Each row's token ids without padding (where text_mask is true).
inline std::vector<std::vector<int64_t>> token_rows(const Batch& b) {
  std::vector<std::vector<int64_t>> rows;
  for (int64_t i = 0; i < b.size(); ++i) {
    std::vector<int64_t> ids;
    for (int64_t t = 0; t < b.text_ids.size(1); ++t)
      if (b.text_mask[i][t].item<bool>()) ids.push_back(b.text_ids[i][t].item<int64_t>());
    rows.push_back(ids);
  }
  return rows;
}

/// The score-matrix entries hard negatives read for `lines` of a batch of b: along row i (its caption
/// with images) or, `by_column`, column i (its image with captions), the entries of `entries[k]` for
/// line k - every entry of each line when `entries` is empty.
inline std::vector<ScorePair> line_pairs(int64_t b, const std::vector<int64_t>& lines, bool by_column,
                                         const std::vector<std::vector<int64_t>>& entries = {}) {
  std::vector<ScorePair> pairs;
  for (size_t k = 0; k < lines.size(); ++k) {
    std::vector<int64_t> all;
    for (int64_t j = 0; j < b; ++j) all.push_back(j);
    for (const int64_t j : entries.empty() ? all : entries[k])
      pairs.push_back(by_column ? ScorePair{j, lines[k]} : ScorePair{lines[k], j});
  }
  return pairs;
}

/// A random batch of b examples, t tokens, r regions; every position real.
inline Batch random_batch(int64_t b, int64_t t, int64_t r, uint64_t seed = 0) {
  torch::manual_seed(seed);
  Batch batch;
  batch.text_ids = torch::randint(5, kVocab, {b, t}, torch::kInt64);
  batch.text_ids.select(1, 0).fill_(2);  // [CLS]
  batch.text_mask = torch::ones({b, t}, torch::kBool);
  batch.region_feats = torch::randn({b, r, kFeat});
  batch.region_boxes = torch::rand({b, r, 5});
  batch.region_mask = torch::ones({b, r}, torch::kBool);
  return batch;
}

}  // namespace mmt::testing
