/* BERT's basic + WordPiece tokenizer (see tokenizer.h). Written from the published algorithm
 * (Devlin et al. 2018, google-research/bert tokenization.py semantics). */
#include <algorithm>

#include "mmt/text/tokenizer.h"
#include "mmt/text/unicode.h"
#include "mmt/util/error.h"

namespace mmt {

std::vector<int64_t> Tokenizer::ids(const std::string& text) const {
  std::vector<int64_t> out;
  for (const auto& p : tokenize(text)) out.push_back(vocab_.id(p));
  return out;
}

std::vector<int64_t> Tokenizer::encode(const std::string& text, int64_t max_len) const {
  if (max_len < 2) throw Error("tokenizer: max_len must be at least 2 ([CLS] and [SEP])");
  std::vector<int64_t> out = {vocab_.cls_id()};
  const auto body = ids(text);
  const size_t keep = std::min(body.size(), static_cast<size_t>(max_len - 2));
  out.insert(out.end(), body.begin(), body.begin() + static_cast<std::ptrdiff_t>(keep));
  out.push_back(vocab_.sep_id());
  return out;
}

BasicTokenizer::BasicTokenizer(BasicTokenizerOptions options, std::unordered_set<std::string> never_split)
    : options_(options), never_split_(std::move(never_split)) {}

std::vector<std::string> BasicTokenizer::tokenize(const std::string& text) const {
  using namespace unicode;
  // Clean, and put spaces around CJK ideographs.
  std::u32string clean;
  for (char32_t c : decode_utf8(text)) {
    if (c == 0 || c == 0xFFFD || is_control(c)) continue;
    if (is_whitespace(c)) {
      clean.push_back(' ');
    } else if (options_.split_cjk && is_cjk(c)) {
      clean.push_back(' '), clean.push_back(c), clean.push_back(' ');
    } else {
      clean.push_back(c);
    }
  }
  const bool strip = options_.strip_accents < 0 ? options_.lower_case : options_.strip_accents > 0;
  std::vector<std::string> out;
  size_t i = 0;
  while (i < clean.size()) {
    if (clean[i] == ' ') {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < clean.size() && clean[j] != ' ') ++j;
    std::u32string word = clean.substr(i, j - i);
    i = j;
    if (!never_split_.empty()) {
      std::string utf8 = encode_utf8(word);
      if (never_split_.count(utf8)) {
        out.push_back(std::move(utf8));
        continue;
      }
    }
    if (options_.lower_case) word = to_lower(word);
    if (strip) word = strip_accents(word);
    // Each punctuation character is its own token.
    std::u32string cur;
    for (char32_t c : word) {
      if (is_punctuation(c)) {
        if (!cur.empty()) out.push_back(encode_utf8(cur)), cur.clear();
        out.push_back(encode_utf8(std::u32string(1, c)));
      } else {
        cur.push_back(c);
      }
    }
    if (!cur.empty()) out.push_back(encode_utf8(cur));
  }
  return out;
}

namespace {
std::unordered_set<std::string> special_set(const Vocab& v) {
  std::unordered_set<std::string> s;
  for (const auto& t : Vocab::special_tokens())
    if (v.id(t) != v.unk_id() || t == "[UNK]") s.insert(t);
  return s;
}
}  // namespace

WordPieceTokenizer::WordPieceTokenizer(Vocab vocab, BasicTokenizerOptions options)
    : Tokenizer(std::move(vocab)), options_(options), basic_(options, special_set(vocab_)) {}

std::unique_ptr<WordPieceTokenizer> WordPieceTokenizer::load(const std::string& vocab_txt, BasicTokenizerOptions options) {
  return std::make_unique<WordPieceTokenizer>(Vocab::load(vocab_txt), options);
}

std::vector<std::string> WordPieceTokenizer::wordpiece(const std::string& word) const {
  const std::u32string chars = unicode::decode_utf8(word);
  const std::string unk = vocab_.token(vocab_.unk_id());
  if (chars.size() > static_cast<size_t>(kMaxWordChars)) return {unk};
  std::vector<std::string> pieces;
  size_t start = 0;
  while (start < chars.size()) {
    size_t end = chars.size();
    std::string found;
    for (; end > start; --end) {
      std::string piece = unicode::encode_utf8(chars.substr(start, end - start));
      if (start > 0) piece = "##" + piece;
      if (vocab_.contains(piece)) {
        found = std::move(piece);
        break;
      }
    }
    if (found.empty()) return {unk};  // no cover: the whole word is unknown
    pieces.push_back(std::move(found));
    start = end;
  }
  return pieces;
}

std::vector<std::string> WordPieceTokenizer::tokenize(const std::string& text) const {
  std::vector<std::string> out;
  for (const auto& word : basic_.tokenize(text)) {
    if (vocab_.contains(word) && Vocab::is_special_token(word)) {
      out.push_back(word);
      continue;
    }
    for (auto& p : wordpiece(word)) out.push_back(std::move(p));
  }
  return out;
}

std::string WordPieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) {
    if (vocab_.is_special(id)) continue;
    const std::string& t = vocab_.token(id);
    if (t.rfind("##", 0) == 0) {
      out += t.substr(2);
    } else {
      if (!out.empty()) out += ' ';
      out += t;
    }
  }
  return out;
}

std::string WordPieceTokenizer::describe() const {
  return "wordpiece (" + std::to_string(vocab_.size()) + " pieces, " + (options_.lower_case ? "lower-case" : "cased") + ")";
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, BasicTokenizerOptions options) {
  if (path.size() > 6 && path.compare(path.size() - 6, 6, ".model") == 0) return SentencePieceTokenizer::load(path);
  return WordPieceTokenizer::load(path, options);
}

}  // namespace mmt
