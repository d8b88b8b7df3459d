/* SentencePiece (see tokenizer.h), through the C interface of the mmt_spm module
 * (src/text/spm_shim/), loaded with dlopen(RTLD_LOCAL | RTLD_DEEPBIND): libsentencepiece bundles
 * protobuf symbols that clash with libtorch's libprotobuf when both are linked into one process.
 * The module is found at MMT_SPM_LIB (environment), next to the executable, or where the build
 * put it. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <unistd.h>

#include <filesystem>
#include <mutex>

#include "mmt/text/tokenizer.h"
#include "mmt/util/error.h"

namespace mmt {
namespace {

struct SpmApi {
  void* (*load)(const char*, char*, size_t);
  void (*free)(void*);
  int (*piece_size)(void*);
  int (*id_to_piece)(void*, int, char*, size_t);
  int (*encode)(void*, const char*, size_t, int*, size_t, char*, size_t);
  long (*decode)(void*, const int*, size_t, char*, size_t, char*, size_t);
  int (*train)(const char* const*, const char* const*, size_t, const char* const*, size_t, unsigned, char*, size_t);
};

const SpmApi& spm() {
  static SpmApi api;
  static std::string error;
  static std::once_flag once;
  std::call_once(once, [] {
    std::vector<std::string> candidates;
    if (const char* env = std::getenv("MMT_SPM_LIB")) candidates.push_back(env);
    std::error_code ec;
    const auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
    if (!ec) candidates.push_back((exe.parent_path() / "libmmt_spm.so").string()),
        candidates.push_back((exe.parent_path().parent_path() / "libmmt_spm.so").string());
#ifdef MMT_SPM_MODULE
    candidates.push_back(MMT_SPM_MODULE);
#endif
    void* handle = nullptr;
    std::string tried;
    for (const auto& c : candidates) {
      if (!std::filesystem::exists(c)) {
        tried += " " + c + " (missing)";
        continue;
      }
      handle = dlmopen(LM_ID_NEWLM, c.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (handle) break;
      tried += " " + c + " (" + dlerror() + ")";
    }
    if (!handle) {
      error = "SentencePiece support (libmmt_spm.so) not found; tried" + tried + ". Set MMT_SPM_LIB.";
      return;
    }
    auto sym = [&](const char* name) {
      void* p = dlsym(handle, name);
      if (!p) error = std::string("libmmt_spm.so lacks ") + name;
      return p;
    };
    api.load = reinterpret_cast<decltype(api.load)>(sym("mmt_spm_load"));
    api.free = reinterpret_cast<decltype(api.free)>(sym("mmt_spm_free"));
    api.piece_size = reinterpret_cast<decltype(api.piece_size)>(sym("mmt_spm_piece_size"));
    api.id_to_piece = reinterpret_cast<decltype(api.id_to_piece)>(sym("mmt_spm_id_to_piece"));
    api.encode = reinterpret_cast<decltype(api.encode)>(sym("mmt_spm_encode"));
    api.decode = reinterpret_cast<decltype(api.decode)>(sym("mmt_spm_decode"));
    api.train = reinterpret_cast<decltype(api.train)>(sym("mmt_spm_train"));
  });
  if (!error.empty()) throw Error(error);
  return api;
}

}  // namespace

struct SentencePieceTokenizer::Impl {
  void* model = nullptr;
  ~Impl() {
    if (model) spm().free(model);
  }
};

SentencePieceTokenizer::SentencePieceTokenizer(Vocab vocab, std::unique_ptr<Impl> impl, std::string path)
    : Tokenizer(std::move(vocab)), impl_(std::move(impl)), path_(std::move(path)) {}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::load(const std::string& model_path) {
  const auto& api = spm();
  if (!std::filesystem::exists(model_path)) throw Error(model_path + ": no such SentencePiece model");
  auto impl = std::make_unique<Impl>();
  char err[512] = {0};
  impl->model = api.load(model_path.c_str(), err, sizeof err);
  if (!impl->model) throw Error(model_path + ": not a SentencePiece model: " + err);
  std::vector<std::string> tokens;
  std::vector<char> buf(1024);
  for (int i = 0, n = api.piece_size(impl->model); i < n; ++i) {
    const int len = api.id_to_piece(impl->model, i, buf.data(), buf.size());
    if (len < 0) throw Error(model_path + ": piece " + std::to_string(i) + " longer than 1 KiB");
    tokens.emplace_back(buf.data(), static_cast<size_t>(len));
  }
  try {
    Vocab v = Vocab::from_tokens(std::move(tokens), /*sentencepiece=*/true);
    return std::unique_ptr<SentencePieceTokenizer>(new SentencePieceTokenizer(std::move(v), std::move(impl), model_path));
  } catch (const Error& e) {
    throw Error(model_path + ": " + e.what() + " (train it with `mmt tokenizer train`, which reserves them)");
  }
}

std::vector<int64_t> SentencePieceTokenizer::ids(const std::string& text) const {
  std::vector<int> out(text.size() + 8);
  char err[512] = {0};
  int n = spm().encode(impl_->model, text.data(), text.size(), out.data(), out.size(), err, sizeof err);
  if (n > static_cast<int>(out.size())) {
    out.resize(static_cast<size_t>(n));
    n = spm().encode(impl_->model, text.data(), text.size(), out.data(), out.size(), err, sizeof err);
  }
  if (n < 0) throw Error(path_ + ": encode failed: " + err);
  return {out.begin(), out.begin() + n};
}

std::vector<std::string> SentencePieceTokenizer::tokenize(const std::string& text) const {
  std::vector<std::string> pieces;
  for (int64_t id : ids(text)) pieces.push_back(vocab_.token(id));
  return pieces;
}

std::string SentencePieceTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::vector<int> keep;
  for (int64_t id : ids)
    if (!vocab_.is_special(id)) keep.push_back(static_cast<int>(id));
  std::vector<char> out(64 + 16 * keep.size());
  char err[512] = {0};
  long n = spm().decode(impl_->model, keep.data(), keep.size(), out.data(), out.size(), err, sizeof err);
  if (n >= static_cast<long>(out.size())) {
    out.resize(static_cast<size_t>(n) + 1);
    n = spm().decode(impl_->model, keep.data(), keep.size(), out.data(), out.size(), err, sizeof err);
  }
  if (n < 0) throw Error(path_ + ": decode failed: " + err);
  return std::string(out.data(), static_cast<size_t>(n));
}

std::string SentencePieceTokenizer::describe() const {
  return "sentencepiece " + path_ + " (" + std::to_string(vocab_.size()) + " pieces)";
}

void train_sentencepiece(const std::vector<std::string>& sentences, const std::string& prefix,
                         const SentencePieceTrainOptions& o) {
  if (sentences.empty()) throw Error("tokenizer train: no sentences");
  const std::vector<std::pair<std::string, std::string>> args = {
      {"model_prefix", prefix},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"model_type", o.model_type},
      {"character_coverage", std::to_string(o.character_coverage)},
      {"normalization_rule_name", o.lower_case ? "nmt_nfkc_cf" : "nmt_nfkc"},
      {"pad_id", "0"}, {"pad_piece", "[PAD]"},
      {"unk_id", "1"}, {"unk_piece", "[UNK]"},
      {"bos_id", "-1"}, {"eos_id", "-1"},
      {"user_defined_symbols", "[CLS],[SEP],[MASK]"},
      {"num_threads", std::to_string(o.threads)},
      {"hard_vocab_limit", "false"},  // a small caption set may not fill vocab_size
  };
  std::vector<const char*> keys, values, lines;
  for (const auto& [k, v] : args) keys.push_back(k.c_str()), values.push_back(v.c_str());
  for (const auto& s : sentences) lines.push_back(s.c_str());
  char err[1024] = {0};
  if (spm().train(keys.data(), values.data(), keys.size(), lines.data(), lines.size(),
                  static_cast<unsigned>(o.seed == 0 ? 1 : o.seed), err, sizeof err) != 0)
    throw Error(std::string("tokenizer train: ") + err);
}

}  // namespace mmt
