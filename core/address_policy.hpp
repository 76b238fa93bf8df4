// Upstream safety (contract §10): which addresses an export may reach. Pure logic: the server feeds it
// the addresses DNS gave and the ones it listens on.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace membraned::core {

struct IpAddress {
  bool v4 = true;
  std::array<std::uint8_t, 16> bytes{};  // IPv4: the first 4

  // A dotted quad or an IPv6 address (brackets allowed, zone ids refused).
  static std::optional<IpAddress> parse(std::string_view text);
  // What inet_aton and so getaddrinfo accept as IPv4 besides the dotted quad: 1 to 4 parts, each
  // decimal, octal (leading 0) or hex (0x), the last filling the remaining bytes
  // ("2130706433", "0177.0.0.1", "0x7f.1" are all 127.0.0.1).
  static std::optional<IpAddress> parse_numeric_ipv4(std::string_view text);

  // The IPv4 address an IPv6 one carries, if it only wraps one (::ffff:a.b.c.d, ::a.b.c.d,
  // 64:ff9b::a.b.c.d); else itself.
  IpAddress embedded_ipv4() const;
  // 127.0.0.0/8, ::1, or ::ffff:127.x.y.z.
  bool is_loopback() const;
  std::string to_string() const;
  bool operator==(const IpAddress&) const = default;
};

struct Cidr {
  IpAddress base;  // masked to the prefix
  int prefix = 0;

  // "10.0.0.0/8", "fd00::/8", or one address (a /32 or /128).
  static Result<Cidr> parse(std::string_view text);
  bool contains(const IpAddress& address) const;
  std::string to_string() const;
  bool operator==(const Cidr&) const = default;
};

// The address a host stands for without asking DNS: an address in any spelling a resolver would
// take as one, or 127.0.0.1 for `localhost` / `*.localhost` (loopback by definition, RFC 6761);
// nullopt for any other name.
std::optional<IpAddress> address_without_dns(std::string_view host);

class UpstreamAddressPolicy {
 public:
  struct Endpoint {
    IpAddress address;
    std::uint16_t port = 0;
  };

  // `allow` opens ranges that are closed by default, `deny` closes more (and wins over allow),
  // `own` are the service's own listening endpoints (closed whatever is allowed: no loops).
  UpstreamAddressPolicy(std::vector<Cidr> allow = {}, std::vector<Cidr> deny = {}, std::vector<Endpoint> own = {});

  // invalid_input on field "uri", saying why, or ok. `port`: the upstream's, when known.
  Status check(const IpAddress& address, std::optional<std::uint16_t> port = std::nullopt) const;

  // For a host as written in an export: an address (in any spelling a resolver would take as
  // one), or `localhost` / `*.localhost` (loopback by definition, RFC 6761), is checked now;
  // any other name needs DNS first (nullopt).
  std::optional<Status> check_without_dns(std::string_view host, std::optional<std::uint16_t> port = std::nullopt) const;

 private:
  std::vector<Cidr> allow_;
  std::vector<Cidr> deny_;
  std::vector<Endpoint> own_;
};

}  // namespace membraned::core
