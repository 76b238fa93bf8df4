// Where a capability's requests go: the AUTHORITY of cpblty://AUTHORITY/#TOKEN taken apart, and
// the rule that decides whether plain HTTP may carry a bearer token there (loopback only).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.hpp"
#include "core/token.hpp"

namespace membraned::cli {

struct Authority {
  std::string text;         // as written in the capability URI: the Host header and trustedCA key
  std::string host;         // without IPv6 brackets, lower-cased
  std::uint16_t port = 0;   // explicit, or the scheme's default
  bool ip_literal = false;  // host is an IPv4 or IPv6 address (no SNI, IP check of the certificate)
};

// "host", "host:port", "[v6]" or "[v6]:port". default_port applies when no port is written.
core::Result<Authority> parse_authority(std::string_view text, std::uint16_t default_port);

// localhost (and *.localhost), 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104, written literally.
bool is_loopback_host(std::string_view host);

// The network authority of a capability URI; the cpblty:B64AUTH:TOKEN form names none.
core::Result<Authority> capability_authority(const core::CapabilityUri& uri, bool plain_http);

// Plain HTTP is allowed only to a loopback authority: a bearer token never crosses a network in
// clear. The error says why and what to do instead.
core::Status check_plain_http_allowed(const Authority& authority);

}  // namespace membraned::cli
