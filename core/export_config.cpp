#include "core/export_config.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <set>
#include <span>
#include <vector>

#include "core/ascii.hpp"
#include "core/aws_credentials.hpp"
#include "core/cap1.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/profile_name.hpp"
#include "core/sigv4.hpp"

namespace membraned::core {
namespace {

using json = nlohmann::json;

// The access key id and secret follow the limits of every AWS credential (aws_credentials.hpp).
// Three limits of the export contract (contract §4.1, which the tests hold) differ on purpose:
// - sessionToken: at most 4096 characters, where a credential source may hand over up to
//   kMaxSessionToken;
// - region and service: up to 128 characters safe in the credential scope ([A-Za-z0-9._-]),
//   not only AWS's region names (is_aws_region), so that an export may sign for any SigV4
//   service.
constexpr std::size_t kMaxExportSessionToken = 4096;
constexpr std::size_t kMaxExportRegion = 128;
constexpr std::size_t kMaxExportService = 128;

constexpr std::size_t kMaxKeyId = 256;
constexpr std::size_t kMaxHeaderValue = 8192;

Error bad(std::string field, std::string message) {
  return Error::invalid(std::move(field), std::move(message));
}

std::string join(std::string_view parent, std::string_view child) {
  return parent.empty() ? std::string(child) : std::string(parent) + "." + std::string(child);
}

// A key as an error message names it: the empty key as "" (a message must name something).
std::string key_name(std::string_view key) { return key.empty() ? std::string("\"\"") : std::string(key); }

// Rejects keys outside `allowed`, naming the first unknown one.
Status only_known_keys(const json& object, std::string_view where,
                       std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      std::string field = join(where, key_name(key));
      return bad(field, field + " is not a known field");
    }
  }
  return ok_status();
}

// A required or optional non-empty string of bounded length.
Result<std::optional<std::string>> string_field(const json& object, std::string_view where,
                                                std::string_view key, bool required,
                                                std::size_t max_length) {
  std::string field = join(where, key);
  auto it = object.find(std::string(key));
  if (it == object.end()) {
    if (required) return bad(field, field + " is required");
    return std::optional<std::string>();
  }
  if (!it->is_string()) return bad(field, field + " must be a string");
  std::string value = it->get<std::string>();
  if (value.empty()) return bad(field, field + " must not be empty");
  if (value.size() > max_length) {
    return bad(field, field + " must be at most " + std::to_string(max_length) + " characters");
  }
  return std::optional<std::string>(std::move(value));
}

// Region and service names go into the credential scope, between '/' separators.
bool is_scope_part(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_' || c == '.';
  });
}

// The reference CAP1 verifier splits the credential on '/' and the header on ',': a key id
// holding either can never verify, and it travels in a header.
bool is_cap1_key_id(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7F && c != '/' && c != ',';
  });
}

// A profile name (contract §9) or static keys, never both; region and service either way.
Result<Aws4Signing> parse_aws4(const json& object) {
  constexpr std::string_view where = "hmac.aws4-hmac-sha256";
  if (!object.is_object()) return bad(std::string(where), std::string(where) + " must be an object");
  if (auto s = only_known_keys(object, where,
                               {"awsAccessKeyId", "secretAccessKey", "region", "service",
                                "sessionToken", "credentials"});
      !s) {
    return s.error();
  }
  Aws4Signing out;
  if (object.contains("credentials")) {
    const std::string field = join(where, "credentials");
    for (std::string_view key : {"awsAccessKeyId", "secretAccessKey"}) {
      if (object.contains(std::string(key))) {
        return bad(field, field + " cannot be given with " + join(where, key) +
                              " (give either a profile or static keys)");
      }
    }
    if (object.contains("sessionToken")) {
      return bad(join(where, "sessionToken"),
                 join(where, "sessionToken") + " goes only with awsAccessKeyId and secretAccessKey, "
                                               "not with credentials");
    }
    auto profile = string_field(object, where, "credentials", true, kMaxProfileName);
    if (!profile) return profile.error();
    if (!is_profile_name(**profile)) {
      return bad(field, field + " must be a profile name: letters, digits and - _ . @ + = ,");
    }
    out.credentials_profile = std::move(**profile);
  } else {
    auto access_key = string_field(object, where, "awsAccessKeyId", true, kMaxAccessKeyId);
    if (!access_key) return access_key.error();
    if (!is_word(**access_key)) {
      return bad(join(where, "awsAccessKeyId"),
                 join(where, "awsAccessKeyId") + " must hold only letters, digits and '_'");
    }
    auto secret = string_field(object, where, "secretAccessKey", true, kMaxSecretAccessKey);
    if (!secret) return secret.error();
    out.access_key_id = std::move(**access_key);
    out.secret_access_key = std::move(**secret);
  }
  auto region = string_field(object, where, "region", true, kMaxExportRegion);
  if (!region) return region.error();
  if (!is_scope_part(**region)) {
    return bad(join(where, "region"),
               join(where, "region") + " must hold only letters, digits, '-', '_' and '.'");
  }
  auto service = string_field(object, where, "service", true, kMaxExportService);
  if (!service) return service.error();
  if (!is_scope_part(**service)) {
    return bad(join(where, "service"),
               join(where, "service") + " must hold only letters, digits, '-', '_' and '.'");
  }
  out.region = std::move(**region);
  out.service = std::move(**service);
  if (out.credentials_profile) return out;

  auto token = string_field(object, where, "sessionToken", false, kMaxExportSessionToken);
  if (!token) return token.error();
  if (*token && !is_safe_header_value(**token)) {
    return bad(join(where, "sessionToken"), join(where, "sessionToken") + " must not hold CR, LF or NUL");
  }
  if (!is_safe_header_value(out.secret_access_key)) {
    return bad(join(where, "secretAccessKey"),
               join(where, "secretAccessKey") + " must not hold CR, LF or NUL");
  }
  out.session_token = token->value_or("");
  return out;
}

Result<Cap1Signing> parse_cap1(const json& object) {
  constexpr std::string_view where = "hmac.cap1-hmac-sha512";
  if (!object.is_object()) return bad(std::string(where), std::string(where) + " must be an object");
  if (auto s = only_known_keys(object, where, {"key", "keyId"}); !s) return s.error();
  auto key = string_field(object, where, "key", true, 4096);
  if (!key) return key.error();
  if (!is_base64url_text(**key)) {
    return bad(join(where, "key"), join(where, "key") + " must be base64url text");
  }
  auto key_id = string_field(object, where, "keyId", true, kMaxKeyId);
  if (!key_id) return key_id.error();
  if (!is_cap1_key_id(**key_id)) {
    return bad(join(where, "keyId"),
               join(where, "keyId") + " must be printable ASCII without spaces, '/' or ','");
  }
  return Cap1Signing{std::move(**key), std::move(**key_id)};
}

Result<Signing> parse_hmac(const json& object) {
  if (!object.is_object()) return bad("hmac", "hmac must be an object");
  if (auto s = only_known_keys(object, "hmac", {"aws4-hmac-sha256", "cap1-hmac-sha512"}); !s) {
    return s.error();
  }
  if (object.size() != 1) {
    return bad("hmac", "hmac must hold exactly one of aws4-hmac-sha256 and cap1-hmac-sha512");
  }
  if (object.contains("aws4-hmac-sha256")) {
    auto aws4 = parse_aws4(object.at("aws4-hmac-sha256"));
    if (!aws4) return aws4.error();
    return Signing(std::move(*aws4));
  }
  auto cap1 = parse_cap1(object.at("cap1-hmac-sha512"));
  if (!cap1) return cap1.error();
  return Signing(std::move(*cap1));
}

Result<Headers> parse_headers(const json& object) {
  if (!object.is_object()) return bad("headers", "headers must be an object");
  Headers out;
  for (const auto& [name, value] : object.items()) {
    std::string field = "headers." + name;
    if (!is_http_token(name)) return bad(field, field + ": header name is not a valid token");
    std::string text;
    if (value.is_string()) {
      text = value.get<std::string>();
    } else if (value.is_number() || value.is_boolean()) {
      text = value.dump();
    } else {
      return bad(field, field + " must be a string, a number or a boolean");
    }
    if (text.empty()) return bad(field, field + " must not be empty");
    if (text.size() > kMaxHeaderValue) return bad(field, field + " is too long");
    if (!is_safe_header_value(text)) return bad(field, field + " must not hold CR, LF or NUL");
    if (find_header(out, name) != nullptr) {
      return bad(field, field + " is given twice (header names are case-insensitive)");
    }
    out.push_back({name, std::move(text)});
  }
  // Hop-by-hop headers would not survive the hop; Host and Content-Length are the service's.
  std::erase_if(out, [](const Header& h) {
    return is_hop_by_hop_header(h.name) || iequals(h.name, "host") || iequals(h.name, "content-length");
  });
  return out;
}

// Headers the signer writes itself: configuring them would be silently overwritten.
Status check_signer_headers(const Headers& headers, const Signing& signing) {
  std::span<const std::string_view> reserved;
  if (std::holds_alternative<Aws4Signing>(signing)) {
    reserved = sigv4::kWrittenHeaders;
  } else if (std::holds_alternative<Cap1Signing>(signing)) {
    reserved = cap1::kWrittenHeaders;
  }
  for (const Header& h : headers) {
    for (std::string_view r : reserved) {
      if (iequals(h.name, r)) {
        return bad("headers." + h.name, "headers." + h.name + " is set by the signer of hmac");
      }
    }
  }
  return ok_status();
}

Result<TlsOptions> parse_tls(const json& object, const ExportLimits& limits) {
  if (!object.is_object()) return bad("tls", "tls must be an object");
  if (auto s = only_known_keys(object, "tls", {"ca", "cert", "key", "rejectUnauthorized"}); !s) {
    return s.error();
  }
  TlsOptions tls;
  constexpr std::size_t kMaxPem = 65536;
  auto ca = string_field(object, "tls", "ca", false, kMaxPem);
  if (!ca) return ca.error();
  auto cert = string_field(object, "tls", "cert", false, kMaxPem);
  if (!cert) return cert.error();
  auto key = string_field(object, "tls", "key", false, kMaxPem);
  if (!key) return key.error();
  if (*ca) {
    if (!is_pem_certificates(**ca)) return bad("tls.ca", "tls.ca must hold PEM certificates");
    tls.ca = std::move(**ca);
  }
  if (cert->has_value() != key->has_value()) {
    return bad(cert->has_value() ? "tls.key" : "tls.cert",
               "tls.cert and tls.key must be given together");
  }
  if (*cert) {
    if (!is_pem_certificates(**cert)) return bad("tls.cert", "tls.cert must hold a PEM certificate");
    if (!is_pem_private_key(**key)) {
      return bad("tls.key", "tls.key must hold an unencrypted PEM private key");
    }
    if (!pem_key_matches_certificate(**cert, **key)) {
      return bad("tls.key", "tls.key does not belong to tls.cert");
    }
    if (limits.check_tls_key && !is_supported_tls_client_key(**key)) {
      return bad("tls.key", "tls.key must be an RSA key of at most " + std::to_string(kMaxTlsClientRsaBits) +
                                " bits, an EC key on P-256, P-384 or P-521, or an Ed25519 or Ed448 key");
    }
    tls.cert = std::move(**cert);
    tls.key = std::move(**key);
  }
  if (auto it = object.find("rejectUnauthorized"); it != object.end()) {
    if (!it->is_boolean()) return bad("tls.rejectUnauthorized", "tls.rejectUnauthorized must be a boolean");
    tls.reject_unauthorized = it->get<bool>();
  }
  return tls;
}

// timeoutMs: a positive integer (an integral JSON number such as 1e3 counts), lowered to the
// service maximum however large it is.
Result<std::uint64_t> parse_timeout(const json& value, std::uint64_t max_timeout_ms) {
  auto bad_timeout = [] { return bad("timeoutMs", "timeoutMs must be a positive integer"); };
  if (value.is_number_unsigned()) {
    auto v = value.get<std::uint64_t>();
    if (v == 0) return bad_timeout();
    return std::min(v, max_timeout_ms);
  }
  if (value.is_number_integer()) {
    auto v = value.get<std::int64_t>();
    if (v <= 0) return bad_timeout();
    return std::min(static_cast<std::uint64_t>(v), max_timeout_ms);
  }
  if (value.is_number_float()) {
    double v = value.get<double>();
    if (!(v >= 1) || v != std::floor(v)) return bad_timeout();
    if (v >= static_cast<double>(max_timeout_ms)) return max_timeout_ms;
    return static_cast<std::uint64_t>(v);
  }
  return bad_timeout();
}

Result<UriExport> parse_uri_export(const json& body, const ExportLimits& limits) {
  UriExport out;
  const json& uri = body.at("uri");
  if (!uri.is_string()) return bad("uri", "uri must be a string");
  auto target = parse_upstream_uri(uri.get<std::string>());
  if (!target) return target.error();
  out.target = std::move(*target);

  if (auto it = body.find("method"); it != body.end()) {
    if (!it->is_string()) return bad("method", "method must be a string");
    auto method = standard_method(it->get<std::string>());
    if (!method) return bad("method", "method must be a standard HTTP method name");
    out.method = std::move(*method);
  }
  if (auto it = body.find("allowQuery"); it != body.end()) {
    if (!it->is_boolean()) return bad("allowQuery", "allowQuery must be a boolean");
    out.allow_query = it->get<bool>();
  }
  if (auto it = body.find("headers"); it != body.end()) {
    auto headers = parse_headers(*it);
    if (!headers) return headers.error();
    out.headers = std::move(*headers);
  }
  if (auto it = body.find("hmac"); it != body.end()) {
    auto signing = parse_hmac(*it);
    if (!signing) return signing.error();
    out.signing = std::move(*signing);
  }
  if (auto s = check_signer_headers(out.headers, out.signing); !s) return s.error();
  if (auto it = body.find("timeoutMs"); it != body.end()) {
    auto timeout = parse_timeout(*it, limits.max_timeout_ms);
    if (!timeout) return timeout.error();
    out.timeout_ms = *timeout;
  }
  if (auto it = body.find("tls"); it != body.end()) {
    auto tls = parse_tls(*it, limits);
    if (!tls) return tls.error();
    out.tls = std::move(*tls);
  }
  return out;
}

// Finds keys repeated within one JSON object, which nlohmann::json would silently collapse, and
// names them by their dotted path ("headers.X-A").
class DuplicateKeyFinder {
 public:
  bool operator()(int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        objects_.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!objects_.empty()) objects_.pop_back();
        break;
      case json::parse_event_t::key: {
        if (objects_.empty()) break;
        std::string key = parsed.get<std::string>();
        if (!objects_.back().keys.insert(key).second && !duplicate_) {
          std::string path;
          for (std::size_t i = 0; i + 1 < objects_.size(); ++i) {
            path = join(path, key_name(objects_[i].current_key));
          }
          duplicate_ = join(path, key_name(key));
        }
        objects_.back().current_key = std::move(key);
        break;
      }
      default:
        break;
    }
    return true;
  }
  const std::optional<std::string>& duplicate() const { return duplicate_; }

 private:
  struct OpenObject {
    std::set<std::string> keys;
    std::string current_key;
  };
  std::vector<OpenObject> objects_;
  std::optional<std::string> duplicate_;
};

}  // namespace

Result<json> parse_json_without_duplicate_keys(std::string_view body) {
  DuplicateKeyFinder duplicates;
  json parsed = json::parse(body.begin(), body.end(), std::ref(duplicates), /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return bad("body", "body is not valid JSON");
  if (duplicates.duplicate()) {
    return bad(*duplicates.duplicate(), *duplicates.duplicate() + " is given twice");
  }
  return parsed;
}

Result<ExportConfig> parse_export_config(std::string_view body, const ExportLimits& limits) {
  auto parsed = parse_json_without_duplicate_keys(body);
  if (!parsed) return parsed.error();
  return parse_export_json(*parsed, limits);
}

Result<ExportRequest> parse_export_request(std::string_view body, const ExportLimits& limits,
                                           std::chrono::system_clock::time_point now) {
  auto parsed = parse_json_without_duplicate_keys(body);
  if (!parsed) return parsed.error();
  json configuration = std::move(*parsed);
  json grant = json::object();
  if (configuration.is_object()) {
    for (std::string_view key : kGrantLimitFields) {
      if (auto it = configuration.find(std::string(key)); it != configuration.end()) {
        grant[std::string(key)] = std::move(*it);
        configuration.erase(it);
      }
    }
  }
  auto config = parse_export_json(configuration, limits);
  if (!config) return config.error();
  auto grant_limits = parse_grant_limits(grant, now);
  if (!grant_limits) return grant_limits.error();
  return ExportRequest{std::move(*config), std::move(*grant_limits)};
}

Result<ExportConfig> parse_export_json(const json& body, const ExportLimits& limits) {
  try {
    if (!body.is_object()) return bad("body", "body must be a JSON object");
    if (auto s = only_known_keys(body, "", {"uri", "capability", "method", "allowQuery", "headers",
                                            "hmac", "timeoutMs", "tls"});
        !s) {
      return s.error();
    }
    const bool has_uri = body.contains("uri");
    const bool has_capability = body.contains("capability");
    if (has_uri && has_capability) return bad("capability", "give either uri or capability, not both");
    if (!has_uri && !has_capability) return bad("uri", "one of uri and capability is required");
    if (has_capability) {
      for (const auto& [key, value] : body.items()) {
        if (key != "capability") return bad(key, key + " cannot be given with capability");
      }
      const json& capability = body.at("capability");
      if (!capability.is_string()) return bad("capability", "capability must be a string");
      auto uri = CapabilityUri::parse(capability.get<std::string>());
      if (!uri) return bad("capability", "capability must be a capability URI");
      return ExportConfig(ReExport{std::move(*uri)});
    }
    auto uri_export = parse_uri_export(body, limits);
    if (!uri_export) return uri_export.error();
    return ExportConfig(std::move(*uri_export));
  } catch (const std::exception&) {
    // nlohmann's accessors only throw on type mismatches already ruled out above; a stray one
    // still becomes a typed error, never an escaping exception.
    return bad("body", "body could not be read");
  }
}

json to_json(const UriExport& config) {
  json out = json::object();
  out["uri"] = config.target.uri;
  if (config.method) out["method"] = *config.method;
  out["allowQuery"] = config.allow_query;
  if (!config.headers.empty()) {
    json headers = json::object();
    for (const Header& h : config.headers) headers[h.name] = h.value;
    out["headers"] = std::move(headers);
  }
  if (const auto* aws4 = std::get_if<Aws4Signing>(&config.signing)) {
    json a = {{"region", aws4->region}, {"service", aws4->service}};
    if (aws4->credentials_profile) {
      a["credentials"] = *aws4->credentials_profile;
    } else {
      a["awsAccessKeyId"] = aws4->access_key_id;
      a["secretAccessKey"] = aws4->secret_access_key;
      if (!aws4->session_token.empty()) a["sessionToken"] = aws4->session_token;
    }
    out["hmac"] = {{"aws4-hmac-sha256", std::move(a)}};
  } else if (const auto* cap1 = std::get_if<Cap1Signing>(&config.signing)) {
    out["hmac"] = {{"cap1-hmac-sha512", {{"key", cap1->key}, {"keyId", cap1->key_id}}}};
  }
  if (config.timeout_ms) out["timeoutMs"] = *config.timeout_ms;
  if (config.tls) {
    json tls = {{"rejectUnauthorized", config.tls->reject_unauthorized}};
    if (!config.tls->ca.empty()) tls["ca"] = config.tls->ca;
    if (!config.tls->cert.empty()) {
      tls["cert"] = config.tls->cert;
      tls["key"] = config.tls->key;
    }
    out["tls"] = std::move(tls);
  }
  return out;
}

namespace {

void wipe_secrets(UriExport& config) noexcept {
  if (auto* aws4 = std::get_if<Aws4Signing>(&config.signing)) {
    secure_wipe(aws4->secret_access_key);
    secure_wipe(aws4->session_token);
  } else if (auto* cap1 = std::get_if<Cap1Signing>(&config.signing)) {
    secure_wipe(cap1->key);
  }
  if (config.tls) secure_wipe(config.tls->key);
}

}  // namespace

std::shared_ptr<const UriExport> share_wiped(UriExport config) {
  return std::shared_ptr<const UriExport>(new UriExport(std::move(config)), [](const UriExport* p) {
    auto* owned = const_cast<UriExport*>(p);  // made non-const above
    wipe_secrets(*owned);
    delete owned;
  });
}

}  // namespace membraned::core
