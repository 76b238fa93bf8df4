// Byte-to-text codings used across the service: base64 (standard and URL-safe), hex, and the
// percent-encodings that the two signing schemes define (AWS SigV4's, and JavaScript's
// encodeURIComponent/decodeURIComponent that CAP1 inherited from its Node.js reference).
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace membraned::core {

// Bytes are carried in std::string / std::string_view throughout core/.
inline std::span<const unsigned char> as_bytes(std::string_view s) {
  return {reinterpret_cast<const unsigned char*>(s.data()), s.size()};
}

std::string base64_encode(std::span<const unsigned char> bytes);   // padded, '+' '/'
std::string base64url_encode(std::span<const unsigned char> bytes);  // unpadded, '-' '_'
inline std::string base64_encode(std::string_view s) { return base64_encode(as_bytes(s)); }
inline std::string base64url_encode(std::string_view s) { return base64url_encode(as_bytes(s)); }

// Standard alphabet; padding optional but, when present, correct. No white space.
std::optional<std::string> base64_decode(std::string_view text);
// URL-safe alphabet, no padding, canonical (unused trailing bits must be zero), so every byte
// string has exactly one accepted spelling.
std::optional<std::string> base64url_decode(std::string_view text);
bool is_base64url_text(std::string_view text);  // non-empty and only [-_A-Za-z0-9]

std::string hex_encode(std::span<const unsigned char> bytes);  // lower case
inline std::string hex_encode(std::string_view s) { return hex_encode(as_bytes(s)); }
std::optional<std::string> hex_decode(std::string_view text);  // either case

// --- AWS SigV4 percent-encoding -------------------------------------------------------------
bool is_aws_unreserved(unsigned char c) noexcept;  // A-Z a-z 0-9 - . _ ~
// Encodes every byte outside the unreserved set as %XX (upper-case hex); '/' kept when asked.
void aws_uri_encode(std::string_view in, bool keep_slash, std::string& out);
std::string aws_uri_encode(std::string_view in, bool keep_slash);
// As above, but valid %XX escapes already present are kept (normalised to upper-case hex):
// the canonical form of a path that is already encoded, for S3's single encoding.
void aws_uri_encode_keep_escapes(std::string_view in, std::string& out);
// Decodes %XX escapes; a '%' not followed by two hex digits stays literal. '+' stays '+'.
std::string percent_decode_lenient(std::string_view in);
// application/x-www-form-urlencoded: '+' is a space and every '%' must start a valid %XX escape
// (nullopt otherwise).
std::optional<std::string> form_urldecode(std::string_view in);

// --- JavaScript encodeURIComponent / decodeURIComponent (ECMA-262) ---------------------------
// decodeURIComponent: every %XX must be well formed and the escaped bytes must form complete,
// valid UTF-8 sequences, else the error JavaScript would throw (URIError) comes back.
Result<std::string> js_decode_uri_component(std::string_view in);
// encodeURIComponent: keeps A-Z a-z 0-9 - _ . ! ~ * ' ( ); input must be valid UTF-8.
Result<std::string> js_encode_uri_component(std::string_view in);

bool is_valid_utf8(std::string_view s) noexcept;

// A value that came from outside, made safe to quote in a message: itself when it is printable
// ASCII of at most `max` characters, cut to `max` and "..." when longer, "(unprintable)" when it
// holds anything else. Never for secrets.
std::string printable_excerpt(std::string_view value, std::size_t max = 80);

}  // namespace membraned::core
