/* Image decoding and preprocessing (see image.h). */
#include "mmt/io/image.h"

#include <jpeglib.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <functional>

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

// An image delivered row by row as it is decoded, top to bottom, 3 bytes a pixel: decoders feed
// it, so a large image need never be held whole (a 21k x 30k PNG would take 1.9 GB as RGB).
class RowSink {
 public:
  virtual ~RowSink() = default;
  virtual void begin(int width, int height) = 0;
  virtual void row(int y, const uint8_t* rgb) = 0;
};

// Every row kept: the decoded image.
class WholeImage : public RowSink {
 public:
  void begin(int width, int height) override {
    img.width = width, img.height = height;
    img.pixels.resize(static_cast<size_t>(width) * height * 3);
  }
  void row(int y, const uint8_t* rgb) override {
    std::memcpy(img.pixels.data() + static_cast<size_t>(y) * img.width * 3, rgb, static_cast<size_t>(img.width) * 3);
  }
  RgbImage img;
};

void decode_jpeg_rows(const std::string& bytes, const std::string& name, int min_side, RowSink& sink) {
  jpeg_decompress_struct cinfo;
  JpegError err;
  std::vector<uint8_t> raw, rgb;  // before setjmp: a longjmp must not skip their destructors
  cinfo.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  err.mgr.emit_message = jpeg_warn;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&cinfo);
    throw Error(name + ": corrupt JPEG: " + err.message);
  }
  jpeg_create_decompress(&cinfo);
  try {
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
    const int width = static_cast<int>(cinfo.output_width), channels = cinfo.output_components;
    raw.resize(static_cast<size_t>(width) * channels), rgb.resize(static_cast<size_t>(width) * 3);
    sink.begin(width, static_cast<int>(cinfo.output_height));
    while (cinfo.output_scanline < cinfo.output_height) {
      const int y = static_cast<int>(cinfo.output_scanline);
      JSAMPROW rows[1] = {channels == 3 ? rgb.data() : raw.data()};
      jpeg_read_scanlines(&cinfo, rows, 1);
      if (channels == 4) {  // Adobe CMYK JPEGs are stored inverted
        for (int x = 0; x < width; ++x) {
          const int k = raw[x * 4 + 3];
          for (int c = 0; c < 3; ++c) rgb[x * 3 + c] = static_cast<uint8_t>(raw[x * 4 + c] * k / 255);
        }
      } else if (channels == 1) {
        for (int x = 0; x < width; ++x) rgb[x * 3] = rgb[x * 3 + 1] = rgb[x * 3 + 2] = raw[x];
      }
      sink.row(y, rgb.data());
    }
    jpeg_finish_decompress(&cinfo);
  } catch (...) {  // the sink's (allocation)
    jpeg_destroy_decompress(&cinfo);
    throw;
  }
  jpeg_destroy_decompress(&cinfo);
}

struct PngRead {
  const std::string* bytes;
  size_t pos = 8;  // after the signature, checked by the caller
  char message[256] = "";
};

void png_fail(png_structp png, png_const_charp msg) {
  auto* r = static_cast<PngRead*>(png_get_error_ptr(png));
  std::snprintf(r->message, sizeof r->message, "%s", msg);
  png_longjmp(png, 1);
}

void png_warn(png_structp, png_const_charp) {}  // e.g. "iCCP: known incorrect sRGB profile": the pixels are fine

void png_read_bytes(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<PngRead*>(png_get_io_ptr(png));
  if (r->pos + n > r->bytes->size()) png_error(png, "truncated file");
  std::memcpy(out, r->bytes->data() + r->pos, n);
  r->pos += n;
}

// Every colour type and depth as 8-bit RGBA (palette and grey expanded, tRNS made alpha, 16 bits
// cut to their high byte as Pillow does, no gamma applied - Pillow applies none), alpha then
// composited on white. Rows go to the sink as they are inflated; an interlaced (Adam7) image
// needs its whole RGBA buffer first.
void decode_png_rows(const std::string& bytes, const std::string& name, RowSink& sink) {
  PngRead state;
  state.bytes = &bytes;
  std::vector<uint8_t> rgba, rgb;  // before setjmp: a longjmp must not skip their destructors
  std::vector<png_bytep> rows;
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &state, png_fail, png_warn);
  png_infop info = png ? png_create_info_struct(png) : nullptr;
  if (!info) {
    png_destroy_read_struct(&png, nullptr, nullptr);
    throw Error(name + ": libpng initialisation failed");
  }
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_read_struct(&png, &info, nullptr);
    throw Error(name + ": corrupt PNG: " + state.message);
  }
  try {
    png_set_read_fn(png, &state, png_read_bytes);
    png_set_sig_bytes(png, 8);
    png_read_info(png, info);
    const int type = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
    const bool trns = png_get_valid(png, info, PNG_INFO_tRNS) != 0;
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (trns) png_set_tRNS_to_alpha(png);
    if (depth == 16) png_set_strip_16(png);
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    if (!(type & PNG_COLOR_MASK_ALPHA) && !trns) png_set_filler(png, 0xFF, PNG_FILLER_AFTER);
    const int passes = png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const int width = static_cast<int>(png_get_image_width(png, info)), height = static_cast<int>(png_get_image_height(png, info));
    const size_t stride = static_cast<size_t>(width) * 4;
    if (png_get_rowbytes(png, info) != stride) png_error(png, "unexpected row layout after conversion to RGBA");
    rgb.resize(static_cast<size_t>(width) * 3);
    const auto composite = [&](const uint8_t* in) {  // alpha on white, in 8-bit sRGB values (Pillow's paste on white)
      for (int x = 0; x < width; ++x) {
        const int a = in[x * 4 + 3];
        for (int c = 0; c < 3; ++c) rgb[x * 3 + c] = static_cast<uint8_t>((in[x * 4 + c] * a + 255 * (255 - a) + 127) / 255);
      }
    };
    sink.begin(width, height);
    if (passes > 1) {
      rgba.resize(stride * static_cast<size_t>(height));
      for (int y = 0; y < height; ++y) rows.push_back(rgba.data() + stride * static_cast<size_t>(y));
      png_read_image(png, rows.data());
      for (int y = 0; y < height; ++y) composite(rows[static_cast<size_t>(y)]), sink.row(y, rgb.data());
    } else {
      rgba.resize(stride);
      for (int y = 0; y < height; ++y) {
        png_read_row(png, rgba.data(), nullptr);
        composite(rgba.data()), sink.row(y, rgb.data());
      }
    }
    png_read_end(png, nullptr);  // the rest of the file's chunks, CRCs checked
  } catch (...) {  // the sink's (allocation)
    png_destroy_read_struct(&png, &info, nullptr);
    throw;
  }
  png_destroy_read_struct(&png, &info, nullptr);
}

void decode_rows(const std::string& bytes, const std::string& name, int min_side, RowSink& sink) {
  if (is_jpeg(bytes)) return decode_jpeg_rows(bytes, name, min_side, sink);
  if (is_png(bytes)) return decode_png_rows(bytes, name, sink);
  throw Error(name + ": not a JPEG or PNG image" + (bytes.empty() ? " (empty file)" : ""));
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

// The window [x0, x0 + out_w) x [y0, y0 + out_h) of an image resized to full_w x full_h.
struct Window {
  int full_w, full_h, x0, y0, out_w, out_h;
};

// Shorter side scaled to `side`, the centre side x side.
Window center_crop(int width, int height, int side) {
  if (width <= 0 || height <= 0) throw Error("resize: empty image");
  const double s = static_cast<double>(side) / std::min(width, height);
  const int w = std::max(side, static_cast<int>(std::lround(width * s))), h = std::max(side, static_cast<int>(std::lround(height * s)));
  return {w, h, (w - side) / 2, (h - side) / 2, side, side};
}

// A window of the resized image, computed as the rows arrive: an input row the vertical pass reads
// goes through the horizontal pass (only the window's columns), then is added, weighted, into the
// output rows whose taps cover it - in the order of their taps, so the sums are the ones a pass over
// the whole image would form. Memory: the window's rows as floats and one input row - never the
// input image, nor all its resized rows.
class WindowResize : public RowSink {
 public:
  explicit WindowResize(std::function<Window(int, int)> window) : window_(std::move(window)) {}
  void begin(int width, int height) override {
    const Window w = window_(width, height);
    out_w_ = w.out_w, out_h_ = w.out_h;
    h_ = make_taps(width, w.full_w, w.x0, w.out_w), v_ = make_taps(height, w.full_h, w.y0, w.out_h);
    stride_ = static_cast<size_t>(out_w_) * 3;
    acc_.assign(stride_ * static_cast<size_t>(out_h_), 0.f);
    src_.resize(static_cast<size_t>(width) * 3), mid_.resize(stride_);
    next_ = 0;
  }
  void row(int y, const uint8_t* rgb) override {
    // Output rows [next_, ...) still to receive rows; their taps start in increasing order.
    while (next_ < out_h_ && v_.first[next_] + v_.count[next_] <= y) ++next_;
    if (next_ >= out_h_ || v_.first[next_] > y) return;  // no output row reads input row y
    for (size_t i = 0; i < src_.size(); ++i) src_[i] = rgb[i];
    for (int x = 0; x < out_w_; ++x) {
      float r = 0, g = 0, b = 0;
      const float* w = h_.weights.data() + static_cast<size_t>(x) * h_.max_taps;
      const float* s = src_.data() + static_cast<size_t>(h_.first[x]) * 3;
      for (int k = 0; k < h_.count[x]; ++k) r += w[k] * s[k * 3], g += w[k] * s[k * 3 + 1], b += w[k] * s[k * 3 + 2];
      mid_[x * 3] = r, mid_[x * 3 + 1] = g, mid_[x * 3 + 2] = b;
    }
    for (int j = next_; j < out_h_ && v_.first[j] <= y; ++j) {
      const int k = y - v_.first[j];
      if (k >= v_.count[j]) continue;
      const float wk = v_.weights[static_cast<size_t>(j) * v_.max_taps + k];
      float* acc = acc_.data() + static_cast<size_t>(j) * stride_;
      for (size_t i = 0; i < stride_; ++i) acc[i] += wk * mid_[i];
    }
  }
  RgbImage result() const {
    RgbImage out;
    out.width = out_w_, out.height = out_h_;
    out.pixels.resize(stride_ * static_cast<size_t>(out_h_));
    for (size_t i = 0; i < out.pixels.size(); ++i) {
      const float c = std::min(255.f, std::max(0.f, acc_[i]));
      out.pixels[i] = static_cast<uint8_t>(c + 0.5f);  // round half up: values are >= 0
    }
    return out;
  }

 private:
  std::function<Window(int, int)> window_;
  Taps h_, v_;
  int out_w_ = 0, out_h_ = 0, next_ = 0;
  size_t stride_ = 0;
  std::vector<float> acc_, src_, mid_;
};

RgbImage resize_rows(const RgbImage& in, std::function<Window(int, int)> window) {
  WindowResize r(std::move(window));
  r.begin(in.width, in.height);
  for (int y = 0; y < in.height; ++y) r.row(y, in.pixels.data() + static_cast<size_t>(y) * in.width * 3);
  return r.result();
}

}  // namespace

RgbImage decode_image(const std::string& bytes, const std::string& name, int min_side) {
  WholeImage whole;
  decode_rows(bytes, name, min_side, whole);
  return std::move(whole.img);
}

RgbImage resize(const RgbImage& in, int width, int height) {
  if (width <= 0 || height <= 0) throw Error("resize: target size must be positive");
  if (in.width == width && in.height == height) return in;
  return resize_rows(in, [&](int, int) { return Window{width, height, 0, 0, width, height}; });
}

RgbImage resize_center_crop(const RgbImage& in, int side) {
  return resize_rows(in, [&](int w, int h) { return center_crop(w, h, side); });
}

void normalize_chw(const uint8_t* rgb, int width, int height, const float mean[3], const float std[3], float* out) {
  const size_t plane = static_cast<size_t>(width) * height;
  for (int c = 0; c < 3; ++c) {
    const float a = 1.f / (255.f * std[c]), b = -mean[c] / std[c];
    for (size_t i = 0; i < plane; ++i) out[c * plane + i] = rgb[i * 3 + c] * a + b;
  }
}

void normalize_chw(const RgbImage& in, const float mean[3], const float std[3], float* out) {
  normalize_chw(in.pixels.data(), in.width, in.height, mean, std, out);
}

RgbImage load_image_for_model(const std::string& bytes, const std::string& name, int side) {
  WindowResize crop([&](int w, int h) { return center_crop(w, h, side); });
  decode_rows(bytes, name, side, crop);
  return crop.result();
}

}  // namespace mmt
