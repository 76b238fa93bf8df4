#include "core/suggest.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

using membraned::core::closest_name;

namespace {

const std::vector<std::string> kCommands = {"serve", "check-config", "tenant", "admin"};

TEST(ClosestName, AMissingLetterASwapOrAWrongLetterFindsTheCommand) {
  EXPECT_EQ(closest_name("serv", kCommands), "serve");      // a name it begins
  EXPECT_EQ(closest_name("sevre", kCommands), "serve");     // two neighbours swapped
  EXPECT_EQ(closest_name("servr", kCommands), "serve");     // one letter wrong
  EXPECT_EQ(closest_name("tennant", kCommands), "tenant");  // one letter too many
  EXPECT_EQ(closest_name("chek-config", kCommands), "check-config");
}

TEST(ClosestName, AWordFarFromEveryNameHasNoSuggestion) {
  EXPECT_EQ(closest_name("version", kCommands), std::nullopt);
  EXPECT_EQ(closest_name("list", kCommands), std::nullopt);
  EXPECT_EQ(closest_name("", kCommands), std::nullopt);
  EXPECT_EQ(closest_name("serve", std::vector<std::string>{}), std::nullopt);
}

TEST(ClosestName, ShortNamesAllowOneEditOnly) {
  const std::vector<std::string> flags = {"--id", "--all"};
  EXPECT_EQ(closest_name("--ib", flags), "--id");
  EXPECT_EQ(closest_name("--xy", flags), std::nullopt);  // two edits from a four-letter name
}

TEST(ClosestName, TheNearestOfSeveralWins) {
  const std::vector<std::string> flags = {"--listen", "--lister", "--list"};
  EXPECT_EQ(closest_name("--lisen", flags), "--listen");
}

}  // namespace
