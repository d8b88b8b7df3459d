/* Error helpers shared by every area. */
#include "mmt/util/error.h"

#include <algorithm>

namespace mmt {

std::string join(const std::vector<std::string>& items, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s = "(";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + ")";
}

void check_choice(const std::string& what, const std::string& name,
                  const std::vector<std::string>& valid) {
  if (std::find(valid.begin(), valid.end(), name) == valid.end())
    throw Error("unknown " + what + " '" + name + "'; valid: " + join(valid));
}

}  // namespace mmt
