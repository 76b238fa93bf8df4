#include "api/grant_rates.hpp"

#include <algorithm>

namespace membraned::api {

std::optional<std::uint32_t> GrantRates::admit(const std::vector<storage::ChainGrant>& chain,
                                               core::RateWindow::Clock::time_point now) {
  std::lock_guard lock(mutex_);
  std::optional<core::RateWindow::Clock::duration> longest;
  for (const auto& grant : chain) {
    if (!grant.rate_limit) continue;
    auto& window = windows_.try_emplace(grant.row, *grant.rate_limit).first->second;
    if (auto wait = window.wait(now)) longest = std::max(longest.value_or(*wait), *wait);
  }
  if (longest) return core::retry_after_seconds(*longest);
  for (const auto& grant : chain) {
    if (grant.rate_limit) windows_.at(grant.row).record(now);
  }
  return std::nullopt;
}

}  // namespace membraned::api
