/* ALBEF's momentum queue for the align loss (see align_queue.h). */
#include "mmt/loss/align_queue.h"

#include <algorithm>
#include <limits>

#include "mmt/data/batch.h"
#include "mmt/io/safetensors.h"
#include "mmt/model/transformer.h"
#include "mmt/util/error.h"

namespace mmt {

namespace {

// Accuracy of a logits row's argmax against the diagonal, as a float64 scalar.
torch::Tensor diagonal_accuracy(const torch::Tensor& logits) {
  const auto target = torch::arange(logits.size(0), torch::device(logits.device()).dtype(torch::kInt64));
  return logits.argmax(1).eq(target).to(torch::kFloat64).mean();
}

}  // namespace

std::pair<torch::Tensor, torch::Tensor> queued_align_loss(const torch::Tensor& text_emb, const torch::Tensor& image_emb,
                                                          const torch::Tensor& text_m, const torch::Tensor& image_m,
                                                          const torch::Tensor& queue_text, const torch::Tensor& queue_image,
                                                          const torch::Tensor& scale, const torch::Tensor& keys,
                                                          const torch::Tensor& queue_keys, double distill) {
  TORCH_CHECK(text_emb.dim() == 2 && text_emb.sizes() == image_emb.sizes() && text_m.sizes() == text_emb.sizes() &&
                  image_m.sizes() == text_emb.sizes(),
              "queued align loss: embeddings must all be (M, E), got ", text_emb.sizes(), ", ", image_emb.sizes(), ", ",
              text_m.sizes(), ", ", image_m.sizes());
  TORCH_CHECK(queue_text.dim() == 2 && queue_text.sizes() == queue_image.sizes() && queue_text.size(1) == text_emb.size(1),
              "queued align loss: queue must be (F, E) twice, got ", queue_text.sizes(), " and ", queue_image.sizes());
  const int64_t m = text_emb.size(0);
  const auto dtype = text_emb.scalar_type();
  const auto images = torch::cat({image_m.to(dtype), queue_image.to(text_emb.device(), dtype)}, 0);
  const auto texts = torch::cat({text_m.to(dtype), queue_text.to(text_emb.device(), dtype)}, 0);
  auto t2i = scale * torch::matmul(text_emb, images.t());  // (M, M + F)
  auto i2t = scale * torch::matmul(image_emb, texts.t());
  // The momentum model's own similarities to the same candidates: its soft targets.
  torch::Tensor t2i_m, i2t_m;
  if (distill > 0) {
    const auto s = scale.detach();
    t2i_m = s * torch::matmul(text_m.to(dtype), images.t()), i2t_m = s * torch::matmul(image_m.to(dtype), texts.t());
  }
  torch::Tensor same;
  if (keys.defined()) {
    // Another caption or image of the row's own image - in the batch off the diagonal, or queued -
    // is no negative: out of both softmaxes.
    const auto k = keys.to(t2i.device());
    auto all = k;
    if (queue_text.size(0) > 0) {
      TORCH_CHECK(queue_keys.defined() && queue_keys.size(0) == queue_text.size(0),
                  "queued align loss: queue keys must be (F) where the batch has keys");
      all = torch::cat({k, queue_keys.to(k.device())}, 0);
    }
    same = k.unsqueeze(1).eq(all.unsqueeze(0));  // (M, M + F)
    same.narrow(1, 0, m).fill_diagonal_(false);
    const double inf = std::numeric_limits<double>::infinity();
    t2i = t2i.masked_fill(same, -inf), i2t = i2t.masked_fill(same, -inf);
    if (distill > 0) t2i_m = t2i_m.masked_fill(same, -inf), i2t_m = i2t_m.masked_fill(same, -inf);
  }
  const auto target = torch::arange(m, torch::device(t2i.device()).dtype(torch::kInt64));
  torch::Tensor loss;
  if (distill > 0) {
    // Cross-entropy to distill x softmax(momentum) + (1 - distill) x onehot; left-out candidates
    // have target 0 and take no part (their -inf log-probability is multiplied by nothing).
    auto soft = [&](const torch::Tensor& logits, const torch::Tensor& momentum) {
      auto q = distill * torch::softmax(momentum, 1);
      q.diagonal().add_(1.0 - distill);  // the true pair of row a is candidate a
      const auto logp = torch::log_softmax(logits, 1);
      return -(q * logp.masked_fill(q.eq(0), 0.0)).sum(1).mean();
    };
    loss = 0.5 * (soft(t2i, t2i_m) + soft(i2t, i2t_m));
  } else {
    loss = 0.5 * (torch::cross_entropy_loss(t2i, target) + torch::cross_entropy_loss(i2t, target));
  }
  return {loss, 0.5 * (diagonal_accuracy(t2i) + diagonal_accuracy(i2t))};
}

struct AlignQueue::Impl {
  MultimodalTransformer model{nullptr};
  torch::Tensor text, image, keys;  // (N, E), (N, E), (N) int64
  bool have_keys = false;
};

AlignQueue::AlignQueue(MultimodalTransformerImpl& model, int64_t size, double momentum)
    : impl_(std::make_unique<Impl>()), size_(size), momentum_(momentum) {
  if (size < 1) throw Error("train.align_queue: a queue needs at least one entry");
  if (!model.has_align()) throw Error("train.align_queue: the model has no align head (model.align)");
  impl_->model = MultimodalTransformer(model.options(), model.dims());
  const auto device = model.text_embed->word->weight.device();
  impl_->model->to(device);
  impl_->model->eval();
  for (auto& p : impl_->model->parameters()) p.set_requires_grad(false);
  const int64_t e = model.options().embed_dim;
  const auto f = torch::TensorOptions().device(device).dtype(torch::kFloat32);
  impl_->text = torch::zeros({size, e}, f), impl_->image = torch::zeros({size, e}, f);
  impl_->keys = torch::full({size}, -1, f.dtype(torch::kInt64));
}

AlignQueue::~AlignQueue() = default;

std::pair<torch::Tensor, torch::Tensor> AlignQueue::embeddings(const Batch& batch, const torch::Tensor& rows, bool unmasked) {
  TORCH_CHECK(started_, "AlignQueue::embeddings before start(): the momentum model holds no weights yet");
  torch::NoGradGuard no_grad;
  Batch in;  // the rows, with the inputs the align loss reads
  in.text_ids = (unmasked ? unmasked_text_ids(batch) : batch.text_ids).index_select(0, rows);
  in.text_mask = batch.text_mask.index_select(0, rows);
  if (batch.image_pixels.defined()) {
    in.image_pixels = batch.image_pixels.index_select(0, rows);
  } else {
    in.region_feats = (unmasked ? unmasked_region_feats(batch) : batch.region_feats).index_select(0, rows);
    in.region_boxes = batch.region_boxes.index_select(0, rows);
    in.region_mask = batch.region_mask.index_select(0, rows);
  }
  const auto e = impl_->model->tower_align_embeddings(in);
  return {e.text, e.image};
}

torch::Tensor AlignQueue::text() const {
  return filled_ < size_ ? impl_->text.narrow(0, 0, filled_) : torch::roll(impl_->text, -next_, 0);
}
torch::Tensor AlignQueue::image() const {
  return filled_ < size_ ? impl_->image.narrow(0, 0, filled_) : torch::roll(impl_->image, -next_, 0);
}
torch::Tensor AlignQueue::keys() const {
  if (!impl_->have_keys) return {};
  return filled_ < size_ ? impl_->keys.narrow(0, 0, filled_) : torch::roll(impl_->keys, -next_, 0);
}

void AlignQueue::push(const torch::Tensor& text, const torch::Tensor& image, const torch::Tensor& keys) {
  torch::NoGradGuard no_grad;
  const int64_t r = text.size(0);
  TORCH_CHECK(image.size(0) == r && (!keys.defined() || keys.size(0) == r), "AlignQueue::push: rows disagree");
  if (keys.defined()) impl_->have_keys = true;
  // The newest size_ rows at most, each to the slot after the last.
  const int64_t from = std::max<int64_t>(0, r - size_);
  for (int64_t i = from; i < r;) {
    const int64_t n = std::min(r - i, size_ - next_);
    impl_->text.narrow(0, next_, n).copy_(text.narrow(0, i, n));
    impl_->image.narrow(0, next_, n).copy_(image.narrow(0, i, n));
    if (keys.defined()) impl_->keys.narrow(0, next_, n).copy_(keys.narrow(0, i, n));
    i += n, next_ = (next_ + n) % size_, filled_ = std::min(size_, filled_ + n);
  }
}

void AlignQueue::start(MultimodalTransformerImpl& model) {
  if (started_) return;
  torch::NoGradGuard no_grad;
  const auto from = model.named_parameters(), to = impl_->model->named_parameters();
  for (const auto& p : from) to[p.key()].copy_(p.value());
  const auto from_b = model.named_buffers(), to_b = impl_->model->named_buffers();
  for (const auto& b : from_b) to_b[b.key()].copy_(b.value());
  started_ = true;
}

void AlignQueue::update(MultimodalTransformerImpl& model) {
  start(model);
  torch::NoGradGuard no_grad;
  const auto from = model.named_parameters(), to = impl_->model->named_parameters();
  for (const auto& p : from) to[p.key()].mul_(momentum_).add_(p.value(), 1.0 - momentum_);
  const auto from_b = model.named_buffers(), to_b = impl_->model->named_buffers();
  for (const auto& b : from_b) to_b[b.key()].copy_(b.value());
}

NamedTensors AlignQueue::state() const {
  NamedTensors out;
  for (auto& [name, t] : module_state(*impl_->model)) out.emplace_back("align_queue.momentum." + name, t);
  out.emplace_back("align_queue.text", impl_->text);
  out.emplace_back("align_queue.image", impl_->image);
  out.emplace_back("align_queue.keys", impl_->keys);
  out.emplace_back("align_queue.position",
                   torch::tensor({next_, filled_, static_cast<int64_t>(impl_->have_keys)}, torch::kInt64));
  return out;
}

void AlignQueue::load(const NamedTensors& state) {
  const std::string prefix = "align_queue.momentum.";
  NamedTensors weights;
  torch::Tensor text, image, keys, position;
  for (const auto& [name, t] : state) {
    if (name.rfind(prefix, 0) == 0) weights.emplace_back(name.substr(prefix.size()), t);
    else if (name == "align_queue.text") text = t;
    else if (name == "align_queue.image") image = t;
    else if (name == "align_queue.keys") keys = t;
    else if (name == "align_queue.position") position = t;
  }
  if (!text.defined() || !image.defined() || !keys.defined() || !position.defined() || weights.empty())
    throw Error("the checkpoint has no align queue (align_queue.*): it was written without train.align_queue");
  if (text.size(0) != size_)
    throw Error("the checkpoint's align queue holds " + std::to_string(text.size(0)) + " entries, train.align_queue is " +
                std::to_string(size_));
  load_module_state(*impl_->model, weights, /*strict=*/true);
  for (auto& p : impl_->model->parameters()) p.set_requires_grad(false);
  torch::NoGradGuard no_grad;
  impl_->text.copy_(text), impl_->image.copy_(image), impl_->keys.copy_(keys);
  const auto pos = position.to(torch::kCPU, torch::kInt64).contiguous();
  next_ = pos.data_ptr<int64_t>()[0], filled_ = pos.data_ptr<int64_t>()[1], impl_->have_keys = pos.data_ptr<int64_t>()[2] != 0;
  started_ = true;
}

}  // namespace mmt
