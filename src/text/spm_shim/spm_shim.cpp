/* A C interface over libsentencepiece, built as its own module and loaded with dlmopen(LM_ID_NEWLM)
 * - a link namespace of its own - by src/text/sentencepiece.cpp. Why: Debian's libsentencepiece
 * carries its own copy of protobuf-lite and exports its symbols; linked into a process that also
 * holds libtorch's libprotobuf, the two interpose and the process crashes during static
 * initialisation. In its own namespace (with its own libstdc++; RTLD_DEEPBIND was tried and crashes
 * on the executable's copy of std::cerr) sentencepiece's symbols stay private. Only C types cross.
 * No torch header here. */
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {
void set_error(char* err, size_t cap, const std::string& msg) {
  if (err && cap > 0) {
    std::strncpy(err, msg.c_str(), cap - 1);
    err[cap - 1] = '\0';
  }
}

class Sentences : public sentencepiece::SentenceIterator {
 public:
  Sentences(const char* const* s, size_t n) : s_(s), n_(n) { load(); }
  bool done() const override { return i_ >= n_; }
  void Next() override { ++i_, load(); }
  const std::string& value() const override { return cur_; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  void load() {
    if (i_ < n_) cur_ = s_[i_];
  }
  const char* const* s_;
  size_t n_, i_ = 0;
  std::string cur_;
};
}  // namespace

extern "C" {

void* mmt_spm_load(const char* path, char* err, size_t err_cap) {
  auto* sp = new sentencepiece::SentencePieceProcessor();
  const auto status = sp->Load(path);
  if (!status.ok()) {
    set_error(err, err_cap, status.ToString());
    delete sp;
    return nullptr;
  }
  return sp;
}

void mmt_spm_free(void* model) { delete static_cast<sentencepiece::SentencePieceProcessor*>(model); }

int mmt_spm_piece_size(void* model) { return static_cast<sentencepiece::SentencePieceProcessor*>(model)->GetPieceSize(); }

// Copies piece `id` into out (NUL-terminated); returns its length, or -1 when it does not fit.
int mmt_spm_id_to_piece(void* model, int id, char* out, size_t cap) {
  const std::string& p = static_cast<sentencepiece::SentencePieceProcessor*>(model)->IdToPiece(id);
  if (p.size() + 1 > cap) return -1;
  std::memcpy(out, p.c_str(), p.size() + 1);
  return static_cast<int>(p.size());
}

// Encodes text into ids; returns the number of ids (write at most cap; call again with more
// room when the result exceeds cap), or -1 on error.
int mmt_spm_encode(void* model, const char* text, size_t len, int* ids, size_t cap, char* err, size_t err_cap) {
  std::vector<int> out;
  const auto status = static_cast<sentencepiece::SentencePieceProcessor*>(model)->Encode(std::string(text, len), &out);
  if (!status.ok()) return set_error(err, err_cap, status.ToString()), -1;
  for (size_t i = 0; i < out.size() && i < cap; ++i) ids[i] = out[i];
  return static_cast<int>(out.size());
}

// Decodes ids into out; returns the text's length (written when < cap), or -1 on error.
long mmt_spm_decode(void* model, const int* ids, size_t n, char* out, size_t cap, char* err, size_t err_cap) {
  std::string text;
  const auto status =
      static_cast<sentencepiece::SentencePieceProcessor*>(model)->Decode(std::vector<int>(ids, ids + n), &text);
  if (!status.ok()) return set_error(err, err_cap, status.ToString()), -1;
  if (text.size() < cap) std::memcpy(out, text.c_str(), text.size() + 1);
  return static_cast<long>(text.size());
}

// Trains on `sentences` with trainer arguments given as n_args key / value pairs; 0 on success.
int mmt_spm_train(const char* const* keys, const char* const* values, size_t n_args, const char* const* sentences,
                  size_t n_sentences, unsigned seed, char* err, size_t err_cap) {
  std::unordered_map<std::string, std::string> args;
  for (size_t i = 0; i < n_args; ++i) args[keys[i]] = values[i];
  sentencepiece::SetRandomGeneratorSeed(seed);
  Sentences it(sentences, n_sentences);
  const auto status = sentencepiece::SentencePieceTrainer::Train(args, &it);
  if (!status.ok()) return set_error(err, err_cap, status.ToString()), 1;
  return 0;
}

}  // extern "C"
