// contract §4.1: the export body. Every rule of the table is fed a violating document and must give
// an invalid_input error naming the field; valid documents must parse to the expected typed
// values and survive to_json unchanged.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/cap1.hpp"
#include "core/export_config.hpp"
#include "core/http.hpp"
#include "core/result.hpp"
#include "core/sigv4.hpp"
#include "core/token.hpp"
#include "core/url.hpp"
#include "tests/support/test_pki.hpp"

namespace membraned::core {
namespace {

using json = nlohmann::json;

constexpr std::string_view kCapToken =
    "CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q";
constexpr std::string_view kCapUri =
    "cpblty://membrane.amzn-us-east-1.capability.io/#CPBLTY1-Vf2Q5NBTFtn-57umfGU3anHy9JkLbpZQddRD13"
    "oMAE0M3nfabXD2wKg_C3WHgP56oThB7GlvZZ_IbX5avhia4Q";

// The Lambda tutorial's export (docs/tutorial.md), with its placeholders filled in.
constexpr std::string_view kLambdaExport = R"({"uri":"https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-function/invocations","method":"POST","allowQuery":false,"headers":{"X-Amz-Invocation-Type": "RequestResponse","X-Amz-Log-Type":"None"},"hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKIAIOSFODNN7EXAMPLE","region":"us-east-1","service":"lambda","secretAccessKey":"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}})";

json aws4_signing() {
  return {{"awsAccessKeyId", "AKID"},
          {"secretAccessKey", "secret"},
          {"region", "us-east-1"},
          {"service", "lambda"}};
}

json cap1_signing() { return {{"key", "c2VjcmV0LWtleQ"}, {"keyId", "key-1"}}; }

json base_uri_doc() { return {{"uri", "https://upstream.example/path"}}; }

// A document with `uri` plus the given fields.
json with(json fields) {
  json doc = base_uri_doc();
  for (auto& [key, value] : fields.items()) doc[key] = value;
  return doc;
}

json with_aws4(json patch) {
  json aws4 = aws4_signing();
  for (auto& [key, value] : patch.items()) {
    if (value.is_null()) {
      aws4.erase(key);
    } else {
      aws4[key] = value;
    }
  }
  return with({{"hmac", {{"aws4-hmac-sha256", aws4}}}});
}

json with_cap1(json patch) {
  json cap1 = cap1_signing();
  for (auto& [key, value] : patch.items()) {
    if (value.is_null()) {
      cap1.erase(key);
    } else {
      cap1[key] = value;
    }
  }
  return with({{"hmac", {{"cap1-hmac-sha512", cap1}}}});
}

Result<ExportConfig> parse(std::string_view body, const ExportLimits& limits = {}) {
  return parse_export_config(body, limits);
}

// Parses a document that must be a valid uri export.
UriExport parse_uri_export_ok(std::string_view body, const ExportLimits& limits = {}) {
  auto result = parse_export_config(body, limits);
  if (!result.ok()) {
    ADD_FAILURE() << "unexpected error for " << body << ": field '" << result.error().field
                  << "': " << result.error().message;
    return {};
  }
  const auto* uri = std::get_if<UriExport>(&*result);
  if (uri == nullptr) {
    ADD_FAILURE() << "not a uri export: " << body;
    return {};
  }
  return *uri;
}

UriExport parse_ok(const json& doc, const ExportLimits& limits = {}) {
  return parse_uri_export_ok(doc.dump(), limits);
}

void expect_invalid_body(std::string_view body, std::string_view field) {
  SCOPED_TRACE(std::string("body: ") + std::string(body.substr(0, 300)));
  auto result = parse_export_config(body);
  ASSERT_FALSE(result.ok()) << "accepted a document that violates the rule for " << field;
  EXPECT_EQ(result.error().kind, ErrorKind::invalid_input);
  EXPECT_EQ(result.error().field, field) << "message: " << result.error().message;
  EXPECT_FALSE(result.error().message.empty());
}

void expect_invalid(const json& doc, std::string_view field) { expect_invalid_body(doc.dump(), field); }

// --- one table of violating documents -----------------------------------------------------------

struct Violation {
  std::string name;
  std::string body;
  std::string field;
};

std::ostream& operator<<(std::ostream& os, const Violation& v) { return os << v.name; }

std::vector<Violation> violations() {
  const std::string aws = "hmac.aws4-hmac-sha256";
  const std::string cap = "hmac.cap1-hmac-sha512";
  return {
      // The body itself.
      {"BodyEmpty", "", "body"},
      {"BodyNotJson", R"({"uri":)", "body"},
      {"BodyTrailingGarbage", R"({"uri":"https://a.example/"} x)", "body"},
      {"BodySingleQuotes", R"({'uri':'https://a.example/'})", "body"},
      {"BodyInvalidUtf8", "{\"uri\":\"https://a.example/\xff\"}", "body"},
      {"BodyArray", R"([{"uri":"https://a.example/"}])", "body"},
      {"BodyString", R"("https://a.example/")", "body"},
      {"BodyNumber", "42", "body"},
      {"BodyNull", "null", "body"},
      {"UnknownTopLevelKey", with({{"extra", 1}}).dump(), "extra"},
      {"UnknownTopLevelKeyCaseVariant", with({{"Method", "GET"}}).dump(), "Method"},
      {"DuplicateTopLevelKey", R"({"uri":"https://a.example/","uri":"https://b.example/"})", "uri"},
      {"DuplicateTopLevelKeyAfterOthers",
       R"({"uri":"https://a.example/","method":"GET","allowQuery":true,"method":"POST"})", "method"},

      // Exactly one of uri and capability.
      {"Neither", "{}", "uri"},
      {"NeitherButOtherFields", R"({"method":"GET","allowQuery":true})", "uri"},
      {"BothUriAndCapability",
       json{{"uri", "https://a.example/"}, {"capability", kCapUri}}.dump(), "capability"},

      // capability
      {"CapabilityWithMethod", json{{"capability", kCapUri}, {"method", "GET"}}.dump(), "method"},
      {"CapabilityWithAllowQuery", json{{"capability", kCapUri}, {"allowQuery", false}}.dump(),
       "allowQuery"},
      {"CapabilityWithHeaders", json{{"capability", kCapUri}, {"headers", json::object()}}.dump(),
       "headers"},
      {"CapabilityWithHmac",
       json{{"capability", kCapUri}, {"hmac", {{"cap1-hmac-sha512", cap1_signing()}}}}.dump(),
       "hmac"},
      {"CapabilityWithTimeout", json{{"capability", kCapUri}, {"timeoutMs", 10}}.dump(),
       "timeoutMs"},
      {"CapabilityWithTls", json{{"capability", kCapUri}, {"tls", json::object()}}.dump(), "tls"},
      {"CapabilityEmpty", json{{"capability", ""}}.dump(), "capability"},
      {"CapabilityNotString", json{{"capability", 1}}.dump(), "capability"},
      {"CapabilityNull", json{{"capability", nullptr}}.dump(), "capability"},
      {"CapabilityBareToken", json{{"capability", kCapToken}}.dump(), "capability"},
      {"CapabilityHttpsUri", json{{"capability", "https://a.example/#" + std::string(kCapToken)}}.dump(),
       "capability"},
      {"CapabilityBadVersion",
       json{{"capability", "cpblty://a.example/#CPBLTY2-" + std::string(kCapToken.substr(8))}}.dump(),
       "capability"},
      {"CapabilityShortToken", json{{"capability", "cpblty://a.example/#CPBLTY1-abc"}}.dump(),
       "capability"},

      // uri
      {"UriEmpty", json{{"uri", ""}}.dump(), "uri"},
      {"UriNotString", json{{"uri", 42}}.dump(), "uri"},
      {"UriNull", json{{"uri", nullptr}}.dump(), "uri"},
      {"UriObject", json{{"uri", json::object()}}.dump(), "uri"},
      {"UriRelativePath", json{{"uri", "/2015-03-31/functions"}}.dump(), "uri"},
      {"UriNoScheme", json{{"uri", "upstream.example/path"}}.dump(), "uri"},
      {"UriSchemeRelative", json{{"uri", "//upstream.example/path"}}.dump(), "uri"},
      {"UriFtp", json{{"uri", "ftp://upstream.example/file"}}.dump(), "uri"},
      {"UriFile", json{{"uri", "file:///etc/passwd"}}.dump(), "uri"},
      {"UriMailto", json{{"uri", "mailto:someone@upstream.example"}}.dump(), "uri"},
      {"UriNoAuthority", json{{"uri", "https:/path/only"}}.dump(), "uri"},
      {"UriEmptyHost", json{{"uri", "https:///path"}}.dump(), "uri"},
      {"UriUserinfo", json{{"uri", "https://user:password@upstream.example/"}}.dump(), "uri"},
      {"UriUserOnly", json{{"uri", "https://user@upstream.example/"}}.dump(), "uri"},
      {"UriEmptyUserinfo", json{{"uri", "https://@upstream.example/"}}.dump(), "uri"},
      {"UriPortZero", json{{"uri", "https://upstream.example:0/"}}.dump(), "uri"},
      {"UriPort70000", json{{"uri", "https://upstream.example:70000/"}}.dump(), "uri"},
      {"UriPort65536", json{{"uri", "https://upstream.example:65536/"}}.dump(), "uri"},
      {"UriPortNotNumber", json{{"uri", "https://upstream.example:https/"}}.dump(), "uri"},
      {"UriPortSigned", json{{"uri", "https://upstream.example:+1/"}}.dump(), "uri"},
      {"UriSpaceInHost", json{{"uri", "https://up stream.example/"}}.dump(), "uri"},
      {"UriTooLong", json{{"uri", "https://upstream.example/" + std::string(9000, 'a')}}.dump(),
       "uri"},

      // method
      {"MethodEmpty", with({{"method", ""}}).dump(), "method"},
      {"MethodNotString", with({{"method", 1}}).dump(), "method"},
      {"MethodNull", with({{"method", nullptr}}).dump(), "method"},
      {"MethodUnknown", with({{"method", "FETCH"}}).dump(), "method"},
      {"MethodWebDav", with({{"method", "PROPFIND"}}).dump(), "method"},
      {"MethodWithSpace", with({{"method", "GET "}}).dump(), "method"},
      {"MethodArray", with({{"method", json::array({"GET"})}}).dump(), "method"},

      // allowQuery
      {"AllowQueryString", with({{"allowQuery", "true"}}).dump(), "allowQuery"},
      {"AllowQueryNumber", with({{"allowQuery", 1}}).dump(), "allowQuery"},
      {"AllowQueryNull", with({{"allowQuery", nullptr}}).dump(), "allowQuery"},

      // headers
      {"HeadersArray", with({{"headers", json::array({"X-Foo: a"})}}).dump(), "headers"},
      {"HeadersString", with({{"headers", "X-Foo: a"}}).dump(), "headers"},
      {"HeadersNull", with({{"headers", nullptr}}).dump(), "headers"},
      {"HeaderNameWithSpace", with({{"headers", {{"X Foo", "a"}}}}).dump(), "headers.X Foo"},
      {"HeaderNameWithColon", with({{"headers", {{"X-Foo:", "a"}}}}).dump(), "headers.X-Foo:"},
      {"HeaderNameEmpty", with({{"headers", {{"", "a"}}}}).dump(), "headers."},
      {"HeaderNameNonAscii", with({{"headers", {{"X-F\xc3\xbc", "a"}}}}).dump(),
       "headers.X-F\xc3\xbc"},
      {"HeaderValueCrLf", with({{"headers", {{"X-Foo", "a\r\nX-Injected: b"}}}}).dump(),
       "headers.X-Foo"},
      {"HeaderValueLf", with({{"headers", {{"X-Foo", "a\nb"}}}}).dump(), "headers.X-Foo"},
      {"HeaderValueCr", with({{"headers", {{"X-Foo", "a\rb"}}}}).dump(), "headers.X-Foo"},
      {"HeaderValueNul", with({{"headers", {{"X-Foo", std::string("a\0b", 3)}}}}).dump(),
       "headers.X-Foo"},
      {"HeaderValueEmpty", with({{"headers", {{"X-Foo", ""}}}}).dump(), "headers.X-Foo"},
      {"HeaderValueNull", with({{"headers", {{"X-Foo", nullptr}}}}).dump(), "headers.X-Foo"},
      {"HeaderValueObject", with({{"headers", {{"X-Foo", {{"a", "b"}}}}}}).dump(), "headers.X-Foo"},
      {"HeaderValueEmptyObject", with({{"headers", {{"X-Foo", json::object()}}}}).dump(),
       "headers.X-Foo"},
      {"HeaderValueArray", with({{"headers", {{"X-Foo", json::array({"a", "b"})}}}}).dump(),
       "headers.X-Foo"},
      {"HeaderSignerOwnedAws4Authorization",
       with({{"headers", {{"Authorization", "Bearer x"}}}, {"hmac", {{"aws4-hmac-sha256", aws4_signing()}}}})
           .dump(),
       "headers.Authorization"},
      {"HeaderSignerOwnedAws4Date",
       with({{"headers", {{"X-Amz-Date", "20150830T123600Z"}}},
             {"hmac", {{"aws4-hmac-sha256", aws4_signing()}}}})
           .dump(),
       "headers.X-Amz-Date"},
      {"HeaderSignerOwnedAws4DateLowerCase",
       with({{"headers", {{"x-amz-date", "20150830T123600Z"}}},
             {"hmac", {{"aws4-hmac-sha256", aws4_signing()}}}})
           .dump(),
       "headers.x-amz-date"},
      {"HeaderSignerOwnedAws4ContentSha256",
       with({{"headers", {{"X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD"}}},
             {"hmac", {{"aws4-hmac-sha256", aws4_signing()}}}})
           .dump(),
       "headers.X-Amz-Content-Sha256"},
      {"HeaderSignerOwnedAws4SecurityToken",
       with({{"headers", {{"X-Amz-Security-Token", "tok"}}},
             {"hmac", {{"aws4-hmac-sha256", aws4_signing()}}}})
           .dump(),
       "headers.X-Amz-Security-Token"},
      {"HeaderSignerOwnedCap1Date",
       with({{"headers", {{"X-Cap-Date", "20150830T123600Z"}}},
             {"hmac", {{"cap1-hmac-sha512", cap1_signing()}}}})
           .dump(),
       "headers.X-Cap-Date"},
      {"HeaderSignerOwnedCap1Authorization",
       with({{"headers", {{"authorization", "x"}}}, {"hmac", {{"cap1-hmac-sha512", cap1_signing()}}}})
           .dump(),
       "headers.authorization"},

      // hmac
      {"HmacString", with({{"hmac", "aws4-hmac-sha256"}}).dump(), "hmac"},
      {"HmacNull", with({{"hmac", nullptr}}).dump(), "hmac"},
      {"HmacEmpty", with({{"hmac", json::object()}}).dump(), "hmac"},
      {"HmacBothSchemes",
       with({{"hmac", {{"aws4-hmac-sha256", aws4_signing()}, {"cap1-hmac-sha512", cap1_signing()}}}})
           .dump(),
       "hmac"},
      {"HmacUnknownScheme", with({{"hmac", {{"hmac-sha1", {{"key", "x"}}}}}}).dump(), "hmac.hmac-sha1"},
      {"HmacSchemeCaseVariant", with({{"hmac", {{"AWS4-HMAC-SHA256", aws4_signing()}}}}).dump(),
       "hmac.AWS4-HMAC-SHA256"},

      // hmac["aws4-hmac-sha256"]
      {"Aws4NotObject", with({{"hmac", {{"aws4-hmac-sha256", "AKID:secret"}}}}).dump(), aws},
      {"Aws4UnknownKey", with_aws4({{"sessiontoken", "x"}}).dump(), aws + ".sessiontoken"},
      {"Aws4AccessKeyMissing", with_aws4({{"awsAccessKeyId", nullptr}}).dump(), aws + ".awsAccessKeyId"},
      {"Aws4AccessKeyEmpty", with_aws4({{"awsAccessKeyId", ""}}).dump(), aws + ".awsAccessKeyId"},
      {"Aws4AccessKeyNotString", with_aws4({{"awsAccessKeyId", 12345}}).dump(), aws + ".awsAccessKeyId"},
      {"Aws4AccessKeyTooLong", with_aws4({{"awsAccessKeyId", std::string(129, 'A')}}).dump(),
       aws + ".awsAccessKeyId"},
      {"Aws4AccessKeyNotWord", with_aws4({{"awsAccessKeyId", "AKID-EXAMPLE"}}).dump(),
       aws + ".awsAccessKeyId"},
      {"Aws4AccessKeyWithSlash", with_aws4({{"awsAccessKeyId", "AKID/x"}}).dump(), aws + ".awsAccessKeyId"},
      {"Aws4AccessKeyWithSpace", with_aws4({{"awsAccessKeyId", "AKID "}}).dump(), aws + ".awsAccessKeyId"},
      {"Aws4SecretMissing", with_aws4({{"secretAccessKey", nullptr}}).dump(), aws + ".secretAccessKey"},
      {"Aws4SecretEmpty", with_aws4({{"secretAccessKey", ""}}).dump(), aws + ".secretAccessKey"},
      {"Aws4SecretNotString", with_aws4({{"secretAccessKey", true}}).dump(), aws + ".secretAccessKey"},
      {"Aws4SecretTooLong", with_aws4({{"secretAccessKey", std::string(257, 's')}}).dump(),
       aws + ".secretAccessKey"},
      {"Aws4RegionMissing", with_aws4({{"region", nullptr}}).dump(), aws + ".region"},
      {"Aws4RegionEmpty", with_aws4({{"region", ""}}).dump(), aws + ".region"},
      {"Aws4RegionNotString", with_aws4({{"region", json::array()}}).dump(), aws + ".region"},
      {"Aws4RegionTooLong", with_aws4({{"region", std::string(129, 'r')}}).dump(), aws + ".region"},
      {"Aws4RegionWithSlash", with_aws4({{"region", "us-east-1/x"}}).dump(), aws + ".region"},
      {"Aws4ServiceMissing", with_aws4({{"service", nullptr}}).dump(), aws + ".service"},
      {"Aws4ServiceEmpty", with_aws4({{"service", ""}}).dump(), aws + ".service"},
      {"Aws4ServiceNotString", with_aws4({{"service", 3}}).dump(), aws + ".service"},
      {"Aws4ServiceTooLong", with_aws4({{"service", std::string(129, 'v')}}).dump(), aws + ".service"},
      {"Aws4SessionTokenEmpty", with_aws4({{"sessionToken", ""}}).dump(), aws + ".sessionToken"},
      {"Aws4SessionTokenNotString", with_aws4({{"sessionToken", 7}}).dump(), aws + ".sessionToken"},
      {"Aws4SessionTokenTooLong", with_aws4({{"sessionToken", std::string(4097, 't')}}).dump(),
       aws + ".sessionToken"},
      {"Aws4SessionTokenCrLf", with_aws4({{"sessionToken", "tok\r\nX-Evil: 1"}}).dump(),
       aws + ".sessionToken"},

      // hmac["cap1-hmac-sha512"]
      {"Cap1NotObject", with({{"hmac", {{"cap1-hmac-sha512", "key"}}}}).dump(), cap},
      {"Cap1UnknownKey", with_cap1({{"secret", "x"}}).dump(), cap + ".secret"},
      {"Cap1KeyMissing", with_cap1({{"key", nullptr}}).dump(), cap + ".key"},
      {"Cap1KeyEmpty", with_cap1({{"key", ""}}).dump(), cap + ".key"},
      {"Cap1KeyNotString", with_cap1({{"key", 123}}).dump(), cap + ".key"},
      {"Cap1KeyStandardBase64", with_cap1({{"key", "c2Vj+cmV0/a2V5=="}}).dump(), cap + ".key"},
      {"Cap1KeyPadded", with_cap1({{"key", "c2VjcmV0LWtleQ=="}}).dump(), cap + ".key"},
      {"Cap1KeyWithSpace", with_cap1({{"key", "c2Vj cmV0"}}).dump(), cap + ".key"},
      {"Cap1KeyIdMissing", with_cap1({{"keyId", nullptr}}).dump(), cap + ".keyId"},
      {"Cap1KeyIdEmpty", with_cap1({{"keyId", ""}}).dump(), cap + ".keyId"},
      {"Cap1KeyIdNotString", with_cap1({{"keyId", 1}}).dump(), cap + ".keyId"},
      {"Cap1KeyIdTooLong", with_cap1({{"keyId", std::string(257, 'k')}}).dump(), cap + ".keyId"},
      {"Cap1KeyIdWithSlash", with_cap1({{"keyId", "team/key"}}).dump(), cap + ".keyId"},
      {"Cap1KeyIdWithComma", with_cap1({{"keyId", "key,1"}}).dump(), cap + ".keyId"},

      // timeoutMs
      {"TimeoutZero", with({{"timeoutMs", 0}}).dump(), "timeoutMs"},
      {"TimeoutNegative", with({{"timeoutMs", -1}}).dump(), "timeoutMs"},
      {"TimeoutVeryNegative", with({{"timeoutMs", -30000}}).dump(), "timeoutMs"},
      {"TimeoutFraction", R"({"uri":"https://upstream.example/","timeoutMs":1.5})", "timeoutMs"},
      {"TimeoutString", with({{"timeoutMs", "1000"}}).dump(), "timeoutMs"},
      {"TimeoutBoolean", with({{"timeoutMs", true}}).dump(), "timeoutMs"},
      {"TimeoutNull", with({{"timeoutMs", nullptr}}).dump(), "timeoutMs"},

      // tls (the PEM rules need generated material: see TlsPem below)
      {"TlsNotObject", with({{"tls", "insecure"}}).dump(), "tls"},
      {"TlsArray", with({{"tls", json::array()}}).dump(), "tls"},
      {"TlsNull", with({{"tls", nullptr}}).dump(), "tls"},
      {"TlsUnknownKey", with({{"tls", {{"servername", "x"}}}}).dump(), "tls.servername"},
      {"TlsCaNotPem", with({{"tls", {{"ca", "not a certificate"}}}}).dump(), "tls.ca"},
      {"TlsCaEmpty", with({{"tls", {{"ca", ""}}}}).dump(), "tls.ca"},
      {"TlsCaNotString", with({{"tls", {{"ca", 1}}}}).dump(), "tls.ca"},
      {"TlsCaTruncatedPem",
       with({{"tls", {{"ca", "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"}}}}).dump(),
       "tls.ca"},
      {"TlsRejectUnauthorizedString", with({{"tls", {{"rejectUnauthorized", "false"}}}}).dump(),
       "tls.rejectUnauthorized"},
      {"TlsRejectUnauthorizedNumber", with({{"tls", {{"rejectUnauthorized", 0}}}}).dump(),
       "tls.rejectUnauthorized"},
      {"TlsRejectUnauthorizedNull", with({{"tls", {{"rejectUnauthorized", nullptr}}}}).dump(),
       "tls.rejectUnauthorized"},
  };
}

class ExportViolation : public ::testing::TestWithParam<Violation> {};

TEST_P(ExportViolation, IsInvalidInputNamingTheField) {
  expect_invalid_body(GetParam().body, GetParam().field);
}

INSTANTIATE_TEST_SUITE_P(Contract41, ExportViolation, ::testing::ValuesIn(violations()),
                         [](const ::testing::TestParamInfo<Violation>& param_info) {
                           return param_info.param.name;
                         });

// --- cases whose expected field depends on ordering or is checked more loosely ---------------

TEST(ExportConfig, HeaderNamesDuplicatedCaseInsensitivelyAreRejected) {
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {"X-Foo", "x-foo"}, {"Content-Type", "CONTENT-TYPE"}, {"x-api-key", "X-Api-Key"}}) {
    SCOPED_TRACE(a + " / " + b);
    auto result = parse(with({{"headers", {{a, "1"}, {b, "2"}}}}).dump());
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().kind, ErrorKind::invalid_input);
    // Either spelling may be the one reported as "given twice".
    EXPECT_TRUE(iequals(result.error().field, "headers." + a)) << result.error().field;
  }
}

TEST(ExportConfig, DuplicateKeyInsideANestedObjectIsRejected) {
  for (std::string_view body : {
           R"({"uri":"https://a.example/","headers":{"X-A":"1","X-A":"2"}})",
           R"({"uri":"https://a.example/","hmac":{"cap1-hmac-sha512":{"key":"abc","keyId":"k","keyId":"j"}}})",
           R"({"uri":"https://a.example/","tls":{"rejectUnauthorized":true,"rejectUnauthorized":false}})",
       }) {
    SCOPED_TRACE(body);
    auto result = parse(body);
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().kind, ErrorKind::invalid_input);
    EXPECT_FALSE(result.error().field.empty());
  }
  // The repeated key is named by its dotted path.
  auto result = parse(R"({"uri":"https://a.example/","headers":{"X-A":"1","X-A":"2"}})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().field, "headers.X-A");
  result = parse(R"({"uri":"https://a.example/","hmac":{"cap1-hmac-sha512":{"key":"abc","keyId":"k","keyId":"j"}}})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().field, "hmac.cap1-hmac-sha512.keyId");
}

TEST(ExportConfig, AnEmptyUnknownKeyIsStillNamed) {
  auto result = parse(R"({"uri":"https://a.example/","":1})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().field, "\"\"");
  EXPECT_NE(result.error().message.find("\"\""), std::string::npos);
}

TEST(ExportConfig, SameKeyInDifferentObjectsIsNotADuplicate) {
  // "uri" at the top and as a header name; "key" in cap1 and "key"-like names elsewhere.
  UriExport config = parse_uri_export_ok(
      R"({"uri":"https://a.example/","headers":{"uri":"x","method":"y"},"method":"GET"})");
  ASSERT_EQ(config.headers.size(), 2u);
  EXPECT_EQ(config.method, "GET");
}

// Found by fuzzing (tests/fuzz/regressions/export_config): an empty key given twice was refused
// with an empty field name and the message " is given twice".
TEST(JsonWithoutDuplicateKeys, AnEmptyKeyGivenTwiceIsNamedAsQuotes) {
  auto result = parse_json_without_duplicate_keys(R"({"uri":"https://a.example/","":1,"":2})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().field, "\"\"");
  EXPECT_EQ(result.error().message, "\"\" is given twice");
  result = parse_json_without_duplicate_keys(R"({"":{"x":1,"x":2}})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().field, "\"\".x");
}

// The same rule for every JSON body the service reads (the create body too).
TEST(JsonWithoutDuplicateKeys, RefusesAKeyGivenTwiceInOneObjectNamingItsPath) {
  auto result = parse_json_without_duplicate_keys(R"({"id":"a","id":"b"})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().kind, ErrorKind::invalid_input);
  EXPECT_EQ(result.error().field, "id");
  EXPECT_EQ(result.error().message, "id is given twice");
  result = parse_json_without_duplicate_keys(R"({"a":{"b":1,"c":{"d":1,"d":2}}})");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().field, "a.c.d");
  result = parse_json_without_duplicate_keys(R"({"id":"a",)");
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.error().message, "body is not valid JSON");
  auto ok = parse_json_without_duplicate_keys(R"({"id":"a","x":{"id":"a"},"y":[{"id":1},{"id":2}]})");
  ASSERT_TRUE(ok.ok()) << ok.error().message;
  EXPECT_EQ((*ok)["id"], "a");
}

TEST(ExportConfig, CapabilityWithEveryOtherFieldIsRejected) {
  for (const char* key : {"uri", "method", "allowQuery", "headers", "hmac", "timeoutMs", "tls"}) {
    SCOPED_TRACE(key);
    json doc = {{"capability", kCapUri}, {key, nullptr}};
    auto result = parse(doc.dump());
    ASSERT_FALSE(result.ok());
    EXPECT_EQ(result.error().kind, ErrorKind::invalid_input);
    EXPECT_TRUE(result.error().field == key || result.error().field == "capability")
        << result.error().field;
  }
}

// --- TLS material -------------------------------------------------------------------------------

class TlsPem : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    first_ = new test::PemPair(test::make_self_signed_pem("upstream.example"));
    second_ = new test::PemPair(test::make_self_signed_pem("other.example"));
  }
  static void TearDownTestSuite() {
    delete first_;
    delete second_;
    first_ = second_ = nullptr;
  }
  static const test::PemPair& first() { return *first_; }
  static const test::PemPair& second() { return *second_; }

 private:
  static inline test::PemPair* first_ = nullptr;
  static inline test::PemPair* second_ = nullptr;
};

TEST_F(TlsPem, GeneratedMaterialLooksLikePem) {
  EXPECT_TRUE(first().cert.starts_with("-----BEGIN CERTIFICATE-----"));
  EXPECT_NE(first().key.find("PRIVATE KEY-----"), std::string::npos);
  EXPECT_NE(first().key, second().key);
}

TEST_F(TlsPem, CaOnly) {
  UriExport config = parse_ok(with({{"tls", {{"ca", first().cert}}}}));
  ASSERT_TRUE(config.tls.has_value());
  EXPECT_EQ(config.tls->ca, first().cert);
  EXPECT_TRUE(config.tls->cert.empty());
  EXPECT_TRUE(config.tls->key.empty());
  EXPECT_TRUE(config.tls->reject_unauthorized);
}

TEST_F(TlsPem, CaBundleOfTwoCertificates) {
  UriExport config = parse_ok(with({{"tls", {{"ca", first().cert + second().cert}}}}));
  ASSERT_TRUE(config.tls.has_value());
  EXPECT_EQ(config.tls->ca, first().cert + second().cert);
}

TEST_F(TlsPem, ClientCertificateWithItsKey) {
  UriExport config = parse_ok(with({{"tls",
                                     {{"ca", second().cert},
                                      {"cert", first().cert},
                                      {"key", first().key},
                                      {"rejectUnauthorized", false}}}}));
  ASSERT_TRUE(config.tls.has_value());
  EXPECT_EQ(config.tls->ca, second().cert);
  EXPECT_EQ(config.tls->cert, first().cert);
  EXPECT_EQ(config.tls->key, first().key);
  EXPECT_FALSE(config.tls->reject_unauthorized);
}

TEST_F(TlsPem, EmptyTlsObjectMeansDefaults) {
  UriExport config = parse_ok(with({{"tls", json::object()}}));
  ASSERT_TRUE(config.tls.has_value());
  EXPECT_TRUE(config.tls->ca.empty());
  EXPECT_TRUE(config.tls->reject_unauthorized);
}

TEST_F(TlsPem, RejectUnauthorizedTrueAndFalse) {
  EXPECT_TRUE(parse_ok(with({{"tls", {{"rejectUnauthorized", true}}}})).tls->reject_unauthorized);
  EXPECT_FALSE(parse_ok(with({{"tls", {{"rejectUnauthorized", false}}}})).tls->reject_unauthorized);
}

TEST_F(TlsPem, CertWithoutKey) {
  expect_invalid(with({{"tls", {{"cert", first().cert}}}}), "tls.key");
}

TEST_F(TlsPem, KeyWithoutCert) {
  expect_invalid(with({{"tls", {{"key", first().key}}}}), "tls.cert");
}

TEST_F(TlsPem, KeyNotMatchingCert) {
  expect_invalid(with({{"tls", {{"cert", first().cert}, {"key", second().key}}}}), "tls.key");
}

TEST_F(TlsPem, CertNotPem) {
  expect_invalid(with({{"tls", {{"cert", "not a certificate"}, {"key", first().key}}}}), "tls.cert");
}

TEST_F(TlsPem, CertIsAKey) {
  expect_invalid(with({{"tls", {{"cert", first().key}, {"key", first().key}}}}), "tls.cert");
}

TEST_F(TlsPem, KeyNotPem) {
  expect_invalid(with({{"tls", {{"cert", first().cert}, {"key", "not a key"}}}}), "tls.key");
}

TEST_F(TlsPem, KeyIsACertificate) {
  expect_invalid(with({{"tls", {{"cert", first().cert}, {"key", first().cert}}}}), "tls.key");
}

TEST_F(TlsPem, CaIsAPrivateKey) {
  expect_invalid(with({{"tls", {{"ca", first().key}}}}), "tls.ca");
}

TEST_F(TlsPem, CertEmptyString) {
  expect_invalid(with({{"tls", {{"cert", ""}, {"key", first().key}}}}), "tls.cert");
}

TEST_F(TlsPem, KeyEmptyString) {
  expect_invalid(with({{"tls", {{"cert", first().cert}, {"key", ""}}}}), "tls.key");
}

// Every handshake signs with the client key on an I/O thread: keys whose signatures cost more
// than RSA 4096 (larger RSA keys), and kinds outside TLS's usual set (other curves), are refused
// at export, naming tls.key; stored configurations, checked under earlier rules, are read back.
TEST(TlsClientKeys, RsaUpTo4096BitsTheNistCurvesAndEdDsaAreAccepted) {
  const std::vector<std::pair<const char*, const char*>> accepted = {
      {"RSA", "2048"}, {"RSA", "4096"}, {"EC", "P-256"}, {"EC", "P-384"}, {"EC", "P-521"}, {"ED25519", ""},
      {"ED448", ""}};
  for (const auto& [algorithm, parameter] : accepted) {
    const auto pem = test::make_self_signed_pem_with_key(algorithm, parameter);
    const UriExport config = parse_ok(with({{"tls", {{"cert", pem.cert}, {"key", pem.key}}}}));
    ASSERT_TRUE(config.tls.has_value()) << algorithm << " " << parameter;
    EXPECT_EQ(config.tls->key, pem.key);
  }
}

TEST(TlsClientKeys, LargerRsaKeysAndOtherCurvesAreRefusedNamingTheKey) {
  const std::vector<std::pair<const char*, const char*>> refused = {
      {"RSA", "4104"}, {"EC", "secp256k1"}, {"EC", "brainpoolP256r1"}, {"EC", "P-224"}};
  for (const auto& [algorithm, parameter] : refused) {
    const auto pem = test::make_self_signed_pem_with_key(algorithm, parameter);
    const std::string body = with({{"tls", {{"cert", pem.cert}, {"key", pem.key}}}}).dump();
    auto result = parse_export_config(body);
    ASSERT_FALSE(result) << algorithm << " " << parameter;
    EXPECT_EQ(result.error().field, "tls.key");
    EXPECT_EQ(result.error().message,
              "tls.key must be an RSA key of at most 4096 bits, an EC key on P-256, P-384 or P-521, or an "
              "Ed25519 or Ed448 key");
    // A configuration stored before the rule still reads back (the server refuses it when used).
    auto stored = parse_export_config(body, {.max_timeout_ms = UINT64_MAX, .check_tls_key = false});
    EXPECT_TRUE(stored) << algorithm << " " << parameter;
  }
}

TEST_F(TlsPem, RoundTripKeepsTheMaterial) {
  UriExport config = parse_ok(with({{"tls",
                                     {{"ca", second().cert},
                                      {"cert", first().cert},
                                      {"key", first().key},
                                      {"rejectUnauthorized", false}}}}));
  UriExport again = parse_uri_export_ok(to_json(config).dump());
  ASSERT_TRUE(again.tls.has_value());
  EXPECT_EQ(again.tls->ca, second().cert);
  EXPECT_EQ(again.tls->cert, first().cert);
  EXPECT_EQ(again.tls->key, first().key);
  EXPECT_FALSE(again.tls->reject_unauthorized);
}

// --- boundaries that are still valid ------------------------------------------------------------

TEST(ExportConfig, LengthLimitsAreInclusive) {
  UriExport config = parse_ok(with_aws4({{"awsAccessKeyId", std::string(128, 'A')},
                                         {"secretAccessKey", std::string(256, 's')},
                                         {"region", std::string(128, 'r')},
                                         {"service", std::string(128, 'v')},
                                         {"sessionToken", std::string(4096, 't')}}));
  const auto* aws4 = std::get_if<Aws4Signing>(&config.signing);
  ASSERT_NE(aws4, nullptr);
  EXPECT_EQ(aws4->access_key_id.size(), 128u);
  EXPECT_EQ(aws4->secret_access_key.size(), 256u);
  EXPECT_EQ(aws4->region.size(), 128u);
  EXPECT_EQ(aws4->service.size(), 128u);
  EXPECT_EQ(aws4->session_token.size(), 4096u);

  UriExport cap = parse_ok(with_cap1({{"keyId", std::string(256, 'k')}}));
  const auto* cap1 = std::get_if<Cap1Signing>(&cap.signing);
  ASSERT_NE(cap1, nullptr);
  EXPECT_EQ(cap1->key_id.size(), 256u);
}

TEST(ExportConfig, Aws4AccessKeyIdAllowsWordCharacters) {
  UriExport config = parse_ok(with_aws4({{"awsAccessKeyId", "AKIA_0123456789_abc"}}));
  EXPECT_EQ(std::get<Aws4Signing>(config.signing).access_key_id, "AKIA_0123456789_abc");
}

TEST(ExportConfig, Aws4SecretMayHoldAnyPrintableCharacter) {
  UriExport config = parse_ok(with_aws4({{"secretAccessKey", "wJalr/K7M+DENG=bPxR fiCY"}}));
  EXPECT_EQ(std::get<Aws4Signing>(config.signing).secret_access_key, "wJalr/K7M+DENG=bPxR fiCY");
}

TEST(ExportConfig, Aws4WithoutSessionTokenHasEmptyToken) {
  UriExport config = parse_ok(with_aws4({}));
  EXPECT_TRUE(std::get<Aws4Signing>(config.signing).session_token.empty());
}

TEST(ExportConfig, Cap1KeyIsKeptAsGivenText) {
  UriExport config = parse_ok(with_cap1({{"key", "-_AZaz09"}, {"keyId", "team:key-1@x"}}));
  const auto& cap1 = std::get<Cap1Signing>(config.signing);
  EXPECT_EQ(cap1.key, "-_AZaz09");
  EXPECT_EQ(cap1.key_id, "team:key-1@x");
}

TEST(ExportConfig, NoHmacMeansNoSigning) {
  UriExport config = parse_ok(base_uri_doc());
  EXPECT_TRUE(std::holds_alternative<std::monostate>(config.signing));
}

// --- headers ------------------------------------------------------------------------------------

TEST(ExportConfig, HeaderNumbersAndBooleansBecomeText) {
  UriExport config = parse_uri_export_ok(
      R"({"uri":"https://a.example/","headers":{"X-Int":42,"X-Neg":-7,"X-Float":1.5,"X-True":true,"X-False":false,"X-Text":"plain"}})");
  auto value = [&](std::string_view name) -> std::string {
    const Header* h = find_header(config.headers, name);
    return h == nullptr ? "<absent>" : h->value;
  };
  EXPECT_EQ(value("X-Int"), "42");
  EXPECT_EQ(value("X-Neg"), "-7");
  EXPECT_EQ(value("X-Float"), "1.5");
  EXPECT_EQ(value("X-True"), "true");
  EXPECT_EQ(value("X-False"), "false");
  EXPECT_EQ(value("X-Text"), "plain");
  EXPECT_EQ(config.headers.size(), 6u);
}

TEST(ExportConfig, HeaderNamesKeepTheirSpelling) {
  UriExport config = parse_ok(with({{"headers", {{"X-Amz-Invocation-Type", "Event"}, {"accept", "*/*"}}}}));
  ASSERT_NE(find_header(config.headers, "x-amz-invocation-type"), nullptr);
  EXPECT_EQ(find_header(config.headers, "x-amz-invocation-type")->name, "X-Amz-Invocation-Type");
  EXPECT_EQ(find_header(config.headers, "ACCEPT")->name, "accept");
}

TEST(ExportConfig, HeaderValueMayHoldTabsSpacesAndQuotes) {
  UriExport config = parse_ok(with({{"headers", {{"X-Foo", "a\tb  \"c, d\""}}}}));
  EXPECT_EQ(find_header(config.headers, "X-Foo")->value, "a\tb  \"c, d\"");
}

TEST(ExportConfig, HopByHopHostAndContentLengthHeadersAreDropped) {
  UriExport config = parse_ok(with({{"headers",
                                     {{"Connection", "close"},
                                      {"keep-alive", "timeout=5"},
                                      {"Proxy-Authenticate", "Basic"},
                                      {"Proxy-Authorization", "Basic eDp5"},
                                      {"TE", "trailers"},
                                      {"Trailer", "X-Checksum"},
                                      {"Transfer-Encoding", "chunked"},
                                      {"UPGRADE", "websocket"},
                                      {"Host", "evil.example"},
                                      {"content-length", "12"},
                                      {"X-Kept", "yes"}}}}));
  ASSERT_EQ(config.headers.size(), 1u);
  EXPECT_EQ(config.headers[0], (Header{"X-Kept", "yes"}));
}

TEST(ExportConfig, AuthorizationMayBeConfiguredWithoutHmac) {
  UriExport config = parse_ok(with({{"headers", {{"Authorization", "Bearer upstream-token"}}}}));
  ASSERT_NE(find_header(config.headers, "authorization"), nullptr);
  EXPECT_EQ(find_header(config.headers, "authorization")->value, "Bearer upstream-token");
}

TEST(ExportConfig, OtherSchemesHeadersAreNotReserved) {
  // X-Cap-Date belongs to cap1's signer, not aws4's, and X-Amz-Date to aws4's, not cap1's.
  UriExport aws = parse_ok(with({{"headers", {{"X-Cap-Date", "x"}}},
                                 {"hmac", {{"aws4-hmac-sha256", aws4_signing()}}}}));
  EXPECT_EQ(aws.headers.size(), 1u);
  UriExport cap = parse_ok(with({{"headers", {{"X-Amz-Date", "x"}}},
                                 {"hmac", {{"cap1-hmac-sha512", cap1_signing()}}}}));
  EXPECT_EQ(cap.headers.size(), 1u);
}

TEST(ExportConfig, AnEmptyHeadersObjectIsAllowed) {
  UriExport config = parse_ok(with({{"headers", json::object()}}));
  EXPECT_TRUE(config.headers.empty());
}

// --- uri ----------------------------------------------------------------------------------------

struct UriCase {
  std::string uri;
  bool https;
  std::string host;
  std::string connect_host;
  std::uint16_t port;
  std::string authority;
  std::string path;
  std::optional<std::string> query;
  std::string stored;
};

TEST(UpstreamUri, TakenApart) {
  const std::vector<UriCase> cases = {
      {"https://upstream.example/a/b?x=1&y=2", true, "upstream.example", "upstream.example", 443,
       "upstream.example", "/a/b", "x=1&y=2", "https://upstream.example/a/b?x=1&y=2"},
      {"http://upstream.example", false, "upstream.example", "upstream.example", 80,
       "upstream.example", "/", std::nullopt, "http://upstream.example/"},
      // Fragment dropped (with or without a query before it).
      {"https://upstream.example/a?x=1#frag", true, "upstream.example", "upstream.example", 443,
       "upstream.example", "/a", "x=1", "https://upstream.example/a?x=1"},
      {"https://upstream.example/a#frag?not-a-query", true, "upstream.example", "upstream.example",
       443, "upstream.example", "/a", std::nullopt, "https://upstream.example/a"},
      // Explicit default ports are left out of the authority.
      {"https://upstream.example:443/x", true, "upstream.example", "upstream.example", 443,
       "upstream.example", "/x", std::nullopt, "https://upstream.example/x"},
      {"http://upstream.example:80/x", false, "upstream.example", "upstream.example", 80,
       "upstream.example", "/x", std::nullopt, "http://upstream.example/x"},
      // ... but another scheme's default port is not a default.
      {"http://upstream.example:443/x", false, "upstream.example", "upstream.example", 443,
       "upstream.example:443", "/x", std::nullopt, "http://upstream.example:443/x"},
      {"https://upstream.example:80/x", true, "upstream.example", "upstream.example", 80,
       "upstream.example:80", "/x", std::nullopt, "https://upstream.example:80/x"},
      {"https://upstream.example:8443/x", true, "upstream.example", "upstream.example", 8443,
       "upstream.example:8443", "/x", std::nullopt, "https://upstream.example:8443/x"},
      {"http://upstream.example:1/", false, "upstream.example", "upstream.example", 1,
       "upstream.example:1", "/", std::nullopt, "http://upstream.example:1/"},
      {"http://upstream.example:65535/", false, "upstream.example", "upstream.example", 65535,
       "upstream.example:65535", "/", std::nullopt, "http://upstream.example:65535/"},
      // Scheme and host are case-insensitive (stored lower-case); the path is not.
      {"HTTPS://UpStream.Example/Path/To", true, "upstream.example", "upstream.example", 443,
       "upstream.example", "/Path/To", std::nullopt, "https://upstream.example/Path/To"},
      // IPv6 literals keep their brackets in Host, lose them for connecting.
      {"http://[2001:db8::1]:8080/p", false, "[2001:db8::1]", "2001:db8::1", 8080,
       "[2001:db8::1]:8080", "/p", std::nullopt, "http://[2001:db8::1]:8080/p"},
      {"https://[2001:DB8::A]/p", true, "[2001:db8::a]", "2001:db8::a", 443, "[2001:db8::a]", "/p",
       std::nullopt, "https://[2001:db8::a]/p"},
      {"https://[2001:db8::1]:443/", true, "[2001:db8::1]", "2001:db8::1", 443, "[2001:db8::1]", "/",
       std::nullopt, "https://[2001:db8::1]/"},
      // IPv4.
      {"http://192.0.2.10:8080/api", false, "192.0.2.10", "192.0.2.10", 8080, "192.0.2.10:8080",
       "/api", std::nullopt, "http://192.0.2.10:8080/api"},
      // An empty query is kept as present.
      {"https://upstream.example/a?", true, "upstream.example", "upstream.example", 443,
       "upstream.example", "/a", "", "https://upstream.example/a?"},
      // Encoded paths and queries are kept as written.
      {"https://upstream.example/a%20b/c%2Fd?q=a%26b&r=%E2%82%AC", true, "upstream.example",
       "upstream.example", 443, "upstream.example", "/a%20b/c%2Fd", "q=a%26b&r=%E2%82%AC",
       "https://upstream.example/a%20b/c%2Fd?q=a%26b&r=%E2%82%AC"},
  };
  for (const UriCase& c : cases) {
    SCOPED_TRACE(c.uri);
    auto parsed = parse_upstream_uri(c.uri);
    ASSERT_TRUE(parsed.ok()) << parsed.error().message;
    EXPECT_EQ(parsed->https, c.https);
    EXPECT_EQ(parsed->host, c.host);
    EXPECT_EQ(parsed->connect_host, c.connect_host);
    EXPECT_EQ(parsed->port, c.port);
    EXPECT_EQ(parsed->authority, c.authority);
    EXPECT_EQ(parsed->path, c.path);
    EXPECT_EQ(parsed->query, c.query);
    EXPECT_EQ(parsed->uri, c.stored);

    // The same through a whole export document.
    UriExport config = parse_ok(json{{"uri", c.uri}});
    EXPECT_EQ(config.target.uri, c.stored);
    EXPECT_EQ(config.target.authority, c.authority);
  }
}

TEST(UpstreamUri, Rejected) {
  for (std::string_view uri : {"", "/relative", "relative/path", "ftp://upstream.example/",
                               "ws://upstream.example/", "https://user:pw@upstream.example/",
                               "https://user@upstream.example/", "https://upstream.example:0/",
                               "https://upstream.example:70000/", "https://upstream.example:99999999/",
                               "https:///x", "https:x", "https://[::1/", "https://up_stream .example/"}) {
    SCOPED_TRACE(uri);
    auto parsed = parse_upstream_uri(uri);
    ASSERT_FALSE(parsed.ok());
    EXPECT_EQ(parsed.error().kind, ErrorKind::invalid_input);
    EXPECT_EQ(parsed.error().field, "uri");
  }
}

// --- method, allowQuery, timeoutMs ---------------------------------------------------------------

TEST(ExportConfig, MethodIsCaseInsensitiveAndStoredUpperCase) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"get", "GET"},         {"Post", "POST"},       {"pUt", "PUT"},
      {"delete", "DELETE"},   {"head", "HEAD"},       {"options", "OPTIONS"},
      {"patch", "PATCH"},     {"trace", "TRACE"},     {"connect", "CONNECT"},
      {"POST", "POST"},
  };
  for (const auto& [given, stored] : cases) {
    SCOPED_TRACE(given);
    UriExport config = parse_ok(with({{"method", given}}));
    ASSERT_TRUE(config.method.has_value());
    EXPECT_EQ(*config.method, stored);
  }
}

TEST(ExportConfig, MethodIsOptional) {
  EXPECT_FALSE(parse_ok(base_uri_doc()).method.has_value());
}

TEST(ExportConfig, AllowQueryDefaultsToFalse) {
  EXPECT_FALSE(parse_ok(base_uri_doc()).allow_query);
  EXPECT_TRUE(parse_ok(with({{"allowQuery", true}})).allow_query);
  EXPECT_FALSE(parse_ok(with({{"allowQuery", false}})).allow_query);
}

TEST(ExportConfig, TimeoutIsKeptOrLoweredToTheServiceMaximum) {
  EXPECT_FALSE(parse_ok(base_uri_doc()).timeout_ms.has_value());
  EXPECT_EQ(parse_ok(with({{"timeoutMs", 1}})).timeout_ms, 1u);
  EXPECT_EQ(parse_ok(with({{"timeoutMs", 2500}})).timeout_ms, 2500u);
  EXPECT_EQ(parse_ok(with({{"timeoutMs", 30000}})).timeout_ms, 30000u);
  EXPECT_EQ(parse_ok(with({{"timeoutMs", 30001}})).timeout_ms, 30000u);
  EXPECT_EQ(parse_ok(with({{"timeoutMs", 1000000000000LL}})).timeout_ms, 30000u);
  EXPECT_EQ(parse_ok(with({{"timeoutMs", std::uint64_t{9223372036854775807ULL}}})).timeout_ms, 30000u);
  // Above 2^63 and up to 2^64-1: still lowered, not mistaken for a negative number.
  EXPECT_EQ(parse_ok(with({{"timeoutMs", std::uint64_t{9223372036854775808ULL}}})).timeout_ms, 30000u);
  EXPECT_EQ(parse_ok(with({{"timeoutMs", std::uint64_t{18446744073709551615ULL}}})).timeout_ms, 30000u);
  // Integral numbers written in exponent form, and beyond 64 bits, count as integers too.
  auto parsed = parse_export_config(R"({"uri":"https://upstream.example/","timeoutMs":1e3})");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(std::get<UriExport>(*parsed).timeout_ms, 1000u);
  parsed = parse_export_config(R"({"uri":"https://upstream.example/","timeoutMs":1e30})");
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(std::get<UriExport>(*parsed).timeout_ms, 30000u);

  ExportLimits limits;
  limits.max_timeout_ms = 5000;
  EXPECT_EQ(parse_ok(with({{"timeoutMs", 10000}}), limits).timeout_ms, 5000u);
  EXPECT_EQ(parse_ok(with({{"timeoutMs", 5000}}), limits).timeout_ms, 5000u);
  EXPECT_EQ(parse_ok(with({{"timeoutMs", 4999}}), limits).timeout_ms, 4999u);
}

// --- re-export ----------------------------------------------------------------------------------

TEST(ExportConfig, ReExportOfACapabilityUri) {
  auto result = parse(json{{"capability", kCapUri}}.dump());
  ASSERT_TRUE(result.ok()) << result.error().message;
  const auto* re = std::get_if<ReExport>(&*result);
  ASSERT_NE(re, nullptr);
  EXPECT_EQ(re->capability.token().text(), kCapToken);
  EXPECT_EQ(re->capability.authority(), "membrane.amzn-us-east-1.capability.io");
}

TEST(ExportConfig, ReExportOfAFreshToken) {
  auto token = Token::generate();
  ASSERT_TRUE(token.ok());
  CapabilityUri uri("membrane.example:8443", *token);
  auto result = parse(json{{"capability", uri.serialize()}}.dump());
  ASSERT_TRUE(result.ok()) << result.error().message;
  ASSERT_TRUE(std::holds_alternative<ReExport>(*result));
  EXPECT_EQ(std::get<ReExport>(*result).capability.token(), *token);
}

TEST(ExportConfig, ReExportOfTheCustomCapabilityUriForm) {
  // cpblty:B64AUTH[@SCHEME]:TOKEN (contract §1); only the token matters.
  for (const std::string prefix : {"cpblty:bWVtYnJhbmUuZXhhbXBsZQ:", "cpblty:bWVtYnJhbmUuZXhhbXBsZQ@https:"}) {
    SCOPED_TRACE(prefix);
    auto result = parse(json{{"capability", prefix + std::string(kCapToken)}}.dump());
    ASSERT_TRUE(result.ok()) << result.error().message;
    ASSERT_TRUE(std::holds_alternative<ReExport>(*result));
    EXPECT_EQ(std::get<ReExport>(*result).capability.token().text(), kCapToken);
  }
}

// --- the JSON overload --------------------------------------------------------------------------

TEST(ExportConfig, JsonOverloadAppliesTheSameRules) {
  auto ok = parse_export_json(json{{"uri", "https://a.example/"}, {"method", "get"}});
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(std::get<UriExport>(*ok).method, "GET");
  auto bad = parse_export_json(json{{"uri", "https://a.example/"}, {"nope", 1}});
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "nope");
  auto not_object = parse_export_json(json::array());
  ASSERT_FALSE(not_object.ok());
  EXPECT_EQ(not_object.error().field, "body");
}

// --- the seed: the Lambda tutorial export --------------------------------------------------------

TEST(ExportConfig, LambdaTutorialExportParsesToTypedValues) {
  UriExport config = parse_uri_export_ok(kLambdaExport);
  EXPECT_EQ(config.target.uri,
            "https://lambda.us-east-1.amazonaws.com/2015-03-31/functions/my-function/invocations");
  EXPECT_TRUE(config.target.https);
  EXPECT_EQ(config.target.host, "lambda.us-east-1.amazonaws.com");
  EXPECT_EQ(config.target.connect_host, "lambda.us-east-1.amazonaws.com");
  EXPECT_EQ(config.target.port, 443);
  EXPECT_EQ(config.target.authority, "lambda.us-east-1.amazonaws.com");
  EXPECT_EQ(config.target.path, "/2015-03-31/functions/my-function/invocations");
  EXPECT_FALSE(config.target.query.has_value());
  EXPECT_EQ(config.method, "POST");
  EXPECT_FALSE(config.allow_query);
  ASSERT_EQ(config.headers.size(), 2u);
  ASSERT_NE(find_header(config.headers, "X-Amz-Invocation-Type"), nullptr);
  EXPECT_EQ(find_header(config.headers, "X-Amz-Invocation-Type")->value, "RequestResponse");
  ASSERT_NE(find_header(config.headers, "X-Amz-Log-Type"), nullptr);
  EXPECT_EQ(find_header(config.headers, "X-Amz-Log-Type")->value, "None");
  const auto* aws4 = std::get_if<Aws4Signing>(&config.signing);
  ASSERT_NE(aws4, nullptr);
  EXPECT_EQ(aws4->access_key_id, "AKIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(aws4->secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
  EXPECT_EQ(aws4->region, "us-east-1");
  EXPECT_EQ(aws4->service, "lambda");
  EXPECT_TRUE(aws4->session_token.empty());
  EXPECT_FALSE(config.timeout_ms.has_value());
  EXPECT_FALSE(config.tls.has_value());
}

// --- round trip ---------------------------------------------------------------------------------

void expect_same(const UriExport& a, const UriExport& b) {
  EXPECT_EQ(a.target.uri, b.target.uri);
  EXPECT_EQ(a.target.https, b.target.https);
  EXPECT_EQ(a.target.host, b.target.host);
  EXPECT_EQ(a.target.connect_host, b.target.connect_host);
  EXPECT_EQ(a.target.port, b.target.port);
  EXPECT_EQ(a.target.authority, b.target.authority);
  EXPECT_EQ(a.target.path, b.target.path);
  EXPECT_EQ(a.target.query, b.target.query);
  EXPECT_EQ(a.method, b.method);
  EXPECT_EQ(a.allow_query, b.allow_query);
  // Header order is not significant (names are unique); compare as sets.
  ASSERT_EQ(a.headers.size(), b.headers.size());
  for (const Header& h : a.headers) {
    const Header* other = find_header(b.headers, h.name);
    ASSERT_NE(other, nullptr) << h.name;
    EXPECT_EQ(other->name, h.name);
    EXPECT_EQ(other->value, h.value);
  }
  ASSERT_EQ(a.signing.index(), b.signing.index());
  if (const auto* x = std::get_if<Aws4Signing>(&a.signing)) {
    const auto& y = std::get<Aws4Signing>(b.signing);
    EXPECT_EQ(x->access_key_id, y.access_key_id);
    EXPECT_EQ(x->secret_access_key, y.secret_access_key);
    EXPECT_EQ(x->region, y.region);
    EXPECT_EQ(x->service, y.service);
    EXPECT_EQ(x->session_token, y.session_token);
    EXPECT_EQ(x->credentials_profile, y.credentials_profile);
  }
  if (const auto* x = std::get_if<Cap1Signing>(&a.signing)) {
    const auto& y = std::get<Cap1Signing>(b.signing);
    EXPECT_EQ(x->key, y.key);
    EXPECT_EQ(x->key_id, y.key_id);
  }
  EXPECT_EQ(a.timeout_ms, b.timeout_ms);
  ASSERT_EQ(a.tls.has_value(), b.tls.has_value());
  if (a.tls) {
    EXPECT_EQ(a.tls->ca, b.tls->ca);
    EXPECT_EQ(a.tls->cert, b.tls->cert);
    EXPECT_EQ(a.tls->key, b.tls->key);
    EXPECT_EQ(a.tls->reject_unauthorized, b.tls->reject_unauthorized);
  }
}

TEST(ExportConfig, RoundTripThroughToJson) {
  const std::vector<std::string> bodies = {
      std::string(kLambdaExport),
      base_uri_doc().dump(),
      R"({"uri":"HTTP://[2001:DB8::1]:80/a/../b%20c?x=1&y#frag","method":"delete","allowQuery":true,"timeoutMs":99999999})",
      R"({"uri":"https://upstream.example:8443/?","headers":{"X-Int":42,"X-Bool":false,"Accept":"*/*"},"hmac":{"aws4-hmac-sha256":{"awsAccessKeyId":"AKID","secretAccessKey":"s/e+c=r et","region":"eu-west-1","service":"s3","sessionToken":"FwoGZXIvYXdzEJr//////////wEaDM"}},"timeoutMs":1500})",
      R"({"uri":"https://lambda.eu-west-1.amazonaws.com/2015-03-31/functions/f/invocations","hmac":{"aws4-hmac-sha256":{"credentials":"prod-lambda","region":"eu-west-1","service":"lambda"}}})",
      R"({"uri":"http://192.0.2.1:8080/cap1","method":"PATCH","headers":{"Content-Type":"application/json"},"hmac":{"cap1-hmac-sha512":{"key":"c2VjcmV0LWtleQ","keyId":"team:key-1"}},"tls":{"rejectUnauthorized":false}})",
  };
  for (const std::string& body : bodies) {
    SCOPED_TRACE(body);
    UriExport first = parse_uri_export_ok(body);
    json dumped = to_json(first);
    UriExport second = parse_uri_export_ok(dumped.dump());
    expect_same(first, second);
    // And the serialised form is itself stable.
    EXPECT_EQ(to_json(second), dumped);
  }
}

TEST(ExportConfig, ToJsonHoldsOnlyKnownKeys) {
  UriExport config = parse_uri_export_ok(kLambdaExport);
  json out = to_json(config);
  for (const auto& [key, value] : out.items()) {
    EXPECT_TRUE(key == "uri" || key == "method" || key == "allowQuery" || key == "headers" ||
                key == "hmac" || key == "timeoutMs" || key == "tls")
        << key;
  }
  EXPECT_EQ(out["uri"], config.target.uri);
  EXPECT_EQ(out["method"], "POST");
}


// --- contract §9: credentials from an --aws-config profile -------------------------------------------

json with_profile(json patch = json::object()) {
  json aws4 = {{"credentials", "prod-lambda"}, {"region", "eu-west-1"}, {"service", "lambda"}};
  for (auto& [key, value] : patch.items()) {
    if (value.is_null()) {
      aws4.erase(key);
    } else {
      aws4[key] = value;
    }
  }
  return with({{"hmac", {{"aws4-hmac-sha256", aws4}}}});
}

void expect_field_error(const json& doc, std::string_view field) {
  auto result = parse_export_json(doc);
  ASSERT_FALSE(result.ok()) << doc.dump();
  EXPECT_EQ(result.error().kind, ErrorKind::invalid_input);
  EXPECT_EQ(result.error().field, field) << result.error().message;
  EXPECT_NE(result.error().message.find(field), std::string::npos) << result.error().message;
  // The body parser agrees.
  auto from_text = parse(doc.dump());
  ASSERT_FALSE(from_text.ok());
  EXPECT_EQ(from_text.error().field, field);
}

TEST(ExportConfigProfile, CredentialsNameAProfileInsteadOfKeys) {
  UriExport config = parse_ok(with_profile());
  const auto* aws4 = std::get_if<Aws4Signing>(&config.signing);
  ASSERT_NE(aws4, nullptr);
  EXPECT_EQ(aws4->credentials_profile, std::optional<std::string>("prod-lambda"));
  EXPECT_TRUE(aws4->access_key_id.empty());
  EXPECT_TRUE(aws4->secret_access_key.empty());
  EXPECT_TRUE(aws4->session_token.empty());
  EXPECT_EQ(aws4->region, "eu-west-1");
  EXPECT_EQ(aws4->service, "lambda");
  // Static keys leave it empty.
  EXPECT_FALSE(std::get<Aws4Signing>(parse_ok(with_aws4({})).signing).credentials_profile.has_value());
}

TEST(ExportConfigProfile, BothFormsAreRefusedNamingCredentials) {
  expect_field_error(with_aws4({{"credentials", "prod-lambda"}}), "hmac.aws4-hmac-sha256.credentials");
  expect_field_error(with_profile({{"awsAccessKeyId", "AKID"}}), "hmac.aws4-hmac-sha256.credentials");
  expect_field_error(with_profile({{"secretAccessKey", "secret"}}), "hmac.aws4-hmac-sha256.credentials");
}

TEST(ExportConfigProfile, SessionTokenOnlyWithStaticKeys) {
  expect_field_error(with_profile({{"sessionToken", "token"}}), "hmac.aws4-hmac-sha256.sessionToken");
}

TEST(ExportConfigProfile, NeitherFormIsRefusedAsBefore) {
  expect_field_error(with_profile({{"credentials", nullptr}}), "hmac.aws4-hmac-sha256.awsAccessKeyId");
}

TEST(ExportConfigProfile, RegionAndServiceStayRequired) {
  expect_field_error(with_profile({{"region", nullptr}}), "hmac.aws4-hmac-sha256.region");
  expect_field_error(with_profile({{"service", nullptr}}), "hmac.aws4-hmac-sha256.service");
  expect_field_error(with_profile({{"region", "us/east"}}), "hmac.aws4-hmac-sha256.region");
}

TEST(ExportConfigProfile, ProfileNameRules) {
  expect_field_error(with_profile({{"credentials", ""}}), "hmac.aws4-hmac-sha256.credentials");
  expect_field_error(with_profile({{"credentials", std::string(129, 'p')}}),
                     "hmac.aws4-hmac-sha256.credentials");
  expect_field_error(with_profile({{"credentials", "with space"}}), "hmac.aws4-hmac-sha256.credentials");
  expect_field_error(with_profile({{"credentials", "a/b"}}), "hmac.aws4-hmac-sha256.credentials");
  expect_field_error(with_profile({{"credentials", "a\nb"}}), "hmac.aws4-hmac-sha256.credentials");
  expect_field_error(with_profile({{"credentials", 42}}), "hmac.aws4-hmac-sha256.credentials");
  expect_field_error(with_profile({{"credentials", json::object()}}), "hmac.aws4-hmac-sha256.credentials");
  UriExport longest = parse_ok(with_profile({{"credentials", std::string(128, 'p')}}));
  EXPECT_EQ(std::get<Aws4Signing>(longest.signing).credentials_profile->size(), 128u);
  UriExport punctuated = parse_ok(with_profile({{"credentials", "team.a@corp+x=y,z_1-2"}}));
  EXPECT_EQ(std::get<Aws4Signing>(punctuated.signing).credentials_profile, "team.a@corp+x=y,z_1-2");
}

TEST(ExportConfigProfile, SignerHeadersStayReserved) {
  json doc = with_profile();
  doc["headers"] = {{"X-Amz-Security-Token", "mine"}};
  expect_field_error(doc, "headers.X-Amz-Security-Token");
}

TEST(ExportConfig, EveryHeaderTheSignerWritesIsReservedInAnySpelling) {
  for (std::string_view name : sigv4::kWrittenHeaders) {
    for (const std::string& spelled : {std::string(name), to_lower_ascii(name)}) {
      SCOPED_TRACE(spelled);
      json doc = with({{"headers", {{spelled, "x"}}}, {"hmac", {{"aws4-hmac-sha256", aws4_signing()}}}});
      expect_field_error(doc, "headers." + spelled);
    }
  }
  for (std::string_view name : cap1::kWrittenHeaders) {
    for (const std::string& spelled : {std::string(name), to_lower_ascii(name)}) {
      SCOPED_TRACE(spelled);
      json doc = with({{"headers", {{spelled, "x"}}}, {"hmac", {{"cap1-hmac-sha512", cap1_signing()}}}});
      expect_field_error(doc, "headers." + spelled);
    }
  }
}

TEST(ExportConfigProfile, RoundTripKeepsTheProfileAndNoKeys) {
  UriExport first = parse_ok(with_profile());
  json stored = to_json(first);
  const json& aws4 = stored.at("hmac").at("aws4-hmac-sha256");
  EXPECT_EQ(aws4, (json{{"credentials", "prod-lambda"}, {"region", "eu-west-1"}, {"service", "lambda"}}));
  auto again = parse_export_json(stored);
  ASSERT_TRUE(again.ok()) << again.error().message;
  const auto& second = std::get<UriExport>(*again);
  expect_same(first, second);
  EXPECT_EQ(std::get<Aws4Signing>(second.signing).credentials_profile, "prod-lambda");
}

}  // namespace
}  // namespace membraned::core
