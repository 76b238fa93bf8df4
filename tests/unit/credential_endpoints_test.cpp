// contract §9: the IMDSv2 and container credential endpoints, chosen from the AWS SDKs' variables,
// the calls made to them, and the checks on their intermediate answers (IMDS token, role name).
#include <gtest/gtest.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/credential_endpoints.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::core {
namespace {

using membraned::test::env_of;

std::optional<std::string> header(const CredentialsCall& call, std::string_view name) {
  for (const auto& h : call.headers) {
    if (h.name == name) return h.value;
  }
  return std::nullopt;
}

TEST(ImdsEndpoint, DefaultsToTheLinkLocalAddress) {
  auto target = imds_endpoint(env_of({}));
  ASSERT_TRUE(target) << target.error().message;
  EXPECT_FALSE(target->https);
  EXPECT_EQ(target->connect_host, "169.254.169.254");
  EXPECT_EQ(target->port, 80);
  // An empty variable counts as unset, as in the AWS SDKs.
  auto empty = imds_endpoint(env_of({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", ""}}));
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->connect_host, "169.254.169.254");
}

TEST(ImdsEndpoint, TheVariableMovesIt) {
  auto target = imds_endpoint(env_of({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://[fd00:ec2::254]:8080/"}}));
  ASSERT_TRUE(target) << target.error().message;
  EXPECT_EQ(target->connect_host, "fd00:ec2::254");
  EXPECT_EQ(target->port, 8080);
  auto call = imds_token_call(*target);
  EXPECT_EQ(call.target, "/latest/api/token");
  EXPECT_EQ(header(call, "Host"), "[fd00:ec2::254]:8080");
}

TEST(ImdsEndpoint, MalformedValuesNameTheVariable) {
  for (std::string bad : {"169.254.169.254", "ftp://x", "http://user@x/", "http://x/?q=1", "http://"}) {
    auto target = imds_endpoint(env_of({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", bad}}));
    ASSERT_FALSE(target) << bad;
    EXPECT_EQ(target.error().field, "AWS_EC2_METADATA_SERVICE_ENDPOINT") << bad;
  }
}

TEST(ImdsCalls, AreTheIMDSv2SequenceUnderThePathPrefix) {
  auto target = imds_endpoint(env_of({{"AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9000/prefix/"}}));
  ASSERT_TRUE(target);
  auto token = imds_token_call(*target);
  EXPECT_EQ(token.method, "PUT");
  EXPECT_EQ(token.target, "/prefix/latest/api/token");
  EXPECT_EQ(token.connect_host, "127.0.0.1");
  EXPECT_EQ(token.port, 9000);
  EXPECT_EQ(header(token, "X-aws-ec2-metadata-token-ttl-seconds"), "21600");
  EXPECT_EQ(token.headers.front().name, "Host");

  auto role = imds_role_call(*target, "TOKEN==");
  EXPECT_EQ(role.method, "GET");
  EXPECT_EQ(role.target, "/prefix/latest/meta-data/iam/security-credentials/");
  EXPECT_EQ(header(role, "X-aws-ec2-metadata-token"), "TOKEN==");

  auto credentials = imds_credentials_call(*target, "TOKEN==", "Lambda-Invoker");
  EXPECT_EQ(credentials.target, "/prefix/latest/meta-data/iam/security-credentials/Lambda-Invoker");
  EXPECT_EQ(header(credentials, "X-aws-ec2-metadata-token"), "TOKEN==");
}

TEST(ImdsToken, MustBeHeaderSafe) {
  EXPECT_EQ(*parse_imds_token("AQAEAFakeToken=="), "AQAEAFakeToken==");
  EXPECT_FALSE(parse_imds_token(""));
  EXPECT_FALSE(parse_imds_token("a\r\nX-Injected: 1"));
  EXPECT_FALSE(parse_imds_token("with space"));
  EXPECT_FALSE(parse_imds_token(std::string(4097, 'a')));
  EXPECT_TRUE(parse_imds_token(std::string(4096, 'a')));
}

TEST(ImdsRoleName, IsTheFirstLineAndAnIamName) {
  EXPECT_EQ(*parse_imds_role_name("Lambda-Invoker"), "Lambda-Invoker");
  EXPECT_EQ(*parse_imds_role_name("Lambda-Invoker\n"), "Lambda-Invoker");
  EXPECT_EQ(*parse_imds_role_name("role+=,.@_-1\r\nother\n"), "role+=,.@_-1");
  EXPECT_EQ(*parse_imds_role_name("a..b"), "a..b");
  auto none = parse_imds_role_name("");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("no IAM role"), std::string::npos);
  // The name becomes part of the next call's path: nothing that could climb or add a query.
  for (const std::string& bad : std::vector<std::string>{"..", ".", "...", "../admin", "a/b", "a?x=1", "a%2F", std::string(65, 'r'), "r\x01"}) {
    EXPECT_FALSE(parse_imds_role_name(bad)) << bad;
  }
}

TEST(ContainerEndpoint, RelativeUriGoesToTheEcsAgent) {
  auto endpoint = container_endpoint(env_of({{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc?x=1"},
                                            {"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/ignored"}}));
  ASSERT_TRUE(endpoint) << endpoint.error().message;
  EXPECT_EQ(endpoint->target.connect_host, "169.254.170.2");
  EXPECT_EQ(endpoint->target.port, 80);
  auto call = container_credentials_call(*endpoint);
  EXPECT_EQ(call.method, "GET");
  EXPECT_EQ(call.target, "/v2/credentials/abc?x=1");
  EXPECT_EQ(header(call, "Host"), "169.254.170.2");
  EXPECT_FALSE(header(call, "Authorization"));
}

TEST(ContainerEndpoint, FullUriWithAuthorizationToken) {
  auto endpoint = container_endpoint(env_of({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:8123/creds"},
                                            {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "Basic abc=="}}));
  ASSERT_TRUE(endpoint) << endpoint.error().message;
  auto call = container_credentials_call(*endpoint);
  EXPECT_EQ(call.connect_host, "127.0.0.1");
  EXPECT_EQ(call.port, 8123);
  EXPECT_EQ(call.target, "/creds");
  EXPECT_EQ(header(call, "Authorization"), "Basic abc==");
}

TEST(ContainerEndpoint, PlainHttpOnlyToLoopbackOrTheAgents) {
  for (std::string ok : {"http://localhost:1/c", "http://127.0.0.2/c", "http://[::1]/c", "http://169.254.170.2/c",
                         "http://169.254.170.23/c", "http://[fd00:ec2::23]/c", "https://creds.example.com/c"}) {
    EXPECT_TRUE(container_endpoint(env_of({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", ok}}))) << ok;
  }
  for (std::string bad : {"http://creds.example.com/c", "http://10.0.0.1/c", "http://169.254.169.254/c"}) {
    auto endpoint = container_endpoint(env_of({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", bad}}));
    ASSERT_FALSE(endpoint) << bad;
    EXPECT_EQ(endpoint.error().field, "AWS_CONTAINER_CREDENTIALS_FULL_URI");
  }
}

TEST(ContainerEndpoint, ErrorsNameTheVariableNeverTheToken) {
  auto none = container_endpoint(env_of({}));
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"), std::string::npos);

  auto relative = container_endpoint(env_of({{"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "v2/creds"}}));
  ASSERT_FALSE(relative);
  EXPECT_EQ(relative.error().field, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");

  auto token = container_endpoint(env_of({{"AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1/c"},
                                         {"AWS_CONTAINER_AUTHORIZATION_TOKEN", "secret\r\nX: y"}}));
  ASSERT_FALSE(token);
  EXPECT_EQ(token.error().field, "AWS_CONTAINER_AUTHORIZATION_TOKEN");
  EXPECT_EQ(token.error().message.find("secret"), std::string::npos);
}

}  // namespace
}  // namespace membraned::core
