/* How much of a retrieval result is the luck of the test set: bootstrap intervals of R@K, and
 * paired comparisons of two models on the same test set.
 *
 * The unit resampled is the test image with all its captions (a cluster bootstrap): the five
 * captions of one Flickr30k image are not five independent queries, and resampling captions
 * alone would understate the noise. The gallery stays whole - each query's outcome was ranked
 * against every candidate - so the intervals measure the sampling of queries, not of the
 * gallery, and not the noise of training (seeds: mmt study). A paired comparison resamples the
 * same images for both models, so what they share (the easy images, the hard ones) cancels: two
 * models a point apart can be told apart by a paired interval when their separate intervals
 * overlap. Percentile intervals; deterministic for a given seed. docs/evaluation.md. */
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "mmt/eval/retrieval_metrics.h"

namespace mmt {

struct Interval {
  double low = 0, high = 0;
};

/// The six recalls (percent) as named in eval.json: image_r1, image_r5, image_r10, text_r1, ...
const std::vector<std::string>& recall_names();

struct BootstrapSettings {
  int64_t samples = 1000;  // resamplings of the test images
  double level = 0.95;     // central interval
  uint64_t seed = 0;
};

/// Percentile interval of each recall (recall_names() order), then of RSUM (the six summed), over
/// `s.samples` resamplings of the test images with replacement, each image with all its captions.
std::vector<Interval> bootstrap_intervals(const RetrievalOutcomes& outcomes, const std::vector<int64_t>& caption_image,
                                          const BootstrapSettings& s);

/// The interval of a mean over captions (percent; `per_caption` each caption's value in 0..1, as
/// true@1's hit) under the same resamplings as bootstrap_intervals: the images drawn with
/// replacement, each with all its captions. With the captions' R@1 it is image_r1's interval.
Interval bootstrap_caption_mean(const std::vector<double>& per_caption, const std::vector<int64_t>& caption_image,
                                int64_t num_images, const BootstrapSettings& s);
/// Folds evaluated apart and reported as the mean of their recalls (COCO 1k's five folds of 1,000
/// images): every resampling draws each fold's images within that fold; `maps[f]` is fold f's
/// caption -> image map. The six recalls' intervals and RSUM's, as above.
std::vector<Interval> bootstrap_fold_mean(const std::vector<RetrievalOutcomes>& folds,
                                          const std::vector<std::vector<int64_t>>& maps, const BootstrapSettings& s);

/// B against A on one test set, for one recall: the values (percent), B - A, its interval under
/// paired resampling, and the share of resamplings in which B did not beat A (a one-sided
/// bootstrap p-value for "B is better"). The paired comparisons below give the six recalls in
/// recall_names() order, then "rsum" - their sum (the retrieval literature's RSUM), one verdict for
/// the whole comparison instead of six.
struct PairedDifference {
  std::string metric;
  double a = 0, b = 0, delta = 0;
  Interval interval;
  double share_not_better = 0;
};
std::vector<PairedDifference> paired_bootstrap(const RetrievalOutcomes& a, const RetrievalOutcomes& b,
                                               const std::vector<int64_t>& caption_image, const BootstrapSettings& s);
/// The same for groups of runs of one test set (a study cell's seeds against the base cell's):
/// each group's value is the mean over its runs, every run resampled with the same test images.
/// The interval is the test set's noise of the difference of means, not the seeds' noise.
std::vector<PairedDifference> paired_bootstrap(const std::vector<RetrievalOutcomes>& a,
                                               const std::vector<RetrievalOutcomes>& b,
                                               const std::vector<int64_t>& caption_image, const BootstrapSettings& s);

/// Groups of runs, each run of one or more folds (`maps[f]` fold f's map): B's mean over its runs
/// of the mean over their folds against A's, every fold's images resampled within it and the same
/// draws for every run. The three above are its special cases.
std::vector<PairedDifference> paired_bootstrap_groups(const std::vector<std::vector<RetrievalOutcomes>>& a,
                                                      const std::vector<std::vector<RetrievalOutcomes>>& b,
                                                      const std::vector<std::vector<int64_t>>& maps,
                                                      const BootstrapSettings& s);

/// B against A on the mean over folds (both results of the same folds), paired.
std::vector<PairedDifference> paired_fold_mean(const std::vector<RetrievalOutcomes>& a,
                                               const std::vector<RetrievalOutcomes>& b,
                                               const std::vector<std::vector<int64_t>>& maps, const BootstrapSettings& s);

/// B against A on a mean over captions (true@1), groups of runs of one test set as in
/// paired_bootstrap: each group's value the mean over its runs, the same images drawn for all.
/// `metric` is left empty for the caller to name.
PairedDifference paired_caption_means(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                                      const std::vector<int64_t>& caption_image, int64_t num_images,
                                      const BootstrapSettings& s);
/// A result's six recalls (percent) in recall_names() order.
std::vector<double> recall_values(const RetrievalMetrics& m);

/// mean and sample standard deviation (0 for one value; NaN for none).
std::pair<double, double> mean_std(const std::vector<double>& v);

/// The q-quantile (0..1) of values, linearly interpolated between order statistics (sorts them).
double quantile(std::vector<double>& values, double q);

}  // namespace mmt
