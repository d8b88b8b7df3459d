/* Where the images of a batch come from: a set of images, addressed by index, that fills a
 * Batch with either detector regions (region_feats / boxes / mask) or pixels (image_pixels),
 * whichever the model reads. Training batches and evaluation both go through it. */
#pragma once

#include <cstdint>
#include <vector>

#include "mmt/config/options.h"

namespace mmt {

struct Batch;
namespace synth {
struct RegionStore;
struct Scene;
}  // namespace synth

class ImageSource {
 public:
  virtual ~ImageSource() = default;
  virtual int64_t size() const = 0;
  /// Image tokens image i will have (to group equal-length images into blocks).
  virtual int64_t tokens(int64_t i) const = 0;
  /// Fills the image fields of `batch` with the given images, in order.
  virtual void fill(const std::vector<int64_t>& images, Batch& batch) const = 0;
};

/// ImageNet statistics used to normalise pixels (torchvision's).
constexpr float kImageMean[3] = {0.485f, 0.456f, 0.406f};
constexpr float kImageStd[3] = {0.229f, 0.224f, 0.225f};

/// Synthetic scenes: their detector regions, or their renders as pixels.
class SyntheticImages : public ImageSource {
 public:
  SyntheticImages(const std::vector<synth::Scene>& scenes, const synth::RegionStore& regions,
                  const ExperimentConfig& cfg);
  int64_t size() const override;
  int64_t tokens(int64_t i) const override;
  void fill(const std::vector<int64_t>& images, Batch& batch) const override;

 private:
  const std::vector<synth::Scene>& scenes_;
  const synth::RegionStore& regions_;
  bool pixels_;
  int64_t image_size_, max_regions_, pixel_tokens_;
};

}  // namespace mmt
