/* ResNet-50 (He et al. 2016, torchvision's v1.5 layout: stride in the 3x3 convolution) over raw
 * pixels, giving grid features: (B, 2048, H/32, W/32), i.e. 7 x 7 at 224 px. Parameter and buffer
 * names are torchvision's `resnet50` state-dict keys (`conv1.weight`, `bn1.running_mean`,
 * `layer1.0.conv1.weight`, `layer1.0.downsample.0.weight`, `fc.weight`), so its checkpoints load
 * one to one (load_module_state). Frozen: no gradients, BatchNorm always in inference mode. */
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/pimpl.h>

namespace mmt {

class BottleneckImpl : public torch::nn::Module {
 public:
  BottleneckImpl(int64_t in, int64_t width, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};  // 0: 1x1 conv, 1: BatchNorm (when shapes change)
};
TORCH_MODULE(Bottleneck);

class ResNet50Impl : public torch::nn::Module {
 public:
  explicit ResNet50Impl(bool frozen = false);
  /// pixels (B, 3, H, W), ImageNet-normalised -> layer4 features (B, 2048, H/32, W/32).
  torch::Tensor features(const torch::Tensor& pixels);
  /// Keeps BatchNorm in inference mode when frozen.
  void train(bool on = true) override;
  bool frozen() const { return frozen_; }

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
  torch::nn::Linear fc{nullptr};  // ImageNet classifier: unused, kept so checkpoints load whole

 private:
  bool frozen_;
};
TORCH_MODULE(ResNet50);

}  // namespace mmt
