/* A word-level vocabulary in BERT's vocab.txt format (one token per line, line = id) with
 * BERT's basic pre-tokenisation (lower-case, split on whitespace and punctuation). It serves
 * the synthetic world, whose grammar has a closed lexicon; WordPiece sub-words for open
 * vocabularies build on the same file format. */
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace mmt {

class Vocab {
 public:
  /// Special tokens, always the first ids in this order.
  static const std::vector<std::string>& special_tokens();  // [PAD] [UNK] [CLS] [SEP] [MASK]

  /// The special tokens followed by `words` (duplicates dropped).
  static Vocab from_words(const std::vector<std::string>& words);
  /// Tokens in id order; `sentencepiece` marks word starts with U+2581 instead of `##` continuations.
  static Vocab from_tokens(std::vector<std::string> tokens, bool sentencepiece = false);
  /// Reads a vocab.txt; errors name the file and line.
  static Vocab load(const std::string& path);
  void save(const std::string& path) const;

  int64_t size() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t id(const std::string& token) const;  // unk_id() when absent
  bool contains(const std::string& token) const { return ids_.count(token) > 0; }
  static bool is_special_token(const std::string& token);
  const std::string& token(int64_t id) const { return tokens_.at(static_cast<size_t>(id)); }
  int64_t pad_id() const { return pad_; }
  int64_t unk_id() const { return unk_; }
  int64_t cls_id() const { return cls_; }
  int64_t sep_id() const { return sep_; }
  int64_t mask_id() const { return mask_; }
  bool is_special(int64_t id) const { return id == pad_ || id == unk_ || id == cls_ || id == sep_ || id == mask_; }
  /// A continuation piece, part of the word before it: WordPiece `##ing`, or a SentencePiece
  /// piece without the word-start mark U+2581.
  bool is_continuation(int64_t id) const;

  /// Lower-cases and splits on whitespace and ASCII punctuation (each punctuation mark is a token).
  static std::vector<std::string> basic_tokenize(const std::string& text);
  /// [CLS] tokens [SEP], truncated to max_len ids (max_len >= 2).
  std::vector<int64_t> encode(const std::string& text, int64_t max_len) const;

 private:
  void index();
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int64_t> ids_;
  int64_t pad_ = 0, unk_ = 1, cls_ = 2, sep_ = 3, mask_ = 4;
  bool sentencepiece_ = false;
};

}  // namespace mmt
