// SPEC 9: the credentials an export that names an --aws-config profile signs with. This first
// version serves the profiles whose credentials need no network: static keys in the file, and
// the service's environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, read
// at each call so a rotated environment is seen). Profiles that need IMDSv2, the ECS endpoint or
// STS answer "not available" until their asynchronous providers exist.
#pragma once

#include <string_view>

#include "core/aws_config.hpp"
#include "core/aws_credentials.hpp"
#include "core/result.hpp"

namespace membraned::server {

class CredentialsProvider {
 public:
  CredentialsProvider(const core::AwsConfig* config, core::EnvLookup env);

  // unavailable (the invocation answers 502) with a message naming the profile, never a secret.
  core::Result<core::AwsCredentials> current(std::string_view profile) const;

 private:
  const core::AwsConfig* config_;
  core::EnvLookup env_;
};

}  // namespace membraned::server
