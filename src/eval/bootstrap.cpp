/* Bootstrap intervals and paired comparisons of retrieval recalls (see bootstrap.h). */
#include "mmt/eval/bootstrap.h"

#include <algorithm>
#include <array>
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

using Recalls = std::array<double, 6>;  // recall_names() order

// What a resampling needs of each image: its captions' summed outcomes (image retrieval), its own
// outcome (text retrieval), and how many captions it has.
struct PerImage {
  std::vector<Recalls> sums;
  std::vector<double> captions;
};

PerImage per_image(const RetrievalOutcomes& o, const std::vector<int64_t>& caption_image) {
  const size_t ni = o.text_retrieval.size();
  if (ni == 0) throw Error("bootstrap: a test set without images");
  if (caption_image.size() != o.image_retrieval.size())
    throw Error("bootstrap: " + std::to_string(caption_image.size()) + " caption -> image entries for " +
                std::to_string(o.image_retrieval.size()) + " captions");
  PerImage p;
  p.sums.assign(ni, Recalls{});
  p.captions.assign(ni, 0.0);
  for (size_t c = 0; c < caption_image.size(); ++c) {
    const int64_t i = caption_image[c];
    if (i < 0 || static_cast<size_t>(i) >= ni)
      throw Error("bootstrap: caption " + std::to_string(c) + " belongs to image " + std::to_string(i) + " of " +
                  std::to_string(ni));
    const QueryOutcome& q = o.image_retrieval[c];
    p.sums[i][0] += q.r1, p.sums[i][1] += q.r5, p.sums[i][2] += q.r10;
    p.captions[i] += 1;
  }
  for (size_t i = 0; i < ni; ++i) {
    const QueryOutcome& q = o.text_retrieval[i];
    p.sums[i][3] = q.r1, p.sums[i][4] = q.r5, p.sums[i][5] = q.r10;
  }
  return p;
}

// The recalls (percent) of the test set in which image i appears counts[i] times.
Recalls recalls(const PerImage& p, const std::vector<int64_t>& counts) {
  Recalls r{};
  double captions = 0, images = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    if (!counts[i]) continue;
    const double w = static_cast<double>(counts[i]);
    for (size_t k = 0; k < r.size(); ++k) r[k] += w * p.sums[i][k];
    captions += w * p.captions[i], images += w;
  }
  for (size_t k = 0; k < 3; ++k) r[k] *= 100.0 / std::max(1.0, captions);
  for (size_t k = 3; k < 6; ++k) r[k] *= 100.0 / images;
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

Recalls point(const RetrievalOutcomes& o) {
  const std::vector<double> v = recall_values(summarise(o));
  Recalls r;
  std::copy(v.begin(), v.end(), r.begin());
  return r;
}

// One evaluated run: its folds (one test set, or COCO 1k's five), reported as the mean of their
// recalls. A group: runs whose values are averaged (a study cell's seeds).
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

// A group's recalls when fold f's image i appears counts[f][i] times: the mean over its runs of
// the mean over their folds.
Recalls value(const Group& g, const std::vector<std::vector<int64_t>>& counts) {
  Recalls m{};
  for (const auto& run : g)
    for (size_t f = 0; f < run.size(); ++f) {
      const Recalls r = recalls(run[f], counts[f]);
      for (size_t k = 0; k < m.size(); ++k) m[k] += r[k] / static_cast<double>(g.size() * run.size());
    }
  return m;
}

Recalls point_value(const std::vector<std::vector<RetrievalOutcomes>>& runs) {
  Recalls m{};
  for (const auto& folds : runs)
    for (const auto& o : folds) {
      const Recalls r = point(o);
      for (size_t k = 0; k < m.size(); ++k) m[k] += r[k] / static_cast<double>(runs.size() * folds.size());
    }
  return m;
}

// `samples` resamplings - every fold's images drawn within it, the same draws for every run of
// both groups - of value(b) - value(a), or of value(b) alone when `a` is empty: the six recalls,
// then their sum (RSUM) in each resampling.
std::vector<std::vector<double>> resample(const Group& a, const Group& b, const BootstrapSettings& s) {
  std::vector<std::vector<int64_t>> counts;
  for (const auto& fold : b.front()) counts.emplace_back(fold.captions.size());
  std::vector<std::vector<double>> out(7);
  Rng rng(s.seed);
  for (int64_t n = 0; n < s.samples; ++n) {
    for (auto& c : counts) draw(rng, c);
    const Recalls vb = value(b, counts);
    const Recalls va = a.empty() ? Recalls{} : value(a, counts);
    out[6].push_back(0.0);
    for (size_t k = 0; k < 6; ++k) out[k].push_back(vb[k] - va[k]), out[6].back() += vb[k] - va[k];
  }
  return out;
}

Interval central(std::vector<double>& values, double level) {
  const double tail = (1.0 - level) / 2;
  return {quantile(values, tail), quantile(values, 1.0 - tail)};
}

}  // namespace

std::vector<PairedDifference> paired_bootstrap_groups(const std::vector<std::vector<RetrievalOutcomes>>& a,
                                                      const std::vector<std::vector<RetrievalOutcomes>>& b,
                                                      const std::vector<std::vector<int64_t>>& maps,
                                                      const BootstrapSettings& s) {
  check(s);
  if (a.empty() || a.front().empty()) throw Error("bootstrap: a group without results");
  const Group ga = prepare(a, maps, a.front()), gb = prepare(b, maps, a.front());
  auto deltas = resample(ga, gb, s);
  const Recalls va = point_value(a), vb = point_value(b);
  std::vector<PairedDifference> out;
  for (size_t k = 0; k < deltas.size(); ++k) {
    PairedDifference d;
    d.metric = k < 6 ? recall_names()[k] : "rsum";
    d.a = k < 6 ? va[k] : std::accumulate(va.begin(), va.end(), 0.0);
    d.b = k < 6 ? vb[k] : std::accumulate(vb.begin(), vb.end(), 0.0);
    d.delta = d.b - d.a;
    d.share_not_better = static_cast<double>(std::count_if(deltas[k].begin(), deltas[k].end(), [](double x) { return x <= 0; })) /
                         static_cast<double>(deltas[k].size());
    d.interval = central(deltas[k], s.level);
    out.push_back(d);
  }
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
  auto values = resample({}, prepare({folds}, maps, folds), s);
  std::vector<Interval> out;
  for (auto& v : values) out.push_back(central(v, s.level));
  return out;
}

namespace {

// A per-caption mean's pieces per image: the captions' summed values and their count.
struct CaptionSums {
  std::vector<double> sums, captions;
  double value(const std::vector<int64_t>& counts) const {  // percent, images weighted by counts
    double total = 0, n = 0;
    for (size_t i = 0; i < counts.size(); ++i) total += counts[i] * sums[i], n += counts[i] * captions[i];
    return 100.0 * total / std::max(1.0, n);
  }
};

CaptionSums caption_sums(const std::vector<double>& per_caption, const std::vector<int64_t>& caption_image, int64_t ni) {
  if (ni <= 0 || per_caption.size() != caption_image.size())
    throw Error("bootstrap: " + std::to_string(per_caption.size()) + " caption values for " +
                std::to_string(caption_image.size()) + " captions of " + std::to_string(ni) + " images");
  CaptionSums c{std::vector<double>(static_cast<size_t>(ni), 0.0), std::vector<double>(static_cast<size_t>(ni), 0.0)};
  for (size_t k = 0; k < caption_image.size(); ++k) {
    const int64_t i = caption_image[k];
    if (i < 0 || i >= ni) throw Error("bootstrap: caption " + std::to_string(k) + " belongs to no image");
    c.sums[i] += per_caption[k], c.captions[i] += 1;
  }
  return c;
}

// A group's value: the mean over its runs.
double group_value(const std::vector<CaptionSums>& runs, const std::vector<int64_t>& counts) {
  double v = 0;
  for (const auto& r : runs) v += r.value(counts);
  return v / static_cast<double>(runs.size());
}

}  // namespace

Interval bootstrap_caption_mean(const std::vector<double>& per_caption, const std::vector<int64_t>& caption_image,
                                int64_t num_images, const BootstrapSettings& s) {
  check(s);
  const CaptionSums c = caption_sums(per_caption, caption_image, num_images);
  Rng rng(s.seed);  // the recalls' draws: resampling k here is resampling k there
  std::vector<int64_t> counts(static_cast<size_t>(num_images));
  std::vector<double> values;
  for (int64_t b = 0; b < s.samples; ++b) {
    draw(rng, counts);
    values.push_back(c.value(counts));
  }
  return central(values, s.level);
}

PairedDifference paired_caption_means(const std::vector<std::vector<double>>& a, const std::vector<std::vector<double>>& b,
                                      const std::vector<int64_t>& caption_image, int64_t num_images,
                                      const BootstrapSettings& s) {
  check(s);
  if (a.empty() || b.empty()) throw Error("bootstrap: a group without results");
  std::vector<CaptionSums> ga, gb;
  for (const auto& v : a) ga.push_back(caption_sums(v, caption_image, num_images));
  for (const auto& v : b) gb.push_back(caption_sums(v, caption_image, num_images));
  const std::vector<int64_t> all(static_cast<size_t>(num_images), 1);
  PairedDifference d;
  d.a = group_value(ga, all), d.b = group_value(gb, all), d.delta = d.b - d.a;
  Rng rng(s.seed);
  std::vector<int64_t> counts(static_cast<size_t>(num_images));
  std::vector<double> deltas;
  for (int64_t k = 0; k < s.samples; ++k) {
    draw(rng, counts);
    deltas.push_back(group_value(gb, counts) - group_value(ga, counts));
  }
  d.share_not_better = static_cast<double>(std::count_if(deltas.begin(), deltas.end(), [](double x) { return x <= 0; })) /
                       static_cast<double>(deltas.size());
  d.interval = central(deltas, s.level);
  return d;
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
