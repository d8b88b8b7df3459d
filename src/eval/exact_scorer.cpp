/* Exact all-pairs ITM scoring (see exact_scorer.h). */
#include "mmt/eval/exact_scorer.h"

#include <algorithm>
#include <numeric>

#include "mmt/data/batch.h"
#include "mmt/data/image_source.h"
#include "mmt/model/transformer.h"

namespace mmt {

namespace {

// Splits indices, sorted by key, into blocks of equal key of at most `size` items.
std::vector<std::vector<int64_t>> blocks_by_key(const std::vector<int64_t>& keys, int64_t size) {
  std::vector<int64_t> order(keys.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return keys[a] < keys[b]; });
  std::vector<std::vector<int64_t>> blocks;
  for (size_t i = 0; i < order.size(); ++i) {
    if (blocks.empty() || static_cast<int64_t>(blocks.back().size()) == size ||
        keys[order[i]] != keys[blocks.back().front()])
      blocks.emplace_back();
    blocks.back().push_back(order[i]);
  }
  return blocks;
}

}  // namespace

std::vector<float> score_exact(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
                               const ImageSource& images, const ExactScorerOptions& options,
                               const PairProgress& progress) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.eval();
  const int64_t nc = static_cast<int64_t>(captions.size()), ni = images.size();
  const int64_t num_layers = static_cast<int64_t>(model.layers->size());
  // Layers below the first cross-modal one see one modality only: run them once per caption and
  // once per image (beside a placeholder token of the other modality, which they ignore).
  const int64_t prefix = model.first_cross_modal_layer();
  const int64_t hidden = model.options().hidden;
  auto placeholder = [&](int64_t n) { return torch::zeros({n, 1, hidden}); };
  auto all_real = [](int64_t n) { return torch::ones({n, 1}, torch::kBool); };
  std::vector<float> scores(static_cast<size_t>(nc * ni));

  struct Block {
    std::vector<int64_t> index;
    torch::Tensor states, mask;  // (n, L, H), (n, L)
  };
  // Image blocks: equal token count, embedded once.
  std::vector<int64_t> token_counts(static_cast<size_t>(ni));
  for (int64_t i = 0; i < ni; ++i) token_counts[i] = images.tokens(i);
  const int64_t image_block = std::min<int64_t>(ni, std::max<int64_t>(1, options.pair_batch / 16));
  std::vector<Block> image_blocks;
  for (auto& idx : blocks_by_key(token_counts, image_block)) {
    Batch b;
    images.fill(idx, b);
    ImageTokens tokens = model.embed_images(b);
    const int64_t n = tokens.states.size(0);
    if (prefix > 0)
      tokens.states = model.run_layers(placeholder(n), tokens.states, all_real(n), tokens.mask, 0, prefix).second;
    image_blocks.push_back({idx, tokens.states, tokens.mask});
  }
  // Caption blocks: equal length, embedded once.
  std::vector<int64_t> lengths(static_cast<size_t>(nc));
  for (int64_t c = 0; c < nc; ++c) lengths[c] = static_cast<int64_t>(captions[c].size());
  std::vector<Block> caption_blocks;
  for (auto& idx : blocks_by_key(lengths, 256)) {
    std::vector<std::vector<int64_t>> ids;
    for (int64_t c : idx) ids.push_back(captions[c]);
    Batch b;
    pad_text(ids, /*pad_id=*/0, b);  // a block's captions have one length: nothing is padded
    auto states = model.text_embed(b.text_ids);
    const int64_t n = states.size(0);
    if (prefix > 0) states = model.run_layers(states, placeholder(n), b.text_mask, all_real(n), 0, prefix).first;
    caption_blocks.push_back({idx, states, b.text_mask});
  }

  if (prefix == num_layers) {
    // No layer crosses modalities: the score of a pair is a function of the caption's and the
    // image's pooled states alone, so all C x N scores come from one matrix product.
    auto cls = torch::empty({nc, hidden}), img = torch::empty({ni, hidden});
    for (const auto& cb : caption_blocks) {
      const auto t = model.final_norms(cb.states, placeholder(cb.states.size(0))).first.select(1, 0);
      cls.index_copy_(0, torch::tensor(cb.index), t);
    }
    for (const auto& ib : image_blocks) {
      const auto v = model.final_norms(placeholder(ib.states.size(0)), ib.states).second.select(1, 0);
      img.index_copy_(0, torch::tensor(ib.index), v);
    }
    const auto matrix = model.match_score_matrix(cls, img).contiguous();
    std::copy(matrix.data_ptr<float>(), matrix.data_ptr<float>() + nc * ni, scores.begin());
    if (progress) progress(nc * ni, nc * ni);
    if (was_training) model.train();
    return scores;
  }

  int64_t done = 0;
  for (const auto& ib : image_blocks) {
    const int64_t n_img = static_cast<int64_t>(ib.index.size());
    const int64_t captions_per_pass = std::max<int64_t>(1, options.pair_batch / n_img);
    for (const auto& cb : caption_blocks) {
      const int64_t n_cap = static_cast<int64_t>(cb.index.size());
      for (int64_t c0 = 0; c0 < n_cap; c0 += captions_per_pass) {
        const int64_t k = std::min(captions_per_pass, n_cap - c0);
        // Pairs (caption c0 + a, image b) at row a * n_img + b.
        auto expand = [&](const torch::Tensor& t, bool captions_side) {
          auto s = captions_side ? t.narrow(0, c0, k).unsqueeze(1) : t.unsqueeze(0);
          auto sizes = s.sizes().vec();
          sizes[0] = k, sizes[1] = n_img;
          auto e = s.expand(sizes);
          sizes.erase(sizes.begin());
          sizes[0] = k * n_img;
          return e.reshape(sizes);
        };
        const Encoded enc = model.encode_embedded(expand(cb.states, true), expand(ib.states, false),
                                                  expand(cb.mask, true), expand(ib.mask, false),
                                                  /*per_layer=*/false, prefix);
        const auto margin = model.match_scores(enc).contiguous();
        const float* m = margin.data_ptr<float>();
        for (int64_t a = 0; a < k; ++a)
          for (int64_t b = 0; b < n_img; ++b) scores[cb.index[c0 + a] * ni + ib.index[b]] = m[a * n_img + b];
        done += k * n_img;
        if (progress) progress(done, nc * ni);
      }
    }
  }
  if (was_training) model.train();
  return scores;
}

}  // namespace mmt
