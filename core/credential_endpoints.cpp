#include "core/credential_endpoints.hpp"

#include <algorithm>

#include "core/address_policy.hpp"

namespace membraned::core {
namespace {

constexpr std::size_t kMaxImdsToken = 4096;
constexpr std::size_t kMaxRoleName = 64;
constexpr std::size_t kMaxAuthorizationToken = 16384;

// An endpoint URL from a variable: errors name the variable, not the parser's field.
Result<UpstreamTarget> endpoint_from(std::string_view variable, std::string_view url) {
  auto target = parse_upstream_uri(url);
  if (!target) return Error::invalid(std::string(variable), std::string(variable) + ": " + target.error().message);
  return target;
}

// A call to `endpoint` at its path prefix followed by `path`.
CredentialsCall call_to(const UpstreamTarget& endpoint, std::string method, std::string_view path) {
  CredentialsCall call;
  call.https = endpoint.https;
  call.connect_host = endpoint.connect_host;
  call.port = endpoint.port;
  call.method = std::move(method);
  std::string prefix = endpoint.path;
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  call.target = prefix + std::string(path);
  call.headers.push_back({"Host", endpoint.authority});
  return call;
}

bool is_visible_ascii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7F; });
}

bool is_role_name_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         std::string_view("+=,.@_-").find(c) != std::string_view::npos;
}

// Plain-http container endpoints the AWS SDKs accept: loopback, or the ECS and EKS agents.
bool is_allowed_plain_container_host(std::string_view connect_host) {
  auto address = address_without_dns(connect_host);
  if (!address) return false;
  if (address->is_loopback()) return true;
  for (std::string_view agent : {"169.254.170.2", "169.254.170.23", "fd00:ec2::23"}) {
    if (address == IpAddress::parse(agent)) return true;
  }
  return false;
}

}  // namespace

Result<UpstreamTarget> imds_endpoint(const EnvLookup& env) {
  constexpr std::string_view variable = "AWS_EC2_METADATA_SERVICE_ENDPOINT";
  auto url = env_value(env, variable);
  auto target = endpoint_from(variable, url ? std::string_view(*url) : kImdsDefaultEndpoint);
  if (!target) return target;
  if (target->query) return Error::invalid(std::string(variable), std::string(variable) + ": must not hold a query");
  return target;
}

CredentialsCall imds_token_call(const UpstreamTarget& endpoint) {
  auto call = call_to(endpoint, "PUT", "/latest/api/token");
  call.headers.push_back({"X-aws-ec2-metadata-token-ttl-seconds", std::to_string(kImdsTokenTtlSeconds)});
  call.headers.push_back({"Content-Length", "0"});
  return call;
}

Result<std::string> parse_imds_token(std::string_view body) {
  if (body.empty() || body.size() > kMaxImdsToken || !is_visible_ascii(body)) {
    return Error::invalid("imds", "the instance metadata service answered a malformed session token");
  }
  return std::string(body);
}

CredentialsCall imds_role_call(const UpstreamTarget& endpoint, const std::string& token) {
  auto call = call_to(endpoint, "GET", "/latest/meta-data/iam/security-credentials/");
  call.headers.push_back({"X-aws-ec2-metadata-token", token});
  return call;
}

Result<std::string> parse_imds_role_name(std::string_view body) {
  std::string_view line = body.substr(0, body.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  while (!line.empty() && line.back() == ' ') line.remove_suffix(1);
  while (!line.empty() && line.front() == ' ') line.remove_prefix(1);
  if (line.empty()) return Error::invalid("imds", "the instance has no IAM role (its metadata lists none)");
  // "." and ".." are IAM name characters but would climb the next call's path.
  const bool only_dots = line.find_first_not_of('.') == std::string_view::npos;
  if (line.size() > kMaxRoleName || only_dots || !std::all_of(line.begin(), line.end(), is_role_name_char)) {
    return Error::invalid("imds", "the instance metadata service listed a malformed role name");
  }
  return std::string(line);
}

CredentialsCall imds_credentials_call(const UpstreamTarget& endpoint, const std::string& token,
                                      const std::string& role) {
  auto call = call_to(endpoint, "GET", "/latest/meta-data/iam/security-credentials/" + role);
  call.headers.push_back({"X-aws-ec2-metadata-token", token});
  return call;
}

Result<ContainerEndpoint> container_endpoint(const EnvLookup& env) {
  constexpr std::string_view relative_variable = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI";
  constexpr std::string_view full_variable = "AWS_CONTAINER_CREDENTIALS_FULL_URI";
  constexpr std::string_view token_variable = "AWS_CONTAINER_AUTHORIZATION_TOKEN";
  ContainerEndpoint out;
  if (auto relative = env_value(env, relative_variable)) {
    if (relative->front() != '/') {
      return Error::invalid(std::string(relative_variable), std::string(relative_variable) + ": must be a path starting with '/'");
    }
    auto target = endpoint_from(relative_variable, "http://" + std::string(kEcsCredentialsHost) + *relative);
    if (!target) return target.error();
    out.target = std::move(*target);
  } else if (auto full = env_value(env, full_variable)) {
    auto target = endpoint_from(full_variable, *full);
    if (!target) return target.error();
    if (!target->https && !is_allowed_plain_container_host(target->connect_host)) {
      return Error::invalid(std::string(full_variable),
                            std::string(full_variable) +
                                ": plain http is allowed only to a loopback address or a container credentials agent");
    }
    out.target = std::move(*target);
  } else {
    return Error::invalid(std::string(full_variable), "neither " + std::string(relative_variable) + " nor " +
                                                          std::string(full_variable) + " is set");
  }
  if (auto token = env_value(env, token_variable)) {
    const bool clean = std::none_of(token->begin(), token->end(), [](char c) {
      return static_cast<unsigned char>(c) < 0x20 || c == 0x7F;
    });
    if (!clean || token->size() > kMaxAuthorizationToken) {
      return Error::invalid(std::string(token_variable), std::string(token_variable) + " is malformed");
    }
    out.authorization = std::move(*token);
  }
  return out;
}

CredentialsCall container_credentials_call(const ContainerEndpoint& endpoint) {
  std::string target = endpoint.target.path.empty() ? "/" : endpoint.target.path;
  if (endpoint.target.query) target += "?" + *endpoint.target.query;
  CredentialsCall call;
  call.https = endpoint.target.https;
  call.connect_host = endpoint.target.connect_host;
  call.port = endpoint.target.port;
  call.method = "GET";
  call.target = std::move(target);
  call.headers.push_back({"Host", endpoint.target.authority});
  call.headers.push_back({"Accept", "application/json"});
  if (endpoint.authorization) call.headers.push_back({"Authorization", *endpoint.authorization});
  return call;
}

}  // namespace membraned::core
