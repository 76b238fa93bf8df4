// core/rate_window: "at most N uses in any window of S seconds", exactly and sliding. Time is a
// fake steady_clock time point moved by the test: no clock is read, nothing sleeps.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "core/grant_limits.hpp"
#include "core/rate_window.hpp"

namespace membraned::core {
namespace {

using namespace std::chrono_literals;
using Clock = RateWindow::Clock;

const Clock::time_point kStart = Clock::time_point{} + 1000h;

// Records a use at `t` if the window admits it; whether it did.
bool use(RateWindow& window, Clock::time_point t) {
  if (window.wait(t)) return false;
  window.record(t);
  return true;
}

TEST(RateWindow, AdmitsNUsesThenRefusesTheNextWithTheTimeLeft) {
  RateWindow window(RateLimit{3, 10});
  EXPECT_EQ(window.wait(kStart), std::nullopt);
  EXPECT_TRUE(use(window, kStart));
  EXPECT_TRUE(use(window, kStart + 1s));
  EXPECT_TRUE(use(window, kStart + 2s));
  EXPECT_EQ(window.wait(kStart + 3s), std::optional<Clock::duration>(7s));
  EXPECT_EQ(window.wait(kStart + 2s), std::optional<Clock::duration>(8s));
}

TEST(RateWindow, AdmittedAgainExactlySSecondsAfterTheFirstUse) {
  RateWindow window(RateLimit{2, 60});
  EXPECT_TRUE(use(window, kStart));
  EXPECT_TRUE(use(window, kStart + 30s));
  EXPECT_EQ(window.wait(kStart + 60s - 1ns), std::optional<Clock::duration>(1ns));
  EXPECT_EQ(window.wait(kStart + 60s), std::nullopt);
  EXPECT_TRUE(use(window, kStart + 60s));
  // The next slot frees when the second use is 60 s old.
  EXPECT_EQ(window.wait(kStart + 61s), std::optional<Clock::duration>(29s));
  EXPECT_TRUE(use(window, kStart + 90s));
}

TEST(RateWindow, SlidesInsteadOfCountingFixedWindows) {
  // 2 per 10 s. Fixed windows [0, 10) and [10, 20) would admit 2 uses at 9 s and 2 more at
  // 10.5 s: 4 within 1.5 s. A sliding window admits the next ones only when those are 10 s old.
  RateWindow window(RateLimit{2, 10});
  EXPECT_TRUE(use(window, kStart + 9s));
  EXPECT_TRUE(use(window, kStart + 9500ms));
  EXPECT_EQ(window.wait(kStart + 10500ms), std::optional<Clock::duration>(8500ms));
  EXPECT_FALSE(use(window, kStart + 18999ms));
  EXPECT_TRUE(use(window, kStart + 19s));
  EXPECT_EQ(window.wait(kStart + 19200ms), std::optional<Clock::duration>(300ms));
  EXPECT_TRUE(use(window, kStart + 19500ms));
  EXPECT_FALSE(use(window, kStart + 28s));
  EXPECT_TRUE(use(window, kStart + 29s));
}

TEST(RateWindow, RefusedAttemptsAreNotCounted) {
  RateWindow window(RateLimit{1, 10});
  EXPECT_TRUE(use(window, kStart));
  for (int i = 1; i < 10; ++i) EXPECT_FALSE(use(window, kStart + std::chrono::seconds(i)));
  EXPECT_TRUE(use(window, kStart + 10s));
}

TEST(RateWindow, OneUseAtATimeEachSSecondsApart) {
  RateWindow window(RateLimit{1, 5});
  EXPECT_TRUE(use(window, kStart));
  EXPECT_EQ(window.wait(kStart), std::optional<Clock::duration>(5s));
  EXPECT_EQ(window.wait(kStart + 4999ms), std::optional<Clock::duration>(1ms));
  EXPECT_TRUE(use(window, kStart + 5s));
  EXPECT_FALSE(use(window, kStart + 9s));
  EXPECT_TRUE(use(window, kStart + 11s));
  EXPECT_EQ(window.wait(kStart + 12s), std::optional<Clock::duration>(4s));
  EXPECT_EQ(window.capacity(), 1u);
}

TEST(RateWindow, TheRingStaysExactAfterWrappingManyTimes) {
  // 3 per 10 s, at full speed for a long while: every use lands exactly 10 s after the use
  // three before it.
  RateWindow window(RateLimit{3, 10});
  Clock::time_point t = kStart;
  std::vector<Clock::time_point> admitted;
  // Bounded, so that a window that never admits fails the test instead of hanging it.
  for (int step = 0; step < 1000 && admitted.size() < 100; ++step) {
    if (auto wait = window.wait(t)) {
      t += *wait;
      continue;
    }
    window.record(t);
    admitted.push_back(t);
    t += 1s;
  }
  ASSERT_EQ(admitted.size(), 100u);
  for (std::size_t i = 3; i < admitted.size(); ++i) {
    EXPECT_EQ(admitted[i] - admitted[i - 3], 10s) << i;
  }
  EXPECT_EQ(window.capacity(), 3u);
}

TEST(RateWindow, MemoryFollowsTheUsesNotTheLimit) {
  RateWindow window(RateLimit{kLargestRateRequests, 60});
  EXPECT_EQ(window.capacity(), 0u);
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(use(window, kStart + std::chrono::milliseconds(i)));
  EXPECT_LE(window.capacity(), 16u);
  EXPECT_GE(window.capacity(), 10u);
}

TEST(RateWindow, MemoryNeverExceedsTheLimit) {
  RateWindow window(RateLimit{5, 1});
  for (int i = 0; i < 100; ++i) window.record(kStart + std::chrono::milliseconds(300 * i));
  EXPECT_EQ(window.capacity(), 5u);
}

TEST(RateWindow, RetryAfterIsWholeSecondsRoundedUpAndAtLeastOne) {
  EXPECT_EQ(retry_after_seconds(0ns), 1u);
  EXPECT_EQ(retry_after_seconds(1ns), 1u);
  EXPECT_EQ(retry_after_seconds(1s), 1u);
  EXPECT_EQ(retry_after_seconds(1s + 1ns), 2u);
  EXPECT_EQ(retry_after_seconds(59500ms), 60u);
  EXPECT_EQ(retry_after_seconds(86400s), 86400u);
  EXPECT_EQ(retry_after_seconds(-5s), 1u);
}

}  // namespace
}  // namespace membraned::core
