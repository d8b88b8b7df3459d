/* Image decoding and preprocessing against Pillow (reference arrays from
 * tests/data/images/make_images.py), the DCT-scaled decode, PNG kinds and alpha on white,
 * corrupt images; .npy / .npz reading against NumPy. */
#include <gtest/gtest.h>

#include <cmath>

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
