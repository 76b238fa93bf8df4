// Where the operator's temporary credentials come from (contract §9), without I/O: the IMDSv2 and
// ECS/container endpoints chosen from the AWS SDKs' variables, the HTTP calls that fetch from
// them, and the checks on what they answer before it is used in the next call. The server sends
// the calls; the documents they return are read by aws_credentials.hpp.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/aws_credentials.hpp"
#include "core/http.hpp"
#include "core/result.hpp"
#include "core/url.hpp"

namespace membraned::core {

// One HTTP/1.1 exchange the server makes to obtain credentials, owning everything it sends.
struct CredentialsCall {
  bool https = false;
  std::string connect_host;  // name or address to resolve (no brackets)
  std::uint16_t port = 0;
  std::string method;
  std::string target;  // origin form
  Headers headers;     // Host first
  std::string body;
};

// --- IMDSv2 ---------------------------------------------------------------------------------
inline constexpr std::string_view kImdsDefaultEndpoint = "http://169.254.169.254";
// The session token's lifetime asked for (the AWS SDKs' default, 6 hours).
inline constexpr int kImdsTokenTtlSeconds = 21600;

// AWS_EC2_METADATA_SERVICE_ENDPOINT (empty counts as unset), else http://169.254.169.254. An
// absolute http(s) URL without user info or query; its path, if any, prefixes the calls. A
// malformed value is an error naming the variable.
Result<UpstreamTarget> imds_endpoint(const EnvLookup& env);

// PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds (IMDSv2 only: membraned never
// falls back to the token-less IMDSv1).
CredentialsCall imds_token_call(const UpstreamTarget& endpoint);
// The session token answered: 1..4096 visible ASCII characters (it goes into a header).
Result<std::string> parse_imds_token(std::string_view body);

// GET /latest/meta-data/iam/security-credentials/ with the session token.
CredentialsCall imds_role_call(const UpstreamTarget& endpoint, const std::string& token);
// The instance profile's role: the first line of the listing, which must be an IAM role name
// (1..64 of A-Z a-z 0-9 + = , . @ _ -), since it becomes part of the next call's path. An empty
// listing means the instance has no role.
Result<std::string> parse_imds_role_name(std::string_view body);

// GET /latest/meta-data/iam/security-credentials/ROLE with the session token; its answer is read
// by parse_imds_credentials.
CredentialsCall imds_credentials_call(const UpstreamTarget& endpoint, const std::string& token,
                                      const std::string& role);

// --- ECS / container credentials ------------------------------------------------------------
inline constexpr std::string_view kEcsCredentialsHost = "169.254.170.2";

struct ContainerEndpoint {
  UpstreamTarget target;
  std::optional<std::string> authorization;  // AWS_CONTAINER_AUTHORIZATION_TOKEN; secret
};

// AWS_CONTAINER_CREDENTIALS_RELATIVE_URI (a path, appended to http://169.254.170.2) wins, as in
// the AWS SDKs; else AWS_CONTAINER_CREDENTIALS_FULL_URI. A full URI over plain http must name a
// loopback address (or localhost) or one of the container credential hosts (169.254.170.2,
// 169.254.170.23, fd00:ec2::23), as the AWS SDKs require; https may name any host. The token,
// when set, must hold no control character. Errors name the variable, never the token.
Result<ContainerEndpoint> container_endpoint(const EnvLookup& env);

// GET the endpoint's path and query, with Authorization when a token is set; the answer is read
// by parse_container_credentials.
CredentialsCall container_credentials_call(const ContainerEndpoint& endpoint);

}  // namespace membraned::core
