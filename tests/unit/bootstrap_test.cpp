/* Bootstrap intervals and paired comparisons of recalls (src/eval/bootstrap.cpp): the fast
 * per-image sums against resampled query lists built one by one and summarised as the metrics
 * are; the interval's width against the binomial standard error; captions of one image resampled
 * together; paired differences of equal results zero, of a small real gain positive while the
 * separate intervals overlap. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <set>

#include "mmt/eval/bootstrap.h"
#include "mmt/util/error.h"
#include "mmt/util/rng.h"

namespace mmt {
namespace {

// A test set of n images with k captions each; hit(c) / text_hit(i) decide R@1 (R@5 and R@10 are
// given other patterns so the six recalls differ).
RetrievalOutcomes outcomes(int64_t n, int64_t k, const std::function<bool(int64_t)>& hit,
                           const std::function<bool(int64_t)>& text_hit, std::vector<int64_t>* caption_image) {
  RetrievalOutcomes o;
  caption_image->clear();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j) {
      const int64_t c = i * k + j;
      const double r1 = hit(c) ? 1.0 : 0.0, r5 = std::max(r1, c % 3 ? 1.0 : 0.25);
      o.image_retrieval.push_back({r1, r5, std::max(r5, c % 5 ? 1.0 : 0.5), r1 ? 1.0 : 7.0});
      caption_image->push_back(i);
    }
  for (int64_t i = 0; i < n; ++i) {
    const double r1 = text_hit(i) ? 1.0 : 0.0;
    const double r5 = std::max(r1, i % 2 ? 1.0 : 0.0);
    o.text_retrieval.push_back({r1, r5, std::max(r5, i % 4 ? 1.0 : 0.0), r1 ? 1.0 : 4.0});
  }
  return o;
}

double width(const Interval& i) { return i.high - i.low; }

TEST(Bootstrap, IntervalsEqualResampledQueryListsSummarised) {
  std::vector<int64_t> caption_image;
  const auto o = outcomes(37, 3, [](int64_t c) { return c % 4 == 0 || c % 7 == 0; }, [](int64_t i) { return i % 3 == 0; },
                          &caption_image);
  BootstrapSettings s;
  s.samples = 200, s.seed = 11, s.level = 0.9;
  const auto fast = bootstrap_intervals(o, caption_image, s);
  // The definition: draw 37 images with replacement (the same generator), list their captions'
  // and their own outcomes, and summarise as the metrics do.
  Rng rng(s.seed);
  std::vector<std::vector<double>> values(7);  // the six recalls and RSUM
  for (int64_t b = 0; b < s.samples; ++b) {
    RetrievalOutcomes drawn;
    for (int64_t n = 0; n < 37; ++n) {
      const int64_t i = rng.below(37);
      for (size_t c = 0; c < caption_image.size(); ++c)
        if (caption_image[c] == i) drawn.image_retrieval.push_back(o.image_retrieval[c]);
      drawn.text_retrieval.push_back(o.text_retrieval[i]);
    }
    const RetrievalMetrics m = summarise(drawn);
    const double v[6] = {m.image_retrieval.r1, m.image_retrieval.r5, m.image_retrieval.r10,
                         m.text_retrieval.r1,  m.text_retrieval.r5,  m.text_retrieval.r10};
    for (int k = 0; k < 6; ++k) values[k].push_back(v[k]);
    values[6].push_back(v[0] + v[1] + v[2] + v[3] + v[4] + v[5]);
  }
  ASSERT_EQ(fast.size(), 7u);
  for (int k = 0; k < 7; ++k) {
    const std::string name = k < 6 ? recall_names()[k] : "rsum";
    std::sort(values[k].begin(), values[k].end());
    // 5 % and 95 % points, linearly interpolated: positions 0.05 * 199 and 0.95 * 199.
    auto at = [&](double pos) {
      const size_t lo = static_cast<size_t>(pos);
      return values[k][lo] + (pos - lo) * (values[k][lo + 1] - values[k][lo]);
    };
    EXPECT_NEAR(fast[k].low, at(0.05 * 199), 1e-9) << name;
    EXPECT_NEAR(fast[k].high, at(0.95 * 199), 1e-9) << name;
    EXPECT_LT(fast[k].low, fast[k].high) << name;
  }
}

// A mean over captions (true@1's per-caption hits) resampled as the recalls are: fed the
// captions' R@1 it gives image_r1's interval exactly; constant values give a point.
TEST(Bootstrap, CaptionMeanUsesTheRecallsResamplings) {
  std::vector<int64_t> caption_image;
  const auto o = outcomes(29, 4, [](int64_t c) { return c % 3 == 0 || c % 11 == 0; }, [](int64_t i) { return i % 2 == 0; },
                          &caption_image);
  BootstrapSettings s;
  s.samples = 300, s.seed = 5;
  std::vector<double> r1;
  for (const auto& q : o.image_retrieval) r1.push_back(q.r1);
  const Interval mean = bootstrap_caption_mean(r1, caption_image, 29, s);
  const Interval image_r1 = bootstrap_intervals(o, caption_image, s)[0];
  EXPECT_NEAR(mean.low, image_r1.low, 1e-9);
  EXPECT_NEAR(mean.high, image_r1.high, 1e-9);
  EXPECT_LT(mean.low, mean.high);
  const Interval constant = bootstrap_caption_mean(std::vector<double>(r1.size(), 0.25), caption_image, 29, s);
  EXPECT_NEAR(constant.low, 25.0, 1e-9);
  EXPECT_NEAR(constant.high, 25.0, 1e-9);
  EXPECT_THROW(bootstrap_caption_mean(std::vector<double>(3, 0.0), caption_image, 29, s), Error);
}

// The paired caption mean of the captions' R@1 is paired_bootstrap's image_r1 row: the same
// draws, the same difference, the same share not better.
TEST(Bootstrap, PairedCaptionMeansMatchThePairedRecall) {
  std::vector<int64_t> caption_image;
  const auto oa = outcomes(31, 3, [](int64_t c) { return c % 4 == 0; }, [](int64_t i) { return i % 3 == 0; }, &caption_image);
  const auto ob = outcomes(31, 3, [](int64_t c) { return c % 3 == 0 || c % 5 == 0; }, [](int64_t i) { return i % 2 == 0; },
                           &caption_image);
  BootstrapSettings s;
  s.samples = 250, s.seed = 9;
  auto r1 = [](const RetrievalOutcomes& o) {
    std::vector<double> v;
    for (const auto& q : o.image_retrieval) v.push_back(q.r1);
    return v;
  };
  const PairedDifference got = paired_caption_means({r1(oa)}, {r1(ob)}, caption_image, 31, s);
  const PairedDifference want = paired_bootstrap(oa, ob, caption_image, s).front();
  EXPECT_NEAR(got.a, want.a, 1e-9);
  EXPECT_NEAR(got.b, want.b, 1e-9);
  EXPECT_NEAR(got.interval.low, want.interval.low, 1e-9);
  EXPECT_NEAR(got.interval.high, want.interval.high, 1e-9);
  EXPECT_NEAR(got.share_not_better, want.share_not_better, 1e-12);
  const PairedDifference same = paired_caption_means({r1(oa)}, {r1(oa)}, caption_image, 31, s);
  EXPECT_EQ(same.delta, 0.0);
  EXPECT_EQ(same.share_not_better, 1.0);
}

// One caption per image, 30 % hits: the bootstrap's 95 % interval is about 2 x 1.96 binomial
// standard errors wide, sqrt(0.3 x 0.7 / 400) = 2.29 points each.
TEST(Bootstrap, WidthFollowsTheBinomialStandardError) {
  std::vector<int64_t> caption_image;
  const auto o = outcomes(400, 1, [](int64_t c) { return c % 10 < 3; }, [](int64_t i) { return i % 10 < 3; }, &caption_image);
  BootstrapSettings s;
  s.samples = 4000;
  const auto iv = bootstrap_intervals(o, caption_image, s);
  const double expected = 2 * 1.96 * 100 * std::sqrt(0.3 * 0.7 / 400);
  EXPECT_NEAR(width(iv[0]), expected, 0.12 * expected);
  EXPECT_LT(iv[0].low, 30.0);
  EXPECT_GT(iv[0].high, 30.0);
}

// Five captions that share their image's outcome are one observation, not five: image R@1's
// interval is as wide as text R@1's (same outcomes per image, same draws), not sqrt(5) narrower.
TEST(Bootstrap, CaptionsOfOneImageAreResampledTogether) {
  std::vector<int64_t> caption_image;
  auto hit = [](int64_t i) { return i % 10 < 4; };
  const auto o = outcomes(200, 5, [&](int64_t c) { return hit(c / 5); }, hit, &caption_image);
  const auto iv = bootstrap_intervals(o, caption_image, BootstrapSettings{});
  EXPECT_NEAR(iv[0].low, iv[3].low, 1e-9);
  EXPECT_NEAR(iv[0].high, iv[3].high, 1e-9);
  const double per_caption = 2 * 1.96 * 100 * std::sqrt(0.4 * 0.6 / 1000);  // what treating captions as independent gives
  EXPECT_GT(width(iv[0]), 1.8 * per_caption);
}

TEST(Bootstrap, PairedDifferencesSeeASmallGainTheSeparateIntervalsMiss) {
  std::vector<int64_t> caption_image;
  auto base = [](int64_t c) { return (c * 7919) % 100 < 40; };
  const auto a = outcomes(1000, 1, base, base, &caption_image);
  // B: A's hits and 20 more (2 points): the easy and hard images are the same for both.
  std::set<int64_t> extra;
  for (int64_t c = 0; extra.size() < 20; c += 13)
    if (!base(c)) extra.insert(c);
  auto better = [&](int64_t c) { return base(c) || extra.count(c) > 0; };
  const auto b = outcomes(1000, 1, better, base, &caption_image);
  BootstrapSettings s;
  const auto same = paired_bootstrap(a, a, caption_image, s);
  ASSERT_EQ(same.size(), 7u);  // six recalls and RSUM
  for (const auto& d : same) {
    EXPECT_EQ(d.delta, 0.0) << d.metric;
    EXPECT_EQ(d.interval.low, 0.0) << d.metric;
    EXPECT_EQ(d.interval.high, 0.0) << d.metric;
    EXPECT_EQ(d.share_not_better, 1.0) << d.metric;
  }
  const auto diff = paired_bootstrap(a, b, caption_image, s);
  EXPECT_EQ(diff[0].metric, "image_r1");
  const double gain = diff[0].delta;
  EXPECT_NEAR(gain, 2.0, 1e-9);
  EXPECT_GT(diff[0].interval.low, 0.0);
  EXPECT_LT(diff[0].interval.high, 2 * gain);
  EXPECT_EQ(diff[0].share_not_better, 0.0);
  EXPECT_EQ(diff[3].delta, 0.0);  // text retrieval unchanged
  // Separately, A's and B's intervals overlap: only pairing tells them apart.
  const auto ia = bootstrap_intervals(a, caption_image, s), ib = bootstrap_intervals(b, caption_image, s);
  EXPECT_GT(ia[0].high, ib[0].low);
}

// RSUM's interval is the quantiles of the six differences summed in each resampling - not the
// sum of the six intervals: the naive version resamples both results' query lists by hand.
TEST(Bootstrap, PairedRsumSumsTheSixInEachResampling) {
  std::vector<int64_t> map;
  const auto a = outcomes(41, 2, [](int64_t c) { return c % 4 == 0; }, [](int64_t i) { return i % 3 == 0; }, &map);
  const auto b = outcomes(41, 2, [](int64_t c) { return c % 3 == 0; }, [](int64_t i) { return i % 5 < 2; }, &map);
  BootstrapSettings s;
  s.samples = 300, s.seed = 9;
  const auto fast = paired_bootstrap(a, b, map, s);
  ASSERT_EQ(fast.size(), 7u);
  EXPECT_EQ(fast[6].metric, "rsum");
  double sum_delta = 0, sum_a = 0, sum_widths = 0;
  for (size_t k = 0; k < 6; ++k) sum_delta += fast[k].delta, sum_a += fast[k].a, sum_widths += width(fast[k].interval);
  EXPECT_NEAR(fast[6].delta, sum_delta, 1e-9);
  EXPECT_NEAR(fast[6].a, sum_a, 1e-9);
  Rng rng(s.seed);
  std::vector<double> rsum;
  auto total = [](const RetrievalMetrics& m) {
    return m.image_retrieval.r1 + m.image_retrieval.r5 + m.image_retrieval.r10 + m.text_retrieval.r1 +
           m.text_retrieval.r5 + m.text_retrieval.r10;
  };
  for (int64_t n = 0; n < s.samples; ++n) {
    RetrievalOutcomes da, db;
    for (int64_t k = 0; k < 41; ++k) {
      const int64_t i = rng.below(41);
      for (size_t c = 0; c < map.size(); ++c)
        if (map[c] == i) da.image_retrieval.push_back(a.image_retrieval[c]), db.image_retrieval.push_back(b.image_retrieval[c]);
      da.text_retrieval.push_back(a.text_retrieval[i]), db.text_retrieval.push_back(b.text_retrieval[i]);
    }
    rsum.push_back(total(summarise(db)) - total(summarise(da)));
  }
  const double not_better = static_cast<double>(std::count_if(rsum.begin(), rsum.end(), [](double x) { return x <= 0; }));
  EXPECT_NEAR(fast[6].share_not_better, not_better / s.samples, 1e-12);
  EXPECT_NEAR(fast[6].interval.low, quantile(rsum, 0.025), 1e-9);
  EXPECT_NEAR(fast[6].interval.high, quantile(rsum, 0.975), 1e-9);
  EXPECT_LT(width(fast[6].interval), sum_widths);  // the six move together in part, and apart in part
}

// Groups of runs (a study cell's seeds): the means' difference; a group of one run is the
// single comparison, and two equal runs average to the same.
TEST(Bootstrap, PairedGroupsCompareTheirMeans) {
  std::vector<int64_t> caption_image;
  auto base = [](int64_t c) { return (c * 7919) % 100 < 40; };
  auto other = [](int64_t c) { return (c * 104729) % 100 < 30; };
  const auto a1 = outcomes(500, 2, base, base, &caption_image), a2 = outcomes(500, 2, other, other, &caption_image);
  auto plus = [](const std::function<bool(int64_t)>& f) { return [f](int64_t c) { return f(c) || c % 40 == 3; }; };
  const auto b1 = outcomes(500, 2, plus(base), base, &caption_image), b2 = outcomes(500, 2, plus(other), other, &caption_image);
  BootstrapSettings s;
  const auto one = paired_bootstrap(a1, b1, caption_image, s);
  const auto group_of_one = paired_bootstrap(std::vector<RetrievalOutcomes>{a1}, {b1}, caption_image, s);
  const auto doubled = paired_bootstrap(std::vector<RetrievalOutcomes>{a1, a1}, {b1, b1}, caption_image, s);
  for (size_t k = 0; k < 6; ++k) {
    EXPECT_EQ(one[k].delta, group_of_one[k].delta);
    EXPECT_EQ(one[k].interval.low, group_of_one[k].interval.low);
    EXPECT_NEAR(one[k].interval.low, doubled[k].interval.low, 1e-9);
    EXPECT_NEAR(one[k].interval.high, doubled[k].interval.high, 1e-9);
  }
  const auto both = paired_bootstrap(std::vector<RetrievalOutcomes>{a1, a2}, {b1, b2}, caption_image, s);
  const auto second = paired_bootstrap(a2, b2, caption_image, s);
  EXPECT_NEAR(both[0].delta, (one[0].delta + second[0].delta) / 2, 1e-9);
  EXPECT_NEAR(both[0].a, (one[0].a + second[0].a) / 2, 1e-9);
  EXPECT_GT(both[0].interval.low, 0.0);
  EXPECT_THROW(paired_bootstrap(std::vector<RetrievalOutcomes>{}, {b1}, caption_image, s), Error);
}

// The same runs in another order are the same group: every resampling is a tie, which counts as
// "not better" (share 1) even where the two means, summed in different orders, differ by rounding.
TEST(Bootstrap, TiesOfGroupsSummedInAnotherOrderAreNotWins) {
  std::vector<int64_t> caption_image;
  std::vector<RetrievalOutcomes> runs;
  std::vector<std::vector<double>> hits;
  for (int64_t r = 0; r < 3; ++r) {
    runs.push_back(outcomes(
        97, 3, [r](int64_t c) { return (c * (7 + 2 * r)) % 10 < 3 + r; }, [r](int64_t i) { return (i + r) % 3 == 0; },
        &caption_image));
    hits.emplace_back();
    for (const auto& q : runs.back().image_retrieval) hits.back().push_back(q.r1);
  }
  const std::vector<RetrievalOutcomes> reordered{runs[2], runs[0], runs[1]};
  BootstrapSettings s;
  s.samples = 400;
  for (const auto& d : paired_bootstrap(runs, reordered, caption_image, s)) {
    EXPECT_EQ(d.share_not_better, 1.0) << d.metric;
    EXPECT_NEAR(d.interval.low, 0.0, 1e-9) << d.metric;
    EXPECT_NEAR(d.interval.high, 0.0, 1e-9) << d.metric;
  }
  const PairedDifference t = paired_caption_means(hits, {hits[1], hits[2], hits[0]}, caption_image, 97, s);
  EXPECT_EQ(t.share_not_better, 1.0);
  EXPECT_NEAR(t.delta, 0.0, 1e-9);
}

// COCO 1k: folds scored apart, reported as the mean of their recalls. Each resampling draws every
// fold's images within it (fold 0's, then fold 1's, from one generator); the naive version builds
// the resampled folds and averages their summaries.
TEST(Bootstrap, FoldMeansResampleWithinEachFold) {
  std::vector<int64_t> map0, map1;
  const auto f0 = outcomes(23, 2, [](int64_t c) { return c % 3 == 0; }, [](int64_t i) { return i % 2 == 0; }, &map0);
  const auto f1 = outcomes(31, 3, [](int64_t c) { return c % 5 < 2; }, [](int64_t i) { return i % 4 == 0; }, &map1);
  BootstrapSettings s;
  s.samples = 150, s.seed = 5;
  const auto fast = bootstrap_fold_mean({f0, f1}, {map0, map1}, s);
  Rng rng(s.seed);
  std::vector<std::vector<double>> values(6);
  auto resampled = [&](const RetrievalOutcomes& o, const std::vector<int64_t>& map, int64_t n) {
    RetrievalOutcomes drawn;
    for (int64_t k = 0; k < n; ++k) {
      const int64_t i = rng.below(n);
      for (size_t c = 0; c < map.size(); ++c)
        if (map[c] == i) drawn.image_retrieval.push_back(o.image_retrieval[c]);
      drawn.text_retrieval.push_back(o.text_retrieval[i]);
    }
    return summarise(drawn);
  };
  for (int64_t b = 0; b < s.samples; ++b) {
    const RetrievalMetrics m0 = resampled(f0, map0, 23), m1 = resampled(f1, map1, 31);
    const double v[6] = {m0.image_retrieval.r1 + m1.image_retrieval.r1, m0.image_retrieval.r5 + m1.image_retrieval.r5,
                         m0.image_retrieval.r10 + m1.image_retrieval.r10, m0.text_retrieval.r1 + m1.text_retrieval.r1,
                         m0.text_retrieval.r5 + m1.text_retrieval.r5, m0.text_retrieval.r10 + m1.text_retrieval.r10};
    for (int k = 0; k < 6; ++k) values[k].push_back(v[k] / 2);
  }
  for (int k = 0; k < 6; ++k) {
    EXPECT_NEAR(fast[k].low, quantile(values[k], 0.025), 1e-9) << recall_names()[k];
    EXPECT_NEAR(fast[k].high, quantile(values[k], 0.975), 1e-9) << recall_names()[k];
  }
  // Paired: a fold-mean result against itself differs by nothing; folds must match.
  for (const auto& d : paired_fold_mean({f0, f1}, {f0, f1}, {map0, map1}, s)) EXPECT_EQ(d.interval.high, 0.0) << d.metric;
  EXPECT_THROW(paired_fold_mean({f0, f1}, {f0}, {map0, map1}, s), Error);
  EXPECT_THROW(paired_fold_mean({f0, f1}, {f1, f0}, {map0, map1}, s), Error);
}

TEST(Bootstrap, MismatchedResultsAreErrors) {
  std::vector<int64_t> ci_a, ci_b;
  const auto a = outcomes(10, 2, [](int64_t) { return true; }, [](int64_t) { return true; }, &ci_a);
  const auto b = outcomes(12, 2, [](int64_t) { return true; }, [](int64_t) { return true; }, &ci_b);
  EXPECT_THROW(paired_bootstrap(a, b, ci_a, BootstrapSettings{}), Error);
  EXPECT_THROW(bootstrap_intervals(a, ci_b, BootstrapSettings{}), Error);
  BootstrapSettings one;
  one.samples = 1;
  EXPECT_THROW(bootstrap_intervals(a, ci_a, one), Error);
}

}  // namespace
}  // namespace mmt
