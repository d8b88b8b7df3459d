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

double r1_any_relevant(const std::vector<float>& scores, const std::vector<float>& relevant, int64_t ni,
                       std::vector<double>* per_caption) {
  if (ni <= 0 || scores.size() != relevant.size() || scores.size() % static_cast<size_t>(ni) != 0 || scores.empty())
    throw Error("r1_any_relevant: " + std::to_string(scores.size()) + " scores and " + std::to_string(relevant.size()) +
                " relevance values do not form the same captions x " + std::to_string(ni) + " images matrix");
  const int64_t nc = static_cast<int64_t>(scores.size()) / ni;
  std::vector<char> mark(static_cast<size_t>(ni));
  double hits = 0;
  if (per_caption) per_caption->clear();
  for (int64_t c = 0; c < nc; ++c) {
    for (int64_t i = 0; i < ni; ++i) mark[i] = relevant[c * ni + i] != 0;
    const double hit = rank_query(scores.data() + c * ni, mark, ni).recall_at(1);
    hits += hit;
    if (per_caption) per_caption->push_back(hit);
  }
  return 100.0 * hits / static_cast<double>(nc);
}

DirectionMetrics summarise(const std::vector<QueryOutcome>& outcomes) {
  if (outcomes.empty()) throw Error("retrieval metrics: no queries");
  DirectionMetrics m;
  std::vector<double> expected;
  for (const auto& o : outcomes) {
    m.r1 += o.r1, m.r5 += o.r5, m.r10 += o.r10;
    expected.push_back(o.rank);
  }
  const double n = static_cast<double>(outcomes.size());
  m.r1 *= 100.0 / n, m.r5 *= 100.0 / n, m.r10 *= 100.0 / n;
  for (double e : expected) m.mean_rank += e / n;
  std::sort(expected.begin(), expected.end());
  const size_t h = expected.size() / 2;
  m.median_rank = expected.size() % 2 ? expected[h] : 0.5 * (expected[h - 1] + expected[h]);
  return m;
}

RetrievalMetrics summarise(const RetrievalOutcomes& outcomes) {
  RetrievalMetrics out;
  out.image_retrieval = summarise(outcomes.image_retrieval);
  out.text_retrieval = summarise(outcomes.text_retrieval);
  out.num_captions = static_cast<int64_t>(outcomes.image_retrieval.size());
  out.num_images = static_cast<int64_t>(outcomes.text_retrieval.size());
  return out;
}

namespace {

QueryOutcome outcome(const QueryRank& r) { return {r.recall_at(1), r.recall_at(5), r.recall_at(10), r.expected_rank()}; }

void check_matrix(const std::vector<float>& scores, int64_t nc, int64_t num_images) {
  if (nc == 0 || num_images == 0) throw Error("retrieval_metrics: empty test set");
  if (static_cast<int64_t>(scores.size()) != nc * num_images)
    throw Error("retrieval_metrics: score matrix has " + std::to_string(scores.size()) + " entries, expected " +
                std::to_string(nc) + " x " + std::to_string(num_images));
}

}  // namespace

RetrievalOutcomes retrieval_outcomes(const std::vector<float>& scores, int64_t num_images,
                                     const std::vector<int64_t>& caption_image, const std::vector<float>* image_to_caption) {
  const int64_t nc = static_cast<int64_t>(caption_image.size());
  check_matrix(scores, nc, num_images);
  if (image_to_caption) check_matrix(*image_to_caption, nc, num_images);
  for (int64_t c = 0; c < nc; ++c)
    if (caption_image[c] < 0 || caption_image[c] >= num_images)
      throw Error("retrieval_metrics: caption " + std::to_string(c) + " belongs to image " +
                  std::to_string(caption_image[c]) + " of " + std::to_string(num_images));
  RetrievalOutcomes out;
  std::vector<char> relevant(static_cast<size_t>(num_images), 0);
  for (int64_t c = 0; c < nc; ++c) {  // caption -> images
    relevant[caption_image[c]] = 1;
    out.image_retrieval.push_back(outcome(rank_query(&scores[c * num_images], relevant, num_images)));
    relevant[caption_image[c]] = 0;
  }
  const std::vector<float>& texts = image_to_caption ? *image_to_caption : scores;
  relevant.assign(static_cast<size_t>(nc), 0);
  for (int64_t i = 0; i < num_images; ++i) {  // image -> captions
    bool any = false;
    for (int64_t c = 0; c < nc; ++c) any |= (relevant[c] = caption_image[c] == i);
    if (!any) throw Error("retrieval_metrics: image " + std::to_string(i) + " has no caption");
    out.text_retrieval.push_back(outcome(rank_query(&texts[i], relevant, nc, num_images)));
  }
  return out;
}

std::vector<MissedCaption> missed_captions(const std::vector<float>& scores, int64_t num_images,
                                           const std::vector<int64_t>& caption_image, const RetrievalOutcomes& outcomes,
                                           int64_t k, int64_t* num_missed) {
  const int64_t nc = static_cast<int64_t>(caption_image.size());
  check_matrix(scores, nc, num_images);
  if (static_cast<int64_t>(outcomes.image_retrieval.size()) != nc)
    throw Error("missed_captions: " + std::to_string(outcomes.image_retrieval.size()) + " outcomes for " +
                std::to_string(nc) + " captions");
  std::vector<int64_t> missed;
  for (int64_t c = 0; c < nc; ++c)
    if (outcomes.image_retrieval[c].r1 < 1.0) missed.push_back(c);
  if (num_missed) *num_missed = static_cast<int64_t>(missed.size());
  std::vector<MissedCaption> out;
  const int64_t m = static_cast<int64_t>(missed.size()), n = std::min(k, m);
  for (int64_t j = 0; j < n; ++j) {
    MissedCaption x;
    x.caption = missed[j * m / n];
    x.rank = outcomes.image_retrieval[x.caption].rank;
    const float* row = &scores[x.caption * num_images];
    x.found = -1;
    for (int64_t i = 0; i < num_images; ++i)
      if (i != caption_image[x.caption] && (x.found < 0 || row[i] > row[x.found])) x.found = i;
    if (x.found >= 0) out.push_back(x);
  }
  return out;
}

RetrievalMetrics retrieval_metrics(const std::vector<float>& scores, int64_t num_images,
                                   const std::vector<int64_t>& caption_image) {
  return summarise(retrieval_outcomes(scores, num_images, caption_image));
}

}  // namespace mmt
