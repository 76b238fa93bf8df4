// An absolute http(s) URL taken apart once, for every module that sends a request somewhere: an
// export's upstream, the STS endpoint, the instance-metadata and container-credentials endpoints.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace membraned::core {

// Where a request goes.
struct UpstreamTarget {
  std::string uri;  // the configured URI, fragment removed
  bool https = false;
  std::string host;                  // as written in the URI (IPv6 with brackets), lower-cased
  std::string connect_host;          // the same without brackets, for name resolution
  std::uint16_t port = 0;            // explicit or the scheme's default
  std::string authority;             // the Host header: host, plus ":port" when not the default
  std::string path;                  // encoded path, "/" when empty
  std::optional<std::string> query;  // encoded query without '?'; present but empty for "x?"
};

inline constexpr std::size_t kMaxUriLength = 8192;

// An absolute http or https URI of at most kMaxUriLength characters, without user information,
// whose host is a DNS name or an IP address. Errors are invalid_input on field "uri".
Result<UpstreamTarget> parse_upstream_uri(std::string_view uri);

}  // namespace membraned::core
