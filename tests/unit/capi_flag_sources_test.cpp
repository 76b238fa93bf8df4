// Where capi's secret-carrying flags take their value (cli/flag_sources): the text itself,
// @FILE, - (standard input, once) or env:NAME, with a one-line value's final line end dropped and
// a PEM kept byte for byte. Files and variables are real; standard input is a given function.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>

#include "cli/flag_sources.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::cli {
namespace {

class FlagSourcesTest : public ::testing::Test {
 protected:
  std::string file_with(const std::string& name, const std::string& content) {
    const auto path = dir_.path() / name;
    std::ofstream(path, std::ios::binary) << content;
    return path.string();
  }
  test::TempDir dir_{"capi-flag-sources-"};
};

TEST_F(FlagSourcesTest, APlainValueIsItself) {
  FlagSources sources([] { return std::string("never read"); });
  std::string value = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
  ASSERT_TRUE(sources.resolve("--aws4-hmac-sha256-secret-access-key", value).ok());
  EXPECT_EQ(value, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  std::optional<std::string> absent;
  ASSERT_TRUE(sources.resolve("--tls-key", absent).ok());
  EXPECT_FALSE(absent);
}

TEST_F(FlagSourcesTest, AFileLosesTheLineEndOfItsOneLine) {
  FlagSources sources;
  std::string lf = "@" + file_with("lf", "my-secret\n");
  std::string crlf = "@" + file_with("crlf", "my-secret\r\n");
  std::string bare = "@" + file_with("bare", "my-secret");
  for (std::string* v : {&lf, &crlf, &bare}) {
    ASSERT_TRUE(sources.resolve("--cap1-hmac-sha512-key", *v).ok());
    EXPECT_EQ(*v, "my-secret");
  }
}

TEST_F(FlagSourcesTest, APemFileIsKeptByteForByte) {
  const std::string pem = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";
  std::optional<std::string> value = "@" + file_with("key.pem", pem);
  ASSERT_TRUE(FlagSources().resolve("--tls-key", value).ok());
  EXPECT_EQ(value, pem);
}

TEST_F(FlagSourcesTest, StandardInputIsReadByOneFlagOnly) {
  int reads = 0;
  FlagSources sources([&] {
    ++reads;
    return std::string("from-stdin\n");
  });
  std::string first = "-";
  ASSERT_TRUE(sources.resolve("--capability", first).ok());
  EXPECT_EQ(first, "from-stdin");
  std::string second = "-";
  auto refused = sources.resolve("--tls-key", second);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message,
            "--tls-key: standard input is already read by --capability; give this one as @FILE or env:NAME");
  EXPECT_EQ(reads, 1);

  FlagSources claimed([] { return std::string("x"); });
  claimed.claim_stdin("--data");
  std::string third = "-";
  EXPECT_FALSE(claimed.resolve("--capability", third).ok());
}

TEST_F(FlagSourcesTest, AnEnvironmentVariable) {
  ::setenv("CAPI_TEST_SECRET", "from-env", 1);
  std::string value = "env:CAPI_TEST_SECRET";
  ASSERT_TRUE(FlagSources().resolve("--aws4-hmac-sha256-session-token", value).ok());
  EXPECT_EQ(value, "from-env");
  ::unsetenv("CAPI_TEST_SECRET");
  std::string unset = "env:CAPI_TEST_SECRET";
  auto refused = FlagSources().resolve("--aws4-hmac-sha256-session-token", unset);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.error().message,
            "--aws4-hmac-sha256-session-token: the environment variable CAPI_TEST_SECRET is not set");
  std::string bad_name = "env:NOT-A-NAME";
  EXPECT_FALSE(FlagSources().resolve("--capability", bad_name).ok());
}

TEST_F(FlagSourcesTest, ErrorsNameTheFileNeverAValue) {
  std::string missing = "@" + (dir_.path() / "absent").string();
  auto refused = FlagSources().resolve("--tls-key", missing);
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.error().message.find("--tls-key: cannot read " + (dir_.path() / "absent").string()),
            std::string::npos)
      << refused.error().message;
  std::string empty = "@" + file_with("empty", "\n");
  auto empty_refused = FlagSources().resolve("--capability", empty);
  ASSERT_FALSE(empty_refused.ok());
  EXPECT_NE(empty_refused.error().message.find("is empty"), std::string::npos) << empty_refused.error().message;
  std::string no_name = "@";
  EXPECT_FALSE(FlagSources().resolve("--capability", no_name).ok());
}

TEST(FlagSourcesLineEnd, OnlyAOneLineValueLosesIt) {
  EXPECT_EQ(without_final_line_end("a\n"), "a");
  EXPECT_EQ(without_final_line_end("a\r\n"), "a");
  EXPECT_EQ(without_final_line_end("a\n\n"), "a\n\n");  // two lines: kept
  EXPECT_EQ(without_final_line_end("a\nb\n"), "a\nb\n");
  EXPECT_EQ(without_final_line_end(""), "");
}

}  // namespace
}  // namespace membraned::cli
