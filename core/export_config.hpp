// The export body of contract §4.1, parsed and validated into a typed value. A parsed value is
// always valid: every later stage (storage, request building, signing) can rely on it.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json_fwd.hpp>

#include "core/grant_limits.hpp"
#include "core/http.hpp"
#include "core/result.hpp"
#include "core/token.hpp"
#include "core/url.hpp"

namespace membraned::core {

// Either static keys (access_key_id + secret_access_key [+ session_token]) or, [beyond] contract §9,
// the name of an --aws-config profile whose credentials the server obtains at invocation time
// (credentials_profile; the three key fields are then empty).
struct Aws4Signing {
  std::string access_key_id;
  std::string secret_access_key;  // secret
  std::string region;
  std::string service;
  std::string session_token;  // secret; empty when not given
  std::optional<std::string> credentials_profile;  // "credentials": a profile name
};

struct Cap1Signing {
  std::string key;  // secret; base64url text, used as given
  std::string key_id;
};

using Signing = std::variant<std::monostate, Aws4Signing, Cap1Signing>;

struct TlsOptions {
  std::string ca;    // PEM; empty: the default trust store
  std::string cert;  // PEM client certificate; empty: none
  std::string key;   // PEM private key of `cert`; secret
  bool reject_unauthorized = true;
};

struct UriExport {
  UpstreamTarget target;  // taken apart once at export time
  std::optional<std::string> method;  // upper case
  bool allow_query = false;
  Headers headers;  // configured headers: valid names and values, unique (case-insensitive)
  Signing signing;
  std::optional<std::uint64_t> timeout_ms;  // already lowered to the service maximum
  std::optional<TlsOptions> tls;
};

struct ReExport {
  CapabilityUri capability;
};

using ExportConfig = std::variant<UriExport, ReExport>;

struct ExportLimits {
  std::uint64_t max_timeout_ms = 30000;
  // tls.key must be a key whose signatures cost little (core::is_supported_tls_client_key). A
  // configuration read back from storage was checked under the rules of its day: the server
  // refuses such a key when an invocation would use it.
  bool check_tls_key = true;
};

// A JSON body as the service reads every body the contract says is a JSON object (contract §3,
// §4.1): a key given twice in one object, which nlohmann::json would silently collapse to its
// last value, is refused. Errors are invalid_input: "body is not valid JSON", or "K is given
// twice" with `field` K, the key's dotted path ("headers.X-A").
Result<nlohmann::json> parse_json_without_duplicate_keys(std::string_view body);

// Errors are invalid_input with `field` naming the offending field (dotted path).
Result<ExportConfig> parse_export_config(std::string_view body, const ExportLimits& limits = {});
// For a body already parsed (duplicate keys can no longer be detected there).
Result<ExportConfig> parse_export_json(const nlohmann::json& body, const ExportLimits& limits = {});

// A whole export body: what is exported, and the limits the new capability lives under.
struct ExportRequest {
  ExportConfig config;
  GrantLimits grant;
};

// Parses the body once (duplicate keys refused), takes the grant fields (kGrantLimitFields) out
// for parse_grant_limits (expiresAt compared with `now`) and hands the rest to parse_export_json:
// a uri export or a re-export may carry them, and any other key is refused as before. The
// configuration's errors come first. Errors as parse_export_config's.
Result<ExportRequest> parse_export_request(std::string_view body, const ExportLimits& limits,
                                           std::chrono::system_clock::time_point now);

// The export body that parses back to this value (secrets included: for sealing in storage,
// never for answering a client).
nlohmann::json to_json(const UriExport& config);

// `config` behind a shared pointer whose deleter overwrites its secrets (signing keys, session
// token, TLS key) before it goes.
std::shared_ptr<const UriExport> share_wiped(UriExport config);

}  // namespace membraned::core
