/* TensorBoard event files (see tensorboard.h). Protocol buffer encoding by hand: Event {1: double
 * wall_time, 2: int64 step, 3: string file_version, 5: Summary summary}, Summary {1: repeated
 * Value value}, Value {1: string tag, 2: float simple_value}. */
#include "mmt/train/tensorboard.h"

#include <unistd.h>

#include <chrono>
#include <cstring>

#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {
namespace {

const uint32_t* crc_table() {
  static uint32_t table[256];
  static const bool ready = [] {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      table[i] = c;
    }
    return true;
  }();
  (void)ready;
  return table;
}

void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) out.push_back(static_cast<char>((v & 0x7F) | 0x80)), v >>= 7;
  out.push_back(static_cast<char>(v));
}

void bytes_field(std::string& out, int field, const std::string& value) {
  varint(out, static_cast<uint64_t>(field) << 3 | 2);
  varint(out, value.size());
  out += value;
}

template <typename T>
void fixed(std::string& out, int field, int wire, T value) {
  varint(out, static_cast<uint64_t>(field) << 3 | static_cast<uint64_t>(wire));
  out.append(reinterpret_cast<const char*>(&value), sizeof value);
}

std::string event_header(int64_t step) {
  std::string e;
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  fixed(e, 1, 1, now);
  varint(e, 2 << 3 | 0);
  varint(e, static_cast<uint64_t>(step));
  return e;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  const uint32_t* t = crc_table();
  uint32_t c = 0xFFFFFFFFu;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) c = t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  make_dirs(dir);
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  path_ = dir + "/events.out.tfevents." + std::to_string(secs) + "." + host + "." + std::to_string(getpid());
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw Error(path_ + ": cannot create");
  std::string e = event_header(0);
  bytes_field(e, 3, "brain.Event:2");
  record(e);
  flush();
}

void TensorBoardWriter::record(const std::string& event) {
  const uint64_t len = event.size();
  const uint32_t len_crc = masked_crc32c(&len, 8), data_crc = masked_crc32c(event.data(), event.size());
  out_.write(reinterpret_cast<const char*>(&len), 8);
  out_.write(reinterpret_cast<const char*>(&len_crc), 4);
  out_.write(event.data(), static_cast<std::streamsize>(event.size()));
  out_.write(reinterpret_cast<const char*>(&data_crc), 4);
}

void TensorBoardWriter::scalars(const std::map<std::string, double>& values, int64_t step, const std::string& prefix) {
  std::string summary;
  for (const auto& [tag, v] : values) {
    std::string value;
    bytes_field(value, 1, prefix + tag);
    fixed(value, 2, 5, static_cast<float>(v));
    bytes_field(summary, 1, value);
  }
  std::string e = event_header(step);
  bytes_field(e, 5, summary);
  record(e);
}

void TensorBoardWriter::scalar(const std::string& tag, int64_t step, double value) { scalars({{tag, value}}, step); }

void TensorBoardWriter::flush() { out_.flush(); }

namespace {

struct Reader {
  const std::string& s;
  size_t i, end;
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; i < end && shift < 64; shift += 7) {
      const auto b = static_cast<uint8_t>(s[i++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
    throw Error("truncated varint");
  }
  std::string bytes() {
    const uint64_t n = varint();
    if (i + n > end) throw Error("truncated field");
    std::string out = s.substr(i, n);
    i += n;
    return out;
  }
  template <typename T>
  T fixed() {
    if (i + sizeof(T) > end) throw Error("truncated field");
    T v;
    std::memcpy(&v, s.data() + i, sizeof v);
    i += sizeof v;
    return v;
  }
  void skip(int wire) {
    if (wire == 0) varint();
    else if (wire == 1) fixed<uint64_t>();
    else if (wire == 2) bytes();
    else if (wire == 5) fixed<uint32_t>();
    else throw Error("unknown wire type " + std::to_string(wire));
  }
};

TensorBoardEvent decode_event(const std::string& data) {
  TensorBoardEvent ev;
  Reader r{data, 0, data.size()};
  while (r.i < r.end) {
    const uint64_t key = r.varint();
    const int field = static_cast<int>(key >> 3), wire = static_cast<int>(key & 7);
    if (field == 1 && wire == 1) ev.wall_time = r.fixed<double>();
    else if (field == 2 && wire == 0) ev.step = static_cast<int64_t>(r.varint());
    else if (field == 3 && wire == 2) ev.file_version = r.bytes();
    else if (field == 5 && wire == 2) {
      const std::string summary = r.bytes();
      Reader sr{summary, 0, summary.size()};
      while (sr.i < sr.end) {
        const uint64_t sk = sr.varint();
        if ((sk >> 3) != 1 || (sk & 7) != 2) {
          sr.skip(static_cast<int>(sk & 7));
          continue;
        }
        const std::string value = sr.bytes();
        Reader vr{value, 0, value.size()};
        std::string tag;
        float v = 0;
        while (vr.i < vr.end) {
          const uint64_t vk = vr.varint();
          if ((vk >> 3) == 1 && (vk & 7) == 2) tag = vr.bytes();
          else if ((vk >> 3) == 2 && (vk & 7) == 5) v = vr.fixed<float>();
          else vr.skip(static_cast<int>(vk & 7));
        }
        ev.scalars.emplace_back(tag, v);
      }
    } else {
      r.skip(wire);
    }
  }
  return ev;
}

}  // namespace

std::vector<TensorBoardEvent> read_tensorboard_events(const std::string& path) {
  const std::string s = read_file(path);
  std::vector<TensorBoardEvent> out;
  size_t at = 0;
  while (at < s.size()) {
    const std::string where = path + ": record at byte " + std::to_string(at);
    if (s.size() - at < 12) throw Error(where + ": truncated header");
    uint64_t len;
    uint32_t len_crc;
    std::memcpy(&len, s.data() + at, 8);
    std::memcpy(&len_crc, s.data() + at + 8, 4);
    if (masked_crc32c(s.data() + at, 8) != len_crc) throw Error(where + ": length CRC mismatch");
    if (s.size() - at - 12 < len + 4) throw Error(where + ": truncated record");
    const std::string data = s.substr(at + 12, len);
    uint32_t data_crc;
    std::memcpy(&data_crc, s.data() + at + 12 + len, 4);
    if (masked_crc32c(data.data(), data.size()) != data_crc) throw Error(where + ": data CRC mismatch");
    try {
      out.push_back(decode_event(data));
    } catch (const Error& e) {
      throw Error(where + ": " + e.what());
    }
    at += 12 + len + 4;
  }
  return out;
}

}  // namespace mmt
