// contract §9: AssumeRole through STS without I/O. Endpoint selection in the AWS SDK order, the
// exact request (form body, headers, SigV4 with service "sts"), and the XML answers read with
// expat: credentials, service errors, and everything malformed or dangerous refused.
//
// The two expected Authorization values were computed independently with botocore 1.29
// (python3-botocore on Debian 12): SigV4Auth(Credentials(AKIDEXAMPLE, kSecret, token), "sts",
// region).add_auth() on an AWSRequest POST with the same URL, body, Content-Type and
// X-Amz-Content-Sha256 headers, its clock pinned to 2026-01-02T03:04:05Z.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/aws_config.hpp"
#include "core/aws_credentials.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/http.hpp"
#include "core/result.hpp"
#include "core/sigv4.hpp"
#include "core/sts.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::core {
namespace {

using membraned::test::env_of;

using namespace std::chrono_literals;

constexpr std::string_view kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr std::string_view kToken = "IQoJb3JpZ2luX2VjEXAMPLETOKEN/+==";
constexpr std::string_view kBody =
    "Action=AssumeRole&Version=2011-06-15"
    "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fpath%2Fto%2FLambda-Invoker"
    "&RoleSessionName=membraned&ExternalId=ext%3Aid%2F1%2B2%3D3&DurationSeconds=3600";
constexpr std::string_view kBodySha256 = "a44124d36f0474a74486dab65fa03f134e14174ea0cfb158648d44f554f154cf";

StsEndpoint endpoint_ok(const EnvLookup& env, std::optional<std::string> region) {
  auto e = select_sts_endpoint(env, region);
  if (!e.ok()) {
    ADD_FAILURE() << e.error().field << ": " << e.error().message;
    return {};
  }
  return std::move(e).value();
}

AssumeRoleStep full_step() {
  AssumeRoleStep step;
  step.profile = "lambda";
  step.role_arn = "arn:aws:iam::123456789012:role/path/to/Lambda-Invoker";
  step.external_id = "ext:id/1+2=3";
  step.role_session_name = "membraned";
  step.duration = 3600s;
  step.region = "eu-west-1";
  return step;
}

AwsCredentials creds(std::optional<std::string> token) {
  return {"AKIDEXAMPLE", std::string(kSecret), std::move(token), std::nullopt};
}

std::chrono::system_clock::time_point fixed_now() {
  return test::parse_iso8601_utc("2026-01-02T03:04:05Z");
}

const std::string& header(const StsRequest& r, std::string_view name) {
  static const std::string none = "(absent)";
  const Header* h = find_header(r.headers, name);
  return h == nullptr ? none : h->value;
}

// --- endpoint selection ------------------------------------------------------------------------

TEST(StsEndpoint, EndpointUrlStsComesFirst) {
  StsEndpoint e = endpoint_ok(env_of({{"AWS_ENDPOINT_URL_STS", "http://127.0.0.1:4566/sts/"},
                                      {"AWS_ENDPOINT_URL", "https://all.example"}}),
                              "eu-west-1");
  EXPECT_FALSE(e.target.https);
  EXPECT_EQ(e.target.connect_host, "127.0.0.1");
  EXPECT_EQ(e.target.port, 4566);
  EXPECT_EQ(e.target.authority, "127.0.0.1:4566");
  EXPECT_EQ(e.target.path, "/sts/");
  EXPECT_EQ(e.signing_region, "eu-west-1");
}

TEST(StsEndpoint, EndpointUrlComesNext) {
  StsEndpoint e = endpoint_ok(env_of({{"AWS_ENDPOINT_URL", "https://all.example:8443"}}), "eu-west-1");
  EXPECT_TRUE(e.target.https);
  EXPECT_EQ(e.target.authority, "all.example:8443");
  EXPECT_EQ(e.target.path, "/");
  EXPECT_EQ(e.signing_region, "eu-west-1");
  // An empty AWS_ENDPOINT_URL_STS counts as unset.
  StsEndpoint empty = endpoint_ok(
      env_of({{"AWS_ENDPOINT_URL_STS", ""}, {"AWS_ENDPOINT_URL", "https://all.example"}}), std::nullopt);
  EXPECT_EQ(empty.target.authority, "all.example");
  EXPECT_EQ(empty.signing_region, "us-east-1");
}

TEST(StsEndpoint, RegionalEndpointThenGlobal) {
  StsEndpoint regional = endpoint_ok(env_of({}), "ap-southeast-2");
  EXPECT_EQ(regional.target.uri, "https://sts.ap-southeast-2.amazonaws.com/");
  EXPECT_EQ(regional.target.authority, "sts.ap-southeast-2.amazonaws.com");
  EXPECT_EQ(regional.target.port, 443);
  EXPECT_EQ(regional.signing_region, "ap-southeast-2");

  StsEndpoint global = endpoint_ok(env_of({{"AWS_ENDPOINT_URL", ""}}), std::nullopt);
  EXPECT_EQ(global.target.uri, "https://sts.amazonaws.com/");
  EXPECT_EQ(global.target.authority, "sts.amazonaws.com");
  EXPECT_TRUE(global.target.https);
  EXPECT_EQ(global.signing_region, "us-east-1");

  StsEndpoint no_lookup = endpoint_ok(EnvLookup{}, std::nullopt);
  EXPECT_EQ(no_lookup.target.authority, "sts.amazonaws.com");
}

TEST(StsEndpoint, BadValuesAreNamed) {
  auto bad = select_sts_endpoint(env_of({{"AWS_ENDPOINT_URL_STS", "not a url"}}), std::nullopt);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "AWS_ENDPOINT_URL_STS");
  auto ftp = select_sts_endpoint(env_of({{"AWS_ENDPOINT_URL", "ftp://sts.example"}}), std::nullopt);
  ASSERT_FALSE(ftp.ok());
  EXPECT_EQ(ftp.error().field, "AWS_ENDPOINT_URL");
  auto query = select_sts_endpoint(env_of({{"AWS_ENDPOINT_URL", "https://sts.example/?a=b"}}), std::nullopt);
  ASSERT_FALSE(query.ok());
  EXPECT_EQ(query.error().field, "AWS_ENDPOINT_URL");
  auto region = select_sts_endpoint(env_of({}), std::string("evil.example/x"));
  ASSERT_FALSE(region.ok());
  EXPECT_EQ(region.error().field, "region");
}

// --- the AssumeRole request --------------------------------------------------------------------

TEST(AssumeRoleRequest, BodyEncodesEveryValueTheAwsWay) {
  EXPECT_EQ(assume_role_body(full_step()), kBody);
  AssumeRoleStep minimal = full_step();
  minimal.external_id.reset();
  minimal.duration.reset();
  minimal.role_session_name = "a+b=c,d.e@f-g_h";
  EXPECT_EQ(assume_role_body(minimal),
            "Action=AssumeRole&Version=2011-06-15"
            "&RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fpath%2Fto%2FLambda-Invoker"
            "&RoleSessionName=a%2Bb%3Dc%2Cd.e%40f-g_h");
  AssumeRoleStep duration_only = minimal;
  duration_only.duration = 43200s;
  EXPECT_TRUE(assume_role_body(duration_only).ends_with("&RoleSessionName=a%2Bb%3Dc%2Cd.e%40f-g_h&DurationSeconds=43200"));
  EXPECT_EQ(assume_role_body(duration_only).find("ExternalId"), std::string::npos);
}

TEST(AssumeRoleRequest, UnsignedRequest) {
  StsEndpoint endpoint = endpoint_ok(env_of({}), "eu-west-1");
  StsRequest r = build_assume_role_request(endpoint, full_step());
  EXPECT_TRUE(r.https);
  EXPECT_EQ(r.connect_host, "sts.eu-west-1.amazonaws.com");
  EXPECT_EQ(r.port, 443);
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/");
  EXPECT_EQ(r.body, kBody);
  ASSERT_EQ(r.headers.size(), 3u);
  EXPECT_EQ(r.headers[0], (Header{"Host", "sts.eu-west-1.amazonaws.com"}));
  EXPECT_EQ(header(r, "Content-Type"), "application/x-www-form-urlencoded; charset=utf-8");
  EXPECT_EQ(header(r, "Content-Length"), std::to_string(kBody.size()));
  EXPECT_EQ(find_header(r.headers, "Authorization"), nullptr);

  // A custom endpoint's path is the target, its authority the Host.
  StsEndpoint local = endpoint_ok(env_of({{"AWS_ENDPOINT_URL_STS", "http://localhost:4566/sts"}}), std::nullopt);
  StsRequest lr = build_assume_role_request(local, full_step());
  EXPECT_FALSE(lr.https);
  EXPECT_EQ(lr.port, 4566);
  EXPECT_EQ(lr.target, "/sts");
  EXPECT_EQ(header(lr, "Host"), "localhost:4566");
}

TEST(AssumeRoleRequest, SignedWithSessionTokenMatchesBotocore) {
  StsEndpoint endpoint = endpoint_ok(env_of({}), "eu-west-1");
  StsRequest r = build_assume_role_request(endpoint, full_step());
  sigv4::Signature sig = sign_sts_request(r, endpoint, creds(std::string(kToken)), fixed_now());

  const std::string expected_canonical =
      "POST\n/\n\n"
      "content-type:application/x-www-form-urlencoded; charset=utf-8\n"
      "host:sts.eu-west-1.amazonaws.com\n"
      "x-amz-content-sha256:" + std::string(kBodySha256) + "\n"
      "x-amz-date:20260102T030405Z\n"
      "x-amz-security-token:" + std::string(kToken) + "\n\n"
      "content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token\n" +
      std::string(kBodySha256);
  EXPECT_EQ(sig.canonical_request, expected_canonical);
  EXPECT_EQ(sha256_hex(kBody), kBodySha256);

  const std::string expected_sts = "AWS4-HMAC-SHA256\n20260102T030405Z\n20260102/eu-west-1/sts/aws4_request\n" +
                                   sha256_hex(expected_canonical);
  EXPECT_EQ(sig.string_to_sign, expected_sts);
  Sha256Digest key = sigv4::derive_signing_key(kSecret, "20260102", "eu-west-1", "sts");
  EXPECT_EQ(sig.signature, hex_encode(digest_view(hmac_sha256(digest_view(key), expected_sts))));

  // botocore's value for the same request (see the top of this file).
  EXPECT_EQ(header(r, "Authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260102/eu-west-1/sts/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date;x-amz-security-token, "
            "Signature=17cdce949f549b4a81005efe17565e831219ced6a928d7bfd517d4f058d20b40");
  EXPECT_EQ(header(r, "X-Amz-Security-Token"), kToken);
  EXPECT_EQ(header(r, "X-Amz-Date"), "20260102T030405Z");
  EXPECT_EQ(header(r, "X-Amz-Content-Sha256"), kBodySha256);
  EXPECT_EQ(header(r, "Host"), "sts.eu-west-1.amazonaws.com");
  EXPECT_EQ(header(r, "Content-Length"), std::to_string(kBody.size()));
  EXPECT_EQ(r.body, kBody);
}

TEST(AssumeRoleRequest, SignedWithoutSessionTokenOnTheGlobalEndpointMatchesBotocore) {
  StsEndpoint endpoint = endpoint_ok(env_of({}), std::nullopt);
  StsRequest r = make_assume_role_request(endpoint, full_step(), creds(std::nullopt), fixed_now());
  EXPECT_EQ(find_header(r.headers, "X-Amz-Security-Token"), nullptr);
  EXPECT_EQ(header(r, "Authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20260102/us-east-1/sts/aws4_request, "
            "SignedHeaders=content-type;host;x-amz-content-sha256;x-amz-date, "
            "Signature=7bab772d00aa46b48c578eeeed365cbd4c2a879fe1afe6344ec7842964683913");
  EXPECT_EQ(header(r, "Host"), "sts.amazonaws.com");
}

TEST(AssumeRoleRequest, MakeEqualsBuildThenSignAndUsesTheCache) {
  StsEndpoint endpoint = endpoint_ok(env_of({}), "eu-west-1");
  sigv4::SigningKeyCache cache;
  StsRequest made = make_assume_role_request(endpoint, full_step(), creds(std::string(kToken)),
                                             fixed_now(), &cache);
  EXPECT_EQ(cache.derivations(), 1u);
  StsRequest built = build_assume_role_request(endpoint, full_step());
  (void)sign_sts_request(built, endpoint, creds(std::string(kToken)), fixed_now(), &cache);
  EXPECT_EQ(cache.derivations(), 1u);
  EXPECT_EQ(made.headers, built.headers);
  EXPECT_EQ(made.body, built.body);
  // Another secret signs differently.
  AwsCredentials other = creds(std::string(kToken));
  other.secret_access_key = "another-secret";
  StsRequest third = make_assume_role_request(endpoint, full_step(), other, fixed_now(), &cache);
  EXPECT_NE(header(third, "Authorization"), header(made, "Authorization"));
}

// --- the answer --------------------------------------------------------------------------------

constexpr std::string_view kAssumeRoleResponse = R"(<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <SourceIdentity>Alice</SourceIdentity>
    <AssumedRoleUser>
      <Arn>arn:aws:sts::123456789012:assumed-role/demo/TestAR</Arn>
      <AssumedRoleId>ARO123EXAMPLE123:TestAR</AssumedRoleId>
    </AssumedRoleUser>
    <Credentials>
      <AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>
      <SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY</SecretAccessKey>
      <SessionToken>AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==</SessionToken>
      <Expiration>2019-11-09T13:34:41Z</Expiration>
    </Credentials>
    <PackedPolicySize>6</PackedPolicySize>
  </AssumeRoleResult>
  <ResponseMetadata>
    <RequestId>c6104cbe-af31-11e0-8154-cbc7ccf896c7</RequestId>
  </ResponseMetadata>
</AssumeRoleResponse>
)";

constexpr std::string_view kErrorResponse = R"(<?xml version="1.0" encoding="UTF-8"?>
<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error>
    <Type>Sender</Type>
    <Code>AccessDenied</Code>
    <Message>User: arn:aws:sts::123456789012:assumed-role/ec2/i-0abc is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::111111111111:role/lambda-invoker</Message>
  </Error>
  <RequestId>4f1c5f1e-9f55-4a5c-9d5e-000000000000</RequestId>
</ErrorResponse>
)";

AwsCredentials credentials_ok(std::string_view xml) {
  auto answer = parse_assume_role_answer(xml);
  if (!answer.ok()) {
    ADD_FAILURE() << answer.error().message;
    return {};
  }
  if (!std::holds_alternative<AwsCredentials>(*answer)) {
    ADD_FAILURE() << "an StsServiceError: " << std::get<StsServiceError>(*answer).describe();
    return {};
  }
  return std::get<AwsCredentials>(std::move(answer).value());
}

// Refused, with a message containing `what`.
void expect_refused(std::string_view xml, std::string_view what) {
  auto answer = parse_assume_role_answer(xml);
  ASSERT_FALSE(answer.ok()) << "accepted:\n" << xml;
  EXPECT_EQ(answer.error().kind, ErrorKind::invalid_input);
  EXPECT_EQ(answer.error().field, "sts");
  EXPECT_NE(answer.error().message.find(what), std::string::npos) << answer.error().message;
  EXPECT_EQ(answer.error().message.find("wJalrXUtnFEMI"), std::string::npos) << answer.error().message;
}

std::string replaced(std::string_view text, std::string_view from, std::string_view to) {
  std::string out(text);
  std::size_t at = out.find(from);
  if (at == std::string::npos) {
    ADD_FAILURE() << "test text lacks " << from;
    return out;
  }
  out.replace(at, from.size(), to);
  return out;
}

TEST(AssumeRoleAnswer, RealResponseWithDefaultNamespace) {
  AwsCredentials c = credentials_ok(kAssumeRoleResponse);
  EXPECT_EQ(c.access_key_id, "ASIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(c.secret_access_key, "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY");
  ASSERT_TRUE(c.session_token.has_value());
  EXPECT_TRUE(c.session_token->starts_with("AQoDYXdzEPT//////////wEXAMPLE"));
  EXPECT_TRUE(c.session_token->ends_with("oLxBA=="));
  EXPECT_EQ(c.expiration, std::optional(test::parse_iso8601_utc("2019-11-09T13:34:41Z")));
}

TEST(AssumeRoleAnswer, PrefixedNamespaceAndNoNamespaceMatchByLocalName) {
  std::string prefixed = "<sts:AssumeRoleResponse xmlns:sts=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                         "<sts:AssumeRoleResult><sts:Credentials>"
                         "<sts:AccessKeyId>ASIAX</sts:AccessKeyId><sts:SecretAccessKey>s3cr3t</sts:SecretAccessKey>"
                         "<sts:SessionToken>tok</sts:SessionToken><sts:Expiration>2030-01-01T00:00:00.000Z</sts:Expiration>"
                         "</sts:Credentials></sts:AssumeRoleResult></sts:AssumeRoleResponse>";
  AwsCredentials c = credentials_ok(prefixed);
  EXPECT_EQ(c.access_key_id, "ASIAX");
  EXPECT_EQ(c.session_token, std::optional<std::string>("tok"));
  std::string plain = "<AssumeRoleResponse><AssumeRoleResult><Credentials>"
                      "<Expiration>2030-01-01T00:00:00Z</Expiration><SessionToken> tok2 </SessionToken>"
                      "<SecretAccessKey>s</SecretAccessKey><AccessKeyId>ASIAY</AccessKeyId>"
                      "</Credentials></AssumeRoleResult></AssumeRoleResponse>";
  AwsCredentials p = credentials_ok(plain);
  EXPECT_EQ(p.access_key_id, "ASIAY");
  EXPECT_EQ(p.session_token, std::optional<std::string>("tok2"));  // surrounding white space trimmed
}

TEST(AssumeRoleAnswer, CharacterReferencesAndCdataAreText) {
  std::string xml = replaced(kAssumeRoleResponse, "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                             "<SecretAccessKey>a&amp;b&#x2B;<![CDATA[c<d]]>");
  EXPECT_EQ(credentials_ok(xml).secret_access_key, "a&b+c<d");
}

TEST(AssumeRoleAnswer, ErrorResponseCarriesCodeAndMessage) {
  auto answer = parse_assume_role_answer(kErrorResponse);
  ASSERT_TRUE(answer.ok()) << answer.error().message;
  ASSERT_TRUE(std::holds_alternative<StsServiceError>(*answer));
  const auto& e = std::get<StsServiceError>(*answer);
  EXPECT_EQ(e.type, "Sender");
  EXPECT_EQ(e.code, "AccessDenied");
  EXPECT_TRUE(e.message.starts_with("User: arn:aws:sts::123456789012:assumed-role/ec2/i-0abc is not"));
  EXPECT_TRUE(e.describe().starts_with("AccessDenied: User: arn:aws:sts::"));

  auto minimal = parse_assume_role_answer("<ErrorResponse><Error><Code>Throttling</Code></Error></ErrorResponse>");
  ASSERT_TRUE(minimal.ok());
  EXPECT_EQ(std::get<StsServiceError>(*minimal).describe(), "Throttling");
  EXPECT_TRUE(std::get<StsServiceError>(*minimal).type.empty());
}

TEST(AssumeRoleAnswer, DescribeIsSafeForALogLine) {
  StsServiceError e{"Sender", "Bad", "line1\r\nline2\tx"};
  EXPECT_EQ(e.describe(), "Bad: line1  line2 x");
  StsServiceError long_one{"", "Code", std::string(2000, 'm')};
  EXPECT_LE(long_one.describe().size(), 515u);
  EXPECT_TRUE(long_one.describe().ends_with("..."));
}

TEST(AssumeRoleAnswer, ErrorResponseWithoutCodeIsRefused) {
  expect_refused("<ErrorResponse><Error><Message>x</Message></Error></ErrorResponse>", "Code is missing");
  expect_refused("<ErrorResponse><Error><Code></Code></Error></ErrorResponse>", "Code is missing");
  // A Code outside ErrorResponse/Error does not count.
  expect_refused("<ErrorResponse><Code>AccessDenied</Code></ErrorResponse>", "Code is missing");
}

TEST(AssumeRoleAnswer, MalformedXmlIsRefused) {
  expect_refused("", "not well-formed");
  expect_refused("not xml at all", "not well-formed");
  expect_refused(kAssumeRoleResponse.substr(0, kAssumeRoleResponse.size() / 2), "not well-formed");
  expect_refused(replaced(kAssumeRoleResponse, "</AccessKeyId>", "</AccessKeyID>"), "not well-formed");
  expect_refused(std::string(kAssumeRoleResponse) + "<AssumeRoleResponse/>", "not well-formed");
  expect_refused(replaced(kAssumeRoleResponse, "ASIAIOSFODNN7EXAMPLE", "ASIA&undefined;"), "not well-formed");
}

TEST(AssumeRoleAnswer, DoctypeIsRefusedWhateverItHolds) {
  expect_refused("<!DOCTYPE AssumeRoleResponse>" + std::string(kAssumeRoleResponse), "DOCTYPE");
  // Billion laughs.
  expect_refused(R"(<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>&lol3;</AccessKeyId></Credentials></AssumeRoleResult></AssumeRoleResponse>)",
                 "DOCTYPE");
  // External entity.
  expect_refused(R"(<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>&xxe;</AccessKeyId></Credentials></AssumeRoleResult></AssumeRoleResponse>)",
                 "DOCTYPE");
  expect_refused(R"(<!DOCTYPE r SYSTEM "http://169.254.169.254/latest/meta-data/"><AssumeRoleResponse/>)", "DOCTYPE");
}

TEST(AssumeRoleAnswer, OtherRootIsRefused) {
  expect_refused("<GetCallerIdentityResponse><Credentials/></GetCallerIdentityResponse>", "root element");
  expect_refused("<Response><Errors><Error><Code>X</Code></Error></Errors></Response>", "root element");
}

TEST(AssumeRoleAnswer, EachCredentialElementIsRequired) {
  for (std::string_view name : {"AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"}) {
    std::string xml(kAssumeRoleResponse);
    std::size_t start = xml.find("<" + std::string(name) + ">");
    std::size_t end = xml.find("</" + std::string(name) + ">");
    ASSERT_NE(start, std::string::npos);
    xml.erase(start, end + name.size() + 3 - start);
    expect_refused(xml, "Credentials/" + std::string(name) + " is missing");
  }
}

TEST(AssumeRoleAnswer, ElementsInTheWrongPlaceDoNotCount) {
  // Credentials directly under the root, or nested one level too deep: ignored, so missing.
  expect_refused(
      "<AssumeRoleResponse><Credentials><AccessKeyId>A</AccessKeyId><SecretAccessKey>s</SecretAccessKey>"
      "<SessionToken>t</SessionToken><Expiration>2030-01-01T00:00:00Z</Expiration></Credentials>"
      "</AssumeRoleResponse>",
      "AccessKeyId is missing");
  expect_refused(
      "<AssumeRoleResponse><AssumeRoleResult><Credentials><Inner><AccessKeyId>A</AccessKeyId>"
      "<SecretAccessKey>s</SecretAccessKey><SessionToken>t</SessionToken>"
      "<Expiration>2030-01-01T00:00:00Z</Expiration></Inner></Credentials></AssumeRoleResult>"
      "</AssumeRoleResponse>",
      "AccessKeyId is missing");
  // An AccessKeyId elsewhere (in AssumedRoleUser) is ignored; the real one is used.
  std::string decoy = replaced(kAssumeRoleResponse, "<AssumedRoleId>",
                               "<AccessKeyId>DECOY</AccessKeyId><AssumedRoleId>");
  EXPECT_EQ(credentials_ok(decoy).access_key_id, "ASIAIOSFODNN7EXAMPLE");
}

TEST(AssumeRoleAnswer, DuplicatesAndNestedElementsAreRefused) {
  expect_refused(replaced(kAssumeRoleResponse, "<Expiration>",
                          "<AccessKeyId>ASIASECOND</AccessKeyId><Expiration>"),
                 "AccessKeyId is given twice");
  expect_refused(replaced(kAssumeRoleResponse, "</Credentials>",
                          "</Credentials><Credentials><SessionToken>x</SessionToken></Credentials>"),
                 "SessionToken is given twice");
  expect_refused(replaced(kAssumeRoleResponse, "<AccessKeyId>ASIAIOSFODNN7EXAMPLE</AccessKeyId>",
                          "<AccessKeyId>ASIA<b>X</b></AccessKeyId>"),
                 "AccessKeyId must hold text only");
}

TEST(AssumeRoleAnswer, BadCredentialValuesAreRefusedWithoutQuotingThem) {
  expect_refused(replaced(kAssumeRoleResponse, "2019-11-09T13:34:41Z", "next tuesday"), "Expiration");
  expect_refused(replaced(kAssumeRoleResponse, "<AccessKeyId>ASIAIOSFODNN7EXAMPLE", "<AccessKeyId>ASIA/X"),
                 "AccessKeyId");
  expect_refused(replaced(kAssumeRoleResponse, "<SessionToken>AQoD", "<SessionToken>AQ&#13;&#10;oD"),
                 "SessionToken");
  expect_refused(replaced(kAssumeRoleResponse, "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY",
                          "<SecretAccessKey>wJalrXUtnFEMI&#10;X"),
                 "SecretAccessKey");
  // White space only: empty once trimmed.
  expect_refused(replaced(replaced(kAssumeRoleResponse, "<SessionToken>AQoD",
                                   "<SessionToken> \n </SessionToken><Ignored>AQoD"),
                          "==</SessionToken>", "==</Ignored>"),
                 "SessionToken is empty");
}

TEST(AssumeRoleAnswer, OversizedAnswerIsRefused) {
  std::string big(kAssumeRoleResponse);
  big.insert(big.find("<ResponseMetadata>"), "<Padding>" + std::string(kMaxStsAnswer, 'x') + "</Padding>");
  expect_refused(big, "too large");
}

}  // namespace
}  // namespace membraned::core
