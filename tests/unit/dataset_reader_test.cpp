/* Dataset readers on their fixtures (tests/data/datasets, real schemas): counts, fields, splits;
 * and every bad-input case: its message names the file and record, it is counted, and past the
 * bad fraction the read fails. */
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "mmt/data/dataset.h"
#include "mmt/util/error.h"

namespace mmt {
namespace {

namespace fs = std::filesystem;
const std::string kData = std::string(MMT_SOURCE_DIR) + "/tests/data/datasets/";

DatasetSpec spec(const std::string& format, const std::string& path, const std::string& images = "") {
  DatasetSpec s;
  s.format = format, s.path = kData + path, s.images = images.empty() ? "" : kData + images;
  return s;
}

const Record& find(const Dataset& d, const std::string& key) {
  for (const auto& r : d.records)
    if (r.key == key) return r;
  throw std::runtime_error("no record " + key);
}

// A scratch folder per test.
std::string scratch(const std::string& name) {
  const auto dir = fs::path(::testing::TempDir()) / ("mmt_readers_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string() + "/";
}

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// Expects read_dataset to throw an Error whose message contains every piece.
void expect_error(const DatasetSpec& s, const std::vector<std::string>& pieces) {
  try {
    read_dataset(s);
    ADD_FAILURE() << "no error for " << s.path;
  } catch (const Error& e) {
    for (const auto& p : pieces) EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what() << "\n lacks: " << p;
  }
}

TEST(Readers, CocoCaptions) {
  const auto d = read_dataset(spec("coco", "coco/annotations/captions_train2017.json", "coco/train2017"));
  EXPECT_EQ(d.records.size(), 3u);
  EXPECT_EQ(d.captions(), 14);
  EXPECT_EQ(d.bad.total(), 0);
  const auto& r = find(d, "9");
  EXPECT_EQ(r.captions.size(), 5u);
  EXPECT_EQ(r.captions[0], "A photo of object 9, caption 0.");
  EXPECT_EQ(r.split, "train");  // from the file name
  EXPECT_EQ(r.source, "coco");
  EXPECT_EQ(fs::path(r.image.path).filename(), "000000000009.jpg");
  EXPECT_TRUE(fs::exists(r.image.path));
}

TEST(Readers, KarpathySplitsWithFiveSentencesEach) {
  auto s = spec("karpathy", "flickr30k/dataset_flickr30k.json", "flickr30k/flickr30k-images");
  const auto all = read_dataset(s);
  ASSERT_EQ(all.records.size(), 4u);
  for (const auto& r : all.records) EXPECT_EQ(r.captions.size(), 5u) << r.key;
  EXPECT_EQ(find(all, "0").split, "train");
  EXPECT_EQ(find(all, "1").split, "val");
  s.splits = {"test"};
  const auto test = read_dataset(s);
  ASSERT_EQ(test.records.size(), 2u);
  for (const auto& r : test.records) EXPECT_EQ(r.split, "test");
  EXPECT_EQ(test.records[0].captions[2], "Two young guys near image 2, sentence 2.");
  EXPECT_TRUE(fs::exists(test.records[0].image.path));
}

TEST(Readers, ConceptualCaptionsTsvMapsRowsToImg2datasetKeys) {
  auto s = spec("tsv", "cc/Train_GCC-training.tsv", "cc/images");
  // One of four rows was never downloaded: 25% bad is over the default 5%.
  expect_error(s, {"Train_GCC-training.tsv", "1 skipped: 1 missing image file", "of 4 records", "max_bad_fraction"});
  s.max_bad_fraction = 0.5;
  std::ostringstream warn;
  const auto d = read_dataset(s, &warn);
  ASSERT_EQ(d.records.size(), 3u);
  EXPECT_EQ(d.bad.by_reason().at("missing image file"), 1);
  EXPECT_NE(warn.str().find("Train_GCC-training.tsv:3: missing image file"), std::string::npos) << warn.str();
  EXPECT_EQ(find(d, "000000003").captions[0], "sunset over the hills");
  EXPECT_EQ(fs::path(find(d, "000000001").image.path).filename(), "000000001.jpg");
  s.naming = "basename", s.check_images = false;
  const auto b = read_dataset(s);
  EXPECT_EQ(b.records[1].key, "view.jpg");  // query string dropped
}

TEST(Readers, WebdatasetShardMembersAreReadAtRandom) {
  const auto d = read_dataset(spec("webdataset", "wds"));
  ASSERT_EQ(d.records.size(), 3u);
  const auto& r = find(d, "000000001");
  EXPECT_EQ(r.captions[0], "a web caption number 1");
  EXPECT_EQ(r.image.member, "000000001.jpg");
  const std::string bytes = read_image_bytes(r.image);
  ASSERT_EQ(static_cast<int64_t>(bytes.size()), r.image.size);
  EXPECT_EQ(bytes.substr(0, 2), "\xFF\xD8");  // JPEG start and end markers: the exact member bytes
  EXPECT_EQ(bytes.substr(bytes.size() - 2), "\xFF\xD9");
}

TEST(Readers, Img2datasetFilesAndSidecarFolders) {
  const auto files = read_dataset(spec("files", "files"));
  ASSERT_EQ(files.records.size(), 2u);
  EXPECT_EQ(find(files, "000000001").captions, (std::vector<std::string>{"a downloaded picture 1"}));
  const auto folder = read_dataset(spec("folder", "folder"));
  ASSERT_EQ(folder.records.size(), 2u);
  EXPECT_EQ(find(folder, "cat").captions, (std::vector<std::string>{"a cat on a mat", "a red cat"}));
  EXPECT_EQ(find(folder, "dog").captions.size(), 1u);
}

TEST(Readers, LocalizedNarrativesGroupAnnotatorsPerImage) {
  const auto d = read_dataset(spec("narratives", "narratives/coco_train_localized_narratives.jsonl", "coco/train2017"));
  ASSERT_EQ(d.records.size(), 2u);
  const auto& r = find(d, "9");
  EXPECT_EQ(r.captions.size(), 2u);
  EXPECT_EQ(fs::path(r.image.path).filename(), "000000000009.jpg");  // COCO's 12-digit names
  EXPECT_EQ(r.split, "train");
}

TEST(Readers, VisualGenomePhrasesKeepTheirBoxes) {
  const auto d = read_dataset(spec("vg", "vg/region_descriptions.json", "vg/VG_100K"));
  ASSERT_EQ(d.records.size(), 2u);
  const auto& r = find(d, "1");
  ASSERT_EQ(r.captions.size(), 3u);
  ASSERT_EQ(r.boxes.size(), 3u);
  EXPECT_EQ(r.captions[1], "shade is along the street");
  EXPECT_EQ(r.boxes[0], (std::array<float, 4>{421, 57, 82, 139}));
}

// One photo under several datasets' names: Visual Genome's image_data.json gives its COCO and
// Flickr ids, COCO and Karpathy files theirs - what the zero-shot check compares.
TEST(Readers, ImagesCarryTheirCocoAndFlickrIds) {
  const auto vg = read_dataset(spec("vg", "vg/region_descriptions.json", "vg/VG_100K"));
  EXPECT_EQ(find(vg, "1").aliases, (std::vector<std::string>{"flickr:1000344755"}));
  EXPECT_EQ(find(vg, "2").aliases, (std::vector<std::string>{"coco:9"}));
  const auto coco = read_dataset(spec("coco", "coco/annotations/captions_train2017.json", "coco/train2017"));
  EXPECT_EQ(find(coco, "9").aliases, (std::vector<std::string>{"coco:9"}));
  const auto flickr = read_dataset(spec("karpathy", "flickr30k/dataset_flickr30k.json", "flickr30k/flickr30k-images"));
  bool found = false;
  for (const auto& r : flickr.records) found |= r.aliases == std::vector<std::string>{"flickr:1000344755"};
  EXPECT_TRUE(found);
  // A COCO-format file: the ids are COCO's when its images say so (coco_url, COCO's file names),
  // with the Flickr photo of their flickr_url; another dataset in the format numbers its own.
  const std::string cdir = scratch("coco_ids");
  write(cdir + "c.json", R"({"images": [
    {"id": 1, "file_name": "x.jpg", "coco_url": "http://images.cocodataset.org/val2017/000000000001.jpg",
     "flickr_url": "http://farm4.staticflickr.com/3153/2970773875_164f0c0b83_z.jpg"},
    {"id": 3, "file_name": "COCO_val2014_000000000003.jpg"}, {"id": 4, "file_name": "4.jpg"}],
    "annotations": [{"image_id": 1, "caption": "a"}, {"image_id": 3, "caption": "b"}, {"image_id": 4, "caption": "c"}]})");
  DatasetSpec cs;
  cs.format = "coco", cs.path = cdir + "c.json", cs.check_images = false;
  const auto own_format = read_dataset(cs);
  EXPECT_EQ(find(own_format, "1").aliases, (std::vector<std::string>{"coco:1", "flickr:2970773875"}));
  EXPECT_EQ(find(own_format, "3").aliases, (std::vector<std::string>{"coco:3"}));
  EXPECT_TRUE(find(own_format, "4").aliases.empty());
  // Flickr8k names a file by its photo id and a secret; a dataset of its own in the Karpathy format
  // (its "dataset" not Flickr's) names its own files, digits or not.
  const std::string kdir = scratch("karpathy_ids");
  write(kdir + "f8k.json", R"({"dataset": "flickr8k", "images": [{"filename": "1000268201_693b08cb0e.jpg",
    "split": "test", "sentences": [{"raw": "a child"}]}]})");
  write(kdir + "emoji.json", R"({"dataset": "emoji", "images": [{"filename": "2615.png", "split": "test",
    "sentences": [{"raw": "hot beverage"}]}]})");
  // Without a string "dataset" key, the file's name says which: Karpathy's dataset_flickr8k.json
  // is Flickr's, one's own mine.json is not.
  const std::string f8k_image = R"("images": [{"filename": "1000268201_693b08cb0e.jpg", "split": "test",
    "sentences": [{"raw": "a child"}]}]})";
  write(kdir + "dataset_flickr8k.json", "{" + f8k_image);
  write(kdir + "mine.json", R"({"dataset": 8, )" + f8k_image);
  for (const char* f : {"f8k.json", "emoji.json", "dataset_flickr8k.json", "mine.json"}) {
    DatasetSpec k;
    k.format = "karpathy", k.path = kdir + f, k.check_images = false;
    const auto d = read_dataset(k);
    ASSERT_EQ(d.records.size(), 1u) << f;
    const bool flickr = std::string(f).find("f8k") != std::string::npos || std::string(f).find("flickr") != std::string::npos;
    EXPECT_EQ(d.records[0].aliases, flickr ? std::vector<std::string>{"flickr:1000268201"} : std::vector<std::string>{})
        << f;
  }
  // Web data (SBU, some of CC) by URL: a Flickr static URL names the photo; other hosts nothing.
  const std::string dir = scratch("urls");
  write(dir + "sbu.tsv", "a dog\thttp://static.flickr.com/2723/4385058960_b0f291553e.jpg\n"
                         "a cat\thttps://live.staticflickr.com/65535/1000344755_0a1b2c3d4e_b.jpg?x=1\n"
                         "a car\thttp://example.com/12345_67.jpg\n"
                         "a cow\thttp://static.flickr.com/1/99999999999999999999999_a.jpg\n");
  DatasetSpec s;
  s.format = "tsv", s.path = dir + "sbu.tsv", s.naming = "basename", s.check_images = false;
  const auto web = read_dataset(s);
  ASSERT_EQ(web.records.size(), 4u);
  EXPECT_EQ(web.records[0].aliases, (std::vector<std::string>{"flickr:4385058960"}));
  EXPECT_EQ(web.records[1].aliases, (std::vector<std::string>{"flickr:1000344755"}));
  EXPECT_TRUE(web.records[2].aliases.empty());
  EXPECT_TRUE(web.records[3].aliases.empty());  // no id that long
}

// ---- bad input ---------------------------------------------------------------------------------

TEST(BadInput, CocoUnknownImageEmptyCaptionAndMissingFileAreSkippedAndCounted) {
  const std::string dir = scratch("coco");
  write(dir + "img/1.jpg", "x");
  write(dir + "captions.json", R"({"images": [{"id": 1, "file_name": "1.jpg"}, {"id": 2, "file_name": "2.jpg"}],
    "annotations": [{"image_id": 1, "id": 1, "caption": "ok"}, {"image_id": 1, "id": 2, "caption": "  "},
                    {"image_id": 7, "id": 3, "caption": "orphan"}, {"image_id": 2, "id": 4, "caption": "no file"}]})");
  DatasetSpec s;
  s.format = "coco", s.path = dir + "captions.json", s.images = dir + "img", s.max_bad_fraction = 1;
  std::ostringstream warn;
  const auto d = read_dataset(s, &warn);
  EXPECT_EQ(d.records.size(), 1u);
  EXPECT_EQ(d.bad.by_reason().at("empty caption"), 1);
  EXPECT_EQ(d.bad.by_reason().at("unknown image id"), 1);
  EXPECT_EQ(d.bad.by_reason().at("missing image file"), 1);
  EXPECT_NE(warn.str().find("captions.json: annotations[1]: empty caption"), std::string::npos) << warn.str();
  EXPECT_NE(warn.str().find("captions.json: annotations[2]: unknown image id (7)"), std::string::npos) << warn.str();
  EXPECT_NE(warn.str().find("captions.json: image 2: missing image file"), std::string::npos) << warn.str();
}

TEST(BadInput, MalformedTopLevelFilesFailNamingFileAndOffset) {
  const std::string dir = scratch("malformed");
  write(dir + "cut.json", R"({"images": [{"id": 1, "file_name": "1.jpg"}], "annotations": [{"image_id": 1, )");
  DatasetSpec s;
  s.format = "coco", s.path = dir + "cut.json";
  expect_error(s, {"cut.json", "malformed JSON at byte"});
  write(dir + "list.json", "[1, 2]");
  s.path = dir + "list.json";
  expect_error(s, {"list.json", "not a COCO captions file"});
  s.format = "karpathy", s.path = dir + "none.json";
  expect_error(s, {"none.json", "no such file"});
  s.format = "parquet";
  expect_error(s, {"unknown dataset format 'parquet'", "coco"});
}

TEST(BadInput, TruncatedJsonLineAndInvalidUtf8AreSkippedWithTheirLine) {
  const std::string dir = scratch("lines");
  write(dir + "img/000000000001.jpg", "x");
  write(dir + "ln.jsonl",
        "{\"dataset_id\": \"mscoco_train2017\", \"image_id\": \"1\", \"caption\": \"fine\"}\n"
        "{\"dataset_id\": \"mscoco_train2017\", \"image_id\": \"1\", \"capt\n"
        "{\"dataset_id\": \"mscoco_train2017\", \"image_id\": \"1\", \"caption\": \"bad \xC3(\"}\n");
  DatasetSpec s;
  s.format = "narratives", s.path = dir + "ln.jsonl", s.images = dir + "img", s.max_bad_fraction = 1;
  std::ostringstream warn;
  const auto d = read_dataset(s, &warn);
  ASSERT_EQ(d.records.size(), 1u);
  EXPECT_EQ(d.records[0].captions.size(), 1u);
  EXPECT_EQ(d.bad.by_reason().at("malformed JSON line"), 1);
  EXPECT_NE(warn.str().find("ln.jsonl:2: malformed JSON line"), std::string::npos) << warn.str();
  EXPECT_EQ(d.bad.by_reason().at("invalid UTF-8"), 1);
  EXPECT_NE(warn.str().find("ln.jsonl:3: invalid UTF-8 (byte 68 of the line)"), std::string::npos) << warn.str();

  write(dir + "cc.tsv", "good caption\thttp://x/a.jpg\nbad \xFF caption\thttp://x/b.jpg\nno tab here\n");
  DatasetSpec t;
  t.format = "tsv", t.path = dir + "cc.tsv", t.check_images = false, t.max_bad_fraction = 1;
  std::ostringstream w2;
  const auto c = read_dataset(t, &w2);
  EXPECT_EQ(c.records.size(), 1u);
  EXPECT_EQ(c.bad.by_reason().at("invalid UTF-8"), 1);
  EXPECT_EQ(c.bad.by_reason().at("malformed line"), 1);
  EXPECT_NE(w2.str().find("cc.tsv:2: invalid UTF-8 (byte 4 of the caption)"), std::string::npos) << w2.str();
  EXPECT_NE(w2.str().find("cc.tsv:3: malformed line"), std::string::npos) << w2.str();
}

TEST(BadInput, TruncatedShardKeepsTheSamplesBeforeTheCut) {
  const std::string dir = scratch("wds");
  const std::string whole = kData + "wds/00000.tar";
  std::ifstream in(whole, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Cut inside the last sample's image.
  const auto d0 = read_dataset(spec("webdataset", "wds"));
  const int64_t cut = find(d0, "000000002").image.offset + 100;
  write(dir + "00000.tar", bytes.substr(0, static_cast<size_t>(cut)));
  DatasetSpec s;
  s.format = "webdataset", s.path = dir, s.max_bad_fraction = 1;
  std::ostringstream warn;
  const auto d = read_dataset(s, &warn);
  EXPECT_EQ(d.records.size(), 2u);
  EXPECT_EQ(d.bad.by_reason().at("truncated shard"), 1);
  EXPECT_NE(warn.str().find("00000.tar: truncated shard"), std::string::npos) << warn.str();
}

TEST(BadInput, SidecarFolderWithoutCaptionFileAndFailedDownloads) {
  const std::string dir = scratch("files");
  write(dir + "00000/000000000.jpg", "x");
  write(dir + "00000/000000000.txt", "a caption");
  write(dir + "00000/000000001.jpg", "x");  // no .txt
  write(dir + "00000/000000002.jpg", "x");
  write(dir + "00000/000000002.txt", "caption");
  write(dir + "00000/000000002.json", "{\"status\": \"failed_to_resize\"}");
  DatasetSpec s;
  s.format = "files", s.path = dir, s.max_bad_fraction = 1;
  const auto d = read_dataset(s);
  EXPECT_EQ(d.records.size(), 1u);
  EXPECT_EQ(d.bad.by_reason().at("no caption file"), 1);
  EXPECT_EQ(d.bad.by_reason().at("download failed"), 1);
  EXPECT_EQ(d.bad.summary(), "2 skipped: 1 download failed, 1 no caption file");
}

TEST(BadInput, WarningsStopAfterTheFirstFewButCountsGoOn) {
  const std::string dir = scratch("many");
  std::string tsv;
  for (int i = 0; i < 50; ++i) tsv += "caption " + std::to_string(i) + "\thttp://x/" + std::to_string(i) + ".jpg\n";
  write(dir + "many.tsv", tsv);
  DatasetSpec s;
  s.format = "tsv", s.path = dir + "many.tsv", s.images = dir, s.max_bad_fraction = 1;
  std::ostringstream warn;
  const auto d = read_dataset(s, &warn);
  EXPECT_EQ(d.bad.total(), 50);
  EXPECT_EQ(d.bad.messages().size(), 21u);  // 20 and "..."
  EXPECT_NE(warn.str().find("further skipped records are only counted"), std::string::npos);
}

}  // namespace
}  // namespace mmt
