#include "core/aws_credentials.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>

#include "core/ascii.hpp"
#include "core/encoding.hpp"
#include "core/http.hpp"

namespace membraned::core {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxShownCode = 64;

Error bad(std::string_view field, std::string message) {
  return Error::invalid(std::string(field), std::move(message));
}

Result<json> parse_object(std::string_view body, std::string_view source) {
  json parsed = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return bad("body", std::string(source) + ": answer is not valid JSON");
  if (!parsed.is_object()) return bad("body", std::string(source) + ": answer is not a JSON object");
  return parsed;
}

// A required, non-empty string member. The message never quotes the value.
Result<std::string> required_string(const json& object, std::string_view key,
                                    std::string_view source) {
  auto it = object.find(std::string(key));
  if (it == object.end() || it->is_null()) {
    return bad(key, std::string(source) + ": " + std::string(key) + " is missing");
  }
  if (!it->is_string()) {
    return bad(key, std::string(source) + ": " + std::string(key) + " must be a string");
  }
  std::string value = it->get<std::string>();
  if (value.empty()) return bad(key, std::string(source) + ": " + std::string(key) + " is empty");
  return value;
}

// The four members shared by the IMDS and container answers.
Result<AwsCredentials> credentials_from_json(const json& object, std::string_view source) {
  AwsCredentials out;
  auto key_id = required_string(object, "AccessKeyId", source);
  if (!key_id) return key_id.error();
  auto secret = required_string(object, "SecretAccessKey", source);
  if (!secret) return secret.error();
  auto token = required_string(object, "Token", source);
  if (!token) return token.error();
  auto expiration_text = required_string(object, "Expiration", source);
  if (!expiration_text) return expiration_text.error();
  auto expiration = parse_iso8601(*expiration_text);
  if (!expiration) {
    return bad("Expiration", std::string(source) + ": " + expiration.error().message);
  }
  out.access_key_id = std::move(*key_id);
  out.secret_access_key = std::move(*secret);
  out.session_token = std::move(*token);
  out.expiration = *expiration;
  if (auto s = validate_credentials(out); !s) {
    Error e = s.error();
    e.message = std::string(source) + ": " + e.message;
    return e;
  }
  return out;
}

}  // namespace

bool is_aws_region(std::string_view region) noexcept {
  return !region.empty() && region.size() <= kMaxRegion &&
         std::all_of(region.begin(), region.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-'; });
}

Status validate_credentials(const AwsCredentials& c, const CredentialFieldNames& names) {
  auto field = [](std::string_view name) { return std::string(name); };
  if (c.access_key_id.empty()) return bad(names.access_key_id, field(names.access_key_id) + " is empty");
  if (c.access_key_id.size() > kMaxAccessKeyId || !is_word(c.access_key_id)) {
    return bad(names.access_key_id, field(names.access_key_id) + " must be at most " +
                                        std::to_string(kMaxAccessKeyId) +
                                        " letters, digits and '_'");
  }
  if (c.secret_access_key.empty()) {
    return bad(names.secret_access_key, field(names.secret_access_key) + " is empty");
  }
  if (c.secret_access_key.size() > kMaxSecretAccessKey || !is_safe_header_value(c.secret_access_key)) {
    return bad(names.secret_access_key, field(names.secret_access_key) + " must be at most " +
                                            std::to_string(kMaxSecretAccessKey) +
                                            " characters without CR, LF or NUL");
  }
  if (c.session_token) {
    if (c.session_token->empty()) return bad(names.session_token, field(names.session_token) + " is empty");
    if (c.session_token->size() > kMaxSessionToken || !is_safe_header_value(*c.session_token)) {
      return bad(names.session_token, field(names.session_token) + " must be at most " +
                                          std::to_string(kMaxSessionToken) +
                                          " characters without CR, LF or NUL");
    }
  }
  return ok_status();
}

Result<AwsCredentials> parse_imds_credentials(std::string_view body) {
  constexpr std::string_view source = "instance metadata credentials";
  auto object = parse_object(body, source);
  if (!object) return object.error();
  if (auto it = object->find("Code"); it != object->end()) {
    if (!it->is_string()) return bad("Code", std::string(source) + ": Code must be a string");
    const std::string code = it->get<std::string>();
    if (code != "Success") {
      return bad("Code", std::string(source) + ": Code is \"" + printable_excerpt(code, kMaxShownCode) +
                             "\", not \"Success\"");
    }
  }
  return credentials_from_json(*object, source);
}

Result<AwsCredentials> parse_container_credentials(std::string_view body) {
  constexpr std::string_view source = "container credentials";
  auto object = parse_object(body, source);
  if (!object) return object.error();
  return credentials_from_json(*object, source);
}

std::optional<std::string> env_value(const EnvLookup& env, std::string_view name) {
  std::optional<std::string> value = env ? env(name) : std::nullopt;
  if (value && value->empty()) value.reset();
  return value;
}

Result<AwsCredentials> environment_credentials(const EnvLookup& env) {
  auto get = [&](std::string_view name) { return env_value(env, name); };
  AwsCredentials out;
  auto key_id = get("AWS_ACCESS_KEY_ID");
  if (!key_id) return bad("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID is not set");
  auto secret = get("AWS_SECRET_ACCESS_KEY");
  if (!secret) return bad("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY is not set");
  out.access_key_id = std::move(*key_id);
  out.secret_access_key = std::move(*secret);
  out.session_token = get("AWS_SESSION_TOKEN");
  if (auto s = validate_credentials(out, {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                          "AWS_SESSION_TOKEN"});
      !s) {
    return s.error();
  }
  return out;
}

bool credentials_valid_at(const AwsCredentials& credentials,
                          std::chrono::system_clock::time_point t) noexcept {
  return !credentials.expiration || t < *credentials.expiration;
}

sigv4::Credentials to_sigv4_credentials(const AwsCredentials& credentials) {
  return {credentials.access_key_id, credentials.secret_access_key,
          credentials.session_token.value_or("")};
}

}  // namespace membraned::core
