// "Did you mean ...?" for a mistyped command or flag name.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace membraned::core {

// The name among `names` closest to `typed` in edits (insert, delete, replace, swap of two
// neighbours), when it is close enough to be the one meant: at most one edit for names of up to
// four letters, two beyond, or a name that `typed` begins. Ties go to the first name.
std::optional<std::string> closest_name(std::string_view typed, std::span<const std::string> names);

}  // namespace membraned::core
