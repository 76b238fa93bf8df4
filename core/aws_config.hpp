// The --aws-config file (contract §9): AWS shared-config INI, read with Boost.PropertyTree's INI
// reader, validated once at load, and turned into the ordered steps that obtain each profile's
// credentials. Pure: the caller reads the file and passes its contents.
//
// Which profiles count. An AWS config file usually holds many profiles membraned never uses
// (SSO profiles, profiles with only `region`...). membraned loads and validates the profiles it
// can use: those with `membraned_tenants`, and every profile reachable from them through
// `source_profile`. Every other section is ignored, however it is written (as unknown keys are).
// For a loaded profile every rule below is checked, and any violation fails the whole load
// with an error naming the profile and the key.
//
// Resolution follows botocore (the AWS CLI):
//   - a profile with `role_arn` assumes that role with the credentials of its `source_profile`
//     or `credential_source` (exactly one of them);
//   - a *source* profile that holds static keys gives those keys, even when it also has
//     `role_arn` (static keys take precedence below the top, as in botocore);
//   - a profile may name itself as `source_profile` only if it holds static keys (it then assumes
//     its role with its own keys);
//   - [membraned] a profile with `credential_source` and no `role_arn` signs with the source's
//     credentials directly (botocore ignores credential_source without role_arn).
// Stricter than botocore (each an error): `source_profile` cycles even where botocore would
// stop early at static keys; static keys together with `credential_source`; `source_profile`,
// `external_id`, `role_session_name` or `duration_seconds` without `role_arn`; half-given static
// keys; `aws_session_token` without keys.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/aws_credentials.hpp"
#include "core/profile_name.hpp"  // loaded profiles must have such a name
#include "core/result.hpp"

namespace membraned::core {

enum class CredentialSource { environment, ec2_instance_metadata, ecs_container };

// "Environment", "Ec2InstanceMetadata", "EcsContainer" (exact spelling, as botocore).
std::optional<CredentialSource> parse_credential_source(std::string_view text) noexcept;
std::string_view credential_source_name(CredentialSource source) noexcept;

inline constexpr std::string_view kDefaultRoleSessionName = "membraned";
inline constexpr std::int64_t kMinDurationSeconds = 900;
inline constexpr std::int64_t kMaxDurationSeconds = 43200;

struct AwsProfile {
  std::string name;  // "default" for [default] or [profile default]
  std::optional<AwsCredentials> static_credentials;  // aws_access_key_id/_secret_/_session_token
  std::optional<CredentialSource> credential_source;
  std::optional<std::string> source_profile;
  std::optional<std::string> role_arn;
  std::optional<std::string> external_id;
  std::string role_session_name{kDefaultRoleSessionName};
  std::optional<std::chrono::seconds> duration;  // duration_seconds, 900..43200
  std::optional<std::string> region;
  bool all_tenants = false;          // membraned_tenants = *
  std::vector<std::string> tenants;  // membraned_tenants = id id ...
};

// --- the steps that obtain a profile's credentials ------------------------------------------
enum class BaseKind { static_keys, environment, imds, ecs };

struct BaseStep {
  BaseKind kind = BaseKind::static_keys;
  std::string profile;  // whose static keys or credential_source this is
  std::optional<AwsCredentials> credentials;  // static_keys only
};

struct AssumeRoleStep {
  std::string profile;  // the profile holding role_arn
  std::string role_arn;
  std::optional<std::string> external_id;
  std::string role_session_name;                 // kDefaultRoleSessionName unless configured
  std::optional<std::chrono::seconds> duration;  // not sent when absent (STS default: 1 h)
  // The region of the STS endpoint (see sts.hpp): as the AWS CLI does, every STS call of a
  // chain uses the region of the profile the chain was asked for (the export's profile).
  std::optional<std::string> region;
};

// Obtain `base`, then assume each role in order with the credentials of the step before.
struct CredentialChain {
  BaseStep base;
  std::vector<AssumeRoleStep> assume_roles;  // innermost source first, the asked profile last
};

class AwsConfig {
 public:
  // Errors: invalid_input; `field` is the key (or empty for a syntax error or a profile without
  // any credentials), `message` names the profile (or the line) and never holds a secret value.
  static Result<AwsConfig> load(std::string_view contents);

  // A loaded profile (see above: one with membraned_tenants or a source of one), or nullptr.
  const AwsProfile* find(std::string_view name) const;
  // Whether `tenant_id` may sign with `profile`: listed in its membraned_tenants, or "*".
  // A profile without membraned_tenants (a source only) is granted to nobody.
  bool granted(std::string_view profile, std::string_view tenant_id) const;
  // The steps for a loaded profile; not_found for any other name.
  Result<CredentialChain> chain(std::string_view profile) const;

  // Names of the loaded profiles, sorted.
  std::vector<std::string> profile_names() const;

 private:
  std::map<std::string, AwsProfile, std::less<>> profiles_;
  std::map<std::string, CredentialChain, std::less<>> chains_;
};

}  // namespace membraned::core
