// What the API needs from storage, independent of the database behind it. Backends keep every
// SQL dialect detail to themselves: the API never sees a statement.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/export_config.hpp"
#include "core/grant_limits.hpp"
#include "core/result.hpp"
#include "core/token.hpp"

namespace membraned::storage {

using core::Result;
using core::Status;
using core::Token;

enum class CapabilityKind : int {
  create = 1,
  query = 2,
  delete_self = 3,
  export_ = 4,
  revoke = 5,
  uri = 6,
  reexport = 7,
  revoke_grant = 8,  // a grant's own revoke capability (contract §12)
};
std::string_view to_string(CapabilityKind kind);

struct TenantTokens {
  Token create;
  Token query;
  Token delete_self;
};

struct Membrane {
  std::string id;
  Token export_token;
  Token revoke_token;
};

// The store's clock for what it records and for expiry; tests give their own.
using WallClock = std::function<std::chrono::system_clock::time_point()>;

using MembraneRow = std::int64_t;
using CapabilityRow = std::int64_t;

// A grant on the chain of a resolved capability, with what limits its use (its expiry and
// revocation were checked by the resolution itself).
struct ChainGrant {
  CapabilityRow row = 0;
  std::string id;
  std::optional<std::uint64_t> max_uses;
  std::optional<core::RateLimit> rate_limit;
  std::vector<core::Cidr> allow_from;  // empty: any address
};

// A token resolved through its whole chain of re-exports, every link checked alive: the
// capability that finally acts and on what.
struct Resolved {
  CapabilityKind kind;              // of the capability at the end of the chain
  std::string tenant_id;            // whose it is
  std::optional<MembraneRow> membrane;  // export/revoke: the membrane they act on
  // uri: the (unsealed) upstream configuration, shared by the resolutions of grants that carry the
  // same one (its secrets are wiped when the last holder lets go).
  std::shared_ptr<const core::UriExport> uri;
  std::string config_digest;  // uri: SHA-256 of the unsealed configuration (the cache shares by it)
  CapabilityRow presented;          // the row of the token actually presented
  int depth = 0;                    // re-export links followed to the acting capability
  std::size_t walked = 0;           // capabilities whose life this one depends on, itself included
  // The revocation epoch of the database when this was resolved (see still_current); nullopt
  // when not known (a resolution made inside a write transaction).
  std::optional<std::int64_t> epoch;
  // The grants from the presented capability up to the acting one (presented first): each use
  // is a use of all of them (contract §11). Empty for a tenant's or a membrane's own capability.
  std::vector<ChainGrant> chain;
  // The earliest expiry of anything it depends on: from then on it no longer resolves.
  std::optional<std::chrono::system_clock::time_point> expires_at;
  std::optional<CapabilityRow> target;  // revoke_grant: the grant it revokes
  // The id of the membrane the presented capability belongs to or was exported through (the
  // audit log's `membrane`); empty for a tenant's own capabilities.
  std::string membrane_id;
  std::string target_grant_id;  // revoke_grant: the id of the grant it revokes (the audit log's `grant`)
};

// Where a grant leads, for the inventory (contract §12): the upstream's scheme, authority and
// path (never its query) and the method, for grants that end at a uri export.
struct GrantTarget {
  std::string target;
  std::optional<std::string> method;
};

// Whether a grant's token acts now, and if not, why (contract §12): `revoked` by its own revoke
// capability; `cut` by a revocation above it (its membrane, a grant it stands for, the tenant);
// `expired`, its own expiry or one above it; `used_up`, all of its maxUses counted.
enum class GrantState { active, revoked, cut, expired, used_up };
std::string_view to_string(GrantState state);

// A grant as the inventory shows it (contract §12): never a token or a secret.
struct GrantEntry {
  std::string id;
  std::optional<std::string> label;
  std::string membrane;                   // the id of the membrane it was exported through
  bool reexport = false;
  std::string operation;                  // what it finally does: "invoke", "create", ...
  std::optional<GrantTarget> target;      // for grants that end at a uri export
  std::optional<std::string> stands_for;  // a re-export's parent grant, if that is a grant
  std::int64_t created_at = 0;            // Unix seconds
  std::optional<std::int64_t> expires_at_ms;
  std::optional<std::int64_t> max_uses;
  std::int64_t uses = 0;
  std::optional<std::int64_t> last_used_at_ms;
  std::optional<core::RateLimit> rate_limit;
  std::vector<core::Cidr> allow_from;
  std::optional<std::int64_t> revoked_at_ms;
  GrantState state = GrantState::active;
};

struct GrantPage {
  std::vector<GrantEntry> grants;
  bool completed = true;  // no grant after the last one returned
};

// What an export records about its grant besides the capability: its public handle, its own
// revoke capability, and its limits (contract §11-12).
struct NewGrant {
  std::string id;
  Token revoke;
  core::GrantLimits limits;
};

// What one tenant may store, so that one holder of a create or export capability cannot fill the
// disk for everyone: membranes, grants (exports and re-exports), and the bytes of what is sealed
// (configurations and membrane tokens). Revoked ones count too: their rows stay. 0: no limit.
struct TenantQuotas {
  std::uint64_t membranes = 0;
  std::uint64_t grants = 0;
  std::uint64_t stored_bytes = 0;
};

// The resolution cache (storage/resolution_cache.hpp): its default budget, and what a lookup
// came to. `stale`: an entry was there but no longer serves (a revocation since, or its expiry).
inline constexpr std::size_t kDefaultResolutionCacheBytes = std::size_t{64} << 20;
enum class ResolutionLookup { hit, miss, stale };
struct ResolutionCacheStats {
  std::uint64_t hits = 0, misses = 0, stale = 0;
  std::uint64_t evictions = 0;  // entries dropped for room (not by a new epoch)
  std::size_t entries = 0;
  std::size_t bytes = 0;
  std::size_t max_bytes = 0;
};

struct MembranePage {
  std::vector<Membrane> membranes;
  bool completed = true;  // no membrane after the last one returned
};

// A tenant as the operator sees it (membraned admin): never one of its tokens.
struct TenantEntry {
  std::string id;
  std::int64_t created_at = 0;  // Unix seconds
  bool deleted = false;
};

struct TenantPage {
  std::vector<TenantEntry> tenants;
  bool completed = true;  // no tenant after the last one returned
};

// What an operator's revoke or deletion acted on (the rows, for grants_cut_by).
struct OperatorRevoke {
  std::optional<MembraneRow> membrane{};  // a membrane revoked
  std::optional<CapabilityRow> grant{};   // a grant revoked
  bool already = false;                   // the grant was revoked, or the tenant deleted, before
};

// A capability depends on what it stands for (a re-export's parent) and on the capability that
// was presented to make it (its "via": the create capability behind a membrane's own
// capabilities, the export capability behind an export). Both are bounded, so resolution stays
// one bounded query.
inline constexpr int kMaxReexportDepth = 64;
inline constexpr std::size_t kMaxDependencies = 256;

class Store {
 public:
  virtual ~Store() = default;

  // Whether a call may wait on the network (a database server), not only on local disk: the
  // server then keeps such calls off its I/O threads.
  virtual bool waits_on_network() const { return false; }
  // "sqlite" or "postgresql": what /healthz reports.
  virtual std::string_view backend_name() const = 0;

  virtual Result<std::string> create_tenant(const TenantTokens& tokens) = 0;  // the new tenant id
  virtual Result<bool> has_tenants() = 0;  // any tenant ever created (deleted ones included)
  // The first tenant: created only if no tenant was ever created, atomically, so that several
  // instances starting at once on an empty database make exactly one. nullopt: one existed.
  virtual Result<std::optional<std::string>> create_first_tenant(const TenantTokens& tokens) = 0;

  // Unknown, revoked or cut anywhere along its chain: an unauthorized error (401, the same for
  // all). A membrane's own revoke capability keeps resolving after its membrane is revoked, so a
  // repeated revoke answers 202 again; it dies with its tenant.
  virtual Result<Resolved> resolve(const Token& token) = 0;
  // How the cache of resolutions serves (for /metrics).
  virtual ResolutionCacheStats resolution_cache_stats() const = 0;

  // The check an invocation passes at the moment it is sent (docs/architecture.md, "Revocation at
  // send time"): true when nothing was revoked since `resolved` was made, known without waiting
  // on the network (a local database is read; a networked one is watched continuously, and its
  // view trusted only while younger than its bound). false: maybe something was, or it cannot
  // tell now; resolve the token again before sending.
  virtual bool still_current(const Resolved& resolved) = 0;
  // How long a revoke's (or deleteSelf's) answer waits after its commit: when it has passed, no
  // instance sharing the database can still send a request on what it cut.
  virtual std::chrono::milliseconds revocation_settle() const = 0;

  // Operations that write take the capability presented for them and resolve it again inside
  // their transaction: a revoke that committed after the caller was authorised wins (401). What
  // they create records the presented capability as its "via", so it dies with it: whatever a
  // holder made through a membrane is cut when that membrane is revoked.

  // conflict when a live membrane of the tenant has this id. `presented` resolves to create.
  virtual Status create_membrane(const Token& presented, const Membrane& membrane) = 0;
  virtual Result<std::optional<Membrane>> find_membrane(const std::string& tenant_id,
                                                        const std::string& id) = 0;
  // Live membranes ordered by id (byte order), strictly after `after`, at most `limit`.
  virtual Result<MembranePage> list_membranes(const std::string& tenant_id,
                                              const std::optional<std::string>& after,
                                              std::size_t limit) = 0;

  // `presented` resolves to export. `grant`: the export's handle, revoke capability and limits.
  virtual Status export_uri(const Token& presented, const Token& token, const core::UriExport& config,
                            const NewGrant& grant) = 0;
  // not_found when `target` does not resolve (unknown, revoked, cut).
  virtual Status export_reexport(const Token& presented, const Token& token, const Token& target,
                                 const NewGrant& grant) = 0;
  // One use of every grant of `chain` with maxUses (contract §11): true when each had one left
  // (all taken), false when one is used up (none taken). take_uses_in_hand answers without I/O
  // when it can (nullopt: call take_uses, which may write to the database).
  virtual std::optional<bool> take_uses_in_hand(const std::vector<ChainGrant>& chain) = 0;
  virtual Result<bool> take_uses(const std::vector<ChainGrant>& chain) = 0;
  // A use admitted (contract §12: the inventory's uses and lastUsedAt): counted in memory for
  // every grant of the chain, written within kUsageFlushInterval, never on the caller's thread.
  virtual void count_use(const std::vector<ChainGrant>& chain) = 0;
  // Writes what was counted now (a clean stop, and tests); otherwise the store does it by itself.
  virtual Status flush_usage() = 0;

  // `presented` resolves to revoke_grant. Effective for the grant, every re-export below it and
  // everything made through them when it returns; again 202 when repeated.
  virtual Status revoke_grant(const Token& presented) = 0;

  // The inventory (contract §12): the grants exported through the tenant's live membrane of this
  // id, revoked ones included, ordered by grant id (byte order), strictly after `after`, at most
  // `limit`; and one grant of the tenant by id.
  virtual Result<GrantPage> list_grants(const std::string& tenant_id, const std::string& membrane_id,
                                        const std::optional<std::string>& after, std::size_t limit) = 0;
  virtual Result<std::optional<GrantEntry>> find_grant(const std::string& tenant_id, const std::string& grant_id) = 0;

  // `presented` resolves to revoke. Effective for every capability of the membrane and all that
  // depends on them when it returns.
  virtual Status revoke_membrane(const Token& presented) = 0;
  // How many grants the revoke `revoker` (a membrane's or a grant's revoke capability, resolved)
  // cut: the grants that depend on what it revokes (a revoked grant itself included), less those
  // dead before (below a grant revoked on its own, or another revoked membrane). A read, counted
  // when asked (the audit
  // log's `cut`), after the revoke: the revoke itself never walks what it cuts.
  virtual Result<std::int64_t> grants_cut_by(const Resolved& revoker) = 0;
  // `presented` resolves to deleteSelf.
  virtual Status delete_tenant(const Token& presented) = 0;

  // The operator's (membraned admin): no capability is presented, whoever holds the database and
  // its master key acts. Tenants ordered by id (byte order), strictly after `after`, at most
  // `limit`, deleted ones included; and one tenant by id.
  virtual Result<TenantPage> list_tenants(const std::optional<std::string>& after, std::size_t limit) = 0;
  virtual Result<std::optional<TenantEntry>> find_tenant(const std::string& tenant_id) = 0;
  // Revocations as the operator, each the same write as the capability's (one row marked and the
  // revocation epoch set anew, in one durable transaction): effective for everything that depends
  // on it when it returns, and on every instance once revocation_settle() has passed after it.
  // not_found: the tenant has no live membrane of this id (revoked or cut ones free their id).
  virtual Result<OperatorRevoke> revoke_membrane_by_id(const std::string& tenant_id, const std::string& membrane_id) = 0;
  // not_found: the tenant has no grant of this id. Again success when repeated (`already`).
  virtual Result<OperatorRevoke> revoke_grant_by_id(const std::string& tenant_id, const std::string& grant_id) = 0;
  // The tenant and all it holds, as deleteSelf. not_found: no such tenant. Again success when
  // repeated (`already`).
  virtual Result<OperatorRevoke> delete_tenant_by_id(const std::string& tenant_id) = 0;
  // How many grants an operator's revoke cut, counted as grants_cut_by above; 0 for a deletion.
  virtual Result<std::int64_t> grants_cut_by(const OperatorRevoke& revoked) = 0;
};

}  // namespace membraned::storage
