// From a resolved uri capability and the request its holder sent, the exact request that goes
// upstream (contract §5), then signed (contract §6). Pure: the clock and the signing-key
// cache come in as arguments.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/aws_credentials.hpp"
#include "core/export_config.hpp"
#include "core/http.hpp"
#include "core/result.hpp"
#include "core/sigv4.hpp"

namespace membraned::core {

struct IncomingRequest {
  std::string_view method;
  std::string_view target;  // request-target as received; only its query is used
  const Headers& headers;
  std::string_view body;
};

struct UpstreamRequest {
  bool https = false;
  std::string connect_host;  // name or address to resolve/connect (no brackets)
  std::uint16_t port = 0;
  std::string method;
  std::string target;  // origin-form: path[?query]
  Headers headers;     // in sending order, Host included
  std::string_view body;  // the requester's body, forwarded byte for byte (not owned)
};

struct SigningContext {
  std::chrono::system_clock::time_point now;
  sigv4::SigningKeyCache* key_cache = nullptr;  // optional
  // contract §9: the credentials to sign with when the export's aws4-hmac-sha256 names a profile
  // (Aws4Signing::credentials_profile), obtained by the caller; not owned. Ignored for exports
  // with static keys. Signing a profile export without them is an internal error.
  const AwsCredentials* aws_credentials = nullptr;
};

// Headers never forwarded from the requester besides the hop-by-hop ones: its credentials,
// what the service recomputes, and what it says to the service alone. Expect is answered by the
// service, which already holds the whole body; X-Capability-Operation is checked by it.
bool is_dropped_requester_header(std::string_view name) noexcept;

// Method, target, headers and body, unsigned.
UpstreamRequest build_upstream_request(const UriExport& config, const IncomingRequest& incoming);

// Adds the signature headers of config.signing (nothing when the export has no hmac). Errors
// (invalid_input) only for CAP1 requests whose path or query cannot be percent-decoded, and
// (internal) for an aws4 export naming a profile when context.aws_credentials is null.
Status sign_upstream_request(UpstreamRequest& request, const UriExport& config,
                             const SigningContext& context);

// Both steps.
Result<UpstreamRequest> prepare_upstream_request(const UriExport& config,
                                                 const IncomingRequest& incoming,
                                                 const SigningContext& context);

}  // namespace membraned::core
