/* Retrieval metrics with the expected-value tie rule (see retrieval_metrics.h). */
#include "mmt/eval/retrieval_metrics.h"

#include <algorithm>
#include <limits>

#include "mmt/util/error.h"

namespace mmt {

double QueryRank::recall_at(int64_t k) const {
  if (k <= greater) return 0.0;
  const int64_t j = k - greater;  // slots left for the tied block
  if (j > tied_irrelevant) return 1.0;
  // P(the first j tied items are all irrelevant) = prod_{i<j} (e - i) / (e + m - i)
  double none = 1.0;
  for (int64_t i = 0; i < j; ++i)
    none *= static_cast<double>(tied_irrelevant - i) / static_cast<double>(tied_irrelevant + tied_relevant - i);
  return 1.0 - none;
}

double QueryRank::expected_rank() const {
  return 1.0 + static_cast<double>(greater) +
         static_cast<double>(tied_irrelevant) / static_cast<double>(tied_relevant + 1);
}

QueryRank rank_query(const float* scores, const std::vector<char>& relevant, int64_t n, int64_t stride) {
  float best = -std::numeric_limits<float>::infinity();
  bool any = false;
  for (int64_t i = 0; i < n; ++i) {
    if (!relevant[i]) continue;
    best = any ? std::max(best, scores[i * stride]) : scores[i * stride];
    any = true;
  }
  if (!any) throw Error("rank_query: a query has no relevant candidate");
  QueryRank r;
  r.tied_relevant = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float s = scores[i * stride];
    if (relevant[i]) {
      r.tied_relevant += s == best;
    } else if (s > best) {
      ++r.greater;
    } else if (s == best) {
      ++r.tied_irrelevant;
    }
  }
  return r;
}

namespace {

DirectionMetrics summarise(const std::vector<QueryRank>& ranks) {
  DirectionMetrics m;
  std::vector<double> expected;
  for (const auto& r : ranks) {
    m.r1 += r.recall_at(1), m.r5 += r.recall_at(5), m.r10 += r.recall_at(10);
    expected.push_back(r.expected_rank());
  }
  const double n = static_cast<double>(ranks.size());
  m.r1 *= 100.0 / n, m.r5 *= 100.0 / n, m.r10 *= 100.0 / n;
  for (double e : expected) m.mean_rank += e / n;
  std::sort(expected.begin(), expected.end());
  const size_t h = expected.size() / 2;
  m.median_rank = expected.size() % 2 ? expected[h] : 0.5 * (expected[h - 1] + expected[h]);
  return m;
}

}  // namespace

RetrievalMetrics retrieval_metrics(const std::vector<float>& scores, int64_t num_images,
                                   const std::vector<int64_t>& caption_image) {
  const int64_t nc = static_cast<int64_t>(caption_image.size());
  if (nc == 0 || num_images == 0) throw Error("retrieval_metrics: empty test set");
  if (static_cast<int64_t>(scores.size()) != nc * num_images)
    throw Error("retrieval_metrics: score matrix has " + std::to_string(scores.size()) + " entries, expected " +
                std::to_string(nc) + " x " + std::to_string(num_images));
  RetrievalMetrics out;
  out.num_images = num_images, out.num_captions = nc;

  std::vector<QueryRank> ranks;
  std::vector<char> relevant(static_cast<size_t>(num_images), 0);
  for (int64_t c = 0; c < nc; ++c) {  // caption -> images
    relevant[caption_image[c]] = 1;
    ranks.push_back(rank_query(&scores[c * num_images], relevant, num_images));
    relevant[caption_image[c]] = 0;
  }
  out.image_retrieval = summarise(ranks);

  ranks.clear();
  relevant.assign(static_cast<size_t>(nc), 0);
  for (int64_t i = 0; i < num_images; ++i) {  // image -> captions
    bool any = false;
    for (int64_t c = 0; c < nc; ++c) any |= (relevant[c] = caption_image[c] == i);
    if (!any) throw Error("retrieval_metrics: image " + std::to_string(i) + " has no caption");
    ranks.push_back(rank_query(&scores[i], relevant, nc, num_images));
  }
  out.text_retrieval = summarise(ranks);
  return out;
}

}  // namespace mmt
