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
  std::vector<float> scores(static_cast<size_t>(nc * ni));

  // Image blocks: equal token count, embedded once.
  std::vector<int64_t> token_counts(static_cast<size_t>(ni));
  for (int64_t i = 0; i < ni; ++i) token_counts[i] = images.tokens(i);
  const int64_t image_block = std::min<int64_t>(ni, std::max<int64_t>(1, options.pair_batch / 16));
  struct Block {
    std::vector<int64_t> index;
    torch::Tensor states, mask;  // (n, L, H), (n, L)
  };
  std::vector<Block> image_blocks;
  for (auto& idx : blocks_by_key(token_counts, image_block)) {
    Batch b;
    images.fill(idx, b);
    const ImageTokens tokens = model.embed_images(b);
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
    caption_blocks.push_back({idx, model.text_embed(b.text_ids), b.text_mask});
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
        auto expand = [&](const torch::Tensor& t, int64_t n, bool captions_side) {
          auto s = captions_side ? t.narrow(0, c0, k).unsqueeze(1) : t.unsqueeze(0);
          auto sizes = s.sizes().vec();
          sizes[0] = k, sizes[1] = n_img;
          auto e = s.expand(sizes);
          sizes.erase(sizes.begin());
          sizes[0] = k * n_img;
          return e.reshape(sizes);
        };
        auto text = expand(cb.states, k, true), text_mask = expand(cb.mask, k, true);
        auto image = expand(ib.states, n_img, false), image_mask = expand(ib.mask, n_img, false);
        const Encoded enc = model.encode_embedded(text, image, text_mask, image_mask);
        const auto logits = model.itm_logits(enc);
        const auto margin = (logits.select(1, 1) - logits.select(1, 0)).contiguous();
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
