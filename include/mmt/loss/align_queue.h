/* ALBEF's momentum queue for the align loss (train.align_queue, train.align_momentum; Li et al.
 * 2021, "Align before Fuse", section 3.2; with train.align_distill, 3.3's momentum distillation of
 * this loss - not of MLM's).
 *
 * A batch of B pairs gives the in-batch InfoNCE B - 1 negatives; ALBEF reaches tens of thousands
 * with a queue. A momentum model - a copy of the model's towers whose weights follow it as an
 * exponential moving average, m x momentum + (1 - m) x model after every optimizer step - embeds each batch's
 * captions and images through the align head; those embeddings are the batch's candidates, and
 * they join a first-in first-out queue of the last N, which stays as further negatives for the
 * steps after. The momentum model changes slowly, so the queued embeddings stay comparable with
 * the fresh ones. The momentum model runs in eval mode (no dropout) and without gradient.
 *
 *   text -> image logits  = scale x text_emb  @ [image_m ; queued images]^T   (M, M + F)
 *   image -> text logits  = scale x image_emb @ [text_m ; queued texts]^T     (M, M + F)
 *   loss = (CE(text -> image, diagonal) + CE(image -> text, diagonal)) / 2
 *
 * text_emb / image_emb are this model's (with gradient), *_m the momentum model's for the same
 * rows, F the filled part of the queue. Candidates showing the row's own image under another key
 * match - another caption of it, in the batch or the queue - are left out of the softmax, as the
 * in-batch loss leaves them out (and so are those of the very same caption with
 * train.contrastive_same_caption = excluded). The queue and the momentum weights are part of a resumable
 * checkpoint. */
#pragma once

#include <torch/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace mmt {

struct Batch;
class MultimodalTransformerImpl;
using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

/// The queued InfoNCE above: (loss, accuracy of both directions' argmax over all candidates).
/// keys (M) and queue_keys (F): Batch::image_key of each row and entry - or (M, K) and (F, K),
/// contrastive_keys (image, caption) - or undefined (every row its own image, nothing left out). `distill` (train.align_distill, ALBEF's momentum distillation):
/// each row's target is distill x the momentum model's softmax over the same candidates
/// (scale x text_m @ [image_m ; queued images]^T, and the image side alike) + (1 - distill) on the
/// true pair, and the loss the cross-entropy to it.
std::pair<torch::Tensor, torch::Tensor> queued_align_loss(const torch::Tensor& text_emb, const torch::Tensor& image_emb,
                                                          const torch::Tensor& text_m, const torch::Tensor& image_m,
                                                          const torch::Tensor& queue_text, const torch::Tensor& queue_image,
                                                          const torch::Tensor& scale, const torch::Tensor& keys,
                                                          const torch::Tensor& queue_keys, double distill = 0.0);

class AlignQueue {
 public:
  /// A momentum model shaped like `model`'s towers - the embeddings, the layers below the first
  /// cross-modal one and the projections, all the align embeddings read; the fusion layers and
  /// heads are left out (their tensors empty) - whose weights come with start() or load(), and an
  /// empty queue of `size` entries.
  /// key_columns: 1 for image keys, 2 for image and caption keys (contrastive_keys). whole_model
  /// (train.mlm_distill): the momentum model keeps every part, for mlm_logits.
  AlignQueue(MultimodalTransformerImpl& model, int64_t size, double momentum, int64_t key_columns = 1,
             bool whole_model = false);
  ~AlignQueue();

  /// The momentum model's align embeddings (R, E) of `rows` of the batch - text, image - without
  /// gradient, from the inputs before MLM / MRM masking when `unmasked` (train.align_inputs).
  std::pair<torch::Tensor, torch::Tensor> embeddings(const Batch& batch, const torch::Tensor& rows, bool unmasked);

  /// train.mlm_distill: the momentum model's MLM logits (M, V) at `positions` (M) of the flattened
  /// (B x T) text of `batch` - its masked tokens - from a pass over the batch as it is (masked),
  /// without gradient. Needs whole_model.
  torch::Tensor mlm_logits(const Batch& batch, const torch::Tensor& positions);

  /// The filled part of the queue in slot order (the loss needs no order; once it has wrapped the
  /// oldest entry is at next slot): text (F, E), image (F, E), keys (F; undefined while no key
  /// was pushed). Views of the queue: push() overwrites them.
  torch::Tensor text() const;
  torch::Tensor image() const;
  torch::Tensor keys() const;
  int64_t filled() const { return filled_; }
  /// Elements of the momentum model's weights (the towers' parameters it holds).
  int64_t momentum_parameters() const;

  /// Appends the rows (R, E) - the newest replace the oldest once the queue is full; keys (R) or
  /// undefined.
  void push(const torch::Tensor& text, const torch::Tensor& image, const torch::Tensor& keys);

  /// The momentum model takes `model`'s weights, unless it has them already (start() or load()
  /// before): a run's first step, after the weights are initialised, loaded or broadcast.
  void start(MultimodalTransformerImpl& model);
  /// momentum = m x momentum + (1 - m) x model over the towers' parameters (foreach: one pass over
  /// all of them); their buffers copied.
  void update(MultimodalTransformerImpl& model);

  /// The momentum weights (the towers') and the queue, to save in a resumable checkpoint
  /// ("align_queue.*").
  NamedTensors state() const;
  /// Restores state() - or an older one that holds every parameter (the rest is ignored); throws
  /// Error naming what is missing or mis-sized.
  void load(const NamedTensors& state);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t size_, next_ = 0, filled_ = 0;
  bool whole_model_;
  double momentum_;
  bool started_ = false;
};

}  // namespace mmt
