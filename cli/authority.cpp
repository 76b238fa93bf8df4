#include "cli/authority.hpp"

#include "core/address_policy.hpp"
#include "core/http.hpp"

namespace membraned::cli {

namespace {

bool parse_port(std::string_view text, std::uint16_t& port) {
  if (text.empty() || text.size() > 5) return false;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

bool is_ip(std::string_view host, bool v4) {
  auto address = core::IpAddress::parse(host);
  return address && address->v4 == v4;
}

bool is_host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

}  // namespace

core::Result<Authority> parse_authority(std::string_view text, std::uint16_t default_port) {
  Authority out;
  out.text = std::string(text);
  out.port = default_port;
  std::string_view host;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) {
      return core::Error::invalid("authority", "the capability's authority has an unclosed '['");
    }
    host = text.substr(1, close - 1);
    rest = text.substr(close + 1);
    out.host = core::to_lower_ascii(host);
    if (!is_ip(out.host, /*v4=*/false)) {
      return core::Error::invalid("authority", "the capability's authority holds an invalid IPv6 address");
    }
    out.ip_literal = true;
  } else {
    auto colon = text.find(':');
    host = text.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view{} : text.substr(colon);
    out.host = core::to_lower_ascii(host);
    if (out.host.empty()) return core::Error::invalid("authority", "the capability's authority has no host");
    for (char c : out.host) {
      if (!is_host_char(c)) {
        return core::Error::invalid("authority", "the capability's authority holds an invalid host name");
      }
    }
    out.ip_literal = is_ip(out.host, /*v4=*/true);
  }
  if (!rest.empty()) {
    if (rest.front() != ':' || !parse_port(rest.substr(1), out.port)) {
      return core::Error::invalid("authority", "the capability's authority has an invalid port");
    }
  }
  return out;
}

bool is_loopback_host(std::string_view host) {
  auto address = core::address_without_dns(host);
  return address && address->is_loopback();
}

core::Result<Authority> capability_authority(const core::CapabilityUri& uri, bool plain_http) {
  if (uri.is_custom_form()) {
    return core::Error::invalid(
        "capability",
        "a capability URI of the form cpblty:AUTHORITY:TOKEN names no network address; "
        "use its cpblty://HOST[:PORT]/#TOKEN form");
  }
  return parse_authority(uri.authority(), plain_http ? 80 : 443);
}

core::Status check_plain_http_allowed(const Authority& authority) {
  if (is_loopback_host(authority.host)) return core::ok_status();
  return core::Error::invalid(
      "plain-http",
      "plain HTTP is refused for " + authority.text +
          ": it would send the bearer token across the network in clear. Plain HTTP is only for a "
          "loopback service (127.0.0.0/8, ::1, localhost); use HTTPS (drop --plain-http, "
          "CAPI_PLAIN_HTTP and the profile's plainHttp)");
}

}  // namespace membraned::cli
