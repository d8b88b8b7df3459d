/* Real data through the `mmt` binary: `data check` (counts, undecodable images), `data stats`
 * (vocabulary overlap against a hand count), and `mmt train` on a mixture of the fixture datasets
 * with the threaded loader, per-dataset counts in the logs and the sampler state in the checkpoint. */
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_util.h"
#include "mmt/io/npy.h"
#include "mmt/train/tensorboard.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace mmt::cli_test;
const std::string kData = std::string(MMT_SOURCE_DIR) + "/tests/data/datasets/";

// data check says how many images carry a COCO / Flickr id - whether Visual Genome's image_data.json
// was found, which the zero-shot check needs (docs/evaluation.md).
TEST(DataCli, CheckCountsImagesWithCrossDatasetIds) {
  const auto r = run_mmt("data check --json --dataset format=vg,path=" + kData + "vg/region_descriptions.json,images=" + kData +
                         "vg/VG_100K");
  ASSERT_EQ(r.status, 0) << r.err;
  const json c = json::parse(r.out)[0];
  EXPECT_EQ(c["images_with_ids"]["coco"], 1) << c.dump();
  EXPECT_EQ(c["images_with_ids"]["flickr"], 1) << c.dump();
  const auto text = run_mmt("data check --dataset format=vg,path=" + kData + "vg/region_descriptions.json,images=" + kData +
                            "vg/VG_100K");
  EXPECT_NE(text.out.find("  images with a coco id: 1\n"), std::string::npos) << text.out;
}

TEST(DataCli, CheckCountsSplitsSkippedAndUndecodableImages) {
  const std::string dir = scratch("check");
  fs::copy(kData + "folder", dir + "imgs", fs::copy_options::recursive);
  std::ofstream(dir + "imgs/broken.jpg") << "\xFF\xD8\xFF not really a jpeg";
  std::ofstream(dir + "imgs/broken.txt") << "a broken picture\n";
  std::ofstream(dir + "imgs/lonely.png") << "x";  // no caption file
  const auto r = run_mmt("data check --json --decode --dataset format=folder,path=" + dir + "imgs,name=mine");
  ASSERT_EQ(r.status, 0) << r.err;
  const json c = json::parse(r.out)[0];
  EXPECT_EQ(c["name"], "mine");
  EXPECT_EQ(c["images"], 3);
  EXPECT_EQ(c["captions"], 4);
  EXPECT_EQ(c["skipped_by_reason"]["no caption file"], 1);
  EXPECT_EQ(c["undecodable_images"], 1);
  EXPECT_NE(r.err.find("broken.jpg: corrupt JPEG"), std::string::npos) << r.err;
  const auto bad = run_mmt("data check --dataset format=coco");
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("format= and path= are required"), std::string::npos) << bad.err;
}

TEST(DataCli, StatsVocabularyOverlapMatchesAHandCount) {
  const std::string dir = scratch("stats");
  fs::create_directories(dir + "a"), fs::create_directories(dir + "b");
  std::ofstream(dir + "a/1.jpg") << "x";
  std::ofstream(dir + "a/1.txt") << "a red cat\nA red, red cat\n";  // types a red cat ,
  std::ofstream(dir + "b/1.jpg") << "x";
  std::ofstream(dir + "b/1.txt") << "a blue cat\n";                  // types a blue cat
  const auto r = run_mmt("data stats --json --dataset format=folder,path=" + dir + "a,name=A --dataset format=folder,path=" + dir + "b,name=B");
  ASSERT_EQ(r.status, 0) << r.err;
  const json s = json::parse(r.out);
  EXPECT_EQ(s["datasets"][0]["vocabulary"], 4);
  EXPECT_EQ(s["datasets"][0]["words"], 3 + 5);
  EXPECT_DOUBLE_EQ(s["datasets"][0]["mean_length"].get<double>(), 4.0);
  // Lengths 3 and 5 (nearest rank): the median is the 1st, the 95th percentile the 2nd.
  EXPECT_EQ(s["datasets"][0]["median_length"], 3);
  EXPECT_EQ(s["datasets"][0]["p95_length"], 5);
  EXPECT_EQ(s["datasets"][0]["max_length"], 5);
  const json& o = s["overlap"][0];
  EXPECT_DOUBLE_EQ(o["jaccard"].get<double>(), 2.0 / 5);                       // {a, cat} of {a, red, cat, ",", blue}
  EXPECT_DOUBLE_EQ(o["a_tokens_in_b_vocabulary"].get<double>(), 4.0 / 8);      // a a cat cat of 8 words
  EXPECT_DOUBLE_EQ(o["b_tokens_in_a_vocabulary"].get<double>(), 2.0 / 3);
}

// Exact repeats and what a queue holds of them, against the hypergeometric by hand: captions x, x,
// x, y (x three times, with case and spacing that the basic tokenizer removes).
TEST(DataCli, StatsCountsCaptionRepeatsInAQueue) {
  const std::string dir = scratch("repeats");
  fs::create_directories(dir + "a");
  std::ofstream(dir + "a/1.jpg") << "x";
  std::ofstream(dir + "a/1.txt") << "a red cat\nA red  cat\n";
  std::ofstream(dir + "a/2.jpg") << "x";
  std::ofstream(dir + "a/2.txt") << "a red cat\na red dog\n";
  auto stats = [&](int queue) {
    const auto r = run_mmt("data stats --json --queue " + std::to_string(queue) + " --dataset format=folder,path=" + dir + "a,name=A");
    EXPECT_EQ(r.status, 0) << r.err;
    return json::parse(r.out)["datasets"][0]["repeats"];
  };
  const json one = stats(1), two = stats(2), big = stats(1000);
  EXPECT_EQ(one["distinct_captions"], 2);
  EXPECT_DOUBLE_EQ(one["repeated_captions"].get<double>(), 3.0 / 4);
  // Queue 1: an x has 2 copies among 3 others - 2/3 expected, P(one) = 2/3; y none.
  EXPECT_DOUBLE_EQ(one["queue_copies"].get<double>(), 3 * (2.0 / 3) / 4);
  EXPECT_NEAR(one["queue_any_copy"].get<double>(), 3 * (2.0 / 3) / 4, 1e-12);
  // Queue 2: 4/3 expected; no copy needs both drawn from the one y: impossible.
  EXPECT_DOUBLE_EQ(two["queue_copies"].get<double>(), 3 * (4.0 / 3) / 4);
  EXPECT_NEAR(two["queue_any_copy"].get<double>(), 3.0 / 4, 1e-12);
  // A queue longer than the others holds all of them.
  EXPECT_EQ(big["queue"], 3);
  EXPECT_DOUBLE_EQ(big["queue_copies"].get<double>(), 3 * 2.0 / 4);
  const auto text = run_mmt("data stats --queue 2 --dataset format=folder,path=" + dir + "a,name=A");
  EXPECT_NE(text.out.find("| A | 2 | 75.0% | 2 | 1.000 | 75.0% |"), std::string::npos) << text.out;
}

TEST(DataCli, TrainsOnAMixtureOfRealDatasets) {
  const std::string dir = scratch("train");
  real_mixture_config(dir, 6);
  const auto r = run_mmt("train --config " + dir + "config.json --out " + dir + "run");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("dataset clipart: 2 images, 3 captions"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("examples per dataset: clipart"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("captions sampled are longer"), std::string::npos) << r.err;  // short captions
  // Captions longer than model.max_text_len are said to be cut, per dataset (the coco fixture's
  // "A photo of object 9, caption 0." style: 9 to 11 tokens with [CLS] and [SEP]).
  const auto cut = run_mmt("train --config " + dir + "config.json --set model.max_text_len=8 --set train.steps=1 --out " + dir + "cut");
  ASSERT_EQ(cut.status, 0) << cut.err;
  EXPECT_NE(cut.err.find("dataset coco: 14 of 14 captions sampled are longer than model.max_text_len = 8 tokens"), std::string::npos)
      << cut.err;
  std::ifstream metrics(dir + "run/metrics.jsonl");
  std::vector<json> recs;
  for (std::string line; std::getline(metrics, line);) recs.push_back(json::parse(line));
  ASSERT_EQ(recs.size(), 2u);
  int64_t drawn = 0;
  for (const auto& c : recs.back()["dataset_counts"]) drawn += c.get<int64_t>();
  EXPECT_EQ(drawn, 6 * 4);
  const json ckpt = json::parse(slurp(dir + "run/checkpoint.json"));
  EXPECT_EQ(ckpt["sampler"]["draws"], 24);
  EXPECT_EQ(ckpt["trained_on"].size(), 3u);
  EXPECT_EQ(ckpt["trained_on"][2]["name"], "coco");
  // The TensorBoard file holds the logged losses at the logged steps.
  std::vector<mmt::TensorBoardEvent> events;
  for (const auto& e : fs::directory_iterator(dir + "run/tensorboard")) events = mmt::read_tensorboard_events(e.path().string());
  ASSERT_EQ(events.size(), 3u);  // file_version + 2 logged steps
  EXPECT_EQ(events[2].step, 6);
  bool has_loss = false;
  for (const auto& [tag, v] : events[2].scalars)
    if (tag == "train/loss") {
      has_loss = true;
      EXPECT_NEAR(v, recs.back()["loss"].get<double>(), 1e-5);
    }
  EXPECT_TRUE(has_loss);
  // Without --protocol, mmt eval reads the synthetic test sets: a real-data run is pointed to it.
  const auto e = run_mmt("eval --run " + dir + "run");
  EXPECT_EQ(e.status, 2);
  EXPECT_NE(e.err.find("--protocol"), std::string::npos) << e.err;
}

}  // namespace

namespace {

// scripts/make_real_datasets.py on miniature copies of its inputs: an openclipart tree (PNGs
// with Title text chunks) and the two emoji npm packages' layout; mmt reads what it writes.
TEST(DataCli, RealDatasetScriptsWriteKarpathyDatasetsMmtReads) {
  const std::string dir = scratch("real");
  const std::string png = kData + "folder/cat.png";  // any PNG: the script reads its text chunks
  auto png_with_title = [&](const std::string& path, const std::string& title) {
    std::ifstream in(png, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    // Insert a tEXt chunk after IHDR (8 + 25 bytes); its CRC is not checked by the script or libpng's
    // text-agnostic decode of the image data.
    const std::string body = "Title" + std::string(1, '\0') + title;
    std::string chunk(4, '\0');
    for (int i = 0; i < 4; ++i) chunk[i] = static_cast<char>((body.size() >> (24 - 8 * i)) & 0xFF);
    chunk += "tEXt" + body + std::string(4, '\0');
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << bytes.substr(0, 33) + chunk + bytes.substr(33);
  };
  png_with_title(dir + "oc/animals/armadillo_architetto_fra_01.png", "Armadillo");
  png_with_title(dir + "oc/animals/birds/acquila_architetto_franc_01.png", "Acquila");
  fs::create_directories(dir + "pkg/emojibase-data/en");
  fs::create_directories(dir + "pkg/emoji-datasource-google/img/google/64");
  std::ofstream(dir + "pkg/emojibase-data/en/data.json")
      << R"([{"label": "grinning face", "hexcode": "1F600", "tags": ["face", "grin"], "group": 0, "subgroup": 0},
             {"label": "red heart", "hexcode": "2764", "tags": ["heart"], "group": 6, "subgroup": 1},
             {"label": "light skin tone", "hexcode": "1F3FB", "group": 2, "subgroup": 3},
             {"label": "no image", "hexcode": "1FFFF", "group": 0, "subgroup": 0}])";
  std::ofstream(dir + "pkg/emojibase-data/en/messages.json")
      << R"({"groups": [], "subgroups": [{"key": "face-smiling", "message": "smiling", "order": 0},
                                        {"key": "heart", "message": "heart", "order": 1}]})";
  for (const char* f : {"1f600.png", "2764-fe0f.png", "1f3fb.png"})
    fs::copy_file(png, dir + "pkg/emoji-datasource-google/img/google/64/" + f);
  const std::string script = std::string(MMT_SOURCE_DIR) + "/scripts/make_real_datasets.py";
  ASSERT_EQ(std::system(("python3 " + script + " openclipart " + dir + "out_oc " + dir + "oc 2>/dev/null").c_str()), 0);
  ASSERT_EQ(std::system(("python3 " + script + " emoji " + dir + "out_emoji " + dir + "pkg 2>/dev/null").c_str()), 0);
  const auto oc = json::parse(slurp(dir + "out_oc/dataset_openclipart.json"));
  ASSERT_EQ(oc["images"].size(), 2u);
  EXPECT_EQ(oc["images"][0]["sentences"][0]["raw"], "Armadillo");
  EXPECT_EQ(oc["images"][0]["sentences"][1]["raw"], "Armadillo, animals");
  EXPECT_EQ(oc["images"][1]["sentences"][1]["raw"], "Acquila, animals birds");
  const auto em = json::parse(slurp(dir + "out_emoji/dataset_emoji.json"));
  ASSERT_EQ(em["images"].size(), 2u);  // the skin tone (a component) and the imageless entry left out
  EXPECT_EQ(em["images"][0]["sentences"][1]["raw"], "grinning face: face, grin");
  EXPECT_EQ(em["images"][1]["filename"], "2764-fe0f.png");  // matched without its FE0F
  EXPECT_EQ(em["images"][1]["sentences"][2]["raw"], "a heart emoji: red heart");
  const auto r = run_mmt("data check --json --decode --dataset format=karpathy,path=" + dir +
                         "out_oc/dataset_openclipart.json --dataset format=karpathy,path=" + dir + "out_emoji/dataset_emoji.json");
  ASSERT_EQ(r.status, 0) << r.err;
  const json c = json::parse(r.out);
  EXPECT_EQ(c[0]["images"], 2);
  EXPECT_EQ(c[0]["undecodable_images"], 0);
  EXPECT_EQ(c[1]["captions"], 6);  // label, tags, subgroup each
  EXPECT_EQ(c[1]["undecodable_images"], 0);
}

}  // namespace

namespace {

// A tiny patch model trained on `dataset` with a vocabulary of the fixtures' caption words, written
// to dir/cfg.json (the vocabulary to dir/vocab.txt); `train` is the config's train section.
std::string patch_model_config(const std::string& dir, const json& dataset, const json& train) {
  {
    std::ofstream v(dir + "vocab.txt");
    v << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n";
    for (const char* w : {"a", "cat", "on", "mat", "red", "brown", "dog", "two", "young", "guys", "near", "image", "sentence", ",", "."})
      v << w << "\n";
  }
  const json cfg = {{"model", {{"preset", "tiny"}, {"image_input", "patches"}, {"patch_size", 8}, {"num_layers", 2}}},
                    {"data", {{"source", "datasets"}, {"tokenizer", dir + "vocab.txt"}, {"image_size", 32}, {"datasets", {dataset}}}},
                    {"train", train}};
  std::ofstream(dir + "cfg.json") << cfg.dump();
  return dir + "cfg.json";
}

// Real data with train.eval_every: weights are chosen on the val split of train.eval_karpathy,
// never its test split; a file without val images is refused before training.
TEST(DataCli, ValidationDuringTrainingUsesTheValSplit) {
  const std::string dir = scratch("valsplit");
  const std::string karpathy = kData + "flickr30k/dataset_flickr30k.json", images = kData + "flickr30k/flickr30k-images";
  auto config = [&](const std::string& eval_file) {
    return patch_model_config(dir, {{"format", "folder"}, {"path", kData + "folder"}},
                              {{"steps", 4}, {"batch_size", 4}, {"log_every", 2}, {"eval_every", 2},
                               {"eval_karpathy", eval_file}, {"eval_image_dir", images}});
  };
  auto r = run_mmt("train --config " + config(karpathy) + " --out " + dir + "run");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("every 2 steps: retrieval on val (1 images x 5 captions"), std::string::npos) << r.err;
  // Without a val split: refused, saying why.
  json only_test = json::parse(slurp(karpathy));
  json kept = json::array();
  for (const auto& i : only_test["images"])
    if (i["split"] != "val") kept.push_back(i);
  only_test["images"] = kept;
  std::ofstream(dir + "noval.json") << only_test.dump();
  r = run_mmt("train --config " + config(dir + "noval.json") + " --out " + dir + "run2");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("no val images"), std::string::npos) << r.err;
}

// `mmt eval --protocol` on real images: metrics, the score matrix, and an honest label - a run
// whose pretraining data holds the test images is not called zero-shot.
TEST(DataCli, ProtocolEvalLabelsZeroShotHonestly) {
  const std::string dir = scratch("protocol");
  const std::string karpathy = kData + "flickr30k/dataset_flickr30k.json", images = kData + "flickr30k/flickr30k-images";
  auto config = [&](const json& dataset) {
    return patch_model_config(dir, dataset, {{"steps", 3}, {"batch_size", 4}, {"log_every", 3}});
  };
  const auto ta = run_mmt("train --config " + config({{"format", "folder"}, {"path", kData + "folder"}}) + " --out " + dir + "a");
  ASSERT_EQ(ta.status, 0) << ta.err;
  EXPECT_EQ(ta.err.find("not be zero-shot"), std::string::npos) << ta.err;  // a folder has no held-out split
  const auto zs = run_mmt("eval --run " + dir + "a --protocol test --karpathy " + karpathy + " --images " + images);
  ASSERT_EQ(zs.status, 0) << zs.err;
  const json a = json::parse(slurp(dir + "a/eval-test.json"));
  EXPECT_EQ(a["label"], "zero-shot");
  EXPECT_EQ(a["splits"]["test"]["num_images"], 2);
  EXPECT_EQ(a["splits"]["test"]["num_captions"], 10);
  for (const char* k : {"r1", "r5", "r10", "median_rank", "mean_rank"}) EXPECT_TRUE(a["splits"]["test"]["image_retrieval"].contains(k)) << k;
  // The score matrix: a (10, 2) float32 .npy.
  const std::string npy = slurp(dir + "a/eval-test-scores.npy");
  EXPECT_NE(npy.find("'shape': (10, 2)"), std::string::npos);
  EXPECT_NE(zs.out.find("| test |"), std::string::npos) << zs.out;
  // Captions missed at R@1, each with the other image (of two) by file name. A 3-step model misses
  // some of the 10: it cannot tell the two images' captions apart.
  const json& missed = a["splits"]["test"]["missed_at_r1"];
  ASSERT_GE(missed.size(), 1u) << a.dump();
  EXPECT_LE(missed.size(), 5u);
  for (const auto& m : missed) {
    EXPECT_EQ(m["found_image"].get<int64_t>(), 1 - m["image"].get<int64_t>()) << m.dump();
    EXPECT_NE(m["found"].get<std::string>().find(".jpg"), std::string::npos) << m.dump();
    EXPECT_GE(m["rank"].get<double>(), 1.0) << m.dump();
  }
  EXPECT_NE(zs.out.find(" of the 10 captions missed at R@1; " + std::to_string(missed.size()) + " of them"), std::string::npos) << zs.out;
  // mmt retrieve on the same split: images by file name, each shown by its first caption; a
  // query that is one of the split's captions gets its image's rank; a bad split is named.
  const json caps = json::parse(slurp(karpathy))["images"];
  std::string first_caption, first_file;
  for (const auto& im : caps)
    if (im["split"] == "test") {
      first_caption = im["sentences"][0]["raw"], first_file = im["filename"];
      break;
    }
  const auto rt = run_mmt("retrieve --run " + dir + "a --protocol test --karpathy " + karpathy + " --images " + images +
                          " \"" + first_caption + "\" --json " + dir + "retrieve.json");
  ASSERT_EQ(rt.status, 0) << rt.err;
  const json rq = json::parse(slurp(dir + "retrieve.json"))["queries"][0];
  ASSERT_EQ(rq["top"].size(), 2u) << rq.dump();  // --top 5 of 2 images
  for (const auto& hit : rq["top"]) EXPECT_NE(hit["image"].get<std::string>().find(".jpg"), std::string::npos) << hit.dump();
  // The fixture's captions differ only in digits the vocabulary lacks: as the model reads them,
  // the caption belongs to both test images, and both are listed.
  ASSERT_EQ(rq["in_set"]["images"].size(), 2u) << rq.dump();
  EXPECT_EQ(rq["in_set"]["images"][0]["image"], first_file);
  EXPECT_EQ(rq["unknown"], json::array({"2,", "0."})) << rq.dump();
  for (const auto& hit : rq["top"])
    if (hit["image"] == first_file) EXPECT_EQ(hit["shows"], first_caption);
  EXPECT_FALSE(rq["in_set"].contains("true_of"));  // real images: no truth to judge by
  // By image (its file name): the split's 10 captions read alike to this vocabulary, so they are
  // one distinct caption, the image's own.
  ASSERT_EQ(run_mmt("retrieve --run " + dir + "a --protocol test --karpathy " + karpathy + " --images " + images +
                    " --image " + first_file + " --json " + dir + "by_image.json").status, 0);
  const json iq = json::parse(slurp(dir + "by_image.json"))["image_queries"][0];
  ASSERT_EQ(iq["top"].size(), 1u) << iq.dump();
  EXPECT_TRUE(iq["top"][0]["own"].get<bool>());
  EXPECT_EQ(iq["own"].size(), 1u);
  EXPECT_FALSE(iq.contains("true_captions"));
  const auto bad_image = run_mmt("retrieve --run " + dir + "a --protocol test --karpathy " + karpathy + " --images " +
                                 images + " --image 0");
  EXPECT_EQ(bad_image.status, 2);
  EXPECT_NE(bad_image.err.find("a file name such as " + first_file), std::string::npos) << bad_image.err;
  const auto no_split = run_mmt("retrieve --run " + dir + "a --protocol test --karpathy " + karpathy + " --images " + images +
                                " --split fold9 \"a cat\"");
  EXPECT_EQ(no_split.status, 2);
  EXPECT_NE(no_split.err.find("has no split 'fold9' (its splits: test)"), std::string::npos) << no_split.err;
  EXPECT_EQ(run_mmt("retrieve --run " + dir + "a --protocol test \"a cat\"").status, 2);  // no --karpathy
  const auto no_protocol = run_mmt("retrieve --run " + dir + "a --karpathy " + karpathy + " \"a cat\"");
  EXPECT_EQ(no_protocol.status, 2);
  EXPECT_NE(no_protocol.err.find("give --protocol too"), std::string::npos) << no_protocol.err;
  // mmt embed on the same split: the split's captions and its images by file name; this model
  // attends across modalities, so the vectors are eval.mode=dual's and it says so.
  const auto em = run_mmt("embed --run " + dir + "a --protocol test --karpathy " + karpathy + " --images " + images +
                          " --out " + dir + "emb");
  ASSERT_EQ(em.status, 0) << em.err;
  EXPECT_NE(em.err.find("not its exact ones"), std::string::npos) << em.err;
  const json emb = json::parse(slurp(dir + "emb.json"));
  EXPECT_FALSE(emb["the_models_retrieval_scores"].get<bool>());
  EXPECT_EQ(emb["images"].size(), 2u);
  EXPECT_EQ(emb["captions"][0], first_caption);
  const int64_t dim = emb["dim"];
  EXPECT_EQ(mmt::load_npy(dir + "emb-images.npy").shape, (std::vector<int64_t>{2, dim}));
  EXPECT_EQ(mmt::load_npy(dir + "emb-text.npy").shape,
            (std::vector<int64_t>{static_cast<int64_t>(emb["captions"].size()), dim}));

  // Pretraining on the whole Karpathy file (test split included): training warns at once, and the
  // evaluation is not zero-shot and says why.
  const auto tb = run_mmt("train --config " + config({{"format", "karpathy"}, {"path", karpathy}, {"images", images}}) + " --out " + dir + "b");
  ASSERT_EQ(tb.status, 0) << tb.err;
  EXPECT_NE(tb.err.find("warning: trains on its test split (2 images) and val split (1 image); retrieval on these "
                        "images will not be zero-shot"),
            std::string::npos)
      << tb.err;
  ASSERT_EQ(run_mmt("eval --run " + dir + "b --protocol test --karpathy " + karpathy + " --images " + images).status, 0);
  const json b = json::parse(slurp(dir + "b/eval-test.json"));
  EXPECT_EQ(b["label"], "not zero-shot");
  EXPECT_NE(b["label_reason"].get<std::string>().find("2 of 2 test images are in the pretraining data"), std::string::npos)
      << b["label_reason"];
  // Pretraining on Visual Genome, whose image 1 is the test photo 1000344755.jpg under another
  // file name (its image_data.json says so): not zero-shot either.
  ASSERT_EQ(run_mmt("train --config " + config({{"format", "vg"}, {"path", kData + "vg/region_descriptions.json"},
                                                 {"images", kData + "vg/VG_100K"}}) + " --out " + dir + "vg").status, 0);
  ASSERT_EQ(run_mmt("eval --run " + dir + "vg --protocol test --karpathy " + karpathy + " --images " + images).status, 0);
  const json v = json::parse(slurp(dir + "vg/eval-test.json"));
  EXPECT_EQ(v["label"], "not zero-shot") << v.dump();
  EXPECT_NE(v["label_reason"].get<std::string>().find("1 of 2 test images are in the pretraining data: vg (1)"), std::string::npos)
      << v["label_reason"];
  const auto bad = run_mmt("eval --run " + dir + "a --protocol coco-5k --karpathy " + karpathy);
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.err.find("expects 5000 test images"), std::string::npos) << bad.err;
}

}  // namespace
