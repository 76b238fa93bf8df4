// CAP1-HMAC-SHA512, the Capability Signature Version 1 (contract §6), reproduced exactly as
// its Node.js reference (cap1-hmac-sha512 v1.4.3) computes it, quirks included:
//   - headers behave as a JavaScript object: keys are case-sensitive, a repeated key keeps its
//     first position and its last value; names are lower-cased only when canonicalised;
//   - values are "trimall"ed: outside double quotes runs of JavaScript white space become one
//     space, inside they are kept; an odd quote gets a closing quote appended;
//   - the canonical URI is encodeURIComponent(path.posix.normalize(decodeURIComponent(path))),
//     so '/' becomes %2F;
//   - the query is split on '&', sorted raw (UTF-16 order) and only then decoded and re-encoded
//     piece by piece; a piece without '=' gets the value "undefined", a second '=' cuts the value;
//   - each intermediate HMAC digest is used as the next key after being read as latin1 and
//     written as UTF-8 (bytes >= 0x80 become two bytes);
//   - hop-by-hop headers are never signed; the body is never signed.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/http.hpp"
#include "core/result.hpp"

namespace membraned::core::cap1 {

inline constexpr std::string_view kAlgorithm = "CAP1-HMAC-SHA512";
inline constexpr std::chrono::minutes kMaxClockSkew{15};

// The headers of a CAP1 signature: the caller writes sign()'s cap_date and authorization under
// these names. An export may not configure them: the signer's values would replace them.
inline constexpr std::string_view kDateHeader = "X-Cap-Date";
inline constexpr std::string_view kAuthorizationHeader = "Authorization";
inline constexpr std::array<std::string_view, 2> kWrittenHeaders = {kDateHeader, kAuthorizationHeader};

struct SignInput {
  Headers headers;           // must include Host; X-Cap-Date is added from `now` when absent
  std::string method = "GET";
  std::string path = "/";
  std::string query;         // without '?'
  std::string key;           // the shared secret as text (used as given, not decoded)
  std::string key_id;
  // The signing time when there is no X-Cap-Date header. The caller passes it (core reads no
  // clock); left unset it is the epoch, which no verifier accepts.
  std::chrono::system_clock::time_point now;
  // false reproduces cap1-hmac-sha512 <= 1.3.0, which still signed hop-by-hop headers; kept
  // only so that version's known answers can be checked.
  bool drop_hop_by_hop = true;
};

struct SignOutput {
  std::string authorization;   // the Authorization header value
  std::string credential;      // keyId/date/host/cap1_request
  std::string cap_date;        // the X-Cap-Date value, YYYYMMDDTHHMMSSZ
  std::string signed_headers;  // "host;x-cap-date"
  std::string signature;       // base64url, unpadded
  std::string canonical_request;
  std::string string_to_sign;
};

// Errors (invalid_input) where the reference throws: no Host header, a malformed X-Cap-Date,
// or a path or query that decodeURIComponent rejects.
Result<SignOutput> sign(const SignInput& input);

// The stages, for tests and for anyone reproducing the scheme.
Result<std::string> canonical_uri(std::string_view path);
Result<std::string> canonical_query(std::string_view query);
std::string trimall(std::string_view value);
// Node's path.posix.normalize.
std::string posix_normalize(std::string_view path);
// The latin1-to-UTF-8 re-encoding of a digest used as the next HMAC key.
std::string latin1_to_utf8(std::string_view bytes);

// Returns the key for a key id, or nullopt when there is none (or the lookup failed).
using SecretLookup = std::function<std::optional<std::string>(std::string_view key_id)>;

struct VerifyInput {
  Headers headers;  // one entry per header name, as an HTTP server hands them over
  std::string method;
  std::string path;
  std::string query;
  SecretLookup secret;
  // The verifier's time, which X-Cap-Date must be within kMaxClockSkew of. The caller passes it
  // (core reads no clock); left unset it is the epoch, and nothing verifies.
  std::chrono::system_clock::time_point now;
};

// True only for a request signed by the holder of the key within 15 minutes of `now`. Never
// throws: every malformed input (no Authorization, bad date, bad encoding, unknown key id, a
// lookup that throws) answers false. The final comparison is constant-time.
bool verify(const VerifyInput& input) noexcept;

}  // namespace membraned::core::cap1
