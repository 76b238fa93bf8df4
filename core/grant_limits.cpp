#include "core/grant_limits.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>

#include "core/encoding.hpp"
#include "core/time.hpp"

namespace membraned::core {
namespace {

using json = nlohmann::json;
using std::chrono::system_clock;

Error bad(std::string field, std::string message) {
  return Error::invalid(std::move(field), std::move(message));
}

// The value of a JSON integer of at least 1 (signed or unsigned in nlohmann's terms); nullopt for
// anything else, floats with an integral value included.
std::optional<std::uint64_t> positive_integer(const json& value) {
  if (value.is_number_unsigned()) {
    const auto v = value.get<std::uint64_t>();
    return v >= 1 ? std::optional(v) : std::nullopt;
  }
  if (value.is_number_integer()) {
    const auto v = value.get<std::int64_t>();
    return v >= 1 ? std::optional(static_cast<std::uint64_t>(v)) : std::nullopt;
  }
  return std::nullopt;
}

// In valid UTF-8, C0 and DEL are single bytes and C1 (U+0080..U+009F) is 0xC2 then 0x80..0x9F.
bool has_control_character(std::string_view utf8) {
  for (std::size_t i = 0; i < utf8.size(); ++i) {
    const auto byte = static_cast<unsigned char>(utf8[i]);
    if (byte < 0x20 || byte == 0x7F) return true;
    if (byte == 0xC2 && i + 1 < utf8.size() && static_cast<unsigned char>(utf8[i + 1]) <= 0x9F) return true;
  }
  return false;
}

// In valid UTF-8, every byte but the continuation bytes (10xxxxxx) starts a code point.
std::size_t code_point_count(std::string_view utf8) {
  return static_cast<std::size_t>(std::count_if(
      utf8.begin(), utf8.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

Result<std::string> parse_label(const json& value) {
  if (!value.is_string()) return bad("label", "label must be a string");
  auto text = value.get<std::string>();
  if (text.empty()) return bad("label", "label must not be empty");
  if (!is_valid_utf8(text)) return bad("label", "label must be valid UTF-8");
  if (code_point_count(text) > kMaxLabelCodePoints) {
    return bad("label", "label must be at most " + std::to_string(kMaxLabelCodePoints) + " characters");
  }
  if (has_control_character(text)) return bad("label", "label must not contain control characters");
  return text;
}

// Cut to the millisecond before the comparison, so that what is kept is what was checked.
Result<system_clock::time_point> parse_expires_at(const json& value, system_clock::time_point now) {
  if (!value.is_string()) return bad("expiresAt", "expiresAt must be a string");
  auto parsed = parse_iso8601(value.get<std::string>(), "expiresAt");
  if (!parsed) return parsed.error();
  const system_clock::time_point expires_at = std::chrono::floor<std::chrono::milliseconds>(*parsed);
  if (expires_at <= now) return bad("expiresAt", "expiresAt must be in the future");
  return expires_at;
}

Result<std::uint64_t> parse_max_uses(const json& value) {
  const auto too_large = [] {
    return bad("maxUses", "maxUses must be at most " + std::to_string(kLargestMaxUses));
  };
  if (auto uses = positive_integer(value)) {
    if (*uses > kLargestMaxUses) return too_large();
    return *uses;
  }
  // An integer too large for 64 bits is read as a float: say what is wrong with it.
  if (value.is_number_float()) {
    const double v = value.get<double>();
    if (v == std::floor(v) && v > static_cast<double>(kLargestMaxUses)) return too_large();
  }
  return bad("maxUses", "maxUses must be a positive integer");
}

// rateLimit.KEY: a required integer from 1 to `largest`.
Result<std::uint32_t> rate_field(const json& object, const char* key, std::uint32_t largest) {
  const std::string field = std::string("rateLimit.") + key;
  auto it = object.find(key);
  if (it == object.end()) return bad(field, field + " is required");
  auto v = positive_integer(*it);
  if (!v || *v > largest) {
    return bad(field, field + " must be an integer from 1 to " + std::to_string(largest));
  }
  return static_cast<std::uint32_t>(*v);
}

Result<RateLimit> parse_rate_limit(const json& value) {
  if (!value.is_object()) return bad("rateLimit", "rateLimit must be an object");
  for (const auto& [key, unused] : value.items()) {
    if (key != "requests" && key != "perSeconds") {
      const std::string field = "rateLimit." + (key.empty() ? std::string("\"\"") : key);
      return bad(field, field + " is not a known field");
    }
  }
  auto requests = rate_field(value, "requests", kLargestRateRequests);
  if (!requests) return requests.error();
  auto per_seconds = rate_field(value, "perSeconds", kLargestRateWindowSeconds);
  if (!per_seconds) return per_seconds.error();
  return RateLimit{*requests, *per_seconds};
}

Result<std::vector<Cidr>> parse_allow_from(const json& value) {
  if (!value.is_array()) return bad("allowFrom", "allowFrom must be an array of CIDR strings");
  if (value.empty()) return bad("allowFrom", "allowFrom must not be empty");
  if (value.size() > kMaxAllowFromEntries) {
    return bad("allowFrom",
               "allowFrom must hold at most " + std::to_string(kMaxAllowFromEntries) + " entries");
  }
  std::vector<Cidr> out;
  for (std::size_t i = 0; i < value.size(); ++i) {
    const std::string field = "allowFrom[" + std::to_string(i) + "]";
    if (!value[i].is_string()) return bad(field, field + " must be a string");
    const auto text = value[i].get<std::string>();
    auto cidr = Cidr::parse(text);
    if (!cidr) return bad(field, field + " is not a CIDR: " + printable_excerpt(text, 64));
    out.push_back(*cidr);
  }
  return out;
}

// The earlier time, the smaller count: whichever is given when only one is.
template <typename T>
std::optional<T> least(const std::optional<T>& a, const std::optional<T>& b) {
  if (a && b) return std::min(*a, *b);
  return a ? a : b;
}

// The rate allowing fewer uses per second on average; on a tie, the smaller burst.
std::optional<RateLimit> tighter(const std::optional<RateLimit>& a, const std::optional<RateLimit>& b) {
  if (!a || !b) return a ? a : b;
  // a.requests / a.per_seconds against b's, cross-multiplied (both factors fit in 32 bits).
  const std::uint64_t a_rate = std::uint64_t{a->requests} * b->per_seconds;
  const std::uint64_t b_rate = std::uint64_t{b->requests} * a->per_seconds;
  if (a_rate != b_rate) return a_rate < b_rate ? a : b;
  return a->requests <= b->requests ? a : b;
}

// The other spelling of the same peer: an IPv4 address and its IPv4-mapped IPv6 form
// (::ffff:a.b.c.d). Only that form: the others IpAddress::embedded_ipv4 sees through (::a.b.c.d,
// 64:ff9b::a.b.c.d) are IPv6 peers of their own, which an IPv4 range must not admit.
std::optional<IpAddress> other_spelling(const IpAddress& address) {
  constexpr std::size_t kMappedPrefix = 12;  // ten zero bytes, then 0xff 0xff
  if (address.v4) {
    IpAddress mapped;
    mapped.v4 = false;
    mapped.bytes[10] = 0xff;
    mapped.bytes[11] = 0xff;
    std::copy_n(address.bytes.begin(), 4, mapped.bytes.begin() + kMappedPrefix);
    return mapped;
  }
  const bool is_mapped =
      std::all_of(address.bytes.begin(), address.bytes.begin() + 10, [](std::uint8_t b) { return b == 0; }) &&
      address.bytes[10] == 0xff && address.bytes[11] == 0xff;
  if (!is_mapped) return std::nullopt;
  IpAddress v4;
  std::copy_n(address.bytes.begin() + kMappedPrefix, 4, v4.bytes.begin());
  return v4;
}

}  // namespace

Result<GrantLimits> parse_grant_limits(const json& body, system_clock::time_point now) {
  if (!body.is_object()) return bad("body", "body must be a JSON object");
  GrantLimits out;
  if (auto it = body.find("label"); it != body.end()) {
    auto label = parse_label(*it);
    if (!label) return label.error();
    out.label = std::move(*label);
  }
  if (auto it = body.find("expiresAt"); it != body.end()) {
    auto expires_at = parse_expires_at(*it, now);
    if (!expires_at) return expires_at.error();
    out.expires_at = *expires_at;
  }
  if (auto it = body.find("maxUses"); it != body.end()) {
    auto max_uses = parse_max_uses(*it);
    if (!max_uses) return max_uses.error();
    out.max_uses = *max_uses;
  }
  if (auto it = body.find("rateLimit"); it != body.end()) {
    auto rate_limit = parse_rate_limit(*it);
    if (!rate_limit) return rate_limit.error();
    out.rate_limit = *rate_limit;
  }
  if (auto it = body.find("allowFrom"); it != body.end()) {
    auto allow_from = parse_allow_from(*it);
    if (!allow_from) return allow_from.error();
    out.allow_from = std::move(*allow_from);
  }
  return out;
}

json grant_limits_json(const GrantLimits& limits) {
  json out = json::object();
  if (limits.label) out["label"] = *limits.label;
  if (limits.expires_at) out["expiresAt"] = format_rfc3339(*limits.expires_at);
  if (limits.max_uses) out["maxUses"] = *limits.max_uses;
  if (limits.rate_limit) {
    out["rateLimit"] = {{"requests", limits.rate_limit->requests},
                        {"perSeconds", limits.rate_limit->per_seconds}};
  }
  if (!limits.allow_from.empty()) {
    json ranges = json::array();
    for (const Cidr& cidr : limits.allow_from) ranges.push_back(cidr.to_string());
    out["allowFrom"] = std::move(ranges);
  }
  return out;
}

GrantLimits narrowed(const GrantLimits& parent_effective, const GrantLimits& own) {
  GrantLimits out;
  out.label = own.label;
  out.expires_at = least(parent_effective.expires_at, own.expires_at);
  out.max_uses = least(parent_effective.max_uses, own.max_uses);
  out.rate_limit = tighter(parent_effective.rate_limit, own.rate_limit);
  out.allow_from = own.allow_from.empty() ? parent_effective.allow_from : own.allow_from;
  return out;
}

bool admits_address(const std::vector<Cidr>& allow_from, const IpAddress& address) {
  if (allow_from.empty()) return true;
  const std::optional<IpAddress> other = other_spelling(address);
  return std::any_of(allow_from.begin(), allow_from.end(), [&](const Cidr& range) {
    return range.contains(address) || (other && range.contains(*other));
  });
}

}  // namespace membraned::core
