// What a grant may say about its own use (contract §11): how long, how often, how fast, from where.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/address_policy.hpp"

namespace membraned::core {

struct RateLimit {
  std::uint32_t requests = 0;
  std::uint32_t per_seconds = 0;
  bool operator==(const RateLimit&) const = default;
};

struct GrantLimits {
  std::optional<std::string> label;
  std::optional<std::chrono::system_clock::time_point> expires_at;
  std::optional<std::uint64_t> max_uses;
  std::optional<RateLimit> rate_limit;
  std::vector<Cidr> allow_from;  // empty: any address
};

}  // namespace membraned::core
