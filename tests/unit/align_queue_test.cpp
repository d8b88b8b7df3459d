/* ALBEF's momentum queue for the align loss (train.align_queue): the queued InfoNCE against a
 * loop over candidates, the in-batch loss when nothing is queued and the momentum model is the
 * model, the queue's first-in first-out order, the momentum average, a state that survives a
 * checkpoint, and training that aligns the unimodal states with it. */
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <limits>

#include "mmt/config/config.h"
#include "mmt/data/data_source.h"
#include "mmt/data/pretrain_batcher.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/loss/align_queue.h"
#include "mmt/loss/pretraining.h"
#include "mmt/train/pretrain_step.h"
#include "mmt/util/error.h"
#include "test_util.h"
#include "train_util.h"

namespace mmt {
namespace {

torch::Tensor unit_rows(int64_t n, int64_t e, uint64_t seed) {
  torch::manual_seed(seed);
  return torch::nn::functional::normalize(torch::randn({n, e}, torch::kFloat64),
                                          torch::nn::functional::NormalizeFuncOptions().dim(1));
}

// -log softmax of entry `target` over the entries not excluded.
double nll(const std::vector<double>& logits, const std::vector<bool>& out, size_t target) {
  double mx = -INFINITY, sum = 0;
  for (size_t j = 0; j < logits.size(); ++j)
    if (!out[j]) mx = std::max(mx, logits[j]);
  for (size_t j = 0; j < logits.size(); ++j)
    if (!out[j]) sum += std::exp(logits[j] - mx);
  return -(logits[target] - mx - std::log(sum));
}

// What load_config says of the settings: "" when it accepts them.
std::string config_error(const std::vector<std::string>& sets) {
  try {
    load_config("", sets);
  } catch (const std::exception& e) {
    return std::string(e.what());
  }
  return std::string();
}

TEST(AlignQueue, ConfigNeedsTheAlignLossAndAMomentumBelowOne) {
  auto error = [](std::vector<std::string> sets) {
    sets.insert(sets.begin(), "model.layers=single_modality,merged");
    return config_error(sets);
  };
  EXPECT_EQ(error({"model.align=true", "train.align_weight=1", "train.align_queue=256"}), "");
  EXPECT_NE(error({"model.align=true", "train.align_queue=256"}).find("needs train.align_weight > 0"), std::string::npos);
  EXPECT_NE(error({"model.align=true", "train.align_weight=1", "train.align_queue=-1"}).find("train.align_queue"), std::string::npos);
  EXPECT_NE(error({"model.align=true", "train.align_weight=1", "train.align_queue=8", "train.align_momentum=1"})
                .find("train.align_momentum"),
            std::string::npos);
  EXPECT_EQ(error({"model.align=true", "train.align_weight=1", "train.align_queue=8", "train.align_distill=0.4"}), "");
  EXPECT_NE(error({"model.align=true", "train.align_weight=1", "train.align_distill=0.4"}).find("needs train.align_queue > 0"),
            std::string::npos);
}

// The queued loss by a loop over every candidate of every row: candidates of row a are the
// momentum embeddings of the batch's rows, then the queue; another row or entry whose key agrees
// with a's in any column (keys: the rows', then the entries') is left out (row a itself stays: the
// target). distill: row a's target is distill x the momentum model's softmax over the same
// candidates (left-out ones 0) + (1 - distill) on candidate a. Returns (loss, accuracy).
std::pair<double, double> loop_loss(const torch::Tensor& t, const torch::Tensor& i, const torch::Tensor& tm,
                                    const torch::Tensor& im, const torch::Tensor& qt, const torch::Tensor& qi, double scale,
                                    const std::vector<std::vector<int64_t>>& keys, double distill) {
  const int64_t m = t.size(0), f = qt.size(0);
  double loss = 0, hits = 0;
  for (int64_t a = 0; a < m; ++a) {
    for (const bool text_query : {true, false}) {
      std::vector<double> logits, teacher;
      std::vector<bool> out;
      const auto q = text_query ? t[a] : i[a], qm = text_query ? tm[a] : im[a];
      for (int64_t j = 0; j < m + f; ++j) {
        const auto c = j < m ? (text_query ? im[j] : tm[j]) : (text_query ? qi[j - m] : qt[j - m]);
        logits.push_back(scale * (q * c).sum().item<double>());
        teacher.push_back(scale * (qm * c).sum().item<double>());
        bool same = false;
        for (size_t k = 0; k < keys[a].size(); ++k) same = same || keys[j][k] == keys[a][k];
        out.push_back(j != a && same);
      }
      double z = 0;
      for (size_t j = 0; j < teacher.size(); ++j)
        if (!out[j]) z += std::exp(teacher[j]);
      for (size_t j = 0; j < logits.size(); ++j) {
        if (out[j]) continue;
        const double target = distill * std::exp(teacher[j]) / z + (j == static_cast<size_t>(a) ? 1.0 - distill : 0.0);
        loss += target * nll(logits, out, j) / (2.0 * m);
      }
      size_t best = 0;
      for (size_t j = 0; j < logits.size(); ++j)
        if (!out[j] && (out[best] || logits[j] > logits[best])) best = j;
      hits += (best == static_cast<size_t>(a)) / (2.0 * m);
    }
  }
  return {loss, hits};
}

TEST(AlignQueue, LossEqualsALoopOverEveryCandidate) {
  const int64_t m = 4, e = 6, f = 5;
  const auto t = unit_rows(m, e, 1), i = unit_rows(m, e, 2), tm = unit_rows(m, e, 3), im = unit_rows(m, e, 4);
  const auto qt = unit_rows(f, e, 5), qi = unit_rows(f, e, 6);
  const auto scale = torch::tensor(7.0, torch::kFloat64);
  const auto keys = torch::tensor({0, 1, 2, 1}, torch::kInt64), qkeys = torch::tensor({3, 1, 5, 0, 7}, torch::kInt64);
  const std::vector<std::vector<int64_t>> all_keys = {{0}, {1}, {2}, {1}, {3}, {1}, {5}, {0}, {7}};
  const auto [loss, acc] = queued_align_loss(t, i, tm, im, qt, qi, scale, keys, qkeys);
  const auto [expected, hits] = loop_loss(t, i, tm, im, qt, qi, 7.0, all_keys, 0.0);
  EXPECT_NEAR(loss.item<double>(), expected, 1e-10);
  EXPECT_NEAR(acc.item<double>(), hits, 1e-12);
  // Momentum distillation (ALBEF's 0.4).
  EXPECT_NEAR(queued_align_loss(t, i, tm, im, qt, qi, scale, keys, qkeys, 0.4).first.item<double>(),
              loop_loss(t, i, tm, im, qt, qi, 7.0, all_keys, 0.4).first, 1e-10);
  EXPECT_NEAR(queued_align_loss(t, i, tm, im, qt, qi, scale, keys, qkeys, 0.0).first.item<double>(), expected, 1e-10);
  // Keys of image and caption (train.contrastive_same_caption = excluded): an entry agreeing in
  // either is left out - row 0's caption is queued as entry 2, row 2's as row 3's.
  const std::vector<std::vector<int64_t>> pairs = {{0, 20}, {1, 21}, {2, 22}, {1, 22}, {3, 23}, {1, 24}, {5, 20}, {0, 25}, {7, 26}};
  auto column = [&](size_t from, size_t to) {
    std::vector<int64_t> flat;
    for (size_t r = from; r < to; ++r) flat.insert(flat.end(), pairs[r].begin(), pairs[r].end());
    return torch::tensor(flat, torch::kInt64).view({-1, 2});
  };
  const auto [with_captions, captions_acc] = queued_align_loss(t, i, tm, im, qt, qi, scale, column(0, 4), column(4, 9), 0.4);
  const auto [looped, looped_acc] = loop_loss(t, i, tm, im, qt, qi, 7.0, pairs, 0.4);
  EXPECT_NEAR(with_captions.item<double>(), looped, 1e-10);
  EXPECT_NEAR(captions_acc.item<double>(), looped_acc, 1e-12);
  EXPECT_GT(std::abs(looped - loop_loss(t, i, tm, im, qt, qi, 7.0, all_keys, 0.4).first), 1e-4);  // the captions matter
  // Nothing queued and the momentum embeddings the model's own: the in-batch loss.
  const auto empty = torch::zeros({0, e}, torch::kFloat64);
  const auto [alone, alone_acc] = queued_align_loss(t, i, t, i, empty, empty, scale, keys, torch::Tensor());
  EXPECT_NEAR(alone.item<double>(), loss_dual_contrastive(t, i, scale, keys).first.item<double>(), 1e-10);
}

ModelOptions aligned() {
  auto m = testing::small_model_options("merged", 3);
  m.layers = {"single_modality*2", "merged"};
  m.align = true, m.embed_dim = 12;
  return m;
}

// The queue keeps the newest entries in its slots (the loss reads them in any order): after it
// wraps, the next slot holds the oldest.
TEST(AlignQueue, KeepsTheNewestEntries) {
  MultimodalTransformer model(aligned(), InputDims{testing::kVocab, testing::kFeat});
  AlignQueue q(*model, 5, 0.9);
  auto rows = [](int64_t from, int64_t n) { return torch::arange(from, from + n, torch::kFloat32).unsqueeze(1).expand({n, 12}).contiguous(); };
  auto firsts = [](const torch::Tensor& t) {
    std::vector<int64_t> v;
    for (int64_t i = 0; i < t.size(0); ++i) v.push_back(static_cast<int64_t>(t[i][0].item<double>()));
    return v;
  };
  q.push(rows(0, 3), rows(100, 3), torch::Tensor());
  EXPECT_EQ(q.filled(), 3);
  EXPECT_EQ(firsts(q.text()), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_FALSE(q.keys().defined());
  q.push(rows(3, 4), rows(103, 4), torch::arange(3, 7, torch::kInt64));
  EXPECT_EQ(q.filled(), 5);
  EXPECT_EQ(firsts(q.text()), (std::vector<int64_t>{5, 6, 2, 3, 4}));  // 0 and 1 replaced by 5 and 6
  EXPECT_EQ(firsts(q.image()), (std::vector<int64_t>{105, 106, 102, 103, 104}));
  EXPECT_EQ(q.keys()[1].item<int64_t>(), 6);
  q.push(rows(10, 7), rows(110, 7), torch::arange(10, 17, torch::kInt64));  // more than it holds: the newest 5
  auto text = firsts(q.text()), keys = firsts(q.keys().unsqueeze(1).to(torch::kFloat32));
  EXPECT_EQ(text, keys);  // rows and keys stay together
  std::sort(text.begin(), text.end());
  EXPECT_EQ(text, (std::vector<int64_t>{12, 13, 14, 15, 16}));
}

// The momentum model holds the parameters its one pass reads - exactly those that pass gives a
// gradient to - and no others (the fusion layers and heads are empty there), for post- and
// pre-norm stacks.
TEST(AlignQueue, MomentumModelHoldsWhatTheTowersRead) {
  for (const bool pre_norm : {false, true}) {
    SCOPED_TRACE(pre_norm ? "pre-norm" : "post-norm");
    auto options = aligned();
    options.pre_norm = pre_norm;
    torch::manual_seed(4);
    MultimodalTransformer model(options, InputDims{testing::kVocab, testing::kFeat});
    const auto e = model->tower_align_embeddings(testing::random_batch(3, 5, 4, 2));
    (e.text.sum() + 2 * e.image.sum()).backward();
    std::set<std::string> read, held;
    for (const auto& p : model->named_parameters())
      if (p.value().grad().defined()) read.insert(p.key());
    AlignQueue q(*model, 4, 0.9);
    for (const auto& [name, t] : q.state()) {
      const std::string prefix = "align_queue.momentum.";
      if (name.rfind(prefix, 0) == 0) held.insert(name.substr(prefix.size()));
    }
    EXPECT_EQ(held, read);
    EXPECT_TRUE(std::any_of(read.begin(), read.end(), [](const std::string& n) { return n.rfind("layers.1.", 0) == 0; }));
    EXPECT_FALSE(std::any_of(read.begin(), read.end(), [](const std::string& n) { return n.rfind("layers.2.", 0) == 0; }));
    // An older checkpoint's state held every parameter: it loads, the rest ignored.
    NamedTensors old = q.state();
    for (const auto& p : model->named_parameters())
      if (!read.count(p.key())) old.emplace_back("align_queue.momentum." + p.key(), p.value().detach());
    AlignQueue again(*model, 4, 0.9);
    EXPECT_NO_THROW(again.load(old));
    NamedTensors missing;
    for (const auto& [name, t] : q.state())
      if (name != "align_queue.momentum.text_proj.weight") missing.emplace_back(name, t);
    try {
      again.load(missing);
      ADD_FAILURE() << "a state without text_proj.weight loaded";
    } catch (const std::exception& err) {
      EXPECT_NE(std::string(err.what()).find("text_proj.weight"), std::string::npos) << err.what();
    }
  }
}

// The momentum model starts as the model (its embeddings are the model's, dropout off), follows
// it by the average, and comes back from its state whole.
TEST(AlignQueue, MomentumModelAveragesTheModelAndSurvivesItsState) {
  torch::manual_seed(3);
  MultimodalTransformer model(aligned(), InputDims{testing::kVocab, testing::kFeat});
  model->eval();
  AlignQueue q(*model, 8, 0.9);
  q.start(*model);
  const Batch b = testing::random_batch(5, 6, 4, 9);
  const auto rows = torch::tensor({0, 2, 3}, torch::kInt64);
  const auto [tm, im] = q.embeddings(b, rows, true);
  {
    torch::NoGradGuard no_grad;
    const Encoded enc = model->encode(b);
    const auto e = model->align_embeddings(enc.align_cls.index_select(0, rows), enc.align_img.index_select(0, rows));
    EXPECT_TRUE(torch::allclose(tm, e.text, 1e-5, 1e-6));
    EXPECT_TRUE(torch::allclose(im, e.image, 1e-5, 1e-6));
  }
  const auto before = model->text_proj->weight.detach().clone();
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.add_(1.0);
  }
  q.update(*model);  // 0.9 x before + 0.1 x (before + 1)
  AlignQueue copy(*model, 8, 0.9);
  q.push(tm, im, torch::Tensor());
  copy.load(q.state());
  EXPECT_EQ(copy.filled(), 3);
  EXPECT_TRUE(torch::equal(copy.text(), q.text()));
  const auto [tm2, im2] = q.embeddings(b, rows, true);
  const auto [tc, ic] = copy.embeddings(b, rows, true);
  EXPECT_TRUE(torch::equal(tm2, tc) && torch::equal(im2, ic));
  EXPECT_GT((tm2 - tm).abs().max().item<double>(), 1e-4);  // the momentum model moved
  NamedTensors state = q.state();
  for (const auto& [name, t] : state)
    if (name == "align_queue.momentum.text_proj.weight") EXPECT_TRUE(torch::allclose(t, before + 0.1, 1e-5, 1e-6));
  AlignQueue other(*model, 4, 0.9);
  EXPECT_THROW(other.load(state), std::exception);  // another size
  EXPECT_THROW(other.load({}), std::exception);
}

// The momentum copy's tensors are taken from the model by position: a model of another
// architecture is refused by name before anything is averaged.
TEST(AlignQueue, RefusesAModelItWasNotMadeFor) {
  torch::manual_seed(3);
  MultimodalTransformer model(aligned(), InputDims{testing::kVocab, testing::kFeat});
  ModelOptions deeper = aligned();
  deeper.layers.push_back("merged");
  MultimodalTransformer other(deeper, InputDims{testing::kVocab, testing::kFeat});
  AlignQueue q(*model, 4, 0.9);
  try {
    q.update(*other);
    ADD_FAILURE() << "a model of another depth was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not the model the queue was made for"), std::string::npos) << e.what();
  }
  q.update(*model);  // its own model still works: started from it, then averaged with it
  for (const auto& [name, t] : q.state())
    if (name == "align_queue.momentum.text_proj.weight") EXPECT_TRUE(torch::allclose(t, model->text_proj->weight));
}

// train.distill_ramp: at step s of a ramp of R steps the step is the one of weights a x s / R
// without a ramp (same model, same momentum model, same batch), and after the ramp the full ones -
// the align loss's and MLM's distillation both.
TEST(AlignQueue, DistillationRampsUpLinearly) {
  ExperimentConfig cfg;
  cfg.model = aligned();
  cfg.train.align_weight = 1, cfg.train.align_queue = 64, cfg.train.align_distill = 0.4;
  // The align and MLM losses of the step and the word embeddings after it (both losses reach them).
  struct After {
    std::vector<double> losses;
    torch::Tensor words;
  };
  auto after_one_step = [&](double distill, int64_t ramp, int64_t step) {
    ExperimentConfig c = cfg;
    c.train.align_distill = c.train.mlm_distill = distill, c.train.distill_ramp = ramp;
    testing::SmallTraining t(c);
    const auto r = t.step.run(t.batcher.batch(0), 1e-3, step);
    EXPECT_TRUE(r.finite);
    return After{{r.loss.metrics.at("align"), r.loss.metrics.at("mlm")}, t.model->text_embed->word->weight.detach().clone()};
  };
  const After ramped = after_one_step(0.4, 10, 5), half = after_one_step(0.2, 0, 5), full = after_one_step(0.4, 0, 5);
  const After past = after_one_step(0.4, 10, 12), none = after_one_step(0.4, 10, 0), off = after_one_step(0.0, 0, 0);
  EXPECT_EQ(ramped.losses, half.losses);
  EXPECT_TRUE(torch::equal(ramped.words, half.words));
  EXPECT_EQ(past.losses, full.losses);
  EXPECT_EQ(none.losses, off.losses);
  for (size_t k = 0; k < 2; ++k)  // each weight matters: the test can tell them apart
    EXPECT_GT(std::abs(half.losses[k] - full.losses[k]), 1e-4) << (k ? "mlm" : "align");
  EXPECT_FALSE(torch::equal(half.words, full.words));
  EXPECT_NE(config_error({"model.layers=single_modality,merged", "model.align=true", "train.align_weight=1",
                          "train.align_queue=8", "train.distill_ramp=100"})
                .find("it needs one of them > 0"),
            std::string::npos);
}

// The distilled cross-entropy against a loop: target distill x softmax(teacher) + (1 - distill) on
// the true class.
TEST(AlignQueue, DistilledCrossEntropyEqualsALoop) {
  torch::manual_seed(5);
  const auto logits = torch::randn({3, 5}, torch::kFloat64), teacher = torch::randn({3, 5}, torch::kFloat64);
  const auto targets = torch::tensor({4, 0, 2}, torch::kInt64);
  double expected = 0;
  for (int64_t a = 0; a < 3; ++a) {
    double z = 0, zt = 0;
    for (int64_t c = 0; c < 5; ++c) z += std::exp(logits[a][c].item<double>()), zt += std::exp(teacher[a][c].item<double>());
    for (int64_t c = 0; c < 5; ++c) {
      const double q = 0.3 * std::exp(teacher[a][c].item<double>()) / zt + (c == targets[a].item<int64_t>() ? 0.7 : 0.0);
      expected -= q * (logits[a][c].item<double>() - std::log(z)) / 3.0;
    }
  }
  EXPECT_NEAR(distilled_cross_entropy(logits, teacher, targets, 0.3).item<double>(), expected, 1e-12);
  EXPECT_NEAR(distilled_cross_entropy(logits, teacher, targets, 0.0).item<double>(),
              torch::cross_entropy_loss(logits, targets).item<double>(), 1e-12);
}

// train.mlm_distill: the whole model follows as momentum model, and MLM's targets take its
// predictions - at the first step it is the model itself, so the loss is the cross-entropy to
// 0.4 x the model's own softmax + 0.6 on the true token.
TEST(AlignQueue, MlmDistillationTargetsTheMomentumModelsPredictions) {
  ExperimentConfig cfg;
  cfg.model = aligned();
  cfg.train.align_weight = 1, cfg.train.align_queue = 64, cfg.train.mlm_distill = 0.4;
  testing::SmallTraining t(cfg);
  const Batch b = t.batcher.batch(0);
  double distilled = 0, plain = 0;
  {
    torch::NoGradGuard no_grad;
    const Encoded enc = t.model->encode(b);
    const auto labels = b.mlm_labels.reshape({-1});
    const auto positions = labels.ne(kIgnoreLabel).nonzero().squeeze(1);
    ASSERT_GT(positions.numel(), 0);
    const auto logits = t.model->mlm_logits(enc.text.reshape({-1, enc.text.size(2)}).index_select(0, positions));
    const auto targets = labels.index_select(0, positions);
    distilled = distilled_cross_entropy(logits, logits, targets, 0.4).item<double>();
    plain = torch::cross_entropy_loss(logits, targets).item<double>();
  }
  const auto r = t.step.run(b, 1e-3, 0);
  ASSERT_TRUE(r.finite);
  EXPECT_NEAR(r.loss.metrics.at("mlm"), distilled, 1e-4);
  EXPECT_GT(std::abs(distilled - plain), 1e-3);  // the test tells distillation from plain MLM (60x its tolerance)
  std::set<std::string> held;
  for (const auto& [name, tensor] : t.step.align_queue()->state()) held.insert(name);
  EXPECT_TRUE(held.count("align_queue.momentum.mlm_transform.weight") && held.count("align_queue.momentum.itm_classifier.weight"));
  EXPECT_NE(config_error({"model.layers=single_modality,merged", "model.align=true", "train.align_weight=1", "train.mlm_distill=0.4"})
                .find("needs train.align_queue > 0"),
            std::string::npos);
}

// Training with the queue (negatives from 96 earlier pairs besides the batch's) aligns the
// unimodal states: the align accuracy over the batch and the queue ends well above its chance.
TEST(AlignQueue, TrainingWithTheQueueAlignsTheUnimodalStates) {
  ExperimentConfig cfg;
  cfg.model = aligned();
  cfg.model.embed_dim = 32;
  cfg.train.align_weight = 1, cfg.train.align_queue = 96, cfg.train.align_momentum = 0.9;
  testing::SmallTraining t(cfg);
  ASSERT_NE(t.step.align_queue(), nullptr);
  const auto [acc, chance] = testing::align_accuracy_and_chance(t, 300, 30, 50, 96);
  EXPECT_EQ(t.step.align_queue()->filled(), 96);
  // (The synthetic world repeats captions: many queued candidates read exactly like the target,
  // so the ceiling is far below 1. 4.6x chance here.)
  EXPECT_GT(acc, 3 * chance) << "align accuracy " << acc << ", chance " << chance;
}

}  // namespace
}  // namespace mmt
