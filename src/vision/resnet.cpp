/* ResNet-50 (see resnet.h). */
#include "mmt/vision/resnet.h"

namespace mmt {

namespace tnn = torch::nn;

namespace {
tnn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t pad) {
  return tnn::Conv2d(tnn::Conv2dOptions(in, out, k).stride(stride).padding(pad).bias(false));
}
}  // namespace

BottleneckImpl::BottleneckImpl(int64_t in, int64_t width, int64_t stride) {
  conv1 = register_module("conv1", conv(in, width, 1, 1, 0));
  bn1 = register_module("bn1", tnn::BatchNorm2d(width));
  conv2 = register_module("conv2", conv(width, width, 3, stride, 1));
  bn2 = register_module("bn2", tnn::BatchNorm2d(width));
  conv3 = register_module("conv3", conv(width, width * 4, 1, 1, 0));
  bn3 = register_module("bn3", tnn::BatchNorm2d(width * 4));
  if (stride != 1 || in != width * 4)
    downsample = register_module("downsample", tnn::Sequential(conv(in, width * 4, 1, stride, 0), tnn::BatchNorm2d(width * 4)));
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  auto y = torch::relu(bn1(conv1(x)));
  y = torch::relu(bn2(conv2(y)));
  y = bn3(conv3(y));
  return torch::relu(y + (downsample ? downsample->forward(x) : x));
}

ResNet50Impl::ResNet50Impl(bool frozen) : frozen_(frozen) {
  conv1 = register_module("conv1", conv(3, 64, 7, 2, 3));
  bn1 = register_module("bn1", tnn::BatchNorm2d(64));
  int64_t in = 64;
  auto stage = [&](int64_t width, int64_t blocks, int64_t stride) {
    tnn::Sequential s;
    for (int64_t i = 0; i < blocks; ++i) {
      s->push_back(Bottleneck(in, width, i == 0 ? stride : 1));
      in = width * 4;
    }
    return s;
  };
  layer1 = register_module("layer1", stage(64, 3, 1));
  layer2 = register_module("layer2", stage(128, 4, 2));
  layer3 = register_module("layer3", stage(256, 6, 2));
  layer4 = register_module("layer4", stage(512, 3, 2));
  fc = register_module("fc", tnn::Linear(2048, 1000));
  if (frozen_) {
    for (auto& p : parameters()) p.set_requires_grad(false);
    train(false);
  }
}

void ResNet50Impl::train(bool on) { tnn::Module::train(on && !frozen_); }

torch::Tensor ResNet50Impl::features(const torch::Tensor& pixels) {
  TORCH_CHECK(pixels.dim() == 4 && pixels.size(1) == 3, "ResNet50: pixels must be (B, 3, H, W), got ", pixels.sizes());
  auto x = torch::relu(bn1(conv1(pixels)));
  x = torch::max_pool2d(x, 3, 2, 1);
  return layer4->forward(layer3->forward(layer2->forward(layer1->forward(x))));
}

}  // namespace mmt
