/* Real datasets: every reader yields the same record (an image reference, its captions, its
 * source and split), so mixtures, the loader and `mmt data check` never care about formats.
 *
 * Formats (DatasetSpec::format; docs/datasets.md has each schema and an example):
 *   coco        COCO captions JSON (captions_train2017.json) + an image folder
 *   karpathy    Karpathy split JSON (dataset_coco.json, dataset_flickr30k.json), `split` field
 *   tsv         Conceptual Captions / SBU: "caption<TAB>url" lines mapped to local files
 *   webdataset  img2dataset / webdataset .tar shards of KEY.jpg + KEY.txt (+ KEY.json)
 *   files       img2dataset's `files` layout: shard folders of KEY.jpg + KEY.txt (+ KEY.json)
 *   folder      any folder of images with sidecar .txt captions (one caption per line)
 *   narratives  Localized Narratives JSONL
 *   vg          Visual Genome region_descriptions.json: phrases with boxes
 *
 * Bad input loses nothing silently: a bad record (missing image, empty caption, invalid UTF-8,
 * a truncated JSON line, an unknown image id, ...) is skipped with a warning naming the file and
 * line / record, and counted by reason; past `max_bad_fraction` the read fails. A file that is
 * malformed as a whole fails at once, naming the file and byte offset. */
#pragma once

#include <array>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

namespace mmt {

/// Where an image's encoded bytes are: a whole file, or a byte range of one (a tar member).
struct ImageRef {
  std::string path;
  int64_t offset = -1;  // >= 0: bytes [offset, offset + size) of `path`
  int64_t size = 0;
  std::string member;   // the tar member's name, for messages
  std::string describe() const { return offset < 0 ? path : path + ":" + member; }
};

struct Record {
  std::string key;  // unique within its dataset (image id, file stem, ...)
  ImageRef image;
  std::vector<std::string> captions;
  /// Visual Genome: the box (x, y, w, h, in pixels) each caption describes; empty otherwise.
  std::vector<std::array<float, 4>> boxes;
  std::string source;  // the dataset's name
  std::string split;   // train / val / test / restval, or "" when the format has none
  /// The same photo under other datasets' names, for telling test images in pretraining data and a
  /// caption's own image among negatives: "coco:ID" (COCO's own images, Karpathy COCO, COCO
  /// narratives, Visual Genome's coco_id), "flickr:ID" (Karpathy Flickr30k / Flickr8k file names,
  /// Flickr30k narratives, Visual Genome's flickr_id, Flickr URLs: COCO's flickr_url, web data).
  std::vector<std::string> aliases;
};

struct DatasetSpec {
  std::string name;    // shown in logs and counts; defaults to the format
  std::string format;  // see above
  std::string path;    // the annotation file, shard, or folder
  std::string images;  // image folder (coco, karpathy, tsv, narratives, vg); "" = next to `path`
  std::vector<std::string> splits;  // keep only these splits (karpathy); empty = all
  std::string split;   // the split to give records of formats without one ("" = "train")
  std::string naming = "index";  // tsv: "index" (img2dataset keys: row 0 -> 000000000.jpg) or "basename" of the URL
  bool check_images = true;  // skip records whose image file does not exist
  double max_bad_fraction = 0.05;
};

/// Valid formats, for messages and the config.
const std::vector<std::string>& dataset_formats();

/// Skipped records, counted by reason, and the first warnings.
class BadRecords {
 public:
  explicit BadRecords(std::ostream* warn = nullptr, int64_t max_warnings = 20) : warn_(warn), max_warnings_(max_warnings) {}
  /// Skips one record: `where` names file and line / record, `reason` is the count's key.
  void skip(const std::string& where, const std::string& reason, const std::string& detail = "");
  int64_t total() const { return total_; }
  const std::map<std::string, int64_t>& by_reason() const { return by_reason_; }
  const std::vector<std::string>& messages() const { return messages_; }
  /// "3 skipped: 2 missing image file, 1 empty caption".
  std::string summary() const;

 private:
  std::ostream* warn_;
  int64_t max_warnings_, total_ = 0;
  std::map<std::string, int64_t> by_reason_;
  std::vector<std::string> messages_;
};

struct Dataset {
  DatasetSpec spec;
  std::vector<Record> records;
  BadRecords bad;
  int64_t captions() const;
};

/// Reads a dataset; throws Error past spec.max_bad_fraction or for a malformed file.
Dataset read_dataset(const DatasetSpec& spec, std::ostream* warn = nullptr);

/// Visual Genome's image_data.json (each image's COCO / Flickr id) beside its region descriptions.
std::string vg_image_data_path(const std::string& region_descriptions);

/// The encoded bytes of an image (a file, or a range of a shard).
std::string read_image_bytes(const ImageRef& ref);

}  // namespace mmt
