// The seam between the membrane rules (storage/membrane_store) and a database: what the rules
// need, in primitives a SQL dialect can answer, and nothing that decides anything. A backend
// keeps its connections, its pool, its migrations and its SQL; it never knows what a revoke or
// an export means. Neither sqlite3.h nor libpq-fe.h is visible from here.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "storage/resolution.hpp"
#include "storage/store.hpp"

namespace membraned::storage {

// What one walk statement saw: every capability the walked one depends on, and the revocation
// epoch of the same snapshot (none when the digest is unknown).
struct Walk {
  std::map<CapabilityRow, Link> links;
  std::optional<std::int64_t> epoch;
};

// One capability row to insert. The token itself is never stored, only its digest.
struct CapabilityRecord {
  std::string digest;
  CapabilityKind kind = CapabilityKind::uri;
  std::string tenant_id;
  std::optional<MembraneRow> membrane{};       // the membrane it belongs to or was exported through
  std::optional<CapabilityRow> parent{};       // re-export: what it stands for
  std::optional<CapabilityRow> via{};          // the capability presented to make it
  std::optional<std::string> sealed_config{};  // uri: the sealed export configuration
  std::int64_t created_at = 0;               // Unix seconds
  std::optional<CapabilityRow> target{};      // revoke_grant: the grant it revokes
};

struct MembraneRecord {
  std::string tenant_id;
  std::string id;
  std::string sealed_export;  // the membrane's two tokens, sealed: query returns them again
  std::string sealed_revoke;
  std::int64_t created_at = 0;
};

// A membrane row not marked revoked. It may still be cut (made through a capability that died
// since): the rules find out by walking from its export capability.
struct StoredMembrane {
  MembraneRow row = 0;
  std::string id;
  std::string sealed_export;
  std::string sealed_revoke;
  std::string export_digest;  // of its export capability; empty if it has none
};

// A grant's row as the inventory reads it: the entry, with its target still sealed.
struct StoredGrantEntry {
  GrantEntry entry;                          // target and allow_from empty
  std::optional<std::string> sealed_target;  // the GrantTarget, sealed
  std::string allow_from_text;               // as stored: CIDRs, comma-separated
  std::string digest;                        // its capability's: what its state is read from
  CapabilityRow row = 0;                     // its capability's row
};

// A grant's use budget as the database holds it: maxUses, and how many of them instances have
// reserved (each hands its reservation out from memory).
struct GrantUses {
  std::int64_t max_uses = 0;
  std::int64_t reserved = 0;
};

// What a write adds to its tenant's stored data (TenantQuotas).
struct Usage {
  std::int64_t membranes = 0;
  std::int64_t grants = 0;
  std::int64_t stored_bytes = 0;
};

// Names of database-wide locks a write transaction may take. SQLite's write transaction already
// excludes every other writer; PostgreSQL takes a transaction-scoped advisory lock.
enum class Exclusive { schema, first_tenant };

// One leased connection, inside a transaction (write) or not (read). Used by one thread.
class BackendSession {
 public:
  virtual ~BackendSession() = default;

  // Everything `digest` depends on, in one statement (so one snapshot): the capability, and from
  // each capability reached, its parent and its via, with its tenant's and membrane's state.
  virtual core::Result<Walk> walk(std::string_view digest) = 0;
  // The walk of each digest, keyed by digest; unknown digests are absent. One statement where
  // the dialect allows it; by default one walk each.
  virtual core::Result<std::map<std::string, Walk>> walk_each(const std::vector<std::string>& digests);
  virtual core::Result<std::int64_t> epoch() = 0;
  virtual core::Status set_epoch(std::int64_t epoch) = 0;
  virtual core::Status take_exclusive(Exclusive lock) = 0;

  virtual core::Result<std::optional<std::string>> meta(std::string_view key) = 0;
  virtual core::Status insert_meta(std::string_view key, std::string_view value) = 0;

  virtual core::Result<bool> has_tenants() = 0;
  // Adds `add` to the tenant's usage if every total stays within `limits` (0: none), in one
  // statement (concurrent writers cannot both pass the last unit); false, and nothing added,
  // otherwise.
  virtual core::Result<bool> charge(const std::string& tenant_id, const Usage& add, const TenantQuotas& limits) = 0;
  virtual core::Result<Usage> usage(const std::string& tenant_id) = 0;
  virtual core::Status insert_tenant(const std::string& id, std::int64_t created_at) = 0;
  // Every tenant, deleted ones included, ordered by id (byte order), strictly after `after`, at
  // most `limit`; and one by id.
  virtual core::Result<std::vector<TenantEntry>> tenants(const std::optional<std::string>& after,
                                                         std::size_t limit) = 0;
  virtual core::Result<std::optional<TenantEntry>> tenant(const std::string& id) = 0;
  // The tenant marked deleted and every membrane of it revoked.
  virtual core::Status mark_tenant_deleted(const std::string& tenant_id) = 0;

  virtual core::Result<CapabilityRow> insert_capability(const CapabilityRecord& record) = 0;
  // The grant row of the capability `row` (an export or a re-export): what it finally does
  // (`operation`) and where it leads (`sealed_target`, a sealed GrantTarget) for the inventory.
  virtual core::Status insert_grant(CapabilityRow row, const StoredGrant& grant, const std::string& operation,
                                    const std::optional<std::string>& sealed_target) = 0;
  // Marks the grant revoked at `at_ms` (Unix milliseconds) unless it already is.
  virtual core::Status mark_grant_revoked(CapabilityRow row, std::int64_t at_ms) = 0;
  // A grant's maxUses and the uses handed to instances so far, locked against other writers
  // until the transaction ends; nullopt when the grant has no maxUses.
  virtual core::Result<std::optional<GrantUses>> lock_grant_uses(CapabilityRow row) = 0;
  // Adds `count` to the uses handed to instances (callers keep the total within maxUses).
  virtual core::Status add_reserved_uses(CapabilityRow row, std::int64_t count) = 0;
  // Adds `count` uses to the grant's count, and moves its last use to `last_used_ms` if later.
  virtual core::Status add_uses(CapabilityRow row, std::int64_t count, std::int64_t last_used_ms) = 0;
  // The grants that depend on the membrane `membrane` (its own revoke capability aside) or on the
  // grant `grant` (itself included), through parents and vias, not counting those revoked on
  // their own and what is below them (they were cut before). See Store::grants_cut_by.
  virtual core::Result<std::int64_t> count_grants_below(std::optional<MembraneRow> membrane,
                                                        std::optional<CapabilityRow> grant) = 0;
  // The inventory: see Store::list_grants and Store::find_grant.
  virtual core::Result<std::vector<StoredGrantEntry>> grants_of_membrane(const std::string& tenant_id,
                                                                         const std::string& membrane_id,
                                                                         const std::optional<std::string>& after,
                                                                         std::size_t limit) = 0;
  virtual core::Result<std::optional<StoredGrantEntry>> grant_by_id(const std::string& tenant_id,
                                                                    const std::string& grant_id) = 0;
  // conflict when the tenant has a membrane of this id not marked revoked.
  virtual core::Result<MembraneRow> insert_membrane(const MembraneRecord& record) = 0;
  virtual core::Status mark_membrane_revoked(MembraneRow row) = 0;
  virtual core::Result<std::optional<StoredMembrane>> membrane(const std::string& tenant_id,
                                                               const std::string& id) = 0;
  // Ordered by id (byte order), strictly after `after`, at most `limit`.
  virtual core::Result<std::vector<StoredMembrane>> membranes(const std::string& tenant_id,
                                                              const std::optional<std::string>& after,
                                                              std::size_t limit) = 0;
};

using SessionWork = std::function<core::Status(BackendSession&)>;

// The revocation epoch as a backend last read it, and when that read began (steady clock).
struct EpochReading {
  std::int64_t epoch = 0;
  std::chrono::steady_clock::time_point started;
};

class Backend {
 public:
  virtual ~Backend() = default;

  virtual std::string_view name() const = 0;  // "sqlite", "postgresql"
  virtual bool waits_on_network() const = 0;

  // `work` inside one write transaction: committed when it returns ok (and the commit is durable
  // when this returns), rolled back otherwise.
  virtual core::Status write(const SessionWork& work) = 0;
  // `work` outside a transaction: each statement reads its own snapshot.
  virtual core::Status read(const SessionWork& work) = 0;

  // Called when the backend found a connection lost (a restart, a failover): what was read
  // before may not be what the database now holds.
  virtual void on_connection_lost(std::function<void()> callback) { (void)callback; }

  // A backend whose reads wait on the network keeps reading the revocation epoch in the
  // background (watches_epoch): epoch_view() is its latest reading (none before the first), to be
  // trusted only while younger than epoch_view_bound(). A local database is read when needed.
  virtual bool watches_epoch() const { return false; }
  virtual std::optional<EpochReading> epoch_view() const { return std::nullopt; }
  virtual std::chrono::milliseconds epoch_view_bound() const { return std::chrono::milliseconds(0); }
};

}  // namespace membraned::storage
