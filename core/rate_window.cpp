#include "core/rate_window.hpp"

#include <algorithm>
#include <limits>

namespace membraned::core {

// A limit of 0 requests (which parse_grant_limits never gives) is taken as 1: the ring needs a slot.
RateWindow::RateWindow(RateLimit limit)
    : requests_(std::max<std::size_t>(limit.requests, 1)), window_(std::chrono::seconds(limit.per_seconds)) {}

std::optional<RateWindow::Clock::duration> RateWindow::wait(Clock::time_point now) const {
  if (!full()) return std::nullopt;
  const Clock::time_point admitted_from = oldest() + window_;
  if (now >= admitted_from) return std::nullopt;
  return admitted_from - now;
}

void RateWindow::record(Clock::time_point now) {
  if (!full()) {
    // Grown by hand, doubling up to N: a vector left to itself could reserve beyond N.
    if (times_.size() == times_.capacity()) {
      times_.reserve(std::min(requests_, std::max<std::size_t>(1, 2 * times_.size())));
    }
    times_.push_back(now);
    return;
  }
  times_[next_] = now;
  next_ = (next_ + 1) % requests_;
}

std::uint32_t retry_after_seconds(RateWindow::Clock::duration wait) {
  const std::int64_t seconds = std::chrono::ceil<std::chrono::seconds>(wait).count();
  constexpr std::int64_t kLargest = std::numeric_limits<std::uint32_t>::max();
  return static_cast<std::uint32_t>(std::clamp<std::int64_t>(seconds, 1, kLargest));
}

}  // namespace membraned::core
