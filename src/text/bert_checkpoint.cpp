/* BERT checkpoint loading (see bert_checkpoint.h). */
#include "mmt/text/bert_checkpoint.h"

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "mmt/config/config.h"
#include "mmt/model/transformer.h"
#include "mmt/util/error.h"
#include "mmt/util/fs.h"

namespace mmt {

namespace {

std::string normalise(std::string key) {
  if (key.rfind("bert.", 0) == 0) key = key.substr(5);
  auto ends = [&](const std::string& s) { return key.size() >= s.size() && key.compare(key.size() - s.size(), s.size(), s) == 0; };
  if (ends(".gamma")) key = key.substr(0, key.size() - 6) + ".weight";
  if (ends(".beta")) key = key.substr(0, key.size() - 5) + ".bias";
  return key;
}

}  // namespace

LoadReport load_bert_checkpoint(MultimodalTransformerImpl& model, const std::string& dir) {
  const std::string config_path = dir + "/config.json", weights_path = dir + "/model.safetensors";
  if (!file_exists(config_path) || !file_exists(weights_path))
    throw Error("BERT checkpoint '" + dir + "' needs config.json and model.safetensors");
  const auto cfg = parse_json_with_comments(read_file(config_path), config_path);
  auto get = [&](const char* k) {
    if (!cfg.contains(k)) throw Error(config_path + ": missing '" + k + "'");
    return cfg.at(k).get<int64_t>();
  };
  const auto& m = model.options();
  const int64_t hidden = get("hidden_size"), heads = get("num_attention_heads"), layers = get("num_hidden_layers");
  auto expect = [&](bool ok, const std::string& what) {
    if (!ok) throw Error(config_path + ": " + what);
  };
  expect(hidden == m.hidden, "hidden_size " + std::to_string(hidden) + " but model.hidden is " + std::to_string(m.hidden));
  expect(heads == m.num_heads && m.num_heads * m.head_dim == hidden,
         "num_attention_heads " + std::to_string(heads) + " of width " + std::to_string(hidden / heads) +
             " but the model has " + std::to_string(m.num_heads) + " x " + std::to_string(m.head_dim));
  expect(get("intermediate_size") == m.ffn_dim, "intermediate_size differs from model.ffn_dim");
  expect(get("vocab_size") == model.dims().vocab_size,
         "vocab_size " + std::to_string(get("vocab_size")) + " but the tokenizer has " +
             std::to_string(model.dims().vocab_size) + " tokens (BERT needs its own WordPiece vocab.txt)");
  expect(get("max_position_embeddings") >= m.max_text_len, "max_position_embeddings is below model.max_text_len");
  expect(static_cast<int64_t>(model.layers->size()) >= layers,
         "BERT has " + std::to_string(layers) + " layers, the model only " + std::to_string(model.layers->size()));
  if (cfg.contains("hidden_act") && cfg["hidden_act"] != "gelu")
    throw Error(config_path + ": hidden_act must be gelu (the model's feed-forward), got " + cfg["hidden_act"].dump());
  if (cfg.contains("layer_norm_eps") && std::abs(cfg["layer_norm_eps"].get<double>() - m.layer_norm_eps) > 1e-15)
    throw Error(config_path + ": layer_norm_eps differs from model.layer_norm_eps");
  if (m.pre_norm) throw Error("BERT is a post-norm model: set model.pre_norm=false to load " + dir);

  // Our name -> BERT name (after normalise()).
  std::map<std::string, std::string> names = {
      {"text_embed.word.weight", "embeddings.word_embeddings.weight"},
      {"text_embed.position.weight", "embeddings.position_embeddings.weight"},
      {"text_embed.segment.weight", "embeddings.token_type_embeddings.weight"},
      {"text_embed.norm.weight", "embeddings.LayerNorm.weight"},
      {"text_embed.norm.bias", "embeddings.LayerNorm.bias"},
      {"itm_text_pool.weight", "pooler.dense.weight"},
      {"itm_text_pool.bias", "pooler.dense.bias"},
      {"mlm_transform.weight", "cls.predictions.transform.dense.weight"},
      {"mlm_transform.bias", "cls.predictions.transform.dense.bias"},
      {"mlm_norm.weight", "cls.predictions.transform.LayerNorm.weight"},
      {"mlm_norm.bias", "cls.predictions.transform.LayerNorm.bias"},
      {"mlm_bias", "cls.predictions.bias"}};
  const std::pair<const char*, const char*> block[] = {
      {"query", "attention.self.query"},     {"key", "attention.self.key"},
      {"value", "attention.self.value"},     {"out", "attention.output.dense"},
      {"attn_norm", "attention.output.LayerNorm"}, {"ffn_in", "intermediate.dense"},
      {"ffn_out", "output.dense"},           {"ffn_norm", "output.LayerNorm"}};
  const auto types = layer_types(m);
  for (int64_t n = 0; n < layers; ++n) {
    const std::string stream = attention_pattern(types[n]).shared_weights ? "shared" : "text";
    for (const auto& [ours, theirs] : block)
      for (const char* part : {".weight", ".bias"})
        names["layers." + std::to_string(n) + "." + stream + "." + ours + part] =
            "encoder.layer." + std::to_string(n) + "." + theirs + part;
  }

  std::map<std::string, torch::Tensor> file;
  for (auto& [k, t] : load_safetensors(weights_path)) file[normalise(k)] = t;
  LoadReport report;
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (auto& [name, param] : module_state(model)) {
    auto it = names.find(name);
    if (it == names.end()) continue;  // image side, ITM image pooling, ...: not BERT's
    auto src = file.find(it->second);
    if (src == file.end()) {
      report.missing.push_back(name);
      continue;
    }
    torch::Tensor value = src->second;
    if (name == "text_embed.position.weight") value = value.narrow(0, 0, param.size(0));
    if (value.sizes() != param.sizes()) {
      std::ostringstream ss;
      ss << name << " <- " << it->second << ": " << value.sizes() << " vs " << param.sizes();
      report.mismatched.push_back(ss.str());
      continue;
    }
    param.copy_(value);
    used.insert(it->second);
  }
  for (const auto& [k, t] : file)
    if (!used.count(k) && k != "cls.predictions.decoder.weight")  // tied to the word embeddings
      report.unexpected.push_back(k);
  if (!report.mismatched.empty()) throw Error(weights_path + ": shape mismatch: " + join(report.mismatched, "; "));
  return report;
}

}  // namespace mmt
