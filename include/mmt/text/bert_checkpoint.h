/* Initialising the text side of a model from a Hugging Face BERT checkpoint (a directory with
 * config.json and model.safetensors), for the release's `data_cc-with-bert` and the BERT-
 * initialised baseline. The mapping is one to one (docs/formats.md):
 *
 *   bert.embeddings.{word,position,token_type}_embeddings  -> text_embed.{word,position,segment}
 *   bert.embeddings.LayerNorm                              -> text_embed.norm
 *   bert.encoder.layer.N.attention.self.{query,key,value}  -> layers.N.<text>.{query,key,value}
 *   bert.encoder.layer.N.attention.output.dense / LayerNorm -> layers.N.<text>.out / attn_norm
 *   bert.encoder.layer.N.intermediate.dense                -> layers.N.<text>.ffn_in
 *   bert.encoder.layer.N.output.dense / LayerNorm          -> layers.N.<text>.ffn_out / ffn_norm
 *   bert.pooler.dense                                      -> itm_text_pool
 *   cls.predictions.transform.dense / LayerNorm, .bias     -> mlm_transform / mlm_norm, mlm_bias
 *
 * <text> is `text` in two-stream layers and `shared` in single-stream ones. Keys may lack the
 * `bert.` prefix and LayerNorms may say gamma/beta (older checkpoints). */
#pragma once

#include <string>

#include "mmt/io/safetensors.h"

namespace mmt {

class MultimodalTransformerImpl;

/// Copies a BERT checkpoint into the model's text side. Sizes must agree (hidden, heads x
/// head_dim, FFN, vocabulary, max_text_len <= max_position_embeddings; the model may have more
/// layers than BERT); anything else throws Error naming the file and the mismatch. The report
/// lists model parameters of the text side left uninitialised (missing) and checkpoint keys
/// not used (unexpected, e.g. the NSP head).
LoadReport load_bert_checkpoint(MultimodalTransformerImpl& model, const std::string& dir);

}  // namespace mmt
