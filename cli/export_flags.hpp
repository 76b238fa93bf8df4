// capi's flags turned into request pieces, with no network in sight: the export body of
// `membrane export` (with the original CLI's conflicts and implications), `--header` values, and
// the query string of `membrane query`.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/grant_limits.hpp"
#include "core/http.hpp"
#include "core/result.hpp"

namespace membraned::cli {

// Every flag of `capi membrane export`, as given (absent: nullopt / empty).
struct ExportFlags {
  std::optional<std::string> uri;
  std::optional<std::string> capability_to_export;
  std::optional<bool> allow_query;
  std::vector<std::string> headers;  // "Name: value", in order
  std::optional<std::string> method;
  std::optional<std::string> aws4_access_key_id;
  std::optional<std::string> aws4_secret_access_key;
  std::optional<std::string> aws4_session_token;  // [beyond] temporary keys' token (sessionToken)
  std::optional<std::string> aws4_region;
  std::optional<std::string> aws4_service;
  std::optional<std::string> aws4_credentials;  // [beyond] contract §9: an --aws-config profile instead of keys
  std::optional<std::string> cap1_key;
  std::optional<std::string> cap1_key_id;
  std::optional<std::string> timeout_ms;  // text as given, checked here
  std::optional<std::string> tls_ca;      // PEM text, as the original CLI takes it
  std::optional<std::string> tls_cert;    // PEM text
  std::optional<std::string> tls_key;     // PEM text
  std::optional<bool> tls_reject_unauthorized;
  // The grant's own limits (core/grant_limits), for --uri exports and re-exports alike.
  std::optional<std::string> label;
  std::optional<std::string> expires_at;  // RFC 3339, sent as given
  std::optional<std::string> expires_in;  // a duration ("1h30m"), sent as now + it
  std::optional<std::string> max_uses;    // text as given, checked here
  std::optional<std::string> rate_limit;  // "REQUESTS/SECONDS"
  std::vector<std::string> allow_from;    // CIDRs, in order
};

// The longest --expires-in: 100 years of 365 days, far inside what a date-time can hold.
inline constexpr std::chrono::seconds kMaxExpiresIn = std::chrono::days(36500);

// The flag names used in messages ("--uri", ...) of the flags that are set, in a fixed order.
std::vector<std::string> given_export_flags(const ExportFlags& flags);

// The JSON body of contract §4.1 for these flags, keys in the original CLI's order, then the grant
// fields (label, expiresAt, maxUses, rateLimit, allowFrom). `now`: the time --expires-in counts
// from, and the one expiresAt must be after. Errors (invalid_input, never holding a secret) for:
// --capability-to-export with any uri option; aws4 and cap1 flags together; an incomplete aws4
// or cap1 set; neither --uri nor --capability-to-export; a malformed --header, --timeout-ms,
// --max-uses, --rate-limit or --expires-in; --expires-at with --expires-in; and anything
// core::parse_export_request refuses (so nothing the service would refuse with 400 is sent).
core::Result<nlohmann::ordered_json> build_export_body(
    const ExportFlags& flags, std::chrono::system_clock::time_point now = std::chrono::system_clock::now());

// --expires-in: whole numbers with a unit, d (days), h, m, s, each unit at most once and in that
// order ("90s", "30m", "2h", "1d", "1h30m", "1d12h"); more than 0 and at most kMaxExpiresIn.
core::Result<std::chrono::seconds> parse_duration_flag(std::string_view text);

// --rate-limit: "REQUESTS/SECONDS" ("100/60": at most 100 uses in any 60 seconds), whole numbers
// within the service's bounds (core::kLargestRateRequests, core::kLargestRateWindowSeconds).
core::Result<core::RateLimit> parse_rate_limit_flag(std::string_view text);

// "Name: value" (split at the first ':', both sides trimmed of blanks). The name must be an HTTP
// token, the value hold no CR, LF or NUL.
core::Result<core::Header> parse_header_flag(std::string_view text);

// The request target of `membrane query`: "/" with no parameter, else "/?id=..&lastId=..&limit=.."
// (encodeURIComponent values, in this order, as the original SDK sends them). limit must be an
// integer greater than 0.
core::Result<std::string> query_target(const std::optional<std::string>& id,
                                       const std::optional<std::string>& last_id,
                                       const std::optional<std::string>& limit);

}  // namespace membraned::cli
