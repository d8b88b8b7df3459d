/* TensorBoard event files, written without TensorFlow: the TFRecord framing (u64 length, masked
 * CRC32C of the length, the record, masked CRC32C of the record) around hand-encoded Event
 * protocol buffers (wall_time, step, file_version or a Summary of simple_value scalars), so
 * `tensorboard --logdir DIR/tensorboard` shows a run's curves. Torch-free. */
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace mmt {

/// CRC32C (Castagnoli), and TensorFlow's masking of it: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

class TensorBoardWriter {
 public:
  /// Creates DIR/events.out.tfevents.<seconds>.<host>.<pid> and writes the file_version event.
  explicit TensorBoardWriter(const std::string& dir);
  void scalar(const std::string& tag, int64_t step, double value);
  void scalars(const std::map<std::string, double>& values, int64_t step, const std::string& prefix = "");
  void flush();
  const std::string& path() const { return path_; }

 private:
  void record(const std::string& event);
  std::string path_;
  std::ofstream out_;
};

/// A decoded event, for tests and tools: what the writer puts in.
struct TensorBoardEvent {
  double wall_time = 0;
  int64_t step = 0;
  std::string file_version;
  std::vector<std::pair<std::string, float>> scalars;
};

/// Reads an event file, checking the framing and both CRCs of every record; throws Error naming
/// the file and byte offset of the first bad record.
std::vector<TensorBoardEvent> read_tensorboard_events(const std::string& path);

}  // namespace mmt
