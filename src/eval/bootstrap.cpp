/* Bootstrap intervals and paired comparisons of retrieval recalls (see bootstrap.h). */
#include "mmt/eval/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "mmt/util/error.h"
#include "mmt/util/rng.h"

namespace mmt {

const std::vector<std::string>& recall_names() {
  static const std::vector<std::string> names{"image_r1", "image_r5", "image_r10", "text_r1", "text_r5", "text_r10"};
  return names;
}

std::vector<double> recall_values(const RetrievalMetrics& m) {
  return {m.image_retrieval.r1, m.image_retrieval.r5, m.image_retrieval.r10,
          m.text_retrieval.r1,  m.text_retrieval.r5,  m.text_retrieval.r10};
}

std::pair<double, double> mean_std(const std::vector<double>& v) {
  if (v.empty()) return {NAN, NAN};
  double m = 0;
  for (double x : v) m += x;
  m /= static_cast<double>(v.size());
  if (v.size() < 2) return {m, 0.0};
  double ss = 0;
  for (double x : v) ss += (x - m) * (x - m);
  return {m, std::sqrt(ss / static_cast<double>(v.size() - 1))};
}

double quantile(std::vector<double>& values, double q) {
  if (values.empty()) throw Error("quantile of no values");
  std::sort(values.begin(), values.end());
  const double pos = std::clamp(q, 0.0, 1.0) * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(pos);
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

namespace {

using Values = std::vector<double>;  // one resampling's value per column

// What a resampling needs of each image of one evaluated fold: per column, its captions' summed
// per-caption values (the first `caption_columns`: means over captions, as image retrieval's
// recalls or true@1) or its own value (the rest: means over images, as text retrieval's), and how
// many captions it has.
struct PerImage {
  size_t columns = 0, caption_columns = 0;
  std::vector<double> sums;  // image-major: sums[i * columns + k]
  std::vector<double> captions;
};

PerImage per_image_shape(size_t ni, size_t columns, size_t caption_columns) {
  if (ni == 0) throw Error("bootstrap: a test set without images");
  return {columns, caption_columns, std::vector<double>(ni * columns, 0.0), std::vector<double>(ni, 0.0)};
}

int64_t image_of(const std::vector<int64_t>& caption_image, size_t c, size_t ni) {
  const int64_t i = caption_image[c];
  if (i < 0 || static_cast<size_t>(i) >= ni)
    throw Error("bootstrap: caption " + std::to_string(c) + " belongs to image " + std::to_string(i) + " of " +
                std::to_string(ni));
  return i;
}

// The six recalls (recall_names() order): three caption columns, three image columns.
PerImage per_image(const RetrievalOutcomes& o, const std::vector<int64_t>& caption_image) {
  const size_t ni = o.text_retrieval.size();
  PerImage p = per_image_shape(ni, 6, 3);
  if (caption_image.size() != o.image_retrieval.size())
    throw Error("bootstrap: " + std::to_string(caption_image.size()) + " caption -> image entries for " +
                std::to_string(o.image_retrieval.size()) + " captions");
  for (size_t c = 0; c < caption_image.size(); ++c) {
    const size_t i = static_cast<size_t>(image_of(caption_image, c, ni));
    const QueryOutcome& q = o.image_retrieval[c];
    p.sums[i * 6 + 0] += q.r1, p.sums[i * 6 + 1] += q.r5, p.sums[i * 6 + 2] += q.r10;
    p.captions[i] += 1;
  }
  for (size_t i = 0; i < ni; ++i) {
    const QueryOutcome& q = o.text_retrieval[i];
    p.sums[i * 6 + 3] = q.r1, p.sums[i * 6 + 4] = q.r5, p.sums[i * 6 + 5] = q.r10;
  }
  return p;
}

// One value per caption (true@1's hit): one caption column.
PerImage per_image(const std::vector<double>& per_caption, const std::vector<int64_t>& caption_image, int64_t ni) {
  if (ni <= 0 || per_caption.size() != caption_image.size())
    throw Error("bootstrap: " + std::to_string(per_caption.size()) + " caption values for " +
                std::to_string(caption_image.size()) + " captions of " + std::to_string(ni) + " images");
  PerImage p = per_image_shape(static_cast<size_t>(ni), 1, 1);
  for (size_t c = 0; c < caption_image.size(); ++c) {
    const size_t i = static_cast<size_t>(image_of(caption_image, c, p.captions.size()));
    p.sums[i] += per_caption[c], p.captions[i] += 1;
  }
  return p;
}

// The values (percent) of the test set in which image i appears counts[i] times.
Values values(const PerImage& p, const std::vector<int64_t>& counts) {
  Values r(p.columns, 0.0);
  double captions = 0, images = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (!counts[i]) continue;
    const double w = static_cast<double>(counts[i]);
    for (size_t k = 0; k < p.columns; ++k) r[k] += w * p.sums[i * p.columns + k];
    captions += w * p.captions[i], images += w;
  }
  for (size_t k = 0; k < p.columns; ++k) r[k] *= 100.0 / (k < p.caption_columns ? std::max(1.0, captions) : images);
  return r;
}

// One resampling: n images drawn with replacement, as counts.
void draw(Rng& rng, std::vector<int64_t>& counts) {
  std::fill(counts.begin(), counts.end(), 0);
  const int64_t n = static_cast<int64_t>(counts.size());
  for (int64_t k = 0; k < n; ++k) ++counts[rng.below(n)];
}

void check(const BootstrapSettings& s) {
  if (s.samples < 2) throw Error("bootstrap: need at least 2 resamplings, got " + std::to_string(s.samples));
  if (!(s.level > 0 && s.level < 1)) throw Error("bootstrap: the interval's level must lie in (0, 1)");
}

// One evaluated run: its folds (one test set, or COCO 1k's five), reported as the mean of their
// values. A group: runs whose values are averaged (a study cell's seeds).
using Run = std::vector<PerImage>;
using Group = std::vector<Run>;

// Every run's folds, checked to be of the sizes of `reference`'s (the first run compared).
Group prepare(const std::vector<std::vector<RetrievalOutcomes>>& runs, const std::vector<std::vector<int64_t>>& maps,
              const std::vector<RetrievalOutcomes>& reference) {
  if (runs.empty()) throw Error("bootstrap: a group without results");
  Group g;
  for (const auto& folds : runs) {
    if (folds.size() != maps.size() || folds.size() != reference.size())
      throw Error("bootstrap: " + std::to_string(folds.size()) + " folds against " + std::to_string(maps.size()) +
                  " maps and " + std::to_string(reference.size()) + " folds compared");
    Run r;
    for (size_t f = 0; f < folds.size(); ++f) {
      const auto &o = folds[f], &ref = reference[f];
      if (o.image_retrieval.size() != ref.image_retrieval.size() || o.text_retrieval.size() != ref.text_retrieval.size())
        throw Error("bootstrap: the results are of different test sets (" + std::to_string(ref.text_retrieval.size()) +
                    " images x " + std::to_string(ref.image_retrieval.size()) + " captions against " +
                    std::to_string(o.text_retrieval.size()) + " x " + std::to_string(o.image_retrieval.size()) + ")");
      r.push_back(per_image(o, maps[f]));
    }
    g.push_back(std::move(r));
  }
  return g;
}

// Runs of one fold given by one value per caption.
Group prepare(const std::vector<std::vector<double>>& runs, const std::vector<int64_t>& caption_image, int64_t ni) {
  if (runs.empty()) throw Error("bootstrap: a group without results");
  Group g;
  for (const auto& v : runs) g.push_back({per_image(v, caption_image, ni)});
  return g;
}

// A group's values when fold f's image i appears counts[f][i] times: the mean over its runs of
// the mean over their folds.
Values value(const Group& g, const std::vector<std::vector<int64_t>>& counts) {
  Values m(g.front().front().columns, 0.0);
  for (const auto& run : g)
    for (size_t f = 0; f < run.size(); ++f) {
      const Values r = values(run[f], counts[f]);
      for (size_t k = 0; k < m.size(); ++k) m[k] += r[k] / static_cast<double>(g.size() * run.size());
    }
  return m;
}

// The same with every image once: the group's own values.
Values value(const Group& g) {
  std::vector<std::vector<int64_t>> all;
  for (const auto& fold : g.front()) all.emplace_back(fold.captions.size(), 1);
  return value(g, all);
}

// The six recalls as the evaluation reported them (summarise), averaged as value() does.
Values point_value(const std::vector<std::vector<RetrievalOutcomes>>& runs) {
  Values m(6, 0.0);
  for (const auto& folds : runs)
    for (const auto& o : folds) {
      const std::vector<double> r = recall_values(summarise(o));
      for (size_t k = 0; k < m.size(); ++k) m[k] += r[k] / static_cast<double>(runs.size() * folds.size());
    }
  return m;
}

// `samples` resamplings - every fold's images drawn within it, the same draws for every run of
// both groups - of value(b) - value(a), or of value(b) alone when `a` is empty: each column, then
// with `sum` (RSUM) the columns' sum, in each resampling.
std::vector<std::vector<double>> resample(const Group& a, const Group& b, const BootstrapSettings& s, bool sum) {
  std::vector<std::vector<int64_t>> counts;
  for (const auto& fold : b.front()) counts.emplace_back(fold.captions.size());
  const size_t columns = b.front().front().columns;
  std::vector<std::vector<double>> out(columns + (sum ? 1 : 0));
  Rng rng(s.seed);
  for (int64_t n = 0; n < s.samples; ++n) {
    for (auto& c : counts) draw(rng, c);
    const Values vb = value(b, counts);
    const Values va = a.empty() ? Values(columns, 0.0) : value(a, counts);
    if (sum) out[columns].push_back(0.0);
    for (size_t k = 0; k < columns; ++k) {
      out[k].push_back(vb[k] - va[k]);
      if (sum) out[columns].back() += vb[k] - va[k];
    }
  }
  return out;
}

Interval central(std::vector<double>& values, double level) {
  const double tail = (1.0 - level) / 2;
  return {quantile(values, tail), quantile(values, 1.0 - tail)};
}

// B - A with its resampled differences: the interval and the share of resamplings B did not win.
// A tie counts as not better; a tie of two means summed in different orders (groups of runs) can
// come out as +-1e-14, so differences within kTie of 0 are ties (the smallest real difference, one
// caption of 25,000 in one of 10 runs, is 4e-5 points).
PairedDifference difference(std::string metric, double a, double b, std::vector<double>& deltas, double level) {
  constexpr double kTie = 1e-9;
  PairedDifference d;
  d.metric = std::move(metric);
  d.a = a, d.b = b, d.delta = b - a;
  d.share_not_better = static_cast<double>(std::count_if(deltas.begin(), deltas.end(), [](double x) { return x <= kTie; })) /
                       static_cast<double>(deltas.size());
  d.interval = central(deltas, level);
  return d;
}

}  // namespace

std::vector<PairedDifference> paired_bootstrap_groups(const std::vector<std::vector<RetrievalOutcomes>>& a,
                                                      const std::vector<std::vector<RetrievalOutcomes>>& b,
                                                      const std::vector<std::vector<int64_t>>& maps,
                                                      const BootstrapSettings& s) {
  check(s);
  if (a.empty() || a.front().empty()) throw Error("bootstrap: a group without results");
  const Group ga = prepare(a, maps, a.front()), gb = prepare(b, maps, a.front());
  auto deltas = resample(ga, gb, s, true);
  const Values va = point_value(a), vb = point_value(b);
  std::vector<PairedDifference> out;
  for (size_t k = 0; k < 6; ++k) out.push_back(difference(recall_names()[k], va[k], vb[k], deltas[k], s.level));
  out.push_back(difference("rsum", std::accumulate(va.begin(), va.end(), 0.0), std::accumulate(vb.begin(), vb.end(), 0.0),
                           deltas[6], s.level));
  return out;
}

std::vector<Interval> bootstrap_intervals(const RetrievalOutcomes& outcomes, const std::vector<int64_t>& caption_image,
                                          const BootstrapSettings& s) {
  return bootstrap_fold_mean({outcomes}, {caption_image}, s);
}

std::vector<Interval> bootstrap_fold_mean(const std::vector<RetrievalOutcomes>& folds,
                                          const std::vector<std::vector<int64_t>>& maps, const BootstrapSettings& s) {
  check(s);
  if (folds.empty()) throw Error("bootstrap: no folds");
  auto values = resample({}, prepare({folds}, maps, folds), s, true);
  std::vector<Interval> out;
  for (auto& v : values) out.push_back(central(v, s.level));
  return out;
}

Interval bootstrap_caption_mean(const std::vector<double>& per_caption, const std::vector<int64_t>& caption_image,
                                int64_t num_images, const BootstrapSettings& s) {
  check(s);
  auto values = resample({}, prepare({per_caption}, caption_image, num_images), s, false);
  return central(values[0], s.level);  // the recalls' draws: resampling k here is resampling k there
}

PairedDifference paired_caption_means(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                                      const std::vector<int64_t>& caption_image, int64_t num_images,
                                      const BootstrapSettings& s) {
  check(s);
  const Group ga = prepare(a, caption_image, num_images), gb = prepare(b, caption_image, num_images);
  auto deltas = resample(ga, gb, s, false);
  return difference("", value(ga)[0], value(gb)[0], deltas[0], s.level);
}

std::vector<PairedDifference> paired_bootstrap(const RetrievalOutcomes& a, const RetrievalOutcomes& b,
                                               const std::vector<int64_t>& caption_image, const BootstrapSettings& s) {
  return paired_bootstrap_groups({{a}}, {{b}}, {caption_image}, s);
}

std::vector<PairedDifference> paired_bootstrap(const std::vector<RetrievalOutcomes>& a,
                                               const std::vector<RetrievalOutcomes>& b,
                                               const std::vector<int64_t>& caption_image, const BootstrapSettings& s) {
  if (a.empty() || b.empty()) throw Error("paired bootstrap: a group without results");
  std::vector<std::vector<RetrievalOutcomes>> ga, gb;
  for (const auto& o : a) ga.push_back({o});
  for (const auto& o : b) gb.push_back({o});
  return paired_bootstrap_groups(ga, gb, {caption_image}, s);
}

std::vector<PairedDifference> paired_fold_mean(const std::vector<RetrievalOutcomes>& a,
                                               const std::vector<RetrievalOutcomes>& b,
                                               const std::vector<std::vector<int64_t>>& maps, const BootstrapSettings& s) {
  return paired_bootstrap_groups({a}, {b}, maps, s);
}

}  // namespace mmt
