#include "core/address_policy.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

namespace membraned::core {

namespace {

IpAddress make_ipv4(std::uint8_t a, std::uint8_t b, std::uint8_t c, std::uint8_t d) {
  IpAddress ip;
  ip.bytes = {a, b, c, d};
  return ip;
}

bool starts_with_bytes(const IpAddress& ip, std::initializer_list<std::uint8_t> prefix) {
  return std::equal(prefix.begin(), prefix.end(), ip.bytes.begin());
}

bool all_zero(const IpAddress& ip, std::size_t from, std::size_t to) {
  return std::all_of(ip.bytes.begin() + static_cast<std::ptrdiff_t>(from),
                     ip.bytes.begin() + static_cast<std::ptrdiff_t>(to), [](std::uint8_t b) { return b == 0; });
}

// Ranges closed unless the operator opens them, with the reason a refusal gives.
struct ClosedRange {
  Cidr range;
  const char* what;
};

const std::vector<ClosedRange>& closed_ranges() {
  static const std::vector<ClosedRange> ranges = [] {
    std::vector<ClosedRange> r;
    auto add = [&r](const char* cidr, const char* what) { r.push_back({*Cidr::parse(cidr), what}); };
    add("127.0.0.0/8", "a loopback address");
    add("::1/128", "a loopback address");
    // The cloud metadata and credential endpoints outside link-local, as their clouds document
    // them (docs/security.md lists the sources). Before the ranges that hold some of them, so
    // that the refusal names what the address is.
    constexpr const char* metadata = "a cloud metadata endpoint";
    add("fd00:ec2::/32", metadata);       // AWS: IMDS ::254, EKS Pod Identity ::23, DNS ::253, NTP ::123
    add("fd20:ce::254/128", metadata);    // GCP: the metadata server over IPv6
    add("168.63.129.16/32", metadata);    // Azure: the WireServer (goal state, extension settings)
    add("100.100.100.200/32", metadata);  // Alibaba Cloud: ECS metadata, RAM role credentials
    add("192.0.0.192/32", metadata);      // Oracle: Compute Cloud@Customer / Classic metadata
    add("fd00:a9fe:a9fe::1/128", metadata);  // Akamai (Linode): the metadata service over IPv6
    add("169.254.0.0/16", "a link-local address (cloud metadata endpoints live there)");
    add("fe80::/10", "a link-local address");
    add("0.0.0.0/8", "an unspecified address");
    add("::/128", "an unspecified address");
    add("224.0.0.0/4", "a multicast address");
    add("ff00::/8", "a multicast address");
    add("255.255.255.255/32", "the broadcast address");
    return r;
  }();
  return ranges;
}

}  // namespace

std::optional<IpAddress> IpAddress::parse(std::string_view text) {
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']') text = text.substr(1, text.size() - 2);
  if (text.empty() || text.size() > 45) return std::nullopt;
  std::string s(text);
  IpAddress ip;
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) != 1) return std::nullopt;
    ip.v4 = true;
    return ip;
  }
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) != 1) return std::nullopt;  // refuses "%zone"
  ip.v4 = false;
  return ip;
}

std::optional<IpAddress> IpAddress::parse_numeric_ipv4(std::string_view text) {
  if (text.empty() || text.back() == '.') return std::nullopt;  // any length: leading zeros count for nothing
  std::vector<std::uint64_t> parts;
  while (!text.empty()) {
    std::size_t end = text.find('.');
    std::string_view part = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    if (part.empty() || parts.size() == 4) return std::nullopt;
    int base = 10;
    if (part.size() > 1 && part[0] == '0' && (part[1] == 'x' || part[1] == 'X')) {
      base = 16;
      part.remove_prefix(2);
      if (part.empty()) return std::nullopt;  // glibc's inet_aton refuses a bare "0x"
    } else if (part.size() > 1 && part[0] == '0') {
      base = 8;
      part.remove_prefix(1);
    }
    std::uint64_t value = 0;
    auto [ptr, ec] = std::from_chars(part.data(), part.data() + part.size(), value, base);
    if (ec != std::errc() || ptr != part.data() + part.size() || value > 0xffffffffULL) return std::nullopt;
    parts.push_back(value);
  }
  if (parts.empty()) return std::nullopt;
  // All parts but the last are one byte; the last fills what is left.
  std::uint64_t address = 0;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    if (parts[i] > 0xff) return std::nullopt;
    address |= parts[i] << (8 * (3 - i));
  }
  const std::size_t left_bits = 8 * (4 - (parts.size() - 1));
  if (left_bits < 64 && parts.back() >= (std::uint64_t{1} << left_bits)) return std::nullopt;
  address |= parts.back();
  return make_ipv4(static_cast<std::uint8_t>(address >> 24), static_cast<std::uint8_t>(address >> 16),
            static_cast<std::uint8_t>(address >> 8), static_cast<std::uint8_t>(address));
}

IpAddress IpAddress::embedded_ipv4() const {
  if (v4) return *this;
  const bool mapped = all_zero(*this, 0, 10) && bytes[10] == 0xff && bytes[11] == 0xff;
  const bool compatible = all_zero(*this, 0, 12) && !all_zero(*this, 12, 15);  // not :: or ::1
  const bool nat64 = starts_with_bytes(*this, {0x00, 0x64, 0xff, 0x9b}) && all_zero(*this, 4, 12);
  if (!mapped && !compatible && !nat64) return *this;
  return make_ipv4(bytes[12], bytes[13], bytes[14], bytes[15]);
}

bool IpAddress::is_loopback() const {
  if (v4) return bytes[0] == 127;
  if (all_zero(*this, 0, 15) && bytes[15] == 1) return true;  // ::1
  return all_zero(*this, 0, 10) && bytes[10] == 0xff && bytes[11] == 0xff && bytes[12] == 127;
}

std::string IpAddress::to_string() const {
  char out[INET6_ADDRSTRLEN] = {};
  inet_ntop(v4 ? AF_INET : AF_INET6, bytes.data(), out, sizeof out);
  return out;
}

Result<Cidr> Cidr::parse(std::string_view text) {
  const std::string original(text);
  auto fail = [&] { return Error::invalid("upstream-range", "not an address range (CIDR): " + original); };
  std::optional<int> given_prefix;
  if (auto slash = text.find('/'); slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    int value = 0;
    auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
    if (digits.empty() || digits[0] == '-' || ec != std::errc() || ptr != digits.data() + digits.size()) return fail();
    given_prefix = value;
    text = text.substr(0, slash);
  }
  auto ip = IpAddress::parse(text);
  if (!ip) return fail();
  const int width = ip->v4 ? 32 : 128;
  const int prefix = given_prefix.value_or(width);
  if (prefix > width) return fail();
  Cidr cidr{*ip, prefix};
  for (int bit = prefix; bit < width; ++bit) {
    cidr.base.bytes[static_cast<std::size_t>(bit / 8)] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
  }
  return cidr;
}

bool Cidr::contains(const IpAddress& address) const {
  if (address.v4 != base.v4) return false;
  for (int bit = 0; bit < prefix; ++bit) {
    const auto i = static_cast<std::size_t>(bit / 8);
    const auto mask = static_cast<std::uint8_t>(0x80u >> (bit % 8));
    if ((address.bytes[i] & mask) != (base.bytes[i] & mask)) return false;
  }
  return true;
}

std::string Cidr::to_string() const { return base.to_string() + "/" + std::to_string(prefix); }

UpstreamAddressPolicy::UpstreamAddressPolicy(std::vector<Cidr> allow, std::vector<Cidr> deny,
                                             std::vector<Endpoint> own)
    : allow_(std::move(allow)), deny_(std::move(deny)), own_(std::move(own)) {}

Status UpstreamAddressPolicy::check(const IpAddress& given, std::optional<std::uint16_t> port) const {
  // An IPv6 spelling of an IPv4 address is judged as that IPv4 address.
  const IpAddress address = given.embedded_ipv4();
  auto in = [&](const std::vector<Cidr>& ranges) {
    return std::any_of(ranges.begin(), ranges.end(),
                       [&](const Cidr& c) { return c.contains(address) || c.contains(given); });
  };
  const std::string shown = given.to_string();
  if (in(deny_)) {
    return Error::invalid("uri", "uri reaches " + shown + ", which the operator closed (--deny-upstream)");
  }
  // Calling itself would loop: the service's own endpoints stay closed whatever is allowed.
  const bool own = port && std::any_of(own_.begin(), own_.end(), [&](const Endpoint& e) {
    return e.port == *port && (e.address == address || e.address == given);
  });
  if (own) return Error::invalid("uri", "uri reaches " + shown + ":" + std::to_string(*port) + ", the service itself");
  if (in(allow_)) return ok_status();
  for (const ClosedRange& closed : closed_ranges()) {
    if (closed.range.contains(address)) {
      return Error::invalid("uri", "uri reaches " + shown + ", " + closed.what +
                                       ", which exports may not reach unless the operator opens it (--allow-upstream)");
    }
  }
  return ok_status();
}

std::optional<IpAddress> address_without_dns(std::string_view host) {
  if (auto ip = IpAddress::parse(host)) return ip;
  if (auto ip = IpAddress::parse_numeric_ipv4(host)) return ip;
  std::string lower(host);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (!lower.empty() && lower.back() == '.') lower.pop_back();  // "localhost." is localhost
  constexpr std::string_view kLocalhost = "localhost";
  if (lower == kLocalhost || (lower.size() > kLocalhost.size() + 1 && lower.ends_with(".localhost"))) {
    return IpAddress::parse("127.0.0.1");
  }
  return std::nullopt;
}

std::optional<Status> UpstreamAddressPolicy::check_without_dns(std::string_view host,
                                                               std::optional<std::uint16_t> port) const {
  if (auto ip = address_without_dns(host)) return check(*ip, port);
  return std::nullopt;
}

}  // namespace membraned::core
