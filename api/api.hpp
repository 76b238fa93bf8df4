// The operations of contract §4 on resolved capabilities: JSON in, JSON out, no sockets.
// The server calls authorize() once the headers are in (the capability decides how large a body
// may be), then handle() with the body.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "core/aws_config.hpp"
#include "core/export_config.hpp"
#include "core/result.hpp"
#include "api/grant_rates.hpp"
#include "core/grant_limits.hpp"
#include "core/token.hpp"
#include "storage/store.hpp"

namespace membraned::api {

struct Settings {
  std::string authority;               // written into every capability URI
  std::uint64_t max_timeout_ms = 30000;  // exports' timeoutMs are lowered to it
  // contract §9: the operator's --aws-config profiles and their grants; none: no profile exists.
  const core::AwsConfig* aws_config = nullptr;
  // A revoke's answer asks for how many grants it cut to be counted (Response::count_cut; the
  // count is Api::grants_cut_by, a read as long as what was cut is large), only when something
  // records it (the audit log).
  bool count_cut = false;
};

struct Response {
  Response(int status_code = 200, nlohmann::json json_body = {}) : status(status_code), body(std::move(json_body)) {}
  int status;
  nlohmann::json body;
  std::optional<std::uint32_t> retry_after;  // a 429's Retry-After header, in seconds
  std::string reason;                        // a refusal's reason (core::Error::reason), never sent
  bool count_cut = false;  // an accepted revoke whose grants cut are to be counted (Settings::count_cut)
  std::string performs;  // a refused stated operation (409): what the capability performs, sent as
                         // the answer's X-Capability-Operation
  std::string detail;    // a 5xx's cause, for the log only; never a secret
};

// Whether one use of a capability is admitted (contract §11: its grants' uses and rates).
struct UseAdmission {
  bool decided = true;              // false: the store must be asked (take_use with may_write)
  std::optional<Response> refusal;  // decided and refused: 401 used up, or 429 over a rate
};

struct Authorized {
  core::Token token;
  storage::Resolved resolved;
  bool is_invocation() const { return resolved.kind == storage::CapabilityKind::uri; }
  std::string_view operation() const { return storage::to_string(resolved.kind); }
};

class Api {
 public:
  Api(storage::Store& store, Settings settings) : store_(store), settings_(std::move(settings)) {}

  // From the Authorization header alone. Any failure is the same 401.
  core::Result<Authorized> authorize(std::string_view authorization_header);
  // The same capability resolved afresh (an invocation about to be sent, see Store::still_current).
  core::Result<Authorized> reauthorize(const core::Token& token);
  // How many grants the accepted revoke `revoker` cut (Store::grants_cut_by); none when the count
  // failed (the revoke stands). It walks what was cut: not on an I/O thread, not before the 202.
  std::optional<std::int64_t> grants_cut_by(const storage::Resolved& revoker);
  // Whether `who` may still act, known without waiting on the network (Store::still_current).
  bool still_current(const Authorized& who) { return store_.still_current(who.resolved); }
  // How long a revoke's 202 waits after its commit (Store::revocation_settle).
  std::chrono::milliseconds revocation_settle() const { return store_.revocation_settle(); }

  // A management operation (create, query, export, revoke, deleteSelf); the method does not
  // matter, the capability decides. `target` carries query's parameters.
  Response handle(const Authorized& who, std::string_view target, std::string_view body);

  // Export in two steps, for a caller that looks at the parsed body in between (the server
  // checks the upstream's addresses): the body parsed once, with this service's limits, then
  // stored. handle() does both for an export capability.
  core::Result<core::ExportRequest> parse_export(std::string_view body) const;
  // The 201 carries the grant's handle (`id`), its own `revoke` capability and the limits it
  // lives under (contract §12).
  Response export_parsed(const Authorized& who, const core::ExportRequest& request);

  // contract §2: the operation a client states in X-Capability-Operation. A name that is no
  // operation is 400, known before the capability is; one that is not what `who` performs is 409
  // with the message naming both and `performs` set (reason "operation"). None when they agree.
  static std::optional<Response> check_operation_name(std::string_view stated);
  static std::optional<Response> check_stated_operation(const Authorized& who, std::string_view stated);

  // contract §11: 403 unless every grant of the chain admits the requester's address.
  std::optional<Response> check_address(const Authorized& who, const core::IpAddress& requester) const;
  // contract §11: one use, counted against every rate and maxUses of the chain (a capability
  // without them is admitted at once). `may_write`: the store may reserve uses (a write); without
  // it an answer that needs one is left undecided. Call once per use: a rate counts each call.
  UseAdmission admit_use(const Authorized& who, std::chrono::steady_clock::time_point now, bool may_write);
  // The rest of a use admitted undecided (admit_use counted the rates already).
  UseAdmission take_use(const Authorized& who, bool may_write);

  // GET /healthz: 200 {"status":"ok","store":"sqlite"|"postgresql"} when the store answers a
  // query, else 503.
  Response health();

  // A new tenant: {"id", "capabilities": {"create", "query", "deleteSelf"}}.
  core::Result<nlohmann::json> create_tenant();
  // The same for the first tenant, only if no tenant was ever created (exactly one, however many
  // instances start at once on an empty store); nullopt when one exists.
  core::Result<std::optional<nlohmann::json>> create_first_tenant();

  // {"statusCode", "error", "message"} for an error (internal detail never leaves).
  static Response error_response(const core::Error& error);
  static Response error_response(int status, std::string message);
  static std::string_view reason_phrase(int status);

  std::string uri_of(const core::Token& token) const;
  // authorize(), handle() and health() may then wait on the network (see Store).
  bool waits_on_network() const { return store_.waits_on_network(); }
  storage::ResolutionCacheStats resolution_cache_stats() const { return store_.resolution_cache_stats(); }
  // Once the listening port is known (it may have been 0).
  void set_authority(std::string authority) { settings_.authority = std::move(authority); }

 private:
  Response create_membrane(const Authorized& who, std::string_view body);
  Response query_membranes(const Authorized& who, std::string_view target);
  Response revoke(const Authorized& who);
  Response revoke_grant(const Authorized& who);
  Response accepted_revoke() const;  // 202, asking for the count of what was cut when it is recorded
  Response delete_self(const Authorized& who);
  nlohmann::json membrane_json(const storage::Membrane& membrane) const;
  nlohmann::json tenant_json(const std::string& id, const storage::TenantTokens& tokens) const;

  Response export_admitted(const Authorized& who, const core::ExportRequest& request);

  storage::Store& store_;
  Settings settings_;
  GrantRates rates_;
};

// One inventory entry (contract §12): every field present, null when it does not apply; never a
// token or a secret.
nlohmann::json grant_entry_json(const storage::GrantEntry& entry);

// Membrane ids: non-empty, at most 512 characters (Unicode code points) of valid UTF-8 without
// control characters; spaces and '/' are fine.
core::Status validate_membrane_id(std::string_view id);

}  // namespace membraned::api
