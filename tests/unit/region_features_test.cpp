/* Region features: .npz / .npy files, the paper's layout (top-k by class score + global mean,
 * 5-d boxes), the packed store round trip (float32 exact, float16 within half precision), its
 * atomic writing and clear errors; float16 conversion over every half value. */
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "mmt/data/region_features.h"
#include "mmt/io/npy.h"
#include "mmt/util/error.h"
#include "mmt/util/half.h"

namespace mmt {
namespace {

namespace fs = std::filesystem;
const std::string kImages = std::string(MMT_SOURCE_DIR) + "/tests/data/images/";

RegionSet example(int64_t n, int64_t dim, int64_t classes, float seed) {
  RegionSet r;
  r.n = n, r.dim = dim, r.classes = classes, r.image_w = 100, r.image_h = 50;
  for (int64_t i = 0; i < n * dim; ++i) r.features.push_back(std::sin(seed + 0.37f * i) * 3.f);
  for (int64_t i = 0; i < n; ++i) {
    const float x = 10.f * i, y = 5.f * i;
    r.boxes.insert(r.boxes.end(), {x, y, x + 20, y + 10});
  }
  for (int64_t i = 0; i < n * classes; ++i) r.class_probs.push_back(0.5f + 0.5f * std::cos(seed + 1.3f * i));
  return r;
}

TEST(Half, EveryHalfRoundTripsAndRoundingIsToNearestEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = half_to_float(static_cast<uint16_t>(h));
    if (std::isnan(f)) continue;
    ASSERT_EQ(float_to_half(f), h) << h;
  }
  EXPECT_EQ(float_to_half(1.0f + 1.0f / 2048), 0x3C00);        // halfway: to even (1.0)
  EXPECT_EQ(float_to_half(1.0f + 3.0f / 2048), 0x3C02);        // halfway: to even (up)
  EXPECT_EQ(float_to_half(70000.f), 0x7C00);                   // overflow: infinity
  EXPECT_EQ(float_to_half(-1e-9f), 0x8000);                    // underflow: signed zero
  EXPECT_EQ(half_to_float(float_to_half(3e-6f)), half_to_float(0x0032));  // subnormal: 50 x 2^-24
}

TEST(RegionFiles, NpzArraysByTheirUsualNames) {
  const RegionSet r = load_region_file(kImages + "features.npz");
  EXPECT_EQ(r.n, 4);
  EXPECT_EQ(r.dim, 6);
  EXPECT_EQ(r.classes, 3);
  EXPECT_EQ(r.features, load_npy(kImages + "features_f32.npy").to_float("f"));
  EXPECT_EQ(r.boxes.size(), 16u);  // the first four of five box columns
  const RegionSet plain = load_region_file(kImages + "features_f32.npy");
  EXPECT_EQ(plain.features, r.features);
  EXPECT_EQ(plain.classes, 0);
}

TEST(RegionLayout, TopRegionsByClassScoreAfterTheGlobalMean) {
  RegionSet r = example(5, 3, 3, 0.f);
  // Max class score over classes 1-2 (0 is background): make region 3 best, then 1; region 4's
  // background score is high but does not count.
  r.class_probs = {0.1f, 0.2f, 0.1f,  0.1f, 0.7f, 0.1f,  0.1f, 0.1f, 0.3f,  0.0f, 0.1f, 0.9f,  0.99f, 0.0f, 0.05f};
  const RegionLayout l = paper_layout(r, 2);
  ASSERT_EQ(l.tokens, 3);
  for (int d = 0; d < 3; ++d) {
    EXPECT_EQ(l.features[3 + d], r.features[3 * 3 + d]);  // token 1 = region 3
    EXPECT_EQ(l.features[6 + d], r.features[1 * 3 + d]);  // token 2 = region 1
    EXPECT_NEAR(l.features[d], (r.features[9 + d] + r.features[3 + d]) / 2, 1e-6);  // global = mean of kept
  }
  // Region 3's box (30, 15, 50, 25) in a 100 x 50 image.
  EXPECT_NEAR(l.boxes[5 + 0], 0.3f, 1e-6);
  EXPECT_NEAR(l.boxes[5 + 1], 0.3f, 1e-6);
  EXPECT_NEAR(l.boxes[5 + 2], 0.5f, 1e-6);
  EXPECT_NEAR(l.boxes[5 + 3], 0.5f, 1e-6);
  EXPECT_NEAR(l.boxes[5 + 4], 0.2f * 0.2f, 1e-6);
  EXPECT_EQ(std::vector<float>(l.boxes.begin(), l.boxes.begin() + 5), (std::vector<float>{0, 0, 1, 1, 1}));
  EXPECT_NEAR(l.class_probs[2 * 3 + 1], 0.7f, 1e-6);
  // Fewer regions than max_regions: all kept.
  EXPECT_EQ(paper_layout(r, 100).tokens, 6);
}

TEST(PackedStore, RoundTripInFloat32AndFloat16) {
  const std::string dir = ::testing::TempDir() + "mmt_pack/";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::vector<RegionSet> sets = {example(3, 8, 4, 0.f), example(1, 8, 4, 1.f), example(7, 8, 4, 2.f)};
  for (const bool half : {false, true}) {
    const std::string path = dir + (half ? "h.feat" : "f.feat");
    {
      PackedWriter w(path, {half, true});
      for (size_t i = 0; i < sets.size(); ++i) w.add("img" + std::to_string(i), sets[i]);
      w.finish();
    }
    PackedStore s(path);
    ASSERT_EQ(s.size(), 3);
    EXPECT_EQ(s.dim(), 8);
    EXPECT_EQ(s.classes(), 4);
    EXPECT_EQ(s.find("img2"), 2);
    EXPECT_EQ(s.find("nope"), -1);
    for (int64_t i = 2; i >= 0; --i) {  // any order: random access
      const RegionSet g = s.get(i);
      const RegionSet& want = sets[static_cast<size_t>(i)];
      EXPECT_EQ(s.key(i), "img" + std::to_string(i));
      ASSERT_EQ(g.n, want.n);
      EXPECT_EQ(g.boxes, want.boxes);
      EXPECT_EQ(g.image_w, 100.f);
      for (size_t k = 0; k < want.features.size(); ++k) {
        if (half) EXPECT_NEAR(g.features[k], want.features[k], 2e-3 * std::abs(want.features[k]) + 1e-6);
        else EXPECT_EQ(g.features[k], want.features[k]);
      }
      for (size_t k = 0; k < want.class_probs.size(); ++k) EXPECT_NEAR(g.class_probs[k], want.class_probs[k], 1e-3);
    }
  }
}

TEST(PackedStore, UnfinishedWriteLeavesNoStoreAndBadFilesAreNamed) {
  const std::string dir = ::testing::TempDir() + "mmt_pack_bad/";
  fs::remove_all(dir);
  fs::create_directories(dir);
  {
    PackedWriter w(dir + "x.feat", {});
    w.add("a", example(2, 4, 0, 0.f));
    // destroyed without finish(): a crashed pack
  }
  EXPECT_FALSE(fs::exists(dir + "x.feat"));
  EXPECT_FALSE(fs::exists(dir + "x.feat.tmp"));
  try {
    PackedStore s(dir + "x.feat");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x.feat.idx: cannot open"), std::string::npos) << e.what();
  }
  {
    PackedWriter w(dir + "y.feat", {});
    w.add("a", example(2, 4, 0, 0.f));
    EXPECT_THROW(w.add("b", example(2, 5, 0, 0.f)), Error);  // another feature size
    w.finish();
  }
  fs::resize_file(dir + "y.feat", 40);  // truncated data
  PackedStore s(dir + "y.feat");
  try {
    s.get(0);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("entry 0 (a) runs past the end"), std::string::npos) << e.what();
  }
}

TEST(PackedStore, PacksAFolderOfFeatureFiles) {
  const std::string dir = ::testing::TempDir() + "mmt_pack_folder/";
  fs::remove_all(dir);
  fs::create_directories(dir + "in");
  fs::copy_file(kImages + "features.npz", dir + "in/000000000009.npz");
  fs::copy_file(kImages + "features_f32.npy", dir + "in/000000000025.npy");
  std::ofstream(dir + "in/000000000025_boxes.npy", std::ios::binary)
      << std::ifstream(kImages + "features_f32.npy", std::ios::binary).rdbuf();  // (4, 6): first 4 columns used
  EXPECT_THROW(pack_region_folder(dir + "in", dir + "store.feat", {true, true}), Error);  // 3 vs 0 classes
  EXPECT_EQ(pack_region_folder(dir + "in", dir + "store.feat", {true, false}), 2);
  PackedStore s(dir + "store.feat");
  EXPECT_EQ(s.key(0), "000000000009");
  EXPECT_EQ(s.key(1), "000000000025");
  EXPECT_EQ(s.classes(), 0);
}

}  // namespace
}  // namespace mmt
