// The shared ASCII classes: exactly the ASCII ranges, never a byte >= 0x80, whatever the locale.
#include <gtest/gtest.h>

#include <string>

#include "core/ascii.hpp"

namespace membraned::core {
namespace {

static_assert(is_digit('0') && is_digit('9') && !is_digit('a'));
static_assert(is_word("AKIA_0z") && !is_word(""));

TEST(Ascii, ClassesCoverExactlyTheirAsciiRanges) {
  for (int i = 0; i < 256; ++i) {
    const char c = static_cast<char>(i);
    const bool digit = i >= '0' && i <= '9';
    const bool alnum = digit || (i >= 'A' && i <= 'Z') || (i >= 'a' && i <= 'z');
    EXPECT_EQ(is_digit(c), digit) << i;
    EXPECT_EQ(is_alnum(c), alnum) << i;
    EXPECT_EQ(is_word(std::string(1, c)), alnum || c == '_') << i;
  }
}

TEST(Ascii, AWordIsOneOrMoreWordCharacters) {
  EXPECT_TRUE(is_word("AKIAIOSFODNN7EXAMPLE"));
  EXPECT_TRUE(is_word("_"));
  EXPECT_FALSE(is_word(""));
  EXPECT_FALSE(is_word("AKIA-1"));
  EXPECT_FALSE(is_word("AKIA 1"));
  EXPECT_FALSE(is_word("caf\xc3\xa9"));
}

}  // namespace
}  // namespace membraned::core
