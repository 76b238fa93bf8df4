// The --aws-config file (core/aws_config: AwsConfig::load, Boost.PropertyTree's INI reader). The
// operator writes it, but it is often generated or copied from elsewhere, and a bad one must stop
// the service with a message, never crash it. Properties: every loaded profile has a chain whose
// steps name loaded profiles, with roles and durations in their documented ranges; the chain of
// any other name is not_found; an error message never quotes a secret key or session token.
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/aws_config.hpp"
#include "core/aws_credentials.hpp"
#include "tests/fuzz/support/fuzz_check.hpp"
#include "tests/fuzz/support/secrets.hpp"

namespace {

using namespace membraned::core;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The values of aws_secret_access_key and aws_session_token, as an INI reader would see them;
// every other line is public.
membraned::fuzz::Secrets secrets_of(std::string_view contents) {
  membraned::fuzz::Secrets secrets;
  std::string rest;
  while (!contents.empty()) {
    const std::size_t end = contents.find('\n');
    const std::string_view line = contents.substr(0, end);
    contents = end == std::string_view::npos ? std::string_view() : contents.substr(end + 1);
    const std::size_t equals = line.find('=');
    const std::string_view key = trim(line.substr(0, equals));
    if (equals != std::string_view::npos && (key == "aws_secret_access_key" || key == "aws_session_token")) {
      secrets.add(trim(line.substr(equals + 1)));
      rest.append(key).append("\n");
    } else {
      rest.append(line).append("\n");
    }
  }
  secrets.add_public(rest);
  return secrets;
}

void check_credentials_step(const std::optional<AwsCredentials>& credentials) {
  if (credentials) FUZZ_CHECK(validate_credentials(*credentials).ok());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view contents = membraned::fuzz::as_text(data, size);
  auto config = AwsConfig::load(contents);
  if (!config) {
    FUZZ_CHECK(!config.error().message.empty());
    FUZZ_CHECK(!secrets_of(contents).quoted_in(config.error().message));
    return 0;
  }
  const auto names = config->profile_names();
  for (const std::string& name : names) {
    const AwsProfile* profile = config->find(name);
    FUZZ_CHECK(profile != nullptr && profile->name == name);
    check_credentials_step(profile->static_credentials);
    if (profile->duration) {
      FUZZ_CHECK(profile->duration->count() >= kMinDurationSeconds &&
                 profile->duration->count() <= kMaxDurationSeconds);
    }
    (void)config->granted(name, "tenant");
    auto chain = config->chain(name);
    FUZZ_CHECK(chain.ok());
    FUZZ_CHECK(config->find(chain->base.profile) != nullptr);
    FUZZ_CHECK((chain->base.kind == BaseKind::static_keys) == chain->base.credentials.has_value());
    check_credentials_step(chain->base.credentials);
    FUZZ_CHECK(chain->assume_roles.size() <= names.size());
    for (const AssumeRoleStep& step : chain->assume_roles) {
      FUZZ_CHECK(config->find(step.profile) != nullptr);
      FUZZ_CHECK(step.role_arn.starts_with("arn:"));
      FUZZ_CHECK(!step.role_session_name.empty());
      if (step.region) FUZZ_CHECK(is_aws_region(*step.region));
    }
    if (!chain->assume_roles.empty()) FUZZ_CHECK(chain->assume_roles.back().profile == name);
  }
  FUZZ_CHECK(!config->chain("no such profile, for the fuzzer").ok());
  return 0;
}
