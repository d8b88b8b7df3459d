/* TensorBoard event files: CRC32C against its check value, the writer's records re-read by a small
 * reader that checks the TFRecord framing and both masked CRCs, and corruption caught. */
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "mmt/train/tensorboard.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {
namespace {

TEST(TensorBoard, Crc32cCheckValueAndMask) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);  // the CRC-32C check value (RFC 3720)
  EXPECT_EQ(crc32c("", 0), 0u);
  const uint32_t c = crc32c("abc", 3);
  EXPECT_EQ(masked_crc32c("abc", 3), ((c >> 15) | (c << 17)) + 0xa282ead8u);
}

TEST(TensorBoard, WrittenScalarsReadBackWithValidFraming) {
  const std::string dir = ::testing::TempDir() + "mmt_tb";
  std::filesystem::remove_all(dir);
  std::string path;
  {
    TensorBoardWriter w(dir);
    w.scalars({{"loss", 2.5}, {"itm_acc", 0.75}}, 10, "train/");
    w.scalar("lr", 20, 1e-3);
    path = w.path();
  }
  EXPECT_NE(path.find("events.out.tfevents."), std::string::npos);
  const auto events = read_tensorboard_events(path);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].file_version, "brain.Event:2");
  EXPECT_EQ(events[1].step, 10);
  ASSERT_EQ(events[1].scalars.size(), 2u);
  EXPECT_EQ(events[1].scalars[0].first, "train/itm_acc");
  EXPECT_FLOAT_EQ(events[1].scalars[0].second, 0.75f);
  EXPECT_EQ(events[1].scalars[1].first, "train/loss");
  EXPECT_FLOAT_EQ(events[1].scalars[1].second, 2.5f);
  EXPECT_EQ(events[2].step, 20);
  EXPECT_FLOAT_EQ(events[2].scalars[0].second, 1e-3f);
  EXPECT_GT(events[2].wall_time, 1.7e9);

  // Corruptions are named with their offset: a data byte, a length byte, a cut.
  std::string bytes = read_file(path);
  const size_t first = 8 + 4 + static_cast<size_t>(static_cast<uint8_t>(bytes[0])) + 4;  // second record
  std::string bad = bytes;
  bad[first + 14] ^= 0x01;
  write_file_atomic(path, bad);
  try {
    read_tensorboard_events(path);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("record at byte " + std::to_string(first) + ": data CRC mismatch"), std::string::npos)
        << e.what();
  }
  bad = bytes;
  bad[first] ^= 0x01;
  write_file_atomic(path, bad);
  EXPECT_THROW(read_tensorboard_events(path), Error);
  write_file_atomic(path, bytes.substr(0, bytes.size() - 3));
  EXPECT_THROW(read_tensorboard_events(path), Error);
}

}  // namespace
}  // namespace mmt
