#include "server/credentials_cache.hpp"

#include <utility>

namespace membraned::server {

CredentialsCache::CredentialsCache(CredentialsFetch fetch, CredentialsTiming timing,
                                   std::function<void(const std::string&)> log, WallClock clock)
    : fetch_(std::move(fetch)), timing_(timing), log_(std::move(log)), clock_(std::move(clock)) {}

bool CredentialsCache::usable(const core::AwsCredentials& credentials, std::chrono::system_clock::time_point now) const {
  return !credentials.expiration || now + timing_.expiry_margin < *credentials.expiration;
}

bool CredentialsCache::fresh(const core::AwsCredentials& credentials, std::chrono::system_clock::time_point now) const {
  return !credentials.expiration || now + timing_.refresh_ahead < *credentials.expiration;
}

void CredentialsCache::get(CredentialsCallback done) {
  CredentialsResult immediate = core::Error::internal("unset");
  bool answer_now = false;
  bool refresh = false;
  {
    std::lock_guard lock(mutex_);
    const auto now = clock_();
    if (current_ && usable(*current_, now)) {
      immediate = current_;
      answer_now = true;
      // In the refresh window: one background refresh, unless one runs or the last one failed
      // moments ago.
      refresh = !fresh(*current_, now) && !in_flight_ && now >= retry_not_before_;
    } else if (in_flight_) {
      waiting_.push_back(std::move(done));
    } else if (last_failure_ && now < retry_not_before_) {
      immediate = *last_failure_;
      answer_now = true;
    } else {
      waiting_.push_back(std::move(done));
      refresh = true;
    }
    if (refresh) {
      in_flight_ = true;
      ++fetches_;
    }
  }
  // Neither the caller's callback nor the fetch runs under the lock: either may come back here.
  if (answer_now) done(std::move(immediate));
  if (refresh) start_fetch();
}

void CredentialsCache::start_fetch() {
  fetch_([this](CredentialsResult result) { on_fetched(std::move(result)); });
}

void CredentialsCache::on_fetched(CredentialsResult result) {
  std::vector<CredentialsCallback> waiters;
  CredentialsResult answer = core::Error::internal("unset");
  std::optional<std::string> failure_line;
  {
    std::lock_guard lock(mutex_);
    const auto now = clock_();
    in_flight_ = false;
    if (result && !usable(**result, now)) {
      result = core::Error::unavailable("the credentials obtained expire too soon to be used");
    }
    if (result) {
      current_ = *result;
      last_failure_.reset();
      retry_not_before_ = now + timing_.min_refresh_interval;
      answer = current_;
    } else {
      last_failure_ = result.error();
      retry_not_before_ = now + timing_.retry_after_failure;
      const bool kept = current_ && usable(*current_, now);
      failure_line = "refresh failed: " + result.error().message +
                     (kept ? " (still-valid credentials kept)" : " (no valid credentials)");
      if (kept) {
        answer = current_;
      } else {
        answer = result.error();
      }
    }
    waiters.swap(waiting_);
  }
  if (failure_line && log_) log_(*failure_line);
  for (auto& waiter : waiters) waiter(answer);
}

std::size_t CredentialsCache::fetches() const {
  std::lock_guard lock(mutex_);
  return fetches_;
}

void CredentialsCache::abandon_waiting() {
  std::vector<CredentialsCallback> abandoned;
  std::lock_guard lock(mutex_);
  abandoned.swap(waiting_);
}

}  // namespace membraned::server
