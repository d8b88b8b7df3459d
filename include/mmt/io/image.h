/* Image decoding and the preprocessing of raw-pixel models: JPEG through libjpeg-turbo (decoded
 * at the smallest DCT scale, 1/8 to 1, that still covers the target size: much less work for a
 * 224 px target than a full decode), PNG through libpng (any bit depth / palette / grey, alpha
 * composited on white), an antialiased separable resize (triangle filter, support widened by the
 * scale factor when shrinking, as Pillow's BILINEAR), centre crop, and normalisation. Torch-free. */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmt {

struct RgbImage {
  int width = 0, height = 0;
  std::vector<uint8_t> pixels;  // row-major, 3 bytes per pixel
};

/// Decodes JPEG or PNG (told apart by their signatures). `min_side` > 0 lets a JPEG decode at a
/// reduced DCT scale whose shorter side is still >= min_side. Throws Error naming `name` for a
/// corrupt, truncated or unsupported image (libjpeg warnings count as corruption).
RgbImage decode_image(const std::string& bytes, const std::string& name, int min_side = 0);

/// Antialiased bilinear resize to width x height.
RgbImage resize(const RgbImage& in, int width, int height);

/// Shorter side scaled to `side` (aspect kept), then the centre `side` x `side` crop.
RgbImage resize_center_crop(const RgbImage& in, int side);

/// (3, H, W) floats: (pixel / 255 - mean) / std per channel, written to out.
void normalize_chw(const RgbImage& in, const float mean[3], const float std[3], float* out);
/// The same from height rows of width x 3 bytes.
void normalize_chw(const uint8_t* rgb, int width, int height, const float mean[3], const float std[3], float* out);

/// Decode + resize_center_crop, with the DCT shortcut: the raw-pixel input pipeline. The image is
/// resized as its rows are decoded, never held whole (a 21k x 30k PNG takes tens of MB, not 4 GB);
/// the result is the same as resize_center_crop(decode_image(...)) byte for byte.
RgbImage load_image_for_model(const std::string& bytes, const std::string& name, int side);

}  // namespace mmt
