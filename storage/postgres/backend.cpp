#include "storage/postgres/backend.hpp"

#include <algorithm>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "core/encoding.hpp"
#include "storage/postgres/connection.hpp"

namespace membraned::storage::pg {

using core::Error;
using core::Result;
using core::Status;

namespace {

// Migrations, applied in order at start; schema_version holds how many ran. Never edit one that
// has shipped: add the next.
constexpr const char* kMigrations[] = {
    // 1: tenants, membranes, capabilities, the revocation epoch. Membrane ids are bytea: ordered
    // by their bytes (as SQLite orders them) and free of any encoding rule.
    R"sql(
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
    CREATE TABLE tenants (
      id TEXT PRIMARY KEY,
      created_at BIGINT NOT NULL,
      deleted BOOLEAN NOT NULL DEFAULT false
    );
    CREATE TABLE membranes (
      row_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      tenant_id TEXT NOT NULL REFERENCES tenants(id),
      id BYTEA NOT NULL,
      export_token BYTEA NOT NULL,   -- sealed: query returns it again
      revoke_token BYTEA NOT NULL,   -- sealed
      revoked BOOLEAN NOT NULL DEFAULT false,
      created_at BIGINT NOT NULL
    );
    -- One live membrane per id; a revoked one frees its id at once. Also the listing's order.
    CREATE UNIQUE INDEX membranes_live_id ON membranes(tenant_id, id) WHERE NOT revoked;
    CREATE TABLE capabilities (
      row_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
      digest BYTEA NOT NULL UNIQUE,  -- SHA-256 of the token; the token itself is never stored
      kind SMALLINT NOT NULL,
      tenant_id TEXT NOT NULL REFERENCES tenants(id),
      membrane_row BIGINT REFERENCES membranes(row_id),     -- the membrane it belongs to or was exported through
      parent_row BIGINT REFERENCES capabilities(row_id),    -- re-export: what it stands for
      via_row BIGINT REFERENCES capabilities(row_id),       -- the capability presented to make it
      config BYTEA,                  -- uri: the sealed export configuration
      created_at BIGINT NOT NULL
    );
    CREATE INDEX capabilities_membrane ON capabilities(membrane_row, kind);
    CREATE INDEX capabilities_parent ON capabilities(parent_row);
    CREATE INDEX capabilities_via ON capabilities(via_row);
    -- Bumped in the transaction of every revoke and deleteSelf, so a cache of resolutions knows,
    -- in the same round trip as its lookup, whether anything may have died since.
    CREATE TABLE revocation_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), epoch BIGINT NOT NULL);
    INSERT INTO revocation_epoch (id, epoch) VALUES (1, 0);
    )sql",
    // 2: what each tenant stores (its quotas), kept by every write that adds to it; counted once
    // here from what is there (kinds 6 and 7 are uri and re-export grants).
    R"sql(
    CREATE TABLE tenant_usage (
      tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
      membranes BIGINT NOT NULL DEFAULT 0,
      grants BIGINT NOT NULL DEFAULT 0,
      stored_bytes BIGINT NOT NULL DEFAULT 0
    );
    INSERT INTO tenant_usage (tenant_id, membranes, grants, stored_bytes)
      SELECT t.id,
        (SELECT count(*) FROM membranes m WHERE m.tenant_id = t.id),
        (SELECT count(*) FROM capabilities c WHERE c.tenant_id = t.id AND c.kind IN (6, 7)),
        (SELECT coalesce(sum(octet_length(c.config)), 0) FROM capabilities c WHERE c.tenant_id = t.id) +
        (SELECT coalesce(sum(octet_length(m.export_token) + octet_length(m.revoke_token)), 0) FROM membranes m
          WHERE m.tenant_id = t.id)
      FROM tenants t;
    )sql",
    // 3: grants (contract §11-12): every export and re-export gets a row of its own with its
    // public handle, its limits and its revocation; a grant's revoke capability names its grant
    // (target_row). Grants made before get a handle and no limits. Ids compare by their bytes.
    R"sql(
    ALTER TABLE capabilities ADD COLUMN target_row BIGINT REFERENCES capabilities(row_id);
    CREATE TABLE grants (
      row_id BIGINT PRIMARY KEY REFERENCES capabilities(row_id),
      id TEXT COLLATE "C" NOT NULL UNIQUE,
      label TEXT,
      expires_at BIGINT,                        -- Unix milliseconds
      max_uses BIGINT,
      reserved_uses BIGINT NOT NULL DEFAULT 0,  -- handed to instances; never above max_uses
      rate_requests INTEGER,
      rate_seconds INTEGER,
      allow_from TEXT NOT NULL DEFAULT '',      -- CIDRs, comma-separated
      revoked_at BIGINT,                        -- Unix milliseconds
      operation TEXT NOT NULL DEFAULT '',       -- what it finally does: invoke, create, ...
      target BYTEA,                             -- sealed: scheme, authority, path and method
      uses BIGINT NOT NULL DEFAULT 0,           -- as last counted (the inventory)
      last_used_at BIGINT                       -- Unix milliseconds
    );
    INSERT INTO grants (row_id, id, operation)
      SELECT row_id, 'g_' || substr(md5(random()::text || clock_timestamp()::text || row_id::text), 1, 24),
             CASE kind WHEN 6 THEN 'invoke' ELSE '' END
      FROM capabilities WHERE kind IN (6, 7);
    )sql",
};

// pg_advisory_xact_lock keys: the schema (migrations and the master-key check, "membrand" in
// ASCII) and the first tenant's creation ("membfrst").
constexpr std::int64_t kSchemaLock = 0x6d656d6272616e64;
constexpr std::int64_t kFirstTenantLock = 0x6d656d6266727374;

// Everything a capability depends on, in one statement (one snapshot): the capability, and from
// each capability reached, what it stands for (parent) and what was presented to make it (via),
// each with its tenant's and membrane's state, and the revocation epoch of the same snapshot.
// Rows only ever point at older rows, so the walk ends; creation keeps it within
// kMaxDependencies.
constexpr const char* kWalk = R"sql(
  WITH RECURSIVE walk(row_id) AS (
    SELECT row_id FROM capabilities WHERE digest = $1
    UNION
    SELECT next.row_id FROM walk JOIN capabilities c ON c.row_id = walk.row_id
      CROSS JOIN LATERAL (VALUES (c.parent_row), (c.via_row)) AS next(row_id)
    WHERE next.row_id IS NOT NULL
  )
  SELECT c.row_id, c.digest, c.kind, c.tenant_id, c.membrane_row, c.parent_row, c.config, t.deleted,
         m.revoked, (SELECT epoch FROM revocation_epoch WHERE id = 1),
         c.target_row, g.id, g.label, g.expires_at, g.max_uses, g.rate_requests, g.rate_seconds, g.allow_from, g.revoked_at,
         m.id, tg.id
  FROM walk JOIN capabilities c ON c.row_id = walk.row_id JOIN tenants t ON t.id = c.tenant_id
  LEFT JOIN membranes m ON m.row_id = c.membrane_row LEFT JOIN grants g ON g.row_id = c.row_id LEFT JOIN grants tg ON tg.row_id = c.target_row
  LIMIT $2
)sql";

// kWalk from several capabilities at once (their digests in hex, comma-separated), each row
// tagged with the digest its walk started from: one round trip for a page of membranes.
constexpr const char* kWalkEach = R"sql(
  WITH RECURSIVE walk(start, row_id) AS (
    SELECT c.digest, c.row_id FROM capabilities c
    WHERE c.digest = ANY (SELECT decode(h, 'hex') FROM unnest(string_to_array($1::text, ',')) AS h)
    UNION
    SELECT walk.start, next.row_id FROM walk JOIN capabilities c ON c.row_id = walk.row_id
      CROSS JOIN LATERAL (VALUES (c.parent_row), (c.via_row)) AS next(row_id)
    WHERE next.row_id IS NOT NULL
  )
  SELECT c.row_id, c.digest, c.kind, c.tenant_id, c.membrane_row, c.parent_row, c.config, t.deleted,
         m.revoked, walk.start, c.target_row, g.id, g.label, g.expires_at, g.max_uses, g.rate_requests, g.rate_seconds, g.allow_from, g.revoked_at,
         m.id, tg.id
  FROM walk JOIN capabilities c ON c.row_id = walk.row_id JOIN tenants t ON t.id = c.tenant_id
  LEFT JOIN membranes m ON m.row_id = c.membrane_row LEFT JOIN grants g ON g.row_id = c.row_id LEFT JOIN grants tg ON tg.row_id = c.target_row
)sql";

// How many grants a revoke cut (Store::grants_cut_by): everything below the revoked membrane
// ($1, its revoke capability of kind $3 aside) or grant ($2), down the parent and via links, less
// what was dead before: below a grant revoked on its own, or a capability of another revoked
// membrane.
constexpr const char* kGrantsCut = R"sql(
  WITH RECURSIVE
  below(row_id) AS (
    SELECT row_id FROM capabilities WHERE membrane_row = $1::bigint AND kind <> $3::bigint
    UNION SELECT $2::bigint WHERE $2::bigint IS NOT NULL
    UNION
    SELECT c.row_id FROM below JOIN capabilities c ON c.parent_row = below.row_id OR c.via_row = below.row_id
  ),
  dead(row_id) AS (
    SELECT below.row_id FROM below JOIN capabilities c ON c.row_id = below.row_id
      LEFT JOIN grants g ON g.row_id = below.row_id LEFT JOIN membranes m ON m.row_id = c.membrane_row
    WHERE below.row_id IS DISTINCT FROM $2::bigint
      AND (g.revoked_at IS NOT NULL OR (m.revoked AND c.membrane_row IS DISTINCT FROM $1::bigint))
    UNION
    SELECT c.row_id FROM dead JOIN capabilities c ON c.parent_row = dead.row_id OR c.via_row = dead.row_id
  )
  SELECT (SELECT count(*) FROM below JOIN grants g ON g.row_id = below.row_id) -
         (SELECT count(*) FROM dead JOIN grants g ON g.row_id = dead.row_id)
)sql";

// A membrane row with the digest of its export capability ($3 is that kind).
constexpr const char* kMembraneColumns =
    "SELECT m.row_id, m.id, m.export_token, m.revoke_token, "
    "(SELECT c.digest FROM capabilities c WHERE c.membrane_row = m.row_id AND c.kind = $3) FROM membranes m ";

Param kind_param(CapabilityKind kind) { return integer(static_cast<std::int64_t>(kind)); }
Param optional_integer(const std::optional<std::int64_t>& value) { return value ? integer(*value) : null(); }

std::optional<std::int64_t> optional_int(const Rows& r, int i, int column) {
  return r.is_null(i, column) ? std::nullopt : std::optional<std::int64_t>(r.integer(i, column));
}

// Columns 10-18 of kWalk and kWalkEach: the grant, if the capability is one.
std::optional<StoredGrant> grant_of(const Rows& r, int i) {
  if (r.is_null(i, 11)) return std::nullopt;
  return StoredGrant{r.bytes(i, 11),
                     r.is_null(i, 12) ? std::nullopt : std::optional<std::string>(r.bytes(i, 12)),
                     optional_int(r, i, 13),
                     optional_int(r, i, 14),
                     optional_int(r, i, 15),
                     optional_int(r, i, 16),
                     r.bytes(i, 17),
                     optional_int(r, i, 18)};
}

// Columns 0-8 and 10-20 of kWalk and kWalkEach.
Link link_of(const Rows& r, int i) {
  return Link{r.bytes(i, 1),
              static_cast<CapabilityKind>(r.integer(i, 2)),
              r.bytes(i, 3),
              optional_int(r, i, 4),
              optional_int(r, i, 5),
              r.is_null(i, 6) ? std::string() : r.bytes(i, 6),
              r.boolean(i, 7),
              !r.is_null(i, 8) && r.boolean(i, 8),
              grant_of(r, i),
              optional_int(r, i, 10),
              r.is_null(i, 19) ? std::string() : r.bytes(i, 19),
              r.is_null(i, 20) ? std::string() : r.bytes(i, 20)};
}

StoredMembrane stored_membrane(const Rows& r, int i) {
  return {r.integer(i, 0), r.bytes(i, 1), r.bytes(i, 2), r.bytes(i, 3), r.is_null(i, 4) ? std::string() : r.bytes(i, 4)};
}

// A grant for the inventory: its row, its capability's (and its digest, to walk what it depends
// on), its membrane's id and its parent grant's.
constexpr const char* kGrantEntryColumns =
    "SELECT g.id, g.label, m.id, c.kind, pg.id, c.created_at, g.expires_at, g.max_uses, g.rate_requests, "
    "g.rate_seconds, g.allow_from, g.revoked_at, g.operation, g.target, g.uses, g.last_used_at, c.digest, g.row_id "
    "FROM grants g JOIN capabilities c ON c.row_id = g.row_id JOIN membranes m ON m.row_id = c.membrane_row "
    "LEFT JOIN grants pg ON pg.row_id = c.parent_row ";

std::vector<StoredGrantEntry> grant_entries(const Rows& r) {
  std::vector<StoredGrantEntry> out;
  for (int i = 0; i < r.size(); ++i) {
    StoredGrantEntry e;
    e.entry.id = r.bytes(i, 0);
    if (!r.is_null(i, 1)) e.entry.label = r.bytes(i, 1);
    e.entry.membrane = r.bytes(i, 2);
    e.entry.reexport = static_cast<CapabilityKind>(r.integer(i, 3)) == CapabilityKind::reexport;
    if (!r.is_null(i, 4)) e.entry.stands_for = r.bytes(i, 4);
    e.entry.created_at = r.integer(i, 5);
    e.entry.expires_at_ms = optional_int(r, i, 6);
    e.entry.max_uses = optional_int(r, i, 7);
    if (!r.is_null(i, 8) && !r.is_null(i, 9)) {
      e.entry.rate_limit = core::RateLimit{static_cast<std::uint32_t>(r.integer(i, 8)),
                                           static_cast<std::uint32_t>(r.integer(i, 9))};
    }
    e.allow_from_text = r.bytes(i, 10);
    e.entry.revoked_at_ms = optional_int(r, i, 11);
    e.entry.operation = r.bytes(i, 12);
    if (!r.is_null(i, 13)) e.sealed_target = r.bytes(i, 13);
    e.entry.uses = r.integer(i, 14);
    e.entry.last_used_at_ms = optional_int(r, i, 15);
    e.digest = r.bytes(i, 16);
    e.row = r.integer(i, 17);
    out.push_back(std::move(e));
  }
  return out;
}

class PgSession final : public BackendSession {
 public:
  explicit PgSession(Connection& connection) : connection_(connection) {}

  Result<Walk> walk(std::string_view digest) override {
    auto rows = connection_.query(kWalk, {bytes(digest), integer(static_cast<std::int64_t>(kMaxDependencies) + 1)});
    if (!rows) return rows.error();
    Walk walk;
    for (int i = 0; i < rows->size(); ++i) {
      walk.links.emplace(rows->integer(i, 0), link_of(*rows, i));
      walk.epoch = rows->integer(i, 9);
    }
    return walk;
  }

  Result<std::map<std::string, Walk>> walk_each(const std::vector<std::string>& digests) override {
    std::map<std::string, Walk> walks;
    if (digests.empty()) return walks;
    std::string hex;
    for (const std::string& digest : digests) {
      if (!hex.empty()) hex += ',';
      hex += core::hex_encode(digest);
    }
    auto rows = connection_.query(kWalkEach, {text(hex)});
    if (!rows) return rows.error();
    for (int i = 0; i < rows->size(); ++i) walks[rows->bytes(i, 9)].links.emplace(rows->integer(i, 0), link_of(*rows, i));
    return walks;
  }

  Result<std::int64_t> epoch() override {
    auto rows = connection_.query("SELECT epoch FROM revocation_epoch WHERE id = 1");
    if (!rows) return rows.error();
    if (rows->size() != 1) return Error::internal("the revocation epoch is missing");
    return rows->integer(0, 0);
  }

  Status set_epoch(std::int64_t epoch) override {
    return run("UPDATE revocation_epoch SET epoch = $1 WHERE id = 1", {integer(epoch)});
  }

  // Held to the end of the transaction.
  Status take_exclusive(Exclusive lock) override {
    return run("SELECT pg_advisory_xact_lock($1)",
               {integer(lock == Exclusive::schema ? kSchemaLock : kFirstTenantLock)});
  }

  Result<std::optional<std::string>> meta(std::string_view key) override {
    auto rows = connection_.query("SELECT value FROM meta WHERE key = $1", {text(key)});
    if (!rows) return rows.error();
    if (rows->size() == 0) return std::optional<std::string>();
    return std::optional<std::string>(rows->bytes(0, 0));
  }

  Status insert_meta(std::string_view key, std::string_view value) override {
    return run("INSERT INTO meta(key, value) VALUES ($1, $2)", {text(key), bytes(value)});
  }

  Result<bool> has_tenants() override {
    auto rows = connection_.query("SELECT EXISTS (SELECT 1 FROM tenants)");
    if (!rows) return rows.error();
    return rows->boolean(0, 0);
  }

  Result<bool> charge(const std::string& tenant_id, const Usage& add, const TenantQuotas& limits) override {
    if (auto s = run("INSERT INTO tenant_usage(tenant_id) VALUES ($1) ON CONFLICT (tenant_id) DO NOTHING",
                     {text(tenant_id)});
        !s) {
      return s.error();
    }
    // The row lock taken by the UPDATE orders concurrent writers of one tenant.
    auto rows = connection_.query(
        "UPDATE tenant_usage SET membranes = membranes + $2::bigint, grants = grants + $3::bigint, "
        "stored_bytes = stored_bytes + $4::bigint "
        "WHERE tenant_id = $1 AND ($5::bigint = 0 OR membranes + $2::bigint <= $5::bigint) "
        "AND ($6::bigint = 0 OR grants + $3::bigint <= $6::bigint) "
        "AND ($7::bigint = 0 OR stored_bytes + $4::bigint <= $7::bigint) RETURNING 1",
        {text(tenant_id), integer(add.membranes), integer(add.grants), integer(add.stored_bytes),
         integer(static_cast<std::int64_t>(limits.membranes)), integer(static_cast<std::int64_t>(limits.grants)),
         integer(static_cast<std::int64_t>(limits.stored_bytes))});
    if (!rows) return rows.error();
    return rows->size() == 1;
  }

  Result<Usage> usage(const std::string& tenant_id) override {
    auto rows = connection_.query("SELECT membranes, grants, stored_bytes FROM tenant_usage WHERE tenant_id = $1",
                                  {text(tenant_id)});
    if (!rows) return rows.error();
    if (rows->size() == 0) return Usage{};
    return Usage{rows->integer(0, 0), rows->integer(0, 1), rows->integer(0, 2)};
  }

  Status insert_tenant(const std::string& id, std::int64_t created_at) override {
    return run("INSERT INTO tenants(id, created_at) VALUES ($1, $2)", {text(id), integer(created_at)});
  }

  // Ids compare by their bytes, as on SQLite.
  Result<std::vector<TenantEntry>> tenants(const std::optional<std::string>& after, std::size_t limit) override {
    auto rows = connection_.query(
        "SELECT id, created_at, deleted FROM tenants WHERE $1::text IS NULL OR id COLLATE \"C\" > $1::text "
        "ORDER BY id COLLATE \"C\" LIMIT $2",
        {after ? text(*after) : null(), integer(static_cast<std::int64_t>(limit))});
    if (!rows) return rows.error();
    std::vector<TenantEntry> out;
    for (int i = 0; i < rows->size(); ++i) out.push_back({rows->bytes(i, 0), rows->integer(i, 1), rows->boolean(i, 2)});
    return out;
  }

  Result<std::optional<TenantEntry>> tenant(const std::string& id) override {
    auto rows = connection_.query("SELECT id, created_at, deleted FROM tenants WHERE id = $1", {text(id)});
    if (!rows) return rows.error();
    if (rows->size() == 0) return std::optional<TenantEntry>();
    return std::optional<TenantEntry>(TenantEntry{rows->bytes(0, 0), rows->integer(0, 1), rows->boolean(0, 2)});
  }

  Status mark_tenant_deleted(const std::string& tenant_id) override {
    if (auto s = run("UPDATE tenants SET deleted = true WHERE id = $1", {text(tenant_id)}); !s) return s;
    return run("UPDATE membranes SET revoked = true WHERE tenant_id = $1", {text(tenant_id)});
  }

  Result<CapabilityRow> insert_capability(const CapabilityRecord& r) override {
    auto rows = connection_.query(
        "INSERT INTO capabilities(digest, kind, tenant_id, membrane_row, parent_row, via_row, config, created_at, "
        "target_row) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING row_id",
        {bytes(r.digest), kind_param(r.kind), text(r.tenant_id), optional_integer(r.membrane),
         optional_integer(r.parent), optional_integer(r.via), r.sealed_config ? bytes(*r.sealed_config) : null(),
         integer(r.created_at), optional_integer(r.target)});
    if (!rows) return rows.error();
    return rows->integer(0, 0);
  }

  Status insert_grant(CapabilityRow row, const StoredGrant& g, const std::string& operation,
                      const std::optional<std::string>& sealed_target) override {
    return run(
        "INSERT INTO grants(row_id, id, label, expires_at, max_uses, rate_requests, rate_seconds, allow_from, "
        "operation, target) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        {integer(row), text(g.id), g.label ? text(*g.label) : null(), optional_integer(g.expires_at_ms),
         optional_integer(g.max_uses), optional_integer(g.rate_requests), optional_integer(g.rate_seconds),
         text(g.allow_from), text(operation), sealed_target ? bytes(*sealed_target) : null()});
  }

  Status add_uses(CapabilityRow row, std::int64_t count, std::int64_t last_used_ms) override {
    return run("UPDATE grants SET uses = uses + $2, last_used_at = GREATEST(coalesce(last_used_at, 0), $3) "
               "WHERE row_id = $1",
               {integer(row), integer(count), integer(last_used_ms)});
  }

  Result<std::int64_t> count_grants_below(std::optional<MembraneRow> membrane,
                                          std::optional<CapabilityRow> grant) override {
    auto rows = connection_.query(kGrantsCut,
                                  {optional_integer(membrane), optional_integer(grant), kind_param(CapabilityKind::revoke)});
    if (!rows) return rows.error();
    return rows->integer(0, 0);
  }

  Result<std::vector<StoredGrantEntry>> grants_of_membrane(const std::string& tenant_id, const std::string& membrane_id,
                                                           const std::optional<std::string>& after,
                                                           std::size_t limit) override {
    auto rows = connection_.query(std::string(kGrantEntryColumns) +
                                      "WHERE c.tenant_id = $1 AND m.id = $2 AND NOT m.revoked "
                                      "AND ($3::text IS NULL OR g.id > $3::text) ORDER BY g.id LIMIT $4",
                                  {text(tenant_id), bytes(membrane_id), after ? text(*after) : null(),
                                   integer(static_cast<std::int64_t>(limit))});
    if (!rows) return rows.error();
    return grant_entries(*rows);
  }

  Result<std::optional<StoredGrantEntry>> grant_by_id(const std::string& tenant_id, const std::string& grant_id) override {
    auto rows = connection_.query(std::string(kGrantEntryColumns) + "WHERE c.tenant_id = $1 AND g.id = $2",
                                  {text(tenant_id), text(grant_id)});
    if (!rows) return rows.error();
    auto entries = grant_entries(*rows);
    if (entries.empty()) return std::optional<StoredGrantEntry>();
    return std::optional<StoredGrantEntry>(std::move(entries.front()));
  }

  Status mark_grant_revoked(CapabilityRow row, std::int64_t at_ms) override {
    return run("UPDATE grants SET revoked_at = $2 WHERE row_id = $1 AND revoked_at IS NULL",
               {integer(row), integer(at_ms)});
  }

  // The row lock makes instances reserving from the same grant take turns.
  Result<std::optional<GrantUses>> lock_grant_uses(CapabilityRow row) override {
    auto rows = connection_.query(
        "SELECT max_uses, reserved_uses FROM grants WHERE row_id = $1 AND max_uses IS NOT NULL FOR UPDATE",
        {integer(row)});
    if (!rows) return rows.error();
    if (rows->size() == 0) return std::optional<GrantUses>();
    return std::optional<GrantUses>(GrantUses{rows->integer(0, 0), rows->integer(0, 1)});
  }

  Status add_reserved_uses(CapabilityRow row, std::int64_t count) override {
    return run("UPDATE grants SET reserved_uses = reserved_uses + $2 WHERE row_id = $1", {integer(row), integer(count)});
  }

  Result<MembraneRow> insert_membrane(const MembraneRecord& r) override {
    auto rows = connection_.query(
        "INSERT INTO membranes(tenant_id, id, export_token, revoke_token, created_at) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING row_id",
        {text(r.tenant_id), bytes(r.id), bytes(r.sealed_export), bytes(r.sealed_revoke), integer(r.created_at)});
    if (!rows) return rows.error();
    return rows->integer(0, 0);
  }

  Status mark_membrane_revoked(MembraneRow row) override {
    return run("UPDATE membranes SET revoked = true WHERE row_id = $1", {integer(row)});
  }

  Result<std::optional<StoredMembrane>> membrane(const std::string& tenant_id, const std::string& id) override {
    auto rows = connection_.query(std::string(kMembraneColumns) + "WHERE m.tenant_id = $1 AND m.id = $2 AND NOT m.revoked",
                                  {text(tenant_id), bytes(id), kind_param(CapabilityKind::export_)});
    if (!rows) return rows.error();
    if (rows->size() == 0) return std::optional<StoredMembrane>();
    return std::optional<StoredMembrane>(stored_membrane(*rows, 0));
  }

  Result<std::vector<StoredMembrane>> membranes(const std::string& tenant_id, const std::optional<std::string>& after,
                                                std::size_t limit) override {
    auto rows = connection_.query(
        std::string(kMembraneColumns) +
            "WHERE m.tenant_id = $1 AND NOT m.revoked AND ($2::bytea IS NULL OR m.id > $2::bytea) "
            "ORDER BY m.id LIMIT $4",
        {text(tenant_id), after ? bytes(*after) : null(), kind_param(CapabilityKind::export_),
         integer(static_cast<std::int64_t>(limit))});
    if (!rows) return rows.error();
    std::vector<StoredMembrane> out;
    out.reserve(static_cast<std::size_t>(rows->size()));
    for (int i = 0; i < rows->size(); ++i) out.push_back(stored_membrane(*rows, i));
    return out;
  }

 private:
  Status run(const std::string& sql, const std::vector<Param>& params) {
    auto rows = connection_.query(sql, params);
    if (!rows) return rows.error();
    return core::ok_status();
  }

  Connection& connection_;
};

// Reads the revocation epoch in the background on a connection of its own, about five times per
// bound, so that an invocation's send-time check costs no round trip: the view counts only while
// younger than the bound. A failed read leaves the view to age out (then every check goes to the
// database, and answers 503 while it is down): the watch fails closed.
class EpochWatch {
 public:
  EpochWatch(Settings settings, std::chrono::milliseconds bound)
      : settings_(std::move(settings)), period_(std::max(bound / 5, std::chrono::milliseconds(1))) {
    settings_.application_name = "membraned epoch watch";
    thread_ = std::thread([this] { run(); });
  }
  ~EpochWatch() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
  }
  EpochWatch(const EpochWatch&) = delete;
  EpochWatch& operator=(const EpochWatch&) = delete;

  std::optional<EpochReading> latest() const {
    std::lock_guard lock(mutex_);
    return latest_;
  }

 private:
  void run() {
    std::unique_ptr<Connection> connection;
    std::unique_lock lock(mutex_);
    while (!stopping_) {
      lock.unlock();
      // Taken before the statement is sent: the reading is no younger than this.
      const auto started = std::chrono::steady_clock::now();
      auto epoch = read(connection);
      lock.lock();
      if (epoch) latest_ = EpochReading{*epoch, started};
      wake_.wait_until(lock, started + period_, [this] { return stopping_; });
    }
  }

  std::optional<std::int64_t> read(std::unique_ptr<Connection>& connection) {
    if (!connection) {
      auto opened = Connection::open(settings_);
      if (!opened) return std::nullopt;
      connection = std::move(*opened);
    }
    auto rows = connection->query("SELECT epoch FROM revocation_epoch WHERE id = 1");
    if (connection->broken()) connection.reset();
    if (!rows || rows->size() != 1) return std::nullopt;
    return rows->integer(0, 0);
  }

  Settings settings_;
  std::chrono::milliseconds period_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::optional<EpochReading> latest_;
  std::thread thread_;
};

class PgBackend final : public Backend {
 public:
  explicit PgBackend(const PostgresOptions& options)
      : settings_{options.url, "membraned", options.connect_timeout, options.statement_timeout,
                  options.durable_commits},
        pool_size_(std::max<std::size_t>(options.connections, 1)),
        revocation_bound_(options.revocation_bound) {}

  bool watches_epoch() const override { return true; }
  std::optional<EpochReading> epoch_view() const override {
    return watch_ ? watch_->latest() : std::nullopt;
  }
  std::chrono::milliseconds epoch_view_bound() const override { return revocation_bound_; }
  void start_epoch_watch() { watch_.emplace(settings_, revocation_bound_); }

  std::string_view name() const override { return "postgresql"; }
  bool waits_on_network() const override { return true; }

  Status write(const SessionWork& work) override {
    return with_connection([&](Connection& connection) -> Status {
      auto tx = Transaction::begin(connection);
      if (!tx) return tx.error();
      PgSession session(connection);
      if (auto s = work(session); !s) return s;
      return tx->commit();
    });
  }

  Status read(const SessionWork& work) override {
    return with_connection([&](Connection& connection) -> Status {
      PgSession session(connection);
      return work(session);
    });
  }

  void on_connection_lost(std::function<void()> callback) override { connection_lost_ = std::move(callback); }

  Status migrate();

 private:
  class Lease;
  Result<Lease> acquire();
  void release(std::unique_ptr<Connection> connection);
  Status with_connection(const std::function<Status(Connection&)>& work);

  Settings settings_;
  std::size_t pool_size_;
  std::chrono::milliseconds revocation_bound_;
  std::function<void()> connection_lost_;
  std::optional<EpochWatch> watch_;  // last member: stopped first

  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;  // connections in existence, idle or leased
};

// A pooled connection, returned to the pool when the lease ends.
class PgBackend::Lease {
 public:
  Lease(PgBackend& backend, std::unique_ptr<Connection> connection, bool reused)
      : backend_(&backend), connection_(std::move(connection)), reused_(reused) {}
  Lease(Lease&& other) noexcept = default;
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (connection_) backend_->release(std::move(connection_));
  }
  Connection& operator*() { return *connection_; }
  Connection* operator->() { return connection_.get(); }
  bool reused() const { return reused_; }

 private:
  PgBackend* backend_;
  std::unique_ptr<Connection> connection_;
  bool reused_;
};

// Waits for an idle connection, or opens one while fewer than pool_size_ exist. The wait is
// bounded: when every connection stays busy that long, the answer is 503 rather than a queue
// that grows without end.
Result<PgBackend::Lease> PgBackend::acquire() {
  std::unique_lock lock(mutex_);
  const auto deadline = std::chrono::steady_clock::now() + settings_.connect_timeout + settings_.statement_timeout;
  if (!available_.wait_until(lock, deadline, [this] { return !idle_.empty() || open_ < pool_size_; })) {
    return Error::unavailable("every PostgreSQL connection stayed busy");
  }
  if (!idle_.empty()) {
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    return Lease(*this, std::move(connection), /*reused=*/true);
  }
  ++open_;
  lock.unlock();
  auto connection = Connection::open(settings_);
  if (!connection) {
    lock.lock();
    --open_;
    available_.notify_one();
    return connection.error();
  }
  return Lease(*this, std::move(*connection), /*reused=*/false);
}

void PgBackend::release(std::unique_ptr<Connection> connection) {
  std::vector<std::unique_ptr<Connection>> closing;
  {
    std::lock_guard lock(mutex_);
    if (!connection->broken()) {
      idle_.push_back(std::move(connection));
      available_.notify_one();
      return;
    }
    // A connection lost to a restart or a failover says the idle ones are lost too: drop them
    // all, so the next callers connect afresh instead of each finding a dead one.
    closing.push_back(std::move(connection));
    for (auto& idle : idle_) closing.push_back(std::move(idle));
    idle_.clear();
    open_ -= closing.size();
    available_.notify_all();
  }
  closing.clear();  // PQfinish outside the lock
  if (connection_lost_) connection_lost_();
}

// Runs `work` on a pooled connection. A pooled connection the database dropped while it sat idle
// (a restart, a failover) fails on its first call, before anything was done: that once, `work`
// runs again on a new connection.
Status PgBackend::with_connection(const std::function<Status(Connection&)>& work) {
  for (int attempt = 0;; ++attempt) {
    auto lease = acquire();
    if (!lease) return lease.error();
    const std::uint64_t before = (*lease)->calls();
    auto result = work(**lease);
    const bool first_call_lost = (*lease)->broken() && (*lease)->calls() == before + 1;
    if (!result && attempt == 0 && lease->reused() && first_call_lost) continue;
    return result;
  }
}

Status PgBackend::migrate() {
  return with_connection([](Connection& connection) -> Status {
    auto tx = Transaction::begin(connection);
    if (!tx) return tx.error();
    // Held to the end of the transaction: a second instance waits here, then sees the tables.
    if (auto lock = connection.query("SELECT pg_advisory_xact_lock($1)", {integer(kSchemaLock)}); !lock) {
      return lock.error();
    }
    if (auto s = connection.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"); !s) {
      return s;
    }
    auto read = connection.query("SELECT version FROM schema_version");
    if (!read) return read.error();
    if (read->size() > 1) return Error::internal("schema_version holds more than one row");
    const std::int64_t version = read->size() == 1 ? read->integer(0, 0) : 0;
    if (version > schema_version()) {
      return Error::internal("the database was written by a newer membraned (schema " + std::to_string(version) +
                             ")");
    }
    for (auto v = version; v < schema_version(); ++v) {
      if (auto s = connection.exec(kMigrations[v]); !s) return s;
    }
    if (version != schema_version()) {
      if (auto s = connection.exec("DELETE FROM schema_version"); !s) return s;
      auto write = connection.query("INSERT INTO schema_version(version) VALUES ($1)", {integer(schema_version())});
      if (!write) return write.error();
    }
    return tx->commit();
  });
}

}  // namespace

int schema_version() { return static_cast<int>(std::size(kMigrations)); }

Result<std::unique_ptr<Backend>> open_backend(const PostgresOptions& options) {
  auto backend = std::make_unique<PgBackend>(options);
  if (auto s = backend->migrate(); !s) return s.error();
  backend->start_epoch_watch();
  return std::unique_ptr<Backend>(std::move(backend));
}

Result<bool> holds_data(const PostgresOptions& options) {
  auto connection = Connection::open(
      Settings{options.url, "membraned", options.connect_timeout, options.statement_timeout, options.durable_commits});
  if (!connection) return connection.error();
  auto meta = (*connection)->query(
      "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1)",
      {text("meta")});
  if (!meta) return meta.error();
  if (!meta->boolean(0, 0)) return false;
  auto check = (*connection)->query("SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'key_check')");
  if (!check) return check.error();
  return check->boolean(0, 0);
}

}  // namespace membraned::storage::pg
