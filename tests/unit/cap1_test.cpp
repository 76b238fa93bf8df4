// core/cap1, beyond the official vectors (cap1_vectors_test.cpp): the canonicalisation stages
// with their JavaScript quirks, sign's errors, and verify's decisions around a fixed clock.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "core/cap1.hpp"
#include "core/encoding.hpp"
#include "tests/support/test_support.hpp"

namespace {

using namespace membraned::core;
using membraned::test::parse_iso8601_utc;
using namespace std::chrono_literals;

// --- trimall ---------------------------------------------------------------------------------------

TEST(Trimall, CollapsesWhiteSpaceOutsideQuotes) {
  EXPECT_EQ(cap1::trimall("a   b"), "a b");
  EXPECT_EQ(cap1::trimall("a \t\n\r\v\f b"), "a b");
  EXPECT_EQ(cap1::trimall("a\xC2\xA0\xC2\xA0"
                          "b"),
            "a b");  // U+00A0 twice
  EXPECT_EQ(cap1::trimall("a\xE3\x80\x80"
                          "b"),
            "a b");  // U+3000
  EXPECT_EQ(cap1::trimall("a\xE2\x80\xA8"
                          "b"),
            "a b");  // U+2028
  EXPECT_EQ(cap1::trimall("value"), "value");
  EXPECT_EQ(cap1::trimall(""), "");
  EXPECT_EQ(cap1::trimall("   "), "");
}

TEST(Trimall, TrimsLeadingAndTrailing) {
  EXPECT_EQ(cap1::trimall("  a b  "), "a b");
  EXPECT_EQ(cap1::trimall("\t\na\r\n"), "a");
  EXPECT_EQ(cap1::trimall("\xC2\xA0"
                          "a\xC2\xA0"),
            "a");
  EXPECT_EQ(cap1::trimall("\xEF\xBB\xBF"
                          "a"),
            "a");  // U+FEFF counts as white space in JavaScript
}

TEST(Trimall, KeepsQuotedSections) {
  EXPECT_EQ(cap1::trimall("a   \"b   c\"   d"), "a \"b   c\" d");
  EXPECT_EQ(cap1::trimall("\"  x  \""), "\"  x  \"");
  EXPECT_EQ(cap1::trimall("  \"x\"  "), "\"x\"");
  EXPECT_EQ(cap1::trimall("\"\""), "\"\"");
  EXPECT_EQ(cap1::trimall("\"a\t\tb\" \"c  d\""), "\"a\t\tb\" \"c  d\"");
}

TEST(Trimall, UnbalancedQuoteGetsAClosingQuote) {
  EXPECT_EQ(cap1::trimall("a\"b"), "a\"b\"");
  EXPECT_EQ(cap1::trimall("a\"b  c"), "a\"b  c\"");
  EXPECT_EQ(cap1::trimall("a\"b\"c\"d"), "a\"b\"c\"d\"");
  EXPECT_EQ(cap1::trimall("\""), "\"\"");
}

// --- posix_normalize (Node's path.posix.normalize) ------------------------------------------------

TEST(PosixNormalize, MatchesNode) {
  // Expected values printed by Node 's path.posix.normalize.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "."},
      {"/a/./b/../c/", "/a/c/"},
      {"a/../../b", "../b"},
      {"/../a", "/a"},
      {"./", "./"},
      {"//", "/"},
      {".", "."},
      {"/", "/"},
      {"a//b", "a/b"},
      {"../", "../"},
      {"a/..", "."},
      {"a/../", "./"},
      {"/a/b/../../..", "/"},
      {"..", ".."},
      {"../../a/..", "../.."},
      {"a/./b/.", "a/b"},
      {"/a/b/c/../../d", "/a/d"},
      {"./a", "a"},
      {"a/b/../..", "."},
      {"///a///", "/a/"},
  };
  for (const auto& [in, out] : cases) {
    EXPECT_EQ(cap1::posix_normalize(in), out) << "input \"" << in << "\"";
  }
}

// --- canonical_uri and canonical_query -------------------------------------------------------------

TEST(Cap1CanonicalUri, EncodesTheNormalisedDecodedPath) {
  auto a = cap1::canonical_uri("/a b");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, "%2Fa%20b");
  auto b = cap1::canonical_uri("/a%2Fb/../c");  // decoded first: the %2F becomes a separator
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(*b, "%2Fa%2Fc");
  auto c = cap1::canonical_uri("/caf%C3%A9/./x/");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, "%2Fcaf%C3%A9%2Fx%2F");
  auto d = cap1::canonical_uri("/somewhere");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, "%2Fsomewhere");
  auto e = cap1::canonical_uri("");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(*e, ".");
  auto f = cap1::canonical_uri("/(x)!*~'");
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(*f, "%2F(x)!*~'");
}

TEST(Cap1CanonicalUri, MalformedEscapesAreErrors) {
  for (std::string_view bad : {"%ZZ", "/a%", "/a%2", "/%C3", "/%C0%AF", "/%ED%A0%80"}) {
    auto r = cap1::canonical_uri(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().kind, ErrorKind::invalid_input);
  }
}

TEST(Cap1CanonicalQuery, ReproducesTheReferenceQuirks) {
  // Expected values computed by the reference's expression in Node.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", ""},
      {"flag", "flag=undefined"},
      {"a=b=c", "a=b"},
      {"b=1&a=2&a=1", "a=1&a=2&b=1"},
      {"a%20=1&a=2", "a%20=1&a=2"},
      {"%62=1&a=2", "b=1&a=2"},  // sorted raw, before decoding
      {"a=+", "a=%2B"},
      {"x=%7e%2f", "x=~%2F"},
      {"a=b&a=B", "a=B&a=b"},
      {"k=caf%C3%A9", "k=caf%C3%A9"},
      {"B=1&a=2", "B=1&a=2"},
      {"a=&b", "a=&b=undefined"},
      {"page=12", "page=12"},
  };
  for (const auto& [in, out] : cases) {
    auto r = cap1::canonical_query(in);
    ASSERT_TRUE(r.ok()) << in;
    EXPECT_EQ(*r, out) << "input \"" << in << "\"";
  }
}

TEST(Cap1CanonicalQuery, MalformedEscapesAreErrors) {
  for (std::string_view bad : {"%", "a=%", "%zz=1", "a=%C3", "a=1&b=%E2%98"}) {
    auto r = cap1::canonical_query(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().kind, ErrorKind::invalid_input);
  }
}

// --- latin1_to_utf8 --------------------------------------------------------------------------------

TEST(Latin1ToUtf8, HighBytesBecomeTwoBytes) {
  EXPECT_EQ(cap1::latin1_to_utf8(""), "");
  EXPECT_EQ(cap1::latin1_to_utf8("abc"), "abc");
  EXPECT_EQ(cap1::latin1_to_utf8(std::string(1, '\0')), std::string(1, '\0'));
  EXPECT_EQ(cap1::latin1_to_utf8("\x7f"), "\x7f");
  EXPECT_EQ(cap1::latin1_to_utf8("\x80"), "\xC2\x80");
  EXPECT_EQ(cap1::latin1_to_utf8("\xE9"), "\xC3\xA9");
  EXPECT_EQ(cap1::latin1_to_utf8("\xFF"), "\xC3\xBF");
  EXPECT_EQ(cap1::latin1_to_utf8("a\xBF"
                                 "b\xC0"),
            "a\xC2\xBF"
            "b\xC3\x80");
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  std::string utf8 = cap1::latin1_to_utf8(all);
  EXPECT_EQ(utf8.size(), 128u + 2u * 128u);
  EXPECT_TRUE(is_valid_utf8(utf8));
}

// --- sign ------------------------------------------------------------------------------------------

const auto kNow = parse_iso8601_utc("2017-07-02T20:46:57Z");

cap1::SignInput basic_input() {
  cap1::SignInput in;
  in.headers = {{"Host", "api.example.com"}, {"Content-Type", "application/json"}};
  in.method = "POST";
  in.path = "/v1/items";
  in.query = "page=12&sort=asc";
  in.key = "c2VjcmV0LWtleQ";
  in.key_id = "key-1";
  in.now = kNow;
  return in;
}

// core reads no clock: the time comes from the caller, and a forgotten one is the epoch, which no
// verifier accepts, never the current time.
TEST(Cap1Sign, TheCallerGivesTheTime) {
  cap1::SignInput in = basic_input();
  auto signed_now = cap1::sign(in);
  ASSERT_TRUE(signed_now.ok());
  EXPECT_EQ(signed_now->cap_date, "20170702T204657Z");
  in.now = {};
  auto unset = cap1::sign(in);
  ASSERT_TRUE(unset.ok());
  EXPECT_EQ(unset->cap_date, "19700101T000000Z");
  EXPECT_EQ(cap1::VerifyInput{}.now, std::chrono::system_clock::time_point{});
}

TEST(Cap1Sign, WithoutHostIsInvalidInput) {
  cap1::SignInput in = basic_input();
  in.headers = {{"Content-Type", "text/plain"}};
  auto r = cap1::sign(in);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().kind, ErrorKind::invalid_input);
  EXPECT_FALSE(r.error().message.empty());
  in.headers = {{"Host", ""}};
  EXPECT_FALSE(cap1::sign(in).ok());
}

TEST(Cap1Sign, MalformedCapDateIsAnError) {
  for (std::string bad : {"2017-07-02", "2017-07-02T20:46:57Z", "", "20170702", "2017070XT204657Z",
                          "20171302T204657Z", "20170230T204657Z", "20170702T246057Z",
                          "20170702T206057Z", "20170702T204660Z", "20170002T204657Z"}) {
    SCOPED_TRACE(bad);
    cap1::SignInput in = basic_input();
    in.headers.push_back({"X-Cap-Date", bad});
    auto r = cap1::sign(in);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, ErrorKind::invalid_input);
  }
}

TEST(Cap1Sign, LeapDayIsAValidCapDate) {
  cap1::SignInput in = basic_input();
  in.headers.push_back({"X-Cap-Date", "20240229T120000Z"});
  auto r = cap1::sign(in);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->cap_date, "20240229T120000Z");
  in.headers.back().value = "20230229T120000Z";
  EXPECT_FALSE(cap1::sign(in).ok());
}

TEST(Cap1Sign, BadPathOrQueryIsAnError) {
  cap1::SignInput in = basic_input();
  in.path = "/%ZZ";
  EXPECT_FALSE(cap1::sign(in).ok());
  in = basic_input();
  in.query = "%";
  EXPECT_FALSE(cap1::sign(in).ok());
}

TEST(Cap1Sign, GeneratesXCapDateFromNowAndFormatsTheAuthorization) {
  auto r = cap1::sign(basic_input());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->cap_date, "20170702T204657Z");
  EXPECT_EQ(r->credential, "key-1/20170702/api.example.com/cap1_request");
  EXPECT_EQ(r->signed_headers, "content-type;host;x-cap-date");
  EXPECT_EQ(r->signature.size(), 86u);  // base64url of 64 bytes, unpadded
  EXPECT_TRUE(is_base64url_text(r->signature));
  EXPECT_EQ(r->authorization, "CAP1-HMAC-SHA512 Credential=key-1/20170702/api.example.com/cap1_request,"
                              "SignedHeaders=content-type;host;x-cap-date,Signature=" +
                                  r->signature);
  EXPECT_EQ(r->canonical_request,
            "POST\n%2Fv1%2Fitems\npage=12&sort=asc\ncontent-type:application/json\n"
            "host:api.example.com\nx-cap-date:20170702T204657Z\n\ncontent-type;host;x-cap-date");
  EXPECT_EQ(r->string_to_sign.substr(0, r->string_to_sign.rfind('\n')),
            "CAP1-HMAC-SHA512\n20170702T204657Z\n20170702/api.example.com/cap1_request");
}

TEST(Cap1Sign, GivenXCapDateWinsOverNow) {
  cap1::SignInput in = basic_input();
  in.headers.push_back({"X-Cap-Date", "20200101T000000Z"});
  auto r = cap1::sign(in);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->cap_date, "20200101T000000Z");
  EXPECT_EQ(r->credential, "key-1/20200101/api.example.com/cap1_request");
}

TEST(Cap1Sign, HopByHopHeadersAreNotSigned) {
  cap1::SignInput in = basic_input();
  in.headers.push_back({"Connection", "keep-alive"});
  in.headers.push_back({"Transfer-Encoding", "chunked"});
  auto with = cap1::sign(in);
  auto without = cap1::sign(basic_input());
  ASSERT_TRUE(with.ok());
  ASSERT_TRUE(without.ok());
  EXPECT_EQ(with->signed_headers, "content-type;host;x-cap-date");
  EXPECT_EQ(with->signature, without->signature);
  in.drop_hop_by_hop = false;  // the pre-1.4 behaviour
  auto old = cap1::sign(in);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->signed_headers, "connection;content-type;host;transfer-encoding;x-cap-date");
  EXPECT_NE(old->signature, without->signature);
}

TEST(Cap1Sign, MethodIsUpperCasedAndHostLowerCasedInScope) {
  cap1::SignInput lower = basic_input();
  lower.method = "post";
  auto a = cap1::sign(lower);
  auto b = cap1::sign(basic_input());
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a->signature, b->signature);
  cap1::SignInput upper_host = basic_input();
  upper_host.headers[0].value = "API.Example.COM";
  auto c = cap1::sign(upper_host);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->credential, "key-1/20170702/api.example.com/cap1_request");
}

// --- verify ------------------------------------------------------------------------------------------

class Cap1Verify : public ::testing::Test {
 protected:
  void SetUp() override {
    auto signed_out = cap1::sign(basic_input());
    ASSERT_TRUE(signed_out.ok()) << signed_out.error().message;
    out = *signed_out;
    // As an HTTP server hands a request over: names lower-cased, one entry each.
    input.headers = {{"host", "api.example.com"},
                     {"content-type", "application/json"},
                     {"x-cap-date", out.cap_date},
                     {"authorization", out.authorization}};
    input.method = "POST";
    input.path = "/v1/items";
    input.query = "page=12&sort=asc";
    input.secret = [](std::string_view id) -> std::optional<std::string> {
      if (id == "key-1") return std::string("c2VjcmV0LWtleQ");
      return std::nullopt;
    };
    input.now = kNow;
  }
  void set(std::string_view name, std::string value) { set_header(input.headers, name, std::move(value)); }
  cap1::SignOutput out;
  cap1::VerifyInput input;
};

TEST_F(Cap1Verify, RoundTripVerifies) { EXPECT_TRUE(cap1::verify(input)); }

TEST_F(Cap1Verify, HeaderNameCaseDoesNotMatter) {
  for (Header& h : input.headers) {
    if (h.name == "host") h.name = "HOST";
    if (h.name == "x-cap-date") h.name = "X-Cap-Date";
  }
  EXPECT_TRUE(cap1::verify(input));
}

TEST_F(Cap1Verify, WithinFifteenMinutesEitherWay) {
  input.now = kNow + 15min;
  EXPECT_TRUE(cap1::verify(input));
  input.now = kNow - 15min;
  EXPECT_TRUE(cap1::verify(input));
  input.now = kNow + 15min + 1s;
  EXPECT_FALSE(cap1::verify(input));
  input.now = kNow - 15min - 1s;
  EXPECT_FALSE(cap1::verify(input));
  input.now = kNow + 24h;
  EXPECT_FALSE(cap1::verify(input));
  // Milliseconds count, as in the reference's Date arithmetic.
  input.now = kNow + 15min + 1ms;
  EXPECT_FALSE(cap1::verify(input));
}

// A request signed (correctly) with a date centuries away is refused: date arithmetic must not
// overflow and wrap the date next to `now`.
TEST_F(Cap1Verify, DatesFarFromNowAreRefused) {
  for (std::string date : {"26020121T202131Z", "06170101T000000Z", "99991231T235959Z", "00000101T000000Z"}) {
    SCOPED_TRACE(date);
    cap1::SignInput far = basic_input();
    far.headers.push_back({"X-Cap-Date", date});
    auto signed_far = cap1::sign(far);
    ASSERT_TRUE(signed_far.ok()) << signed_far.error().message;
    set("x-cap-date", date);
    set("authorization", signed_far->authorization);
    EXPECT_FALSE(cap1::verify(input));
  }
}

TEST_F(Cap1Verify, WrongKeyFails) {
  input.secret = [](std::string_view) -> std::optional<std::string> { return std::string("b3RoZXI"); };
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, UnknownKeyIdFails) {
  input.secret = [](std::string_view) -> std::optional<std::string> { return std::nullopt; };
  EXPECT_FALSE(cap1::verify(input));
  input.secret = [](std::string_view) -> std::optional<std::string> { return std::string(); };
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, LookupIsAskedForTheCredentialKeyId) {
  std::vector<std::string> asked;
  input.secret = [&asked](std::string_view id) -> std::optional<std::string> {
    asked.emplace_back(id);
    return std::string("c2VjcmV0LWtleQ");
  };
  EXPECT_TRUE(cap1::verify(input));
  EXPECT_EQ(asked, std::vector<std::string>{"key-1"});
}

TEST_F(Cap1Verify, ChangedMethodFails) {
  input.method = "PUT";
  EXPECT_FALSE(cap1::verify(input));
  input.method = "post";  // methods are upper-cased before signing
  EXPECT_TRUE(cap1::verify(input));
}

TEST_F(Cap1Verify, ChangedPathFails) {
  input.path = "/v1/items/2";
  EXPECT_FALSE(cap1::verify(input));
  input.path = "/v1/Items";
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, ChangedQueryFails) {
  input.query = "page=13&sort=asc";
  EXPECT_FALSE(cap1::verify(input));
  input.query = "";
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, ChangedSignedHeaderValueFails) {
  set("content-type", "text/plain");
  EXPECT_FALSE(cap1::verify(input));
  SetUp();
  set("host", "evil.example.com");
  EXPECT_FALSE(cap1::verify(input));
  SetUp();
  set("x-cap-date", "20170702T204658Z");  // one second later, still within the skew
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, RemovedSignedHeaderFails) {
  erase_headers(input.headers, "content-type");
  EXPECT_FALSE(cap1::verify(input));
  SetUp();
  erase_headers(input.headers, "x-cap-date");
  EXPECT_FALSE(cap1::verify(input));
  SetUp();
  erase_headers(input.headers, "authorization");
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, ThrowingLookupFails) {
  input.secret = [](std::string_view) -> std::optional<std::string> {
    throw std::runtime_error("secret store down");
  };
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, NullLookupFails) {
  input.secret = nullptr;
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, AuthorizationMustStartWithTheAlgorithm) {
  std::string rest = out.authorization.substr(std::string("CAP1-HMAC-SHA512").size());
  for (std::string prefix : {"AWS4-HMAC-SHA256", "cap1-hmac-sha512", "CAP1-HMAC-SHA256", "Bearer", ""}) {
    SCOPED_TRACE(prefix);
    set("authorization", prefix + rest);
    EXPECT_FALSE(cap1::verify(input));
  }
  set("authorization", " " + out.authorization);
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, TamperedSignatureFails) {
  std::string auth = out.authorization;
  auth.back() = auth.back() == 'A' ? 'B' : 'A';
  set("authorization", auth);
  EXPECT_FALSE(cap1::verify(input));
  set("authorization", out.authorization + "x");
  EXPECT_FALSE(cap1::verify(input));
  set("authorization", out.authorization.substr(0, out.authorization.size() - 1));
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, SignedHeadersThatOmitHostFail) {
  // Re-signing without Host is an error in the reference; verify answers false.
  std::string auth = out.authorization;
  auto at = auth.find("SignedHeaders=");
  auto end = auth.find(",Signature");
  auth.replace(at, end - at, "SignedHeaders=content-type;x-cap-date");
  set("authorization", auth);
  EXPECT_FALSE(cap1::verify(input));
}

TEST_F(Cap1Verify, ExtraUnsignedHeadersStillVerify) {
  input.headers.push_back({"user-agent", "curl/8.5"});
  input.headers.push_back({"x-forwarded-for", "203.0.113.9"});
  input.headers.push_back({"connection", "close"});
  input.headers.push_back({"accept", "*/*"});
  EXPECT_TRUE(cap1::verify(input));
}

TEST_F(Cap1Verify, MalformedCapDateFails) {
  set("x-cap-date", "2017-07-02");
  EXPECT_FALSE(cap1::verify(input));
  set("x-cap-date", "");
  EXPECT_FALSE(cap1::verify(input));
}

}  // namespace
