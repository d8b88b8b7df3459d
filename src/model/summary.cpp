/* Model summary (see summary.h). */
#include "mmt/model/summary.h"

#include <cstdio>
#include <map>

#include "mmt/config/config.h"
#include "mmt/model/flops.h"
#include "mmt/model/transformer.h"

namespace mmt {

int64_t stream_parameter_count(const ModelOptions& m) {
  const int64_t h = m.hidden, inner = m.num_heads * m.head_dim, f = m.ffn_dim;
  return 3 * (h * inner + inner)  // query, key, value
         + (inner * h + h)        // out
         + (h * f + f) + (f * h + h)  // feed-forward
         + 2 * 2 * h;             // two LayerNorms
}

std::string model_summary(const ExperimentConfig& cfg, const InputDims& dims, int64_t text_tokens,
                          int64_t image_tokens) {
  MultimodalTransformer model(cfg.model, dims);
  // Group parameters by block: the first name component, or "layers.N".
  std::vector<std::pair<std::string, int64_t>> blocks;
  auto add = [&](const std::string& block, int64_t n) {
    if (blocks.empty() || blocks.back().first != block) blocks.emplace_back(block, 0);
    blocks.back().second += n;
  };
  int64_t total = 0;
  for (const auto& p : model->named_parameters()) {
    const std::string& name = p.key();
    std::string block = name.substr(0, name.find('.'));
    if (block == "layers") block = name.substr(0, name.find('.', 7));
    add(block, p.value().numel());
    total += p.value().numel();
  }
  const auto types = layer_types(cfg.model);
  std::string out;
  char buf[256];
  std::snprintf(buf, sizeof buf, "model: %zu layers, hidden %ld, %ld heads x %ld, FFN %ld, vocab %ld, region features %ld\n\n",
                types.size(), long(cfg.model.hidden), long(cfg.model.num_heads), long(cfg.model.head_dim),
                long(cfg.model.ffn_dim), long(dims.vocab_size), long(dims.region_feat_dim));
  out += buf;
  out += "| block | attention | parameters |\n|---|---|---:|\n";
  for (const auto& [block, n] : blocks) {
    std::string attention;
    if (block.rfind("layers.", 0) == 0) attention = attention_type_name(types.at(std::stoul(block.substr(7))));
    std::snprintf(buf, sizeof buf, "| %s | %s | %ld |\n", block.c_str(), attention.c_str(), long(n));
    out += buf;
  }
  std::snprintf(buf, sizeof buf, "| **total** | | **%ld** |\n\n", long(total));
  out += buf;
  // The config's images where the count is theirs (a 40 px image is not a 64 px one, though both
  // give a 2 x 2 map); otherwise 32 px a cell.
  const int64_t side = image_tokens == max_image_positions(cfg) ? pixel_image_size(cfg) : 0;
  const double fwd = forward_flops(cfg.model, dims, text_tokens, image_tokens, 0, side);
  // A frozen ResNet-50 runs forward only.
  const double backbone = backbone_forward_flops(cfg.model, image_tokens, side);
  const double train = 3.0 * fwd - (cfg.model.resnet_frozen ? 2.0 * backbone : 0.0);
  char note[96] = "";
  if (backbone > 0)
    std::snprintf(note, sizeof note, "; of the forward, the ResNet-50's %.3g%s", backbone,
                  cfg.model.resnet_frozen ? " (frozen: no backward)" : "");
  std::snprintf(buf, sizeof buf,
                "FLOPs per example of %ld text + %ld image tokens (multiply-add = 2): forward %.3g, "
                "training (forward + backward) %.3g%s\n",
                long(text_tokens), long(image_tokens), fwd, train, note);
  out += buf;
  out += training_step_flops(cfg, dims, text_tokens, image_tokens);
  return out;
}

std::string training_step_flops(const ExperimentConfig& cfg, const InputDims& dims, int64_t text_tokens,
                                int64_t image_tokens) {
  const TrainOptions& t = cfg.train;
  if (t.batch_size < 1 || text_tokens < 1 || image_tokens < 1) return "";
  const StepFlops f = typical_step_flops(cfg, dims, text_tokens, image_tokens);
  const bool hard = t.itm_negatives == "hard" && f.hard_negatives > 0;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "training step of train.batch_size = %ld such examples with this config's losses: %.3g FLOPs (%.3g per example)%s%s%s\n",
                long(t.batch_size), f.total(), f.total() / static_cast<double>(t.batch_size), f.shares().empty() ? "" : " - ",
                f.shares().c_str(),
                hard && t.itm_hard_from_step > 0 ? " (steps before train.itm_hard_from_step: random negatives, no scoring)" : "");
  std::string out = buf;
  if (hard && t.itm_hard_candidates == 0 && f.hard_negatives > 0.5 * f.total())
    out += "  (hard-negative scoring dominates: train.itm_hard_candidates = K scores K partners per negative row, not "
           "the whole batch; docs/losses.md)\n";
  return out;
}

}  // namespace mmt
