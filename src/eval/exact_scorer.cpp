/* Exact, dual and two-stage retrieval scoring (see exact_scorer.h). */
#include "mmt/eval/exact_scorer.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <exception>
#include <mutex>
#include <thread>
#include <map>
#include <numeric>
#include <unordered_map>

#include "mmt/data/batch.h"
#include "mmt/data/image_source.h"
#include "mmt/model/transformer.h"
#include "mmt/util/device.h"
#include "mmt/util/error.h"
#include "mmt/util/runtime.h"

namespace mmt {

namespace {

// Items of equal key (caption length, image token count), with their states side by side.
// Identical captions share a row: one score for all of them, so their ties are exact whatever
// pass or thread scores them.
struct Group {
  std::vector<std::vector<int64_t>> items;  // row -> every item it stands for (the first computed it)
  torch::Tensor states, mask;               // (n, L, H), (n, L) on the device
};

// The dual scores' vectors of every distinct caption row and image row (identical captions share
// theirs): scores = scale * text x image^T + bias, with the items each row stands for.
struct DualRows {
  MultimodalTransformerImpl::MatchEmbeddings e;
  std::vector<const std::vector<int64_t>*> caption_items, image_items;
};

std::vector<float> to_host(const torch::Tensor& t) {
  const auto c = t.to(torch::kCPU, torch::kFloat32).contiguous();
  return std::vector<float>(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
}

}  // namespace

struct PairScorer::Impl {
  MultimodalTransformerImpl& model;
  ExactScorerOptions options;
  torch::Device device;
  int64_t nc = 0, ni = 0, hidden = 0;
  int64_t prefix = 0;  // layers below the first cross-modal one
  int64_t start = 0;   // the layer pair passes start at: prefix when cached, else 0
  std::vector<Group> captions, images;
  std::vector<std::pair<int64_t, int64_t>> caption_at, image_at;  // item -> (group, row)
  std::vector<float> dual;  // dual_scores(), once computed (rerank and pairs() both want it)
  bool was_training = false;
  bool dual_is_exact() const { return !model.crosses_modalities(); }
  DualRows dual_rows();  // what the dual scores and embeddings are made of

  Impl(MultimodalTransformerImpl& m, const ExactScorerOptions& o)
      : model(m), options(o), device(resolve_device(o.device)) {}

  torch::Tensor placeholder(int64_t n) const { return torch::zeros({n, 1, hidden}, torch::device(device)); }

  // What every scoring thread sets for itself (both guards are per thread): no graph, and the
  // configured precision.
  struct ScoringGuards {
    torch::NoGradGuard no_grad;
    AutocastGuard autocast;
    ScoringGuards(torch::Device d, bool bf16) : autocast(d, bf16) {}
  };

  // Runs passes 0..n-1 (each returns the pairs it scored) on `threads` threads - each pass on
  // one thread with single-threaded matrix products - or on this thread with the process's BLAS
  // threads. Progress is reported from this thread only.
  void run_passes(int64_t n, const std::function<int64_t(int64_t)>& pass, int64_t total, const PairProgress& progress) {
    const int64_t threads = std::min<int64_t>(n, options.threads);
    std::atomic<int64_t> next{0}, done{0};
    std::exception_ptr failure;
    std::mutex failure_lock;
    auto work = [&] {
      const ScoringGuards guards(device, options.bf16);
      for (int64_t p; (p = next.fetch_add(1)) < n;) {
        try {
          done += pass(p);
        } catch (...) {
          const std::lock_guard<std::mutex> lock(failure_lock);
          if (!failure) failure = std::current_exception();
          next = n;
        }
      }
    };
    if (threads <= 1) {
      const ScoringGuards guards(device, options.bf16);
      for (int64_t p = 0; p < n; ++p) {
        done += pass(p);
        if (progress) progress(done, total);
      }
      return;
    }
    const SingleThreadedProducts one_thread_each;
    std::atomic<int64_t> finished{0};
    std::vector<std::thread> pool;
    for (int64_t t = 0; t < threads; ++t) pool.emplace_back([&] { work(), ++finished; });
    for (int64_t reported = -1; finished.load() < threads;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      const int64_t d = done.load();
      if (progress && d != reported && !failure) progress(d, total), reported = d;
    }
    for (auto& t : pool) t.join();
    if (failure) std::rethrow_exception(failure);
    if (progress) progress(done.load(), total);
  }

  // Scores of pairs (caption rows cr of group cg, image rows ir of group ig), one pass.
  torch::Tensor score(const Group& cg, const torch::Tensor& cr, const Group& ig, const torch::Tensor& ir) {
    const Encoded enc = model.encode_embedded(cg.states.index_select(0, cr), ig.states.index_select(0, ir),
                                              cg.mask.index_select(0, cr), ig.mask.index_select(0, ir),
                                              /*per_layer=*/false, start);
    return model.match_scores(enc);
  }
};

PairScorer::PairScorer(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
                       const ImageSource& images, const ExactScorerOptions& options)
    : impl_(std::make_unique<Impl>(model, options)) {
  Impl& s = *impl_;
  torch::NoGradGuard no_grad;
  s.was_training = model.is_training();
  model.eval();
  s.nc = static_cast<int64_t>(captions.size()), s.ni = images.size();
  s.hidden = model.options().hidden;
  s.prefix = model.first_cross_modal_layer();
  s.start = options.cache ? s.prefix : 0;
  // The model moves to the scoring device (a model trained there is there already).
  if (!model.parameters().empty() && model.parameters().front().device() != s.device) model.to(s.device);
  const AutocastGuard autocast(s.device, options.bf16);

  // Images by token count, embedded in chunks.
  std::map<int64_t, std::vector<int64_t>> by_tokens;
  for (int64_t i = 0; i < s.ni; ++i) by_tokens[images.tokens(i)].push_back(i);
  const int64_t chunk = std::max<int64_t>(1, options.pair_batch / 16);
  s.image_at.resize(static_cast<size_t>(s.ni));
  for (auto& [tokens, idx] : by_tokens) {
    std::vector<torch::Tensor> states, masks;
    for (size_t a = 0; a < idx.size(); a += static_cast<size_t>(chunk)) {
      const std::vector<int64_t> part(idx.begin() + a, idx.begin() + std::min(idx.size(), a + chunk));
      Batch b;
      images.fill(part, b);
      ImageTokens t = model.embed_images(batch_to(b, s.device));
      states.push_back(s.model.run_one_modality(t.states, t.mask, false, 0, s.start));
      masks.push_back(t.mask);
    }
    std::vector<std::vector<int64_t>> items;
    for (size_t r = 0; r < idx.size(); ++r) {
      s.image_at[idx[r]] = {static_cast<int64_t>(s.images.size()), r};
      items.push_back({idx[r]});
    }
    s.images.push_back({items, torch::cat(states), torch::cat(masks)});
  }
  // Distinct captions grouped by length (a group's captions have one length: nothing is padded).
  const DistinctCaptions distinct = distinct_captions(captions);
  std::vector<std::vector<int64_t>> items_of(distinct.rows.size());  // distinct row -> its captions
  for (int64_t c = 0; c < s.nc; ++c) items_of[static_cast<size_t>(distinct.row_of[c])].push_back(c);
  std::map<int64_t, std::vector<int64_t>> by_length;  // length -> distinct rows
  for (size_t d = 0; d < distinct.rows.size(); ++d)
    by_length[static_cast<int64_t>(distinct.rows[d].size())].push_back(static_cast<int64_t>(d));
  s.caption_at.resize(static_cast<size_t>(s.nc));
  for (auto& [length, rows] : by_length) {
    std::vector<std::vector<int64_t>> items;
    for (int64_t d : rows) {
      for (int64_t c : items_of[static_cast<size_t>(d)])
        s.caption_at[c] = {static_cast<int64_t>(s.captions.size()), static_cast<int64_t>(items.size())};
      items.push_back(std::move(items_of[static_cast<size_t>(d)]));
    }
    std::vector<torch::Tensor> states, masks;
    for (size_t a = 0; a < rows.size(); a += 256) {
      std::vector<std::vector<int64_t>> ids;
      for (size_t r = a; r < std::min(rows.size(), a + 256); ++r) ids.push_back(distinct.rows[static_cast<size_t>(rows[r])]);
      Batch b;
      pad_text(ids, /*pad_id=*/0, b);
      b = batch_to(b, s.device);
      states.push_back(s.model.run_one_modality(model.text_embed(b.text_ids), b.text_mask, true, 0, s.start));
      masks.push_back(b.text_mask);
    }
    s.captions.push_back({items, torch::cat(states), torch::cat(masks)});
  }
}

DistinctCaptions distinct_captions(const std::vector<std::vector<int64_t>>& captions) {
  DistinctCaptions d;
  std::map<std::vector<int64_t>, int64_t> row;
  d.row_of.reserve(captions.size());
  for (const auto& c : captions) {
    const auto [it, fresh] = row.emplace(c, static_cast<int64_t>(d.rows.size()));
    if (fresh) d.rows.push_back(c);
    d.row_of.push_back(it->second);
  }
  return d;
}

PairScorer::~PairScorer() {
  if (impl_ && impl_->was_training) impl_->model.train();
}

int64_t PairScorer::num_captions() const { return impl_->nc; }
int64_t PairScorer::num_images() const { return impl_->ni; }

DualRows PairScorer::Impl::dual_rows() {
  Impl& s = *this;
  const bool exact = s.dual_is_exact();  // the final states, scored by the model's own head
  auto pooled = [&](const Group& g, bool text) {
    auto states = s.model.run_one_modality(g.states, g.mask, text, s.start, s.prefix);
    if (exact) {
      const int64_t n = states.size(0);
      states = text ? s.model.final_norms(states, s.placeholder(n)).first : s.model.final_norms(s.placeholder(n), states).second;
    }
    return states.select(1, 0).to(torch::kFloat32);
  };
  DualRows r;
  std::vector<torch::Tensor> cls_rows, img_rows;
  for (const auto& g : s.captions) {
    cls_rows.push_back(pooled(g, true));
    for (const auto& it : g.items) r.caption_items.push_back(&it);
  }
  for (const auto& g : s.images) {
    img_rows.push_back(pooled(g, false));
    for (const auto& it : g.items) r.image_items.push_back(&it);
  }
  const auto cls = torch::cat(cls_rows), img = torch::cat(img_rows);
  namespace F = torch::nn::functional;
  const auto opts = F::NormalizeFuncOptions().dim(1);
  if (exact) r.e = s.model.match_embeddings(cls, img);  // = model.match_score_matrix, as vectors
  else if (s.model.has_align()) r.e = s.model.align_embeddings(cls, img);  // the states the align loss trained
  else r.e = {F::normalize(cls, opts), F::normalize(img, opts), torch::ones({}, cls.options()), torch::zeros({}, cls.options())};
  return r;
}

std::vector<float> PairScorer::dual_scores() {
  Impl& s = *impl_;
  if (!s.dual.empty()) return s.dual;
  torch::NoGradGuard no_grad;
  const AutocastGuard autocast(s.device, s.options.bf16);
  // One vector per row, one matrix product, then every item's entries from its row's: identical
  // captions get bitwise identical scores. (x 1 and + 0 are exact: the cosine and the model's own
  // match_score_matrix to the bit.)
  const DualRows r = s.dual_rows();
  const auto rows = to_host(r.e.scale * torch::matmul(r.e.text, r.e.image.t()) + r.e.bias);
  const size_t ri_count = r.image_items.size();
  s.dual.assign(static_cast<size_t>(s.nc * s.ni), 0.f);
  for (size_t rc = 0; rc < r.caption_items.size(); ++rc)
    for (int64_t c : *r.caption_items[rc])
      for (size_t ri = 0; ri < ri_count; ++ri)
        for (int64_t i : *r.image_items[ri]) s.dual[static_cast<size_t>(c * s.ni + i)] = rows[rc * ri_count + ri];
  return s.dual;
}

PairScorer::DualEmbeddings PairScorer::dual_embeddings() {
  Impl& s = *impl_;
  torch::NoGradGuard no_grad;
  const AutocastGuard autocast(s.device, s.options.bf16);
  const DualRows r = s.dual_rows();
  DualEmbeddings out;
  out.dim = r.e.text.size(1);
  out.scale = r.e.scale.item<double>(), out.bias = r.e.bias.item<double>();
  auto expand = [&](const torch::Tensor& rows, const std::vector<const std::vector<int64_t>*>& items, int64_t n,
                    std::vector<float>& to) {
    const std::vector<float> host = to_host(rows);
    to.assign(static_cast<size_t>(n * out.dim), 0.f);
    for (size_t k = 0; k < items.size(); ++k)
      for (int64_t item : *items[k])
        std::copy_n(host.begin() + static_cast<std::ptrdiff_t>(k * out.dim), out.dim, to.begin() + item * out.dim);
  };
  expand(r.e.text, r.caption_items, s.nc, out.text);
  expand(r.e.image, r.image_items, s.ni, out.image);
  return out;
}

bool PairScorer::dual_is_exact() const { return impl_->dual_is_exact(); }

bool scores_by_one_product(const MultimodalTransformerImpl& model, const ExactScorerOptions& options) {
  return options.cache && !model.crosses_modalities();
}

std::string PairScorer::dual_description() const {
  const Impl& s = *impl_;
  if (s.dual_is_exact()) return "the model's own unimodal scores (no cross-modal layer: dual = exact)";
  if (s.model.has_align())
    return "the align head: scaled cosine of the projected [CLS] and [IMG] states after layer " + std::to_string(s.prefix) +
           ", the last unimodal one (trained by train.align_weight)";
  if (s.prefix == 0) return "cosine of the [CLS] and [IMG] embeddings (the stack crosses modalities from layer 0)";
  return "cosine of the [CLS] and [IMG] states after layer " + std::to_string(s.prefix) +
         ", the last unimodal one (not trained to match)";
}

std::vector<float> PairScorer::all_pairs(const PairProgress& progress) {
  Impl& s = *impl_;
  if (scores_by_one_product(s.model, s.options)) {
    auto scores = dual_scores();  // exact for such stacks: one matrix product
    if (progress) progress(s.nc * s.ni, s.nc * s.ni);
    return scores;
  }
  std::vector<float> scores(static_cast<size_t>(s.nc * s.ni));
  const int64_t image_chunk = std::max<int64_t>(1, s.options.pair_batch / 16);
  // The passes, listed first: (image group, first image, images; caption group, first caption, captions).
  struct Pass {
    const Group *ig, *cg;
    int64_t i0, n_img, c0, k;
  };
  std::vector<Pass> passes;
  for (const auto& ig : s.images) {
    const int64_t n_group = static_cast<int64_t>(ig.items.size());
    for (int64_t i0 = 0; i0 < n_group; i0 += image_chunk) {
      const int64_t n_img = std::min(image_chunk, n_group - i0);
      const int64_t per_pass = std::max<int64_t>(1, s.options.pair_batch / n_img);
      for (const auto& cg : s.captions) {
        const int64_t n_cap = static_cast<int64_t>(cg.items.size());
        for (int64_t c0 = 0; c0 < n_cap; c0 += per_pass) passes.push_back({&ig, &cg, i0, n_img, c0, std::min(per_pass, n_cap - c0)});
      }
    }
  }
  s.run_passes(static_cast<int64_t>(passes.size()), [&](int64_t p) {
    const Pass& q = passes[static_cast<size_t>(p)];
    // Pairs (caption c0 + a, image i0 + b) at row a * n_img + b.
    const auto opts = torch::device(s.device).dtype(torch::kInt64);
    const auto cr = torch::arange(q.c0, q.c0 + q.k, opts).unsqueeze(1).expand({q.k, q.n_img}).reshape({-1});
    const auto ir = torch::arange(q.i0, q.i0 + q.n_img, opts).unsqueeze(0).expand({q.k, q.n_img}).reshape({-1});
    const auto m = to_host(s.score(*q.cg, cr, *q.ig, ir));
    int64_t filled = 0;
    for (int64_t a = 0; a < q.k; ++a)
      for (int64_t c : q.cg->items[q.c0 + a])
        for (int64_t b = 0; b < q.n_img; ++b, ++filled)
          for (int64_t i : q.ig->items[q.i0 + b]) scores[c * s.ni + i] = m[a * q.n_img + b];
    return filled;
  }, s.nc * s.ni, progress);
  return scores;
}

std::vector<float> PairScorer::pairs(const std::vector<int64_t>& caption, const std::vector<int64_t>& image,
                                     const PairProgress& progress) {
  Impl& s = *impl_;
  if (caption.size() != image.size()) throw std::invalid_argument("PairScorer::pairs: caption and image lists differ in length");
  for (size_t p = 0; p < caption.size(); ++p)
    if (caption[p] < 0 || caption[p] >= s.nc || image[p] < 0 || image[p] >= s.ni)
      throw std::out_of_range("PairScorer::pairs: pair (" + std::to_string(caption[p]) + ", " + std::to_string(image[p]) + ") out of range");
  if (scores_by_one_product(s.model, s.options)) {
    // No cross-modal layer: the entries of the one matrix product, exactly what all_pairs gives.
    const auto all = dual_scores();
    std::vector<float> scores(caption.size());
    for (size_t p = 0; p < caption.size(); ++p) scores[p] = all[caption[p] * s.ni + image[p]];
    if (progress) progress(static_cast<int64_t>(caption.size()), static_cast<int64_t>(caption.size()));
    return scores;
  }
  // Pairs grouped by (caption group, image group): equal shapes in one pass. Within a group each
  // (caption row, image row) is scored once, so requests for identical captions get one score.
  std::map<std::pair<int64_t, int64_t>, std::vector<int64_t>> by_groups;
  for (size_t p = 0; p < caption.size(); ++p) {
    by_groups[{s.caption_at[caption[p]].first, s.image_at[image[p]].first}].push_back(static_cast<int64_t>(p));
  }
  struct Pass {
    const Group *cg, *ig;
    std::vector<int64_t> cr, ir;               // rows of the two groups
    std::vector<std::vector<int64_t>> wanted;  // per scored pair: the requests it answers
  };
  std::vector<Pass> passes;
  for (const auto& [groups, list] : by_groups) {
    std::map<std::pair<int64_t, int64_t>, size_t> slot;
    Pass all{&s.captions[groups.first], &s.images[groups.second], {}, {}, {}};
    for (int64_t p : list) {
      const std::pair<int64_t, int64_t> rows{s.caption_at[caption[p]].second, s.image_at[image[p]].second};
      const auto [it, fresh] = slot.emplace(rows, all.cr.size());
      if (fresh) all.cr.push_back(rows.first), all.ir.push_back(rows.second), all.wanted.emplace_back();
      all.wanted[it->second].push_back(p);
    }
    const size_t batch = static_cast<size_t>(s.options.pair_batch);
    for (size_t a = 0; a < all.cr.size(); a += batch) {
      const size_t e = std::min(all.cr.size(), a + batch);
      passes.push_back({all.cg, all.ig, {all.cr.begin() + a, all.cr.begin() + e}, {all.ir.begin() + a, all.ir.begin() + e},
                        {all.wanted.begin() + a, all.wanted.begin() + e}});
    }
  }
  std::vector<float> scores(caption.size());
  s.run_passes(static_cast<int64_t>(passes.size()), [&](int64_t p) {
    const Pass& q = passes[static_cast<size_t>(p)];
    const auto m = to_host(s.score(*q.cg, torch::tensor(q.cr).to(s.device), *q.ig, torch::tensor(q.ir).to(s.device)));
    int64_t filled = 0;
    for (size_t r = 0; r < q.wanted.size(); ++r)
      for (int64_t w : q.wanted[r]) scores[static_cast<size_t>(w)] = m[r], ++filled;
    return filled;
  }, static_cast<int64_t>(caption.size()), progress);
  return scores;
}

std::vector<float> score_exact(MultimodalTransformerImpl& model, const std::vector<std::vector<int64_t>>& captions,
                               const ImageSource& images, const ExactScorerOptions& options,
                               const PairProgress& progress) {
  PairScorer scorer(model, captions, images, options);
  return scorer.all_pairs(progress);
}

std::vector<std::vector<int64_t>> top_k(const std::vector<float>& scores, int64_t rows, int64_t cols, int64_t k,
                                        bool by_row) {
  const int64_t queries = by_row ? rows : cols, candidates = by_row ? cols : rows;
  k = std::min(k, candidates);
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(queries));
  std::vector<int64_t> order(static_cast<size_t>(candidates));
  for (int64_t q = 0; q < queries; ++q) {
    auto at = [&](int64_t c) { return by_row ? scores[q * cols + c] : scores[c * cols + q]; };
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int64_t a, int64_t b) {
      const float sa = at(a), sb = at(b);
      return sa > sb || (sa == sb && a < b);
    });
    out[q].assign(order.begin(), order.begin() + k);
  }
  return out;
}

RerankScores rerank(PairScorer& scorer, const std::vector<float>& first_stage, int64_t k, const PairProgress& progress) {
  const int64_t nc = scorer.num_captions(), ni = scorer.num_images();
  if (static_cast<int64_t>(first_stage.size()) != nc * ni)
    throw Error("rerank: the first-stage score matrix has " + std::to_string(first_stage.size()) + " entries, not " +
                std::to_string(nc) + " captions x " + std::to_string(ni) + " images");
  const auto images_of = top_k(first_stage, nc, ni, k, /*by_row=*/true);
  const auto captions_of = top_k(first_stage, nc, ni, k, /*by_row=*/false);
  // The distinct pairs of both directions, scored once.
  std::unordered_map<int64_t, int64_t> slot;
  std::vector<int64_t> pc, pi;
  auto want = [&](int64_t c, int64_t i) {
    if (slot.emplace(c * ni + i, static_cast<int64_t>(pc.size())).second) pc.push_back(c), pi.push_back(i);
  };
  for (int64_t c = 0; c < nc; ++c)
    for (int64_t i : images_of[c]) want(c, i);
  for (int64_t i = 0; i < ni; ++i)
    for (int64_t c : captions_of[i]) want(c, i);
  const auto exact = scorer.pairs(pc, pi, progress);

  RerankScores out;
  out.pairs_scored = static_cast<int64_t>(pc.size());
  out.k_images = std::min(k, ni), out.k_captions = std::min(k, nc);
  out.caption_to_image.assign(first_stage.begin(), first_stage.end());
  out.image_to_caption.assign(first_stage.begin(), first_stage.end());
  // One query's candidates get their exact scores; the others are mapped into [low - 2, low - 1]
  // (low = the lowest exact score), in the first stage's order.
  auto place = [&](std::vector<float>& m, const std::vector<int64_t>& chosen, int64_t query, bool row) {
    const int64_t n = row ? ni : nc;
    auto cell = [&](int64_t j) -> float& { return row ? m[query * ni + j] : m[j * ni + query]; };
    std::vector<char> is_candidate(static_cast<size_t>(n), 0);
    float low = 0;
    bool first = true;
    for (int64_t j : chosen) {
      is_candidate[j] = 1;
      const float e = exact[slot.at(row ? query * ni + j : j * ni + query)];
      cell(j) = e;
      low = first ? e : std::min(low, e);
      first = false;
    }
    float lo = 0, hi = 0;
    first = true;
    for (int64_t j = 0; j < n; ++j)
      if (!is_candidate[j]) lo = first ? cell(j) : std::min(lo, cell(j)), hi = first ? cell(j) : std::max(hi, cell(j)), first = false;
    const double range = hi > lo ? static_cast<double>(hi) - lo : 1.0;
    for (int64_t j = 0; j < n; ++j)
      if (!is_candidate[j]) cell(j) = static_cast<float>(low - 2.0 + (static_cast<double>(cell(j)) - lo) / range);
  };
  for (int64_t c = 0; c < nc; ++c) place(out.caption_to_image, images_of[c], c, true);
  for (int64_t i = 0; i < ni; ++i) place(out.image_to_caption, captions_of[i], i, false);
  return out;
}

}  // namespace mmt
