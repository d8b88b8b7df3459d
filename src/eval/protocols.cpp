/* Retrieval protocols from Karpathy split files (see protocols.h). */
#include "mmt/eval/protocols.h"

#include <filesystem>

#include "mmt/util/error.h"

namespace mmt {

std::string image_file_name(const Record& r) {
  return std::filesystem::path(r.image.offset < 0 ? r.image.path : r.image.member).filename().string();
}

const std::vector<std::string>& protocol_names() {
  static const std::vector<std::string> n = {"flickr30k-1k", "coco-5k", "coco-1k", "test", "val"};
  return n;
}

namespace {
constexpr int64_t kCaptions = 5;

// `per_image` captions of each image (0: all of them).
RetrievalSplit make_split(const std::string& name, const std::vector<Record>& images, size_t first, size_t count,
                          int64_t per_image = kCaptions) {
  RetrievalSplit s;
  s.name = name;
  for (size_t i = first; i < first + count; ++i) {
    const Record& r = images[i];
    s.images.push_back(r);
    const size_t n = per_image > 0 ? static_cast<size_t>(per_image) : r.captions.size();
    for (size_t c = 0; c < n; ++c) {
      s.captions.push_back(r.captions[c]);
      s.caption_image.push_back(static_cast<int64_t>(i - first));
    }
  }
  return s;
}
}  // namespace

std::vector<RetrievalSplit> load_protocol(const std::string& protocol, const std::string& karpathy_json,
                                          const std::string& images) {
  check_choice("retrieval protocol", protocol, protocol_names());
  DatasetSpec spec;
  const std::string split = protocol == "val" ? "val" : "test";
  const bool whole_split = protocol == "test" || protocol == "val";  // every image, every caption
  spec.format = "karpathy", spec.path = karpathy_json, spec.images = images, spec.splits = {split};
  spec.check_images = false;       // checked when the images are loaded, naming each
  spec.max_bad_fraction = 0.0;     // a protocol set must be whole
  const Dataset d = read_dataset(spec);
  for (const auto& r : d.records)
    if (!whole_split && static_cast<int64_t>(r.captions.size()) < kCaptions)
      throw Error(karpathy_json + ": test image " + r.key + " has " + std::to_string(r.captions.size()) +
                  " captions; the protocols use 5 per image");
  const size_t n = d.records.size();
  auto expect = [&](size_t want) {
    if (n != want)
      throw Error(karpathy_json + ": protocol " + protocol + " expects " + std::to_string(want) + " test images, the file has " +
                  std::to_string(n) + (n ? "" : " (is it a Karpathy split file with a split field?)"));
  };
  if (protocol == "flickr30k-1k") {
    expect(1000);
    return {make_split(protocol, d.records, 0, n)};
  }
  if (protocol == "coco-5k") {
    expect(5000);
    return {make_split(protocol, d.records, 0, n)};
  }
  if (protocol == "coco-1k") {
    expect(5000);
    std::vector<RetrievalSplit> folds;
    for (size_t f = 0; f < 5; ++f) folds.push_back(make_split("coco-1k-fold" + std::to_string(f + 1), d.records, f * 1000, 1000));
    return folds;
  }
  if (n == 0)
    throw Error(karpathy_json + ": no " + split + " images" +
                (split == "val" ? " (a Karpathy file's val split: weights are chosen on it, never on test images)" : ""));
  return {make_split(split, d.records, 0, n, /*per_image=*/0)};
}

}  // namespace mmt
