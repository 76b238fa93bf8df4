#include "cli/authority.hpp"

#include <arpa/inet.h>

#include <array>
#include <cstring>

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

bool is_ipv4(const std::string& host, std::array<unsigned char, 4>* out = nullptr) {
  in_addr addr{};
  if (::inet_pton(AF_INET, host.c_str(), &addr) != 1) return false;
  if (out) std::memcpy(out->data(), &addr, 4);
  return true;
}

bool is_ipv6(const std::string& host, std::array<unsigned char, 16>* out = nullptr) {
  in6_addr addr{};
  if (::inet_pton(AF_INET6, host.c_str(), &addr) != 1) return false;
  if (out) std::memcpy(out->data(), &addr, 16);
  return true;
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
    if (!is_ipv6(out.host)) {
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
    out.ip_literal = is_ipv4(out.host);
  }
  if (!rest.empty()) {
    if (rest.front() != ':' || !parse_port(rest.substr(1), out.port)) {
      return core::Error::invalid("authority", "the capability's authority has an invalid port");
    }
  }
  return out;
}

bool is_loopback_host(std::string_view host_in) {
  std::string host = core::to_lower_ascii(host_in);
  if (!host.empty() && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (!host.empty() && host.back() == '.') host.pop_back();  // "localhost." is the same name
  if (host == "localhost") return true;
  constexpr std::string_view kLocalhostSuffix = ".localhost";  // RFC 6761: always loopback
  if (host.size() > kLocalhostSuffix.size() &&
      host.compare(host.size() - kLocalhostSuffix.size(), kLocalhostSuffix.size(), kLocalhostSuffix) == 0) {
    return true;
  }
  std::array<unsigned char, 4> v4{};
  if (is_ipv4(host, &v4)) return v4[0] == 127;
  std::array<unsigned char, 16> v6{};
  if (is_ipv6(host, &v6)) {
    static constexpr std::array<unsigned char, 16> kLoopback{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    if (v6 == kLoopback) return true;
    // ::ffff:127.x.y.z
    for (std::size_t i = 0; i < 10; ++i) {
      if (v6[i] != 0) return false;
    }
    return v6[10] == 0xff && v6[11] == 0xff && v6[12] == 127;
  }
  return false;
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
