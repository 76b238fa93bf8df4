// contract §9: the credential documents the operator's environment provides (IMDSv2, the ECS
// container endpoint, environment variables); the ISO 8601 expirations they carry are read by
// core/time (time_test.cpp). Every failure must be an error naming the field, and no error may
// ever quote a secret.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/aws_credentials.hpp"
#include "core/result.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::core {
namespace {

using membraned::test::env_of;

using json = nlohmann::json;
using namespace std::chrono_literals;
using std::chrono::system_clock;

constexpr std::string_view kSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzEXAMPLEKEY";
constexpr std::string_view kToken = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJGMEQCIEXAMPLE=";

json imds_doc() {
  return {{"Code", "Success"},
          {"LastUpdated", "2026-11-24T06:00:00Z"},
          {"Type", "AWS-HMAC"},
          {"AccessKeyId", "ASIAIOSFODNN7EXAMPLE"},
          {"SecretAccessKey", kSecret},
          {"Token", kToken},
          {"Expiration", "2026-11-24T12:00:00Z"}};
}

json container_doc() {
  return {{"RoleArn", "arn:aws:iam::123456789012:role/task"},
          {"AccessKeyId", "ASIAIOSFODNN7EXAMPLE"},
          {"SecretAccessKey", kSecret},
          {"Token", kToken},
          {"Expiration", "2026-11-24T12:00:00Z"}};
}

// An error that names `field` and quotes no secret.
void expect_error(const Result<AwsCredentials>& r, std::string_view field) {
  ASSERT_FALSE(r.ok()) << "expected an error on " << field;
  EXPECT_EQ(r.error().kind, ErrorKind::invalid_input);
  EXPECT_EQ(r.error().field, field) << r.error().message;
  EXPECT_EQ(r.error().message.find(kSecret), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find(kToken), std::string::npos) << r.error().message;
}

system_clock::time_point at(std::string_view iso) { return test::parse_iso8601_utc(iso); }

// --- IMDSv2 ------------------------------------------------------------------------------------

TEST(ImdsCredentials, ParsesASuccessDocument) {
  auto c = parse_imds_credentials(imds_doc().dump());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->access_key_id, "ASIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(c->secret_access_key, kSecret);
  EXPECT_EQ(c->session_token, std::optional<std::string>(kToken));
  ASSERT_TRUE(c->expiration.has_value());
  EXPECT_EQ(*c->expiration, at("2026-11-24T12:00:00Z"));
}

TEST(ImdsCredentials, ACodeOtherThanSuccessIsAnErrorNamingIt) {
  json doc = imds_doc();
  doc["Code"] = "AssumeRoleUnauthorizedAccess";
  auto c = parse_imds_credentials(doc.dump());
  expect_error(c, "Code");
  EXPECT_NE(c.error().message.find("AssumeRoleUnauthorizedAccess"), std::string::npos);

  doc["Code"] = 42;
  expect_error(parse_imds_credentials(doc.dump()), "Code");
  doc["Code"] = "success";  // case matters
  expect_error(parse_imds_credentials(doc.dump()), "Code");
}

TEST(ImdsCredentials, AbsentCodeIsAccepted) {
  json doc = imds_doc();
  doc.erase("Code");
  EXPECT_TRUE(parse_imds_credentials(doc.dump()).ok());
}

TEST(ImdsCredentials, EachCredentialFieldIsRequired) {
  for (std::string_view key : {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}) {
    json doc = imds_doc();
    doc.erase(std::string(key));
    expect_error(parse_imds_credentials(doc.dump()), key);
    doc[std::string(key)] = "";
    expect_error(parse_imds_credentials(doc.dump()), key);
    doc[std::string(key)] = nullptr;
    expect_error(parse_imds_credentials(doc.dump()), key);
    doc[std::string(key)] = 12345;
    expect_error(parse_imds_credentials(doc.dump()), key);
    doc[std::string(key)] = json::array({"x"});
    expect_error(parse_imds_credentials(doc.dump()), key);
  }
}

TEST(ImdsCredentials, BadExpirationIsAnError) {
  for (std::string_view bad : {"tomorrow", "2026-11-24T12:00:00", "2026-02-30T12:00:00Z"}) {
    json doc = imds_doc();
    doc["Expiration"] = bad;
    expect_error(parse_imds_credentials(doc.dump()), "Expiration");
  }
}

TEST(ImdsCredentials, NotAJsonObjectIsAnError) {
  for (std::string_view body : {"", "not json", "[1,2]", "\"Success\"", "{\"Code\":\"Success\""}) {
    expect_error(parse_imds_credentials(body), "body");
  }
}

TEST(ImdsCredentials, CredentialValuesThatCannotBeSentAreRefusedWithoutQuotingThem) {
  json doc = imds_doc();
  doc["SecretAccessKey"] = std::string(kSecret) + "\r\nX-Evil: 1";
  auto c = parse_imds_credentials(doc.dump());
  expect_error(c, "SecretAccessKey");
  EXPECT_EQ(c.error().message.find("X-Evil"), std::string::npos);

  doc = imds_doc();
  doc["Token"] = std::string(kToken) + "\n";
  expect_error(parse_imds_credentials(doc.dump()), "Token");

  doc = imds_doc();
  doc["AccessKeyId"] = "ASIA/EXAMPLE";  // would break the credential scope
  expect_error(parse_imds_credentials(doc.dump()), "AccessKeyId");
}

// --- ECS / container ---------------------------------------------------------------------------

TEST(ContainerCredentials, ParsesTheDocumentAndIgnoresOtherFields) {
  auto c = parse_container_credentials(container_doc().dump());
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->access_key_id, "ASIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(c->secret_access_key, kSecret);
  EXPECT_EQ(c->session_token, std::optional<std::string>(kToken));
  EXPECT_EQ(c->expiration, std::optional(at("2026-11-24T12:00:00Z")));
}

TEST(ContainerCredentials, EachFieldIsRequired) {
  for (std::string_view key : {"AccessKeyId", "SecretAccessKey", "Token", "Expiration"}) {
    json doc = container_doc();
    doc.erase(std::string(key));
    expect_error(parse_container_credentials(doc.dump()), key);
    doc[std::string(key)] = true;
    expect_error(parse_container_credentials(doc.dump()), key);
  }
  json doc = container_doc();
  doc["Expiration"] = "2026-11-24T12:00:00+01:00:00";
  expect_error(parse_container_credentials(doc.dump()), "Expiration");
  expect_error(parse_container_credentials("{}"), "AccessKeyId");
  expect_error(parse_container_credentials("null"), "body");
}

TEST(ContainerCredentials, OffsetExpirationIsConverted) {
  json doc = container_doc();
  doc["Expiration"] = "2026-11-24T13:00:00+01:00";
  auto c = parse_container_credentials(doc.dump());
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->expiration, std::optional(at("2026-11-24T12:00:00Z")));
}

// --- environment -------------------------------------------------------------------------------

TEST(EnvironmentCredentials, KeysAndToken) {
  auto c = environment_credentials(env_of({{"AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"},
                                           {"AWS_SECRET_ACCESS_KEY", std::string(kSecret)},
                                           {"AWS_SESSION_TOKEN", std::string(kToken)}}));
  ASSERT_TRUE(c.ok()) << c.error().message;
  EXPECT_EQ(c->access_key_id, "AKIAIOSFODNN7EXAMPLE");
  EXPECT_EQ(c->secret_access_key, kSecret);
  EXPECT_EQ(c->session_token, std::optional<std::string>(kToken));
  EXPECT_FALSE(c->expiration.has_value());
}

TEST(EnvironmentCredentials, SessionTokenIsOptionalAndEmptyMeansUnset) {
  auto c = environment_credentials(env_of({{"AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"},
                                           {"AWS_SECRET_ACCESS_KEY", std::string(kSecret)}}));
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->session_token.has_value());
  auto empty = environment_credentials(env_of({{"AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"},
                                               {"AWS_SECRET_ACCESS_KEY", std::string(kSecret)},
                                               {"AWS_SESSION_TOKEN", ""}}));
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->session_token.has_value());
}

TEST(EnvironmentCredentials, MissingVariablesAreNamed) {
  expect_error(environment_credentials(env_of({{"AWS_SECRET_ACCESS_KEY", std::string(kSecret)}})),
               "AWS_ACCESS_KEY_ID");
  expect_error(environment_credentials(env_of({{"AWS_ACCESS_KEY_ID", "AKID"}})),
               "AWS_SECRET_ACCESS_KEY");
  expect_error(environment_credentials(env_of({{"AWS_ACCESS_KEY_ID", ""},
                                               {"AWS_SECRET_ACCESS_KEY", std::string(kSecret)}})),
               "AWS_ACCESS_KEY_ID");
  expect_error(environment_credentials(env_of({{"AWS_ACCESS_KEY_ID", "AKID"},
                                               {"AWS_SECRET_ACCESS_KEY", ""}})),
               "AWS_SECRET_ACCESS_KEY");
  expect_error(environment_credentials(env_of({})), "AWS_ACCESS_KEY_ID");
  expect_error(environment_credentials(EnvLookup{}), "AWS_ACCESS_KEY_ID");
}

TEST(EnvironmentCredentials, MalformedValuesAreNamedNotQuoted) {
  expect_error(environment_credentials(env_of({{"AWS_ACCESS_KEY_ID", "AKID WITH SPACE"},
                                               {"AWS_SECRET_ACCESS_KEY", std::string(kSecret)}})),
               "AWS_ACCESS_KEY_ID");
  expect_error(environment_credentials(env_of({{"AWS_ACCESS_KEY_ID", "AKID"},
                                               {"AWS_SECRET_ACCESS_KEY", std::string(kSecret) + "\n"}})),
               "AWS_SECRET_ACCESS_KEY");
  expect_error(environment_credentials(env_of({{"AWS_ACCESS_KEY_ID", "AKID"},
                                               {"AWS_SECRET_ACCESS_KEY", std::string(kSecret)},
                                               {"AWS_SESSION_TOKEN", std::string(kToken) + "\r"}})),
               "AWS_SESSION_TOKEN");
}

// --- helpers -----------------------------------------------------------------------------------

TEST(AwsCredentials, ValidUntilExpiration) {
  AwsCredentials c{"AKID", "secret", std::nullopt, std::nullopt};
  EXPECT_TRUE(credentials_valid_at(c, at("2099-01-01T00:00:00Z")));  // long-term keys
  c.expiration = at("2026-11-24T12:00:00Z");
  EXPECT_TRUE(credentials_valid_at(c, at("2026-11-24T11:59:59Z")));
  EXPECT_FALSE(credentials_valid_at(c, at("2026-11-24T12:00:00Z")));
  EXPECT_FALSE(credentials_valid_at(c, at("2026-11-24T12:00:01Z")));
}

TEST(AwsCredentials, SignerViewCarriesTheTokenOrNothing) {
  AwsCredentials c{"AKID", "secret", std::string("token"), std::nullopt};
  sigv4::Credentials s = to_sigv4_credentials(c);
  EXPECT_EQ(s.access_key_id, "AKID");
  EXPECT_EQ(s.secret_access_key, "secret");
  EXPECT_EQ(s.session_token, "token");
  c.session_token.reset();
  EXPECT_TRUE(to_sigv4_credentials(c).session_token.empty());
}

TEST(AwsCredentials, ValidationLimits) {
  AwsCredentials c{std::string(128, 'A'), std::string(256, 's'), std::string(16384, 't'), std::nullopt};
  EXPECT_TRUE(validate_credentials(c).ok());
  c.access_key_id += "A";
  EXPECT_EQ(validate_credentials(c).error().field, "AccessKeyId");
  c.access_key_id.pop_back();
  c.secret_access_key += "s";
  EXPECT_EQ(validate_credentials(c).error().field, "SecretAccessKey");
  c.secret_access_key.pop_back();
  c.session_token->push_back('t');
  EXPECT_EQ(validate_credentials(c).error().field, "Token");
  c.session_token = "";
  EXPECT_EQ(validate_credentials(c, {"a", "b", "c"}).error().field, "c");
}

TEST(AwsRegion, LowerCaseLettersDigitsAndDashesUpTo64) {
  for (std::string_view region : {"us-east-1", "us-gov-west-1", "cn-north-1", "x"}) {
    EXPECT_TRUE(is_aws_region(region)) << region;
  }
  EXPECT_TRUE(is_aws_region(std::string(64, 'r')));
  EXPECT_FALSE(is_aws_region(std::string(65, 'r')));
  for (std::string_view region : {"", "US-EAST-1", "us_east_1", "us.east.1", "us-east-1/x", "us east"}) {
    EXPECT_FALSE(is_aws_region(region)) << region;
  }
}

}  // namespace
}  // namespace membraned::core
