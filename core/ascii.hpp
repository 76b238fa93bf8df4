// ASCII character classes, written once for every parser in core/. Unlike <cctype> they ignore
// the locale and take a plain char (no cast to unsigned char needed): bytes >= 0x80 are in none.
#pragma once

#include <algorithm>
#include <string_view>

namespace membraned::core {

constexpr bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

constexpr bool is_alnum(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || is_digit(c);
}

// One or more of [A-Za-z0-9_], the \w+ of regular expressions.
constexpr bool is_word(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return is_alnum(c) || c == '_'; });
}

}  // namespace membraned::core
