// AWS STS AssumeRole without I/O (contract §9): where to send it, the signed request to send, and
// the reading of the XML answer (with expat). The server sends the request and hands the body
// back; nothing here opens a socket.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/aws_config.hpp"
#include "core/aws_credentials.hpp"
#include "core/credential_endpoints.hpp"
#include "core/http.hpp"
#include "core/result.hpp"
#include "core/sigv4.hpp"
#include "core/url.hpp"

namespace membraned::core {

inline constexpr std::string_view kStsGlobalEndpoint = "https://sts.amazonaws.com";
inline constexpr std::string_view kStsGlobalSigningRegion = "us-east-1";

struct StsEndpoint {
  UpstreamTarget target;       // scheme, host, port, Host authority, path (the request target)
  std::string signing_region;  // the region of the credential scope
};

// AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL (empty values count as unset), else
// https://sts.REGION.amazonaws.com when `region` is given, else https://sts.amazonaws.com.
// The signing region is `region` when given, else us-east-1 (the global endpoint's), whichever
// endpoint was chosen. An endpoint URL must be an absolute http(s) URL without user info or
// query; a malformed one is an error naming its variable. A region is lower-case letters,
// digits and '-'.
Result<StsEndpoint> select_sts_endpoint(const EnvLookup& env, const std::optional<std::string>& region);

// A request to send as is (POST to the endpoint's path, TLS when https), owning its body, with
// Host, Content-Type, Content-Length and, once signed, the SigV4 headers.
using StsRequest = CredentialsCall;

// The form body of AssumeRole: Action=AssumeRole&Version=2011-06-15&RoleArn=..&RoleSessionName=..
// [&ExternalId=..][&DurationSeconds=..], each value encoded with the AWS percent-encoding
// (everything but A-Z a-z 0-9 - . _ ~).
std::string assume_role_body(const AssumeRoleStep& step);

// The unsigned request (Host, Content-Type: application/x-www-form-urlencoded; charset=utf-8,
// Content-Length).
StsRequest build_assume_role_request(const StsEndpoint& endpoint, const AssumeRoleStep& step);

// Signs it in place (SigV4 header form, service "sts", the endpoint's signing region):
// X-Amz-Security-Token when the credentials carry a session token, X-Amz-Date,
// X-Amz-Content-Sha256, Authorization. Returns the stages (the canonical request holds the
// session token: for tests, never for a log).
sigv4::Signature sign_sts_request(StsRequest& request, const StsEndpoint& endpoint,
                                  const AwsCredentials& credentials,
                                  std::chrono::system_clock::time_point now,
                                  sigv4::SigningKeyCache* cache = nullptr);

// Both steps: what the server sends to assume `step`'s role with `credentials`.
StsRequest make_assume_role_request(const StsEndpoint& endpoint, const AssumeRoleStep& step,
                                    const AwsCredentials& credentials,
                                    std::chrono::system_clock::time_point now,
                                    sigv4::SigningKeyCache* cache = nullptr);

// --- the answer ------------------------------------------------------------------------------
// ErrorResponse/Error/{Type,Code,Message}: what STS refused, to be shown (never a secret).
struct StsServiceError {
  std::string type;     // "Sender" / "Receiver"; may be empty
  std::string code;     // e.g. "AccessDenied"; never empty
  std::string message;  // may be empty
  // "AccessDenied: User ... is not authorized ..." with control characters replaced by spaces
  // and bounded in length: safe for a log line or a 502 message.
  std::string describe() const;
};

using AssumeRoleAnswer = std::variant<AwsCredentials, StsServiceError>;

inline constexpr std::size_t kMaxStsAnswer = 1024 * 1024;

// Reads an STS answer, whatever its HTTP status:
//   AssumeRoleResponse/AssumeRoleResult/Credentials/{AccessKeyId,SecretAccessKey,SessionToken,
//     Expiration} -> AwsCredentials (all four required, each once);
//   ErrorResponse/Error/{Type,Code,Message} -> StsServiceError (Code required).
// Elements are matched by local name (any namespace: STS uses a default xmlns) on their exact
// path; other elements are ignored (AssumedRoleUser, ResponseMetadata, a Credentials elsewhere,
// ...), but a wanted element given twice or holding child elements is refused. Errors
// (invalid_input, field "sts"): not well-formed XML, any DOCTYPE (so no entity can be declared:
// no external entities, no entity expansion), another root, missing elements, bad credentials
// or Expiration, a body over kMaxStsAnswer. Messages never quote a credential.
Result<AssumeRoleAnswer> parse_assume_role_answer(std::string_view xml);

}  // namespace membraned::core
