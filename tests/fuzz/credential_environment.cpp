// What the operator's environment decides about credentials (contract §9): the AWS_* variables
// read by environment_credentials, container_endpoint, imds_endpoint and select_sts_endpoint, and
// the calls then made. The input is NAME=VALUE lines. Properties: accepted keys are valid; a
// relative container URI never leaves the container credentials host; plain http goes only to
// loopback or a container agent; every header of every call can be written on the wire.
#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

#include "core/address_policy.hpp"
#include "core/aws_config.hpp"
#include "core/aws_credentials.hpp"
#include "core/credential_endpoints.hpp"
#include "core/http.hpp"
#include "core/sts.hpp"
#include "tests/fuzz/support/fuzz_check.hpp"

namespace {

using namespace membraned::core;

void check_call(const CredentialsCall& call) {
  FUZZ_CHECK(!call.target.empty() && call.target.front() == '/');
  FUZZ_CHECK(!call.connect_host.empty() && call.port != 0);
  FUZZ_CHECK(!call.headers.empty() && iequals(call.headers.front().name, "Host"));
  for (const Header& h : call.headers) FUZZ_CHECK(is_http_token(h.name) && is_safe_header_value(h.value));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text = membraned::fuzz::as_text(data, size);
  std::map<std::string, std::string, std::less<>> vars;
  while (!text.empty()) {
    const std::size_t end = text.find('\n');
    const std::string_view line = text.substr(0, end);
    text = end == std::string_view::npos ? std::string_view() : text.substr(end + 1);
    const std::size_t equals = line.find('=');
    if (equals == std::string_view::npos) continue;
    vars[std::string(line.substr(0, equals))] = std::string(line.substr(equals + 1));
  }
  const EnvLookup env = [&vars](std::string_view name) -> std::optional<std::string> {
    auto it = vars.find(name);
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };

  if (auto credentials = environment_credentials(env)) {
    FUZZ_CHECK(validate_credentials(*credentials).ok());
    FUZZ_CHECK(!credentials->expiration.has_value());
  }

  if (auto container = container_endpoint(env)) {
    if (env_value(env, "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")) {
      FUZZ_CHECK(container->target.connect_host == kEcsCredentialsHost);
      FUZZ_CHECK(!container->target.https && container->target.port == 80);
    } else if (!container->target.https) {
      const auto address = address_without_dns(container->target.connect_host);
      const bool agent =
          address && (address->embedded_ipv4().is_loopback() || address->to_string() == "169.254.170.2" ||
                      address->to_string() == "169.254.170.23" || address->to_string() == "fd00:ec2::23");
      FUZZ_CHECK(agent);
    }
    check_call(container_credentials_call(*container));
  }

  if (auto imds = imds_endpoint(env)) {
    check_call(imds_token_call(*imds));
    check_call(imds_role_call(*imds, "token"));
    check_call(imds_credentials_call(*imds, "token", "role"));
  }

  auto region = env_value(env, "AWS_REGION");
  if (auto sts = select_sts_endpoint(env, region)) {
    FUZZ_CHECK(!sts->target.query.has_value());
    FUZZ_CHECK(is_aws_region(sts->signing_region));
    AssumeRoleStep step;
    step.profile = "p";
    step.role_arn = "arn:aws:iam::123456789012:role/r";
    step.role_session_name = "membraned";
    const auto request =
        make_assume_role_request(*sts, step, AwsCredentials{"AKID", "secret", std::nullopt, std::nullopt},
                                 std::chrono::system_clock::time_point(std::chrono::seconds(1700000000)));
    check_call(request);
  }
  return 0;
}
