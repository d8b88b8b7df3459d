/* safetensors (see safetensors.h). */
#include "mmt/io/safetensors.h"

#include <torch/nn/module.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {

using nlohmann::json;

namespace {

struct DtypeName {
  torch::ScalarType type;
  const char* name;
};
const DtypeName kDtypes[] = {{torch::kFloat32, "F32"}, {torch::kFloat16, "F16"}, {torch::kBFloat16, "BF16"},
                             {torch::kFloat64, "F64"}, {torch::kInt64, "I64"},   {torch::kInt32, "I32"},
                             {torch::kInt16, "I16"},   {torch::kInt8, "I8"},     {torch::kUInt8, "U8"},
                             {torch::kBool, "BOOL"}};

const char* dtype_name(torch::ScalarType t) {
  for (const auto& d : kDtypes)
    if (d.type == t) return d.name;
  throw Error(std::string("safetensors: unsupported dtype ") + c10::toString(t));
}

torch::ScalarType dtype_from(const std::string& name, const std::string& where) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.type;
  throw Error(where + ": unsupported safetensors dtype '" + name + "'");
}

}  // namespace

void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors writer assumes little-endian");
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::vector<torch::Tensor> data;
  uint64_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (header.contains(name)) throw Error("safetensors: duplicate tensor name '" + name + "'");
    auto c = t.detach().to(torch::kCPU).contiguous();
    const uint64_t bytes = c.numel() * c.element_size();
    header[name] = {{"dtype", dtype_name(c.scalar_type())},
                    {"shape", c.sizes().vec()},
                    {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
    data.push_back(c);
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // align the buffer to 8 bytes
  std::string out(8, '\0');
  const uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);
  out += h;
  out.reserve(out.size() + offset);
  for (const auto& c : data) out.append(static_cast<const char*>(c.data_ptr()), c.numel() * c.element_size());
  write_file_atomic(path, out);
}

NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 8) throw Error(path + ": not a safetensors file (shorter than 8 bytes)");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  if (n > bytes.size() - 8) throw Error(path + ": header length " + std::to_string(n) + " exceeds the file");
  json header;
  try {
    header = json::parse(bytes.begin() + 8, bytes.begin() + 8 + static_cast<std::ptrdiff_t>(n));
  } catch (const json::parse_error& e) {
    throw Error(path + ": invalid safetensors header: " + e.what());
  }
  if (!header.is_object()) throw Error(path + ": safetensors header is not a JSON object");
  const uint64_t buffer = 8 + n, buffer_size = bytes.size() - buffer;
  NamedTensors out;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == "__metadata__") {
      if (metadata) {
        try {
          *metadata = it.value().get<std::map<std::string, std::string>>();
        } catch (const nlohmann::json::exception&) {
          throw Error(path + ": __metadata__ must map strings to strings");
        }
      }
      continue;
    }
    const std::string where = path + ": tensor '" + it.key() + "'";
    const auto& e = it.value();
    if (!e.contains("dtype") || !e.contains("shape") || !e.contains("data_offsets"))
      throw Error(where + ": entry needs dtype, shape and data_offsets");
    torch::ScalarType type;
    std::vector<int64_t> shape;
    std::vector<uint64_t> off;
    try {
      type = dtype_from(e["dtype"].get<std::string>(), where);
      shape = e["shape"].get<std::vector<int64_t>>();
      off = e["data_offsets"].get<std::vector<uint64_t>>();
    } catch (const nlohmann::json::exception& ex) {
      throw Error(where + ": malformed entry (" + ex.what() + ")");
    }
    for (int64_t d : shape)
      if (d < 0) throw Error(where + ": negative dimension in shape");
    int64_t numel = 1;
    for (int64_t s : shape) numel *= s;
    const uint64_t expect = static_cast<uint64_t>(numel) * c10::elementSize(type);
    if (off.size() != 2 || off[0] > off[1] || off[1] > buffer_size || off[1] - off[0] != expect)
      throw Error(where + ": data_offsets do not match its shape and dtype or exceed the file");
    auto t = torch::empty(shape, torch::TensorOptions().dtype(type));
    std::memcpy(t.data_ptr(), bytes.data() + buffer + off[0], expect);
    out.emplace_back(it.key(), t);
  }
  return out;
}

NamedTensors module_state(const torch::nn::Module& module) {
  NamedTensors out;
  for (const auto& p : module.named_parameters(/*recurse=*/true)) out.emplace_back(p.key(), p.value());
  for (const auto& b : module.named_buffers(/*recurse=*/true)) out.emplace_back(b.key(), b.value());
  return out;
}

LoadReport load_module_state(torch::nn::Module& module, const NamedTensors& tensors, bool strict) {
  std::map<std::string, torch::Tensor> file(tensors.begin(), tensors.end());
  LoadReport report;
  torch::NoGradGuard no_grad;
  for (auto& [name, target] : module_state(module)) {
    auto it = file.find(name);
    if (it == file.end()) {
      report.missing.push_back(name);
      continue;
    }
    if (it->second.sizes() != target.sizes()) {
      std::ostringstream ss;
      ss << name << ": file " << it->second.sizes() << " vs model " << target.sizes();
      report.mismatched.push_back(ss.str());
    } else {
      target.copy_(it->second);
    }
    file.erase(it);
  }
  for (const auto& kv : file) report.unexpected.push_back(kv.first);
  if (strict && (!report.missing.empty() || !report.unexpected.empty() || !report.mismatched.empty())) {
    std::string msg = "checkpoint does not fit the model:";
    if (!report.missing.empty()) msg += "\n  missing: " + join(report.missing);
    if (!report.unexpected.empty()) msg += "\n  unexpected: " + join(report.unexpected);
    if (!report.mismatched.empty()) msg += "\n  shape mismatch: " + join(report.mismatched, "; ");
    throw Error(msg);
  }
  return report;
}

}  // namespace mmt
