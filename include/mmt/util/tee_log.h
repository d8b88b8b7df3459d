/* A log that goes to the console and into a file: a run's train.log keeps what its run printed
 * (progress, warnings about skipped data, why it stopped) after the terminal - or the study
 * that ran thirty other runs into the same stderr - is gone.
 *
 * The file gets finished lines only: a progress line redrawn in place on a terminal ("\r", an
 * ANSI erase) reaches it as the state it had when its line ended. Writes are serialised, so the
 * data loader's threads may warn while the training loop reports. */
#pragma once

#include <memory>
#include <ostream>
#include <string>

namespace mmt {

class TeeLog : public std::ostream {
 public:
  explicit TeeLog(std::ostream& console);
  ~TeeLog() override;
  TeeLog(const TeeLog&) = delete;
  TeeLog& operator=(const TeeLog&) = delete;

  /// From now on also appends every finished line to `path` (created if missing); throws Error
  /// naming the path if it cannot be opened.
  void open_file(const std::string& path);
  /// A line for the file alone (the console has it from elsewhere, as an error the CLI prints).
  void file_only(const std::string& line);
  std::ostream& console() const;

 private:
  class Buffer;
  std::unique_ptr<Buffer> buffer_;
};

/// "2026-11-28 17:40:12 UTC": the time now, as the logs stamp their sessions.
std::string utc_timestamp();

/// Whether `out` reaches an interactive terminal: std::cerr on a tty, directly or through
/// TeeLogs (progress lines are then redrawn in place, else printed every so often).
bool writes_to_terminal(std::ostream& out);

}  // namespace mmt
