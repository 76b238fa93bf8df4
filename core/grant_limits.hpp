// Grants that end by themselves: the five optional fields an export body may carry beside its
// configuration (label, expiresAt, maxUses, rateLimit, allowFrom), parsed into GrantLimits; how
// the 201 answer reports them; how a re-export's limits combine with its parent's; and whether a
// requester's address is admitted. Pure: the current time is passed in.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/address_policy.hpp"
#include "core/result.hpp"

namespace membraned::core {

// The keys of an export body that belong to the grant rather than to the export's configuration.
inline constexpr std::array<std::string_view, 5> kGrantLimitFields = {"label", "expiresAt", "maxUses",
                                                                      "rateLimit", "allowFrom"};

inline constexpr std::size_t kMaxLabelCodePoints = 256;
// 10^15: far beyond any count a grant is meant for, and exact as a JavaScript number (< 2^53),
// so every client reads back what it sent.
inline constexpr std::uint64_t kLargestMaxUses = 1'000'000'000'000'000;
inline constexpr std::uint32_t kLargestRateRequests = 1'000'000;
inline constexpr std::uint32_t kLargestRateWindowSeconds = 86'400;  // a day
inline constexpr std::size_t kMaxAllowFromEntries = 64;

// At most `requests` uses in any window of `per_seconds` seconds.
struct RateLimit {
  std::uint32_t requests = 0;
  std::uint32_t per_seconds = 0;

  bool operator==(const RateLimit&) const = default;
};

struct GrantLimits {
  std::optional<std::string> label;  // the owner's name for the grant
  // After it, the grant answers 401. Kept to the millisecond: the precision the answer reports.
  std::optional<std::chrono::system_clock::time_point> expires_at;
  std::optional<std::uint64_t> max_uses;
  std::optional<RateLimit> rate_limit;
  std::vector<Cidr> allow_from;  // empty: any address

  // Whether each use has to be counted (maxUses or rateLimit).
  bool limits_use() const { return max_uses.has_value() || rate_limit.has_value(); }
  bool operator==(const GrantLimits&) const = default;
};

// The grant fields of an export body (a JSON object; other keys are ignored), each optional:
// - label: a string of 1 to 256 code points of valid UTF-8, without control characters (C0,
//   DEL, C1);
// - expiresAt: an ISO 8601 / RFC 3339 date-time with a zone (core::parse_iso8601, so "+0200"
//   is read like "+02:00"), strictly after `now` once cut to the millisecond;
// - maxUses: a JSON integer from 1 to kLargestMaxUses (not a float, a string or a boolean);
// - rateLimit: {"requests": 1..1000000, "perSeconds": 1..86400}, integers, no other key;
// - allowFrom: 1 to 64 CIDR strings (IPv4 or IPv6, a lone address is a /32 or /128), each
//   parsed by Cidr::parse (so kept masked to its prefix).
// Errors are invalid_input naming the field ("rateLimit.perSeconds", "allowFrom[2]").
Result<GrantLimits> parse_grant_limits(const nlohmann::json& body, std::chrono::system_clock::time_point now);

// The fields as the 201 answer reports them, absent ones omitted: label, expiresAt (format_rfc3339),
// maxUses, rateLimit {requests, perSeconds}, allowFrom (canonical CIDR strings). Parses back to
// the same value while expiresAt is in the future.
nlohmann::json grant_limits_json(const GrantLimits& limits);

// The limits a re-export lives under, from its parent's effective limits and its own, as the 201
// answer reports them:
// - label: its own only;
// - expiresAt: the earlier one;
// - maxUses: the smaller one; rateLimit: the one allowing fewer uses per second on average
//   (requests / perSeconds), the one with fewer requests on a tie. The store counts and enforces
//   every grant of the chain on its own, so this is what the holder can count on, for display;
// - allowFrom: its own list if it has one, else the parent's. Every grant of the chain checks its
//   own list, so the addresses admitted are those in all of them.
GrantLimits narrowed(const GrantLimits& parent_effective, const GrantLimits& own);

// Whether a requester at `address` may use a grant with this allowFrom list (empty: anyone). An
// IPv4 peer and its IPv4-mapped IPv6 form (::ffff:a.b.c.d, as a dual-stack socket reports it)
// are the same peer, admitted by a range of either family that holds either form.
bool admits_address(const std::vector<Cidr>& allow_from, const IpAddress& address);

}  // namespace membraned::core
