/* safetensors: bytes as the format defines them, round trips, corrupt files, and loading
 * into a module with missing / unexpected keys reported by name. */
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "mmt/io/safetensors.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"
#include "test_util.h"

namespace mmt {
namespace {

std::string temp(const std::string& name) { return ::testing::TempDir() + name; }

TEST(Safetensors, ReadsAFileBuiltByHandFromTheSpec) {
  // Two tensors: "a" F32 [2] = {1.5, -2}, "b" I64 [1] = {7}; header padded with spaces.
  std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                       R"("b":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},"__metadata__":{"k":"v"}})";
  header += "   ";
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += header;
  const float a[2] = {1.5f, -2.f};
  const int64_t b = 7;
  bytes.append(reinterpret_cast<const char*>(a), 8);
  bytes.append(reinterpret_cast<const char*>(&b), 8);
  write_file_atomic(temp("hand.safetensors"), bytes);

  std::map<std::string, std::string> meta;
  const auto t = load_safetensors(temp("hand.safetensors"), &meta);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].first, "a");
  EXPECT_TRUE(torch::equal(t[0].second, torch::tensor({1.5f, -2.f})));
  EXPECT_EQ(t[1].second.scalar_type(), torch::kInt64);
  EXPECT_EQ(t[1].second.item<int64_t>(), 7);
  EXPECT_EQ(meta["k"], "v");
}

TEST(Safetensors, WritesTheSpecLayout) {
  save_safetensors(temp("w.safetensors"), {{"x", torch::arange(6, torch::kFloat32).view({2, 3})}}, {{"step", "3"}});
  const std::string bytes = read_file(temp("w.safetensors"));
  uint64_t n;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ((8 + n) % 8, 0u);  // buffer aligned
  const auto h = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(h["x"]["dtype"], "F32");
  EXPECT_EQ(h["x"]["shape"], nlohmann::json({2, 3}));
  EXPECT_EQ(h["x"]["data_offsets"], nlohmann::json({0, 24}));
  EXPECT_EQ(h["__metadata__"]["step"], "3");
  float v[6];
  std::memcpy(v, bytes.data() + 8 + n, 24);
  EXPECT_EQ(v[5], 5.f);
}

TEST(Safetensors, RoundTripsEveryDtype) {
  NamedTensors in = {{"f32", torch::randn({3, 4})},
                     {"f64", torch::randn({2}, torch::kFloat64)},
                     {"bf16", torch::randn({5}).to(torch::kBFloat16)},
                     {"f16", torch::randn({5}).to(torch::kFloat16)},
                     {"i64", torch::arange(4)},
                     {"i32", torch::arange(4, torch::kInt32)},
                     {"u8", torch::arange(4, torch::kUInt8)},
                     {"bool", torch::tensor({true, false})},
                     {"strided", torch::randn({4, 4}).t()},  // non-contiguous source
                     {"scalar", torch::tensor(3.f).reshape({})}};
  save_safetensors(temp("all.safetensors"), in);
  const auto out = load_safetensors(temp("all.safetensors"));
  ASSERT_EQ(out.size(), in.size());
  std::map<std::string, torch::Tensor> m(out.begin(), out.end());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(m.count(name)) << name;
    EXPECT_EQ(m[name].scalar_type(), t.scalar_type()) << name;
    EXPECT_TRUE(torch::equal(m[name], t)) << name;
  }
}

TEST(Safetensors, CorruptFilesNameTheFileAndEntry) {
  std::string bytes(8, '\0');
  const std::string header = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  write_file_atomic(temp("short.safetensors"), bytes + header + std::string(8, '\0'));  // 8 of 16 bytes
  try {
    load_safetensors(temp("short.safetensors"));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("short.safetensors"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("'w'"), std::string::npos);
  }
  write_file_atomic(temp("junk.safetensors"), "\xff\xff\xff\xff\xff\xff\xff\x7f{}");
  EXPECT_THROW(load_safetensors(temp("junk.safetensors")), Error);
}

// Every prefix of a valid file, and every single-byte corruption of its header, fails with an
// Error (or, for a corruption that still describes valid tensors, loads) - never a crash.
TEST(Safetensors, TruncatedOrCorruptedFilesNeverCrash) {
  save_safetensors(temp("ok.safetensors"), {{"a", torch::randn({3, 2})}, {"b", torch::arange(5)}}, {{"k", "v"}});
  const std::string good = read_file(temp("ok.safetensors"));
  for (size_t n = 0; n < good.size(); ++n) {
    write_file_atomic(temp("cut.safetensors"), good.substr(0, n));
    EXPECT_THROW(load_safetensors(temp("cut.safetensors")), Error) << "prefix of " << n << " bytes";
  }
  uint64_t header = 0;
  std::memcpy(&header, good.data(), 8);
  for (size_t i = 0; i < 8 + header; ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x5A);
    write_file_atomic(temp("bad.safetensors"), bad);
    try {
      load_safetensors(temp("bad.safetensors"));
    } catch (const Error&) {
    }
  }
}

TEST(Safetensors, ModuleStateRoundTripAndKeyReport) {
  auto opts = testing::small_model_options("merged", 1);
  MultimodalTransformer a(opts, InputDims{testing::kVocab, testing::kFeat});
  MultimodalTransformer b(opts, InputDims{testing::kVocab, testing::kFeat});
  save_safetensors(temp("m.safetensors"), module_state(*a));
  const auto loaded = load_safetensors(temp("m.safetensors"));
  const auto report = load_module_state(*b, loaded, true);
  EXPECT_TRUE(report.missing.empty() && report.unexpected.empty());
  for (const auto& [name, t] : module_state(*a)) {
    bool found = false;
    for (const auto& [n2, t2] : module_state(*b))
      if (n2 == name) {
        found = true;
        EXPECT_TRUE(torch::equal(t, t2)) << name;
      }
    EXPECT_TRUE(found) << name;
  }
  // A checkpoint of another stack: names are reported, strict loading refuses.
  MultimodalTransformer c(testing::small_model_options("single_stream", 1), InputDims{testing::kVocab, testing::kFeat});
  const auto r = load_module_state(*c, loaded, false);
  EXPECT_FALSE(r.missing.empty());
  EXPECT_NE(std::find(r.unexpected.begin(), r.unexpected.end(), "layers.0.text.query.weight"), r.unexpected.end());
  EXPECT_NE(std::find(r.missing.begin(), r.missing.end(), "layers.0.shared.query.weight"), r.missing.end());
  try {
    load_module_state(*c, loaded, true);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("layers.0.shared.query.weight"), std::string::npos);
  }
}

}  // namespace
}  // namespace mmt
