/* Exact scoring: the blocked, embedding-reusing scorer equals a plain loop that runs each
 * (caption, image) pair through the model on its own, and equals itself uncached; rerank with
 * k = all is exact, with small k it puts the re-scored candidates first; dual is exact for
 * stacks without cross-modal layers; bf16 autocast stays close to fp32. */
#include <gtest/gtest.h>

#include "mmt/config/config.h"
#include "mmt/data/image_source.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/eval/exact_scorer.h"
#include "mmt/eval/retrieval_metrics.h"
#include "mmt/eval/score_modes.h"
#include "mmt/util/device.h"
#include "mmt/util/error.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cmath>
#include <numeric>
#include <set>
#include "test_util.h"

namespace mmt {
namespace {

struct Case {
  const char* name;
  std::vector<std::string> layers;
  std::string pooling, kind;
  bool align = false;  // model.align: the dual scores are the align head's
};
// What ctest's test list and gtest's output show for a case: its name, not its bytes.
void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class ExactScorer : public ::testing::TestWithParam<Case> {};

// 7 images with 2..5 regions, 11 captions of 3..8 tokens, and a small model of the case.
struct Fixture {
  ModelOptions opts;
  MultimodalTransformer model{nullptr};
  synth::RegionStore store;
  std::vector<std::vector<int64_t>> captions;
  std::vector<synth::Scene> scenes = std::vector<synth::Scene>(7);
  ExperimentConfig cfg;
  std::unique_ptr<SyntheticImages> images;

  explicit Fixture(const Case& c) {
    torch::manual_seed(0);
    opts = testing::small_model_options("merged", 2);
    opts.layers = c.layers, opts.itm_pooling = c.pooling, opts.kind = c.kind, opts.align = c.align;
    model = MultimodalTransformer(opts, InputDims{testing::kVocab, testing::kFeat});
    model->eval();
    store.feature_dim = testing::kFeat, store.num_classes = 1;
    store.offsets = {0};
    for (int i = 0; i < 7; ++i) {
      const int n = 2 + i % 4;
      for (int r = 0; r < n; ++r) {
        for (int k = 0; k < testing::kFeat; ++k) store.features.push_back(static_cast<float>(std::sin(i * 7 + r * 3 + k)));
        for (int k = 0; k < 5; ++k) store.boxes.push_back(0.1f * static_cast<float>((i + r + k) % 10));
        store.classes.push_back(1.f);
      }
      store.offsets.push_back(store.offsets.back() + n);
    }
    for (int c = 0; c < 11; ++c) {
      std::vector<int64_t> ids = {2};
      for (int t = 0; t < 1 + c % 6; ++t) ids.push_back(5 + (c * 5 + t * 3) % (testing::kVocab - 5));
      ids.push_back(3);
      captions.push_back(ids);
    }
    images = std::make_unique<SyntheticImages>(scenes, store, cfg);
  }
  ExactScorerOptions options(bool cache = true) const {
    ExactScorerOptions so;
    so.pair_batch = 5;  // many small blocks
    so.cache = cache;
    return so;
  }
};

// Every path of the scorer - pairs through all layers, a unimodal prefix run once per caption and
// image, and the matrix product when no layer crosses modalities - equals the plain loop.
TEST_P(ExactScorer, EqualsOnePairAtATime) {
  torch::NoGradGuard ng;
  Fixture f(GetParam());
  const auto scores = score_exact(*f.model, f.captions, *f.images, f.options());
  ASSERT_EQ(scores.size(), 77u);
  for (int c = 0; c < 11; ++c) {
    for (int64_t i = 0; i < 7; ++i) {
      Batch b;
      pad_text({f.captions[c]}, 0, b);
      gather_regions(f.store, {i}, 100, b);
      const auto e = f.model->encode(b);
      const auto logits = f.model->itm_logits(e);
      const float expected = f.opts.kind == "dual_encoder" ? f.model->match_scores(e).item<float>()
                                                           : (logits[0][1] - logits[0][0]).item<float>();
      EXPECT_NEAR(scores[c * 7 + i], expected, 1e-4) << GetParam().name << ": caption " << c << " image " << i;
    }
  }
}

// Reusing the unimodal layers changes nothing: cached exact == every pair from the embeddings up.
TEST_P(ExactScorer, CachedEqualsUncached) {
  Fixture f(GetParam());
  const auto cached = score_exact(*f.model, f.captions, *f.images, f.options(true));
  const auto uncached = score_exact(*f.model, f.captions, *f.images, f.options(false));
  ASSERT_EQ(cached.size(), uncached.size());
  for (size_t k = 0; k < cached.size(); ++k) EXPECT_NEAR(cached[k], uncached[k], 1e-4) << GetParam().name << " pair " << k;
}

// Scoring a list of pairs gives the all-pairs entries, whatever the order and repetition.
TEST_P(ExactScorer, PairListEqualsAllPairs) {
  Fixture f(GetParam());
  PairScorer scorer(*f.model, f.captions, *f.images, f.options());
  const auto all = scorer.all_pairs();
  std::vector<int64_t> pc, pi;
  for (int k = 0; k < 40; ++k) pc.push_back((k * 7) % 11), pi.push_back((k * 3 + k / 5) % 7);
  const auto some = scorer.pairs(pc, pi);
  for (size_t k = 0; k < pc.size(); ++k) EXPECT_NEAR(some[k], all[pc[k] * 7 + pi[k]], 1e-5) << GetParam().name;
  EXPECT_THROW(scorer.pairs({11}, {0}), std::out_of_range);
}

// Pair batches scored on several threads (each with single-threaded BLAS) land in the same cells
// as on one thread: the same scores up to the matrix products' summation order.
TEST_P(ExactScorer, ThreadsScoreTheSamePairs) {
  Fixture f(GetParam());
  auto threaded = f.options();
  threaded.threads = 3;
  PairScorer one(*f.model, f.captions, *f.images, f.options()), three(*f.model, f.captions, *f.images, threaded);
  const auto a = one.all_pairs();
  int64_t last_done = -1, calls = 0;
  const auto b = three.all_pairs([&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 77);
    EXPECT_GE(done, last_done);
    last_done = done, ++calls;
  });
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_NEAR(a[k], b[k], 1e-5) << GetParam().name << " pair " << k;
  EXPECT_EQ(last_done, 77);
  EXPECT_GE(calls, 1);
  std::vector<int64_t> pc, pi;
  for (int k = 0; k < 40; ++k) pc.push_back((k * 5) % 11), pi.push_back((k * 2 + k / 3) % 7);
  const auto some = three.pairs(pc, pi);
  for (size_t k = 0; k < pc.size(); ++k) EXPECT_NEAR(some[k], a[pc[k] * 7 + pi[k]], 1e-5) << GetParam().name;
  EXPECT_THROW(three.pairs({0}, {7}), std::out_of_range);
}

// Identical captions share one score (bitwise), wherever batching and threads put them, so ties
// between them are exact ties for the metrics.
TEST_P(ExactScorer, IdenticalCaptionsGetIdenticalScores) {
  Fixture f(GetParam());
  auto captions = f.captions;
  for (int c : {2, 5, 2}) captions.push_back(f.captions[c]);  // rows 11, 12, 13
  auto options = f.options();
  options.threads = 3;
  PairScorer scorer(*f.model, captions, *f.images, options);
  const auto all = scorer.all_pairs();
  const auto dual = scorer.dual_scores();
  const std::vector<std::pair<int, int>> same = {{2, 11}, {5, 12}, {2, 13}};
  for (const auto& [a, b] : same) {
    for (int64_t i = 0; i < 7; ++i) {
      EXPECT_EQ(all[a * 7 + i], all[b * 7 + i]) << GetParam().name << ": captions " << a << ", " << b << " image " << i;
      EXPECT_EQ(dual[a * 7 + i], dual[b * 7 + i]) << GetParam().name;
    }
    const auto p = scorer.pairs({a, b, b}, {3, 3, 0});
    EXPECT_EQ(p[0], p[1]);
    EXPECT_NEAR(p[2], all[b * 7 + 0], 1e-5);
  }
  // And the scores are those of the captions scored without their copies.
  const auto plain = score_exact(*f.model, f.captions, *f.images, f.options());
  for (size_t k = 0; k < plain.size(); ++k) EXPECT_NEAR(all[k], plain[k], 1e-5) << GetParam().name << " pair " << k;
}

// rerank with k = every candidate re-scores every pair: the exact scores and metrics.
TEST_P(ExactScorer, RerankOfAllCandidatesIsExact) {
  Fixture f(GetParam());
  PairScorer scorer(*f.model, f.captions, *f.images, f.options());
  const auto exact = scorer.all_pairs();
  const RerankScores r = rerank(scorer, scorer.dual_scores(), 11, {});
  EXPECT_EQ(r.pairs_scored, 77);
  for (size_t k = 0; k < exact.size(); ++k) {
    EXPECT_NEAR(r.caption_to_image[k], exact[k], 1e-5);
    EXPECT_NEAR(r.image_to_caption[k], exact[k], 1e-5);
  }
  std::vector<int64_t> caption_image;
  for (int c = 0; c < 11; ++c) caption_image.push_back(c % 7);
  const auto a = retrieval_metrics(exact, 7, caption_image);
  const auto b = retrieval_metrics(r.caption_to_image, 7, caption_image);
  const auto c = retrieval_metrics(r.image_to_caption, 7, caption_image);
  EXPECT_DOUBLE_EQ(a.image_retrieval.r1, b.image_retrieval.r1);
  EXPECT_DOUBLE_EQ(a.image_retrieval.mean_rank, b.image_retrieval.mean_rank);
  EXPECT_DOUBLE_EQ(a.text_retrieval.r5, c.text_retrieval.r5);
  EXPECT_DOUBLE_EQ(a.text_retrieval.mean_rank, c.text_retrieval.mean_rank);
}

// rerank with a small k: each query's k first-stage candidates carry their exact scores and rank
// above all others, which keep the first stage's order.
TEST_P(ExactScorer, RerankPlacesCandidatesAboveTheRest) {
  Fixture f(GetParam());
  PairScorer scorer(*f.model, f.captions, *f.images, f.options());
  const auto exact = scorer.all_pairs();
  std::vector<float> first(77);
  for (int k = 0; k < 77; ++k) first[k] = static_cast<float>(std::cos(k * 1.7));
  const RerankScores r = rerank(scorer, first, 3, {});
  EXPECT_EQ(r.k_images, 3);
  EXPECT_EQ(r.k_captions, 3);
  EXPECT_LE(r.pairs_scored, 11 * 3 + 7 * 3);
  const auto by_caption = top_k(first, 11, 7, 3, true);
  for (int c = 0; c < 11; ++c) {
    std::set<int64_t> chosen(by_caption[c].begin(), by_caption[c].end());
    float lowest_candidate = INFINITY;
    for (int64_t i : chosen) {
      EXPECT_NEAR(r.caption_to_image[c * 7 + i], exact[c * 7 + i], 1e-5);
      lowest_candidate = std::min(lowest_candidate, r.caption_to_image[c * 7 + i]);
    }
    for (int64_t i = 0; i < 7; ++i) {
      if (chosen.count(i)) continue;
      EXPECT_LT(r.caption_to_image[c * 7 + i], lowest_candidate);
      for (int64_t j = 0; j < 7; ++j)
        if (!chosen.count(j) && first[c * 7 + i] < first[c * 7 + j])
          EXPECT_LE(r.caption_to_image[c * 7 + i], r.caption_to_image[c * 7 + j]);
    }
  }
  const auto by_image = top_k(first, 11, 7, 3, false);
  for (int i = 0; i < 7; ++i) {
    std::set<int64_t> chosen(by_image[i].begin(), by_image[i].end());
    float lowest_candidate = INFINITY;
    for (int64_t c : chosen) lowest_candidate = std::min(lowest_candidate, r.image_to_caption[c * 7 + i]);
    for (int64_t c = 0; c < 11; ++c)
      if (!chosen.count(c)) EXPECT_LT(r.image_to_caption[c * 7 + i], lowest_candidate);
  }
  EXPECT_THROW(rerank(scorer, std::vector<float>(5), 3, {}), Error);
}

// Without cross-modal layers the dual scores are the exact scores; with the align head they are
// its scores of each caption's and image's states in a joint pass (which see one modality only).
TEST_P(ExactScorer, DualIsExactWithoutCrossModalLayers) {
  Fixture f(GetParam());
  PairScorer scorer(*f.model, f.captions, *f.images, f.options());
  if (GetParam().align) {
    EXPECT_NE(scorer.dual_description().find("align head"), std::string::npos) << scorer.dual_description();
    const auto dual = scorer.dual_scores();
    torch::NoGradGuard ng;
    for (int c = 0; c < 11; ++c)
      for (int64_t i = 0; i < 7; ++i) {
        Batch b;
        pad_text({f.captions[c]}, 0, b);
        gather_regions(f.store, {i}, 100, b);
        const auto enc = f.model->encode(b);
        const auto e = f.model->align_embeddings(enc.align_cls, enc.align_img);
        EXPECT_NEAR(dual[c * 7 + i], (e.scale * (e.text * e.image).sum()).item<float>(), 1e-4) << c << "," << i;
      }
    return;
  }
  if (f.model->crosses_modalities()) {
    EXPECT_NE(scorer.dual_description().find("cosine"), std::string::npos);
    for (float v : scorer.dual_scores()) EXPECT_LE(std::abs(v), 1.0f + 1e-5f);  // cosines
    return;
  }
  const auto exact = score_exact(*f.model, f.captions, *f.images, f.options(false));
  const auto dual = scorer.dual_scores();
  for (size_t k = 0; k < exact.size(); ++k) EXPECT_NEAR(dual[k], exact[k], 1e-4);
}

// mmt embed's vectors are what the dual scores are made of, on every path: normalised states
// (cosine), a dual encoder's projections and logit scale, the ITM head's bilinear form, cls pooling.
TEST_P(ExactScorer, DualEmbeddingsGiveTheDualScores) {
  Fixture f(GetParam());
  PairScorer scorer(*f.model, f.captions, *f.images, f.options());
  const auto dual = scorer.dual_scores();
  const PairScorer::DualEmbeddings e = scorer.dual_embeddings();
  ASSERT_GT(e.dim, 0);
  ASSERT_EQ(e.text.size(), static_cast<size_t>(11 * e.dim));
  ASSERT_EQ(e.image.size(), static_cast<size_t>(7 * e.dim));
  float range = 0;
  for (float v : dual) range = std::max(range, std::abs(v));
  for (int64_t c = 0; c < 11; ++c)
    for (int64_t i = 0; i < 7; ++i) {
      double dot = 0;
      for (int64_t k = 0; k < e.dim; ++k) dot += static_cast<double>(e.text[c * e.dim + k]) * e.image[i * e.dim + k];
      EXPECT_NEAR(e.scale * dot + e.bias, dual[c * 7 + i], 1e-5 * (1 + range)) << GetParam().name << " " << c << "," << i;
    }
  if (GetParam().kind == "dual_encoder" || GetParam().align) EXPECT_GT(e.scale, 1.0);  // the learned temperature, not 1
}

// bf16 autocast (here on the CPU, the path a GPU takes; libtorch 1.13 included, since the norms
// run in bf16 with bf16 weights) scores close to fp32 and restores the autocast state afterwards.
TEST_P(ExactScorer, Bf16AutocastIsCloseToFp32) {
  Fixture f(GetParam());
  const auto fp32 = score_exact(*f.model, f.captions, *f.images, f.options());
  auto so = f.options();
  so.bf16 = true;
  const auto bf16 = score_exact(*f.model, f.captions, *f.images, so);
  float range = 0;
  for (float v : fp32) range = std::max(range, std::abs(v));
  for (size_t k = 0; k < fp32.size(); ++k) EXPECT_NEAR(bf16[k], fp32[k], 0.05f * range + 0.02f) << GetParam().name;
  const auto again = score_exact(*f.model, f.captions, *f.images, f.options());
  for (size_t k = 0; k < fp32.size(); ++k) EXPECT_EQ(again[k], fp32[k]);  // autocast is off again
}

TEST(TopK, EqualsAFullStableSort) {
  std::vector<float> m(6 * 9);
  for (size_t k = 0; k < m.size(); ++k) m[k] = static_cast<float>((k * 37) % 11);  // many ties
  for (bool by_row : {true, false}) {
    const int64_t queries = by_row ? 6 : 9, cands = by_row ? 9 : 6;
    for (int64_t k : {1, 4, 100}) {
      const auto got = top_k(m, 6, 9, k, by_row);
      for (int64_t q = 0; q < queries; ++q) {
        std::vector<int64_t> order(static_cast<size_t>(cands));
        std::iota(order.begin(), order.end(), 0);
        auto at = [&](int64_t c) { return by_row ? m[q * 9 + c] : m[c * 9 + q]; };
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return at(a) > at(b); });
        order.resize(static_cast<size_t>(std::min(k, cands)));
        EXPECT_EQ(got[q], order);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Paths, ExactScorer,
    ::testing::Values(Case{"merged", {"merged", "merged"}, "product", "transformer"},
                      Case{"prefix", {"single_modality", "single_modality", "coattention"}, "product", "transformer"},
                      Case{"unimodal", {"single_modality", "single_modality"}, "product", "transformer"},
                      Case{"unimodal_cls", {"single_modality"}, "cls", "transformer"},
                      Case{"dual_dot", {"single_modality", "single_modality"}, "product", "dual_encoder"},
                      Case{"align", {"single_modality", "single_modality", "merged"}, "product", "transformer", true}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// eval.pair_batch = 0 (the default) picks by device: 64 pairs a pass on a CPU, where small passes
// stay in cache (docs/performance.md), 2048 on CUDA; a value given is kept; below 0 is refused.
TEST(ScorerOptions, PairBatchIsPickedByDeviceUnlessGiven) {
  ExperimentConfig cfg = load_config("", {});
  EXPECT_EQ(cfg.eval.pair_batch, 0);
  EXPECT_EQ(scorer_options(cfg).pair_batch, resolve_device(cfg.runtime.device).is_cpu() ? 64 : 2048);
  EXPECT_EQ(scorer_options(load_config("", {"eval.pair_batch=512"})).pair_batch, 512);
  try {
    load_config("", {"eval.pair_batch=-1"});
    ADD_FAILURE() << "eval.pair_batch=-1 was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("eval.pair_batch"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mmt
