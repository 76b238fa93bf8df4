// contract §9: the refresh rules of one credentials cache, driven by a clock the test moves and a
// fetch the test completes by hand (the real sources are exercised over sockets by
// tests/integration/test_credentials.py).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "server/credentials_cache.hpp"

namespace membraned::server {
namespace {

using namespace std::chrono_literals;
using time_point = std::chrono::system_clock::time_point;

const time_point kStart = time_point(std::chrono::sys_days(std::chrono::year(2026) / 11 / 25));

struct Harness {
  time_point now = kStart;
  std::vector<CredentialsCallback> pending;  // fetches started, not yet completed
  std::vector<std::string> log;
  CredentialsCache cache{[this](CredentialsCallback done) { pending.push_back(std::move(done)); },
                         CredentialsTiming{300s, 15s, 1000ms},
                         [this](const std::string& line) { log.push_back(line); }, [this] { return now; }};

  // Asks for credentials; the answer, if it came at once.
  std::optional<CredentialsResult> ask(std::vector<CredentialsResult>* later = nullptr) {
    // The callback may outlive this call (it then goes to `later`).
    struct Answer {
      bool returned = false;
      std::optional<CredentialsResult> got;
    };
    auto answer = std::make_shared<Answer>();
    cache.get([answer, later](CredentialsResult r) {
      if (!answer->returned) {
        answer->got = std::move(r);
      } else {
        later->push_back(std::move(r));
      }
    });
    answer->returned = true;
    return answer->got;
  }

  void complete(CredentialsResult result) {
    ASSERT_FALSE(pending.empty());
    auto done = std::move(pending.front());
    pending.erase(pending.begin());
    done(std::move(result));
  }
};

CredentialsPtr temporary(std::string key, time_point expiration) {
  return std::make_shared<const core::AwsCredentials>(
      core::AwsCredentials{std::move(key), "secret", std::string("token"), expiration});
}

TEST(CredentialsCache, ConcurrentWaitersShareOneFetch) {
  Harness h;
  std::vector<CredentialsResult> later;
  for (int i = 0; i < 50; ++i) EXPECT_FALSE(h.ask(&later));
  ASSERT_EQ(h.pending.size(), 1u);
  EXPECT_EQ(h.cache.fetches(), 1u);
  h.complete(temporary("ASIA1", kStart + 1h));
  ASSERT_EQ(later.size(), 50u);
  for (auto& r : later) {
    ASSERT_TRUE(r);
    EXPECT_EQ((*r)->access_key_id, "ASIA1");
  }
}

// A server that stops with a fetch still out lets go of the requests waiting for it (what they
// hold, a requester's connection, must go while the I/O it belongs to is still there), without
// answering them; a later fetch's answer reaches nobody of them.
TEST(CredentialsCache, AbandonedWaitersAreReleasedUnanswered) {
  Harness h;
  auto held = std::make_shared<int>(0);
  int answered = 0;
  for (int i = 0; i < 3; ++i) h.cache.get([held, &answered](CredentialsResult) { ++answered; });
  EXPECT_EQ(held.use_count(), 4);
  h.cache.abandon_waiting();
  EXPECT_EQ(held.use_count(), 1);
  h.complete(temporary("ASIA1", kStart + 1h));
  EXPECT_EQ(answered, 0);
}

TEST(CredentialsCache, FreshCredentialsAreServedWithoutFetching) {
  Harness h;
  std::vector<CredentialsResult> later;
  h.ask(&later);
  h.complete(temporary("ASIA1", kStart + 1h));
  h.now = kStart + 54min;  // 6 minutes left: still fresh
  auto r = h.ask();
  ASSERT_TRUE(r && *r);
  EXPECT_EQ((**r)->access_key_id, "ASIA1");
  EXPECT_EQ(h.cache.fetches(), 1u);
}

TEST(CredentialsCache, RefreshWindowServesTheOldOnesAndRefreshesOnce) {
  Harness h;
  std::vector<CredentialsResult> later;
  h.ask(&later);
  h.complete(temporary("ASIA1", kStart + 1h));
  h.now = kStart + 56min;  // 4 minutes left: in the window, still usable
  for (int i = 0; i < 20; ++i) {
    auto r = h.ask();
    ASSERT_TRUE(r && *r) << "no request waits while usable credentials exist";
    EXPECT_EQ((**r)->access_key_id, "ASIA1");
  }
  EXPECT_EQ(h.cache.fetches(), 2u) << "one background refresh for twenty requests";
  h.complete(temporary("ASIA2", kStart + 2h));
  auto r = h.ask();
  EXPECT_EQ((**r)->access_key_id, "ASIA2");
  EXPECT_EQ(h.cache.fetches(), 2u);
}

TEST(CredentialsCache, ASourceAnsweringCredentialsInsideTheWindowIsNotAskedAgainAtOnce) {
  // IMDS hands out the same credentials until shortly before they expire: a refresh can bring
  // back credentials that are already inside the window. No request may then start another
  // refresh before the minimum interval.
  Harness h;
  std::vector<CredentialsResult> later;
  h.ask(&later);
  h.complete(temporary("ASIA1", kStart + 4min));  // inside the 5-minute window from the start
  for (int i = 0; i < 10; ++i) {
    auto r = h.ask();
    ASSERT_TRUE(r && *r);
  }
  EXPECT_EQ(h.cache.fetches(), 1u);
  h.now += 5s;
  h.ask();
  EXPECT_EQ(h.cache.fetches(), 2u);
  h.complete(temporary("ASIA1", kStart + 4min));  // the same again
  h.now += 1s;
  h.ask();
  EXPECT_EQ(h.cache.fetches(), 2u);
}

TEST(CredentialsCache, FailedRefreshKeepsUsableCredentialsAndLogs) {
  Harness h;
  std::vector<CredentialsResult> later;
  h.ask(&later);
  h.complete(temporary("ASIA1", kStart + 1h));
  h.now = kStart + 56min;
  h.ask();
  h.complete(core::Error::unavailable("STS could not be reached"));
  ASSERT_EQ(h.log.size(), 1u);
  EXPECT_NE(h.log[0].find("STS could not be reached"), std::string::npos);
  EXPECT_NE(h.log[0].find("kept"), std::string::npos);
  // Within the retry pause nothing is sent; the old credentials keep serving.
  auto r = h.ask();
  EXPECT_EQ((**r)->access_key_id, "ASIA1");
  EXPECT_EQ(h.cache.fetches(), 2u);
  // After it, the next request tries again.
  h.now += 2s;
  r = h.ask();
  EXPECT_EQ((**r)->access_key_id, "ASIA1");
  EXPECT_EQ(h.cache.fetches(), 3u);
}

TEST(CredentialsCache, NothingUsableIsAnErrorThenRecovery) {
  Harness h;
  std::vector<CredentialsResult> later;
  h.ask(&later);
  h.complete(core::Error::unavailable("the instance metadata service could not be reached"));
  ASSERT_EQ(later.size(), 1u);
  ASSERT_FALSE(later[0]);
  EXPECT_NE(later[0].error().message.find("instance metadata"), std::string::npos);
  // During the pause the failure is answered at once, without a call.
  auto r = h.ask();
  ASSERT_TRUE(r);
  EXPECT_FALSE(*r);
  EXPECT_EQ(h.cache.fetches(), 1u);
  // The source comes back.
  h.now += 2s;
  later.clear();
  EXPECT_FALSE(h.ask(&later));
  h.complete(temporary("ASIA9", h.now + 6h));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ((*later[0])->access_key_id, "ASIA9");
}

TEST(CredentialsCache, ExpiredCredentialsAreNeverHandedOut) {
  Harness h;
  std::vector<CredentialsResult> later;
  h.ask(&later);
  h.complete(temporary("ASIA1", kStart + 1h));
  h.now = kStart + 1h - 10s;  // inside the 15 s margin: not usable any more
  later.clear();
  EXPECT_FALSE(h.ask(&later)) << "the request waits for new credentials";
  h.complete(core::Error::unavailable("STS down"));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_FALSE(later[0]);
  EXPECT_NE(h.log.back().find("no valid credentials"), std::string::npos);
}

TEST(CredentialsCache, AlreadyExpiredAnswersCountAsFailures) {
  Harness h;
  std::vector<CredentialsResult> later;
  h.ask(&later);
  h.complete(temporary("ASIA1", kStart + 5s));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_FALSE(later[0]);
}

TEST(CredentialsCache, CredentialsWithoutExpirationAreKept) {
  Harness h;
  std::vector<CredentialsResult> later;
  h.ask(&later);
  h.complete(std::make_shared<const core::AwsCredentials>(core::AwsCredentials{"AKIA1", "s", std::nullopt, std::nullopt}));
  h.now += 24h * 365;
  auto r = h.ask();
  EXPECT_EQ((**r)->access_key_id, "AKIA1");
  EXPECT_EQ(h.cache.fetches(), 1u);
}

TEST(CredentialsCache, ThreadsAskingTogetherStartOneFetch) {
  // The real clock and threads: a fetch completed from another thread, as the server does.
  std::atomic<int> fetches{0};
  std::vector<std::thread> completers;
  std::mutex m;
  CredentialsCache cache(
      [&](CredentialsCallback done) {
        ++fetches;
        std::lock_guard lock(m);
        completers.emplace_back([done = std::move(done)] {
          std::this_thread::sleep_for(20ms);
          done(temporary("ASIAT", std::chrono::system_clock::now() + 1h));
        });
      },
      CredentialsTiming{}, nullptr);
  std::atomic<int> answered{0};
  std::vector<std::thread> askers;
  for (int t = 0; t < 8; ++t) {
    askers.emplace_back([&] {
      for (int i = 0; i < 100; ++i) {
        cache.get([&](CredentialsResult r) {
          if (r && (*r)->access_key_id == "ASIAT") ++answered;
        });
      }
    });
  }
  for (auto& t : askers) t.join();
  {
    std::lock_guard lock(m);
    for (auto& t : completers) t.join();
  }
  EXPECT_EQ(fetches.load(), 1);
  EXPECT_EQ(answered.load(), 800);
}

}  // namespace
}  // namespace membraned::server
