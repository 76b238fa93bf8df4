// AWS Signature Version 4 (AWS4-HMAC-SHA256), header form and presigned-query form.
//
// Built in the steps of the specification, each a function of its own so that each can be
// checked against the official suite: canonical URI, canonical query, canonical headers,
// canonical request, string to sign, signing key, signature. The signer takes credentials as
// plain values; where they come from (an export, an instance role) is not its business.
#pragma once

#include <array>
#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/crypto.hpp"
#include "core/http.hpp"
#include "core/result.hpp"

namespace membraned::core::sigv4 {

inline constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

// The headers sign_headers writes, replacing any the request had (the token and the payload hash
// only when they apply). An export may not configure them: the signer would overwrite them.
inline constexpr std::string_view kSecurityTokenHeader = "X-Amz-Security-Token";
inline constexpr std::string_view kDateHeader = "X-Amz-Date";
inline constexpr std::string_view kContentSha256Header = "x-amz-content-sha256";
inline constexpr std::string_view kAuthorizationHeader = "Authorization";
inline constexpr std::array<std::string_view, 4> kWrittenHeaders = {
    kSecurityTokenHeader, kDateHeader, kContentSha256Header, kAuthorizationHeader};

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty for long-term keys
};

// Which headers enter the signature. The official suite signs every header; the service signs
// host, x-amz-*, content-type, content-md5 and the headers an export configures (contract §6), so a
// proxy on the way that adds e.g. Via or X-Forwarded-For cannot break the signature.
struct HeaderSelection {
  bool all = false;
  std::vector<std::string> extra;  // names signed in addition, when present
  bool selects(std::string_view name) const;  // case-insensitive
};

struct Request {
  std::string method;
  std::string path;   // as sent on the wire, before '?'
  std::string query;  // as sent on the wire, after '?', without it
  Headers headers;
  std::string_view body;  // not owned
};

struct Params {
  std::string region;
  std::string service;
  std::chrono::system_clock::time_point time;
  // Non-S3 services remove dot segments and empty segments, then encode the (already encoded)
  // path again; S3 signs the path as sent.
  bool normalize_path = true;
  bool double_encode_path = true;
  bool add_content_sha256_header = true;  // header form only: X-Amz-Content-Sha256
  bool omit_session_token = false;  // token added to the request but not signed (some services)
  std::chrono::seconds expires{3600};  // query form only: X-Amz-Expires
  HeaderSelection headers;

  // Parameters as the service uses them for an upstream of this AWS service name.
  static Params for_service(std::string region, std::string service,
                            std::chrono::system_clock::time_point time);
};

// What a signing produced, stage by stage.
struct Signature {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;  // lower-case hex
};

// --- the stages ------------------------------------------------------------------------------
std::string format_amz_date(std::chrono::system_clock::time_point t);  // 20150830T123600Z
std::string canonical_uri(std::string_view path, bool normalize, bool double_encode);
// The path with "." and ".." segments resolved and empty segments removed, as AWS services do.
std::string remove_dot_segments(std::string_view path);
// Decoded name/value pairs of a raw query string; "a" alone is ("a", "").
std::vector<std::pair<std::string, std::string>> parse_query(std::string_view raw_query);
std::string canonical_query(std::vector<std::pair<std::string, std::string>> decoded_params);

struct CanonicalHeaders {
  std::string block;           // "name:value\n" lines, sorted
  std::string signed_headers;  // "a;b;c"
};
CanonicalHeaders canonical_headers(const Headers& headers, const HeaderSelection& selection);
std::string canonical_header_value(std::string_view raw);  // trimmed, white space runs collapsed

std::string credential_scope(std::string_view date8, std::string_view region,
                             std::string_view service);
std::string string_to_sign(std::string_view amz_date, std::string_view scope,
                           std::string_view canonical_request);
Sha256Digest derive_signing_key(std::string_view secret, std::string_view date8,
                                std::string_view region, std::string_view service);

// Derived signing keys by (secret, date, region, service). The secret itself is not kept: the
// map is keyed by its SHA-256. Thread-safe; bounded (cleared when full, since keys are per day).
class SigningKeyCache {
 public:
  explicit SigningKeyCache(std::size_t max_entries = 4096) : max_entries_(max_entries) {}
  Sha256Digest get(std::string_view secret, std::string_view date8, std::string_view region,
                   std::string_view service);
  std::size_t size() const;
  std::size_t derivations() const;  // how many keys were derived (cache misses)

 private:
  mutable std::mutex mutex_;
  std::unordered_map<std::string, Sha256Digest> keys_;
  std::size_t max_entries_;
  std::size_t derivations_ = 0;
};

// Header form: adds X-Amz-Security-Token, X-Amz-Date, X-Amz-Content-Sha256 (replacing any the
// request had) and Authorization. `cache` may be null.
Signature sign_headers(Request& request, const Credentials& credentials, const Params& params,
                       SigningKeyCache* cache = nullptr);
// Query form: appends X-Amz-Algorithm, -Credential, -Date, -SignedHeaders, -Expires,
// -Security-Token and -Signature to the query.
Signature presign_query(Request& request, const Credentials& credentials, const Params& params,
                        SigningKeyCache* cache = nullptr);

}  // namespace membraned::core::sigv4
