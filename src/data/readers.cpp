/* Dataset readers (see dataset.h). Torch-free. */
#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>
#include <unordered_map>

#include "mmt/data/dataset.h"
#include "mmt/text/unicode.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mmt {

const std::vector<std::string>& dataset_formats() {
  static const std::vector<std::string> f = {"coco", "karpathy", "tsv", "webdataset", "files", "folder", "narratives", "vg"};
  return f;
}

void BadRecords::skip(const std::string& where, const std::string& reason, const std::string& detail) {
  ++total_, ++by_reason_[reason];
  std::string msg = where + ": " + reason + (detail.empty() ? "" : " (" + detail + ")") + "; record skipped";
  if (static_cast<int64_t>(messages_.size()) < max_warnings_) {
    if (warn_) *warn_ << "warning: " << msg << "\n";
    messages_.push_back(std::move(msg));
  } else if (static_cast<int64_t>(messages_.size()) == max_warnings_ && warn_) {
    *warn_ << "warning: further skipped records are only counted\n";
    messages_.push_back("...");
  }
}

std::string BadRecords::summary() const {
  std::string s = std::to_string(total_) + " skipped";
  std::string sep = ": ";
  for (const auto& [reason, n] : by_reason_) s += sep + std::to_string(n) + " " + reason, sep = ", ";
  return s;
}

int64_t Dataset::captions() const {
  int64_t n = 0;
  for (const auto& r : records) n += static_cast<int64_t>(r.captions.size());
  return n;
}

namespace {

std::string ascii_lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

bool is_image_ext(const std::string& extension) {
  const std::string ext = ascii_lower(extension);
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".webp";
}

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return s.substr(a, b - a);
}

json parse_json_file(const std::string& path) {
  const std::string text = read_file(path);
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(path + ": malformed JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  }
}

// Checks one caption; returns false (and counts) when the record must be skipped for it.
bool caption_ok(const std::string& caption, const std::string& where, BadRecords& bad) {
  size_t at = 0;
  if (!unicode::valid_utf8(caption, &at)) {
    bad.skip(where, "invalid UTF-8", "byte " + std::to_string(at) + " of the caption");
    return false;
  }
  if (trim(caption).empty()) {
    bad.skip(where, "empty caption");
    return false;
  }
  return true;
}

// One photo's id in another dataset ("coco:391895", "flickr:1000092795"; Record::aliases), from
// an id written in decimal digits - leading zeros dropped, so every reader writes it alike; nothing
// when it is not one.
void add_alias(Record& r, const char* kind, const std::string& digits) {
  if (digits.empty() || digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](unsigned char c) { return std::isdigit(c); }))
    return;
  r.aliases.push_back(std::string(kind) + ":" + std::to_string(std::stoll(digits)));
}

// A Flickr photo's id from its URL (static.flickr.com/2723/4385058960_b0f291553e.jpg, as SBU and
// some of CC list them): what finds a Flickr30k test photo among web data.
void add_url_alias(Record& r, const std::string& url) {
  if (url.find("flickr.com/") == std::string::npos) return;
  const std::string base = url.substr(url.find_last_of('/') + 1);
  const size_t digits = base.find('_');
  if (digits != std::string::npos) add_alias(r, "flickr", base.substr(0, digits));
}

// The image folder: spec.images, else the annotation file's folder.
std::string image_root(const DatasetSpec& spec) {
  if (!spec.images.empty()) return spec.images;
  const fs::path p(spec.path);
  return fs::is_directory(p) ? p.string() : p.parent_path().string();
}

bool image_ok(const DatasetSpec& spec, const std::string& file, const std::string& where, BadRecords& bad) {
  if (!spec.check_images || fs::exists(file)) return true;
  bad.skip(where, "missing image file", file);
  return false;
}

std::string default_split(const DatasetSpec& spec) { return spec.split.empty() ? "train" : spec.split; }

// ---- coco -------------------------------------------------------------------------------
void read_coco(const DatasetSpec& spec, Dataset& d) {
  const json j = parse_json_file(spec.path);
  if (!j.is_object() || !j.contains("images") || !j.contains("annotations"))
    throw Error(spec.path + ": not a COCO captions file (needs \"images\" and \"annotations\")");
  const std::string root = image_root(spec);
  std::string split = spec.split;
  if (split.empty()) {
    const std::string name = fs::path(spec.path).filename().string();
    split = name.find("train") != std::string::npos ? "train" : name.find("val") != std::string::npos ? "val" : "train";
  }
  std::unordered_map<int64_t, size_t> index;
  std::vector<Record> records;
  for (size_t i = 0; i < j["images"].size(); ++i) {
    const json& im = j["images"][i];
    const std::string where = spec.path + ": images[" + std::to_string(i) + "]";
    if (!im.contains("id") || !im["id"].is_number_integer() || !im.contains("file_name") || !im["file_name"].is_string()) {
      d.bad.skip(where, "malformed image entry", "needs integer id and file_name");
      continue;
    }
    Record r;
    const int64_t id = im["id"].get<int64_t>();
    const std::string file = im["file_name"].get<std::string>();
    r.key = std::to_string(id);
    // The id is a COCO photo's only in COCO itself - its coco_url, or its file names
    // ("000000391895.jpg", "COCO_val2014_000000391895.jpg"); other datasets in this format (nocaps,
    // one's own data) number their own images. COCO's flickr_url names the Flickr photo.
    char padded[32];
    std::snprintf(padded, sizeof padded, "%012lld", static_cast<long long>(id));
    const std::string stem = fs::path(file).stem().string();
    if (im.value("coco_url", std::string()).find("cocodataset.org") != std::string::npos ||
        (stem.size() >= 12 && stem.compare(stem.size() - 12, 12, padded) == 0))
      add_alias(r, "coco", r.key);
    if (im.contains("flickr_url") && im["flickr_url"].is_string()) add_url_alias(r, im["flickr_url"].get<std::string>());
    r.image.path = (fs::path(root) / file).string();
    r.source = spec.name, r.split = split;
    index[id] = records.size();
    records.push_back(std::move(r));
  }
  for (size_t i = 0; i < j["annotations"].size(); ++i) {
    const json& a = j["annotations"][i];
    const std::string where = spec.path + ": annotations[" + std::to_string(i) + "]";
    if (!a.contains("image_id") || !a["image_id"].is_number_integer() || !a.contains("caption") || !a["caption"].is_string()) {
      d.bad.skip(where, "malformed annotation", "needs integer image_id and caption");
      continue;
    }
    auto it = index.find(a["image_id"].get<int64_t>());
    if (it == index.end()) {
      d.bad.skip(where, "unknown image id", std::to_string(a["image_id"].get<int64_t>()));
      continue;
    }
    const std::string caption = a["caption"].get<std::string>();
    if (caption_ok(caption, where, d.bad)) records[it->second].captions.push_back(trim(caption));
  }
  for (auto& r : records) {
    const std::string where = spec.path + ": image " + r.key;
    if (r.captions.empty()) {
      d.bad.skip(where, "no captions");
      continue;
    }
    if (image_ok(spec, r.image.path, where, d.bad)) d.records.push_back(std::move(r));
  }
}

// ---- karpathy ---------------------------------------------------------------------------
void read_karpathy(const DatasetSpec& spec, Dataset& d) {
  const json j = parse_json_file(spec.path);
  if (!j.is_object() || !j.contains("images") || !j["images"].is_array())
    throw Error(spec.path + ": not a Karpathy split file (needs an \"images\" array)");
  const std::string root = image_root(spec);
  // Flickr30k and Flickr8k name their files by the Flickr photo id ("1000092795.jpg",
  // "1000268201_693b08cb0e.jpg"): those ids are the photo's. Another dataset written in this
  // format (the file's "dataset" says which; without it, its file name) names its own files -
  // emoji's "2615.png" is no Flickr photo.
  const std::string named = j.contains("dataset") && j["dataset"].is_string() ? j["dataset"].get<std::string>()
                                                                              : fs::path(spec.path).filename().string();
  const bool flickr_names = ascii_lower(named).find("flickr") != std::string::npos;
  for (size_t i = 0; i < j["images"].size(); ++i) {
    const json& im = j["images"][i];
    const std::string where = spec.path + ": images[" + std::to_string(i) + "]";
    if (!im.contains("filename") || !im.contains("sentences") || !im["sentences"].is_array() || !im.contains("split")) {
      d.bad.skip(where, "malformed image entry", "needs filename, split and sentences");
      continue;
    }
    Record r;
    r.split = im["split"].get<std::string>();
    if (!spec.splits.empty() && std::find(spec.splits.begin(), spec.splits.end(), r.split) == spec.splits.end()) continue;
    const std::string filename = im["filename"].get<std::string>();
    r.key = im.contains("cocoid") ? std::to_string(im["cocoid"].get<int64_t>())
            : im.contains("imgid") ? std::to_string(im["imgid"].get<int64_t>())
                                   : filename;
    if (im.contains("cocoid")) add_alias(r, "coco", r.key);
    else if (flickr_names) {
      const std::string stem = fs::path(filename).stem().string();
      add_alias(r, "flickr", stem.substr(0, stem.find('_')));
    }
    const std::string sub = im.contains("filepath") ? im["filepath"].get<std::string>() : "";
    r.image.path = (fs::path(root) / sub / filename).string();
    r.source = spec.name;
    bool ok = true;
    for (size_t s = 0; s < im["sentences"].size() && ok; ++s) {
      const json& sent = im["sentences"][s];
      if (!sent.contains("raw") || !sent["raw"].is_string()) {
        d.bad.skip(where + ".sentences[" + std::to_string(s) + "]", "malformed sentence", "needs raw");
        ok = false;
        break;
      }
      const std::string raw = sent["raw"].get<std::string>();
      ok = caption_ok(raw, where + ".sentences[" + std::to_string(s) + "]", d.bad);
      if (ok) r.captions.push_back(trim(raw));
    }
    // An evaluation image keeps all its captions or none: a partial one would change the protocol.
    if (!ok) continue;
    if (r.captions.empty()) {
      d.bad.skip(where, "no captions");
      continue;
    }
    if (image_ok(spec, r.image.path, where, d.bad)) d.records.push_back(std::move(r));
  }
}

// ---- line readers (tsv, narratives) ---------------------------------------------------------
void for_each_line(const std::string& path, const std::function<void(const std::string&, int64_t)>& fn) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    fn(line, n);
  }
}

void read_tsv(const DatasetSpec& spec, Dataset& d) {
  const std::string root = image_root(spec);
  if (spec.naming != "index" && spec.naming != "basename")
    throw Error("dataset " + spec.name + ": naming must be index or basename, not '" + spec.naming + "'");
  int64_t row = 0;  // data rows, as img2dataset numbers them (a header is not a row)
  for_each_line(spec.path, [&](const std::string& line, int64_t n) {
    const std::string where = spec.path + ":" + std::to_string(n);
    if (n == 1) {
      if (ascii_lower(line).rfind("caption\t", 0) == 0) return;  // a header line
    }
    if (line.empty()) return;
    const int64_t this_row = row++;
    const size_t tab = line.find('\t');
    if (tab == std::string::npos) {
      d.bad.skip(where, "malformed line", "expected caption<TAB>url");
      return;
    }
    const std::string caption = line.substr(0, tab), url = trim(line.substr(tab + 1));
    if (!caption_ok(caption, where, d.bad)) return;
    Record r;
    r.source = spec.name, r.split = default_split(spec);
    if (spec.naming == "index") {
      char key[32];
      std::snprintf(key, sizeof key, "%09lld", static_cast<long long>(this_row));
      r.key = key;
      // img2dataset's files layout puts 10,000 per shard folder; a flat folder works too.
      char shard[24];
      std::snprintf(shard, sizeof shard, "%05lld", static_cast<long long>(this_row / 10000));
      const fs::path nested = fs::path(root) / shard / (r.key + ".jpg"), flat = fs::path(root) / (r.key + ".jpg");
      r.image.path = fs::exists(nested) ? nested.string() : flat.string();
    } else {
      std::string base = url.substr(url.find_last_of('/') + 1);
      base = base.substr(0, base.find_first_of("?#"));
      r.key = base;
      r.image.path = (fs::path(root) / base).string();
    }
    add_url_alias(r, url);
    r.captions.push_back(trim(caption));
    if (image_ok(spec, r.image.path, where, d.bad)) d.records.push_back(std::move(r));
  });
}

void read_narratives(const DatasetSpec& spec, Dataset& d) {
  const std::string root = image_root(spec);
  std::unordered_map<std::string, size_t> index;
  std::vector<Record> records;
  std::vector<std::string> first_line;
  for_each_line(spec.path, [&](const std::string& line, int64_t n) {
    const std::string where = spec.path + ":" + std::to_string(n);
    if (trim(line).empty()) return;
    size_t at = 0;
    if (!unicode::valid_utf8(line, &at)) {
      d.bad.skip(where, "invalid UTF-8", "byte " + std::to_string(at) + " of the line");
      return;
    }
    json j;
    try {
      j = json::parse(line);
    } catch (const json::parse_error& e) {
      d.bad.skip(where, "malformed JSON line", "byte " + std::to_string(e.byte));
      return;
    }
    if (!j.is_object() || !j.contains("image_id") || !j.contains("caption") || !j["caption"].is_string()) {
      d.bad.skip(where, "malformed narrative", "needs image_id and caption");
      return;
    }
    const std::string caption = j["caption"].get<std::string>();
    if (!caption_ok(caption, where, d.bad)) return;
    const std::string id = j["image_id"].is_string() ? j["image_id"].get<std::string>() : std::to_string(j["image_id"].get<int64_t>());
    const std::string ds = j.value("dataset_id", "");
    auto it = index.find(ds + "/" + id);
    if (it == index.end()) {
      Record r;
      r.key = id, r.source = spec.name;
      r.split = spec.split.empty() ? (ds.find("val") != std::string::npos ? "val" : ds.find("test") != std::string::npos ? "test" : "train") : spec.split;
      // COCO images are named by their 12-digit id; Open Images, ADE20k and Flickr30k by the id.
      std::string file = id + ".jpg";
      if (ds.rfind("mscoco", 0) == 0) {
        if (id.size() < 12 && std::all_of(id.begin(), id.end(), ::isdigit)) file = std::string(12 - id.size(), '0') + id + ".jpg";
        add_alias(r, "coco", id);
      } else if (ds.rfind("flickr30k", 0) == 0) {
        add_alias(r, "flickr", id);
      }
      r.image.path = (fs::path(root) / file).string();
      it = index.emplace(ds + "/" + id, records.size()).first;
      records.push_back(std::move(r));
      first_line.push_back(where);
    }
    records[it->second].captions.push_back(trim(caption));
  });
  for (size_t i = 0; i < records.size(); ++i)
    if (image_ok(spec, records[i].image.path, first_line[i], d.bad)) d.records.push_back(std::move(records[i]));
}

// ---- vg ---------------------------------------------------------------------------------------
// Visual Genome's image_data.json, where it is: each image's COCO and Flickr ids (many of its
// images are COCO photos), as a record holding only those aliases, by VG image id.
std::map<int64_t, Record> vg_aliases(const std::string& region_path) {
  std::map<int64_t, Record> out;
  const std::string path = vg_image_data_path(region_path);
  if (!fs::exists(path)) return out;
  const json j = parse_json_file(path);
  if (!j.is_array()) throw Error(path + ": not a Visual Genome image_data file (needs a top-level array)");
  for (const json& im : j) {
    if (!im.is_object()) continue;
    const json id = im.contains("image_id") ? im["image_id"] : im.value("id", json());
    if (!id.is_number_integer()) continue;
    Record& r = out[id.get<int64_t>()];
    for (const char* kind : {"coco", "flickr"}) {
      const std::string k = std::string(kind) + "_id";
      if (im.contains(k) && im[k].is_number_integer()) add_alias(r, kind, std::to_string(im[k].get<int64_t>()));
    }
  }
  return out;
}

void read_vg(const DatasetSpec& spec, Dataset& d) {
  const json j = parse_json_file(spec.path);
  if (!j.is_array()) throw Error(spec.path + ": not a Visual Genome region_descriptions file (needs a top-level array)");
  const std::string root = image_root(spec);
  const auto aliases = vg_aliases(spec.path);
  for (size_t i = 0; i < j.size(); ++i) {
    const json& im = j[i];
    const std::string where = spec.path + ": [" + std::to_string(i) + "]";
    if (!im.is_object() || !im.contains("regions") || !im["regions"].is_array()) {
      d.bad.skip(where, "malformed image entry", "needs regions");
      continue;
    }
    Record r;
    r.source = spec.name, r.split = default_split(spec);
    int64_t image_id = im.value("id", int64_t{-1});
    for (size_t k = 0; k < im["regions"].size(); ++k) {
      const json& reg = im["regions"][k];
      const std::string rw = where + ".regions[" + std::to_string(k) + "]";
      if (!reg.contains("phrase") || !reg["phrase"].is_string() || !reg.contains("x") || !reg.contains("width")) {
        d.bad.skip(rw, "malformed region", "needs phrase, x, y, width, height");
        continue;
      }
      if (image_id < 0) image_id = reg.value("image_id", int64_t{-1});
      const std::string phrase = reg["phrase"].get<std::string>();
      if (!caption_ok(phrase, rw, d.bad)) continue;
      r.captions.push_back(trim(phrase));
      r.boxes.push_back({reg["x"].get<float>(), reg.value("y", 0.f), reg["width"].get<float>(), reg.value("height", 0.f)});
    }
    if (image_id < 0) {
      d.bad.skip(where, "malformed image entry", "no image id");
      continue;
    }
    r.key = std::to_string(image_id);
    if (const auto a = aliases.find(image_id); a != aliases.end()) r.aliases = a->second.aliases;
    r.image.path = (fs::path(root) / (r.key + ".jpg")).string();
    if (r.captions.empty()) {
      d.bad.skip(where, "no captions");
      continue;
    }
    if (image_ok(spec, r.image.path, where, d.bad)) d.records.push_back(std::move(r));
  }
}

// ---- folders: files (img2dataset), folder (sidecar .txt) ----------------------------------------
void read_folder(const DatasetSpec& spec, Dataset& d, bool img2dataset) {
  if (!fs::is_directory(spec.path)) throw Error(spec.path + ": not a folder");
  std::vector<fs::path> images;
  for (const auto& e : fs::recursive_directory_iterator(spec.path))
    if (e.is_regular_file() && is_image_ext(e.path().extension().string())) images.push_back(e.path());
  std::sort(images.begin(), images.end());
  for (const auto& img : images) {
    fs::path txt = img;
    txt.replace_extension(".txt");
    const std::string where = img.string();
    if (!fs::exists(txt)) {
      d.bad.skip(where, "no caption file", txt.filename().string());
      continue;
    }
    std::string url;  // img2dataset's sidecar: the source URL
    if (img2dataset) {
      fs::path meta = img;
      meta.replace_extension(".json");
      if (fs::exists(meta)) {
        try {
          const json m = json::parse(read_file(meta.string()));
          if (m.contains("status") && m["status"] != "success") {
            d.bad.skip(where, "download failed", m["status"].dump());
            continue;
          }
          if (m.contains("url") && m["url"].is_string()) url = m["url"].get<std::string>();
        } catch (const json::parse_error& e) {
          d.bad.skip(meta.string(), "malformed JSON sidecar", "byte " + std::to_string(e.byte));
          continue;
        }
      }
    }
    Record r;
    r.key = img.stem().string(), r.image.path = img.string();
    r.source = spec.name, r.split = default_split(spec);
    add_url_alias(r, url);
    const std::string text = read_file(txt.string());
    bool ok = true;
    if (img2dataset) {  // one caption: the whole file
      ok = caption_ok(text, txt.string(), d.bad);
      if (ok) r.captions.push_back(trim(text));
    } else {  // one caption per non-empty line
      std::istringstream lines(text);
      std::string line;
      for (int64_t n = 1; ok && std::getline(lines, line); ++n)
        if (!trim(line).empty()) {
          ok = caption_ok(line, txt.string() + ":" + std::to_string(n), d.bad);
          if (ok) r.captions.push_back(trim(line));
        }
      if (ok && r.captions.empty()) ok = caption_ok("", txt.string(), d.bad);
    }
    if (ok) d.records.push_back(std::move(r));
  }
}

// ---- webdataset -------------------------------------------------------------------------------
struct Member {
  std::string name;
  int64_t offset, size;
  std::string text;  // contents of .txt / .json members
};

void read_shard(const std::string& shard, const DatasetSpec& spec, Dataset& d) {
  struct archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  archive_read_support_filter_all(a);
  if (archive_read_open_filename(a, shard.c_str(), 1 << 16) != ARCHIVE_OK) {
    const std::string msg = archive_error_string(a) ? archive_error_string(a) : "cannot open";
    archive_read_free(a);
    throw Error(shard + ": " + msg);
  }
  // Key = member path up to the first dot of its file name (webdataset's rule).
  std::map<std::string, std::vector<Member>> groups;
  std::vector<std::string> order;
  bool truncated = false;
  std::string truncation;
  for (;;) {
    struct archive_entry* e = nullptr;
    const int rc = archive_read_next_header(a, &e);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) {
      truncated = true;
      truncation = std::string(archive_error_string(a) ? archive_error_string(a) : "read error") + " at byte " +
                   std::to_string(archive_read_header_position(a));
      break;
    }
    if (archive_filter_code(a, 0) != ARCHIVE_FILTER_NONE) {
      archive_read_free(a);
      throw Error(shard + ": compressed shards cannot be read at random; decompress it (img2dataset writes plain .tar)");
    }
    if (archive_entry_filetype(e) != AE_IFREG) continue;
    Member m;
    m.name = archive_entry_pathname(e);
    m.offset = archive_filter_bytes(a, -1);  // data starts here in a plain tar
    m.size = archive_entry_size(e);
    const fs::path p(m.name);
    const std::string file = p.filename().string();
    const size_t dot = file.find('.');
    if (dot == std::string::npos) continue;
    const std::string key = (p.parent_path() / file.substr(0, dot)).string(), ext = file.substr(dot);
    if (ext == ".txt" || ext == ".json") {
      m.text.resize(static_cast<size_t>(m.size));
      const la_ssize_t got = m.size > 0 ? archive_read_data(a, m.text.data(), m.text.size()) : 0;
      if (got != m.size) {
        truncated = true;
        truncation = "member " + m.name + " cut short";
        break;
      }
    }
    if (!groups.count(key)) order.push_back(key);
    groups[key].push_back(std::move(m));
  }
  archive_read_free(a);
  if (truncated) {
    // The sample being read when the shard ended is lost; say so, keep the rest.
    d.bad.skip(shard, "truncated shard", truncation);
    if (!order.empty()) groups.erase(order.back()), order.pop_back();
  }
  for (const auto& key : order) {
    const auto& members = groups[key];
    const std::string where = shard + ": " + key;
    const Member *image = nullptr, *txt = nullptr, *meta = nullptr;
    for (const auto& m : members) {
      const std::string ext = m.name.substr(m.name.find('.', m.name.find_last_of('/') + 1));
      if (is_image_ext(ext) && !image) image = &m;
      if (ext == ".txt") txt = &m;
      if (ext == ".json") meta = &m;
    }
    std::string url;
    if (meta) {
      try {
        const json m = json::parse(meta->text);
        if (m.contains("status") && m["status"] != "success") {
          d.bad.skip(where, "download failed", m["status"].dump());
          continue;
        }
        if (m.contains("url") && m["url"].is_string()) url = m["url"].get<std::string>();
      } catch (const json::parse_error& e) {
        d.bad.skip(where + ".json", "malformed JSON sidecar", "byte " + std::to_string(e.byte));
        continue;
      }
    }
    if (!image) {
      d.bad.skip(where, "no image member");
      continue;
    }
    if (!txt) {
      d.bad.skip(where, "no caption member", key + ".txt");
      continue;
    }
    if (!caption_ok(txt->text, where + ".txt", d.bad)) continue;
    Record r;
    r.key = fs::path(key).filename().string();
    r.image = {shard, image->offset, image->size, image->name};
    r.captions.push_back(trim(txt->text));
    r.source = spec.name, r.split = default_split(spec);
    add_url_alias(r, url);
    d.records.push_back(std::move(r));
  }
}

void read_webdataset(const DatasetSpec& spec, Dataset& d) {
  std::vector<std::string> shards;
  if (fs::is_directory(spec.path)) {
    for (const auto& e : fs::directory_iterator(spec.path))
      if (e.is_regular_file() && e.path().extension() == ".tar") shards.push_back(e.path().string());
    std::sort(shards.begin(), shards.end());
    if (shards.empty()) throw Error(spec.path + ": no .tar shards in this folder");
  } else {
    if (!fs::exists(spec.path)) throw Error(spec.path + ": no such shard or folder");
    shards.push_back(spec.path);
  }
  for (const auto& s : shards) read_shard(s, spec, d);
}

}  // namespace

std::string vg_image_data_path(const std::string& region_descriptions) {
  return (fs::path(region_descriptions).parent_path() / "image_data.json").string();
}

Dataset read_dataset(const DatasetSpec& in, std::ostream* warn) {
  Dataset d{in, {}, BadRecords(warn)};
  DatasetSpec& spec = d.spec;
  check_choice("dataset format", spec.format, dataset_formats());
  if (spec.name.empty()) spec.name = spec.format;
  if (spec.format != "files" && spec.format != "folder" && spec.format != "webdataset" && !fs::exists(spec.path))
    throw Error("dataset " + spec.name + ": " + spec.path + ": no such file");
  if (spec.format == "coco") read_coco(spec, d);
  else if (spec.format == "karpathy") read_karpathy(spec, d);
  else if (spec.format == "tsv") read_tsv(spec, d);
  else if (spec.format == "narratives") read_narratives(spec, d);
  else if (spec.format == "vg") read_vg(spec, d);
  else if (spec.format == "files") read_folder(spec, d, true);
  else if (spec.format == "folder") read_folder(spec, d, false);
  else read_webdataset(spec, d);
  const int64_t seen = static_cast<int64_t>(d.records.size()) + d.bad.total();
  if (seen > 0 && d.bad.total() > spec.max_bad_fraction * static_cast<double>(seen))
    throw Error("dataset " + spec.name + " (" + spec.path + "): " + d.bad.summary() + " of " + std::to_string(seen) +
                " records, over data.max_bad_fraction = " + [&] {
                  char b[32];
                  std::snprintf(b, sizeof b, "%g", spec.max_bad_fraction);
                  return std::string(b);
                }() + " (raise it to train on what is readable)" +
                (d.bad.messages().empty() ? "" : "; first: " + d.bad.messages().front()));
  return d;
}

std::string read_image_bytes(const ImageRef& ref) {
  std::ifstream in(ref.path, std::ios::binary);
  if (!in) throw Error(ref.describe() + ": cannot open");
  if (ref.offset < 0) {
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  std::string bytes(static_cast<size_t>(ref.size), '\0');
  in.seekg(ref.offset);
  in.read(bytes.data(), ref.size);
  if (in.gcount() != ref.size) throw Error(ref.describe() + ": shard ends before the member's bytes");
  return bytes;
}

}  // namespace mmt
