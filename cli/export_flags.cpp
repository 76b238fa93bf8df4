#include "cli/export_flags.hpp"

#include <algorithm>
#include <charconv>

#include "core/encoding.hpp"
#include "core/export_config.hpp"
#include "core/time.hpp"

namespace membraned::cli {

namespace {

using Json = nlohmann::ordered_json;

struct Named {
  const char* name;
  bool given;
};

std::vector<Named> uri_only_flags(const ExportFlags& f) {
  return {
      {"--uri", f.uri.has_value()},
      {"--allow-query", f.allow_query.has_value()},
      {"--header", !f.headers.empty()},
      {"--method", f.method.has_value()},
      {"--aws4-hmac-sha256-aws-access-key-id", f.aws4_access_key_id.has_value()},
      {"--aws4-hmac-sha256-secret-access-key", f.aws4_secret_access_key.has_value()},
      {"--aws4-hmac-sha256-session-token", f.aws4_session_token.has_value()},
      {"--aws4-hmac-sha256-region", f.aws4_region.has_value()},
      {"--aws4-hmac-sha256-service", f.aws4_service.has_value()},
      {"--aws4-hmac-sha256-credentials", f.aws4_credentials.has_value()},
      {"--cap1-hmac-sha512-key", f.cap1_key.has_value()},
      {"--cap1-hmac-sha512-key-id", f.cap1_key_id.has_value()},
      {"--timeout-ms", f.timeout_ms.has_value()},
      {"--tls-ca", f.tls_ca.has_value()},
      {"--tls-cert", f.tls_cert.has_value()},
      {"--tls-key", f.tls_key.has_value()},
      {"--tls-reject-unauthorized", f.tls_reject_unauthorized.has_value()},
  };
}

// The grant's own limits: allowed with --uri and with --capability-to-export.
std::vector<Named> grant_flags(const ExportFlags& f) {
  return {
      {"--label", f.label.has_value()},           {"--expires-at", f.expires_at.has_value()},
      {"--expires-in", f.expires_in.has_value()}, {"--max-uses", f.max_uses.has_value()},
      {"--rate-limit", f.rate_limit.has_value()}, {"--allow-from", !f.allow_from.empty()},
  };
}

std::string join(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (!out.empty()) out += ", ";
    out += n;
  }
  return out;
}

core::Error usage(std::string field, std::string message) {
  return core::Error::invalid(std::move(field), std::move(message));
}

// A complete set, or none of it: otherwise the error names what is missing.
core::Status check_complete(const std::vector<Named>& set, const char* scheme) {
  std::vector<std::string> given;
  std::vector<std::string> missing;
  for (const auto& n : set) (n.given ? given : missing).push_back(n.name);
  if (given.empty() || missing.empty()) return core::ok_status();
  return usage(given.front().substr(2), std::string(scheme) + " signing needs all of its flags: " + join(given) +
                                      " given, missing " + join(missing));
}

// A whole number written with digits only: not "", "-1", "+1", "1.5" or "1e3".
std::optional<std::uint64_t> whole_number(std::string_view text) {
  std::uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The export body's field name for a dotted core field ("hmac.aws4-hmac-sha256.region"), as the
// flag that sets it.
std::string flag_for_field(const std::string& field) {
  static const std::pair<const char*, const char*> kMap[] = {
      {"hmac.aws4-hmac-sha256.awsAccessKeyId", "--aws4-hmac-sha256-aws-access-key-id"},
      {"hmac.aws4-hmac-sha256.secretAccessKey", "--aws4-hmac-sha256-secret-access-key"},
      {"hmac.aws4-hmac-sha256.sessionToken", "--aws4-hmac-sha256-session-token"},
      {"hmac.aws4-hmac-sha256.region", "--aws4-hmac-sha256-region"},
      {"hmac.aws4-hmac-sha256.service", "--aws4-hmac-sha256-service"},
      {"hmac.aws4-hmac-sha256.credentials", "--aws4-hmac-sha256-credentials"},
      {"hmac.cap1-hmac-sha512.key", "--cap1-hmac-sha512-key"},
      {"hmac.cap1-hmac-sha512.keyId", "--cap1-hmac-sha512-key-id"},
      {"tls.ca", "--tls-ca"},
      {"tls.cert", "--tls-cert"},
      {"tls.key", "--tls-key"},
      {"tls.rejectUnauthorized", "--tls-reject-unauthorized"},
      {"allowQuery", "--allow-query"},
      {"timeoutMs", "--timeout-ms"},
      {"capability", "--capability-to-export"},
      {"method", "--method"},
      {"uri", "--uri"},
      {"label", "--label"},
      {"expiresAt", "--expires-at"},
      {"maxUses", "--max-uses"},
  };
  for (const auto& [prefix, flag] : kMap) {
    if (field == prefix) return flag;
  }
  if (field.rfind("headers", 0) == 0) return "--header";
  if (field.rfind("tls", 0) == 0) return "--tls-*";
  if (field.rfind("hmac", 0) == 0) return "signing flags";
  if (field.rfind("rateLimit", 0) == 0) return "--rate-limit";
  if (field.rfind("allowFrom", 0) == 0) return "--allow-from";
  return field;
}

core::Result<std::uint64_t> parse_max_uses_flag(std::string_view text) {
  auto uses = whole_number(text);
  if (!uses || *uses == 0) return usage("max-uses", "--max-uses must be a positive whole number");
  if (*uses > core::kLargestMaxUses) {
    return usage("max-uses", "--max-uses must be at most " + std::to_string(core::kLargestMaxUses));
  }
  return *uses;
}

// The grant fields, after the configuration's: label, expiresAt, maxUses, rateLimit, allowFrom.
core::Status add_grant_fields(Json& body, const ExportFlags& f, std::chrono::system_clock::time_point now) {
  if (f.expires_at && f.expires_in) {
    return usage("expires-in",
                 "--expires-at and --expires-in cannot be combined: give the time or the duration");
  }
  if (f.label) body["label"] = *f.label;
  if (f.expires_at) body["expiresAt"] = *f.expires_at;
  if (f.expires_in) {
    auto duration = parse_duration_flag(*f.expires_in);
    if (!duration) return duration.error();
    body["expiresAt"] = core::format_rfc3339(now + *duration);
  }
  if (f.max_uses) {
    auto uses = parse_max_uses_flag(*f.max_uses);
    if (!uses) return uses.error();
    body["maxUses"] = *uses;
  }
  if (f.rate_limit) {
    auto rate = parse_rate_limit_flag(*f.rate_limit);
    if (!rate) return rate.error();
    body["rateLimit"] = {{"requests", rate->requests}, {"perSeconds", rate->per_seconds}};
  }
  if (!f.allow_from.empty()) body["allowFrom"] = f.allow_from;
  return core::ok_status();
}

}  // namespace

core::Result<std::chrono::seconds> parse_duration_flag(std::string_view text) {
  using namespace std::chrono;
  const auto malformed = [&] {
    return usage("expires-in", "--expires-in must be a duration such as 90s, 30m, 2h, 1d or 1h30m (got \"" +
                                   core::printable_excerpt(text, 40) + "\")");
  };
  const auto too_long = [] {
    return usage("expires-in",
                 "--expires-in must be at most " + std::to_string(kMaxExpiresIn / days(1)) + "d");
  };
  struct Unit {
    char symbol;
    seconds length;
  };
  static constexpr Unit kUnits[] = {{'d', days(1)}, {'h', hours(1)}, {'m', minutes(1)}, {'s', seconds(1)}};
  if (text.empty()) return malformed();
  seconds total{0};
  std::size_t next_unit = 0;  // the units come in the order of kUnits, each at most once
  while (!text.empty()) {
    const std::size_t digits = text.find_first_not_of("0123456789");
    if (digits == 0 || digits == std::string_view::npos) return malformed();  // no number, or no unit
    const auto number = whole_number(text.substr(0, digits));
    const Unit* unit = std::find_if(std::begin(kUnits) + next_unit, std::end(kUnits),
                                    [&](const Unit& u) { return u.symbol == text[digits]; });
    if (unit == std::end(kUnits)) return malformed();
    if (!number || *number > static_cast<std::uint64_t>(kMaxExpiresIn / unit->length)) return too_long();
    total += unit->length * static_cast<std::int64_t>(*number);
    if (total > kMaxExpiresIn) return too_long();
    next_unit = static_cast<std::size_t>(unit - std::begin(kUnits)) + 1;
    text.remove_prefix(digits + 1);
  }
  if (total == seconds{0}) return usage("expires-in", "--expires-in must be longer than 0 seconds");
  return total;
}

core::Result<core::RateLimit> parse_rate_limit_flag(std::string_view text) {
  const std::size_t slash = text.find('/');
  const auto requests = slash == std::string_view::npos ? std::nullopt : whole_number(text.substr(0, slash));
  const auto seconds = slash == std::string_view::npos ? std::nullopt : whole_number(text.substr(slash + 1));
  if (!requests || !seconds) {
    return usage(
        "rate-limit",
        "--rate-limit must be REQUESTS/SECONDS, such as 100/60 for at most 100 uses in any 60 seconds "
        "(got \"" +
            core::printable_excerpt(text, 40) + "\")");
  }
  if (*requests < 1 || *requests > core::kLargestRateRequests) {
    return usage("rate-limit",
                 "--rate-limit: REQUESTS must be from 1 to " + std::to_string(core::kLargestRateRequests));
  }
  if (*seconds < 1 || *seconds > core::kLargestRateWindowSeconds) {
    return usage("rate-limit", "--rate-limit: SECONDS must be from 1 to " +
                                   std::to_string(core::kLargestRateWindowSeconds));
  }
  return core::RateLimit{static_cast<std::uint32_t>(*requests), static_cast<std::uint32_t>(*seconds)};
}

std::vector<std::string> given_export_flags(const ExportFlags& flags) {
  std::vector<std::string> out;
  if (flags.capability_to_export) out.emplace_back("--capability-to-export");
  for (const auto& n : uri_only_flags(flags)) {
    if (n.given) out.emplace_back(n.name);
  }
  for (const auto& n : grant_flags(flags)) {
    if (n.given) out.emplace_back(n.name);
  }
  return out;
}

core::Result<core::Header> parse_header_flag(std::string_view text) {
  auto colon = text.find(':');
  if (colon == std::string_view::npos) {
    return usage("header", "--header must be \"Name: value\" (no ':' in \"" + std::string(text) + "\")");
  }
  std::string_view name = trim(text.substr(0, colon));
  std::string_view value = trim(text.substr(colon + 1));
  if (name.empty()) return usage("header", "--header needs a name before ':'");
  if (!core::is_http_token(name)) {
    return usage("header", "--header name \"" + std::string(name) + "\" is not a valid HTTP header name");
  }
  if (!core::is_safe_header_value(value)) {
    return usage("header", "--header " + std::string(name) + ": the value holds CR, LF or NUL");
  }
  return core::Header{std::string(name), std::string(value)};
}

core::Result<nlohmann::ordered_json> build_export_body(const ExportFlags& f,
                                                       std::chrono::system_clock::time_point now) {
  const auto uri_flags = uri_only_flags(f);
  // 1. --capability-to-export stands alone (the original's `conflicts`).
  if (f.capability_to_export) {
    std::vector<std::string> clash;
    for (const auto& n : uri_flags) {
      if (n.given) clash.emplace_back(n.name);
    }
    if (!clash.empty()) {
      return usage("capability-to-export",
                   "--capability-to-export cannot be combined with " + join(clash) +
                       " (a re-export carries the exported capability's configuration, nothing else)");
    }
  }
  // 2. One signing scheme, complete. A profile (--aws4-hmac-sha256-credentials) stands in for
  //    the two key flags; region and service stay required.
  if (f.aws4_credentials && (f.aws4_access_key_id || f.aws4_secret_access_key)) {
    return usage("aws4-hmac-sha256-credentials",
                 "--aws4-hmac-sha256-credentials replaces --aws4-hmac-sha256-aws-access-key-id and "
                 "--aws4-hmac-sha256-secret-access-key: give the profile or the keys, not both");
  }
  if (f.aws4_session_token && (f.aws4_credentials || !f.aws4_access_key_id || !f.aws4_secret_access_key)) {
    return usage("aws4-hmac-sha256-session-token",
                 "--aws4-hmac-sha256-session-token goes with --aws4-hmac-sha256-aws-access-key-id and "
                 "--aws4-hmac-sha256-secret-access-key (temporary keys), never with a profile");
  }
  std::vector<Named> aws4 = {
      {"--aws4-hmac-sha256-region", f.aws4_region.has_value()},
      {"--aws4-hmac-sha256-service", f.aws4_service.has_value()},
  };
  if (f.aws4_credentials) {
    aws4.insert(aws4.begin(), {"--aws4-hmac-sha256-credentials", true});
  } else {
    aws4.insert(aws4.begin(), {{"--aws4-hmac-sha256-aws-access-key-id", f.aws4_access_key_id.has_value()},
                               {"--aws4-hmac-sha256-secret-access-key", f.aws4_secret_access_key.has_value()}});
  }
  const std::vector<Named> cap1 = {
      {"--cap1-hmac-sha512-key", f.cap1_key.has_value()},
      {"--cap1-hmac-sha512-key-id", f.cap1_key_id.has_value()},
  };
  const bool any_aws4 = std::any_of(aws4.begin(), aws4.end(), [](const Named& n) { return n.given; });
  const bool any_cap1 = std::any_of(cap1.begin(), cap1.end(), [](const Named& n) { return n.given; });
  if (any_aws4 && any_cap1) {
    return usage("hmac",
                 "the --aws4-hmac-sha256-* and --cap1-hmac-sha512-* flags cannot be combined: "
                 "an export is signed with one scheme");
  }
  if (auto s = check_complete(aws4, "AWS4-HMAC-SHA256"); !s) return s.error();
  if (auto s = check_complete(cap1, "CAP1-HMAC-SHA512"); !s) return s.error();
  // 3. Every other option configures a uri export: it needs --uri.
  if (!f.capability_to_export && !f.uri) {
    std::vector<std::string> given;
    for (const auto& n : uri_flags) {
      if (n.given) given.emplace_back(n.name);
    }
    if (given.empty()) {
      return usage("uri", "give --uri (a new capability for an upstream request) or --capability-to-export "
                          "(a re-export of an existing capability)");
    }
    return usage("uri", join(given) + " need(s) --uri");
  }

  Json body = Json::object();
  if (f.capability_to_export) body["capability"] = *f.capability_to_export;
  if (f.uri) body["uri"] = *f.uri;
  if (f.allow_query) body["allowQuery"] = *f.allow_query;
  if (!f.headers.empty()) {
    Json headers = Json::object();
    for (const auto& text : f.headers) {
      auto h = parse_header_flag(text);
      if (!h) return h.error();
      headers[h->name] = h->value;  // the same name again: the last one wins, as in the original
    }
    body["headers"] = std::move(headers);
  }
  if (f.method) body["method"] = *f.method;
  if (f.timeout_ms) {
    const auto timeout = whole_number(*f.timeout_ms);
    if (!timeout || *timeout == 0) {
      return usage("timeout-ms", "--timeout-ms must be a positive whole number of milliseconds");
    }
    body["timeoutMs"] = *timeout;
  }
  if (any_cap1) {
    body["hmac"] = {{"cap1-hmac-sha512", {{"key", *f.cap1_key}, {"keyId", *f.cap1_key_id}}}};
  }
  if (any_aws4 && f.aws4_credentials) {
    body["hmac"] = {{"aws4-hmac-sha256",
                     {{"credentials", *f.aws4_credentials}, {"region", *f.aws4_region}, {"service", *f.aws4_service}}}};
  } else if (any_aws4) {
    body["hmac"] = {{"aws4-hmac-sha256",
                     {{"awsAccessKeyId", *f.aws4_access_key_id},
                      {"region", *f.aws4_region},
                      {"service", *f.aws4_service},
                      {"secretAccessKey", *f.aws4_secret_access_key}}}};
    if (f.aws4_session_token) body["hmac"]["aws4-hmac-sha256"]["sessionToken"] = *f.aws4_session_token;
  }
  // Unlike the original (which drops a lone --tls-reject-unauthorized=false), any --tls-* flag
  // sends a tls object, so turning verification off is never silently ignored.
  if (f.tls_ca || f.tls_cert || f.tls_key || f.tls_reject_unauthorized) {
    Json tls = Json::object();
    if (f.tls_ca) tls["ca"] = *f.tls_ca;
    if (f.tls_cert) tls["cert"] = *f.tls_cert;
    if (f.tls_key) tls["key"] = *f.tls_key;
    if (f.tls_reject_unauthorized) tls["rejectUnauthorized"] = *f.tls_reject_unauthorized;
    body["tls"] = std::move(tls);
  }
  if (auto s = add_grant_fields(body, f, now); !s) return s.error();

  // The service's own rules (core/export_config), so a body it would refuse is never sent.
  // dump() of an ordered_json reads back as the same object.
  auto checked = core::parse_export_request(body.dump(), {}, now);
  if (!checked) {
    const auto& e = checked.error();
    // expiresAt comes from either flag.
    std::string flag = e.field == "expiresAt" && f.expires_in ? "--expires-in" : flag_for_field(e.field);
    return usage(e.field, (flag.empty() ? std::string() : flag + ": ") + e.message);
  }
  return body;
}

core::Result<std::string> query_target(const std::optional<std::string>& id,
                                       const std::optional<std::string>& last_id,
                                       const std::optional<std::string>& limit) {
  std::string query;
  auto add = [&](const char* name, const std::string& value) -> core::Status {
    auto encoded = core::js_encode_uri_component(value);
    if (!encoded) return usage(name, std::string("--") + name + " is not valid UTF-8 text");
    query += query.empty() ? "?" : "&";
    query += name;
    query += '=';
    query += *encoded;
    return core::ok_status();
  };
  if (id) {
    if (auto s = add("id", *id); !s) return core::Error::invalid("id", "--id is not valid UTF-8 text");
  }
  if (last_id) {
    if (auto s = add("lastId", *last_id); !s) return core::Error::invalid("last-id", "--last-id is not valid UTF-8 text");
  }
  if (limit) {
    const auto value = whole_number(*limit);
    if (!value || *value == 0) return usage("limit", "--limit must be greater than 0 (a whole number)");
    if (auto s = add("limit", std::to_string(*value)); !s) return s.error();
  }
  return "/" + query;
}

}  // namespace membraned::cli
