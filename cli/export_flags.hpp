// capi's flags turned into request pieces, with no network in sight: the export body of
// `membrane export` (with the original CLI's conflicts and implications), `--header` values, and
// the query string of `membrane query`.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

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
};

// The flag names used in messages ("--uri", ...) of the flags that are set, in a fixed order.
std::vector<std::string> given_export_flags(const ExportFlags& flags);

// The JSON body of contract §4.1 for these flags, keys in the original CLI's order. Errors
// (invalid_input, never holding a secret) for: --capability-to-export with any uri option; aws4
// and cap1 flags together; an incomplete aws4 or cap1 set; neither --uri nor
// --capability-to-export; a malformed --header or --timeout-ms; and anything
// core::parse_export_json refuses (so nothing the service would refuse with 400 is sent).
core::Result<nlohmann::ordered_json> build_export_body(const ExportFlags& flags);

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
