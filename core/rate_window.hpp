// A grant's rateLimit enforced exactly: at most N uses in any window of S seconds, sliding (a
// use is measured against the N uses before it, not against a fixed calendar of windows). Pure:
// the caller passes the time (steady_clock: only intervals matter) and holds any lock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/grant_limits.hpp"

namespace membraned::core {

class RateWindow {
 public:
  using Clock = std::chrono::steady_clock;

  explicit RateWindow(RateLimit limit);

  // nullopt: a use at `now` is admitted (fewer than N uses in the S seconds up to it); otherwise
  // how long until one would be (when the oldest of the last N is S old).
  std::optional<Clock::duration> wait(Clock::time_point now) const;
  // Counts a use at `now`; call it for the uses wait() admitted. Times must not go backwards.
  void record(Clock::time_point now);

  // How many use times there is room for: grows with the uses recorded, up to N, never beyond.
  std::size_t capacity() const { return times_.capacity(); }

 private:
  bool full() const { return times_.size() == requests_; }
  Clock::time_point oldest() const { return times_[next_]; }

  std::size_t requests_;
  Clock::duration window_;
  // The times of the last uses, at most N: in order until it is full, then a ring whose oldest
  // entry, the next to be overwritten, is at next_.
  std::vector<Clock::time_point> times_;
  std::size_t next_ = 0;
};

// The whole seconds of a Retry-After header for `wait`: rounded up, at least 1.
std::uint32_t retry_after_seconds(RateWindow::Clock::duration wait);

}  // namespace membraned::core
