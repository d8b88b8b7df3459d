/* Contrastive ITM with K negatives and chunked exact gradients (see contrastive_itm.h). */
#include "mmt/loss/contrastive_itm.h"

#include <limits>
#include <mutex>
#include <vector>

#include <ATen/Context.h>
#include <torch/csrc/autograd/autograd.h>

#include "mmt/data/batch.h"
#include "mmt/model/transformer.h"
#include "mmt/util/error.h"

namespace mmt {

std::pair<torch::Tensor, double> contrastive_loss_from_scores(const torch::Tensor& scores, const torch::Tensor& excluded) {
  TORCH_CHECK(scores.dim() == 2 && scores.sizes() == excluded.sizes(), "contrastive ITM: scores ", scores.sizes(),
              " and excluded ", excluded.sizes(), " must both be (M, K + 1)");
  const auto s = scores.masked_fill(excluded, -std::numeric_limits<float>::infinity());
  return {-torch::log_softmax(s, 1).select(1, 0).mean(), s.argmax(1).eq(0).to(torch::kFloat).mean().item<double>()};
}

ContrastiveItmResult contrastive_itm(MultimodalTransformerImpl& model, const Batch& batch, double weight,
                                     int64_t chunk) {
  if (!batch.negatives) throw Error("contrastive ITM needs a batch drawn with negatives (train.itm_contrastive_weight > 0)");
  const auto rows = batch.itm_labels.eq(1).nonzero().squeeze(1);  // matched captions
  const int64_t m = rows.numel(), k = batch.negative_excluded.size(1), candidates = k + 1;
  ContrastiveItmResult result;
  result.captions = m;
  if (m == 0) return result;

  // Candidate c of caption a: c = 0 its own image (row rows[a] of the batch), c >= 1 pool image c - 1.
  const auto text_ids = batch.text_ids.index_select(0, rows), text_mask = batch.text_mask.index_select(0, rows);
  const auto excluded = torch::cat({torch::zeros({m, 1}, batch.negative_excluded.options()), batch.negative_excluded.index_select(0, rows)}, 1);
  Batch own;
  if (batch.image_pixels.defined()) {
    own.image_pixels = batch.image_pixels.index_select(0, rows);
  } else {
    own.region_feats = batch.region_feats.index_select(0, rows), own.region_boxes = batch.region_boxes.index_select(0, rows);
    own.region_mask = batch.region_mask.index_select(0, rows);
  }

  // Every image, own ones first, padded to one token count.
  auto all_images = [&] {
    const ImageTokens own_tokens = model.embed_images(own), pool_tokens = model.embed_images(*batch.negatives);
    const int64_t n_tok = std::max(own_tokens.states.size(1), pool_tokens.states.size(1));
    auto pad = [&](const ImageTokens& t) {
      const int64_t extra = n_tok - t.states.size(1);
      if (extra == 0) return t;
      return ImageTokens{torch::cat({t.states, torch::zeros({t.states.size(0), extra, t.states.size(2)}, t.states.options())}, 1),
                         torch::cat({t.mask, torch::zeros({t.mask.size(0), extra}, t.mask.options())}, 1)};
    };
    const ImageTokens a = pad(own_tokens), b = pad(pool_tokens);
    return ImageTokens{torch::cat({a.states, b.states}, 0), torch::cat({a.mask, b.mask}, 0)};
  };
  // Layers below the first cross-modal one see one modality: every caption and image goes through
  // them once, not once per pair. Their outputs are leaves the pair passes start from; the pairs'
  // gradients gather on them and go down the towers once, at the end (the towers' dropout masks
  // are then one draw that scoring and gradient share).
  const int64_t towers = model.crosses_modalities() ? model.first_cross_modal_layer() : 0;
  torch::Tensor tower_text, tower_images, text_leaf, image_leaf, image_masks;
  auto score_from = [&](const torch::Tensor& text_states, const torch::Tensor& image_states, const torch::Tensor& masks,
                        int64_t first_layer, int64_t begin, int64_t end) {
    const auto idx = torch::arange(begin, end, text_ids.options());
    const auto cap = idx.div(candidates, "floor"), cand = idx.remainder(candidates);
    const auto image_row = torch::where(cand.eq(0), cap, m + cand - 1);
    const Encoded e = model.encode_embedded(text_states.index_select(0, cap), image_states.index_select(0, image_row),
                                            text_mask.index_select(0, cap), masks.index_select(0, image_row), false, first_layer);
    return model.match_scores(e);  // (end - begin)
  };
  // Scores of the pairs [begin, end) of the flattened (caption, candidate) grid, with a graph
  // only when asked. Without towers the embeddings are recomputed per chunk, so every chunk's
  // graph stands alone.
  auto score_pairs = [&](int64_t begin, int64_t end) {
    if (towers > 0) return score_from(text_leaf, image_leaf, image_masks, towers, begin, end);
    const ImageTokens images = all_images();
    return score_from(model.text_embed(text_ids), images.states, images.mask, 0, begin, end);
  };

  if (!model.crosses_modalities()) {
    // No layer crosses modalities: a pair's score is a function of the caption's and the image's
    // own states (match_score_matrix), so one pass per caption and per image gives all scores.
    Batch captions;
    captions.text_ids = text_ids, captions.text_mask = text_mask;
    auto unimodal = [&](const Batch& images, bool with_text) {
      const ImageTokens t = model.embed_images(images);
      const int64_t n = t.states.size(0);
      const auto text = with_text ? model.text_embed(captions.text_ids) : torch::zeros({n, 1, t.states.size(2)}, t.states.options());
      const auto mask = with_text ? captions.text_mask : torch::ones({n, 1}, t.mask.options());
      const Encoded e = model.encode_embedded(text, t.states, mask, t.mask);
      return std::make_pair(e.text.select(1, 0), e.image.select(1, 0));
    };
    const auto [cls, own_img] = unimodal(own, true);
    const auto pool_img = unimodal(*batch.negatives, false).second;
    const auto all = model.match_score_matrix(cls, torch::cat({own_img, pool_img}, 0));  // (m, m + K)
    const auto scores = torch::cat({all.narrow(1, 0, m).diagonal().unsqueeze(1), all.narrow(1, m, k)}, 1);
    const auto [loss, acc] = contrastive_loss_from_scores(scores, excluded);
    result.loss = loss.item<double>(), result.accuracy = acc;
    if (weight > 0 && model.is_training() && torch::GradMode::is_enabled()) (weight * loss).backward();
    return result;
  }

  // Every chunk but the last is scored without a graph; the last keeps its graph, so a step
  // whose pairs fit one chunk (the usual case) runs one forward pass, not two.
  const int64_t total = m * candidates, last = (total - 1) / chunk * chunk;
  const bool backprop = weight > 0 && model.is_training() && torch::GradMode::is_enabled();
  if (towers > 0) {
    const torch::AutoGradMode graph(backprop);
    const ImageTokens images = all_images();
    tower_text = model.run_one_modality(model.text_embed(text_ids), text_mask, true, 0, towers);
    tower_images = model.run_one_modality(images.states, images.mask, false, 0, towers);
    image_masks = images.mask;
    text_leaf = tower_text.detach().requires_grad_(backprop), image_leaf = tower_images.detach().requires_grad_(backprop);
  }
  torch::Tensor scores = torch::empty({total}, model.text_embed->word->weight.options().requires_grad(false));
  // Dropout: a chunk run again with its graph must draw the masks its scoring pass drew, or the
  // gradient is another loss's. The generator's state before each scoring pass is kept and put
  // back for the second pass; afterwards the generator continues from where scoring left it.
  at::Generator generator = at::globalContext().defaultGenerator(scores.device());
  auto generator_state = [&] {
    std::lock_guard<std::mutex> lock(generator.mutex());
    return generator.get_state();
  };
  auto set_generator_state = [&](const torch::Tensor& state) {
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(state);
  };
  const bool replay = backprop && last > 0;
  std::vector<torch::Tensor> chunk_states;
  {
    torch::NoGradGuard no_grad;
    for (int64_t b = 0; b < last; b += chunk) {
      if (replay) chunk_states.push_back(generator_state());
      scores.narrow(0, b, chunk).copy_(score_pairs(b, b + chunk));
    }
  }
  torch::Tensor last_scores;
  {
    const torch::AutoGradMode graph(backprop);
    last_scores = score_pairs(last, total);
  }
  scores.narrow(0, last, total - last).copy_(last_scores.detach());
  const auto [loss, acc] = contrastive_loss_from_scores(scores.view({m, candidates}), excluded);
  result.loss = loss.item<double>(), result.accuracy = acc;

  if (backprop) {
    // d loss / d s = (softmax(s) - onehot(0)) / m; excluded candidates have softmax 0.
    auto grad = torch::log_softmax(scores.view({m, candidates}).masked_fill(excluded, -std::numeric_limits<float>::infinity()), 1).exp();
    grad.select(1, 0).sub_(1.0);
    grad = (grad * (weight / static_cast<double>(m))).reshape({-1});
    last_scores.backward(grad.narrow(0, last, total - last));
    last_scores = torch::Tensor();  // its graph goes before the others are rebuilt
    const torch::Tensor after_scoring = replay ? generator_state() : torch::Tensor();
    for (int64_t b = 0, k = 0; b < last; b += chunk, ++k) {
      set_generator_state(chunk_states[static_cast<size_t>(k)]);
      score_pairs(b, b + chunk).backward(grad.narrow(0, b, chunk));
    }
    if (replay) set_generator_state(after_scoring);
    if (towers > 0) {  // the gradients gathered on the towers' outputs go down them, once
      std::vector<torch::Tensor> outputs, grads;
      for (const auto& [out, leaf] : {std::pair{tower_text, text_leaf}, std::pair{tower_images, image_leaf}})
        if (leaf.grad().defined() && out.requires_grad()) outputs.push_back(out), grads.push_back(leaf.grad());
      if (!outputs.empty()) torch::autograd::backward(outputs, grads);
    }
  }
  return result;
}

}  // namespace mmt
