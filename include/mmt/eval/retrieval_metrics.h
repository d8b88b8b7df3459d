/* Retrieval metrics over a score matrix (captions x images, higher = better match).
 *
 * Image retrieval: each caption ranks all images; its image is the one relevant item.
 * Text retrieval: each image ranks all captions; its captions (5 in Flickr30k) are relevant,
 * and the rank is that of the first relevant caption.
 *
 * Tie rule (docs/evaluation.md): candidates with equal scores are taken in a uniformly
 * random order, and every metric is its expectation over that order. With g irrelevant
 * candidates scoring above the best relevant score s*, e irrelevant ones equal to s* and m
 * relevant ones equal to s*, the first relevant item sits at 1 + g + j with probability
 * P(j irrelevant tied items precede it); R@K = P(rank <= K) and the rank is its expectation
 * 1 + g + e / (m + 1). So a constant scorer scores exactly chance, and a matcher that is
 * unsure between k candidates gets 1/k of a hit - never the optimistic full hit. */
#pragma once

#include <cstdint>
#include <vector>

namespace mmt {

/// Where the first relevant candidate falls for one query.
struct QueryRank {
  int64_t greater = 0;         // irrelevant candidates scoring above the best relevant score
  int64_t tied_irrelevant = 0; // irrelevant candidates equal to it
  int64_t tied_relevant = 1;   // relevant candidates equal to it (>= 1)

  /// P(rank of the first relevant <= k) under the tie rule.
  double recall_at(int64_t k) const;
  /// Expected rank of the first relevant candidate (1 = top).
  double expected_rank() const;
};

/// Ranks one query: scores of all candidates, relevant[i] marks the relevant ones.
QueryRank rank_query(const float* scores, const std::vector<char>& relevant, int64_t n, int64_t stride = 1);

/// Image retrieval's R@1 with every relevant image a hit, not only the caption's own: the percent
/// of captions whose top-scored image is relevant (`relevant`: captions x images, nonzero =
/// relevant, at least one per caption), ties at the top shared as in R@1.
/// `per_caption`, if given, receives each caption's value (0..1; fractional where ties share the top).
double r1_any_relevant(const std::vector<float>& scores, const std::vector<float>& relevant, int64_t num_images,
                       std::vector<double>* per_caption = nullptr);

struct DirectionMetrics {
  double r1 = 0, r5 = 0, r10 = 0;  // recall at 1/5/10, in percent
  double median_rank = 0;          // median over queries of the expected rank
  double mean_rank = 0;            // mean over queries of the expected rank
  double rsum() const { return r1 + r5 + r10; }
};

struct RetrievalMetrics {
  DirectionMetrics image_retrieval;  // caption -> images
  DirectionMetrics text_retrieval;   // image -> captions
  int64_t num_images = 0;
  int64_t num_captions = 0;
};

/// scores: (num_captions x num_images) row-major; caption_image[c] = image of caption c.
RetrievalMetrics retrieval_metrics(const std::vector<float>& scores, int64_t num_images,
                                   const std::vector<int64_t>& caption_image);

/// One query's outcome under the tie rule: P(first relevant within 1, 5, 10) and its expected rank.
struct QueryOutcome {
  double r1 = 0, r5 = 0, r10 = 0, rank = 0;
};
/// Every query's outcome: what the metrics summarise, and what bootstrap.h resamples.
struct RetrievalOutcomes {
  std::vector<QueryOutcome> image_retrieval;  // one per caption (caption -> images)
  std::vector<QueryOutcome> text_retrieval;   // one per image (image -> captions)
};
/// The outcomes of a score matrix; `image_to_caption` (rerank's second matrix, same layout) ranks
/// the text direction where given.
RetrievalOutcomes retrieval_outcomes(const std::vector<float>& scores, int64_t num_images,
                                     const std::vector<int64_t>& caption_image,
                                     const std::vector<float>* image_to_caption = nullptr);
/// A caption whose image did not certainly come first (R@1 below 1), with the image other than
/// its own that scored highest (the first of equals) and its own image's expected rank.
struct MissedCaption {
  int64_t caption = 0, found = 0;
  double rank = 0;
};
/// Up to `k` of the captions missed at R@1, evenly spaced over all of them in caption order: the
/// typical error rather than the worst. `scores`: captions x images, as retrieval_outcomes takes;
/// `num_missed` (optional) receives how many captions were missed in all.
std::vector<MissedCaption> missed_captions(const std::vector<float>& scores, int64_t num_images,
                                           const std::vector<int64_t>& caption_image, const RetrievalOutcomes& outcomes,
                                           int64_t k, int64_t* num_missed = nullptr);

/// Recalls in percent, median and mean rank of a direction's outcomes.
DirectionMetrics summarise(const std::vector<QueryOutcome>& outcomes);
RetrievalMetrics summarise(const RetrievalOutcomes& outcomes);

}  // namespace mmt
