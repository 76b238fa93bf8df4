// The small amount of HTTP vocabulary core/ needs, with no socket in sight: header lists,
// case-insensitive names, token syntax, method names and hop-by-hop headers.
#pragma once

#include <optional>
#include <utility>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace membraned::core {

struct Header {
  std::string name;
  std::string value;
  friend bool operator==(const Header&, const Header&) = default;
};
using Headers = std::vector<Header>;

char to_lower_ascii(char c) noexcept;
std::string to_lower_ascii(std::string_view s);
bool iequals(std::string_view a, std::string_view b) noexcept;
bool istarts_with(std::string_view s, std::string_view prefix) noexcept;

// RFC 9110 token (1*tchar): what a header name or method must be.
bool is_http_token(std::string_view s) noexcept;
// A header value that can be written on the wire: no CR, LF or NUL.
bool is_safe_header_value(std::string_view s) noexcept;

// The standard method names (RFC 9110 and PATCH), upper-cased; nullopt for anything else.
std::optional<std::string> standard_method(std::string_view name);

// The request header in which a client states the operation it means (contract §2), by the name
// the access log gives it ("export", "revoke"...): a capability that performs another one is
// refused with 409 and nothing done. Never forwarded upstream. The 409 carries it too, naming
// what the capability does perform.
inline constexpr std::string_view kCapabilityOperationHeader = "X-Capability-Operation";

// On every error answer membraned makes itself (a refusal, a 502 for an upstream it could not
// reach...), never on an upstream's answer it relays: a client tells "membraned refused" from
// "the upstream refused" (a 403 of either).
inline constexpr std::string_view kMembranedErrorHeader = "X-Membraned-Error";

// Connection, Keep-Alive, Proxy-Authenticate, Proxy-Authorization, TE, Trailer,
// Transfer-Encoding, Upgrade (case-insensitive).
bool is_hop_by_hop_header(std::string_view name) noexcept;

// The name=value pieces of a raw query string, undecoded: split on '&', empty pieces skipped,
// a piece without '=' has an empty value.
std::vector<std::pair<std::string_view, std::string_view>> split_query(std::string_view query);

// The header names listed in one Connection header value ("keep-alive, X-Foo"), lower-cased,
// appended to `out`: hop-by-hop for this hop as well.
void append_connection_tokens(std::string_view connection_value, std::vector<std::string>& out);

// application/x-www-form-urlencoded pairs of a query string ("a=1&b=x+y"): '+' is a space,
// %XX escapes are decoded (a malformed one is an error naming the parameter); empty pieces are
// skipped; "a" alone is ("a", "").
Result<std::vector<std::pair<std::string, std::string>>> parse_form_query(std::string_view query);

// First value of a header (case-insensitive name), if present.
const Header* find_header(const Headers& headers, std::string_view name) noexcept;
// Removes every header with this name; returns how many were removed.
std::size_t erase_headers(Headers& headers, std::string_view name);
// Replaces every header with this name by one header at the end.
void set_header(Headers& headers, std::string_view name, std::string value);

}  // namespace membraned::core
