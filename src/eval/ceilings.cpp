/* Test set ceilings (see ceilings.h). */
#include "mmt/eval/ceilings.h"

#include <string>

#include "mmt/data/synthetic_world.h"
#include "mmt/util/error.h"

namespace mmt {

namespace {
template <class T, class Match>
std::vector<T> matcher_scores(const synth::TestSet& t, Match match) {
  const size_t ni = t.images.size();
  std::vector<T> s(t.captions.size() * ni);
  for (size_t c = 0; c < t.captions.size(); ++c)
    for (size_t i = 0; i < ni; ++i) s[c * ni + i] = static_cast<T>(match(t.captions[c].content, t.images[i]));
  return s;
}
}  // namespace

std::vector<float> bag_of_words_scores(const synth::TestSet& test) {
  return matcher_scores<float>(test, synth::caption_bag_matches);
}

std::vector<float> truth_scores(const synth::TestSet& test) {
  return matcher_scores<float>(test, synth::caption_true_of);
}

std::vector<double> likelihood_scores(const synth::TestSet& test) {
  return matcher_scores<double>(test, synth::caption_likelihood);
}

Ceilings test_set_ceilings(const synth::TestSet& t) { return test_set_ceilings(t, truth_scores(t)); }

Ceilings test_set_ceilings(const synth::TestSet& t, const std::vector<float>& truth) {
  const int64_t ni = static_cast<int64_t>(t.images.size()), nc = static_cast<int64_t>(t.captions.size());
  if (truth.size() != static_cast<size_t>(nc * ni))
    throw Error("test_set_ceilings: " + std::to_string(truth.size()) + " truth values for " + std::to_string(nc) +
                " captions x " + std::to_string(ni) + " images");
  Ceilings c;
  const std::vector<float> constant(static_cast<size_t>(nc * ni), 0.f), bag = bag_of_words_scores(t);
  c.chance = retrieval_metrics(constant, ni, t.caption_image);
  c.bag_of_words = retrieval_metrics(bag, ni, t.caption_image);
  c.truth = retrieval_metrics(truth, ni, t.caption_image);
  c.true_at_1.chance = r1_any_relevant(constant, truth, ni);
  c.true_at_1.bag_of_words = r1_any_relevant(bag, truth, ni);
  // Image retrieval ranks images by P(caption | image); text retrieval ranks captions by the
  // posterior P(image | caption) = P(caption | image) / sum_j P(caption | image j).
  const auto lik = likelihood_scores(t);
  std::vector<float> by_likelihood(lik.size()), by_posterior(lik.size());
  for (int64_t cap = 0; cap < nc; ++cap) {
    double z = 0;
    for (int64_t i = 0; i < ni; ++i) z += lik[cap * ni + i];
    for (int64_t i = 0; i < ni; ++i) {
      by_likelihood[cap * ni + i] = static_cast<float>(lik[cap * ni + i]);
      by_posterior[cap * ni + i] = z > 0 ? static_cast<float>(lik[cap * ni + i] / z) : 0.f;
    }
  }
  c.perfect.image_retrieval = retrieval_metrics(by_likelihood, ni, t.caption_image).image_retrieval;
  c.perfect.text_retrieval = retrieval_metrics(by_posterior, ni, t.caption_image).text_retrieval;
  c.perfect.num_images = ni, c.perfect.num_captions = nc;
  return c;
}

}  // namespace mmt
