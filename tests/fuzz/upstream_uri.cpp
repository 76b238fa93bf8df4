// An export's upstream URI (core/url: parse_upstream_uri) and what contract §10 decides about its
// host before any DNS (address_without_dns, UpstreamAddressPolicy::check_without_dns). Properties:
// what parses is taken apart consistently and parses again to the same value; and a host that the
// system's resolver would read as a numeric address (getaddrinfo with AI_NUMERICHOST, which never
// touches the network) is the address the policy judges, and no other.
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

#include "core/address_policy.hpp"
#include "core/url.hpp"
#include "tests/fuzz/support/fuzz_check.hpp"

namespace {

using membraned::core::IpAddress;

// The address getaddrinfo reads `host` as without asking DNS, for one family.
std::optional<IpAddress> numeric_address(const std::string& host, int family) {
  addrinfo hints{};
  hints.ai_family = family;
  hints.ai_flags = AI_NUMERICHOST;
  addrinfo* result = nullptr;
  if (::getaddrinfo(host.c_str(), nullptr, &hints, &result) != 0) return std::nullopt;
  IpAddress ip;
  ip.v4 = family == AF_INET;
  if (ip.v4) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(result->ai_addr);
    std::memcpy(ip.bytes.data(), &in->sin_addr, 4);
  } else {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(result->ai_addr);
    std::memcpy(ip.bytes.data(), &in6->sin6_addr, 16);
  }
  ::freeaddrinfo(result);
  return ip;
}

bool is_localhost_name(std::string host) {
  for (auto& c : host) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!host.empty() && host.back() == '.') host.pop_back();
  return host == "localhost" || host.ends_with(".localhost");
}

// The pre-DNS decision agrees with the resolver on every host a URI can carry.
void check_host(const std::string& host) {
  const auto ours = membraned::core::address_without_dns(host);
  const auto v4 = numeric_address(host, AF_INET);
  const auto v6 = host.find('%') == std::string::npos ? numeric_address(host, AF_INET6) : std::nullopt;
  // glibc reads an IPv4-mapped IPv6 literal as the IPv4 address for AF_INET; the policy judges
  // it as that address too (embedded_ipv4).
  if (v4) FUZZ_CHECK(ours && ours->embedded_ipv4() == *v4);
  if (v6 && !v4) FUZZ_CHECK(ours && *ours == *v6);
  if (ours && !is_localhost_name(host)) FUZZ_CHECK(v4 || v6);
  const membraned::core::UpstreamAddressPolicy policy;
  const auto verdict = policy.check_without_dns(host, 80);
  FUZZ_CHECK(verdict.has_value() == ours.has_value());
  if (ours && ours->embedded_ipv4().is_loopback()) FUZZ_CHECK(!verdict->ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text = membraned::fuzz::as_text(data, size);
  auto target = membraned::core::parse_upstream_uri(text);
  if (!target) {
    FUZZ_CHECK(target.error().field == "uri");
    return 0;
  }
  FUZZ_CHECK(!target->host.empty() && !target->connect_host.empty());
  FUZZ_CHECK(target->port != 0);
  FUZZ_CHECK(!target->path.empty() && target->path.front() == '/');
  const std::uint16_t default_port = target->https ? 443 : 80;
  FUZZ_CHECK(
      target->authority ==
      (target->port == default_port ? target->host : target->host + ":" + std::to_string(target->port)));
  FUZZ_CHECK(target->host == target->connect_host || target->host == "[" + target->connect_host + "]");

  auto again = membraned::core::parse_upstream_uri(target->uri);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(again->uri == target->uri);
  FUZZ_CHECK(again->https == target->https);
  FUZZ_CHECK(again->host == target->host);
  FUZZ_CHECK(again->connect_host == target->connect_host);
  FUZZ_CHECK(again->port == target->port);
  FUZZ_CHECK(again->authority == target->authority);
  FUZZ_CHECK(again->path == target->path);
  FUZZ_CHECK(again->query == target->query);

  check_host(target->connect_host);
  return 0;
}
