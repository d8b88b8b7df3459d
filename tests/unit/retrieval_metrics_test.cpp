/* Retrieval metrics against a naive reference written plainly here, on random score
 * matrices with 5 captions per image, and the documented tie rule. */
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "mmt/eval/retrieval_metrics.h"

namespace mmt {
namespace {

constexpr int64_t kPerImage = 5;

std::vector<int64_t> caption_images(int64_t n) {
  std::vector<int64_t> ci;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < kPerImage; ++k) ci.push_back(i);
  return ci;
}

// The naive reference: sort every candidate list, find the first relevant item.
// Ties are broken by a random permutation, then averaged over `trials` permutations.
struct Naive {
  double ir[3] = {0, 0, 0}, tr[3] = {0, 0, 0};
  double ir_mean_rank = 0, tr_mean_rank = 0;
};

Naive naive_metrics(const std::vector<float>& s, int64_t ni, const std::vector<int64_t>& ci, int trials, std::mt19937& g) {
  const int64_t nc = static_cast<int64_t>(ci.size());
  const int ks[3] = {1, 5, 10};
  Naive out;
  for (int trial = 0; trial < trials; ++trial) {
    for (int64_t c = 0; c < nc; ++c) {  // caption -> images
      std::vector<int64_t> order(ni);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), g);  // random order among ties
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s[c * ni + a] > s[c * ni + b]; });
      const int64_t rank = std::find(order.begin(), order.end(), ci[c]) - order.begin() + 1;
      for (int k = 0; k < 3; ++k) out.ir[k] += rank <= ks[k];
      out.ir_mean_rank += rank;
    }
    for (int64_t i = 0; i < ni; ++i) {  // image -> captions
      std::vector<int64_t> order(nc);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), g);
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return s[a * ni + i] > s[b * ni + i]; });
      int64_t rank = 0;
      while (ci[order[rank]] != i) ++rank;
      ++rank;
      for (int k = 0; k < 3; ++k) out.tr[k] += rank <= ks[k];
      out.tr_mean_rank += rank;
    }
  }
  for (int k = 0; k < 3; ++k) out.ir[k] *= 100.0 / (nc * trials), out.tr[k] *= 100.0 / (ni * trials);
  out.ir_mean_rank /= nc * trials, out.tr_mean_rank /= ni * trials;
  return out;
}

TEST(RetrievalMetrics, MatchNaiveReferenceOnRandomScores) {
  std::mt19937 g(1);
  std::normal_distribution<float> normal;
  for (int64_t ni : {7, 20, 64}) {
    const auto ci = caption_images(ni);
    std::vector<float> s(ci.size() * ni);
    for (auto& x : s) x = normal(g);
    for (size_t c = 0; c < ci.size(); ++c) s[c * ni + ci[c]] += 1.0f;  // better than chance
    const auto m = retrieval_metrics(s, ni, ci);
    const auto n = naive_metrics(s, ni, ci, 1, g);  // continuous scores: no ties
    EXPECT_NEAR(m.image_retrieval.r1, n.ir[0], 1e-9);
    EXPECT_NEAR(m.image_retrieval.r5, n.ir[1], 1e-9);
    EXPECT_NEAR(m.image_retrieval.r10, n.ir[2], 1e-9);
    EXPECT_NEAR(m.text_retrieval.r1, n.tr[0], 1e-9);
    EXPECT_NEAR(m.text_retrieval.r5, n.tr[1], 1e-9);
    EXPECT_NEAR(m.text_retrieval.r10, n.tr[2], 1e-9);
    EXPECT_NEAR(m.image_retrieval.mean_rank, n.ir_mean_rank, 1e-9);
    EXPECT_NEAR(m.text_retrieval.mean_rank, n.tr_mean_rank, 1e-9);
    EXPECT_EQ(m.num_captions, ni * kPerImage);
  }
}

TEST(RetrievalMetrics, MedianRankMatchesNaive) {
  std::mt19937 g(2);
  std::uniform_real_distribution<float> u;
  const int64_t ni = 11;
  const auto ci = caption_images(ni);
  std::vector<float> s(ci.size() * ni);
  for (auto& x : s) x = u(g);
  std::vector<double> ranks;
  for (size_t c = 0; c < ci.size(); ++c) {
    int64_t rank = 1;
    for (int64_t i = 0; i < ni; ++i) rank += s[c * ni + i] > s[c * ni + ci[c]];
    ranks.push_back(rank);
  }
  std::sort(ranks.begin(), ranks.end());  // 55 queries: the 28th
  EXPECT_DOUBLE_EQ(retrieval_metrics(s, ni, ci).image_retrieval.median_rank, ranks[27]);
}

TEST(RetrievalMetrics, TiesCountAsARandomOrder) {
  std::mt19937 g(3);
  std::uniform_int_distribution<int> level(0, 2);  // heavy ties
  const int64_t ni = 12;
  const auto ci = caption_images(ni);
  std::vector<float> s(ci.size() * ni);
  for (auto& x : s) x = static_cast<float>(level(g));
  const auto m = retrieval_metrics(s, ni, ci);
  const auto n = naive_metrics(s, ni, ci, 4000, g);
  EXPECT_NEAR(m.image_retrieval.r1, n.ir[0], 0.5);
  EXPECT_NEAR(m.image_retrieval.r5, n.ir[1], 0.5);
  EXPECT_NEAR(m.text_retrieval.r1, n.tr[0], 0.7);
  EXPECT_NEAR(m.text_retrieval.r5, n.tr[1], 0.7);
  EXPECT_NEAR(m.image_retrieval.mean_rank, n.ir_mean_rank, 0.05);
  EXPECT_NEAR(m.text_retrieval.mean_rank, n.tr_mean_rank, 0.1);
}

TEST(RetrievalMetrics, ConstantScoresGiveExactlyChance) {
  const int64_t ni = 100;
  const auto ci = caption_images(ni);
  const auto m = retrieval_metrics(std::vector<float>(ci.size() * ni, 0.5f), ni, ci);
  EXPECT_NEAR(m.image_retrieval.r1, 1.0, 1e-9);
  EXPECT_NEAR(m.image_retrieval.r10, 10.0, 1e-9);
  EXPECT_NEAR(m.image_retrieval.median_rank, 50.5, 1e-9);
  // Text retrieval: P(one of 5 relevant among the first k of 500) = 1 - C(495, k) / C(500, k).
  double none = 1;
  for (int i = 0; i < 5; ++i) none *= (495.0 - i) / (500.0 - i);
  EXPECT_NEAR(m.text_retrieval.r5, 100.0 * (1 - none), 1e-9);
  EXPECT_NEAR(m.text_retrieval.r1, 1.0, 1e-9);
}

TEST(RetrievalMetrics, HandWorkedTies) {
  QueryRank r;
  r.greater = 0, r.tied_irrelevant = 1, r.tied_relevant = 1;  // relevant tied with one other
  EXPECT_DOUBLE_EQ(r.recall_at(1), 0.5);
  EXPECT_DOUBLE_EQ(r.recall_at(2), 1.0);
  EXPECT_DOUBLE_EQ(r.expected_rank(), 1.5);
  r.greater = 3, r.tied_irrelevant = 2, r.tied_relevant = 2;  // 2 relevant among 4 tied, after 3
  EXPECT_DOUBLE_EQ(r.recall_at(3), 0.0);
  EXPECT_DOUBLE_EQ(r.recall_at(4), 0.5);
  EXPECT_DOUBLE_EQ(r.recall_at(5), 1.0 - (2.0 / 4) * (1.0 / 3));
  EXPECT_DOUBLE_EQ(r.expected_rank(), 4.0 + 2.0 / 3);
}

// Captions missed at R@1: evenly spaced over the misses in caption order; each with the other
// image scored highest (even where its own image ties it: a tie is a miss by half), never its own.
TEST(RetrievalMetrics, MissedCaptionsAreEvenlySpacedWithTheStrongestOtherImage) {
  const int64_t ni = 4, nc = 8;
  std::vector<int64_t> map(nc);
  for (int64_t c = 0; c < nc; ++c) map[c] = c / 2;
  std::vector<float> scores(nc * ni, 0.f);
  auto set = [&](int64_t c, std::vector<float> row) { std::copy(row.begin(), row.end(), scores.begin() + c * ni); };
  set(0, {9, 1, 2, 3});  // found: no miss
  set(1, {1, 5, 2, 0});  // images 1 and 2 beat image 0: rank 3
  set(2, {0, 9, 1, 0});  // found
  set(3, {4, 1, 3, 4});  // three images beat image 1: rank 4; of the two strongest, the first (0)
  set(4, {0, 0, 7, 0});  // found
  set(5, {2, 2, 2, 2});  // all tied: r1 = 1/4, the strongest other the first of equals (image 0)
  set(6, {0, 8, 0, 8});  // own image 3 ties image 1: r1 = 1/2, missed, image 1 found
  set(7, {1, 0, 0, 5});  // found
  const RetrievalOutcomes o = retrieval_outcomes(scores, ni, map);
  int64_t num_missed = -1;
  const auto all = missed_captions(scores, ni, map, o, 10, &num_missed);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(num_missed, 4);
  const int64_t want_caption[4] = {1, 3, 5, 6}, want_found[4] = {1, 0, 0, 1};
  const double want_rank[4] = {3.0, 4.0, 2.5, 1.5};
  for (size_t j = 0; j < 4; ++j) {
    EXPECT_EQ(all[j].caption, want_caption[j]) << j;
    EXPECT_EQ(all[j].found, want_found[j]) << j;
    EXPECT_DOUBLE_EQ(all[j].rank, want_rank[j]) << j;
  }
  const auto two = missed_captions(scores, ni, map, o, 2);  // of 4 misses: the 1st and the 3rd
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].caption, 1);
  EXPECT_EQ(two[1].caption, 5);
  EXPECT_TRUE(missed_captions(scores, ni, map, o, 0).empty());
  EXPECT_THROW(missed_captions(std::vector<float>(3, 0.f), ni, map, o, 2), std::exception);
}

// r1_any_relevant against a plain count: the top score's tied images, the relevant share of them;
// with only the caption's own image relevant it is image R@1.
TEST(RetrievalMetrics, R1AnyRelevantCountsEveryRelevantImageAtTheTop) {
  std::mt19937 g(5);
  const int64_t ni = 12, nc = ni * kPerImage;
  std::uniform_int_distribution<int> level(0, 3);  // few levels: many ties at the top
  std::bernoulli_distribution relevant_draw(0.3);
  std::vector<float> s(static_cast<size_t>(nc * ni)), rel(s.size()), own(s.size(), 0.f);
  const auto ci = caption_images(ni);
  for (size_t k = 0; k < s.size(); ++k) s[k] = static_cast<float>(level(g)), rel[k] = relevant_draw(g) ? 1.f : 0.f;
  for (int64_t c = 0; c < nc; ++c) rel[c * ni + ci[c]] = 1.f, own[c * ni + ci[c]] = 1.f;  // its own image always
  double expected = 0;
  for (int64_t c = 0; c < nc; ++c) {
    const float top = *std::max_element(s.begin() + c * ni, s.begin() + (c + 1) * ni);
    double at_top = 0, relevant_at_top = 0;
    for (int64_t i = 0; i < ni; ++i)
      if (s[c * ni + i] == top) ++at_top, relevant_at_top += rel[c * ni + i];
    expected += relevant_at_top / at_top;
  }
  std::vector<double> per_caption;
  EXPECT_NEAR(r1_any_relevant(s, rel, ni, &per_caption), 100.0 * expected / static_cast<double>(nc), 1e-9);
  ASSERT_EQ(per_caption.size(), static_cast<size_t>(nc));
  EXPECT_NEAR(100.0 * std::accumulate(per_caption.begin(), per_caption.end(), 0.0) / static_cast<double>(nc),
              100.0 * expected / static_cast<double>(nc), 1e-9);
  EXPECT_NEAR(r1_any_relevant(s, own, ni), retrieval_metrics(s, ni, ci).image_retrieval.r1, 1e-9);
  EXPECT_THROW(r1_any_relevant(s, std::vector<float>(s.size() - 1), ni), std::exception);
}

TEST(RetrievalMetrics, RejectsMalformedInput) {
  EXPECT_THROW(retrieval_metrics(std::vector<float>(9, 0.f), 2, caption_images(2)), std::exception);
  EXPECT_THROW(retrieval_metrics({}, 0, {}), std::exception);
}

}  // namespace
}  // namespace mmt
