/* mmt data check / stats (see data_tools.h). */
#include "mmt/data/data_tools.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "mmt/io/image.h"
#include "mmt/text/tokenizer.h"
#include "mmt/util/error.h"

namespace mmt {

using nlohmann::json;

DatasetSpec parse_dataset_arg(const std::string& arg) {
  DatasetSpec s;
  std::stringstream ss(arg);
  for (std::string part; std::getline(ss, part, ',');) {
    const auto eq = part.find('=');
    if (eq == std::string::npos) throw Error("--dataset: expected key=value, got '" + part + "' in '" + arg + "'");
    const std::string k = part.substr(0, eq), v = part.substr(eq + 1);
    if (k == "format") s.format = v;
    else if (k == "path") s.path = v;
    else if (k == "images") s.images = v;
    else if (k == "name") s.name = v;
    else if (k == "split") s.split = v;
    else if (k == "naming") s.naming = v;
    else if (k == "splits") {
      std::stringstream sp(v);
      for (std::string x; std::getline(sp, x, '+');) s.splits.push_back(x);
    } else {
      throw Error("--dataset: unknown key '" + k + "'; valid: format, path, images, name, split, splits, naming");
    }
  }
  if (s.format.empty() || s.path.empty()) throw Error("--dataset: format= and path= are required, got '" + arg + "'");
  return s;
}

json check_dataset(DatasetSpec spec, bool decode, std::ostream* warn) {
  spec.max_bad_fraction = 1.0;  // count everything
  const Dataset d = read_dataset(spec, warn);
  std::map<std::string, std::pair<int64_t, int64_t>> splits;  // images, captions
  for (const auto& r : d.records) {
    auto& s = splits[r.split.empty() ? "(none)" : r.split];
    ++s.first, s.second += static_cast<int64_t>(r.captions.size());
  }
  json out = {{"name", d.spec.name}, {"format", d.spec.format}, {"path", d.spec.path},
              {"images", d.records.size()}, {"captions", d.captions()}, {"skipped", d.bad.total()},
              {"skipped_by_reason", d.bad.by_reason()}, {"splits", json::object()}};
  for (const auto& [name, c] : splits) out["splits"][name] = {{"images", c.first}, {"captions", c.second}};
  // Images known by a COCO / Flickr id (Record::aliases): what the zero-shot check can match
  // across datasets (Visual Genome: only with its image_data.json).
  std::map<std::string, int64_t> ids;
  for (const auto& r : d.records)
    for (const auto& a : r.aliases) ++ids[a.substr(0, a.find(':'))];
  out["images_with_ids"] = ids;
  if (decode) {
    int64_t bad = 0, shown = 0;
    for (const auto& r : d.records) {
      try {
        load_image_for_model(read_image_bytes(r.image), r.image.describe(), 224);  // every row read, none held
      } catch (const Error& e) {
        ++bad;
        if (warn && shown++ < 20) *warn << "warning: " << e.what() << "\n";
      }
    }
    out["undecodable_images"] = bad;
  }
  return out;
}

namespace {

// log C(n, k) for 0 <= k <= n.
double log_choose(int64_t n, int64_t k) {
  return std::lgamma(static_cast<double>(n + 1)) - std::lgamma(static_cast<double>(k + 1)) -
         std::lgamma(static_cast<double>(n - k + 1));
}

// Exact repeats among n captions whose texts occur `counts` times each, and what a queue of k of
// the other captions, drawn uniformly without replacement, holds of a caption's copies.
json repeat_stats(const std::unordered_map<std::string, int64_t>& counts, int64_t n, int64_t queue) {
  const int64_t k = std::max<int64_t>(0, std::min(queue, n - 1));
  int64_t repeated = 0;
  double copies = 0, any = 0;
  for (const auto& [text, c] : counts) {
    if (c < 2) continue;
    repeated += c;
    // Each of the c captions has c - 1 copies among the n - 1 others: k (c - 1) / (n - 1)
    // expected in the queue; none there with probability C(n - c, k) / C(n - 1, k).
    copies += static_cast<double>(c) * static_cast<double>(k) * static_cast<double>(c - 1) / static_cast<double>(n - 1);
    const double none = n - c < k ? 0.0 : std::exp(log_choose(n - c, k) - log_choose(n - 1, k));
    any += static_cast<double>(c) * (1.0 - none);
  }
  const double total = std::max<double>(1.0, static_cast<double>(n));
  return {{"distinct_captions", counts.size()},
          {"repeated_captions", static_cast<double>(repeated) / total},
          {"queue", k},
          {"queue_copies", copies / total},
          {"queue_any_copy", any / total}};
}

}  // namespace

json dataset_stats(const std::vector<Dataset>& datasets, int64_t queue) {
  BasicTokenizer basic;
  json out = {{"datasets", json::array()}, {"overlap", json::array()}};
  std::vector<std::unordered_map<std::string, int64_t>> vocab(datasets.size());
  for (size_t k = 0; k < datasets.size(); ++k) {
    std::vector<int64_t> lengths;
    int64_t tokens = 0;
    std::unordered_map<std::string, int64_t> texts;  // a caption's words, joined by a space
    for (const auto& r : datasets[k].records)
      for (const auto& c : r.captions) {
        const auto words = basic.tokenize(c);
        lengths.push_back(static_cast<int64_t>(words.size()));
        tokens += static_cast<int64_t>(words.size());
        std::string text;
        for (const auto& w : words) ++vocab[k][w], text += (text.empty() ? "" : " ") + w;
        ++texts[text];
      }
    std::sort(lengths.begin(), lengths.end());
    // Nearest rank: the smallest length with at least q of the captions at or below it (the
    // floor of q (n - 1) gave the shortest of two captions as their 95th percentile).
    auto pct = [&](double q) {
      if (lengths.empty()) return int64_t{0};
      const auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(lengths.size())));
      return lengths[std::max<size_t>(rank, 1) - 1];
    };
    std::vector<std::pair<int64_t, std::string>> top;
    for (const auto& [w, n] : vocab[k]) top.emplace_back(-n, w);
    std::sort(top.begin(), top.end());
    json common = json::array();
    for (size_t i = 0; i < top.size() && i < 10; ++i) common.push_back({top[i].second, -top[i].first});
    out["datasets"].push_back({{"name", datasets[k].spec.name},
                               {"images", datasets[k].records.size()},
                               {"captions", lengths.size()},
                               {"words", tokens},
                               {"vocabulary", vocab[k].size()},
                               {"mean_length", lengths.empty() ? 0.0 : double(tokens) / lengths.size()},
                               {"median_length", pct(0.5)},
                               {"p95_length", pct(0.95)},
                               {"max_length", lengths.empty() ? 0 : lengths.back()},
                               {"most_common", common},
                               {"repeats", repeat_stats(texts, static_cast<int64_t>(lengths.size()), queue)}});
  }
  for (size_t a = 0; a < datasets.size(); ++a)
    for (size_t b = a + 1; b < datasets.size(); ++b) {
      int64_t shared = 0, a_covered = 0, a_total = 0, b_covered = 0, b_total = 0;
      for (const auto& [w, n] : vocab[a]) {
        a_total += n;
        if (vocab[b].count(w)) ++shared, a_covered += n;
      }
      for (const auto& [w, n] : vocab[b]) {
        b_total += n;
        if (vocab[a].count(w)) b_covered += n;
      }
      const double uni = static_cast<double>(vocab[a].size() + vocab[b].size() - shared);
      out["overlap"].push_back({{"a", datasets[a].spec.name}, {"b", datasets[b].spec.name},
                                {"jaccard", uni > 0 ? shared / uni : 0.0},
                                {"a_tokens_in_b_vocabulary", a_total ? double(a_covered) / a_total : 0.0},
                                {"b_tokens_in_a_vocabulary", b_total ? double(b_covered) / b_total : 0.0}});
    }
  return out;
}

std::string format_check(const json& c) {
  std::ostringstream o;
  o << c["name"].get<std::string>() << " (" << c["format"].get<std::string>() << ", " << c["path"].get<std::string>()
    << "): " << c["images"] << " images, " << c["captions"] << " captions\n";
  for (const auto& [split, v] : c["splits"].items())
    o << "  split " << split << ": " << v["images"] << " images, " << v["captions"] << " captions\n";
  const json ids = c.value("images_with_ids", json::object());
  for (const auto& [kind, n] : ids.items()) o << "  images with a " << kind << " id: " << n << "\n";
  o << "  skipped: " << c["skipped"];
  for (const auto& [reason, n] : c["skipped_by_reason"].items()) o << ", " << n << " " << reason;
  o << "\n";
  if (c.contains("undecodable_images")) o << "  undecodable images: " << c["undecodable_images"] << "\n";
  return o.str();
}

std::string format_stats(const json& s) {
  std::ostringstream o;
  char buf[256];
  o << "| dataset | images | captions | vocabulary | mean words | median | p95 |\n|---|---|---|---|---|---|---|\n";
  for (const auto& d : s["datasets"]) {
    std::snprintf(buf, sizeof buf, "| %s | %lld | %lld | %lld | %.1f | %lld | %lld |\n", d["name"].get<std::string>().c_str(),
                  static_cast<long long>(d["images"].get<int64_t>()), static_cast<long long>(d["captions"].get<int64_t>()),
                  static_cast<long long>(d["vocabulary"].get<int64_t>()), d["mean_length"].get<double>(),
                  static_cast<long long>(d["median_length"].get<int64_t>()), static_cast<long long>(d["p95_length"].get<int64_t>()));
    o << buf;
  }
  o << "\n| dataset | distinct captions | captions repeated | queue | copies of a caption in it | captions with a copy in it |\n"
       "|---|---|---|---|---|---|\n";
  for (const auto& d : s["datasets"]) {
    const json& r = d["repeats"];
    std::snprintf(buf, sizeof buf, "| %s | %lld | %.1f%% | %lld | %.3f | %.1f%% |\n", d["name"].get<std::string>().c_str(),
                  static_cast<long long>(r["distinct_captions"].get<int64_t>()), 100 * r["repeated_captions"].get<double>(),
                  static_cast<long long>(r["queue"].get<int64_t>()), r["queue_copies"].get<double>(),
                  100 * r["queue_any_copy"].get<double>());
    o << buf;
  }
  if (!s["overlap"].empty()) {
    o << "\n| a | b | word-type Jaccard | a's words in b's vocabulary | b's words in a's vocabulary |\n|---|---|---|---|---|\n";
    for (const auto& p : s["overlap"]) {
      std::snprintf(buf, sizeof buf, "| %s | %s | %.3f | %.1f%% | %.1f%% |\n", p["a"].get<std::string>().c_str(),
                    p["b"].get<std::string>().c_str(), p["jaccard"].get<double>(),
                    100 * p["a_tokens_in_b_vocabulary"].get<double>(), 100 * p["b_tokens_in_a_vocabulary"].get<double>());
      o << buf;
    }
  }
  return o.str();
}

}  // namespace mmt
