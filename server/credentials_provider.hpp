// contract §9: the credentials an export that names an --aws-config profile signs with. Each
// profile's chain (core/aws_config.hpp) is walked step by step:
//   - static keys in the file, and the service's environment (AWS_ACCESS_KEY_ID,
//     AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, read at each use so a rotated environment is
//     seen) need no network and no cache;
//   - the EC2 instance role (IMDSv2), the container role (ECS) and every AssumeRole through STS
//     are fetched over HTTP and kept in one CredentialsCache per source, so profiles that share
//     a source (two roles assumed from the instance role) share its cache and its refreshes.
// HTTP goes through the function the server supplies (asynchronous, bounded by a timeout): no
// thread here ever waits on the network, and there is no Asio in this file.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "core/aws_config.hpp"
#include "core/aws_credentials.hpp"
#include "core/credential_endpoints.hpp"
#include "core/result.hpp"
#include "server/credentials_cache.hpp"

namespace membraned::server {

struct CredentialsHttpAnswer {
  unsigned status = 0;
  std::string body;
};
using CredentialsHttpResult = core::Result<CredentialsHttpAnswer>;
// Sends one call and reads the whole answer (any status), at most `max_body` bytes of body, all
// within `timeout`; `done` runs exactly once. A transport failure is an Error whose message says
// what failed (never a header value: the calls carry tokens).
using CredentialsHttp = std::function<void(core::CredentialsCall call, std::chrono::milliseconds timeout,
                                           std::size_t max_body, std::function<void(CredentialsHttpResult)> done)>;

// Each call to a credentials source has this long (the IMDSv2 sequence is three calls).
inline constexpr std::chrono::milliseconds kMetadataCallTimeout{5000};
inline constexpr std::chrono::milliseconds kStsCallTimeout{10000};
inline constexpr std::size_t kMaxMetadataAnswer = 64 * 1024;

class CredentialsProvider {
 public:
  // `config` may be null (no --aws-config: every profile is unavailable); it must outlive this.
  CredentialsProvider(const core::AwsConfig* config, core::EnvLookup env, CredentialsHttp http,
                      std::function<void(const std::string&)> log, CredentialsTiming timing = {});
  CredentialsProvider(const CredentialsProvider&) = delete;
  CredentialsProvider& operator=(const CredentialsProvider&) = delete;

  // The credentials to sign with for `profile`, or an unavailable error (the invocation answers
  // 502) whose message names the profile and nothing else; what failed is logged. `done` runs exactly once,
  // at once when the credentials are at hand, else from the thread that completes the fetch.
  void get(std::string_view profile, CredentialsCallback done);

  // Calls made to STS so far (every AssumeRole sent), for tests and metrics.
  std::size_t sts_calls() const { return sts_calls_.load(); }

  // Every cache forgets the requests waiting for it (see CredentialsCache::abandon_waiting).
  void abandon_waiting();

 private:
  // The credentials after the base and the first `roles` AssumeRole steps of `chain`.
  void obtain(const core::CredentialChain& chain, std::size_t roles, CredentialsCallback done);
  CredentialsCache& cache(const std::string& key, const std::string& description, CredentialsFetch fetch);
  void fetch_instance_role(CredentialsCallback done);
  void fetch_container_role(CredentialsCallback done);
  void assume_role(const core::AssumeRoleStep& step, const core::AwsCredentials& source, CredentialsCallback done);

  const core::AwsConfig* config_;
  core::EnvLookup env_;
  CredentialsHttp http_;
  std::function<void(const std::string&)> log_;
  CredentialsTiming timing_;
  std::map<std::string, core::CredentialChain, std::less<>> chains_;  // every loaded profile's
  std::map<std::string, CredentialsPtr, std::less<>> static_keys_;    // by profile, made once

  std::mutex caches_mutex_;
  std::map<std::string, std::unique_ptr<CredentialsCache>> caches_;  // by source, made on first use
  std::atomic<std::size_t> sts_calls_{0};
};

}  // namespace membraned::server
