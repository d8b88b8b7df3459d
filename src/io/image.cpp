/* Image decoding and preprocessing (see image.h). */
#include "mmt/io/image.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstring>

#include "mmt/util/error.h"

namespace mmt {
namespace {

bool is_jpeg(const std::string& b) { return b.size() >= 3 && static_cast<uint8_t>(b[0]) == 0xFF && static_cast<uint8_t>(b[1]) == 0xD8; }
bool is_png(const std::string& b) { return b.size() >= 8 && std::memcmp(b.data(), "\x89PNG\r\n\x1a\n", 8) == 0; }

struct JpegError {
  jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

void jpeg_fail(j_common_ptr cinfo) {
  auto* err = reinterpret_cast<JpegError*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, err->message);
  std::longjmp(err->jump, 1);
}

void jpeg_warn(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  // A warning (corrupt data, premature end): libjpeg would go on with grey; mmt calls it corrupt.
  jpeg_fail(cinfo);
}

RgbImage decode_jpeg(const std::string& bytes, const std::string& name, int min_side) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_warn;
  RgbImage img;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw Error(name + ": corrupt JPEG: " + err.message);
  }
  jpeg_create_decompress(&cinfo);
  jpeg_mem_src(&cinfo, reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<unsigned long>(bytes.size()));
  jpeg_read_header(&cinfo, TRUE);
  cinfo.out_color_space = JCS_RGB;  // grey and CMYK/YCCK are converted by libjpeg (CMYK: see below)
  if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) cinfo.out_color_space = JCS_CMYK;
  // The smallest scale n/8 whose shorter side still covers min_side.
  const int shorter = static_cast<int>(std::min(cinfo.image_width, cinfo.image_height));
  int num = 8;
  if (min_side > 0)
    while (num > 1 && (shorter * (num - 1) + 7) / 8 >= min_side) --num;
  cinfo.scale_num = static_cast<unsigned>(num), cinfo.scale_denom = 8;
  cinfo.dct_method = JDCT_ISLOW;
  jpeg_start_decompress(&cinfo);
  img.width = static_cast<int>(cinfo.output_width), img.height = static_cast<int>(cinfo.output_height);
  const int channels = cinfo.output_components;
  std::vector<uint8_t> row(static_cast<size_t>(img.width) * channels);
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * 3);
  while (cinfo.output_scanline < cinfo.output_height) {
    uint8_t* dst = img.pixels.data() + static_cast<size_t>(cinfo.output_scanline) * img.width * 3;
    JSAMPROW rows[1] = {channels == 3 ? dst : row.data()};
    jpeg_read_scanlines(&cinfo, rows, 1);
    if (channels == 4) {  // Adobe CMYK JPEGs are stored inverted
      for (int x = 0; x < img.width; ++x) {
        const int k = row[x * 4 + 3];
        for (int c = 0; c < 3; ++c) dst[x * 3 + c] = static_cast<uint8_t>(row[x * 4 + c] * k / 255);
      }
    } else if (channels == 1) {
      for (int x = 0; x < img.width; ++x) dst[x * 3] = dst[x * 3 + 1] = dst[x * 3 + 2] = row[x];
    }
  }
  jpeg_finish_decompress(&cinfo);
  jpeg_destroy_decompress(&cinfo);
  return img;
}

RgbImage decode_png(const std::string& bytes, const std::string& name) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()))
    throw Error(name + ": corrupt PNG: " + image.message);
  image.format = PNG_FORMAT_RGBA;
  std::vector<uint8_t> rgba(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, rgba.data(), 0, nullptr)) {
    const std::string msg = image.message;
    png_image_free(&image);
    throw Error(name + ": corrupt PNG: " + msg);
  }
  RgbImage img;
  img.width = static_cast<int>(image.width), img.height = static_cast<int>(image.height);
  img.pixels.resize(static_cast<size_t>(img.width) * img.height * 3);
  // Alpha composited on white, in 8-bit sRGB values (as Pillow's paste onto a white image).
  for (size_t i = 0, n = static_cast<size_t>(img.width) * img.height; i < n; ++i) {
    const int a = rgba[i * 4 + 3];
    for (int c = 0; c < 3; ++c) img.pixels[i * 3 + c] = static_cast<uint8_t>((rgba[i * 4 + c] * a + 255 * (255 - a) + 127) / 255);
  }
  return img;
}

// Weights of a triangle filter from `in` samples onto outputs [first, first + count) of a
// resize to `out` samples (Pillow-style: the support grows with the shrink factor, so every input
// pixel contributes and nothing aliases).
struct Taps {
  std::vector<int> first, count;
  std::vector<float> weights;  // count[i] weights for output i, at offset i * max_taps
  int max_taps = 0;
};

Taps make_taps(int in, int out, int first_out, int count_out) {
  const double scale = static_cast<double>(in) / out, support = std::max(1.0, scale);
  Taps t;
  t.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(static_cast<size_t>(count_out)), t.count.resize(static_cast<size_t>(count_out));
  t.weights.assign(static_cast<size_t>(count_out) * t.max_taps, 0.f);
  for (int j = 0; j < count_out; ++j) {
    const double center = (first_out + j + 0.5) * scale;
    const int lo = std::max(0, static_cast<int>(std::floor(center - support))), hi = std::min(in, static_cast<int>(std::ceil(center + support)));
    double total = 0;
    int n = 0;
    for (int i = lo; i < hi && n < t.max_taps; ++i, ++n) {
      const double w = std::max(0.0, 1.0 - std::abs((i + 0.5 - center) / support));
      t.weights[static_cast<size_t>(j) * t.max_taps + n] = static_cast<float>(w);
      total += w;
    }
    for (int k = 0; k < n; ++k) t.weights[static_cast<size_t>(j) * t.max_taps + k] /= static_cast<float>(total > 0 ? total : 1);
    t.first[j] = lo, t.count[j] = n;
  }
  return t;
}

// The window [x0, x0 + out_w) x [y0, y0 + out_h) of `in` resized to full_w x full_h: only the
// pixels kept are computed (a centre crop never pays for the columns it drops).
RgbImage resize_window(const RgbImage& in, int full_w, int full_h, int x0, int y0, int out_w, int out_h) {
  const Taps h = make_taps(in.width, full_w, x0, out_w), v = make_taps(in.height, full_h, y0, out_h);
  // Only the input rows the vertical pass reads go through the horizontal pass.
  const int row_lo = v.first.front(), row_hi = v.first.back() + v.count.back();
  const size_t stride = static_cast<size_t>(out_w) * 3;
  std::vector<float> mid(stride * static_cast<size_t>(row_hi - row_lo));
  std::vector<float> src(static_cast<size_t>(in.width) * 3);
  for (int y = row_lo; y < row_hi; ++y) {
    const uint8_t* row = in.pixels.data() + static_cast<size_t>(y) * in.width * 3;
    for (size_t i = 0; i < src.size(); ++i) src[i] = row[i];
    float* dst = mid.data() + static_cast<size_t>(y - row_lo) * stride;
    for (int x = 0; x < out_w; ++x) {
      float r = 0, g = 0, b = 0;
      const float* w = h.weights.data() + static_cast<size_t>(x) * h.max_taps;
      const float* s = src.data() + static_cast<size_t>(h.first[x]) * 3;
      for (int k = 0; k < h.count[x]; ++k) r += w[k] * s[k * 3], g += w[k] * s[k * 3 + 1], b += w[k] * s[k * 3 + 2];
      dst[x * 3] = r, dst[x * 3 + 1] = g, dst[x * 3 + 2] = b;
    }
  }
  RgbImage out;
  out.width = out_w, out.height = out_h;
  out.pixels.resize(stride * static_cast<size_t>(out_h));
  std::vector<float> acc(stride);
  for (int y = 0; y < out_h; ++y) {
    std::fill(acc.begin(), acc.end(), 0.f);
    const float* w = v.weights.data() + static_cast<size_t>(y) * v.max_taps;
    for (int k = 0; k < v.count[y]; ++k) {
      const float* row = mid.data() + static_cast<size_t>(v.first[y] + k - row_lo) * stride;
      const float wk = w[k];
      for (size_t i = 0; i < stride; ++i) acc[i] += wk * row[i];
    }
    uint8_t* dst = out.pixels.data() + static_cast<size_t>(y) * stride;
    for (size_t i = 0; i < stride; ++i) {
      const float c = std::min(255.f, std::max(0.f, acc[i]));
      dst[i] = static_cast<uint8_t>(c + 0.5f);  // round half up: values are >= 0
    }
  }
  return out;
}

}  // namespace

RgbImage decode_image(const std::string& bytes, const std::string& name, int min_side) {
  if (is_jpeg(bytes)) return decode_jpeg(bytes, name, min_side);
  if (is_png(bytes)) return decode_png(bytes, name);
  throw Error(name + ": not a JPEG or PNG image" + (bytes.empty() ? " (empty file)" : ""));
}

RgbImage resize(const RgbImage& in, int width, int height) {
  if (width <= 0 || height <= 0) throw Error("resize: target size must be positive");
  if (in.width == width && in.height == height) return in;
  return resize_window(in, width, height, 0, 0, width, height);
}

RgbImage resize_center_crop(const RgbImage& in, int side) {
  if (in.width <= 0 || in.height <= 0) throw Error("resize: empty image");
  const double s = static_cast<double>(side) / std::min(in.width, in.height);
  const int w = std::max(side, static_cast<int>(std::lround(in.width * s))), h = std::max(side, static_cast<int>(std::lround(in.height * s)));
  return resize_window(in, w, h, (w - side) / 2, (h - side) / 2, side, side);
}

void normalize_chw(const RgbImage& in, const float mean[3], const float std[3], float* out) {
  const size_t plane = static_cast<size_t>(in.width) * in.height;
  for (int c = 0; c < 3; ++c) {
    const float a = 1.f / (255.f * std[c]), b = -mean[c] / std[c];
    for (size_t i = 0; i < plane; ++i) out[c * plane + i] = in.pixels[i * 3 + c] * a + b;
  }
}

RgbImage load_image_for_model(const std::string& bytes, const std::string& name, int side) {
  return resize_center_crop(decode_image(bytes, name, side), side);
}

}  // namespace mmt
