// core/sigv4, stage by stage, beyond the official suite (sigv4_suite_test.cpp): path
// normalisation and encoding for S3 and other services, query and header canonicalisation, the
// header selection the service signs, dates, the signing-key cache, and AWS's documented examples.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/sigv4.hpp"
#include "tests/support/test_support.hpp"

namespace {

using namespace membraned::core;
using membraned::test::parse_iso8601_utc;
using Params = sigv4::Params;

constexpr const char* kDocSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr const char* kEmptySha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// --- remove_dot_segments (botocore semantics) ---------------------------------------------------

TEST(RemoveDotSegments, Table) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"/a/b/../c", "/a/c"},
      {"/a/b/..", "/a"},
      {"//a//", "/a/"},
      {"", "/"},
      {"/..", "/"},
      {"/", "/"},
      {"/a/./b", "/a/b"},
      {"/a/b/", "/a/b/"},
      {"/a/b/../../..", "/"},
      {"/a/b/../../../c", "/c"},
      {"/./", "/"},
      {"/a//b///c", "/a/b/c"},
      {"/a/b/./", "/a/b/"},
      {"/a/b/../", "/a/"},
      {"/..a/b..", "/..a/b.."},
      {"/.../", "/.../"},
      {"/a%2Fb/../c", "/c"},  // an encoded slash is not a separator
  };
  for (const auto& [in, out] : cases) {
    EXPECT_EQ(sigv4::remove_dot_segments(in), out) << "input " << in;
  }
}

// --- canonical_uri ------------------------------------------------------------------------------

TEST(CanonicalUri, NonS3NormalisesAndEncodesTwice) {
  EXPECT_EQ(sigv4::canonical_uri("/a%20b", true, true), "/a%2520b");
  EXPECT_EQ(sigv4::canonical_uri("/a b", true, true), "/a%20b");
  EXPECT_EQ(sigv4::canonical_uri("/a/../b", true, true), "/b");
  EXPECT_EQ(sigv4::canonical_uri("//a//b", true, true), "/a/b");
  EXPECT_EQ(sigv4::canonical_uri("", true, true), "/");
  EXPECT_EQ(sigv4::canonical_uri("/", true, true), "/");
  EXPECT_EQ(sigv4::canonical_uri("/caf\xC3\xA9", true, true), "/caf%C3%A9");
  EXPECT_EQ(sigv4::canonical_uri("/a%2Fb", true, true), "/a%252Fb");
  EXPECT_EQ(sigv4::canonical_uri("/a+b*c~d", true, true), "/a%2Bb%2Ac~d");
}

TEST(CanonicalUri, S3KeepsEscapesAndDoesNotNormalise) {
  EXPECT_EQ(sigv4::canonical_uri("/a%20b", false, false), "/a%20b");
  EXPECT_EQ(sigv4::canonical_uri("/a b", false, false), "/a%20b");
  EXPECT_EQ(sigv4::canonical_uri("/a%2fb", false, false), "/a%2Fb");
  EXPECT_EQ(sigv4::canonical_uri("/a/../b", false, false), "/a/../b");
  EXPECT_EQ(sigv4::canonical_uri("//a//b", false, false), "//a//b");
  EXPECT_EQ(sigv4::canonical_uri("/test.txt", false, false), "/test.txt");
  EXPECT_EQ(sigv4::canonical_uri("", false, false), "/");
}

TEST(Params, ForServiceSetsPathRulesPerService) {
  auto t = parse_iso8601_utc("2015-08-30T12:36:00Z");
  Params lambda = Params::for_service("us-east-1", "lambda", t);
  EXPECT_EQ(lambda.region, "us-east-1");
  EXPECT_EQ(lambda.service, "lambda");
  EXPECT_EQ(lambda.time, t);
  EXPECT_TRUE(lambda.normalize_path);
  EXPECT_TRUE(lambda.double_encode_path);
  EXPECT_TRUE(lambda.add_content_sha256_header);
  EXPECT_FALSE(lambda.headers.all);
  Params s3 = Params::for_service("eu-west-1", "s3", t);
  EXPECT_FALSE(s3.normalize_path);
  EXPECT_FALSE(s3.double_encode_path);
}

// --- query ---------------------------------------------------------------------------------------

TEST(ParseQuery, SplitsAndDecodesLeniently) {
  using P = std::vector<std::pair<std::string, std::string>>;
  EXPECT_EQ(sigv4::parse_query(""), P{});
  EXPECT_EQ(sigv4::parse_query("b=2&a&c=%20"), (P{{"b", "2"}, {"a", ""}, {"c", " "}}));
  EXPECT_EQ(sigv4::parse_query("&&a=1&"), (P{{"a", "1"}}));
  EXPECT_EQ(sigv4::parse_query("a=+&%zz=1"), (P{{"a", "+"}, {"%zz", "1"}}));
  EXPECT_EQ(sigv4::parse_query("a=b=c"), (P{{"a", "b=c"}}));
  EXPECT_EQ(sigv4::parse_query("=v"), (P{{"", "v"}}));
}

TEST(CanonicalQuery, SortsByNameThenValue) {
  EXPECT_EQ(sigv4::canonical_query({{"b", "1"}, {"a", "2"}, {"a", "1"}}), "a=1&a=2&b=1");
  EXPECT_EQ(sigv4::canonical_query({{"a", "b"}, {"a", "B"}}), "a=B&a=b");
  EXPECT_EQ(sigv4::canonical_query({{"Version", "2010-05-08"}, {"Action", "ListUsers"}}),
            "Action=ListUsers&Version=2010-05-08");
  // Upper case sorts before lower case (byte order).
  EXPECT_EQ(sigv4::canonical_query({{"a", "1"}, {"B", "2"}}), "B=2&a=1");
  EXPECT_EQ(sigv4::canonical_query({}), "");
}

TEST(CanonicalQuery, SortsTheEncodedNames) {
  // "a b" encodes to "a%20b", and '%' (0x25) sorts before '-' (0x2D).
  EXPECT_EQ(sigv4::canonical_query({{"a-b", ""}, {"a b", ""}}), "a%20b=&a-b=");
  EXPECT_EQ(sigv4::canonical_query({{"a~b", ""}, {"a_b", ""}, {"a.b", ""}, {"a-b", ""}}),
            "a-b=&a.b=&a_b=&a~b=");
}

TEST(CanonicalQuery, EncodesEverythingOutsideTheUnreservedSet) {
  EXPECT_EQ(sigv4::canonical_query({{"a", "+"}}), "a=%2B");
  EXPECT_EQ(sigv4::canonical_query(sigv4::parse_query("a=+")), "a=%2B");  // '+' is not a space
  EXPECT_EQ(sigv4::canonical_query({{"k", "a b/c=d&e"}}), "k=a%20b%2Fc%3Dd%26e");
  EXPECT_EQ(sigv4::canonical_query({{"flag", ""}}), "flag=");
  EXPECT_EQ(sigv4::canonical_query(sigv4::parse_query("x=%7e%2f")), "x=~%2F");
}

// --- headers -------------------------------------------------------------------------------------

TEST(CanonicalHeaderValue, TrimsAndCollapsesWhiteSpace) {
  EXPECT_EQ(sigv4::canonical_header_value("  a   b  "), "a b");
  EXPECT_EQ(sigv4::canonical_header_value("a\t\tb"), "a b");
  EXPECT_EQ(sigv4::canonical_header_value("a \t b"), "a b");
  EXPECT_EQ(sigv4::canonical_header_value("\"a   b\""), "\"a b\"");
  EXPECT_EQ(sigv4::canonical_header_value("value"), "value");
  EXPECT_EQ(sigv4::canonical_header_value(""), "");
  EXPECT_EQ(sigv4::canonical_header_value("   "), "");
  EXPECT_EQ(sigv4::canonical_header_value("a\n b"), "a b");
}

TEST(HeaderSelection, DefaultSignsHostAmzContentTypeAndMd5) {
  sigv4::HeaderSelection s;
  for (std::string_view name : {"host", "content-type", "content-md5", "x-amz-date",
                                "x-amz-security-token", "x-amz-content-sha256", "x-amz-meta-x",
                                "x-amz-invocation-type"}) {
    EXPECT_TRUE(s.selects(name)) << name;
  }
  for (std::string_view name : {"user-agent", "content-length", "range", "authorization",
                                "x-amzfoo", "x-forwarded-for", "via", "accept", "x-am-date"}) {
    EXPECT_FALSE(s.selects(name)) << name;
  }
}

TEST(HeaderSelection, ExtraNamesAndAll) {
  sigv4::HeaderSelection s;
  s.extra = {"range", "x-custom"};
  EXPECT_TRUE(s.selects("range"));
  EXPECT_TRUE(s.selects("x-custom"));
  EXPECT_TRUE(s.selects("host"));
  EXPECT_FALSE(s.selects("user-agent"));
  sigv4::HeaderSelection all;
  all.all = true;
  for (std::string_view name : {"user-agent", "via", "range", "host", "anything"}) {
    EXPECT_TRUE(all.selects(name)) << name;
  }
}

TEST(CanonicalHeaders, SelectsLowerCasesSortsAndJoinsRepeats) {
  const Headers headers = {{"User-Agent", "curl/8"},
                           {"X-Amz-Meta-B", "  two   words "},
                           {"Host", "example.amazonaws.com"},
                           {"x-amz-meta-b", "second"},
                           {"Content-Type", "application/json"},
                           {"X-Amz-Meta-A", "a"}};
  auto selected = sigv4::canonical_headers(headers, {});
  EXPECT_EQ(selected.block,
            "content-type:application/json\n"
            "host:example.amazonaws.com\n"
            "x-amz-meta-a:a\n"
            "x-amz-meta-b:two words,second\n");
  EXPECT_EQ(selected.signed_headers, "content-type;host;x-amz-meta-a;x-amz-meta-b");

  sigv4::HeaderSelection all;
  all.all = true;
  auto everything = sigv4::canonical_headers(headers, all);
  EXPECT_EQ(everything.signed_headers, "content-type;host;user-agent;x-amz-meta-a;x-amz-meta-b");
  EXPECT_NE(everything.block.find("user-agent:curl/8\n"), std::string::npos);
}

// --- dates, scope, string to sign ------------------------------------------------------------------

TEST(FormatAmzDate, BasicIso8601InUtc) {
  EXPECT_EQ(sigv4::format_amz_date(parse_iso8601_utc("2015-08-30T12:36:00Z")), "20150830T123600Z");
  EXPECT_EQ(sigv4::format_amz_date(parse_iso8601_utc("2024-02-29T23:59:59Z")), "20240229T235959Z");
  EXPECT_EQ(sigv4::format_amz_date(std::chrono::system_clock::time_point{}), "19700101T000000Z");
  // Fractions of a second are dropped, never rounded up.
  auto t = parse_iso8601_utc("2015-08-30T12:36:00Z") + std::chrono::milliseconds(999);
  EXPECT_EQ(sigv4::format_amz_date(t), "20150830T123600Z");
}

TEST(CredentialScope, JoinsWithTheTerminator) {
  EXPECT_EQ(sigv4::credential_scope("20150830", "us-east-1", "iam"), "20150830/us-east-1/iam/aws4_request");
}

TEST(StringToSign, HasTheFourLines) {
  EXPECT_EQ(sigv4::string_to_sign("20150830T123600Z", "20150830/us-east-1/iam/aws4_request", ""),
            std::string("AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/iam/aws4_request\n") +
                kEmptySha256);
}

// --- signing key -----------------------------------------------------------------------------------

TEST(DeriveSigningKey, AwsDocumentationExample) {
  auto key = sigv4::derive_signing_key(kDocSecret, "20120215", "us-east-1", "iam");
  EXPECT_EQ(hex_encode(digest_view(key)),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

TEST(DeriveSigningKey, EveryInputMatters) {
  auto base = sigv4::derive_signing_key(kDocSecret, "20120215", "us-east-1", "iam");
  EXPECT_NE(base, sigv4::derive_signing_key("other", "20120215", "us-east-1", "iam"));
  EXPECT_NE(base, sigv4::derive_signing_key(kDocSecret, "20120216", "us-east-1", "iam"));
  EXPECT_NE(base, sigv4::derive_signing_key(kDocSecret, "20120215", "us-east-2", "iam"));
  EXPECT_NE(base, sigv4::derive_signing_key(kDocSecret, "20120215", "us-east-1", "sts"));
}

TEST(SigningKeyCache, SameInputsDeriveOnce) {
  sigv4::SigningKeyCache cache;
  EXPECT_EQ(cache.derivations(), 0u);
  EXPECT_EQ(cache.size(), 0u);
  auto a = cache.get(kDocSecret, "20120215", "us-east-1", "iam");
  auto b = cache.get(kDocSecret, "20120215", "us-east-1", "iam");
  EXPECT_EQ(cache.derivations(), 1u);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_EQ(a, b);
  EXPECT_EQ(hex_encode(digest_view(a)),
            "f4780e2d9f65fa895f9c67b32ce1baf0b0d8a43505a000a1a9e090d414db404d");
}

TEST(SigningKeyCache, AnyDifferentInputDerivesAgain) {
  sigv4::SigningKeyCache cache;
  auto base = cache.get(kDocSecret, "20120215", "us-east-1", "iam");
  auto other_date = cache.get(kDocSecret, "20120216", "us-east-1", "iam");
  EXPECT_EQ(cache.derivations(), 2u);
  auto other_region = cache.get(kDocSecret, "20120215", "eu-west-1", "iam");
  EXPECT_EQ(cache.derivations(), 3u);
  auto other_service = cache.get(kDocSecret, "20120215", "us-east-1", "lambda");
  EXPECT_EQ(cache.derivations(), 4u);
  auto other_secret = cache.get("another-secret", "20120215", "us-east-1", "iam");
  EXPECT_EQ(cache.derivations(), 5u);
  EXPECT_EQ(cache.size(), 5u);
  EXPECT_NE(base, other_date);
  EXPECT_NE(base, other_region);
  EXPECT_NE(base, other_service);
  EXPECT_NE(base, other_secret);
  EXPECT_EQ(other_secret, sigv4::derive_signing_key("another-secret", "20120215", "us-east-1", "iam"));
  // All still cached.
  (void)cache.get(kDocSecret, "20120216", "us-east-1", "iam");
  (void)cache.get("another-secret", "20120215", "us-east-1", "iam");
  EXPECT_EQ(cache.derivations(), 5u);
}

TEST(SigningKeyCache, FieldBoundariesDoNotCollide) {
  // ("ab", "c") and ("a", "bc") must not share a cache slot.
  sigv4::SigningKeyCache cache;
  auto x = cache.get(kDocSecret, "20120215", "us-east-1a", "bc");
  auto y = cache.get(kDocSecret, "20120215", "us-east-1", "abc");
  EXPECT_EQ(cache.derivations(), 2u);
  EXPECT_NE(x, y);
  EXPECT_EQ(y, sigv4::derive_signing_key(kDocSecret, "20120215", "us-east-1", "abc"));
}

TEST(SigningKeyCache, ConcurrentGetsAgree) {
  sigv4::SigningKeyCache cache;
  const auto expected = sigv4::derive_signing_key(kDocSecret, "20120215", "us-east-1", "iam");
  std::vector<Sha256Digest> results(4);
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      for (int k = 0; k < 200; ++k) {
        auto key = cache.get(kDocSecret, "20120215", "us-east-1", "iam");
        if (k == 0) results[i] = key;
        else if (key != results[i]) results[i] = Sha256Digest{};  // disagreement: poison
      }
    });
  }
  go = true;
  for (auto& t : threads) t.join();
  for (const auto& r : results) EXPECT_EQ(r, expected);
  EXPECT_EQ(cache.size(), 1u);
  EXPECT_GE(cache.derivations(), 1u);
  EXPECT_LE(cache.derivations(), 4u);  // at most one racing miss per thread
}

TEST(SigningKeyCache, BoundedByClearingWhenFull) {
  sigv4::SigningKeyCache cache(2);
  (void)cache.get("s", "20240101", "r", "a");
  (void)cache.get("s", "20240101", "r", "b");
  EXPECT_EQ(cache.size(), 2u);
  auto c = cache.get("s", "20240101", "r", "c");
  EXPECT_EQ(cache.size(), 1u);  // cleared, then the third key stored
  EXPECT_EQ(cache.derivations(), 3u);
  EXPECT_EQ(c, sigv4::derive_signing_key("s", "20240101", "r", "c"));
  (void)cache.get("s", "20240101", "r", "c");
  EXPECT_EQ(cache.derivations(), 3u);  // the third key survived
  (void)cache.get("s", "20240101", "r", "a");
  EXPECT_EQ(cache.derivations(), 4u);  // the first one did not
  EXPECT_EQ(cache.size(), 2u);
}

// --- whole signatures against AWS's documented examples --------------------------------------------

// IAM ListUsers, from the AWS General Reference "Signature Version 4 signing process" example.
TEST(SignHeaders, AwsDocumentationIamExample) {
  sigv4::Request request;
  request.method = "GET";
  request.path = "/";
  request.query = "Action=ListUsers&Version=2010-05-08";
  request.headers = {{"Host", "iam.amazonaws.com"},
                     {"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  Params params = Params::for_service("us-east-1", "iam", parse_iso8601_utc("2015-08-30T12:36:00Z"));
  params.add_content_sha256_header = false;
  sigv4::Credentials creds{"AKIDEXAMPLE", kDocSecret, ""};
  auto sig = sigv4::sign_headers(request, creds, params);
  EXPECT_EQ(sig.canonical_request,
            std::string("GET\n/\nAction=ListUsers&Version=2010-05-08\n"
                        "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
                        "host:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\n"
                        "content-type;host;x-amz-date\n") +
                kEmptySha256);
  EXPECT_EQ(sig.signature, "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
  const Header* auth = find_header(request.headers, "Authorization");
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->value,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-date, "
            "Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7");
  EXPECT_EQ(find_header(request.headers, "X-Amz-Content-Sha256"), nullptr);
}

// S3 GET Object with a Range header, from the Amazon S3 API reference's header-signing example.
TEST(SignHeaders, AwsDocumentationS3GetObjectExample) {
  sigv4::Request request;
  request.method = "GET";
  request.path = "/test.txt";
  request.headers = {{"Host", "examplebucket.s3.amazonaws.com"}, {"Range", "bytes=0-9"}};
  Params params = Params::for_service("us-east-1", "s3", parse_iso8601_utc("2013-05-24T00:00:00Z"));
  params.headers.extra = {"range"};
  sigv4::Credentials creds{"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
  auto sig = sigv4::sign_headers(request, creds, params);
  EXPECT_EQ(sig.signature, "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  const Header* auth = find_header(request.headers, "Authorization");
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->value,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, "
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
  const Header* sha = find_header(request.headers, "x-amz-content-sha256");
  ASSERT_NE(sha, nullptr);
  EXPECT_EQ(sha->value, kEmptySha256);
}

// --- a Lambda Invoke, as the tutorial's export produces it -----------------------------------------

class LambdaInvoke : public ::testing::Test {
 protected:
  void SetUp() override {
    request.method = "POST";
    request.path = "/2015-03-31/functions/my-function/invocations";
    request.headers = {{"Host", "lambda.us-east-1.amazonaws.com"},
                       {"Content-Type", "application/json"},
                       {"User-Agent", "capability-sdk"},
                       {"X-Amz-Invocation-Type", "RequestResponse"},
                       {"X-Amz-Log-Type", "None"},
                       // Stale values a requester might send: replaced by the signer.
                       {"X-Amz-Date", "20000101T000000Z"},
                       {"authorization", "Bearer stale"}};
    request.body = body;
  }
  const std::string body = R"({"hello":"world"})";
  const std::string token = "FwoGZXIvYXdzEXAMPLETOKEN//////////wEaDEXAMPLE=";
  const std::string body_sha256 = "93a23971a914e5eacbf0a8d25154cda309c3c1c72fbb9914d47c60f3cb681588";
  sigv4::Request request;
  sigv4::Credentials creds{"ASIAEXAMPLE", kDocSecret, token};
  Params params =
      Params::for_service("us-east-1", "lambda", parse_iso8601_utc("2015-08-30T12:36:00Z"));
};

TEST_F(LambdaInvoke, SignsSessionTokenAndContentHash) {
  auto sig = sigv4::sign_headers(request, creds, params);
  const Header* auth = find_header(request.headers, "Authorization");
  ASSERT_NE(auth, nullptr);
  const std::string signed_headers =
      "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-invocation-type;x-amz-log-type;"
      "x-amz-security-token";
  EXPECT_EQ(auth->value, "AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/20150830/us-east-1/lambda/aws4_request, "
                         "SignedHeaders=" + signed_headers + ", Signature=" + sig.signature);
  EXPECT_NE(auth->value.find("x-amz-security-token"), std::string::npos);
  EXPECT_NE(auth->value.find("x-amz-content-sha256"), std::string::npos);
  EXPECT_EQ(auth->value.find("user-agent"), std::string::npos);
  // Computed independently (Python hmac/hashlib over the same canonical request).
  EXPECT_EQ(sig.signature, "38f7a02faa111572db3c58d01b8e127baecce1a5f2f62f6a93187c95072eece9");
  EXPECT_EQ(sig.canonical_request,
            "POST\n/2015-03-31/functions/my-function/invocations\n\n"
            "content-type:application/json\nhost:lambda.us-east-1.amazonaws.com\n"
            "x-amz-content-sha256:" + body_sha256 + "\nx-amz-date:20150830T123600Z\n"
            "x-amz-invocation-type:RequestResponse\nx-amz-log-type:None\n"
            "x-amz-security-token:" + token + "\n\n" + signed_headers + "\n" + body_sha256);
}

TEST_F(LambdaInvoke, AddsExactlyOneOfEachSignerHeader) {
  (void)sigv4::sign_headers(request, creds, params);
  auto count = [&](std::string_view name) {
    return std::count_if(request.headers.begin(), request.headers.end(),
                         [&](const Header& h) { return iequals(h.name, name); });
  };
  EXPECT_EQ(count("authorization"), 1);
  EXPECT_EQ(count("x-amz-date"), 1);
  EXPECT_EQ(count("x-amz-security-token"), 1);
  EXPECT_EQ(count("x-amz-content-sha256"), 1);
  EXPECT_EQ(find_header(request.headers, "X-Amz-Date")->value, "20150830T123600Z");
  EXPECT_EQ(find_header(request.headers, "X-Amz-Security-Token")->value, token);
  EXPECT_EQ(find_header(request.headers, "X-Amz-Content-Sha256")->value, body_sha256);
  EXPECT_EQ(find_header(request.headers, "User-Agent")->value, "capability-sdk");
}

// kWrittenHeaders is what export_config reserves: it must be exactly what the signer writes.
TEST_F(LambdaInvoke, WritesExactlyTheHeadersOfKWrittenHeaders) {
  const Headers before = request.headers;
  (void)sigv4::sign_headers(request, creds, params);
  auto written = [](std::string_view name) {
    return std::any_of(sigv4::kWrittenHeaders.begin(), sigv4::kWrittenHeaders.end(),
                       [&](std::string_view w) { return iequals(w, name); });
  };
  for (std::string_view name : sigv4::kWrittenHeaders) {
    EXPECT_NE(find_header(request.headers, name), nullptr) << name;
  }
  for (const Header& h : request.headers) {
    if (written(h.name)) continue;
    EXPECT_NE(std::find(before.begin(), before.end(), h), before.end()) << "the signer wrote " << h.name;
  }
}

TEST_F(LambdaInvoke, SigningTwiceGivesTheSameSignatureAndCacheAgrees) {
  sigv4::Request copy = request;
  sigv4::SigningKeyCache cache;
  auto a = sigv4::sign_headers(request, creds, params);
  auto b = sigv4::sign_headers(copy, creds, params, &cache);
  EXPECT_EQ(a.signature, b.signature);
  EXPECT_EQ(cache.derivations(), 1u);
  // Re-signing an already signed request replaces its own headers and signs the same again.
  auto c = sigv4::sign_headers(copy, creds, params, &cache);
  EXPECT_EQ(c.signature, a.signature);
  EXPECT_EQ(cache.derivations(), 1u);
}

TEST_F(LambdaInvoke, EverySignedElementChangesTheSignature) {
  sigv4::Request first = request;
  const std::string base = sigv4::sign_headers(first, creds, params).signature;
  auto signature_with = [&](auto change) {
    sigv4::Request r = request;
    sigv4::Credentials c = creds;
    Params p = params;
    change(r, c, p);
    return sigv4::sign_headers(r, c, p).signature;
  };
  std::string other_body = "{}";
  EXPECT_NE(base, signature_with([&](auto& r, auto&, auto&) { r.body = other_body; }));
  EXPECT_NE(base, signature_with([](auto& r, auto&, auto&) { r.method = "PUT"; }));
  EXPECT_NE(base, signature_with([](auto& r, auto&, auto&) { r.path += "x"; }));
  EXPECT_NE(base, signature_with([](auto& r, auto&, auto&) { r.query = "a=1"; }));
  EXPECT_NE(base, signature_with([](auto& r, auto&, auto&) { set_header(r.headers, "X-Amz-Log-Type", "Tail"); }));
  EXPECT_NE(base, signature_with([](auto& r, auto&, auto&) { set_header(r.headers, "Host", "lambda.us-east-2.amazonaws.com"); }));
  EXPECT_NE(base, signature_with([](auto&, auto& c, auto&) { c.session_token = "other"; }));
  EXPECT_NE(base, signature_with([](auto&, auto& c, auto&) { c.secret_access_key = "other"; }));
  EXPECT_NE(base, signature_with([](auto&, auto&, auto& p) { p.region = "us-east-2"; }));
  EXPECT_NE(base, signature_with([](auto&, auto&, auto& p) { p.time += std::chrono::seconds(1); }));
  // Unsigned headers do not matter.
  EXPECT_EQ(base, signature_with([](auto& r, auto&, auto&) { set_header(r.headers, "User-Agent", "x"); }));
  EXPECT_EQ(base, signature_with([](auto& r, auto&, auto&) { r.headers.push_back({"Via", "1.1 proxy"}); }));
}

TEST_F(LambdaInvoke, OmitSessionTokenSendsButDoesNotSignIt) {
  params.omit_session_token = true;
  (void)sigv4::sign_headers(request, creds, params);
  const Header* tok = find_header(request.headers, "X-Amz-Security-Token");
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->value, token);
  const Header* auth = find_header(request.headers, "Authorization");
  ASSERT_NE(auth, nullptr);
  EXPECT_EQ(auth->value.find("x-amz-security-token"), std::string::npos);
  EXPECT_NE(auth->value.find("SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;"
                             "x-amz-invocation-type;x-amz-log-type, "),
            std::string::npos);
}

TEST_F(LambdaInvoke, NoSessionTokenMeansNoTokenHeader) {
  creds.session_token.clear();
  request.headers.push_back({"X-Amz-Security-Token", "stale"});
  (void)sigv4::sign_headers(request, creds, params);
  EXPECT_EQ(find_header(request.headers, "X-Amz-Security-Token"), nullptr);
  EXPECT_EQ(find_header(request.headers, "Authorization")->value.find("x-amz-security-token"),
            std::string::npos);
}

// --- query form --------------------------------------------------------------------------------------

TEST(PresignQuery, AppendsTheAuthParametersAndSignsThem) {
  sigv4::Request request;
  request.method = "GET";
  request.path = "/";
  request.query = "Action=ListUsers&Version=2010-05-08";
  request.headers = {{"Host", "iam.amazonaws.com"}};
  Params params = Params::for_service("us-east-1", "iam", parse_iso8601_utc("2015-08-30T12:36:00Z"));
  params.expires = std::chrono::seconds(60);
  sigv4::Credentials creds{"AKIDEXAMPLE", kDocSecret, "tok/en="};
  auto sig = sigv4::presign_query(request, creds, params);
  EXPECT_EQ(request.query,
            "Action=ListUsers&Version=2010-05-08"
            "&X-Amz-Algorithm=AWS4-HMAC-SHA256"
            "&X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fiam%2Faws4_request"
            "&X-Amz-Date=20150830T123600Z&X-Amz-SignedHeaders=host&X-Amz-Expires=60"
            "&X-Amz-Security-Token=tok%2Fen%3D&X-Amz-Signature=" + sig.signature);
  EXPECT_EQ(sig.signature.size(), 64u);
  // The canonical request signs every parameter but the signature, sorted.
  EXPECT_NE(sig.canonical_request.find(
                "Action=ListUsers&Version=2010-05-08&X-Amz-Algorithm=AWS4-HMAC-SHA256&"
                "X-Amz-Credential=AKIDEXAMPLE%2F20150830%2Fus-east-1%2Fiam%2Faws4_request&"
                "X-Amz-Date=20150830T123600Z&X-Amz-Expires=60&X-Amz-Security-Token=tok%2Fen%3D&"
                "X-Amz-SignedHeaders=host\n"),
            std::string::npos);
  EXPECT_EQ(find_header(request.headers, "Authorization"), nullptr);
}

}  // namespace
