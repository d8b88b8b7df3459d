/* Bootstrap intervals and paired comparisons of retrieval recalls (see bootstrap.h). */
#include "mmt/eval/bootstrap.h"

#include <algorithm>
#include <array>

#include "mmt/util/error.h"
#include "mmt/util/rng.h"

namespace mmt {

const std::vector<std::string>& recall_names() {
  static const std::vector<std::string> names{"image_r1", "image_r5", "image_r10", "text_r1", "text_r5", "text_r10"};
  return names;
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
  const RetrievalMetrics m = summarise(o);
  return {m.image_retrieval.r1, m.image_retrieval.r5, m.image_retrieval.r10,
          m.text_retrieval.r1,  m.text_retrieval.r5,  m.text_retrieval.r10};
}

}  // namespace

std::vector<Interval> bootstrap_intervals(const RetrievalOutcomes& outcomes, const std::vector<int64_t>& caption_image,
                                          const BootstrapSettings& s) {
  check(s);
  const PerImage p = per_image(outcomes, caption_image);
  std::vector<std::vector<double>> values(6);
  std::vector<int64_t> counts(p.captions.size());
  Rng rng(s.seed);
  for (int64_t b = 0; b < s.samples; ++b) {
    draw(rng, counts);
    const Recalls r = recalls(p, counts);
    for (size_t k = 0; k < 6; ++k) values[k].push_back(r[k]);
  }
  std::vector<Interval> out;
  const double tail = (1.0 - s.level) / 2;
  for (auto& v : values) out.push_back({quantile(v, tail), quantile(v, 1.0 - tail)});
  return out;
}

std::vector<PairedDifference> paired_bootstrap(const RetrievalOutcomes& a, const RetrievalOutcomes& b,
                                               const std::vector<int64_t>& caption_image, const BootstrapSettings& s) {
  return paired_bootstrap(std::vector<RetrievalOutcomes>{a}, std::vector<RetrievalOutcomes>{b}, caption_image, s);
}

std::vector<PairedDifference> paired_bootstrap(const std::vector<RetrievalOutcomes>& a,
                                               const std::vector<RetrievalOutcomes>& b,
                                               const std::vector<int64_t>& caption_image, const BootstrapSettings& s) {
  check(s);
  if (a.empty() || b.empty()) throw Error("paired bootstrap: a group without results");
  for (const auto* group : {&a, &b})
    for (const auto& o : *group)
      if (o.image_retrieval.size() != a[0].image_retrieval.size() || o.text_retrieval.size() != a[0].text_retrieval.size())
        throw Error("paired bootstrap: the results are of different test sets (" + std::to_string(a[0].text_retrieval.size()) +
                    " images x " + std::to_string(a[0].image_retrieval.size()) + " captions against " +
                    std::to_string(o.text_retrieval.size()) + " x " + std::to_string(o.image_retrieval.size()) + ")");
  auto prepare = [&](const std::vector<RetrievalOutcomes>& group) {
    std::vector<PerImage> p;
    for (const auto& o : group) p.push_back(per_image(o, caption_image));
    return p;
  };
  const std::vector<PerImage> pa = prepare(a), pb = prepare(b);
  // A group's recalls: the mean over its runs, each run with the same resampled images.
  auto mean = [](const std::vector<PerImage>& group, const std::vector<int64_t>& counts) {
    Recalls m{};
    for (const auto& p : group) {
      const Recalls r = recalls(p, counts);
      for (size_t k = 0; k < m.size(); ++k) m[k] += r[k] / static_cast<double>(group.size());
    }
    return m;
  };
  std::vector<std::vector<double>> deltas(6);
  std::vector<int64_t> counts(pa[0].captions.size());
  Rng rng(s.seed);
  for (int64_t n = 0; n < s.samples; ++n) {
    draw(rng, counts);  // the same images for every run
    const Recalls ra = mean(pa, counts), rb = mean(pb, counts);
    for (size_t k = 0; k < 6; ++k) deltas[k].push_back(rb[k] - ra[k]);
  }
  auto point_mean = [](const std::vector<RetrievalOutcomes>& group) {
    Recalls m{};
    for (const auto& o : group) {
      const Recalls r = point(o);
      for (size_t k = 0; k < m.size(); ++k) m[k] += r[k] / static_cast<double>(group.size());
    }
    return m;
  };
  const Recalls va = point_mean(a), vb = point_mean(b);
  const double tail = (1.0 - s.level) / 2;
  std::vector<PairedDifference> out;
  for (size_t k = 0; k < 6; ++k) {
    PairedDifference d;
    d.metric = recall_names()[k];
    d.a = va[k], d.b = vb[k], d.delta = vb[k] - va[k];
    d.share_not_better = static_cast<double>(std::count_if(deltas[k].begin(), deltas[k].end(), [](double x) { return x <= 0; })) /
                         static_cast<double>(deltas[k].size());
    d.interval = {quantile(deltas[k], tail), quantile(deltas[k], 1.0 - tail)};
    out.push_back(d);
  }
  return out;
}

}  // namespace mmt
