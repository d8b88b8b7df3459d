/* Retrieval protocols pick the right images and captions from Karpathy files: Flickr30k 1k,
 * COCO 5k, COCO 1k as five folds of consecutive test images, first 5 captions, the val split for
 * choosing weights, clear errors. */
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "mmt/eval/protocols.h"
#include "mmt/util/error.h"

namespace mmt {
namespace {

// A Karpathy file: `test` test images (6 captions each for COCO, as some COCO images have), with
// train / val / restval images interleaved.
std::string karpathy_file(const std::string& name, int test, int captions) {
  nlohmann::json images = nlohmann::json::array();
  int id = 0;
  for (int i = 0; i < test; ++i) {
    for (const char* other : {"train", "restval"})
      if (i % 3 == 0) {
        images.push_back({{"filename", std::to_string(id) + ".jpg"}, {"split", other}, {"imgid", id},
                          {"sentences", {{{"raw", "not a test caption"}}}}});
        ++id;
      }
    if (i % 4 == 0) {  // val images: 2 captions each
      images.push_back({{"filename", std::to_string(id) + ".jpg"}, {"split", "val"}, {"imgid", id},
                        {"sentences", {{{"raw", "val " + std::to_string(i) + " caption 0"}}, {{"raw", "val caption 1"}}}}});
      ++id;
    }
    nlohmann::json sentences = nlohmann::json::array();
    for (int c = 0; c < captions; ++c) sentences.push_back({{"raw", "test " + std::to_string(i) + " caption " + std::to_string(c)}});
    images.push_back({{"filename", std::to_string(id) + ".jpg"}, {"split", "test"}, {"imgid", id}, {"sentences", sentences}});
    ++id;
  }
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << nlohmann::json({{"dataset", name}, {"images", images}}).dump();
  return path;
}

TEST(Protocols, Flickr30kOneThousandTestImagesFiveCaptionsEach) {
  const auto s = load_protocol("flickr30k-1k", karpathy_file("f30k.json", 1000, 5));
  ASSERT_EQ(s.size(), 1u);
  ASSERT_EQ(s[0].images.size(), 1000u);
  ASSERT_EQ(s[0].captions.size(), 5000u);
  EXPECT_EQ(s[0].captions[0], "test 0 caption 0");
  EXPECT_EQ(s[0].captions[4999], "test 999 caption 4");
  EXPECT_EQ(s[0].caption_image[4999], 999);
  for (const auto& r : s[0].images) EXPECT_EQ(r.split, "test");
}

TEST(Protocols, Coco5kAndFiveFoldsOfOneThousand) {
  const std::string file = karpathy_file("coco.json", 5000, 6);
  const auto full = load_protocol("coco-5k", file);
  ASSERT_EQ(full[0].captions.size(), 25000u);  // the first 5 of 6
  EXPECT_EQ(full[0].captions[5], "test 1 caption 0");
  const auto folds = load_protocol("coco-1k", file);
  ASSERT_EQ(folds.size(), 5u);
  for (int f = 0; f < 5; ++f) {
    EXPECT_EQ(folds[f].name, "coco-1k-fold" + std::to_string(f + 1));
    ASSERT_EQ(folds[f].images.size(), 1000u);
    EXPECT_EQ(folds[f].captions.front(), "test " + std::to_string(1000 * f) + " caption 0");
    EXPECT_EQ(folds[f].caption_image.back(), 999);
    EXPECT_EQ(folds[f].images.front().key, full[0].images[1000 * f].key);
  }
}

TEST(Protocols, WrongSizesAndShortImagesAreNamed) {
  try {
    load_protocol("coco-5k", karpathy_file("small.json", 20, 5));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expects 5000 test images, the file has 20"), std::string::npos) << e.what();
  }
  try {
    load_protocol("flickr30k-1k", karpathy_file("short.json", 3, 4));
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("has 4 captions; the protocols use 5"), std::string::npos) << e.what();
  }
  EXPECT_EQ(load_protocol("test", karpathy_file("any.json", 7, 5))[0].images.size(), 7u);
  const auto all = load_protocol("test", karpathy_file("three.json", 4, 3));  // the generic set keeps every caption
  EXPECT_EQ(all[0].captions.size(), 12u);
  EXPECT_EQ(all[0].caption_image[11], 3);
  EXPECT_THROW(load_protocol("flickr8k", karpathy_file("x.json", 1, 5)), Error);
}

// `val`: the file's val images with all their captions - where train.eval_every chooses weights,
// never on test images; a file without any is refused, saying why.
TEST(Protocols, ValIsTheValSplitWithEveryCaption) {
  const auto v = load_protocol("val", karpathy_file("val.json", 10, 5));
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].name, "val");
  ASSERT_EQ(v[0].images.size(), 3u);  // images 0, 4, 8
  ASSERT_EQ(v[0].captions.size(), 6u);
  EXPECT_EQ(v[0].captions[2], "val 4 caption 0");
  EXPECT_EQ(v[0].caption_image[5], 2);
  for (const auto& r : v[0].images) EXPECT_EQ(r.split, "val");
  nlohmann::json none = {{"images", {{{"filename", "a.jpg"}, {"split", "test"}, {"sentences", {{{"raw", "x"}}}}}}}};
  const std::string path = ::testing::TempDir() + "noval.json";
  std::ofstream(path) << none.dump();
  try {
    load_protocol("val", path);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no val images (a Karpathy file's val split: weights are chosen on it"),
              std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace mmt
