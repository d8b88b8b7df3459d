/* Attention variants: names and patterns (see attention.h). */
#include "mmt/model/attention.h"

#include "mmt/util/error.h"

namespace mmt {

const std::vector<std::string>& attention_type_names() {
  static const std::vector<std::string> names = {"merged",
                                                 "single_modality",
                                                 "coattention",
                                                 "asymmetric_text_queries",
                                                 "asymmetric_image_queries",
                                                 "single_stream"};
  return names;
}

AttentionPattern attention_pattern(AttentionType type) {
  switch (type) {  //        t->t   t->i   i->t   i->i   shared
    case AttentionType::kMerged: return {true, true, true, true, false};
    case AttentionType::kSingleModality: return {true, false, false, true, false};
    case AttentionType::kCoattention: return {false, true, true, false, false};
    case AttentionType::kAsymmetricTextQueries: return {true, true, false, true, false};
    case AttentionType::kAsymmetricImageQueries: return {true, false, true, true, false};
    case AttentionType::kSingleStream: return {true, true, true, true, true};
  }
  throw Error("invalid attention type");
}

const std::string& attention_type_name(AttentionType type) {
  return attention_type_names().at(static_cast<size_t>(type));
}

int64_t first_cross_modal_layer(const std::vector<AttentionType>& types) {
  int64_t i = 0;
  while (i < static_cast<int64_t>(types.size()) && !attention_pattern(types[static_cast<size_t>(i)]).cross_modal()) ++i;
  return i;
}

AttentionType attention_type_from_name(const std::string& name) {
  check_choice("attention type", name, attention_type_names());
  const auto& names = attention_type_names();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<AttentionType>(i);
  throw Error("unreachable");
}

}  // namespace mmt
