/* Word vocabulary (see vocab.h). */
#include "mmt/text/vocab.h"

#include <algorithm>
#include <cctype>
#include <fstream>

#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {

const std::vector<std::string>& Vocab::special_tokens() {
  static const std::vector<std::string> s = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  return s;
}

Vocab Vocab::from_words(const std::vector<std::string>& words) {
  Vocab v;
  v.tokens_ = special_tokens();
  for (const auto& w : words) {
    bool seen = false;
    for (const auto& t : v.tokens_) seen = seen || t == w;
    if (!seen) v.tokens_.push_back(w);
  }
  v.index();
  return v;
}

Vocab Vocab::from_tokens(std::vector<std::string> tokens, bool sentencepiece) {
  Vocab v;
  v.tokens_ = std::move(tokens);
  v.sentencepiece_ = sentencepiece;
  v.index();
  for (const auto& s : special_tokens())
    if (!v.ids_.count(s)) throw Error("vocabulary lacks the special token " + s);
  return v;
}

bool Vocab::is_special_token(const std::string& token) {
  const auto& s = special_tokens();
  return std::find(s.begin(), s.end(), token) != s.end();
}

bool Vocab::is_continuation(int64_t id) const {
  const std::string& t = token(id);
  if (!sentencepiece_) return t.rfind("##", 0) == 0;
  return !is_special(id) && t.rfind("\xe2\x96\x81", 0) != 0;  // U+2581 in UTF-8
}

Vocab Vocab::load(const std::string& path) {
  const std::string text = read_file(path);
  Vocab v;
  size_t start = 0, line = 1;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string tok = text.substr(start, end - start);
    if (!tok.empty() && tok.back() == '\r') tok.pop_back();
    if (tok.empty()) throw Error(path + ":" + std::to_string(line) + ": empty token");
    v.tokens_.push_back(tok);
    start = end + 1, ++line;
  }
  v.index();
  for (const auto& s : special_tokens())
    if (!v.ids_.count(s)) throw Error(path + ": vocabulary lacks the special token " + s);
  return v;
}

void Vocab::save(const std::string& path) const {
  std::string out;
  for (const auto& t : tokens_) out += t + "\n";
  write_file_atomic(path, out);
}

void Vocab::index() {
  ids_.clear();
  for (size_t i = 0; i < tokens_.size(); ++i) ids_.emplace(tokens_[i], static_cast<int64_t>(i));
  auto find = [&](const char* s) {
    auto it = ids_.find(s);
    return it == ids_.end() ? int64_t{-1} : it->second;
  };
  pad_ = find("[PAD]"), unk_ = find("[UNK]"), cls_ = find("[CLS]"), sep_ = find("[SEP]"), mask_ = find("[MASK]");
}

int64_t Vocab::id(const std::string& token) const {
  auto it = ids_.find(token);
  return it == ids_.end() ? unk_ : it->second;
}

std::vector<std::string> Vocab::basic_tokenize(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  auto flush = [&] {
    if (!cur.empty()) out.push_back(cur), cur.clear();
  };
  for (unsigned char c : text) {
    if (std::isspace(c)) {
      flush();
    } else if (std::ispunct(c)) {
      flush();
      out.emplace_back(1, static_cast<char>(c));
    } else {
      cur += static_cast<char>(std::tolower(c));
    }
  }
  flush();
  return out;
}

std::vector<int64_t> Vocab::encode(const std::string& text, int64_t max_len) const {
  std::vector<int64_t> ids = {cls_};
  for (const auto& w : basic_tokenize(text)) {
    if (static_cast<int64_t>(ids.size()) + 1 >= max_len) break;
    ids.push_back(id(w));
  }
  ids.push_back(sep_);
  return ids;
}

}  // namespace mmt
