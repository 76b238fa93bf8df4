#include "api/api.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <optional>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/export_config.hpp"
#include "core/http.hpp"
#include "core/time.hpp"
#include "storage/resolution.hpp"

namespace membraned::api {

using core::Error;
using core::ErrorKind;
using json = nlohmann::json;
using storage::CapabilityKind;

namespace {

constexpr std::size_t kMaxMembraneId = 512;
constexpr std::size_t kMaxQueryLimit = 1000;

Response accepted() { return {202, json{{"statusCode", 202}, {"message", "Accepted"}}}; }

// Management bodies are JSON whatever Content-Type says; an empty body is an empty object for
// the operations that take none. A key given twice is refused, as in an export body.
core::Result<json> parse_object(std::string_view body) {
  auto parsed = core::parse_json_without_duplicate_keys(body);
  if (!parsed) return parsed.error();
  if (!parsed->is_object()) return Error::invalid("body", "body must be a JSON object");
  return parsed;
}

std::size_t code_points(std::string_view utf8) {
  std::size_t n = 0;
  for (char c : utf8) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

}  // namespace

core::Status validate_membrane_id(std::string_view id) {
  if (id.empty()) return Error::invalid("id", "id must not be empty");
  if (!core::is_valid_utf8(id)) return Error::invalid("id", "id must be valid UTF-8");
  if (code_points(id) > kMaxMembraneId) {
    return Error::invalid("id", "id must be at most 512 characters");
  }
  for (char c : id) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) return Error::invalid("id", "id must not hold control characters");
  }
  return core::ok_status();
}

std::string_view Api::reason_phrase(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 507: return "Insufficient Storage";
    default: return "Error";
  }
}

Response Api::error_response(int status, std::string message) {
  return {status, json{{"statusCode", status},
                       {"error", std::string(reason_phrase(status))},
                       {"message", std::move(message)}}};
}

Response Api::error_response(const Error& error) {
  switch (error.kind) {
    case ErrorKind::invalid_input: return error_response(400, error.message);
    case ErrorKind::unauthorized: {
      Response refused = error_response(401, "Unauthorized");
      refused.reason = error.reason;
      return refused;
    }
    case ErrorKind::not_found: return error_response(404, error.message);
    case ErrorKind::conflict: return error_response(409, error.message);
    case ErrorKind::quota: return error_response(507, error.message);
    case ErrorKind::unavailable: {
      Response unavailable = error_response(503, "Please try again soon");
      unavailable.detail = error.message;
      return unavailable;
    }
    case ErrorKind::internal: break;
  }
  Response failure = error_response(500, "Internal Server Error");
  failure.detail = error.message;
  return failure;
}

std::string Api::uri_of(const core::Token& token) const {
  return core::CapabilityUri(settings_.authority, token).serialize();
}

core::Result<Authorized> Api::authorize(std::string_view authorization_header) {
  auto token = core::parse_bearer(authorization_header);
  if (!token) return Error::unauthorized("Unauthorized");
  auto resolved = store_.resolve(*token);
  if (!resolved) return resolved.error();
  return Authorized{std::move(*token), std::move(*resolved)};
}

core::Result<Authorized> Api::reauthorize(const core::Token& token) {
  auto resolved = store_.resolve(token);
  if (!resolved) return resolved.error();
  return Authorized{token, std::move(*resolved)};
}

Response Api::handle(const Authorized& who, std::string_view target, std::string_view body) {
  // A re-exported built-in capability's use is one operation (contract §11).
  if (auto refused = admit_use(who, std::chrono::steady_clock::now(), true).refusal) return *refused;
  switch (who.resolved.kind) {
    case CapabilityKind::create: return create_membrane(who, body);
    case CapabilityKind::query: return query_membranes(who, target);
    case CapabilityKind::export_: {
      auto request = parse_export(body);
      if (!request) return error_response(request.error());
      return export_admitted(who, *request);
    }
    case CapabilityKind::revoke: return revoke(who);
    case CapabilityKind::revoke_grant: return revoke_grant(who);
    case CapabilityKind::delete_self: return delete_self(who);
    case CapabilityKind::uri:
      // The server relays invocations itself (server/invocation); reaching here is a bug.
      return error_response(500, "Internal Server Error");
    case CapabilityKind::reexport: break;
  }
  return error_response(500, "Internal Server Error");
}

Response Api::health() {
  try {
    if (auto answered = store_.has_tenants(); !answered) return error_response(503, "Please try again soon");
  } catch (const std::exception&) {
    return error_response(503, "Please try again soon");
  }
  return {200, json{{"status", "ok"}, {"store", store_.backend_name()}}};
}

namespace {

// The limits a new grant lives under, as its 201 reports them (contract §12): its own, narrowed
// by those of what it stands for (`target`, a re-export's) and by the expiry of the capability
// that made it (what is made through a capability dies with it).
json grant_json(const Authorized& who, const core::GrantLimits& own, const std::optional<storage::Resolved>& target) {
  core::GrantLimits effective;
  effective.expires_at = who.resolved.expires_at;
  if (target) {
    if (target->expires_at && (!effective.expires_at || *target->expires_at < *effective.expires_at)) {
      effective.expires_at = target->expires_at;
    }
    // From the top of the chain down, so that the nearest allowFrom is the one reported.
    for (auto grant = target->chain.rbegin(); grant != target->chain.rend(); ++grant) {
      core::GrantLimits one;
      one.max_uses = grant->max_uses;
      one.rate_limit = grant->rate_limit;
      one.allow_from = grant->allow_from;
      effective = core::narrowed(effective, one);
    }
  }
  return core::grant_limits_json(core::narrowed(effective, own));
}

json time_or_null(const std::optional<std::int64_t>& unix_ms) {
  if (!unix_ms) return nullptr;
  return core::format_rfc3339(storage::from_unix_ms(*unix_ms));
}

}  // namespace

json grant_entry_json(const storage::GrantEntry& e) {
  json allow_from = nullptr;
  if (!e.allow_from.empty()) {
    allow_from = json::array();
    for (const auto& cidr : e.allow_from) allow_from.push_back(cidr.to_string());
  }
  json rate = nullptr;
  if (e.rate_limit) rate = json{{"requests", e.rate_limit->requests}, {"perSeconds", e.rate_limit->per_seconds}};
  return json{{"id", e.id},
              {"label", e.label ? json(*e.label) : json(nullptr)},
              {"membrane", e.membrane},
              {"kind", e.reexport ? "reexport" : "uri"},
              {"operation", e.operation.empty() ? json(nullptr) : json(e.operation)},
              {"target", e.target ? json(e.target->target) : json(nullptr)},
              {"method", e.target && e.target->method ? json(*e.target->method) : json(nullptr)},
              {"standsFor", e.stands_for ? json(*e.stands_for) : json(nullptr)},
              {"createdAt", core::format_rfc3339(std::chrono::system_clock::time_point(std::chrono::seconds(e.created_at)))},
              {"expiresAt", time_or_null(e.expires_at_ms)},
              {"maxUses", e.max_uses ? json(*e.max_uses) : json(nullptr)},
              {"uses", e.uses},
              {"lastUsedAt", time_or_null(e.last_used_at_ms)},
              {"rateLimit", std::move(rate)},
              {"allowFrom", std::move(allow_from)},
              {"revoked", e.revoked_at_ms.has_value()},
              {"revokedAt", time_or_null(e.revoked_at_ms)},
              {"state", storage::to_string(e.state)}};
}

namespace {

// A grant's public handle: not a secret (it opens nothing), only unique; 96 random bits.
core::Result<storage::NewGrant> new_grant(const core::GrantLimits& limits) {
  auto id = core::random_bytes(12);
  auto revoke = core::Token::generate();
  if (!id || !revoke) return Error::internal("grant generation failed");
  return storage::NewGrant{"g_" + core::hex_encode(*id), *revoke, limits};
}

core::Result<storage::TenantTokens> new_tenant_tokens() {
  auto create = core::Token::generate();
  auto query = core::Token::generate();
  auto delete_self = core::Token::generate();
  if (!create || !query || !delete_self) return Error::internal("token generation failed");
  return storage::TenantTokens{*create, *query, *delete_self};
}

}  // namespace

json Api::tenant_json(const std::string& id, const storage::TenantTokens& tokens) const {
  return json{{"id", id},
              {"capabilities",
               {{"create", uri_of(tokens.create)}, {"query", uri_of(tokens.query)}, {"deleteSelf", uri_of(tokens.delete_self)}}}};
}

core::Result<json> Api::create_tenant() {
  auto tokens = new_tenant_tokens();
  if (!tokens) return tokens.error();
  auto id = store_.create_tenant(*tokens);
  if (!id) return id.error();
  return tenant_json(*id, *tokens);
}

core::Result<std::optional<json>> Api::create_first_tenant() {
  auto tokens = new_tenant_tokens();
  if (!tokens) return tokens.error();
  auto id = store_.create_first_tenant(*tokens);
  if (!id) return id.error();
  if (!*id) return std::optional<json>();
  return std::optional<json>(tenant_json(**id, *tokens));
}

json Api::membrane_json(const storage::Membrane& membrane) const {
  return json{{"id", membrane.id},
              {"capabilities",
               {{"export", uri_of(membrane.export_token)}, {"revoke", uri_of(membrane.revoke_token)}}}};
}

Response Api::create_membrane(const Authorized& who, std::string_view body) {
  auto parsed = parse_object(body);
  if (!parsed) return error_response(parsed.error());
  for (const auto& [key, value] : parsed->items()) {
    if (key != "id") return error_response(400, key + " is not a known field");
  }
  auto it = parsed->find("id");
  if (it == parsed->end()) return error_response(400, "id is required");
  if (!it->is_string()) return error_response(400, "id must be a string");
  std::string id = it->get<std::string>();
  if (auto s = validate_membrane_id(id); !s) return error_response(s.error());

  auto export_token = core::Token::generate();
  auto revoke_token = core::Token::generate();
  if (!export_token || !revoke_token) return error_response(500, "Internal Server Error");
  storage::Membrane membrane{id, std::move(*export_token), std::move(*revoke_token)};
  if (auto s = store_.create_membrane(who.token, membrane); !s) {
    if (s.error().kind == ErrorKind::conflict) {
      return error_response(409, "a membrane with id " + json(id).dump() + " exists");
    }
    return error_response(s.error());
  }
  return {201, membrane_json(membrane)};
}

Response Api::query_membranes(const Authorized& who, std::string_view target) {
  std::size_t q = target.find('?');
  auto params = core::parse_form_query(q == std::string_view::npos ? std::string_view{} : target.substr(q + 1));
  if (!params) return error_response(params.error());
  std::optional<std::string> id, last_id, limit_text, exports_of, grant;
  for (auto& [name, value] : *params) {
    std::optional<std::string>* slot = name == "id"          ? &id
                                       : name == "lastId"    ? &last_id
                                       : name == "limit"     ? &limit_text
                                       : name == "exportsOf" ? &exports_of
                                       : name == "grant"     ? &grant
                                                             : nullptr;
    if (slot == nullptr) continue;  // other parameters are not ours to judge
    if (slot->has_value()) return error_response(400, name + " is given more than once");
    *slot = std::move(value);
  }
  if (static_cast<int>(id.has_value()) + exports_of.has_value() + grant.has_value() > 1) {
    return error_response(400, "id, exportsOf and grant cannot be combined");
  }
  if (grant) {
    auto found = store_.find_grant(who.resolved.tenant_id, *grant);
    if (!found) return error_response(found.error());
    json exports = json::array();
    if (*found) exports.push_back(grant_entry_json(**found));
    return {200, json{{"exports", std::move(exports)}, {"completed", true}}};
  }
  if (id) {
    auto found = store_.find_membrane(who.resolved.tenant_id, *id);
    if (!found) return error_response(found.error());
    json membranes = json::array();
    if (*found) membranes.push_back(membrane_json(**found));
    return {200, json{{"membranes", std::move(membranes)}, {"completed", true}}};
  }
  std::size_t limit = 1;
  if (limit_text) {
    const std::string& t = *limit_text;
    std::uint64_t n = 0;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), n);
    bool overflow = ec == std::errc::result_out_of_range;
    if (t.empty() || end != t.data() + t.size() || (ec != std::errc() && !overflow) || (!overflow && n == 0)) {
      return error_response(400, "limit must be a positive integer");
    }
    limit = overflow ? kMaxQueryLimit : static_cast<std::size_t>(std::min<std::uint64_t>(n, kMaxQueryLimit));
  }
  if (exports_of) {
    auto grants = store_.list_grants(who.resolved.tenant_id, *exports_of, last_id, limit);
    if (!grants) return error_response(grants.error());
    json exports = json::array();
    for (const auto& entry : grants->grants) exports.push_back(grant_entry_json(entry));
    return {200, json{{"exports", std::move(exports)}, {"completed", grants->completed}}};
  }
  auto page = store_.list_membranes(who.resolved.tenant_id, last_id, limit);
  if (!page) return error_response(page.error());
  json membranes = json::array();
  for (const auto& m : page->membranes) membranes.push_back(membrane_json(m));
  return {200, json{{"membranes", std::move(membranes)}, {"completed", page->completed}}};
}

core::Result<core::ExportRequest> Api::parse_export(std::string_view body) const {
  return core::parse_export_request(body, {settings_.max_timeout_ms}, std::chrono::system_clock::now());
}

Response Api::export_parsed(const Authorized& who, const core::ExportRequest& request) {
  if (auto refused = admit_use(who, std::chrono::steady_clock::now(), true).refusal) return *refused;
  return export_admitted(who, request);
}

Response Api::export_admitted(const Authorized& who, const core::ExportRequest& request) {
  const core::ExportConfig& config = request.config;
  // contract §9: a profile must exist and be granted to this tenant (the same 400 for both, so a
  // tenant cannot probe for profiles granted to others).
  if (const auto* uri = std::get_if<core::UriExport>(&config)) {
    if (const auto* aws4 = std::get_if<core::Aws4Signing>(&uri->signing); aws4 && aws4->credentials_profile) {
      const std::string& profile = *aws4->credentials_profile;
      if (!settings_.aws_config || !settings_.aws_config->granted(profile, who.resolved.tenant_id)) {
        return error_response(core::Error::invalid(
            "credentials", "credentials names no profile granted to this tenant: \"" + profile + "\""));
      }
    }
  }
  auto token = core::Token::generate();
  auto grant = new_grant(request.grant);
  if (!token || !grant) return error_response(500, "Internal Server Error");
  std::optional<storage::Resolved> target;
  core::Status stored = std::visit(
      [&](const auto& c) -> core::Status {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, core::UriExport>) {
          return store_.export_uri(who.token, *token, c, *grant);
        } else {
          if (auto resolved = store_.resolve(c.capability.token())) target = std::move(*resolved);
          return store_.export_reexport(who.token, *token, c.capability.token(), *grant);
        }
      },
      config);
  if (!stored) return error_response(stored.error());
  json body = grant_json(who, request.grant, target);
  body["capability"] = uri_of(*token);
  body["id"] = grant->id;
  body["revoke"] = uri_of(grant->revoke);
  return {201, std::move(body)};
}

std::optional<Response> Api::check_operation_name(std::string_view stated) {
  static constexpr std::array kOperations = {CapabilityKind::create,      CapabilityKind::query,
                                             CapabilityKind::export_,     CapabilityKind::revoke,
                                             CapabilityKind::delete_self, CapabilityKind::uri,
                                             CapabilityKind::revoke_grant};
  if (std::any_of(kOperations.begin(), kOperations.end(),
                  [&](CapabilityKind kind) { return storage::to_string(kind) == stated; })) {
    return std::nullopt;
  }
  return error_response(400, std::string(core::kCapabilityOperationHeader) +
                                 " must be one of create, query, export, revoke, deleteSelf, invoke, revokeGrant");
}

std::optional<Response> Api::check_stated_operation(const Authorized& who, std::string_view stated) {
  if (who.operation() == stated) return std::nullopt;
  Response refused = error_response(409, "this capability performs " + std::string(who.operation()) + ", not " +
                                             std::string(stated) + "; nothing was done");
  refused.reason = "operation";
  refused.performs = who.operation();
  return refused;
}

std::optional<Response> Api::check_address(const Authorized& who, const core::IpAddress& requester) const {
  for (const auto& grant : who.resolved.chain) {
    if (!core::admits_address(grant.allow_from, requester)) {
      Response refused = error_response(403, "this capability may not be used from this address");
      refused.reason = "address";
      return refused;
    }
  }
  return std::nullopt;
}

UseAdmission Api::admit_use(const Authorized& who, std::chrono::steady_clock::time_point now, bool may_write) {
  if (who.resolved.chain.empty()) return {};
  const auto& chain = who.resolved.chain;
  if (std::none_of(chain.begin(), chain.end(), [](const auto& g) { return g.max_uses || g.rate_limit; })) {
    // Unlimited grants take no lock of the rate windows or the use ledger: only their count.
    store_.count_use(chain);
    return {};
  }
  if (auto wait = rates_.admit(who.resolved.chain, now)) {
    Response refused = error_response(429, "this capability's rate limit is reached");
    refused.retry_after = *wait;
    refused.reason = "rate";
    return {true, std::move(refused)};
  }
  return take_use(who, may_write);
}

UseAdmission Api::take_use(const Authorized& who, bool may_write) {
  std::optional<bool> taken = store_.take_uses_in_hand(who.resolved.chain);
  if (!taken && may_write) {
    auto asked = store_.take_uses(who.resolved.chain);
    if (!asked) return {true, error_response(asked.error())};
    taken = *asked;
  }
  if (!taken) return {false, std::nullopt};
  if (!*taken) return {true, error_response(core::Error::unauthorized("", "used-up"))};
  store_.count_use(who.resolved.chain);
  return {};
}

Response Api::revoke_grant(const Authorized& who) {
  if (auto s = store_.revoke_grant(who.token); !s) return error_response(s.error());
  return accepted_revoke();
}

Response Api::revoke(const Authorized& who) {
  if (auto s = store_.revoke_membrane(who.token); !s) return error_response(s.error());
  return accepted_revoke();
}

Response Api::accepted_revoke() const {
  Response response = accepted();
  response.count_cut = settings_.count_cut;
  return response;
}

// The revoke is done whatever the count does: a count that fails is left out.
std::optional<std::int64_t> Api::grants_cut_by(const storage::Resolved& revoker) {
  auto cut = store_.grants_cut_by(revoker);
  if (!cut) return std::nullopt;
  return *cut;
}

Response Api::delete_self(const Authorized& who) {
  if (auto s = store_.delete_tenant(who.token); !s) return error_response(s.error());
  return accepted();
}

}  // namespace membraned::api
