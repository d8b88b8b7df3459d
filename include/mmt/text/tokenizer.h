/* Tokenizers: text -> vocabulary ids. Two families, one interface:
 *  - WordPiece (BERT): basic pre-tokenisation (text cleanup, optional lower-casing and accent
 *    stripping, punctuation and CJK splitting) then greedy longest-match-first sub-words with
 *    `##` continuations; words over 100 characters become [UNK]. Reads BERT's vocab.txt, so a
 *    real bert-base-uncased vocabulary gives the ids the checkpoint expects.
 *  - SentencePiece (libsentencepiece): a trained .model file; `train_sentencepiece` trains one
 *    on captions with [PAD] [UNK] [CLS] [SEP] [MASK] as ids 0-4.
 * `encode` adds [CLS] ... [SEP] and truncates, as the models read them. */
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "mmt/text/vocab.h"

namespace mmt {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  const Vocab& vocab() const { return vocab_; }
  /// The pieces of `text`, no special tokens added.
  virtual std::vector<std::string> tokenize(const std::string& text) const = 0;
  /// Their ids.
  virtual std::vector<int64_t> ids(const std::string& text) const;
  /// [CLS] ids [SEP], truncated to max_len ids (max_len >= 2; the [SEP] is kept).
  std::vector<int64_t> encode(const std::string& text, int64_t max_len) const;
  /// Text of `ids` (special tokens dropped): WordPiece joins `##` pieces to their word and words
  /// with spaces; SentencePiece undoes its own segmentation exactly.
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  /// Its kind and source, for logs: "wordpiece vocab.txt (30522 pieces, lower-case)".
  virtual std::string describe() const = 0;

 protected:
  explicit Tokenizer(Vocab vocab) : vocab_(std::move(vocab)) {}
  Vocab vocab_;
};

/// BERT's BasicTokenizer.
struct BasicTokenizerOptions {
  bool lower_case = true;
  int strip_accents = -1;  // -1: as lower_case (BERT's default); 0: keep; 1: strip
  bool split_cjk = true;   // a space around every CJK ideograph
};

class BasicTokenizer {
 public:
  explicit BasicTokenizer(BasicTokenizerOptions options = {}, std::unordered_set<std::string> never_split = {});
  /// Cleans (drops NUL, U+FFFD and control characters, whitespace -> space), splits CJK, splits
  /// on whitespace, lower-cases / strips accents, splits off punctuation. Tokens in never_split
  /// are kept whole and untouched.
  std::vector<std::string> tokenize(const std::string& text) const;

 private:
  BasicTokenizerOptions options_;
  std::unordered_set<std::string> never_split_;
};

class WordPieceTokenizer : public Tokenizer {
 public:
  static constexpr int kMaxWordChars = 100;
  /// The vocabulary's special tokens are never split (as Hugging Face's BertTokenizer).
  WordPieceTokenizer(Vocab vocab, BasicTokenizerOptions options = {});
  static std::unique_ptr<WordPieceTokenizer> load(const std::string& vocab_txt, BasicTokenizerOptions options = {});
  std::vector<std::string> tokenize(const std::string& text) const override;
  /// Greedy longest-match-first pieces of one pre-tokenised word; {[UNK]} when it has no
  /// cover or more than kMaxWordChars characters.
  std::vector<std::string> wordpiece(const std::string& word) const;
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::string describe() const override;

 private:
  BasicTokenizerOptions options_;
  BasicTokenizer basic_;
};

class SentencePieceTokenizer : public Tokenizer {
 public:
  ~SentencePieceTokenizer() override;
  /// Loads a .model; its vocabulary must hold [PAD] [UNK] [CLS] [SEP] [MASK] (as trained by
  /// train_sentencepiece). Errors name the file.
  static std::unique_ptr<SentencePieceTokenizer> load(const std::string& model_path);
  std::vector<std::string> tokenize(const std::string& text) const override;
  std::vector<int64_t> ids(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::string describe() const override;

 private:
  struct Impl;
  SentencePieceTokenizer(Vocab vocab, std::unique_ptr<Impl> impl, std::string path);
  std::unique_ptr<Impl> impl_;
  std::string path_;
};

struct SentencePieceTrainOptions {
  int64_t vocab_size = 8000;
  std::string model_type = "unigram";  // unigram, bpe, char, word
  double character_coverage = 0.9995;
  bool lower_case = true;              // NFKC + lower-case (nmt_nfkc_cf), as uncased BERT
  uint64_t seed = 0;
  int64_t threads = 2;
};

/// Trains a SentencePiece model on `sentences` and writes `prefix`.model and `prefix`.vocab.
/// Ids 0-4 are [PAD] [UNK] [CLS] [SEP] [MASK].
void train_sentencepiece(const std::vector<std::string>& sentences, const std::string& prefix,
                         const SentencePieceTrainOptions& options);

/// A .model file -> SentencePiece; anything else is read as a WordPiece vocab.txt.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path, BasicTokenizerOptions options = {});

}  // namespace mmt
