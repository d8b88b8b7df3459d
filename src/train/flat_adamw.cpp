/* Flat-buffer AdamW (see flat_adamw.h). */
#include "mmt/train/flat_adamw.h"

#include <cmath>
#include <map>
#include <utility>

#if __has_include(<ATen/ops/_fused_adamw.h>)
#include <ATen/ops/_fused_adam.h>
#include <ATen/ops/_fused_adamw.h>
#define MMT_HAVE_FUSED_ADAMW 1
#endif

#include "mmt/util/error.h"

namespace mmt {

FlatAdamW::FlatAdamW(const std::vector<torch::Tensor>& params, const std::vector<bool>& decay,
                     const AdamWSettings& s, const std::vector<double>& lr_scale, bool fused)
    : settings_(s) {
  if (params.empty() || params.size() != decay.size()) throw Error("FlatAdamW: need one decay flag per parameter");
  if (!lr_scale.empty() && lr_scale.size() != params.size()) throw Error("FlatAdamW: need one lr scale per parameter");
  bool scaled = false;
  for (double v : lr_scale) scaled = scaled || v != 1.0;
  int64_t total = 0;
  for (const auto& p : params) {
    TORCH_CHECK(p.scalar_type() == torch::kFloat32 && p.is_leaf(), "FlatAdamW: parameters must be float32 leaves");
    total += p.numel();
  }
  const auto opts = params[0].options().requires_grad(false);
  params_ = torch::empty({total}, opts);
  grads_ = torch::zeros({total}, opts);
  decay_mask_ = torch::empty({total}, opts);
  if (scaled) lr_scale_ = torch::empty({total}, opts);
  int64_t offset = 0;
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    auto p = params[i];  // shares the autograd identity with the module's parameter
    const int64_t n = p.numel();
    params_.narrow(0, offset, n).copy_(p.detach().reshape({-1}));
    decay_mask_.narrow(0, offset, n).fill_(decay[i] ? 1.f : 0.f);
    if (scaled) lr_scale_.narrow(0, offset, n).fill_(lr_scale[i]);
    p.set_data(params_.narrow(0, offset, n).view(p.sizes()));
    p.mutable_grad() = grads_.narrow(0, offset, n).view(p.sizes());
    offset += n;
  }
  exp_avg_ = torch::zeros({total}, opts);
  exp_avg_sq_ = torch::zeros({total}, opts);
  if (scaled) decay_mask_.mul_(lr_scale_);  // decoupled decay follows each parameter's learning rate
#ifdef MMT_HAVE_FUSED_ADAMW
  if (fused && params_.is_cuda()) {
    std::map<std::pair<bool, double>, size_t> index;
    offset = 0;
    for (size_t i = 0; i < params.size(); ++i) {
      const int64_t n = params[i].numel();
      const double scale = scaled ? lr_scale[i] : 1.0;
      auto [it, fresh] = index.emplace(std::make_pair(static_cast<bool>(decay[i]), scale), groups_.size());
      if (fresh) groups_.push_back(Group{{}, {}, {}, {}, static_cast<bool>(decay[i]), scale});
      Group& g = groups_[it->second];
      g.params.push_back(params_.narrow(0, offset, n));
      g.grads.push_back(grads_.narrow(0, offset, n));
      g.exp_avg.push_back(exp_avg_.narrow(0, offset, n));
      g.exp_avg_sq.push_back(exp_avg_sq_.narrow(0, offset, n));
      offset += n;
    }
    step_tensor_ = torch::zeros({}, opts);
  }
#else
  (void)fused;
#endif
}

void FlatAdamW::load_state(const torch::Tensor& exp_avg, const torch::Tensor& exp_avg_sq, int64_t steps) {
  if (exp_avg.numel() != exp_avg_.numel() || exp_avg_sq.numel() != exp_avg_sq_.numel())
    throw Error("optimizer state of " + std::to_string(exp_avg.numel()) + " values, the model has " +
                std::to_string(exp_avg_.numel()) + " parameters");
  torch::NoGradGuard no_grad;
  exp_avg_.copy_(exp_avg.reshape({-1}));
  exp_avg_sq_.copy_(exp_avg_sq.reshape({-1}));
  step_ = steps;
  if (step_tensor_.defined()) step_tensor_.fill_(static_cast<double>(steps));
}

void FlatAdamW::zero_grad() { grads_.zero_(); }

double FlatAdamW::clip_grad_norm(double max_norm) {
  const double norm = grads_.norm().item<double>();
  if (max_norm > 0 && norm > max_norm) grads_.mul_(max_norm / (norm + 1e-6));
  return norm;
}

torch::Tensor FlatAdamW::clip_grad_norm_async(double max_norm) {
  torch::NoGradGuard no_grad;
  const auto norm = grads_.norm();
  if (max_norm > 0) grads_.mul_((max_norm / (norm + 1e-6)).clamp_max(1.0));
  return norm;
}

int64_t FlatAdamW::steps() const {
  return step_tensor_.defined() ? static_cast<int64_t>(step_tensor_.item<double>()) : step_;
}

void FlatAdamW::step(double lr, const torch::Tensor& skip) {
  torch::NoGradGuard no_grad;
  const auto& s = settings_;
#ifdef MMT_HAVE_FUSED_ADAMW
  if (!groups_.empty()) {
    // The count stays on the device: a skipped update (known there only) does not count.
    c10::optional<at::Tensor> found_inf;
    if (skip.defined()) found_inf = skip.to(step_tensor_.options());
    if (found_inf) step_tensor_.add_(1.0 - *found_inf);
    else step_tensor_.add_(1.0);
    for (auto& g : groups_) {
      // The kernel reads one step count per tensor: the same scalar for all. With found_inf = 1
      // it returns before touching anything.
      const std::vector<torch::Tensor> steps(g.params.size(), step_tensor_);
      const double wd = g.decay ? s.weight_decay : 0.0, group_lr = lr * g.lr_scale;
      if (s.decoupled)
        at::_fused_adamw_(g.params, g.grads, g.exp_avg, g.exp_avg_sq, {}, steps, group_lr, s.beta1, s.beta2, wd, s.eps,
                          /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/c10::nullopt, found_inf);
      else
        at::_fused_adam_(g.params, g.grads, g.exp_avg, g.exp_avg_sq, {}, steps, group_lr, s.beta1, s.beta2, wd, s.eps,
                         /*amsgrad=*/false, /*maximize=*/false, /*grad_scale=*/c10::nullopt, found_inf);
    }
    return;
  }
#endif
  if (skip.defined()) throw Error("FlatAdamW: a step skipped on the device needs the fused kernel");
  ++step_;
  if (s.weight_decay != 0 && s.decoupled) params_.addcmul_(params_, decay_mask_, -lr * s.weight_decay);
  if (s.weight_decay != 0 && !s.decoupled) {  // Adam's L2: the decay joins the gradient (and the moments)
    const auto mask = lr_scale_.defined() ? (decay_mask_ > 0).to(params_.scalar_type()) : decay_mask_;
    grads_.addcmul_(params_, mask, s.weight_decay);
  }
  exp_avg_.lerp_(grads_, 1.0 - s.beta1);
  exp_avg_sq_.mul_(s.beta2).addcmul_(grads_, grads_, 1.0 - s.beta2);
  const double bias1 = 1.0 - std::pow(s.beta1, static_cast<double>(step_));
  const double bias2 = 1.0 - std::pow(s.beta2, static_cast<double>(step_));
  const auto denom = exp_avg_sq_.sqrt().div_(std::sqrt(bias2)).add_(s.eps);
  if (lr_scale_.defined()) params_.addcdiv_(exp_avg_ * lr_scale_, denom, -lr / bias1);
  else params_.addcdiv_(exp_avg_, denom, -lr / bias1);
}

}  // namespace mmt
