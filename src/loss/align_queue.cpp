/* ALBEF's momentum queue for the align loss (see align_queue.h). */
#include "mmt/loss/align_queue.h"

#include <algorithm>
#include <limits>
#include <map>
#include <string>

#include "mmt/data/batch.h"
#include "mmt/io/safetensors.h"
#include "mmt/loss/pretraining.h"
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
      TORCH_CHECK(queue_keys.defined() && queue_keys.size(0) == queue_text.size(0) && queue_keys.dim() == k.dim(),
                  "queued align loss: queue keys must be shaped as the batch's keys, (F) or (F, K)");
      all = torch::cat({k, queue_keys.to(k.device())}, 0);
    }
    same = same_keys(k, all);  // (M, M + F)
    same.narrow(1, 0, m).fill_diagonal_(false);
    const double inf = std::numeric_limits<double>::infinity();
    t2i = t2i.masked_fill(same, -inf), i2t = i2t.masked_fill(same, -inf);
    if (distill > 0) t2i_m = t2i_m.masked_fill(same, -inf), i2t_m = i2t_m.masked_fill(same, -inf);
  }
  const auto target = torch::arange(m, torch::device(t2i.device()).dtype(torch::kInt64));
  torch::Tensor loss;
  if (distill > 0) {  // the true pair of row a is candidate a; left-out candidates have target 0
    loss = 0.5 * (distilled_cross_entropy(t2i, t2i_m, target, distill) + distilled_cross_entropy(i2t, i2t_m, target, distill));
  } else {
    loss = 0.5 * (torch::cross_entropy_loss(t2i, target) + torch::cross_entropy_loss(i2t, target));
  }
  return {loss, 0.5 * (diagonal_accuracy(t2i) + diagonal_accuracy(i2t))};
}

namespace {

// Whether the momentum model's one pass, tower_align_embeddings, reads the parameter or buffer
// `name`: the embeddings (the ResNet-50's too), the layers below the first cross-modal one, a
// pre-norm stack's final norms and the projections - not the fusion layers, the heads or the
// temperature (the loss scales the momentum similarities by the model's own). A test checks the
// list against the parameters that pass gives a gradient to.
bool tower_reads(const std::string& name, int64_t first_cross_modal, bool pre_norm) {
  auto starts = [&](const char* prefix) { return name.rfind(prefix, 0) == 0; };
  if (starts("text_embed.") || starts("image_embed.") || starts("resnet.") || starts("text_proj.") || starts("image_proj."))
    return true;
  if (pre_norm && (starts("text_final_norm.") || starts("image_final_norm."))) return true;
  if (starts("layers.")) {
    const size_t dot = name.find('.', 7);
    return dot != std::string::npos && std::stoll(name.substr(7, dot - 7)) < first_cross_modal;
  }
  return false;
}

}  // namespace

struct AlignQueue::Impl {
  MultimodalTransformer model{nullptr};
  // What the momentum model's passes read (the towers; everything with whole_model): positions in
  // parameters() / buffers() order (the same in the model and its copy), the copy's names and
  // tensors. The copy's other parameters are emptied.
  std::vector<size_t> param_at, buffer_at;
  size_t param_count = 0, buffer_count = 0;  // all of the copy's (emptied ones included): the model's must match
  std::vector<std::string> names;      // parameters, then buffers
  std::vector<torch::Tensor> tensors;  // the momentum model's, in `names` order
  at::TensorList params() const { return at::TensorList(tensors.data(), param_at.size()); }
  // The model's tensors in `names` order.
  std::vector<torch::Tensor> of(MultimodalTransformerImpl& model) const {
    auto out = pick(model.parameters(), param_at), b = pick(model.buffers(), buffer_at);
    out.insert(out.end(), b.begin(), b.end());
    return out;
  }
  torch::Tensor text, image, keys;  // (N, E), (N, E), (N) int64
  bool have_keys = false;

  // The model's tensors at the positions above.
  static std::vector<torch::Tensor> pick(const std::vector<torch::Tensor>& all, const std::vector<size_t>& at) {
    std::vector<torch::Tensor> out;
    out.reserve(at.size());
    for (const size_t i : at) out.push_back(all[i]);
    return out;
  }
};

AlignQueue::AlignQueue(MultimodalTransformerImpl& model, int64_t size, double momentum, int64_t key_columns,
                       bool whole_model)
    : impl_(std::make_unique<Impl>()), size_(size), whole_model_(whole_model), momentum_(momentum) {
  if (size < 1) throw Error("train.align_queue: a queue needs at least one entry");
  if (!model.has_align()) throw Error("train.align_queue: the model has no align head (model.align)");
  Impl& m = *impl_;
  m.model = MultimodalTransformer(model.options(), model.dims());
  const int64_t first = model.first_cross_modal_layer();
  const bool pre_norm = model.options().pre_norm;
  // Only the towers run in the momentum model (unless it distils MLM, whole_model): the fusion
  // layers and heads are dropped before the copy moves to the model's device (a stack of 3
  // unimodal layers under 1 fusion layer keeps three quarters of its layers, not all of them).
  {
    torch::NoGradGuard no_grad;
    const auto params = m.model->named_parameters();
    for (size_t i = 0; i < params.size(); ++i) {
      auto& p = params[i].value();
      p.set_requires_grad(false);
      if (whole_model || tower_reads(params[i].key(), first, pre_norm)) {
        m.param_at.push_back(i), m.names.push_back(params[i].key());
      } else {
        p.set_data(torch::empty({0}, p.options()));
      }
    }
    m.param_count = params.size();
    const auto buffers = m.model->named_buffers();
    m.buffer_count = buffers.size();
    for (size_t i = 0; i < buffers.size(); ++i)
      if (whole_model || tower_reads(buffers[i].key(), first, pre_norm))
        m.buffer_at.push_back(i), m.names.push_back(buffers[i].key());
  }
  const auto device = model.text_embed->word->weight.device();
  m.model->to(device);
  m.model->eval();
  m.tensors = m.of(*m.model);
  const int64_t e = model.options().embed_dim;
  const auto f = torch::TensorOptions().device(device).dtype(torch::kFloat32);
  m.text = torch::zeros({size, e}, f), m.image = torch::zeros({size, e}, f);
  m.keys = key_columns == 1 ? torch::full({size}, -1, f.dtype(torch::kInt64))
                            : torch::full({size, key_columns}, -1, f.dtype(torch::kInt64));
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

torch::Tensor AlignQueue::text() const { return impl_->text.narrow(0, 0, filled_); }
torch::Tensor AlignQueue::image() const { return impl_->image.narrow(0, 0, filled_); }
torch::Tensor AlignQueue::keys() const { return impl_->have_keys ? impl_->keys.narrow(0, 0, filled_) : torch::Tensor(); }

torch::Tensor AlignQueue::mlm_logits(const Batch& batch, const torch::Tensor& positions) {
  TORCH_CHECK(started_, "AlignQueue::mlm_logits before start(): the momentum model holds no weights yet");
  TORCH_CHECK(whole_model_, "AlignQueue::mlm_logits: the momentum model holds the towers only (train.mlm_distill is off)");
  torch::NoGradGuard no_grad;
  const Encoded enc = impl_->model->encode(batch);
  return impl_->model->mlm_logits(enc.text.reshape({-1, enc.text.size(2)}).index_select(0, positions));
}

int64_t AlignQueue::momentum_parameters() const {
  int64_t n = 0;
  for (const auto& p : impl_->params()) n += p.numel();
  return n;
}

void AlignQueue::push(const torch::Tensor& text, const torch::Tensor& image, const torch::Tensor& keys) {
  torch::NoGradGuard no_grad;
  const int64_t r = text.size(0);
  TORCH_CHECK(image.size(0) == r && (!keys.defined() || keys.size(0) == r), "AlignQueue::push: rows disagree");
  TORCH_CHECK(!keys.defined() || keys.sizes().slice(1) == impl_->keys.sizes().slice(1), "AlignQueue::push: keys of ",
              keys.sizes(), " into a queue of keys ", impl_->keys.sizes());
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
  const Impl& m = *impl_;
  // update() picks the model's tensors by position, for speed: check once that the positions
  // name the copy's tensors in this model (a model of another architecture or options would
  // otherwise average unrelated tensors, or fail far from here on a shape).
  const auto params = model.named_parameters(), buffers = model.named_buffers();
  if (params.size() != m.param_count || buffers.size() != m.buffer_count)
    throw Error("train.align_queue: the model has " + std::to_string(params.size()) + " parameters and " +
                std::to_string(buffers.size()) + " buffers, its momentum copy " + std::to_string(m.param_count) +
                " and " + std::to_string(m.buffer_count) + ": not the model the queue was made for");
  for (size_t k = 0; k < m.names.size(); ++k) {
    const bool is_param = k < m.param_at.size();
    const std::string& name = is_param ? params[m.param_at[k]].key() : buffers[m.buffer_at[k - m.param_at.size()]].key();
    if (name != m.names[k])
      throw Error("train.align_queue: the model's tensor at the momentum copy's '" + m.names[k] + "' is '" + name +
                  "': not the model the queue was made for");
  }
  const auto from = m.of(model);
  for (size_t i = 0; i < from.size(); ++i) m.tensors[i].copy_(from[i]);
  started_ = true;
}

void AlignQueue::update(MultimodalTransformerImpl& model) {
  start(model);
  torch::NoGradGuard no_grad;
  Impl& m = *impl_;
  const auto params = model.parameters();
  TORCH_CHECK(params.size() == m.param_count, "AlignQueue::update: not the model the queue was started with");
  // m x momentum + (1 - m) x model, over all of them at once (one kernel per chunk on a GPU).
  torch::_foreach_mul_(m.params(), momentum_);
  torch::_foreach_add_(m.params(), Impl::pick(params, m.param_at), 1.0 - momentum_);
  const auto from_b = Impl::pick(model.buffers(), m.buffer_at);  // buffers copied
  for (size_t i = 0; i < from_b.size(); ++i) m.tensors[m.param_at.size() + i].copy_(from_b[i]);
}

NamedTensors AlignQueue::state() const {
  const Impl& m = *impl_;
  NamedTensors out;
  for (size_t i = 0; i < m.names.size(); ++i)
    out.emplace_back("align_queue.momentum." + m.names[i], m.tensors[i]);
  out.emplace_back("align_queue.text", m.text);
  out.emplace_back("align_queue.image", m.image);
  out.emplace_back("align_queue.keys", m.keys);
  out.emplace_back("align_queue.position", torch::tensor({next_, filled_, static_cast<int64_t>(m.have_keys)}, torch::kInt64));
  return out;
}

void AlignQueue::load(const NamedTensors& state) {
  Impl& m = *impl_;
  const std::string prefix = "align_queue.momentum.";
  std::map<std::string, torch::Tensor> weights;  // checkpoints before 2026-11-29 hold every parameter: the rest is ignored
  torch::Tensor text, image, keys, position;
  for (const auto& [name, t] : state) {
    if (name.rfind(prefix, 0) == 0) weights.emplace(name.substr(prefix.size()), t);
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
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < m.names.size(); ++i) {
    const auto it = weights.find(m.names[i]);
    auto& to = m.tensors[i];
    if (it == weights.end()) throw Error("the checkpoint's align queue lacks the momentum model's " + m.names[i]);
    if (it->second.sizes() != to.sizes())
      throw Error("the checkpoint's align queue holds the momentum model's " + m.names[i] + " in another shape than the model's");
    to.copy_(it->second);
  }
  if (keys.sizes() != m.keys.sizes())
    throw Error("the checkpoint's align queue keys are " + shape_string(keys.sizes().vec()) + ", this run's " + shape_string(m.keys.sizes().vec()) +
                " (train.contrastive_same_caption adds the caption column): resume with the setting it was written with");
  m.text.copy_(text), m.image.copy_(image), m.keys.copy_(keys);
  const auto pos = position.to(torch::kCPU, torch::kInt64).contiguous();
  next_ = pos.data_ptr<int64_t>()[0], filled_ = pos.data_ptr<int64_t>()[1], m.have_keys = pos.data_ptr<int64_t>()[2] != 0;
  started_ = true;
}

}  // namespace mmt
