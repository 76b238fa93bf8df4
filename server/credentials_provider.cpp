#include "server/credentials_provider.hpp"

#include <utility>
#include <variant>

#include "core/sts.hpp"

namespace membraned::server {
namespace {

// The cache of each source is keyed by the steps that produce it, so two profiles asking for
// the same role the same way share one cache, while the same role reached from another source
// (or STS region) does not.
std::string base_key(const core::BaseStep& base) {
  switch (base.kind) {
    case core::BaseKind::static_keys:
      return "static:" + base.profile;
    case core::BaseKind::environment:
      return "environment";
    case core::BaseKind::imds:
      return "imds";
    case core::BaseKind::ecs:
      return "ecs";
  }
  return "unknown";
}

std::string step_key(const core::CredentialChain& chain, std::size_t roles) {
  std::string key = base_key(chain.base);
  for (std::size_t i = 0; i < roles; ++i) {
    const auto& step = chain.assume_roles[i];
    key += " > " + step.profile + "@" + step.region.value_or("global");
  }
  return key;
}

CredentialsPtr share(core::AwsCredentials credentials) {
  return std::make_shared<const core::AwsCredentials>(std::move(credentials));
}

core::Error unavailable(std::string message) { return core::Error::unavailable(std::move(message)); }

// A transport failure or an unexpected status, told the same way for every source.
std::optional<core::Error> exchange_failure(const CredentialsHttpResult& answer, const std::string& source,
                                            const std::string& call) {
  if (!answer) return unavailable(source + " could not be reached: " + answer.error().message);
  if (answer->status != 200) {
    return unavailable(source + " answered HTTP " + std::to_string(answer->status) + " to " + call);
  }
  return std::nullopt;
}

// The last call of a metadata source: its JSON answer, read by `parse`, is the credentials.
void deliver(const CredentialsHttpResult& answer, const std::string& source,
                                     const std::string& what,
                                     core::Result<core::AwsCredentials> (*parse)(std::string_view),
                                     const CredentialsCallback& done) {
  if (auto failure = exchange_failure(answer, source, what)) return done(*failure);
  auto credentials = parse(answer->body);
  if (!credentials) return done(unavailable(source + ": " + credentials.error().message));
  done(share(std::move(*credentials)));
}

// "GET /path" without the query (which could carry something private).
std::string describe(const core::CredentialsCall& call) {
  return call.method + " " + call.target.substr(0, call.target.find('?'));
}

}  // namespace

CredentialsProvider::CredentialsProvider(const core::AwsConfig* config, core::EnvLookup env, CredentialsHttp http,
                                         std::function<void(const std::string&)> log, CredentialsTiming timing)
    : config_(config), env_(std::move(env)), http_(std::move(http)), log_(std::move(log)), timing_(timing) {
  if (!config_) return;
  for (const std::string& name : config_->profile_names()) {
    auto chain = config_->chain(name);
    if (!chain) continue;
    if (chain->base.kind == core::BaseKind::static_keys && chain->base.credentials) {
      static_keys_.emplace(chain->base.profile, share(*chain->base.credentials));
    }
    chains_.emplace(name, std::move(*chain));
  }
}

// The requester (a capability holder: a third party) learns which profile failed, not why: the
// reason names the operator's endpoints, roles and accounts, so it goes to the log.
void CredentialsProvider::get(std::string_view profile, CredentialsCallback done) {
  const std::string name(profile);
  auto refuse = [this, name](const std::string& why) {
    if (log_) log_("credentials profile \"" + name + "\": no valid credentials: " + why);
    return unavailable("no valid credentials for profile \"" + name + "\"");
  };
  auto it = chains_.find(profile);
  if (it == chains_.end()) {
    return done(refuse(config_ ? "it is not in --aws-config" : "the service has no --aws-config"));
  }
  const core::CredentialChain& chain = it->second;
  obtain(chain, chain.assume_roles.size(), [refuse, done = std::move(done)](CredentialsResult result) {
    if (result) return done(std::move(result));
    done(refuse(result.error().message));
  });
}

void CredentialsProvider::obtain(const core::CredentialChain& chain, std::size_t roles, CredentialsCallback done) {
  if (roles == 0) {
    switch (chain.base.kind) {
      case core::BaseKind::static_keys: {
        auto it = static_keys_.find(chain.base.profile);
        if (it == static_keys_.end()) return done(unavailable("the keys of profile \"" + chain.base.profile + "\" are missing"));
        return done(it->second);
      }
      case core::BaseKind::environment: {
        // Read at each use: a rotated environment is seen, and nothing is kept.
        auto credentials = core::environment_credentials(env_);
        if (!credentials) return done(unavailable("the environment: " + credentials.error().message));
        return done(share(std::move(*credentials)));
      }
      case core::BaseKind::imds:
        return cache("imds", "the instance role (IMDSv2)", [this](CredentialsCallback fetched) {
                 fetch_instance_role(std::move(fetched));
               }).get(std::move(done));
      case core::BaseKind::ecs:
        return cache("ecs", "the container role", [this](CredentialsCallback fetched) {
                 fetch_container_role(std::move(fetched));
               }).get(std::move(done));
    }
    return done(unavailable("unknown credential source"));
  }
  const core::AssumeRoleStep& step = chain.assume_roles[roles - 1];
  auto fetch = [this, &chain, roles, &step](CredentialsCallback fetched) {
    // The source's credentials first (from their own cache), then AssumeRole with them.
    obtain(chain, roles - 1, [this, &step, fetched = std::move(fetched)](CredentialsResult source) mutable {
      if (!source) return fetched(source.error());
      assume_role(step, **source, std::move(fetched));
    });
  };
  cache(step_key(chain, roles), "the role of profile \"" + step.profile + "\"", std::move(fetch)).get(std::move(done));
}

CredentialsCache& CredentialsProvider::cache(const std::string& key, const std::string& description,
                                             CredentialsFetch fetch) {
  std::lock_guard lock(caches_mutex_);
  auto& slot = caches_[key];
  if (!slot) {
    slot = std::make_unique<CredentialsCache>(
        std::move(fetch), timing_,
        [this, description](const std::string& line) {
          if (log_) log_("credentials " + description + ": " + line);
        });
  }
  return *slot;
}

void CredentialsProvider::abandon_waiting() {
  std::lock_guard lock(caches_mutex_);
  for (auto& [key, cache] : caches_) cache->abandon_waiting();
}

void CredentialsProvider::fetch_instance_role(CredentialsCallback done) {
  auto endpoint = core::imds_endpoint(env_);
  if (!endpoint) return done(unavailable(endpoint.error().message));
  const std::string source = "the instance metadata service at " + endpoint->authority;
  // IMDSv2: a session token, the role's name, then its credentials; each call within its own
  // timeout, each answer checked before it goes into the next call.
  auto token_call = core::imds_token_call(*endpoint);
  http_(token_call, kMetadataCallTimeout, kMaxMetadataAnswer,
        [this, endpoint = *endpoint, source, what = describe(token_call), done = std::move(done)](CredentialsHttpResult answer) mutable {
          if (auto failure = exchange_failure(answer, source, what)) return done(*failure);
          auto token = core::parse_imds_token(answer->body);
          if (!token) return done(unavailable(token.error().message));
          auto role_call = core::imds_role_call(endpoint, *token);
          http_(role_call, kMetadataCallTimeout, kMaxMetadataAnswer,
                [this, endpoint, source, what = describe(role_call), token = *token, done = std::move(done)](CredentialsHttpResult listing) mutable {
                  if (auto failure = exchange_failure(listing, source, what)) return done(*failure);
                  auto role = core::parse_imds_role_name(listing->body);
                  if (!role) return done(unavailable(role.error().message));
                  auto credentials_call = core::imds_credentials_call(endpoint, token, *role);
                  http_(credentials_call, kMetadataCallTimeout, kMaxMetadataAnswer,
                        [source, what = describe(credentials_call), done = std::move(done)](CredentialsHttpResult document) {
                          deliver(document, source, what, core::parse_imds_credentials, done);
                        });
                });
        });
}

void CredentialsProvider::fetch_container_role(CredentialsCallback done) {
  auto endpoint = core::container_endpoint(env_);
  if (!endpoint) return done(unavailable(endpoint.error().message));
  const std::string source = "the container credentials endpoint at " + endpoint->target.authority;
  auto call = core::container_credentials_call(*endpoint);
  http_(call, kMetadataCallTimeout, kMaxMetadataAnswer,
        [source, what = describe(call), done = std::move(done)](CredentialsHttpResult answer) {
          deliver(answer, source, what, core::parse_container_credentials, done);
        });
}

void CredentialsProvider::assume_role(const core::AssumeRoleStep& step, const core::AwsCredentials& source,
                                      CredentialsCallback done) {
  auto endpoint = core::select_sts_endpoint(env_, step.region);
  if (!endpoint) return done(unavailable(endpoint.error().message));
  auto request = core::make_assume_role_request(*endpoint, step, source, std::chrono::system_clock::now());
  const std::string what = "STS (" + endpoint->target.authority + ") AssumeRole of " + step.role_arn;
  ++sts_calls_;
  http_(std::move(request), kStsCallTimeout, core::kMaxStsAnswer,
        [what, done = std::move(done)](CredentialsHttpResult answer) {
          if (!answer) return done(unavailable(what + ": STS could not be reached: " + answer.error().message));
          // STS answers an error document with a 4xx or 5xx: read it whatever the status.
          auto parsed = core::parse_assume_role_answer(answer->body);
          if (parsed) {
            if (auto* refused = std::get_if<core::StsServiceError>(&*parsed)) {
              return done(unavailable(what + " was refused: " + refused->describe()));
            }
            if (answer->status == 200) return done(share(std::get<core::AwsCredentials>(std::move(*parsed))));
          }
          if (answer->status != 200) {
            return done(unavailable(what + ": STS answered HTTP " + std::to_string(answer->status)));
          }
          done(unavailable(what + ": " + parsed.error().message));
        });
}

}  // namespace membraned::server
