// The documents the operator's credential sources answer (contract §9): the IMDSv2 credentials
// JSON, the ECS/container credentials JSON, the IMDSv2 session token and the role listing. Each
// comes from a metadata endpoint that an attacker on the path (or a compromised instance) may
// control. Properties: what is accepted is valid (validate_credentials holds; the token and the
// role name can go into the next call's header and path); no error message quotes a secret.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

#include "core/aws_credentials.hpp"
#include "core/credential_endpoints.hpp"
#include "core/http.hpp"
#include "core/url.hpp"
#include "tests/fuzz/support/fuzz_check.hpp"
#include "tests/fuzz/support/secrets.hpp"

namespace {

using namespace membraned::core;

// The secrets of a JSON document: SecretAccessKey and Token, where they are strings; every
// other string in it is public.
membraned::fuzz::Secrets secrets_of(std::string_view body) {
  membraned::fuzz::Secrets secrets;
  const auto json = nlohmann::json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!json.is_object()) return secrets;
  for (const auto& [key, value] : json.items()) {
    if (!value.is_string()) continue;
    const auto& text = value.get_ref<const std::string&>();
    if (key == "SecretAccessKey" || key == "Token") {
      secrets.add(text);
    } else {
      secrets.add_public(text);
      secrets.add_public(key);
    }
  }
  return secrets;
}

void check_credentials(const Result<AwsCredentials>& parsed, const membraned::fuzz::Secrets& secrets) {
  if (!parsed) {
    FUZZ_CHECK(!parsed.error().message.empty());
    FUZZ_CHECK(!secrets.quoted_in(parsed.error().message));
    return;
  }
  FUZZ_CHECK(validate_credentials(*parsed).ok());
  FUZZ_CHECK(parsed->session_token.has_value());
  FUZZ_CHECK(parsed->expiration.has_value());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body = membraned::fuzz::as_text(data, size);
  const auto secrets = secrets_of(body);
  check_credentials(parse_imds_credentials(body), secrets);
  check_credentials(parse_container_credentials(body), secrets);

  static const UpstreamTarget endpoint = *parse_upstream_uri(kImdsDefaultEndpoint);
  auto token = parse_imds_token(body);
  if (token) {
    FUZZ_CHECK(!token->empty() && is_safe_header_value(*token));
    const auto call = imds_role_call(endpoint, *token);
    for (const Header& h : call.headers) FUZZ_CHECK(is_safe_header_value(h.value));
  }
  if (auto role = parse_imds_role_name(body)) {
    FUZZ_CHECK(!role->empty());
    FUZZ_CHECK(role->find('/') == std::string::npos && role->find('?') == std::string::npos &&
               role->find('#') == std::string::npos && role->find('%') == std::string::npos);
    FUZZ_CHECK(*role != "." && *role != "..");
    const auto call = imds_credentials_call(endpoint, token ? *token : std::string("t"), *role);
    FUZZ_CHECK(call.target == "/latest/meta-data/iam/security-credentials/" + *role);
  }
  return 0;
}
