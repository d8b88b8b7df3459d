/* Console + file log (see tee_log.h). */
#include "mmt/util/tee_log.h"

#include <unistd.h>

#include <ctime>
#include <fstream>
#include <iostream>
#include <mutex>

#include "mmt/util/error.h"

namespace mmt {

// Unbuffered on the stream side (every character or block comes here), so one lock orders the
// writes of several threads; the file side keeps the current line until it ends.
class TeeLog::Buffer : public std::streambuf {
 public:
  explicit Buffer(std::ostream& console) : console_(console) {}

  void open(const std::string& path) {
    std::lock_guard<std::mutex> lock(mu_);
    file_.open(path, std::ios::app);
    if (!file_) throw Error("cannot write the log '" + path + "'");
  }
  void file_only(const std::string& line) {
    std::lock_guard<std::mutex> lock(mu_);
    if (file_.is_open()) file_ << line << "\n" << std::flush;
  }
  std::ostream& console() const { return console_; }

 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    const char ch = traits_type::to_char_type(c);
    std::lock_guard<std::mutex> lock(mu_);
    console_.rdbuf()->sputc(ch);
    to_file(ch);
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard<std::mutex> lock(mu_);
    console_.rdbuf()->sputn(s, n);
    for (std::streamsize i = 0; i < n; ++i) to_file(s[i]);
    return n;
  }
  int sync() override {
    std::lock_guard<std::mutex> lock(mu_);
    console_.flush();
    if (file_.is_open()) file_.flush();
    return 0;
  }

 private:
  void to_file(char ch) {
    if (!file_.is_open()) return;
    if (escape_) {  // an ANSI control sequence: ESC [ parameters, ended by a letter
      if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z')) escape_ = false;
      return;
    }
    if (ch == '\033') escape_ = true;
    else if (ch == '\r') line_.clear();  // the line is drawn again
    else if (ch == '\n') file_ << line_ << '\n' << std::flush, line_.clear();
    else line_ += ch;
  }

  std::ostream& console_;
  std::ofstream file_;
  std::string line_;
  bool escape_ = false;
  std::mutex mu_;
};

TeeLog::TeeLog(std::ostream& console) : std::ostream(nullptr), buffer_(std::make_unique<Buffer>(console)) {
  rdbuf(buffer_.get());
}

TeeLog::~TeeLog() {
  flush();
  rdbuf(nullptr);
}

void TeeLog::open_file(const std::string& path) { buffer_->open(path); }
void TeeLog::file_only(const std::string& line) { buffer_->file_only(line); }
std::ostream& TeeLog::console() const { return buffer_->console(); }

std::string utc_timestamp() {
  char when[64];
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  std::strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S UTC", &utc);
  return when;
}

bool writes_to_terminal(std::ostream& out) {
  const std::ostream* end = &out;  // through every TeeLog (a run's inside its study's) to the console
  while (const auto* tee = dynamic_cast<const TeeLog*>(end)) end = &tee->console();
  return end == &std::cerr && ::isatty(STDERR_FILENO) == 1;
}

}  // namespace mmt
