/* Image decoding and preprocessing against Pillow (reference arrays from
 * tests/data/images/make_images.py), the DCT-scaled decode, PNG kinds and alpha on white,
 * corrupt images; .npy / .npz reading against NumPy. */
#include <gtest/gtest.h>

#include <png.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>

#include "mmt/io/image.h"
#include "mmt/io/npy.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {
namespace {

const std::string kDir = std::string(MMT_SOURCE_DIR) + "/tests/data/images/";

RgbImage reference(const std::string& npy) {
  const NpyArray a = load_npy(kDir + npy);
  EXPECT_EQ(a.descr, "|u1");
  RgbImage img;
  img.height = static_cast<int>(a.shape.at(0)), img.width = static_cast<int>(a.shape.at(1));
  img.pixels.assign(a.data.begin(), a.data.end());
  return img;
}

// Largest absolute difference of two images of the same size, and their mean difference.
std::pair<int, double> diff(const RgbImage& a, const RgbImage& b) {
  EXPECT_EQ(a.width, b.width);
  EXPECT_EQ(a.height, b.height);
  if (a.pixels.size() != b.pixels.size()) return {999, 999};
  int mx = 0;
  double sum = 0;
  for (size_t i = 0; i < a.pixels.size(); ++i) {
    const int d = std::abs(int(a.pixels[i]) - int(b.pixels[i]));
    mx = std::max(mx, d), sum += d;
  }
  return {mx, sum / static_cast<double>(a.pixels.size())};
}

TEST(ImageDecode, JpegEqualsPillowExactly) {
  const auto img = decode_image(read_file(kDir + "photo.jpg"), "photo.jpg");
  EXPECT_EQ(diff(img, reference("photo_full.npy")).first, 0);  // the same libjpeg-turbo, ISLOW DCT
}

TEST(ImageDecode, DctScaledDecodeEqualsPillowDraft) {
  // Shorter side 160, target 40: the smallest covering scale is 2/8 -> 60 x 40.
  const auto img = decode_image(read_file(kDir + "photo.jpg"), "photo.jpg", 40);
  EXPECT_EQ(img.width, 60);
  EXPECT_EQ(img.height, 40);
  EXPECT_EQ(diff(img, reference("photo_draft_60x40.npy")).first, 0);
  // Targets that need more pixels than a scale gives take the next scale up, never less.
  EXPECT_EQ(decode_image(read_file(kDir + "photo.jpg"), "photo.jpg", 41).height, 60);
  EXPECT_EQ(decode_image(read_file(kDir + "photo.jpg"), "photo.jpg", 500).height, 160);
}

TEST(ImageResize, MatchesPillowBilinearDownAndUp) {
  const auto full = decode_image(read_file(kDir + "photo.jpg"), "photo.jpg");
  const auto [down_max, down_mean] = diff(resize(full, 61, 43), reference("photo_bilinear_61x43.npy"));
  EXPECT_LE(down_max, 2);  // Pillow works in fixed point; we in float
  EXPECT_LT(down_mean, 0.2);
  const auto [up_max, up_mean] = diff(resize(full, 300, 200), reference("photo_bilinear_300x200.npy"));
  EXPECT_LE(up_max, 2);
  EXPECT_LT(up_mean, 0.35);  // Pillow rounds its horizontal pass to bytes; we keep floats
}

TEST(ImageResize, ConstantStaysConstantAndCropIsCentred) {
  RgbImage flat;
  flat.width = 50, flat.height = 20;
  flat.pixels.assign(50 * 20 * 3, 77);
  const auto small = resize(flat, 7, 3);
  for (uint8_t v : small.pixels) EXPECT_EQ(v, 77);
  // A left half black, right half white image: the centre crop keeps both halves equally.
  RgbImage halves;
  halves.width = 40, halves.height = 10;
  for (int y = 0; y < 10; ++y)
    for (int x = 0; x < 40; ++x)
      for (int c = 0; c < 3; ++c) halves.pixels.push_back(x < 20 ? 0 : 255);
  const auto crop = resize_center_crop(halves, 10);  // scale 1, crop x 15..24
  ASSERT_EQ(crop.width, 10);
  EXPECT_EQ(crop.pixels[0], 0);
  EXPECT_EQ(crop.pixels[(10 - 1) * 3], 255);
  EXPECT_EQ(crop.pixels[4 * 3], 0);
  EXPECT_EQ(crop.pixels[5 * 3], 255);
}

TEST(ImageDecode, PngKindsAndAlphaOnWhite) {
  EXPECT_EQ(diff(decode_image(read_file(kDir + "grey.png"), "grey.png"), reference("grey_rgb.npy")).first, 0);
  EXPECT_EQ(diff(decode_image(read_file(kDir + "palette.png"), "palette.png"), reference("palette_rgb.npy")).first, 0);
  EXPECT_LE(diff(decode_image(read_file(kDir + "rgba.png"), "rgba.png"), reference("rgba_on_white.npy")).first, 1);
  // The fixture's half-transparent red cat: (255, 0, 0, 128) over white.
  const auto cat = decode_image(read_file(std::string(MMT_SOURCE_DIR) + "/tests/data/datasets/folder/cat.png"), "cat.png");
  EXPECT_EQ(cat.pixels[0], 255);
  EXPECT_EQ(cat.pixels[1], 127);
  EXPECT_EQ(cat.pixels[2], 127);
}

TEST(ImageDecode, CorruptImagesFailNamingTheImage) {
  const std::string jpeg = read_file(kDir + "photo.jpg"), png = read_file(kDir + "rgba.png");
  auto expect = [](const std::string& bytes, const std::string& want) {
    try {
      decode_image(bytes, "shard.tar:000000007.jpg");
      ADD_FAILURE() << "no error; wanted " << want;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("shard.tar:000000007.jpg: " + want), std::string::npos) << e.what();
    }
  };
  expect(jpeg.substr(0, jpeg.size() / 2), "corrupt JPEG");  // truncated: libjpeg's warning is an error here
  std::string flipped = jpeg;
  for (size_t i = 600; i < 700; ++i) flipped[i] = static_cast<char>(flipped[i] ^ 0x5A);
  expect(flipped, "corrupt JPEG");
  expect(png.substr(0, png.size() - 30), "corrupt PNG");
  expect("GIF89a....", "not a JPEG or PNG image");
  expect("", "not a JPEG or PNG image (empty file)");
}

// A PNG in memory, written row by row (a large one needs no image buffer): `row(y, out)` fills
// row y's samples (channels x depth / 8 bytes a pixel, big-endian at 16 bits).
std::string write_png(int w, int h, int color_type, int depth, bool interlaced,
                      const std::function<void(int, std::vector<uint8_t>&)>& row,
                      const std::function<void(png_structp, png_infop)>& chunks = nullptr) {
  std::string out;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  png_set_write_fn(png, &out, [](png_structp p, png_bytep d, png_size_t n) {
    static_cast<std::string*>(png_get_io_ptr(p))->append(reinterpret_cast<const char*>(d), n);
  }, nullptr);
  png_set_IHDR(png, info, w, h, depth, color_type, interlaced ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (chunks) chunks(png, info);  // PLTE, tRNS
  png_write_info(png, info);
  const int channels = png_get_channels(png, info);
  for (int pass = 0, passes = interlaced ? png_set_interlace_handling(png) : 1; pass < passes; ++pass)
    for (int y = 0; y < h; ++y) {
      std::vector<uint8_t> r((static_cast<size_t>(w) * channels * depth + 7) / 8);
      row(y, r);
      png_write_row(png, r.data());
    }
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  return out;
}

// The image as the model reads it - resized while its rows are decoded - is byte for byte the
// decoded image resized: JPEG (at its DCT scale), every PNG kind, Adam7 interlacing, tall and
// wide shapes, several sides.
TEST(ImageDecode, StreamedCropEqualsDecodeThenCrop) {
  std::map<std::string, std::string> files;
  for (const char* f : {"photo.jpg", "grey.png", "palette.png", "rgba.png"}) files[f] = read_file(kDir + f);
  files["cat.png"] = read_file(std::string(MMT_SOURCE_DIR) + "/tests/data/datasets/folder/cat.png");
  const auto pattern = [](int y, std::vector<uint8_t>& r) {
    for (size_t i = 0; i < r.size(); ++i) r[i] = static_cast<uint8_t>((i * 7 + static_cast<size_t>(y) * 13) % 251);
  };
  files["tall rgba"] = write_png(23, 71, PNG_COLOR_TYPE_RGB_ALPHA, 8, false, pattern);
  files["wide rgb, interlaced"] = write_png(90, 31, PNG_COLOR_TYPE_RGB, 8, true, pattern);
  files["grey-alpha 16 bit"] = write_png(40, 40, PNG_COLOR_TYPE_GRAY_ALPHA, 16, false, pattern);
  for (const auto& [name, bytes] : files)
    for (int side : {7, 16, 33}) {
      const RgbImage streamed = load_image_for_model(bytes, name, side);
      const RgbImage whole = resize_center_crop(decode_image(bytes, name, side), side);
      EXPECT_EQ(streamed.width, side) << name;
      EXPECT_EQ(streamed.pixels, whole.pixels) << name << ", side " << side;
    }
  // Interlaced or not, the same pixels; 16 bits are cut to their high byte (as Pillow does).
  const RgbImage plain = decode_image(write_png(90, 31, PNG_COLOR_TYPE_RGB, 8, false, pattern), "plain");
  EXPECT_EQ(decode_image(files["wide rgb, interlaced"], "interlaced").pixels, plain.pixels);
  const RgbImage deep = decode_image(write_png(2, 1, PNG_COLOR_TYPE_RGB, 16, false, [](int, std::vector<uint8_t>& r) {
    for (size_t i = 0; i < r.size(); ++i) r[i] = static_cast<uint8_t>(i % 2 ? 0xFF : 10 * i);  // 0x00ff, 0x14ff, ...
  }), "deep");
  EXPECT_EQ(deep.pixels, (std::vector<uint8_t>{0, 20, 40, 60, 80, 100}));
}

// Sub-byte PNGs: 1- and 2-bit grey scaled to 0..255 (2-bit with a tRNS grey made transparent, so
// white), a 4-bit palette with a half-transparent entry composited on white.
TEST(ImageDecode, LowBitDepthsAndTransparency) {
  const RgbImage one = decode_image(write_png(8, 1, PNG_COLOR_TYPE_GRAY, 1, false, [](int, std::vector<uint8_t>& r) {
    r[0] = 0b10100000;
  }), "1-bit");
  EXPECT_EQ(one.pixels, (std::vector<uint8_t>{255, 255, 255, 0, 0, 0, 255, 255, 255, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}));
  const RgbImage two = decode_image(write_png(4, 1, PNG_COLOR_TYPE_GRAY, 2, false, [](int, std::vector<uint8_t>& r) {
    r[0] = 0b00011011;  // 0, 1, 2, 3
  }, [](png_structp p, png_infop i) {
    png_color_16 grey{};
    grey.gray = 1;  // 85 is transparent
    png_set_tRNS(p, i, nullptr, 0, &grey);
  }), "2-bit");
  EXPECT_EQ(two.pixels, (std::vector<uint8_t>{0, 0, 0, 255, 255, 255, 170, 170, 170, 255, 255, 255}));
  const RgbImage pal = decode_image(write_png(2, 1, PNG_COLOR_TYPE_PALETTE, 4, false, [](int, std::vector<uint8_t>& r) {
    r[0] = 0x01;  // entries 0 and 1
  }, [](png_structp p, png_infop i) {
    png_color colours[2] = {{200, 0, 0}, {0, 0, 100}};
    png_set_PLTE(p, i, colours, 2);
    png_byte alpha[1] = {128};  // entry 0 half transparent
    png_set_tRNS(p, i, alpha, 1, nullptr);
  }), "palette");
  // (200 * 128 + 255 * 127 + 127) / 255 = 227, (255 * 127 + 127) / 255 = 127.
  EXPECT_EQ(pal.pixels, (std::vector<uint8_t>{227, 127, 127, 0, 0, 100}));
}

// A large PNG (8,000 x 8,000: 192 MB as RGB, 256 MB as the RGBA libpng gives; a few hundred kB
// compressed) goes to the model without its decoded image in memory: the peak resident set grows
// by far less than the image (decoded whole first, it grew by 189 MB).
TEST(ImageDecode, LargePngIsResizedWithoutHoldingIt) {
  const std::string big = write_png(8000, 8000, PNG_COLOR_TYPE_RGB, 8, false, [](int y, std::vector<uint8_t>& r) {
    std::fill(r.begin(), r.end(), static_cast<uint8_t>(y / 100));
  });
  const auto status = [](const char* key) {  // kB, from /proc/self/status
    const std::string s = read_file("/proc/self/status");
    const size_t at = s.find(key);
    return at == std::string::npos ? -1L : std::atol(s.c_str() + at + std::strlen(key));
  };
  std::ofstream clear("/proc/self/clear_refs");
  if (!(clear << "5" << std::flush) || status("VmHWM:") < 0) GTEST_SKIP() << "cannot reset the peak resident set here";
  clear.close();
  const long before = status("VmRSS:");
  const RgbImage img = load_image_for_model(big, "big.png", 64);
  const long grown_mb = (status("VmHWM:") - before) / 1024;
  EXPECT_LT(grown_mb, 64) << "peak resident set grew by " << grown_mb << " MB";
  ASSERT_EQ(img.pixels.size(), 64u * 64 * 3);
  // Grey y / 100 in input row y: output row 32 averages rows about 4,063 +- 125.
  EXPECT_NEAR(img.pixels[32 * 64 * 3], 40, 1);
}

TEST(ImageNormalize, ChannelPlanesWithMeanAndStd) {
  RgbImage img;
  img.width = 2, img.height = 1;
  img.pixels = {0, 128, 255, 255, 0, 51};
  const float mean[3] = {0.5f, 0.25f, 0.f}, stdv[3] = {0.5f, 0.25f, 1.f};
  std::vector<float> out(6);
  normalize_chw(img, mean, stdv, out.data());
  EXPECT_NEAR(out[0], -1.f, 1e-6);             // R, pixel 0
  EXPECT_NEAR(out[1], 1.f, 1e-6);              // R, pixel 1
  EXPECT_NEAR(out[2], (128 / 255.f - 0.25f) / 0.25f, 1e-5);
  EXPECT_NEAR(out[3], -1.f, 1e-6);
  EXPECT_NEAR(out[4], 1.f, 1e-6);
  EXPECT_NEAR(out[5], 0.2f, 1e-6);
}

TEST(Npy, ReadsNpyAndNpzInTheirDtypes) {
  const NpyArray f = load_npy(kDir + "features_f32.npy");
  EXPECT_EQ(f.shape, (std::vector<int64_t>{4, 6}));
  const auto npz = load_npz(kDir + "features.npz");
  ASSERT_EQ(npz.size(), 3u);
  EXPECT_EQ(npz.at("features").to_float("f"), f.to_float("f"));
  EXPECT_EQ(npz.at("boxes").descr, "<f2");
  EXPECT_EQ(npz.at("boxes").shape, (std::vector<int64_t>{4, 5}));
  EXPECT_EQ(npz.at("cls_prob").descr, "<f8");
  for (float v : npz.at("boxes").to_float("boxes")) EXPECT_TRUE(v >= 0 && v <= 1);
  const auto h = load_npy(kDir + "values_f16_be.npy").to_float("h");
  ASSERT_EQ(h.size(), 5u);
  EXPECT_EQ(h[0], 0.f);
  EXPECT_EQ(h[1], 1.5f);
  EXPECT_EQ(h[2], -2.25f);
  EXPECT_EQ(h[3], 65504.f);
  EXPECT_NEAR(h[4], 5.96e-8f, 1e-9);  // a subnormal half
}

TEST(Npy, BadFilesAreNamed) {
  const std::string good = read_file(kDir + "features_f32.npy");
  EXPECT_THROW(parse_npy("hello", "x.npy"), Error);
  try {
    parse_npy(good.substr(0, good.size() - 8), "cut.npy");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cut.npy: truncated .npy data: 88 bytes of 96"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_npz(kDir + "photo.jpg"), Error);
}

}  // namespace
}  // namespace mmt
