/* Image sources (see image_source.h). */
#include "mmt/data/image_source.h"

#include "mmt/data/batch.h"
#include "mmt/data/synthetic_world.h"
#include "mmt/model/flops.h"

namespace mmt {

SyntheticImages::SyntheticImages(const std::vector<synth::Scene>& scenes, const synth::RegionStore& regions,
                                 const ExperimentConfig& cfg)
    : scenes_(scenes),
      regions_(regions),
      pixels_(cfg.model.image_input != "regions"),
      image_size_(cfg.data.synth.image_size),
      max_regions_(cfg.data.max_regions),
      pixel_tokens_(pixel_positions(cfg.model, image_size_)) {}

int64_t SyntheticImages::size() const { return static_cast<int64_t>(scenes_.size()); }

int64_t SyntheticImages::tokens(int64_t i) const {
  return pixels_ ? pixel_tokens_ : std::min(regions_.num_regions(i), max_regions_ + 1);
}

void SyntheticImages::fill(const std::vector<int64_t>& images, Batch& batch) const {
  if (!pixels_) return gather_regions(regions_, images, max_regions_, batch);
  const int64_t b = static_cast<int64_t>(images.size()), s = image_size_;
  batch.image_pixels = torch::empty({b, 3, s, s});
  float* out = batch.image_pixels.data_ptr<float>();
  for (int64_t i = 0; i < b; ++i) {
    const auto rgb = synth::render(scenes_[static_cast<size_t>(images[i])], static_cast<int>(s));
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t p = 0; p < s * s; ++p)
        out[(i * 3 + c) * s * s + p] = (rgb[static_cast<size_t>(p * 3 + c)] / 255.f - kImageMean[c]) / kImageStd[c];
  }
}

}  // namespace mmt
