// One cache of temporary credentials (contract §9): what one source (the instance role, the
// container role, one assumed role) last gave, refreshed ahead of its expiry with a single fetch
// in flight however many requests wait. No I/O and no Asio here: the fetch is a function the
// provider supplies, and completions may run on any thread.
//
// The rules, in the order a request meets them:
//   - fresh credentials (more than refresh_ahead before expiry) are handed out at once;
//   - credentials in the refresh window are still handed out at once, and the first request to
//     see them starts a refresh in the background;
//   - without usable credentials the request waits for the refresh (starting one if none runs);
//   - a failed refresh keeps what is still usable, is logged, and is not retried before
//     retry_after_failure: meanwhile a request without usable credentials gets that failure at
//     once instead of sending one more call to a source that is down;
//   - a background refresh starts at most once per min_refresh_interval, even when the source
//     keeps answering credentials that are already inside the window (IMDS hands out the same
//     ones until shortly before their expiry) or that live less than refresh_ahead.
// "Usable" stops expiry_margin before the expiration, so a signed request still reaches AWS
// before its credentials lapse.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/aws_credentials.hpp"
#include "core/result.hpp"

namespace membraned::server {

using CredentialsPtr = std::shared_ptr<const core::AwsCredentials>;
using CredentialsResult = core::Result<CredentialsPtr>;
using CredentialsCallback = std::function<void(CredentialsResult)>;
// Starts one fetch; calls its argument exactly once, from any thread, possibly before returning.
using CredentialsFetch = std::function<void(CredentialsCallback)>;
using WallClock = std::function<std::chrono::system_clock::time_point()>;

struct CredentialsTiming {
  std::chrono::seconds refresh_ahead{300};
  std::chrono::seconds expiry_margin{15};
  std::chrono::milliseconds retry_after_failure{1000};
  std::chrono::milliseconds min_refresh_interval{5000};
};

class CredentialsCache {
 public:
  // `log` gets one line per failed refresh (never a secret: fetch errors hold none).
  CredentialsCache(CredentialsFetch fetch, CredentialsTiming timing, std::function<void(const std::string&)> log,
                   WallClock clock = [] { return std::chrono::system_clock::now(); });
  CredentialsCache(const CredentialsCache&) = delete;
  CredentialsCache& operator=(const CredentialsCache&) = delete;

  // `done` runs exactly once: at once (possibly before get returns) or when a refresh ends.
  void get(CredentialsCallback done);

  // Fetches started so far (for tests and metrics).
  std::size_t fetches() const;

  // Forgets the requests waiting for a fetch, without answering them: for a server that stops
  // with a fetch still out, so that what the waiters hold goes while its io_context is there.
  void abandon_waiting();

 private:
  bool usable(const core::AwsCredentials& credentials, std::chrono::system_clock::time_point now) const;
  bool fresh(const core::AwsCredentials& credentials, std::chrono::system_clock::time_point now) const;
  void start_fetch();
  void on_fetched(CredentialsResult result);

  CredentialsFetch fetch_;
  CredentialsTiming timing_;
  std::function<void(const std::string&)> log_;
  WallClock clock_;

  mutable std::mutex mutex_;
  CredentialsPtr current_;                       // the last credentials obtained, if any
  std::optional<core::Error> last_failure_;      // of the last refresh, while it is recent
  std::chrono::system_clock::time_point retry_not_before_{};  // no background refresh before
  bool in_flight_ = false;
  std::vector<CredentialsCallback> waiting_;
  std::size_t fetches_ = 0;
};

}  // namespace membraned::server
