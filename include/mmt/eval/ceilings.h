/* What a number means on a synthetic test set. Four reference scorers go through the same
 * metric code and tie rule as the model:
 *   chance        a constant score;
 *   bag-of-words  a perfect bag-of-words matcher: 1 if the caption's multiset of attribute
 *                 words (and object count) fits the image's, else 0 - it cannot tell which
 *                 object carries which attribute;
 *   truth         1 if the caption is true of the image, else 0;
 *   perfect       the Bayes-optimal matcher of the world: images ranked by the grammar's
 *                 exact likelihood P(caption | image), captions by the posterior
 *                 P(image | caption). It knows everything the data can tell, so no scorer
 *                 beats it in expectation; captions are partial, so it stays below 100%.
 * A model can beat `truth` (it learns that a vague caption is less likely to come from an
 * image it barely fits), but not `perfect` beyond sampling noise. */
#pragma once

#include <vector>

#include "mmt/eval/retrieval_metrics.h"

namespace mmt {

namespace synth {
struct TestSet;
}

/// How often a scorer's top image is one the caption is true of (r1_any_relevant with the
/// caption's truth as relevance, percent): R@1 without the penalty for captions that also
/// describe other images. `truth` and `perfect` score only true images above zero, so theirs is
/// 100 by construction and left out.
struct TrueAtOne {
  double chance = 0, bag_of_words = 0;
};

struct Ceilings {
  RetrievalMetrics chance;
  RetrievalMetrics bag_of_words;
  RetrievalMetrics truth;
  RetrievalMetrics perfect;
  TrueAtOne true_at_1;
};

Ceilings test_set_ceilings(const synth::TestSet& test);
/// The same with the test set's truth_scores already computed (they cost captions x images
/// caption_true_of calls; evaluation reuses them for true@1).
Ceilings test_set_ceilings(const synth::TestSet& test, const std::vector<float>& truth);

/// Score matrices of the reference scorers (captions x images, row-major).
std::vector<float> bag_of_words_scores(const synth::TestSet& test);
std::vector<float> truth_scores(const synth::TestSet& test);
std::vector<double> likelihood_scores(const synth::TestSet& test);

}  // namespace mmt
