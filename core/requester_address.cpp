#include "core/requester_address.hpp"

#include <algorithm>

namespace membraned::core {

namespace {

bool is_trusted(const IpAddress& address, const std::vector<Cidr>& trusted) {
  const IpAddress plain = address.embedded_ipv4();
  return std::any_of(trusted.begin(), trusted.end(),
                     [&](const Cidr& range) { return range.contains(address) || range.contains(plain); });
}

std::string_view trimmed(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

IpAddress requester_address(const IpAddress& peer, std::string_view forwarded_for, const std::vector<Cidr>& trusted) {
  IpAddress requester = peer;
  while (is_trusted(requester, trusted) && !forwarded_for.empty()) {
    const std::size_t comma = forwarded_for.rfind(',');
    const std::string_view entry = trimmed(comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1));
    forwarded_for = comma == std::string_view::npos ? std::string_view() : forwarded_for.substr(0, comma);
    auto named = IpAddress::parse(entry);
    if (!named) break;
    requester = *named;
  }
  return requester;
}

}  // namespace membraned::core
