// core/token: capability tokens, the two capability URI forms (contract §1) and the
// "Authorization: Bearer" reader (contract §2).
#include <gtest/gtest.h>

#include <set>
#include <string>
#include <vector>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/token.hpp"

namespace {

using namespace membraned::core;

// A token as printed in the service's published tutorials.
constexpr std::string_view kTutorialToken =
    "CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q";

Token generated() {
  auto t = Token::generate();
  EXPECT_TRUE(t.ok());
  return *t;
}

void expect_token_rejected(std::string_view text) {
  auto r = Token::parse(text);
  ASSERT_FALSE(r.ok()) << testing::PrintToString(std::string(text));
  EXPECT_EQ(r.error().kind, ErrorKind::invalid_input) << text;
  EXPECT_FALSE(r.error().message.empty()) << text;
}

// --- Token --------------------------------------------------------------------------------------

TEST(Token, GenerateGives94CharactersWithTheVersionPrefix) {
  Token t = generated();
  EXPECT_EQ(t.text().size(), 94u);
  EXPECT_EQ(t.text().size(), Token::kSize);
  EXPECT_EQ(t.text().substr(0, 8), "CPBLTY1-");
  std::string body = t.text().substr(8);
  EXPECT_TRUE(is_base64url_text(body)) << body;
  auto raw = base64url_decode(body);
  ASSERT_TRUE(raw.has_value());
  EXPECT_EQ(raw->size(), 64u);
}

TEST(Token, GeneratedTokenParsesBack) {
  Token t = generated();
  auto parsed = Token::parse(t.text());
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->text(), t.text());
  EXPECT_TRUE(*parsed == t);
}

TEST(Token, ThousandGeneratedTokensAreDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) seen.insert(generated().text());
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(Token, TutorialTokenParses) {
  auto t = Token::parse(kTutorialToken);
  ASSERT_TRUE(t.ok()) << t.error().message;
  EXPECT_EQ(t->text(), kTutorialToken);
}

TEST(Token, EqualityComparesText) {
  auto a = Token::parse(kTutorialToken);
  auto b = Token::parse(kTutorialToken);
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(*a == *b);
  EXPECT_FALSE(*a == generated());
}

TEST(Token, RejectsOtherVersions) {
  const std::string body(kTutorialToken.substr(8));
  expect_token_rejected("CPBLTY2-" + body);
  expect_token_rejected("CPBLTY01-" + body);
  expect_token_rejected("CPBLTY10-" + body);
  expect_token_rejected("CPBLTY-" + body);
  expect_token_rejected("CPBLTY0-" + body);
  expect_token_rejected("CPBLTY1" + body);   // no dash
  expect_token_rejected("CPBLTY1_" + body);
  expect_token_rejected("cpblty1-" + body);  // case matters
  expect_token_rejected("Cpblty1-" + body);
  expect_token_rejected("XCPBLTY1-" + body);
  expect_token_rejected(" CPBLTY1-" + body);
}

TEST(Token, RejectsEmptyAndMissingBody) {
  expect_token_rejected("");
  expect_token_rejected("CPBLTY");
  expect_token_rejected("CPBLTY1");
  expect_token_rejected("CPBLTY1-");
}

TEST(Token, RejectsCharactersOutsideBase64Url) {
  const std::string good(kTutorialToken);
  for (char bad : {'=', '+', '/', '.', ' ', '\t', '\n', '~', '%', '\0'}) {
    std::string t = good;
    t[50] = bad;
    expect_token_rejected(t);
  }
  expect_token_rejected(good.substr(0, good.size() - 2) + "==");
  expect_token_rejected(good + "=");
}

TEST(Token, RejectsTrailingJunk) {
  const std::string good(kTutorialToken);
  expect_token_rejected(good + "\n");
  expect_token_rejected(good + "\r\n");
  expect_token_rejected(good + " ");
  expect_token_rejected(good + "A");
  expect_token_rejected(good + "x");
  expect_token_rejected(good + "#");
  expect_token_rejected(good + std::string(1, '\0'));
}

TEST(Token, RejectsWrongBodyLength) {
  const std::string good(kTutorialToken);
  expect_token_rejected(good.substr(0, 8 + 85));  // 85 characters
  expect_token_rejected(good + "A");              // 87 characters
  expect_token_rejected(good.substr(0, 8 + 84));  // 84: 63 bytes
  expect_token_rejected(good + "AA");             // 88: 66 bytes
  expect_token_rejected("CPBLTY1-AAAA");
}

TEST(Token, RejectsNonCanonicalLastCharacter) {
  // 86 symbols carry 516 bits for 512: the last symbol's low 4 bits must be zero, so only
  // A, Q, g and w may end a token.
  std::string base(kTutorialToken);
  base.pop_back();
  int accepted = 0;
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  for (char c : alphabet) {
    bool ok = Token::parse(base + c).ok();
    bool canonical = c == 'A' || c == 'Q' || c == 'g' || c == 'w';
    EXPECT_EQ(ok, canonical) << "last character " << c;
    accepted += ok ? 1 : 0;
  }
  EXPECT_EQ(accepted, 4);
}

TEST(Token, LogIdIsTwelveHexDigitsOfTheDigestAndHidesTheToken) {
  auto t = Token::parse(kTutorialToken);
  ASSERT_TRUE(t.ok());
  std::string id = t->log_id();
  EXPECT_EQ(id.size(), 12u);
  EXPECT_EQ(id.find_first_not_of("0123456789abcdef"), std::string::npos) << id;
  EXPECT_EQ(id, sha256_hex(kTutorialToken).substr(0, 12));
  EXPECT_EQ(id.find(t->text()), std::string::npos);
  EXPECT_EQ(t->text().find(id), std::string::npos);
  EXPECT_EQ(id.find(t->text().substr(8, 12)), std::string::npos);
  EXPECT_NE(generated().log_id(), id);
}

TEST(Token, DigestIsSha256OfTheText) {
  auto t = Token::parse(kTutorialToken);
  ASSERT_TRUE(t.ok());
  std::string d = t->digest();
  EXPECT_EQ(d.size(), 32u);
  EXPECT_EQ(d, std::string(digest_view(sha256(kTutorialToken))));
  EXPECT_EQ(d.find(t->text()), std::string::npos);
  EXPECT_NE(generated().digest(), d);
}

// --- CapabilityUri ------------------------------------------------------------------------------

void expect_uri_rejected(std::string_view text) {
  auto r = CapabilityUri::parse(text);
  ASSERT_FALSE(r.ok()) << testing::PrintToString(std::string(text));
  EXPECT_EQ(r.error().kind, ErrorKind::invalid_input) << text;
  EXPECT_FALSE(r.error().message.empty()) << text;
}

TEST(CapabilityUri, ParsesTheUsualForm) {
  const std::string text = "cpblty://membrane.amzn-us-east-1.capability.io/#" + std::string(kTutorialToken);
  auto uri = CapabilityUri::parse(text);
  ASSERT_TRUE(uri.ok()) << uri.error().message;
  EXPECT_FALSE(uri->is_custom_form());
  EXPECT_EQ(uri->authority(), "membrane.amzn-us-east-1.capability.io");
  EXPECT_FALSE(uri->authority_scheme().has_value());
  EXPECT_EQ(uri->token().text(), kTutorialToken);
  EXPECT_EQ(uri->serialize(), text);
}

TEST(CapabilityUri, ParsesTheCustomForm) {
  const std::string with_scheme = "cpblty:bWVtYnJhbmUuZXhhbXBsZQ@https:" + std::string(kTutorialToken);
  auto a = CapabilityUri::parse(with_scheme);
  ASSERT_TRUE(a.ok()) << a.error().message;
  EXPECT_TRUE(a->is_custom_form());
  EXPECT_EQ(a->authority(), "bWVtYnJhbmUuZXhhbXBsZQ");
  ASSERT_TRUE(a->authority_scheme().has_value());
  EXPECT_EQ(*a->authority_scheme(), "https");
  EXPECT_EQ(a->token().text(), kTutorialToken);
  EXPECT_EQ(a->serialize(), with_scheme);

  const std::string without_scheme = "cpblty:bWVtYnJhbmU-_0:" + std::string(kTutorialToken);
  auto b = CapabilityUri::parse(without_scheme);
  ASSERT_TRUE(b.ok()) << b.error().message;
  EXPECT_TRUE(b->is_custom_form());
  EXPECT_EQ(b->authority(), "bWVtYnJhbmU-_0");
  EXPECT_FALSE(b->authority_scheme().has_value());
  EXPECT_EQ(b->token().text(), kTutorialToken);
  EXPECT_EQ(b->serialize(), without_scheme);
}

TEST(CapabilityUri, SerializeRoundTripsAGeneratedToken) {
  Token t = generated();
  CapabilityUri uri("localhost:8080", t);
  EXPECT_FALSE(uri.is_custom_form());
  EXPECT_EQ(uri.serialize(), "cpblty://localhost:8080/#" + t.text());
  auto back = CapabilityUri::parse(uri.serialize());
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->authority(), "localhost:8080");
  EXPECT_TRUE(back->token() == t);
  EXPECT_EQ(back->serialize(), uri.serialize());
}

TEST(CapabilityUri, AcceptsPortsAndBracketedIpv6) {
  for (std::string authority : {"example.com:443", "[::1]:8080", "[2001:db8::1]", "10.0.0.1:80",
                                "abc"}) {
    SCOPED_TRACE(authority);
    const std::string text = "cpblty://" + authority + "/#" + std::string(kTutorialToken);
    auto uri = CapabilityUri::parse(text);
    ASSERT_TRUE(uri.ok()) << uri.error().message;
    EXPECT_EQ(uri->authority(), authority);
    EXPECT_EQ(uri->serialize(), text);
  }
}

TEST(CapabilityUri, RejectsOtherSchemesAndShapes) {
  const std::string tok(kTutorialToken);
  expect_uri_rejected("http://example.com/#" + tok);
  expect_uri_rejected("https://example.com/#" + tok);
  expect_uri_rejected("cpblty//example.com/#" + tok);
  expect_uri_rejected(tok);
  expect_uri_rejected("");
  expect_uri_rejected("cpblty://");
  expect_uri_rejected("cpblty://example.com#" + tok);      // missing "/"
  expect_uri_rejected("cpblty://example.com/" + tok);      // missing "#"
  expect_uri_rejected("cpblty://example.com/?#" + tok);
  expect_uri_rejected("cpblty://example.com/#");           // no token
}

TEST(CapabilityUri, RejectsBadAuthorities) {
  const std::string tok(kTutorialToken);
  expect_uri_rejected("cpblty:///#" + tok);               // empty
  expect_uri_rejected("cpblty://ab/#" + tok);             // shorter than 3
  expect_uri_rejected("cpblty://a/#" + tok);
  expect_uri_rejected("cpblty://exa mple.com/#" + tok);   // space
  expect_uri_rejected("cpblty://example.com\t/#" + tok);
  expect_uri_rejected("cpblty://a/b/c/#" + tok);          // path inside
  expect_uri_rejected("cpblty://ex\"ample/#" + tok);
  expect_uri_rejected("cpblty://" + std::string(256, 'a') + "/#" + tok);
}

TEST(CapabilityUri, RejectsTrailingJunkAndBadTokens) {
  const std::string tok(kTutorialToken);
  expect_uri_rejected("cpblty://example.com/#" + tok + "x");
  expect_uri_rejected("cpblty://example.com/#" + tok + " ");
  expect_uri_rejected("cpblty://example.com/#" + tok + "\n");
  expect_uri_rejected("cpblty://example.com/#" + tok + "/");
  expect_uri_rejected("cpblty://example.com/#CPBLTY2-" + tok.substr(8));
  expect_uri_rejected("cpblty:abcd:" + tok + "x");
  expect_uri_rejected("cpblty:abcd:CPBLTY2-" + tok.substr(8));
  expect_uri_rejected("cpblty:abcd@https:CPBLTY2-" + tok.substr(8));
}

TEST(CapabilityUri, RejectsMalformedCustomForms) {
  const std::string tok(kTutorialToken);
  expect_uri_rejected("cpblty:abcd@:" + tok);      // empty scheme
  expect_uri_rejected("cpblty::" + tok);           // empty authority
  expect_uri_rejected("cpblty:@https:" + tok);
  expect_uri_rejected("cpblty:abcd" + tok);        // no ':' before the token
  expect_uri_rejected("cpblty:ab=cd:" + tok);      // not base64url
  expect_uri_rejected("cpblty:abcd@ht tps:" + tok);
  expect_uri_rejected("cpblty:abcd@https@x:" + tok);
}

// --- parse_bearer -------------------------------------------------------------------------------

TEST(ParseBearer, AcceptsTheSchemeWordInAnyCaseWithAnySpacing) {
  const std::string tok(kTutorialToken);
  for (const std::string& header :
       {"Bearer " + tok, "bearer " + tok, "BEARER   " + tok, "bEaReR " + tok, "  Bearer " + tok + "  ",
        "Bearer\t" + tok, "\tBearer " + tok + "\t"}) {
    SCOPED_TRACE(header);
    auto t = parse_bearer(header);
    ASSERT_TRUE(t.ok()) << t.error().message;
    EXPECT_EQ(t->text(), tok);
  }
}

TEST(ParseBearer, EveryFailureIsUnauthorized) {
  const std::string tok(kTutorialToken);
  for (const std::string& header :
       {std::string(), std::string("   "), "Basic " + tok, std::string("Basic dXNlcjpwYXNz"),
        std::string("Bearer"), std::string("Bearer "), std::string("Bearer    "), "Bearer" + tok,
        "Bearer: " + tok, "Bearer " + tok + " extra", "Bearer " + tok + "x",
        "Bearer CPBLTY2-" + tok.substr(8), "Bearer " + tok.substr(0, 93), "Token " + tok,
        "Bearerx " + tok, "Bear " + tok, "Bearer \"" + tok + "\"", "Bearer " + tok + ",",
        "Bearer cpblty://example.com/#" + tok}) {
    SCOPED_TRACE(header);
    auto t = parse_bearer(header);
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.error().kind, ErrorKind::unauthorized);
    EXPECT_FALSE(t.error().message.empty());
  }
}

TEST(ParseBearer, ErrorMessageNeverEchoesTheToken) {
  const std::string tok(kTutorialToken);
  auto t = parse_bearer("Bearer " + tok + "x");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.error().message.find(tok.substr(8)), std::string::npos);
}

}  // namespace
