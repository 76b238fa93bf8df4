// AWS credentials that the operator makes available (contract §9), and the pure parsers of the
// answers that carry them: the instance metadata service (IMDSv2), the ECS/container credentials
// endpoint, and the process environment. No I/O here: the caller fetches the documents (or
// passes a lookup for the environment) and gets typed credentials or an Error.
//
// Secrets (secret_access_key, session_token) are never printed: there is no operator<<, and no
// error message built here ever contains a credential value.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "core/sigv4.hpp"
#include "core/time.hpp"  // parse_iso8601, which reads the documents' Expiration

namespace membraned::core {

// --- the one set of limits on AWS credentials and regions ------------------------------------
// An access key id goes into the Authorization header's credential scope: [A-Za-z0-9_], as IAM
// issues them.
inline constexpr std::size_t kMaxAccessKeyId = 128;
inline constexpr std::size_t kMaxSecretAccessKey = 256;
// What a credential source (an instance or container role, STS) may hand over. Session tokens
// grow with session policies and tags, and AWS documents no maximum.
inline constexpr std::size_t kMaxSessionToken = 16384;
// A region as AWS names them ("us-east-1", "us-gov-west-1"): 1..64 lower-case letters, digits
// and '-'. It becomes part of a host name (sts.REGION.amazonaws.com).
inline constexpr std::size_t kMaxRegion = 64;
bool is_aws_region(std::string_view region) noexcept;

struct AwsCredentials {
  std::string access_key_id;
  std::string secret_access_key;             // secret
  std::optional<std::string> session_token;  // secret; temporary credentials only
  std::optional<std::chrono::system_clock::time_point> expiration;  // none: long-term keys
};

// Reads one environment variable: nullopt when unset. The server passes a wrapper around
// getenv; tests pass a map. An empty value counts as unset everywhere in this module (as the
// AWS SDKs treat it).
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;

// One variable through `env` (which may be empty: nothing is set), an empty value as unset.
std::optional<std::string> env_value(const EnvLookup& env, std::string_view name);

// IMDSv2: the body of GET /latest/meta-data/iam/security-credentials/ROLE:
//   {"Code":"Success","LastUpdated":..,"Type":"AWS-HMAC","AccessKeyId":..,"SecretAccessKey":..,
//    "Token":..,"Expiration":"2026-11-24T12:00:00Z"}
// A "Code" other than "Success" is an error naming that code (an absent Code is accepted, as
// botocore does). AccessKeyId, SecretAccessKey, Token and Expiration are required strings.
Result<AwsCredentials> parse_imds_credentials(std::string_view body);

// The ECS/container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI or _RELATIVE_URI):
//   {"AccessKeyId":..,"SecretAccessKey":..,"Token":..,"Expiration":"..."} (RoleArn etc. ignored).
// All four are required, as botocore requires them.
Result<AwsCredentials> parse_container_credentials(std::string_view body);

// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (required), AWS_SESSION_TOKEN (optional); no
// expiration. Errors name the missing or malformed variable, never its value.
Result<AwsCredentials> environment_credentials(const EnvLookup& env);

// Checks shared by every source: an access key id of 1..kMaxAccessKeyId letters, digits and
// '_', a secret of 1..kMaxSecretAccessKey characters, and a session token (when present) of
// 1..kMaxSessionToken characters; none may hold CR, LF or NUL. Errors name the field as the
// source calls it (`names`), never the value.
struct CredentialFieldNames {
  std::string_view access_key_id = "AccessKeyId";
  std::string_view secret_access_key = "SecretAccessKey";
  std::string_view session_token = "Token";
};
Status validate_credentials(const AwsCredentials& credentials,
                            const CredentialFieldNames& names = {});

// True when the credentials can still be used at `t`: no expiration, or `t` before it.
bool credentials_valid_at(const AwsCredentials& credentials,
                          std::chrono::system_clock::time_point t) noexcept;

// The signer's view of them (the session token empty when there is none).
sigv4::Credentials to_sigv4_credentials(const AwsCredentials& credentials);

}  // namespace membraned::core
