// The syntax of an --aws-config profile name (contract §9), on its own so that the export parser can
// check hmac["aws4-hmac-sha256"].credentials without the INI reader of aws_config.
#pragma once

#include <algorithm>
#include <cstddef>
#include <string_view>

#include "core/ascii.hpp"

namespace membraned::core {

// IAM's name characters, [\w+=,.@-].
constexpr bool is_iam_name_char(char c) noexcept {
  return is_alnum(c) || c == '_' || c == '+' || c == '=' || c == ',' || c == '.' || c == '@' || c == '-';
}

// Profile names an export may give as hmac["aws4-hmac-sha256"].credentials: 1..128 IAM name
// characters. Loaded profiles must have such a name.
inline constexpr std::size_t kMaxProfileName = 128;

constexpr bool is_profile_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= kMaxProfileName &&
         std::all_of(name.begin(), name.end(), is_iam_name_char);
}

}  // namespace membraned::core
