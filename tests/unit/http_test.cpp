// core/http: token syntax, safe header values, method names, hop-by-hop headers and the
// case-insensitive header list helpers.
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "core/http.hpp"

namespace {

using namespace membraned::core;

TEST(IsHttpToken, AcceptsEveryTcharAndRejectsEverythingElse) {
  const std::string tchars =
      "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
  EXPECT_TRUE(is_http_token(tchars));
  for (int c = 0; c < 256; ++c) {
    std::string s(1, static_cast<char>(c));
    bool expected = tchars.find(static_cast<char>(c)) != std::string::npos;
    EXPECT_EQ(is_http_token(s), expected) << "byte " << c;
  }
}

TEST(IsHttpToken, TypicalNames) {
  EXPECT_TRUE(is_http_token("X-Amz-Invocation-Type"));
  EXPECT_TRUE(is_http_token("content-type"));
  EXPECT_TRUE(is_http_token("GET"));
  EXPECT_FALSE(is_http_token(""));
  EXPECT_FALSE(is_http_token("X Header"));
  EXPECT_FALSE(is_http_token("X-Header:"));
  EXPECT_FALSE(is_http_token("X-Header\r\n"));
  EXPECT_FALSE(is_http_token("(comment)"));
  EXPECT_FALSE(is_http_token("a/b"));
  EXPECT_FALSE(is_http_token("caf\xC3\xA9"));
}

TEST(IsSafeHeaderValue, RejectsCrLfAndNulOnly) {
  EXPECT_TRUE(is_safe_header_value(""));
  EXPECT_TRUE(is_safe_header_value("RequestResponse"));
  EXPECT_TRUE(is_safe_header_value("a b\tc \"quoted\" caf\xC3\xA9 \x7f"));
  EXPECT_FALSE(is_safe_header_value("a\rb"));
  EXPECT_FALSE(is_safe_header_value("a\nb"));
  EXPECT_FALSE(is_safe_header_value("value\r\nX-Injected: 1"));
  EXPECT_FALSE(is_safe_header_value(std::string("a\0b", 3)));
  EXPECT_FALSE(is_safe_header_value("\n"));
}

TEST(StandardMethod, UpperCasesTheStandardNames) {
  for (std::string m : {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}) {
    SCOPED_TRACE(m);
    auto exact = standard_method(m);
    ASSERT_TRUE(exact.has_value());
    EXPECT_EQ(*exact, m);
    std::string lower = to_lower_ascii(m);
    auto from_lower = standard_method(lower);
    ASSERT_TRUE(from_lower.has_value());
    EXPECT_EQ(*from_lower, m);
  }
  auto mixed = standard_method("pAtCh");
  ASSERT_TRUE(mixed.has_value());
  EXPECT_EQ(*mixed, "PATCH");
}

TEST(StandardMethod, RejectsOtherNames) {
  for (std::string_view m : {"FOO", "", "GETT", "GE", " GET", "GET ", "PROPFIND", "MKCOL", "get\n",
                             "DELETE!", "LINK"}) {
    EXPECT_FALSE(standard_method(m).has_value()) << testing::PrintToString(std::string(m));
  }
}

TEST(IsHopByHopHeader, TheEightNamesInAnyCase) {
  for (std::string_view h : {"Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
                             "TE", "Trailer", "Transfer-Encoding", "Upgrade", "connection",
                             "KEEP-ALIVE", "te", "transfer-encoding", "UpGrAdE"}) {
    EXPECT_TRUE(is_hop_by_hop_header(h)) << h;
  }
  for (std::string_view h : {"Host", "Content-Length", "Authorization", "Trailers", "Connections",
                             "X-Connection", "T", "", "Proxy-Connection-X", "Content-Type"}) {
    EXPECT_FALSE(is_hop_by_hop_header(h)) << h;
  }
}

TEST(Iequals, ComparesAsciiCaseInsensitively) {
  EXPECT_TRUE(iequals("Content-Type", "content-type"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_TRUE(iequals("ABC-123", "abc-123"));
  EXPECT_FALSE(iequals("Content-Type", "Content-Typ"));
  EXPECT_FALSE(iequals("a", ""));
  EXPECT_FALSE(iequals("a-b", "a_b"));
  EXPECT_FALSE(iequals("[", "{"));  // 0x5B vs 0x7B: not letters, not folded
  EXPECT_FALSE(iequals("@", "`"));
  EXPECT_FALSE(iequals("\xC3\xA9", "\xC3\x89"));  // é vs É: ASCII folding only
}

TEST(ToLowerAscii, LowersOnlyAsciiLetters) {
  EXPECT_EQ(to_lower_ascii("X-Amz-Date[]@\xC3\x89"), "x-amz-date[]@\xC3\x89");
  EXPECT_EQ(to_lower_ascii('Z'), 'z');
  EXPECT_EQ(to_lower_ascii('@'), '@');
  EXPECT_EQ(to_lower_ascii('z'), 'z');
}

TEST(IstartsWith, PrefixCaseInsensitive) {
  EXPECT_TRUE(istarts_with("Bearer abc", "bearer"));
  EXPECT_TRUE(istarts_with("x", ""));
  EXPECT_FALSE(istarts_with("Bear", "bearer"));
  EXPECT_FALSE(istarts_with("Basic abc", "bearer"));
}

TEST(FindHeader, FirstMatchCaseInsensitive) {
  Headers h = {{"Host", "a.example"}, {"X-Test", "1"}, {"x-test", "2"}};
  const Header* found = find_header(h, "X-TEST");
  ASSERT_NE(found, nullptr);
  EXPECT_EQ(found->value, "1");
  EXPECT_EQ(found, &h[1]);
  const Header* host = find_header(h, "host");
  ASSERT_NE(host, nullptr);
  EXPECT_EQ(host->value, "a.example");
  EXPECT_EQ(find_header(h, "X-Tes"), nullptr);
  EXPECT_EQ(find_header(h, ""), nullptr);
  EXPECT_EQ(find_header(Headers{}, "Host"), nullptr);
}

TEST(EraseHeaders, RemovesEveryMatchAndCountsThem) {
  Headers h = {{"A", "1"}, {"b", "2"}, {"a", "3"}, {"C", "4"}, {"A", "5"}};
  EXPECT_EQ(erase_headers(h, "a"), 3u);
  EXPECT_EQ(h, (Headers{{"b", "2"}, {"C", "4"}}));
  EXPECT_EQ(erase_headers(h, "missing"), 0u);
  EXPECT_EQ(h.size(), 2u);
}

TEST(SetHeader, ReplacesEveryMatchByOneAtTheEnd) {
  Headers h = {{"content-type", "text/plain"}, {"X-A", "1"}, {"Content-Type", "text/html"}};
  set_header(h, "Content-Type", "application/json");
  EXPECT_EQ(h, (Headers{{"X-A", "1"}, {"Content-Type", "application/json"}}));
  set_header(h, "X-New", "v");
  EXPECT_EQ(h, (Headers{{"X-A", "1"}, {"Content-Type", "application/json"}, {"X-New", "v"}}));
  Headers empty;
  set_header(empty, "Host", "h");
  EXPECT_EQ(empty, (Headers{{"Host", "h"}}));
}

// Found by fuzzing (tests/fuzz/regressions/http_session): a parameter name is the requester's
// bytes; quoted raw in the message, one that is not UTF-8 made the JSON answer throw.
TEST(ParseFormQuery, AMalformedValueIsNamedOnlyAsAPrintableExcerpt) {
  auto parsed = parse_form_query("ok=1&%FF%0A=%zz");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "(unprintable) is not valid percent-encoding");
  parsed = parse_form_query("limit=%zz");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "limit is not valid percent-encoding");
  EXPECT_EQ(parsed.error().field, "limit");
}

TEST(ParseFormQuery, DecodesPairs) {
  auto parsed = parse_form_query("a=1&&b=x+y%21&c");
  ASSERT_TRUE(parsed.ok());
  const std::vector<std::pair<std::string, std::string>> expected = {{"a", "1"}, {"b", "x y!"}, {"c", ""}};
  EXPECT_EQ(*parsed, expected);
}

}  // namespace
