/* AdamW over parameters packed into one flat buffer.
 *
 * The parameters (and their gradients) become views into two contiguous buffers, so the update
 * is a handful of vectorised ops over every parameter at once instead of ~10 small ops per
 * tensor (a tiny model has ~150 tensors: the per-op overhead was 6% of a training step), and
 * gradient clipping is one norm. The math is PyTorch's AdamW (decoupled weight decay, bias
 * correction); a unit test checks it against torch::optim::AdamW step by step. One difference:
 * torch skips a parameter whose gradient is undefined, while here it has a zero gradient, so
 * weight decay still shrinks it (e.g. the MLM head when the MLM loss is off).
 *
 * On CUDA with libtorch >= 2 (`fused`), the update is libtorch's fused AdamW kernel over the
 * parameters' views, one call per group of equal decay and learning-rate scale: the same math in
 * one launch instead of ~10 passes over the buffers (GPU test: equal to the flat update). */
#pragma once

#include <torch/types.h>

#include <vector>

namespace mmt {

struct AdamWSettings {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-6;
  double weight_decay = 0.01;  // applied to the parameters marked `decay`
  bool decoupled = true;       // AdamW (decay applied to the weights); false: Adam with L2 (decay added to the gradient)
};

class FlatAdamW {
 public:
  /// Re-seats every parameter (and its gradient) as a view into the flat buffers; decay[i]
  /// says whether parameter i gets weight decay. Parameters must be float32 leaves on one device.
  /// lr_scale (optional, one per parameter) multiplies the learning rate of that parameter.
  FlatAdamW(const std::vector<torch::Tensor>& params, const std::vector<bool>& decay, const AdamWSettings& s,
            const std::vector<double>& lr_scale = {}, bool fused = false);
  /// Whether step() runs libtorch's fused kernel (asked for, CUDA, and libtorch has it).
  bool fused() const { return !groups_.empty(); }

  /// Zeroes every gradient (in place: the gradients stay views into the flat buffer).
  void zero_grad();
  /// Scales gradients so their global L2 norm is at most max_norm; returns the norm before.
  double clip_grad_norm(double max_norm);
  /// The same without waiting for the device: gradients are multiplied there by
  /// min(1, max_norm / (norm + 1e-6)) (so also, by at most 1e-6 relative, when the norm is within
  /// 1e-6 under max_norm); the returned norm (a scalar tensor) is read when the caller needs it.
  torch::Tensor clip_grad_norm_async(double max_norm);
  /// One AdamW update at learning rate lr. `skip` (fused kernel only): a float scalar on the
  /// device, 1 to leave the parameters, moments and step count as they are - the caller found
  /// a non-finite loss without waiting for the device to tell it.
  void step(double lr, const torch::Tensor& skip = {});

  /// Updates made (on the fused path counted on the device, so reading it waits for the device).
  int64_t steps() const;
  /// Every parameter's gradient, flat (the views the parameters hold): what ranks all-reduce.
  torch::Tensor& grads() { return grads_; }
  /// Every parameter, flat (for broadcasting rank 0's initial weights).
  torch::Tensor& params() { return params_; }
  int64_t numel() const { return params_.numel(); }
  /// Optimizer state, for checkpoints: first and second moments (flat, parameter order).
  const torch::Tensor& exp_avg() const { return exp_avg_; }
  const torch::Tensor& exp_avg_sq() const { return exp_avg_sq_; }
  /// Restores a checkpoint's moments and step count (sizes must match; errors say so).
  void load_state(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t steps);

 private:
  AdamWSettings settings_;
  torch::Tensor params_, grads_, exp_avg_, exp_avg_sq_, decay_mask_, lr_scale_;  // lr_scale_ undefined: all 1
  int64_t step_ = 0;
  // Fused path: per group (parameters of equal decay and lr scale), views into the buffers.
  struct Group {
    std::vector<torch::Tensor> params, grads, exp_avg, exp_avg_sq;
    bool decay = false;
    double lr_scale = 1.0;
  };
  std::vector<Group> groups_;
  torch::Tensor step_tensor_;  // fused: float32 scalar on the device, the step count the kernel reads (and keeps)
};

}  // namespace mmt
