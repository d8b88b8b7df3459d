/* The one exception type of mmt: a user-facing message (what went wrong, where, and what
 * would be valid). The CLI prints it without a stack trace and exits with status 2. */
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mmt {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// "a, b, c" - for messages that list the valid choices.
std::string join(const std::vector<std::string>& items, const std::string& sep = ", ");

/// "(3, 4)" - a tensor or array shape, for messages.
std::string shape_string(const std::vector<int64_t>& shape);

/// Throws Error("unknown <what> 'name'; valid: a, b, c") unless name is in valid.
void check_choice(const std::string& what, const std::string& name,
                  const std::vector<std::string>& valid);

}  // namespace mmt
