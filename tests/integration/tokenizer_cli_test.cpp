/* `mmt tokenizer encode` and `mmt tokenizer train` through the real binary: ids per stdin line as
 * JSON arrays with [CLS] / [SEP], pieces, a SentencePiece model trained and used, clear errors. */
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli_util.h"

namespace {

using namespace mmt::cli_test;

Result mmt_with_stdin(const std::string& args, const std::string& input) { return run_mmt(args, "", &input); }

TEST(TokenizerCli, EncodesEachLineAsJsonIds) {
  const std::string vocab = ::testing::TempDir() + "tok_vocab.txt";
  std::ofstream(vocab) << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nwant\n##want\n##ed\nwa\nun\nrunn\n##ing\n,\n";
  const auto r = mmt_with_stdin("tokenizer encode --vocab " + vocab, "UNwant\xC3\xA9" "d,running\n\nxyz\n");
  ASSERT_EQ(r.status, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  std::vector<nlohmann::json> rows;
  while (std::getline(lines, line)) rows.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0], nlohmann::json::parse("[2, 9, 6, 7, 12, 10, 11, 3]"));
  EXPECT_EQ(rows[1], nlohmann::json::parse("[2, 3]"));  // an empty line
  EXPECT_EQ(rows[2], nlohmann::json::parse("[2, 1, 3]"));
  const auto pieces = mmt_with_stdin("tokenizer encode --pieces --max-len 4 --vocab " + vocab, "unwanted running\n");
  EXPECT_EQ(nlohmann::json::parse(pieces.out), nlohmann::json::parse(R"(["[CLS]", "un", "##want", "[SEP]"])"));
}

TEST(TokenizerCli, TrainsASentencePieceModelAndEncodesWithIt) {
  const std::string dir = ::testing::TempDir();
  {
    std::ofstream captions(dir + "tok_captions.txt");
    for (const char* s : {"a man rides a horse", "a woman rides a bicycle", "two dogs play in the snow",
                          "a red car parked by the road", "a cat sleeps on a sofa", "children play football"})
      for (int k = 0; k < 20; ++k) captions << s << "\n";
  }
  const auto train = mmt_with_stdin("tokenizer train --input " + dir + "tok_captions.txt --out " + dir +
                                        "tok_spm --vocab-size 60 --type bpe",
                                    "");
  ASSERT_EQ(train.status, 0) << train.err;
  EXPECT_NE(train.err.find("sentencepiece"), std::string::npos) << train.err;
  const auto enc = mmt_with_stdin("tokenizer encode --model " + dir + "tok_spm.model", "A man rides\n");
  ASSERT_EQ(enc.status, 0) << enc.err;
  const auto ids = nlohmann::json::parse(enc.out);
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids.front(), 2);
  EXPECT_EQ(ids.back(), 3);
}

TEST(TokenizerCli, TrainsOnADatasetsCaptions) {
  const std::string dir = ::testing::TempDir();
  const auto train = mmt_with_stdin("tokenizer train --dataset format=coco,path=" + std::string(MMT_SOURCE_DIR) +
                                        "/tests/data/datasets/coco/annotations/captions_train2017.json --out " + dir +
                                        "tok_coco --vocab-size 40 --type bpe",
                                    "");
  ASSERT_EQ(train.status, 0) << train.err;
  EXPECT_NE(train.err.find("14 lines"), std::string::npos) << train.err;
  const auto enc = mmt_with_stdin("tokenizer encode --pieces --model " + dir + "tok_coco.model", "a photo of object 9\n");
  ASSERT_EQ(enc.status, 0) << enc.err;
  EXPECT_EQ(nlohmann::json::parse(enc.out).front(), "[CLS]");
}

TEST(TokenizerCli, MissingFilesAreNamed) {
  const auto r = mmt_with_stdin("tokenizer encode --vocab /nonexistent/vocab.txt", "x\n");
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("/nonexistent/vocab.txt"), std::string::npos) << r.err;
  const auto m = mmt_with_stdin("tokenizer encode --model /nonexistent/x.model", "x\n");
  EXPECT_EQ(m.status, 2);
  EXPECT_NE(m.err.find("/nonexistent/x.model"), std::string::npos) << m.err;
}

}  // namespace
