/* Evaluation during training (see train_eval.h). */
#include "mmt/train/train_eval.h"

#include <algorithm>
#include <ostream>

#include "mmt/config/options.h"
#include "mmt/data/batch.h"
#include "mmt/data/image_source.h"
#include "mmt/data/record_images.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/eval/protocols.h"
#include "mmt/eval/score_modes.h"
#include "mmt/text/tokenizer.h"
#include "mmt/text/vocab.h"
#include "mmt/util/error.h"

namespace mmt {

namespace {

// The first n images of another source.
class FirstImages : public ImageSource {
 public:
  FirstImages(std::unique_ptr<ImageSource> base, int64_t n) : base_(std::move(base)), n_(std::min(n, base_->size())) {}
  int64_t size() const override { return n_; }
  int64_t tokens(int64_t i) const override { return base_->tokens(i); }
  void fill(const std::vector<int64_t>& images, Batch& batch) const override { base_->fill(images, batch); }

 private:
  std::unique_ptr<ImageSource> base_;
  int64_t n_;
};

}  // namespace

struct TrainEvaluator::Impl {
  ExperimentConfig cfg;
  std::string name;
  std::vector<std::vector<int64_t>> captions;
  std::vector<int64_t> caption_image;
  std::unique_ptr<ImageSource> images;

  // Keeps the captions of the first `n` images.
  void keep_captions(const std::vector<std::vector<int64_t>>& all, const std::vector<int64_t>& owner, int64_t n) {
    for (size_t c = 0; c < all.size(); ++c)
      if (owner[c] < n) captions.push_back(all[c]), caption_image.push_back(owner[c]);
  }
};

TrainEvaluator::TrainEvaluator(const ExperimentConfig& cfg, const synth::World& world, const Vocab& vocab)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.cfg = cfg;
  // The world's validation scenes, not a test set: weights chosen on test images and then scored
  // on them would report the choice's luck as the model's.
  const synth::TestSet& test = world.validation_set();
  s.name = test.name;
  const int64_t n = std::min<int64_t>(cfg.train.eval_max_images, static_cast<int64_t>(test.images.size()));
  std::vector<std::vector<int64_t>> all;
  for (const auto& c : test.captions) all.push_back(vocab.encode(c.text, cfg.model.max_text_len));
  s.keep_captions(all, test.caption_image, n);
  s.images = std::make_unique<FirstImages>(std::make_unique<SyntheticImages>(test.images, test.regions, cfg), n);
}

TrainEvaluator::TrainEvaluator(const ExperimentConfig& cfg, const Tokenizer& tokenizer, int64_t region_feat_dim,
                               int64_t region_classes)
    : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.cfg = cfg;
  const auto& t = cfg.train;
  if (t.eval_karpathy.empty())
    throw Error("train.eval_every with data.source = datasets needs train.eval_karpathy: a Karpathy split file whose "
                "val images are held out from training");
  // Its val split: choosing weights on the test split would bias every later test result.
  RetrievalSplit split = load_protocol("val", t.eval_karpathy, t.eval_image_dir).front();
  s.name = "val";
  const int64_t n = std::min<int64_t>(t.eval_max_images, static_cast<int64_t>(split.images.size()));
  std::vector<std::vector<int64_t>> all;
  for (const auto& c : split.captions) all.push_back(tokenizer.encode(c, cfg.model.max_text_len));
  s.keep_captions(all, split.caption_image, n);
  split.images.resize(static_cast<size_t>(n));
  s.images = std::make_unique<RecordImages>(cfg, split.images, FeatureSource::open(t.eval_features), region_feat_dim,
                                            region_classes);
}

TrainEvaluator::~TrainEvaluator() = default;

std::string TrainEvaluator::describe() const {
  return impl_->name + " (" + std::to_string(impl_->images->size()) + " images x " +
         std::to_string(impl_->captions.size()) + " captions, " + impl_->cfg.eval.mode + ")";
}

nlohmann::json TrainEvaluator::run(MultimodalTransformerImpl& model, std::ostream& log) {
  Impl& s = *impl_;
  const TestSetScores r = score_test_set(model, s.captions, *s.images, s.caption_image, s.cfg, s.name, log);
  const auto &ir = r.metrics.image_retrieval, &tr = r.metrics.text_retrieval;
  return {{"rsum", ir.rsum() + tr.rsum()}, {"image_r1", ir.r1}, {"image_r5", ir.r5}, {"image_r10", ir.r10},
          {"text_r1", tr.r1},             {"text_r5", tr.r5},   {"text_r10", tr.r10}, {"seconds", r.seconds}};
}

}  // namespace mmt
