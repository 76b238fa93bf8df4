// contract §5 (how the upstream request is built from the export and the requester's request) and
// contract §6 (how it is signed). Signatures are checked by recomputing them from hand-written
// canonical requests with the lower-level SigV4 stages, and CAP1 ones with cap1::verify.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/aws_credentials.hpp"
#include "core/cap1.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/export_config.hpp"
#include "core/http.hpp"
#include "core/result.hpp"
#include "core/sigv4.hpp"
#include "core/upstream_request.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::core {
namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

constexpr std::string_view kBearer =
    "Bearer CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q";
constexpr std::string_view kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

std::chrono::system_clock::time_point fixed_now() {
  return test::parse_iso8601_utc("2015-08-30T12:36:00Z");
}
constexpr std::string_view kFixedAmzDate = "20150830T123600Z";

UriExport make_config(const json& doc) {
  const std::string body = doc.dump();
  auto result = parse_export_config(std::string_view(body));
  if (!result.ok()) {
    ADD_FAILURE() << "bad test export " << doc.dump() << ": " << result.error().field << ": "
                  << result.error().message;
    return {};
  }
  return std::get<UriExport>(*result);
}

UpstreamRequest build(const UriExport& config, std::string_view method, std::string_view target,
                      const Headers& headers, std::string_view body = {}) {
  return build_upstream_request(config, IncomingRequest{method, target, headers, body});
}

std::size_t count(const Headers& headers, std::string_view name) {
  std::size_t n = 0;
  for (const Header& h : headers) n += iequals(h.name, name) ? 1 : 0;
  return n;
}

std::optional<std::string> value_of(const Headers& headers, std::string_view name) {
  const Header* h = find_header(headers, name);
  return h == nullptr ? std::nullopt : std::optional<std::string>(h->value);
}

// Hex SHA-256 straight from OpenSSL, independent of core/crypto.
std::string openssl_sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EXPECT_EQ(EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr), 1);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xF];
  }
  return out;
}

// ================================================================================================
// contract §5: method
// ================================================================================================

struct MethodCase {
  std::optional<std::string> configured;
  std::string requester;
  std::string expected;
};

TEST(UpstreamRequest, MethodIsTheConfiguredOneElseTheRequesters) {
  const std::vector<MethodCase> cases = {
      {std::nullopt, "GET", "GET"},      {std::nullopt, "DELETE", "DELETE"},
      {std::nullopt, "PATCH", "PATCH"},  {"POST", "GET", "POST"},
      {"put", "PATCH", "PUT"},           {"GET", "POST", "GET"},
      {"delete", "DELETE", "DELETE"},
  };
  const Headers none;
  for (const MethodCase& c : cases) {
    SCOPED_TRACE(c.configured.value_or("<none>") + " / " + c.requester);
    json doc = {{"uri", "https://upstream.example/"}};
    if (c.configured) doc["method"] = *c.configured;
    UpstreamRequest out = build(make_config(doc), c.requester, "/", none);
    EXPECT_EQ(out.method, c.expected);
  }
}

// ================================================================================================
// contract §5: target (path and query)
// ================================================================================================

struct TargetCase {
  std::string uri;
  bool allow_query;
  std::string requester_target;
  std::string expected;
};

TEST(UpstreamRequest, TargetIsTheConfiguredUriWithTheRequestersQueryOnlyWhenAllowed) {
  const std::vector<TargetCase> cases = {
      // The requester's path is ignored, whatever it is.
      {"https://upstream.example/a/b", false, "/", "/a/b"},
      {"https://upstream.example/a/b", false, "/other/path", "/a/b"},
      {"https://upstream.example/a/b", true, "/other/path/../x", "/a/b"},
      {"https://upstream.example", false, "/deep/path", "/"},
      // Without allowQuery the requester's query is dropped; the uri's own is kept.
      {"https://upstream.example/a/b", false, "/?x=1", "/a/b"},
      {"https://upstream.example/a/b?k=v", false, "/p?x=1&y=2", "/a/b?k=v"},
      // With allowQuery: '?' when the uri has no query, '&' when it has one.
      {"https://upstream.example/a/b", true, "/p?x=1&y=2", "/a/b?x=1&y=2"},
      {"https://upstream.example/a/b?k=v", true, "/p?x=1", "/a/b?k=v&x=1"},
      {"https://upstream.example/a/b?k=v&l=w", true, "/?x=1&x=2", "/a/b?k=v&l=w&x=1&x=2"},
      {"https://upstream.example", true, "/?flag", "/?flag"},
      // Nothing appended when the requester sent no query (or an empty one).
      {"https://upstream.example/a/b", true, "/p", "/a/b"},
      {"https://upstream.example/a/b?k=v", true, "/p", "/a/b?k=v"},
      {"https://upstream.example/a/b", true, "/p?", "/a/b"},
      {"https://upstream.example/a/b?k=v", true, "/p?", "/a/b?k=v"},
      // An explicitly empty uri query gets the requester's query without a stray '&'.
      {"https://upstream.example/a?", true, "/?x=1", "/a?x=1"},
      // The requester's query is appended as received (no decoding, no re-encoding).
      {"https://upstream.example/a", true, "/?q=a%20b+c&e=%E2%82%AC&r=%2F", "/a?q=a%20b+c&e=%E2%82%AC&r=%2F"},
      // The uri's encoded path is sent as configured.
      {"https://upstream.example/a%20b/./c", false, "/", "/a%20b/./c"},
  };
  const Headers none;
  for (const TargetCase& c : cases) {
    SCOPED_TRACE(c.uri + (c.allow_query ? " (allowQuery) " : " ") + c.requester_target);
    UriExport config = make_config({{"uri", c.uri}, {"allowQuery", c.allow_query}});
    UpstreamRequest out = build(config, "GET", c.requester_target, none);
    EXPECT_EQ(out.target, c.expected);
  }
}

// ================================================================================================
// contract §5: Host, connection endpoint
// ================================================================================================

struct HostCase {
  std::string uri;
  bool https;
  std::string connect_host;
  std::uint16_t port;
  std::string host_header;
};

TEST(UpstreamRequest, HostIsTheUpstreamAuthority) {
  const std::vector<HostCase> cases = {
      {"https://upstream.example/", true, "upstream.example", 443, "upstream.example"},
      {"https://upstream.example:443/", true, "upstream.example", 443, "upstream.example"},
      {"https://upstream.example:8443/", true, "upstream.example", 8443, "upstream.example:8443"},
      {"http://upstream.example/", false, "upstream.example", 80, "upstream.example"},
      {"http://upstream.example:80/", false, "upstream.example", 80, "upstream.example"},
      {"http://upstream.example:443/", false, "upstream.example", 443, "upstream.example:443"},
      {"https://UPSTREAM.Example/", true, "upstream.example", 443, "upstream.example"},
      {"http://[2001:db8::1]:8080/", false, "2001:db8::1", 8080, "[2001:db8::1]:8080"},
      {"https://[2001:db8::1]/", true, "2001:db8::1", 443, "[2001:db8::1]"},
      {"https://[2001:db8::1]:443/", true, "2001:db8::1", 443, "[2001:db8::1]"},
      {"http://192.0.2.7:8000/", false, "192.0.2.7", 8000, "192.0.2.7:8000"},
  };
  // The requester's Host (the membrane service) must never be forwarded.
  const Headers incoming = {{"Host", "membrane.example"}, {"X-Other", "1"}};
  for (const HostCase& c : cases) {
    SCOPED_TRACE(c.uri);
    UpstreamRequest out = build(make_config({{"uri", c.uri}}), "GET", "/", incoming);
    EXPECT_EQ(out.https, c.https);
    EXPECT_EQ(out.connect_host, c.connect_host);
    EXPECT_EQ(out.port, c.port);
    EXPECT_EQ(count(out.headers, "host"), 1u);
    EXPECT_EQ(value_of(out.headers, "host"), c.host_header);
  }
}

// ================================================================================================
// contract §5: headers
// ================================================================================================

TEST(UpstreamRequest, HopByHopHeadersAreRemoved) {
  const Headers incoming = {
      {"Connection", "keep-alive"},
      {"Keep-Alive", "timeout=5"},
      {"Proxy-Authenticate", "Basic"},
      {"PROXY-AUTHORIZATION", "Basic eDp5"},
      {"te", "trailers"},
      {"Trailer", "X-Checksum"},
      {"Transfer-Encoding", "chunked"},
      {"Upgrade", "websocket"},
      {"X-Kept", "1"},
  };
  UpstreamRequest out = build(make_config({{"uri", "https://upstream.example/"}}), "GET", "/", incoming);
  const Headers expected = {{"X-Kept", "1"}, {"Host", "upstream.example"}};
  EXPECT_EQ(out.headers, expected);
}

struct ConnectionCase {
  std::vector<std::string> connection_values;  // one Connection header each
  Headers others;
  Headers expected_kept;  // before Host
};

TEST(UpstreamRequest, HeadersNamedInConnectionAreRemoved) {
  const std::vector<ConnectionCase> cases = {
      {{"X-Private"}, {{"X-Private", "a"}, {"X-Public", "b"}}, {{"X-Public", "b"}}},
      // Case-insensitive, both ways.
      {{"x-private"}, {{"X-PRIVATE", "a"}, {"X-Public", "b"}}, {{"X-Public", "b"}}},
      // Comma lists with spaces and tabs, empty items.
      {{"keep-alive, X-One ,x-two,\tX-Three\t, ,"},
       {{"X-One", "1"}, {"X-Two", "2"}, {"X-THREE", "3"}, {"X-Four", "4"}},
       {{"X-Four", "4"}}},
      // Several Connection headers add up.
      {{"X-One", "close, X-Two"}, {{"X-One", "1"}, {"X-Two", "2"}, {"X-Three", "3"}}, {{"X-Three", "3"}}},
      // Every copy of a listed header goes.
      {{"X-Dup"}, {{"X-Dup", "1"}, {"Accept", "*/*"}, {"x-dup", "2"}}, {{"Accept", "*/*"}}},
      // A name that is only a prefix of a listed one stays.
      {{"X-Private-Long"}, {{"X-Private", "a"}}, {{"X-Private", "a"}}},
  };
  for (const ConnectionCase& c : cases) {
    Headers incoming;
    for (const std::string& v : c.connection_values) incoming.push_back({"Connection", v});
    for (const Header& h : c.others) incoming.push_back(h);
    SCOPED_TRACE(c.connection_values.front());
    UpstreamRequest out =
        build(make_config({{"uri", "https://upstream.example/"}}), "GET", "/", incoming);
    Headers expected = c.expected_kept;
    expected.push_back({"Host", "upstream.example"});
    EXPECT_EQ(out.headers, expected);
  }
}

TEST(UpstreamRequest, RequesterAuthorizationHostAndContentLengthAreNeverForwarded) {
  const Headers incoming = {
      {"authorization", std::string(kBearer)},
      {"AUTHORIZATION", "Basic dXNlcjpwYXNz"},
      {"Host", "membrane.example"},
      {"host", "membrane.example:8080"},
      {"Content-Length", "999"},
      {"content-length", "3"},
      {"Content-Type", "text/plain"},
  };
  for (const json& doc : {json{{"uri", "https://upstream.example/"}},
                          json{{"uri", "https://upstream.example/"}, {"method", "POST"}}}) {
    SCOPED_TRACE(doc.dump());
    UpstreamRequest out = build(make_config(doc), "PUT", "/", incoming, "abc");
    const Headers expected = {{"Content-Type", "text/plain"},
                              {"Host", "upstream.example"},
                              {"Content-Length", "3"}};
    EXPECT_EQ(out.headers, expected);
    for (const Header& h : out.headers) {
      EXPECT_EQ(h.value.find("CPBLTY1-"), std::string::npos) << h.name;
    }
  }
}

TEST(UpstreamRequest, ConfiguredHeadersReplaceSameNamedRequesterHeaders) {
  UriExport config = make_config({{"uri", "https://upstream.example/"},
                                  {"headers", {{"X-Api-Key", "configured"}, {"Accept", "application/json"}}}});
  const Headers incoming = {
      {"x-api-key", "from-requester"}, {"User-Agent", "curl/8"}, {"X-API-KEY", "second"},
      {"ACCEPT", "text/html"},         {"X-Trace", "t1"},
  };
  UpstreamRequest out = build(config, "GET", "/", incoming);
  EXPECT_EQ(count(out.headers, "x-api-key"), 1u);
  EXPECT_EQ(value_of(out.headers, "x-api-key"), "configured");
  EXPECT_EQ(count(out.headers, "accept"), 1u);
  EXPECT_EQ(value_of(out.headers, "accept"), "application/json");
  // Requester headers first (in order), then configured ones, then Host.
  const Headers expected = {{"User-Agent", "curl/8"},
                            {"X-Trace", "t1"},
                            {"Accept", "application/json"},
                            {"X-Api-Key", "configured"},
                            {"Host", "upstream.example"}};
  EXPECT_EQ(out.headers, expected);
}

TEST(UpstreamRequest, RepeatedRequesterHeadersAreKept) {
  const Headers incoming = {{"Accept", "text/html"}, {"Cookie", "a=1"}, {"accept", "*/*"}};
  UpstreamRequest out = build(make_config({{"uri", "https://upstream.example/"}}), "GET", "/", incoming);
  const Headers expected = {{"Accept", "text/html"},
                            {"Cookie", "a=1"},
                            {"accept", "*/*"},
                            {"Host", "upstream.example"}};
  EXPECT_EQ(out.headers, expected);
}

TEST(UpstreamRequest, ConfiguredHopByHopHostAndContentLengthNeverReachTheRequest) {
  // They are dropped when the export is parsed; the built request shows it.
  UriExport config = make_config({{"uri", "https://upstream.example:8443/"},
                                  {"headers",
                                   {{"Host", "evil.example"},
                                    {"Content-Length", "1"},
                                    {"Connection", "X-Trace"},
                                    {"Transfer-Encoding", "chunked"}}}});
  const Headers incoming = {{"X-Trace", "t1"}};
  UpstreamRequest out = build(config, "POST", "/", incoming, "hello");
  const Headers expected = {{"X-Trace", "t1"},
                            {"Host", "upstream.example:8443"},
                            {"Content-Length", "5"}};
  EXPECT_EQ(out.headers, expected);
}

// ================================================================================================
// contract §5: body and Content-Length
// ================================================================================================

struct BodyCase {
  std::optional<std::string> configured_method;
  std::string requester_method;
  std::string body;
  std::optional<std::string> content_length;
};

TEST(UpstreamRequest, ContentLengthIsRecomputed) {
  const std::string binary("\0a\0\xff\r\n\0", 7);
  const std::vector<BodyCase> cases = {
      {std::nullopt, "GET", "", std::nullopt},
      {std::nullopt, "HEAD", "", std::nullopt},
      {std::nullopt, "DELETE", "", std::nullopt},
      {std::nullopt, "OPTIONS", "", std::nullopt},
      {std::nullopt, "POST", "", "0"},
      {std::nullopt, "PUT", "", "0"},
      {std::nullopt, "PATCH", "", "0"},
      {std::nullopt, "POST", "hello", "5"},
      {std::nullopt, "POST", binary, "7"},
      // The body is forwarded whatever the method.
      {std::nullopt, "GET", "abc", "3"},
      {std::nullopt, "DELETE", "abcd", "4"},
      // The method that counts is the one sent.
      {"POST", "GET", "", "0"},
      {"GET", "POST", "", std::nullopt},
      {"GET", "POST", "xy", "2"},
  };
  const Headers incoming = {{"Content-Length", "12345"}, {"Transfer-Encoding", "chunked"}};
  for (const BodyCase& c : cases) {
    SCOPED_TRACE(c.configured_method.value_or("<none>") + " / " + c.requester_method + " / " +
                 std::to_string(c.body.size()));
    json doc = {{"uri", "https://upstream.example/"}};
    if (c.configured_method) doc["method"] = *c.configured_method;
    UpstreamRequest out = build(make_config(doc), c.requester_method, "/", incoming, c.body);
    EXPECT_EQ(count(out.headers, "content-length"), c.content_length ? 1u : 0u);
    EXPECT_EQ(value_of(out.headers, "content-length"), c.content_length);
    EXPECT_EQ(count(out.headers, "transfer-encoding"), 0u);
  }
}

TEST(UpstreamRequest, BinaryBodyIsForwardedByteForByte) {
  std::string body;
  for (int i = 0; i < 256; ++i) body.push_back(static_cast<char>(i));
  body += std::string("\0\0\0", 3);
  const Headers incoming = {{"Content-Type", "application/octet-stream"}};
  UpstreamRequest out =
      build(make_config({{"uri", "https://upstream.example/"}}), "PUT", "/", incoming, body);
  ASSERT_EQ(out.body.size(), body.size());
  EXPECT_EQ(out.body, std::string_view(body));
  EXPECT_EQ(out.body.data(), body.data());  // not copied
  EXPECT_EQ(value_of(out.headers, "content-length"), std::to_string(body.size()));
}

TEST(UpstreamRequest, PrepareIsBuildThenSign) {
  UriExport config = make_config({{"uri", "https://upstream.example/x"},
                                  {"hmac", {{"aws4-hmac-sha256",
                                             {{"awsAccessKeyId", "AKID"},
                                              {"secretAccessKey", "secret"},
                                              {"region", "us-east-1"},
                                              {"service", "execute-api"}}}}}});
  const Headers incoming = {{"Content-Type", "text/plain"}};
  SigningContext context{fixed_now()};
  auto prepared = prepare_upstream_request(config, IncomingRequest{"POST", "/", incoming, "b"}, context);
  ASSERT_TRUE(prepared.ok());
  UpstreamRequest manual = build(config, "POST", "/", incoming, "b");
  ASSERT_TRUE(sign_upstream_request(manual, config, context).ok());
  EXPECT_EQ(prepared->method, manual.method);
  EXPECT_EQ(prepared->target, manual.target);
  EXPECT_EQ(prepared->headers, manual.headers);
  EXPECT_EQ(prepared->body, manual.body);
}

TEST(UpstreamRequest, WithoutHmacSigningChangesNothing) {
  UriExport config = make_config({{"uri", "https://upstream.example/x"}});
  const Headers incoming = {{"Authorization", std::string(kBearer)}, {"X-Amz-Date", "19990101T000000Z"}};
  UpstreamRequest out = build(config, "GET", "/", incoming);
  const Headers before = out.headers;
  ASSERT_TRUE(sign_upstream_request(out, config, SigningContext{fixed_now()}).ok());
  EXPECT_EQ(out.headers, before);
  EXPECT_EQ(count(out.headers, "authorization"), 0u);
}

// ================================================================================================
// contract §6: aws4-hmac-sha256
// ================================================================================================

struct Aws4Authorization {
  std::string credential;
  std::string signed_headers;
  std::string signature;
};

// "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=..."
std::optional<Aws4Authorization> parse_aws4_authorization(std::string_view value) {
  constexpr std::string_view kPrefix = "AWS4-HMAC-SHA256 Credential=";
  if (!value.starts_with(kPrefix)) return std::nullopt;
  value.remove_prefix(kPrefix.size());
  std::size_t a = value.find(", SignedHeaders=");
  if (a == std::string_view::npos) return std::nullopt;
  std::size_t b = value.find(", Signature=", a);
  if (b == std::string_view::npos) return std::nullopt;
  Aws4Authorization out;
  out.credential = std::string(value.substr(0, a));
  out.signed_headers = std::string(value.substr(a + 16, b - (a + 16)));
  out.signature = std::string(value.substr(b + 12));
  return out;
}

// The signature for a canonical request, through the separate SigV4 stages.
std::string recompute_signature(std::string_view canonical_request, std::string_view secret,
                                std::string_view region, std::string_view service,
                                std::string_view amz_date) {
  std::string_view date8 = amz_date.substr(0, 8);
  std::string scope = sigv4::credential_scope(date8, region, service);
  std::string to_sign = sigv4::string_to_sign(amz_date, scope, canonical_request);
  Sha256Digest key = sigv4::derive_signing_key(secret, date8, region, service);
  return hex_encode(digest_view(hmac_sha256(digest_view(key), to_sign)));
}

std::string join_lines(std::initializer_list<std::string_view> lines) {
  std::string out;
  bool first = true;
  for (std::string_view line : lines) {
    if (!first) out += '\n';
    out += line;
    first = false;
  }
  return out;
}

json lambda_export(json extra_aws4 = json::object()) {
  json aws4 = {{"awsAccessKeyId", "AKIAIOSFODNN7EXAMPLE"},
               {"region", "us-east-1"},
               {"service", "lambda"},
               {"secretAccessKey", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}};
  for (auto& [k, v] : extra_aws4.items()) aws4[k] = v;
  return {{"uri", "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-function/invocations"},
          {"method", "POST"},
          {"allowQuery", false},
          {"headers", {{"X-Amz-Invocation-Type", "RequestResponse"}, {"X-Amz-Log-Type", "None"}}},
          {"hmac", {{"aws4-hmac-sha256", aws4}}}};
}

TEST(UpstreamRequestAws4, LambdaInvocationIsSignedOverWhatIsSent) {
  UriExport config = make_config(lambda_export());
  const std::string body = R"({"hello":"world"})";
  const Headers incoming = {
      {"Content-Type", "application/json"},
      {"User-Agent", "curl/8.5.0"},
      {"Authorization", std::string(kBearer)},
      {"X-Amz-Date", "19990101T000000Z"},
      {"X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"},
      {"Accept", "*/*"},
  };
  auto prepared = prepare_upstream_request(
      config, IncomingRequest{"GET", "/ignored/path?x=1", incoming, body}, SigningContext{fixed_now()});
  ASSERT_TRUE(prepared.ok()) << prepared.error().message;
  const UpstreamRequest& out = *prepared;

  EXPECT_EQ(out.method, "POST");
  EXPECT_EQ(out.target, "/2015-03-31/functions/my-function/invocations");
  EXPECT_EQ(out.connect_host, "lambda.us-east-1.amazonaws.com");
  EXPECT_EQ(out.port, 443);
  EXPECT_TRUE(out.https);
  EXPECT_EQ(out.body, body);

  const std::string body_hash = openssl_sha256_hex(body);
  EXPECT_EQ(count(out.headers, "authorization"), 1u);
  EXPECT_EQ(count(out.headers, "x-amz-date"), 1u);
  EXPECT_EQ(value_of(out.headers, "x-amz-date"), kFixedAmzDate);
  EXPECT_EQ(count(out.headers, "x-amz-content-sha256"), 1u);
  EXPECT_EQ(value_of(out.headers, "x-amz-content-sha256"), body_hash);
  EXPECT_EQ(count(out.headers, "x-amz-security-token"), 0u);
  EXPECT_EQ(value_of(out.headers, "host"), "lambda.us-east-1.amazonaws.com");
  EXPECT_EQ(value_of(out.headers, "content-length"), std::to_string(body.size()));
  EXPECT_EQ(value_of(out.headers, "user-agent"), "curl/8.5.0");

  auto auth = parse_aws4_authorization(value_of(out.headers, "authorization").value_or(""));
  ASSERT_TRUE(auth.has_value()) << value_of(out.headers, "authorization").value_or("<none>");
  EXPECT_EQ(auth->credential, "AKIAIOSFODNN7EXAMPLE/20150830/us-east-1/lambda/aws4_request");
  EXPECT_EQ(auth->signed_headers,
            "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-invocation-type;x-amz-log-type");

  const std::string canonical_request = join_lines({
      "POST",
      "/2015-03-31/functions/my-function/invocations",
      "",
      "content-type:application/json",
      "host:lambda.us-east-1.amazonaws.com",
      "x-amz-content-sha256:" + body_hash,
      "x-amz-date:20150830T123600Z",
      "x-amz-invocation-type:RequestResponse",
      "x-amz-log-type:None",
      "",
      "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-invocation-type;x-amz-log-type",
      body_hash,
  });
  EXPECT_EQ(auth->signature,
            recompute_signature(canonical_request, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                "us-east-1", "lambda", kFixedAmzDate));
}

TEST(UpstreamRequestAws4, SessionTokenIsSentAndSignedOnlyWhenConfigured) {
  const Headers incoming = {{"X-Amz-Security-Token", "requester-token"}};
  {
    UriExport config = make_config(lambda_export());
    auto out = prepare_upstream_request(config, IncomingRequest{"POST", "/", incoming, ""},
                                        SigningContext{fixed_now()});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(count(out->headers, "x-amz-security-token"), 0u);
    auto auth = parse_aws4_authorization(value_of(out->headers, "authorization").value_or(""));
    ASSERT_TRUE(auth.has_value());
    EXPECT_EQ(auth->signed_headers.find("x-amz-security-token"), std::string::npos);
  }
  {
    const std::string token = "FwoGZXIvYXdzEJr//////////wEaDMexampletoken+/=";
    UriExport config = make_config(lambda_export({{"sessionToken", token}}));
    auto out = prepare_upstream_request(config, IncomingRequest{"POST", "/", incoming, ""},
                                        SigningContext{fixed_now()});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(count(out->headers, "x-amz-security-token"), 1u);
    EXPECT_EQ(value_of(out->headers, "x-amz-security-token"), token);
    auto auth = parse_aws4_authorization(value_of(out->headers, "authorization").value_or(""));
    ASSERT_TRUE(auth.has_value());
    EXPECT_EQ(auth->signed_headers,
              "host;x-amz-content-sha256;x-amz-date;x-amz-invocation-type;x-amz-log-type;"
              "x-amz-security-token");

    const std::string canonical_request = join_lines({
        "POST",
        "/2015-03-31/functions/my-function/invocations",
        "",
        "host:lambda.us-east-1.amazonaws.com",
        "x-amz-content-sha256:" + std::string(kEmptySha256),
        "x-amz-date:20150830T123600Z",
        "x-amz-invocation-type:RequestResponse",
        "x-amz-log-type:None",
        "x-amz-security-token:" + token,
        "",
        "host;x-amz-content-sha256;x-amz-date;x-amz-invocation-type;x-amz-log-type;x-amz-security-token",
        kEmptySha256,
    });
    EXPECT_EQ(auth->signature,
              recompute_signature(canonical_request, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                                  "us-east-1", "lambda", kFixedAmzDate));
  }
}

TEST(UpstreamRequestAws4, SignedHeadersAreHostAmzContentTypeMd5AndConfiguredOnly) {
  UriExport config = make_config(
      {{"uri", "https://service.us-west-2.amazonaws.com/"},
       {"headers", {{"X-Custom-Thing", "configured"}, {"Accept", "application/json"}}},
       {"hmac", {{"aws4-hmac-sha256",
                  {{"awsAccessKeyId", "AKID"},
                   {"secretAccessKey", "secret"},
                   {"region", "us-west-2"},
                   {"service", "dynamodb"}}}}}});
  const Headers incoming = {
      {"Content-Type", "application/x-amz-json-1.0"},
      {"Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="},
      {"User-Agent", "aws-cli/2"},
      {"X-Forwarded-For", "192.0.2.1"},
      {"X-Amz-Target", "DynamoDB_20120810.ListTables"},
      {"Accept", "text/html"},
      {"Via", "1.1 proxy"},
  };
  const std::string body = "{}";
  auto out = prepare_upstream_request(config, IncomingRequest{"POST", "/", incoming, body},
                                      SigningContext{fixed_now()});
  ASSERT_TRUE(out.ok());
  auto auth = parse_aws4_authorization(value_of(out->headers, "authorization").value_or(""));
  ASSERT_TRUE(auth.has_value());
  EXPECT_EQ(auth->signed_headers,
            "accept;content-md5;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-target;"
            "x-custom-thing");
  for (std::string_view unsigned_name : {"user-agent", "x-forwarded-for", "via", "content-length"}) {
    EXPECT_EQ((";" + auth->signed_headers + ";").find(";" + std::string(unsigned_name) + ";"),
              std::string::npos)
        << unsigned_name;
    EXPECT_EQ(count(out->headers, unsigned_name), 1u) << unsigned_name << " is still sent";
  }

  const std::string hash = openssl_sha256_hex(body);
  const std::string canonical_request = join_lines({
      "POST",
      "/",
      "",
      "accept:application/json",
      "content-md5:1B2M2Y8AsgTpgAmY7PhCfg==",
      "content-type:application/x-amz-json-1.0",
      "host:service.us-west-2.amazonaws.com",
      "x-amz-content-sha256:" + hash,
      "x-amz-date:20150830T123600Z",
      "x-amz-target:DynamoDB_20120810.ListTables",
      "x-custom-thing:configured",
      "",
      "accept;content-md5;content-type;host;x-amz-content-sha256;x-amz-date;x-amz-target;x-custom-thing",
      hash,
  });
  EXPECT_EQ(auth->signature,
            recompute_signature(canonical_request, "secret", "us-west-2", "dynamodb", kFixedAmzDate));
}

struct Aws4PathCase {
  std::string service;
  std::string uri;
  std::string requester_target;
  std::string method;
  std::string expected_target;
  std::string canonical_uri;
  std::string canonical_query;
};

TEST(UpstreamRequestAws4, CanonicalUriAndQueryPerService) {
  const std::vector<Aws4PathCase> cases = {
      // Non-S3: dot segments and empty segments removed, then the (encoded) path encoded again.
      {"execute-api", "https://api.example/a/./b//c%20d/e", "/", "GET", "/a/./b//c%20d/e",
       "/a/b/c%2520d/e", ""},
      {"execute-api", "https://api.example/a/b/../c", "/", "GET", "/a/b/../c", "/a/c", ""},
      // S3: the path as sent, encoded once, not normalised.
      {"s3", "https://bucket.s3.amazonaws.com/a/./b//c%20d/e", "/", "GET", "/a/./b//c%20d/e",
       "/a/./b//c%20d/e", ""},
      {"s3", "https://bucket.s3.amazonaws.com/a/b/../c", "/", "GET", "/a/b/../c", "/a/b/../c", ""},
      {"s3", "https://bucket.s3.amazonaws.com/key%2Bwith%2Bplus", "/", "GET",
       "/key%2Bwith%2Bplus", "/key%2Bwith%2Bplus", ""},
      // The query, including the appended requester query, is signed sorted and re-encoded.
      {"s3", "https://bucket.s3.amazonaws.com/?list-type=2", "/?prefix=a%2Fb&delimiter=/", "GET",
       "/?list-type=2&prefix=a%2Fb&delimiter=/", "/", "delimiter=%2F&list-type=2&prefix=a%2Fb"},
      {"s3", "https://bucket.s3.amazonaws.com/obj", "/?acl", "GET", "/obj?acl", "/obj", "acl="},
      {"execute-api", "https://api.example/items", "/?b=2&a=1&a=0", "GET", "/items?b=2&a=1&a=0",
       "/items", "a=0&a=1&b=2"},
  };
  for (const Aws4PathCase& c : cases) {
    SCOPED_TRACE(c.service + " " + c.uri + " " + c.requester_target);
    UriExport config = make_config({{"uri", c.uri},
                                    {"allowQuery", true},
                                    {"hmac", {{"aws4-hmac-sha256",
                                               {{"awsAccessKeyId", "AKID"},
                                                {"secretAccessKey", "secret"},
                                                {"region", "eu-central-1"},
                                                {"service", c.service}}}}}});
    const Headers incoming;
    auto out = prepare_upstream_request(config, IncomingRequest{c.method, c.requester_target, incoming, ""},
                                        SigningContext{fixed_now()});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(out->target, c.expected_target);
    auto auth = parse_aws4_authorization(value_of(out->headers, "authorization").value_or(""));
    ASSERT_TRUE(auth.has_value());
    EXPECT_EQ(auth->signed_headers, "host;x-amz-content-sha256;x-amz-date");
    EXPECT_EQ(value_of(out->headers, "x-amz-content-sha256"), kEmptySha256);
    const std::string host = value_of(out->headers, "host").value_or("");
    const std::string canonical_request = join_lines({
        c.method,
        c.canonical_uri,
        c.canonical_query,
        "host:" + host,
        "x-amz-content-sha256:" + std::string(kEmptySha256),
        "x-amz-date:20150830T123600Z",
        "",
        "host;x-amz-content-sha256;x-amz-date",
        kEmptySha256,
    });
    EXPECT_EQ(auth->signature,
              recompute_signature(canonical_request, "secret", "eu-central-1", c.service, kFixedAmzDate));
  }
}

TEST(UpstreamRequestAws4, BinaryBodyHashIsOverTheExactBytes) {
  const std::string body("\0\x01\x02\xff\xfe\0zz", 8);
  UriExport config = make_config(lambda_export());
  const Headers incoming = {{"Content-Type", "application/octet-stream"}};
  auto out = prepare_upstream_request(config, IncomingRequest{"POST", "/", incoming, body},
                                      SigningContext{fixed_now()});
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->body, body);
  EXPECT_EQ(value_of(out->headers, "content-length"), "8");
  EXPECT_EQ(value_of(out->headers, "x-amz-content-sha256"), openssl_sha256_hex(body));
  EXPECT_NE(value_of(out->headers, "x-amz-content-sha256"), openssl_sha256_hex("\x01\x02"));
}

TEST(UpstreamRequestAws4, ClockDecidesDateAndScope) {
  UriExport config = make_config(lambda_export());
  const Headers incoming;
  auto at = [&](std::string_view iso) {
    auto out = prepare_upstream_request(config, IncomingRequest{"POST", "/", incoming, ""},
                                        SigningContext{test::parse_iso8601_utc(iso)});
    EXPECT_TRUE(out.ok());
    return out.ok() ? *out : UpstreamRequest{};
  };
  UpstreamRequest a = at("2024-02-29T23:59:59Z");
  EXPECT_EQ(value_of(a.headers, "x-amz-date"), "20240229T235959Z");
  EXPECT_NE(value_of(a.headers, "authorization").value_or("").find("/20240229/us-east-1/lambda/aws4_request"),
            std::string::npos);
  UpstreamRequest b = at("2024-03-01T00:00:00Z");
  EXPECT_EQ(value_of(b.headers, "x-amz-date"), "20240301T000000Z");
  EXPECT_NE(value_of(a.headers, "authorization"), value_of(b.headers, "authorization"));
}

TEST(UpstreamRequestAws4, KeyCacheGivesTheSameSignature) {
  UriExport config = make_config(lambda_export());
  const Headers incoming;
  sigv4::SigningKeyCache cache;
  SigningContext cached{fixed_now(), &cache};
  auto one = prepare_upstream_request(config, IncomingRequest{"POST", "/", incoming, "x"}, cached);
  auto two = prepare_upstream_request(config, IncomingRequest{"POST", "/", incoming, "x"}, cached);
  auto uncached = prepare_upstream_request(config, IncomingRequest{"POST", "/", incoming, "x"},
                                           SigningContext{fixed_now()});
  ASSERT_TRUE(one.ok() && two.ok() && uncached.ok());
  EXPECT_EQ(one->headers, uncached->headers);
  EXPECT_EQ(two->headers, uncached->headers);
  EXPECT_EQ(cache.derivations(), 1u);
}

// ================================================================================================
// contract §6: cap1-hmac-sha512
// ================================================================================================

constexpr std::string_view kCap1Key = "c2VjcmV0LWtleS1mb3ItY2FwMQ";
constexpr std::string_view kCap1KeyId = "key-1";

json cap1_export() {
  return {{"uri", "https://api.example:8443/v1/items?fixed=1"},
          {"allowQuery", true},
          {"headers", {{"X-Api-Version", "2"}}},
          {"hmac", {{"cap1-hmac-sha512", {{"key", kCap1Key}, {"keyId", kCap1KeyId}}}}}};
}

void split_target(std::string_view target, std::string& path, std::string& query) {
  std::size_t q = target.find('?');
  path = std::string(target.substr(0, q));
  query = q == std::string_view::npos ? std::string() : std::string(target.substr(q + 1));
}

cap1::VerifyInput verify_input(const UpstreamRequest& request, std::string_view key,
                               std::chrono::system_clock::time_point now) {
  cap1::VerifyInput in;
  in.headers = request.headers;
  in.method = request.method;
  split_target(request.target, in.path, in.query);
  std::string k(key);
  in.secret = [k](std::string_view key_id) -> std::optional<std::string> {
    if (key_id == kCap1KeyId) return k;
    return std::nullopt;
  };
  in.now = now;
  return in;
}

class UpstreamRequestCap1 : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = make_config(cap1_export());
    auto out = prepare_upstream_request(
        config_, IncomingRequest{"PUT", "/ignored?b=2&a=1", incoming_, body_}, SigningContext{fixed_now()});
    ASSERT_TRUE(out.ok()) << out.error().message;
    signed_ = *out;
  }

  UriExport config_;
  const std::string body_ = R"({"name":"x"})";
  const Headers incoming_ = {
      {"Content-Type", "application/json"},
      {"User-Agent", "curl/8"},
      {"Authorization", std::string(kBearer)},
      {"X-Cap-Date", "20000101T000000Z"},
      {"x-api-version", "1"},
  };
  UpstreamRequest signed_;
};

TEST_F(UpstreamRequestCap1, SignatureHeadersAreAdded) {
  EXPECT_EQ(signed_.method, "PUT");
  EXPECT_EQ(signed_.target, "/v1/items?fixed=1&b=2&a=1");
  EXPECT_EQ(count(signed_.headers, "x-cap-date"), 1u);
  EXPECT_EQ(value_of(signed_.headers, "x-cap-date"), kFixedAmzDate);
  EXPECT_EQ(count(signed_.headers, "authorization"), 1u);
  const std::string auth = value_of(signed_.headers, "authorization").value_or("");
  EXPECT_TRUE(auth.starts_with(
      "CAP1-HMAC-SHA512 Credential=key-1/20150830/api.example:8443/cap1_request,"
      "SignedHeaders=content-type;host;x-api-version;x-cap-date,Signature="))
      << auth;
  EXPECT_EQ(auth.find("CPBLTY1-"), std::string::npos);
  EXPECT_EQ(value_of(signed_.headers, "x-api-version"), "2");
  EXPECT_EQ(value_of(signed_.headers, "host"), "api.example:8443");
  EXPECT_EQ(value_of(signed_.headers, "content-length"), std::to_string(body_.size()));
  EXPECT_EQ(count(signed_.headers, "x-amz-date"), 0u);
}

// cap1::kWrittenHeaders is what export_config reserves: signing replaces those headers (the
// requester's stale X-Cap-Date included) and leaves every other one as it was.
TEST_F(UpstreamRequestCap1, SigningWritesExactlyKWrittenHeaders) {
  auto without_written = [](Headers headers) {
    for (std::string_view name : cap1::kWrittenHeaders) erase_headers(headers, name);
    return headers;
  };
  UpstreamRequest unsigned_request =
      build_upstream_request(config_, IncomingRequest{"PUT", "/ignored?b=2&a=1", incoming_, body_});
  EXPECT_EQ(without_written(signed_.headers), without_written(unsigned_request.headers));
  for (std::string_view name : cap1::kWrittenHeaders) EXPECT_EQ(count(signed_.headers, name), 1u) << name;
}

TEST_F(UpstreamRequestCap1, VerifiesWithTheSameKey) {
  EXPECT_TRUE(cap1::verify(verify_input(signed_, kCap1Key, fixed_now())));
  // Within the allowed clock skew too.
  EXPECT_TRUE(cap1::verify(verify_input(signed_, kCap1Key, fixed_now() + 14min)));
}

TEST_F(UpstreamRequestCap1, TamperedRequestsAreRefused) {
  {
    SCOPED_TRACE("different key");
    EXPECT_FALSE(cap1::verify(verify_input(signed_, "b3RoZXIta2V5", fixed_now())));
  }
  {
    SCOPED_TRACE("tampered query");
    cap1::VerifyInput in = verify_input(signed_, kCap1Key, fixed_now());
    in.query = "fixed=1&b=2&a=2";
    EXPECT_FALSE(cap1::verify(in));
  }
  {
    SCOPED_TRACE("query piece added");
    cap1::VerifyInput in = verify_input(signed_, kCap1Key, fixed_now());
    in.query += "&admin=true";
    EXPECT_FALSE(cap1::verify(in));
  }
  {
    SCOPED_TRACE("tampered path");
    cap1::VerifyInput in = verify_input(signed_, kCap1Key, fixed_now());
    in.path = "/v1/admin";
    EXPECT_FALSE(cap1::verify(in));
  }
  {
    SCOPED_TRACE("tampered method");
    cap1::VerifyInput in = verify_input(signed_, kCap1Key, fixed_now());
    in.method = "DELETE";
    EXPECT_FALSE(cap1::verify(in));
  }
  {
    SCOPED_TRACE("tampered configured header");
    cap1::VerifyInput in = verify_input(signed_, kCap1Key, fixed_now());
    for (Header& h : in.headers) {
      if (iequals(h.name, "x-api-version")) h.value = "3";
    }
    EXPECT_FALSE(cap1::verify(in));
  }
  {
    SCOPED_TRACE("tampered host");
    cap1::VerifyInput in = verify_input(signed_, kCap1Key, fixed_now());
    for (Header& h : in.headers) {
      if (iequals(h.name, "host")) h.value = "api.example";
    }
    EXPECT_FALSE(cap1::verify(in));
  }
  {
    SCOPED_TRACE("too late");
    EXPECT_FALSE(cap1::verify(verify_input(signed_, kCap1Key, fixed_now() + 16min)));
  }
}

TEST_F(UpstreamRequestCap1, HeadersOutsideTheSignedSetMayChange) {
  // Only host, content-type, content-md5, x-cap-* and configured headers are signed, so an
  // intermediary adding or changing others does not break the signature.
  cap1::VerifyInput in = verify_input(signed_, kCap1Key, fixed_now());
  for (Header& h : in.headers) {
    if (iequals(h.name, "user-agent")) h.value = "other/1";
  }
  in.headers.push_back({"Via", "1.1 proxy"});
  EXPECT_TRUE(cap1::verify(in));
}

TEST(UpstreamRequestCap1Errors, UndecodablePathOrQueryIsAnError) {
  {
    UriExport config = make_config({{"uri", "https://api.example/%FF"},
                                    {"hmac", {{"cap1-hmac-sha512", {{"key", kCap1Key}, {"keyId", kCap1KeyId}}}}}});
    const Headers incoming;
    auto out = prepare_upstream_request(config, IncomingRequest{"GET", "/", incoming, ""},
                                        SigningContext{fixed_now()});
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.error().kind, ErrorKind::invalid_input);
  }
  {
    UriExport config = make_config(cap1_export());
    const Headers incoming;
    auto out = prepare_upstream_request(config, IncomingRequest{"GET", "/?x=%ZZ", incoming, ""},
                                        SigningContext{fixed_now()});
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.error().kind, ErrorKind::invalid_input);
  }
}

// ================================================================================================
// The requester's own signature headers never survive
// ================================================================================================

TEST(UpstreamRequest, RequesterSignatureHeadersNeverSurvive) {
  const Headers incoming = {
      {"authorization", "AWS4-HMAC-SHA256 Credential=EVIL/20000101/us-east-1/lambda/aws4_request, "
                        "SignedHeaders=host, Signature=00"},
      {"X-Amz-Date", "20000101T000000Z"},
      {"x-amz-security-token", "evil-token"},
      {"X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"},
      {"X-Cap-Date", "20000101T000000Z"},
  };
  {
    SCOPED_TRACE("aws4");
    auto out = prepare_upstream_request(make_config(lambda_export()),
                                        IncomingRequest{"POST", "/", incoming, ""},
                                        SigningContext{fixed_now()});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(count(out->headers, "authorization"), 1u);
    EXPECT_TRUE(value_of(out->headers, "authorization")->starts_with(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20150830/"));
    EXPECT_EQ(count(out->headers, "x-amz-date"), 1u);
    EXPECT_EQ(value_of(out->headers, "x-amz-date"), kFixedAmzDate);
    EXPECT_EQ(count(out->headers, "x-amz-security-token"), 0u);
    EXPECT_EQ(count(out->headers, "x-amz-content-sha256"), 1u);
    EXPECT_EQ(value_of(out->headers, "x-amz-content-sha256"), kEmptySha256);
  }
  {
    SCOPED_TRACE("cap1");
    auto out = prepare_upstream_request(make_config(cap1_export()),
                                        IncomingRequest{"POST", "/", incoming, ""},
                                        SigningContext{fixed_now()});
    ASSERT_TRUE(out.ok());
    EXPECT_EQ(count(out->headers, "authorization"), 1u);
    EXPECT_TRUE(value_of(out->headers, "authorization")->starts_with("CAP1-HMAC-SHA512 Credential=key-1/"));
    EXPECT_EQ(count(out->headers, "x-cap-date"), 1u);
    EXPECT_EQ(value_of(out->headers, "x-cap-date"), kFixedAmzDate);
    EXPECT_TRUE(cap1::verify(verify_input(*out, kCap1Key, fixed_now())));
  }
  {
    SCOPED_TRACE("no hmac");
    UpstreamRequest out = build(make_config({{"uri", "https://upstream.example/"}}), "GET", "/", incoming);
    EXPECT_EQ(count(out.headers, "authorization"), 0u);
  }
}


// --- contract §9: an export naming an --aws-config profile signs with the caller's credentials ------

json profile_lambda_export() {
  json doc = lambda_export();
  doc["hmac"]["aws4-hmac-sha256"] = {{"credentials", "prod-lambda"}, {"region", "us-east-1"}, {"service", "lambda"}};
  return doc;
}

TEST(UpstreamRequestAws4Profile, SignsWithTheSuppliedCredentials) {
  const std::string body = R"({"hello":"world"})";
  const Headers incoming = {{"Content-Type", "application/json"}};
  const std::string token = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJGMEQCIEXAMPLE=";
  AwsCredentials supplied{"ASIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY", token,
                          fixed_now() + 1h};
  SigningContext context{fixed_now()};
  context.aws_credentials = &supplied;
  auto out = prepare_upstream_request(make_config(profile_lambda_export()),
                                      IncomingRequest{"POST", "/", incoming, body}, context);
  ASSERT_TRUE(out.ok()) << out.error().message;
  EXPECT_EQ(value_of(out->headers, "x-amz-security-token"), token);
  auto auth = parse_aws4_authorization(value_of(out->headers, "authorization").value_or(""));
  ASSERT_TRUE(auth.has_value());
  EXPECT_EQ(auth->credential, "ASIAIOSFODNN7EXAMPLE/20150830/us-east-1/lambda/aws4_request");
  const std::string body_hash = openssl_sha256_hex(body);
  const std::string canonical_request = join_lines({
      "POST",
      "/2015-03-31/functions/my-function/invocations",
      "",
      "content-type:application/json",
      "host:lambda.us-east-1.amazonaws.com",
      "x-amz-content-sha256:" + body_hash,
      "x-amz-date:20150830T123600Z",
      "x-amz-invocation-type:RequestResponse",
      "x-amz-log-type:None",
      "x-amz-security-token:" + token,
      "",
      "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-invocation-type;x-amz-log-type;"
      "x-amz-security-token",
      body_hash,
  });
  EXPECT_EQ(auth->signature, recompute_signature(canonical_request, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                                                 "us-east-1", "lambda", kFixedAmzDate));

  // The same keys given statically sign identically: only where they come from differs.
  auto static_out = prepare_upstream_request(
      make_config(lambda_export({{"awsAccessKeyId", "ASIAIOSFODNN7EXAMPLE"},
                                 {"secretAccessKey", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY"},
                                 {"sessionToken", token}})),
      IncomingRequest{"POST", "/", incoming, body}, SigningContext{fixed_now()});
  ASSERT_TRUE(static_out.ok());
  EXPECT_EQ(out->headers, static_out->headers);
}

TEST(UpstreamRequestAws4Profile, WithoutSuppliedCredentialsItIsAnInternalError) {
  const Headers none;
  auto out = prepare_upstream_request(make_config(profile_lambda_export()),
                                      IncomingRequest{"POST", "/", none, ""}, SigningContext{fixed_now()});
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.error().kind, ErrorKind::internal);
  EXPECT_NE(out.error().message.find("prod-lambda"), std::string::npos);
}

TEST(UpstreamRequestAws4Profile, StaticExportsIgnoreSuppliedCredentials) {
  AwsCredentials other{"ASIAOTHER", "other-secret", std::string("other-token"), std::nullopt};
  SigningContext context{fixed_now()};
  context.aws_credentials = &other;
  const Headers none;
  auto with_other = prepare_upstream_request(make_config(lambda_export()),
                                             IncomingRequest{"POST", "/", none, ""}, context);
  auto plain = prepare_upstream_request(make_config(lambda_export()),
                                        IncomingRequest{"POST", "/", none, ""}, SigningContext{fixed_now()});
  ASSERT_TRUE(with_other.ok());
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(with_other->headers, plain->headers);
  EXPECT_EQ(count(with_other->headers, "x-amz-security-token"), 0u);
}

}  // namespace
}  // namespace membraned::core
