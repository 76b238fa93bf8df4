// The rate windows of this instance's grants (contract §11: rate limits are per instance).
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <vector>

#include "core/rate_window.hpp"
#include "storage/store.hpp"

namespace membraned::api {

class GrantRates {
 public:
  // One use of every rate-limited grant of `chain` at `now`: nullopt when each admits it (then
  // it is counted in all of them), else the whole seconds until all would (none counted).
  std::optional<std::uint32_t> admit(const std::vector<storage::ChainGrant>& chain,
                                     core::RateWindow::Clock::time_point now);

 private:
  std::mutex mutex_;
  std::unordered_map<storage::CapabilityRow, core::RateWindow> windows_;
};

}  // namespace membraned::api
