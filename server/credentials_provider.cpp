#include "server/credentials_provider.hpp"

#include <chrono>

namespace membraned::server {

CredentialsProvider::CredentialsProvider(const core::AwsConfig* config, core::EnvLookup env)
    : config_(config), env_(std::move(env)) {}

core::Result<core::AwsCredentials> CredentialsProvider::current(std::string_view profile) const {
  const std::string name(profile);
  auto unavailable = [&](const std::string& why) {
    return core::Error::unavailable("no valid credentials for profile \"" + name + "\": " + why);
  };
  if (!config_) return unavailable("the service has no --aws-config");
  auto chain = config_->chain(profile);
  if (!chain) return unavailable("it is not in --aws-config");
  if (!chain->assume_roles.empty()) return unavailable("assuming a role through STS is not supported yet");
  switch (chain->base.kind) {
    case core::BaseKind::static_keys:
      if (chain->base.credentials) return *chain->base.credentials;
      return unavailable("its keys are missing");
    case core::BaseKind::environment: {
      auto credentials = core::environment_credentials(env_);
      if (!credentials) return unavailable(credentials.error().message);
      return credentials;
    }
    case core::BaseKind::imds:
      return unavailable("the instance metadata provider is not supported yet");
    case core::BaseKind::ecs:
      return unavailable("the container credentials provider is not supported yet");
  }
  return unavailable("unknown credential source");
}

}  // namespace membraned::server
