/* The attention variants of the study as one idea (DESIGN.md): a 2x2 pattern of which query
 * modality may attend to which key modality, plus whether the two modalities share weights.
 * PAPER.md's table, row by row:
 *
 *   name                      text->text text->image image->text image->image weights
 *   merged                       yes        yes         yes         yes      per modality
 *   single_modality              yes        no          no          yes      per modality
 *   coattention                  no         yes         yes         no       per modality
 *   asymmetric_text_queries      yes        yes         no          yes      per modality
 *   asymmetric_image_queries     yes        no          yes         yes      per modality
 *   single_stream                yes        yes         yes         yes      shared        */
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mmt {

enum class AttentionType {
  kMerged,
  kSingleModality,
  kCoattention,
  kAsymmetricTextQueries,
  kAsymmetricImageQueries,
  kSingleStream,
};

struct AttentionPattern {
  bool text_to_text;    // text queries attend to text keys
  bool text_to_image;   // text queries attend to image keys
  bool image_to_text;   // image queries attend to text keys
  bool image_to_image;  // image queries attend to image keys
  bool shared_weights;  // one set of weights for both modalities (single-stream)

  /// Whether any query attends across modalities (the layer mixes text and image).
  bool cross_modal() const { return text_to_image || image_to_text; }
};

AttentionPattern attention_pattern(AttentionType type);
const std::string& attention_type_name(AttentionType type);
/// Parses a paper name; throws Error listing the valid names.
AttentionType attention_type_from_name(const std::string& name);
/// The valid names, in enum order.
const std::vector<std::string>& attention_type_names();
/// Index of the first layer of a stack (bottom first) whose attention crosses modalities; the stack's
/// size if none does. Below it each modality's states depend on that modality alone.
int64_t first_cross_modal_layer(const std::vector<AttentionType>& types);

}  // namespace mmt
