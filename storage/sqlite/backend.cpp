#include "storage/sqlite/backend.hpp"

#include <condition_variable>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "storage/sqlite/connection.hpp"
#include "storage/sqlite/group_commit.hpp"

namespace membraned::storage::sqlite {

using core::Error;
using core::Result;
using core::Status;

namespace {

// Migrations, applied in order at start; schema_version holds how many ran. Never edit one that
// has shipped: add the next.
constexpr const char* kMigrations[] = {
    // 1: tenants, membranes, capabilities.
    R"sql(
    CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL) STRICT;
    CREATE TABLE tenants (
      id TEXT PRIMARY KEY,
      created_at INTEGER NOT NULL,
      deleted INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    CREATE TABLE membranes (
      row INTEGER PRIMARY KEY,
      tenant_id TEXT NOT NULL REFERENCES tenants(id),
      id TEXT NOT NULL,
      export_token BLOB NOT NULL,   -- sealed: query returns it again
      revoke_token BLOB NOT NULL,   -- sealed
      revoked INTEGER NOT NULL DEFAULT 0,
      created_at INTEGER NOT NULL
    ) STRICT;
    -- One live membrane per id; a revoked one frees its id at once.
    CREATE UNIQUE INDEX membranes_live_id ON membranes(tenant_id, id) WHERE revoked = 0;
    CREATE TABLE capabilities (
      row INTEGER PRIMARY KEY,
      digest BLOB NOT NULL UNIQUE,  -- SHA-256 of the token; the token itself is never stored
      kind INTEGER NOT NULL,
      tenant_id TEXT NOT NULL REFERENCES tenants(id),
      membrane_row INTEGER REFERENCES membranes(row),  -- the membrane it belongs to or was exported through
      parent_row INTEGER REFERENCES capabilities(row), -- re-export: what it stands for
      via_row INTEGER REFERENCES capabilities(row),    -- the capability presented to make it
      config BLOB,                  -- uri: the sealed export configuration
      created_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX capabilities_membrane ON capabilities(membrane_row);
    CREATE INDEX capabilities_parent ON capabilities(parent_row);
    CREATE INDEX capabilities_via ON capabilities(via_row);
    )sql",
    // 2: the revocation epoch, set anew in the transaction of every revoke and deleteSelf, so a
    // cache of resolutions knows with one indexed read whether anything may have died since.
    R"sql(
    CREATE TABLE revocation_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL) STRICT;
    INSERT INTO revocation_epoch (id, epoch) VALUES (1, 0);
    )sql",
    // 3: what each tenant stores (its quotas), kept by every write that adds to it; counted once
    // here from what is there (kinds 6 and 7 are uri and re-export grants).
    R"sql(
    CREATE TABLE tenant_usage (
      tenant_id TEXT PRIMARY KEY REFERENCES tenants(id),
      membranes INTEGER NOT NULL DEFAULT 0,
      grants INTEGER NOT NULL DEFAULT 0,
      stored_bytes INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    INSERT INTO tenant_usage (tenant_id, membranes, grants, stored_bytes)
      SELECT t.id,
        (SELECT count(*) FROM membranes m WHERE m.tenant_id = t.id),
        (SELECT count(*) FROM capabilities c WHERE c.tenant_id = t.id AND c.kind IN (6, 7)),
        (SELECT coalesce(sum(length(c.config)), 0) FROM capabilities c WHERE c.tenant_id = t.id) +
        (SELECT coalesce(sum(length(m.export_token) + length(m.revoke_token)), 0) FROM membranes m
          WHERE m.tenant_id = t.id)
      FROM tenants t;
    )sql",
    // 4: grants (contract §11-12): every export and re-export gets a row of its own with its
    // public handle, its limits and its revocation; a grant's revoke capability names its grant
    // (target_row). Grants made before get a handle and no limits.
    R"sql(
    ALTER TABLE capabilities ADD COLUMN target_row INTEGER REFERENCES capabilities(row);
    CREATE TABLE grants (
      row INTEGER PRIMARY KEY REFERENCES capabilities(row),
      id TEXT NOT NULL UNIQUE,
      label TEXT,
      expires_at INTEGER,                        -- Unix milliseconds
      max_uses INTEGER,
      reserved_uses INTEGER NOT NULL DEFAULT 0,  -- handed to instances; never above max_uses
      rate_requests INTEGER,
      rate_seconds INTEGER,
      allow_from TEXT NOT NULL DEFAULT '',       -- CIDRs, comma-separated
      revoked_at INTEGER,                        -- Unix milliseconds
      operation TEXT NOT NULL DEFAULT '',        -- what it finally does: invoke, create, ...
      target BLOB,                               -- sealed: scheme, authority, path and method
      uses INTEGER NOT NULL DEFAULT 0,           -- as last counted (the inventory)
      last_used_at INTEGER                       -- Unix milliseconds
    ) STRICT;
    INSERT INTO grants (row, id, operation)
      SELECT row, 'g_' || lower(hex(randomblob(12))), CASE kind WHEN 6 THEN 'invoke' ELSE '' END
      FROM capabilities WHERE kind IN (6, 7);
    )sql",
    // 5: use counts in a narrow table of their own. The usage flush updates every grant used in
    // the last second; in the wide grants rows (limits, sealed target) each update dirtied a page
    // of its own, so with many holders a flush rewrote tens of MB. Here about 200 grants share a
    // page. A grant never used has no row. The old columns stay, no longer read or written:
    // SQLite's DROP COLUMN cannot rewrite a table definition with comments like this one's.
    R"sql(
    CREATE TABLE grant_uses (
      row INTEGER PRIMARY KEY REFERENCES grants(row),
      uses INTEGER NOT NULL,
      last_used_at INTEGER NOT NULL              -- Unix milliseconds
    ) STRICT;
    INSERT INTO grant_uses (row, uses, last_used_at)
      SELECT row, uses, coalesce(last_used_at, 0) FROM grants WHERE uses <> 0 OR last_used_at IS NOT NULL;
    )sql",
};

// The columns link_of reads (0-8 and 10-20) for each capability of `from` (which names it c),
// joined to its tenant, its membrane, its grant and the grant it revokes; `column9` is the
// revocation epoch (kEpoch) or what a batched walk tags its rows with, `more` follows column 20.
std::string link_select(std::string_view column9, std::string_view from, std::string_view more = "") {
  return std::string("SELECT c.row, c.digest, c.kind, c.tenant_id, c.membrane_row, c.parent_row, c.config, ") +
         "t.deleted, m.revoked, " + std::string(column9) +
         ", c.target_row, g.id, g.label, g.expires_at, g.max_uses, g.rate_requests, g.rate_seconds, g.allow_from, "
         "g.revoked_at, m.id, tg.id" + std::string(more) + " FROM " + std::string(from) +
         " JOIN tenants t ON t.id = c.tenant_id LEFT JOIN membranes m ON m.row = c.membrane_row"
         " LEFT JOIN grants g ON g.row = c.row LEFT JOIN grants tg ON tg.row = c.target_row";
}

constexpr std::string_view kEpoch = "(SELECT epoch FROM revocation_epoch WHERE id = 1)";

// Everything a capability depends on, in one statement (one snapshot): the capability, and from
// each capability reached, what it stands for (parent) and what was presented to make it (via),
// each with its tenant's and membrane's state, and the revocation epoch. Rows only ever point at
// older rows, so the walk ends; creation keeps it within kMaxDependencies.
const std::string kWalk =
    "WITH RECURSIVE walk(row) AS ("
    "  SELECT row FROM capabilities WHERE digest = ?1"
    "  UNION SELECT c.parent_row FROM capabilities c JOIN walk ON c.row = walk.row WHERE c.parent_row IS NOT NULL"
    "  UNION SELECT c.via_row FROM capabilities c JOIN walk ON c.row = walk.row WHERE c.via_row IS NOT NULL"
    ") " +
    link_select(kEpoch, "walk JOIN capabilities c ON c.row = walk.row") + " LIMIT ?2";

// One capability of the walk (with via_row as column 21) and the epoch of the same snapshot.
const std::string kLinkByDigest = link_select(kEpoch, "capabilities c", ", c.via_row") + " WHERE c.digest = ?1";
const std::string kLinkByRow = link_select(kEpoch, "capabilities c", ", c.via_row") + " WHERE c.row = ?1";

// How many grants a revoke cut (Store::grants_cut_by): everything below the revoked membrane
// (?1, its revoke capability of kind ?3 aside) or grant (?2), down the parent and via links, less
// what was dead before: below a grant revoked on its own, or a capability of another revoked
// membrane.
constexpr const char* kGrantsCut = R"sql(
  WITH RECURSIVE
  below(row) AS (
    SELECT row FROM capabilities WHERE membrane_row = ?1 AND kind <> ?3
    UNION SELECT ?2 WHERE ?2 IS NOT NULL
    UNION SELECT c.row FROM below JOIN capabilities c ON c.parent_row = below.row
    UNION SELECT c.row FROM below JOIN capabilities c ON c.via_row = below.row
  ),
  dead(row) AS (
    SELECT below.row FROM below JOIN capabilities c ON c.row = below.row
      LEFT JOIN grants g ON g.row = below.row LEFT JOIN membranes m ON m.row = c.membrane_row
    WHERE below.row IS NOT ?2 AND (g.revoked_at IS NOT NULL OR (m.revoked = 1 AND c.membrane_row IS NOT ?1))
    UNION SELECT c.row FROM dead JOIN capabilities c ON c.parent_row = dead.row
    UNION SELECT c.row FROM dead JOIN capabilities c ON c.via_row = dead.row
  )
  SELECT (SELECT count(*) FROM below JOIN grants g ON g.row = below.row) -
         (SELECT count(*) FROM dead JOIN grants g ON g.row = dead.row)
)sql";

// kWalk from up to kWalkBatch capabilities at once, each row tagged with the digest its walk
// started from; unused places are bound to NULL, which matches nothing.
constexpr int kWalkBatch = 32;
// Writes one durable commit takes at most: bounds how long the first of them waits.
constexpr std::size_t kMaxWritesPerCommit = 128;

std::string walk_batch_sql() {
  std::string places;
  for (int i = 1; i <= kWalkBatch; ++i) places += (i > 1 ? ", ?" : "?") + std::to_string(i);
  return "WITH RECURSIVE walk(start, row) AS ("
         "  SELECT digest, row FROM capabilities WHERE digest IN (" + places + ")"
         "  UNION SELECT walk.start, c.parent_row FROM capabilities c JOIN walk ON c.row = walk.row"
         "    WHERE c.parent_row IS NOT NULL"
         "  UNION SELECT walk.start, c.via_row FROM capabilities c JOIN walk ON c.row = walk.row"
         "    WHERE c.via_row IS NOT NULL"
         ") " +
         link_select("walk.start", "walk JOIN capabilities c ON c.row = walk.row");
}

std::optional<std::int64_t> optional_int(const Statement& s, int column) {
  return s.column_is_null(column) ? std::nullopt : std::optional<std::int64_t>(s.column_int(column));
}

// Columns 10-18 of kWalk and of the batched walk: the grant, if the capability is one.
std::optional<StoredGrant> grant_of(const Statement& s) {
  if (s.column_is_null(11)) return std::nullopt;
  return StoredGrant{s.column_text(11),
                     s.column_is_null(12) ? std::nullopt : std::optional<std::string>(s.column_text(12)),
                     optional_int(s, 13),
                     optional_int(s, 14),
                     optional_int(s, 15),
                     optional_int(s, 16),
                     s.column_text(17),
                     optional_int(s, 18)};
}

// Columns 0-8 and 10-20 of kWalk and of the batched walk.
Link link_of(const Statement& s) {
  return Link{s.column_blob(1),
              static_cast<CapabilityKind>(s.column_int(2)),
              s.column_text(3),
              optional_int(s, 4),
              optional_int(s, 5),
              s.column_blob(6),
              s.column_int(7) != 0,
              !s.column_is_null(8) && s.column_int(8) != 0,
              grant_of(s),
              optional_int(s, 10),
              s.column_is_null(19) ? std::string() : s.column_text(19),
              s.column_is_null(20) ? std::string() : s.column_text(20)};
}

// A membrane row with the digest of its export capability (?3 is that kind).
constexpr const char* kMembraneColumns =
    "SELECT m.row, m.id, m.export_token, m.revoke_token, "
    "(SELECT c.digest FROM capabilities c WHERE c.membrane_row = m.row AND c.kind = ?3) FROM membranes m ";

std::int64_t kind_value(CapabilityKind kind) { return static_cast<std::int64_t>(kind); }

void bind_optional(Statement& st, int index, const std::optional<std::int64_t>& value) {
  value ? st.bind(index, *value) : st.bind_null(index);
}

StoredMembrane stored_membrane(const Statement& st) {
  return {st.column_int(0), st.column_text(1), st.column_blob(2), st.column_blob(3),
          st.column_is_null(4) ? std::string() : st.column_blob(4)};
}

// A grant for the inventory: its row, its capability's (and its digest, to walk what it depends
// on), its membrane's id and its parent grant's.
constexpr const char* kGrantEntryColumns =
    "SELECT g.id, g.label, m.id, c.kind, pg.id, c.created_at, g.expires_at, g.max_uses, g.rate_requests, "
    "g.rate_seconds, g.allow_from, g.revoked_at, g.operation, g.target, coalesce(u.uses, 0), u.last_used_at, "
    "c.digest, g.row "
    "FROM grants g JOIN capabilities c ON c.row = g.row JOIN membranes m ON m.row = c.membrane_row "
    "LEFT JOIN grants pg ON pg.row = c.parent_row LEFT JOIN grant_uses u ON u.row = g.row ";

Result<std::vector<StoredGrantEntry>> grant_entries(Statement& st) {
  std::vector<StoredGrantEntry> out;
  for (;;) {
    auto row = st.step();
    if (!row) return row.error();
    if (!*row) return out;
    StoredGrantEntry e;
    e.entry.id = st.column_text(0);
    if (!st.column_is_null(1)) e.entry.label = st.column_text(1);
    e.entry.membrane = st.column_text(2);
    e.entry.reexport = static_cast<CapabilityKind>(st.column_int(3)) == CapabilityKind::reexport;
    if (!st.column_is_null(4)) e.entry.stands_for = st.column_text(4);
    e.entry.created_at = st.column_int(5);
    e.entry.expires_at_ms = optional_int(st, 6);
    e.entry.max_uses = optional_int(st, 7);
    if (!st.column_is_null(8) && !st.column_is_null(9)) {
      e.entry.rate_limit = core::RateLimit{static_cast<std::uint32_t>(st.column_int(8)),
                                           static_cast<std::uint32_t>(st.column_int(9))};
    }
    e.allow_from_text = st.column_text(10);
    e.entry.revoked_at_ms = optional_int(st, 11);
    e.entry.operation = st.column_text(12);
    if (!st.column_is_null(13)) e.sealed_target = st.column_blob(13);
    e.entry.uses = st.column_int(14);
    e.entry.last_used_at_ms = optional_int(st, 15);
    e.digest = st.column_blob(16);
    e.row = st.column_int(17);
    out.push_back(std::move(e));
  }
}

// The capabilities walks reach as dependencies (a membrane's export capability, its tenant's
// create capability, the uri export a re-export stands for), each with what it depends on in
// turn, under the revocation epoch they were read at. Thousands of cold tokens share a handful of
// them: a read walk then reads its own token's row and takes the rest from here, instead of
// walking every ancestor again in one recursive statement. Rows only change by a revocation,
// which sets a new epoch, and then everything here goes.
class SharedLinks {
 public:
  struct Entry {
    Link link;
    std::optional<CapabilityRow> via;
  };
  std::optional<Entry> find(std::int64_t epoch, CapabilityRow row) const {
    std::lock_guard lock(mutex_);
    if (epoch != epoch_) return std::nullopt;
    auto it = entries_.find(row);
    if (it == entries_.end()) return std::nullopt;
    return it->second;
  }
  void store(std::int64_t epoch, CapabilityRow row, const Entry& entry) {
    std::lock_guard lock(mutex_);
    if (epoch != epoch_ || entries_.size() >= kCapacity) {
      entries_.clear();
      epoch_ = epoch;
    }
    entries_.insert_or_assign(row, entry);
  }

 private:
  // Ancestors are few; the bound only keeps a pathological store from growing this without end.
  static constexpr std::size_t kCapacity = 65536;
  mutable std::mutex mutex_;
  std::optional<std::int64_t> epoch_;
  std::unordered_map<CapabilityRow, Entry> entries_;
};

class SqliteSession final : public BackendSession {
 public:
  // `shared`: only for reads. A write transaction may see its own uncommitted changes, which must
  // not be handed to others.
  explicit SqliteSession(Connection& connection, SharedLinks* shared = nullptr)
      : connection_(connection), shared_(shared) {}

  Result<Walk> walk(std::string_view digest) override {
    return shared_ ? walk_sharing(digest) : walk_in_one_statement(digest);
  }

  // The presented capability's row, then its dependencies from the shared links or, for those
  // not there, one row each (kept for the next walks). Bounded like kWalk: at most
  // kMaxDependencies + 1 capabilities.
  Result<Walk> walk_sharing(std::string_view digest) {
    Walk walk;
    auto first = read_link(digest, std::nullopt, &walk.epoch);
    if (!first) return first.error();
    if (!*first) return walk;
    std::vector<CapabilityRow> pending;
    auto add = [&](CapabilityRow row, SharedLinks::Entry entry) {
      if (entry.link.parent) pending.push_back(*entry.link.parent);
      if (entry.via) pending.push_back(*entry.via);
      walk.links.emplace(row, std::move(entry.link));
    };
    add((*first)->first, std::move((*first)->second));
    while (!pending.empty() && walk.links.size() <= kMaxDependencies) {
      const CapabilityRow row = pending.back();
      pending.pop_back();
      if (walk.links.contains(row)) continue;
      if (auto known = shared_->find(*walk.epoch, row)) {
        add(row, std::move(*known));
        continue;
      }
      auto read = read_link({}, row, nullptr);
      if (!read) return read.error();
      if (!*read) continue;  // a dangling reference: the chain is cut (resolve_links)
      shared_->store(*walk.epoch, row, (*read)->second);
      add(row, std::move((*read)->second));
    }
    return walk;
  }

  // One capability by digest or by row (kLink); `epoch`, when given, gets its snapshot's epoch.
  Result<std::optional<std::pair<CapabilityRow, SharedLinks::Entry>>> read_link(
      std::string_view digest, std::optional<CapabilityRow> row, std::optional<std::int64_t>* epoch) {
    auto st = connection_.prepare(row ? kLinkByRow : kLinkByDigest);
    if (!st) return st.error();
    row ? st->bind(1, *row) : st->bind_blob(1, digest);
    auto found = st->step();
    if (!found) return found.error();
    if (!*found) return std::optional<std::pair<CapabilityRow, SharedLinks::Entry>>();
    if (epoch) *epoch = st->column_int(9);
    return std::optional{std::pair{st->column_int(0), SharedLinks::Entry{link_of(*st), optional_int(*st, 21)}}};
  }

  Result<Walk> walk_in_one_statement(std::string_view digest) {
    auto st = connection_.prepare(kWalk);
    if (!st) return st.error();
    st->bind_blob(1, digest).bind(2, static_cast<std::int64_t>(kMaxDependencies) + 1);
    Walk walk;
    while (true) {
      auto more = st->step();
      if (!more) return more.error();
      if (!*more) return walk;
      walk.links.emplace(st->column_int(0), link_of(*st));
      walk.epoch = st->column_int(9);
    }
  }

  // A page of membranes is decided in a few statements rather than one walk each.
  Result<std::map<std::string, Walk>> walk_each(const std::vector<std::string>& digests) override {
    std::map<std::string, Walk> walks;
    static const std::string sql = walk_batch_sql();
    for (std::size_t first = 0; first < digests.size(); first += kWalkBatch) {
      auto st = connection_.prepare(sql);
      if (!st) return st.error();
      for (int i = 0; i < kWalkBatch; ++i) {
        const std::size_t at = first + static_cast<std::size_t>(i);
        at < digests.size() ? st->bind_blob(i + 1, digests[at]) : st->bind_null(i + 1);
      }
      while (true) {
        auto more = st->step();
        if (!more) return more.error();
        if (!*more) break;
        walks[st->column_blob(9)].links.emplace(st->column_int(0), link_of(*st));
      }
    }
    return walks;
  }

  Result<std::int64_t> epoch() override {
    auto st = connection_.prepare("SELECT epoch FROM revocation_epoch WHERE id = 1");
    if (!st) return st.error();
    auto found = st->step();
    if (!found) return found.error();
    if (!*found) return Error::internal("the revocation epoch is missing");
    return st->column_int(0);
  }

  Status set_epoch(std::int64_t epoch) override {
    return run("UPDATE revocation_epoch SET epoch = ?1 WHERE id = 1", [&](Statement& st) { st.bind(1, epoch); });
  }

  // BEGIN IMMEDIATE already holds the database's one write lock.
  Status take_exclusive(Exclusive) override { return core::ok_status(); }

  Result<std::optional<std::string>> meta(std::string_view key) override {
    auto st = connection_.prepare("SELECT value FROM meta WHERE key = ?1");
    if (!st) return st.error();
    auto found = st->bind(1, key).step();
    if (!found) return found.error();
    if (!*found) return std::optional<std::string>();
    return std::optional<std::string>(st->column_blob(0));
  }

  Status insert_meta(std::string_view key, std::string_view value) override {
    return run("INSERT INTO meta(key, value) VALUES (?1, ?2)",
               [&](Statement& st) { st.bind(1, key).bind_blob(2, value); });
  }

  Result<bool> has_tenants() override {
    auto st = connection_.prepare("SELECT EXISTS (SELECT 1 FROM tenants)");
    if (!st) return st.error();
    auto row = st->step();
    if (!row) return row.error();
    return st->column_int(0) != 0;
  }

  Result<bool> charge(const std::string& tenant_id, const Usage& add, const TenantQuotas& limits) override {
    if (auto s = run("INSERT INTO tenant_usage(tenant_id) VALUES (?1) ON CONFLICT(tenant_id) DO NOTHING",
                     [&](Statement& st) { st.bind(1, tenant_id); });
        !s) {
      return s.error();
    }
    auto st = connection_.prepare(
        "UPDATE tenant_usage SET membranes = membranes + ?2, grants = grants + ?3, stored_bytes = stored_bytes + ?4 "
        "WHERE tenant_id = ?1 AND (?5 = 0 OR membranes + ?2 <= ?5) AND (?6 = 0 OR grants + ?3 <= ?6) "
        "AND (?7 = 0 OR stored_bytes + ?4 <= ?7) RETURNING 1");
    if (!st) return st.error();
    st->bind(1, tenant_id).bind(2, add.membranes).bind(3, add.grants).bind(4, add.stored_bytes);
    st->bind(5, static_cast<std::int64_t>(limits.membranes)).bind(6, static_cast<std::int64_t>(limits.grants));
    st->bind(7, static_cast<std::int64_t>(limits.stored_bytes));
    auto charged = st->step();
    if (!charged) return charged.error();
    if (auto rest = st->run(); !rest) return rest.error();
    return *charged;
  }

  Result<Usage> usage(const std::string& tenant_id) override {
    auto st = connection_.prepare("SELECT membranes, grants, stored_bytes FROM tenant_usage WHERE tenant_id = ?1");
    if (!st) return st.error();
    auto found = st->bind(1, tenant_id).step();
    if (!found) return found.error();
    if (!*found) return Usage{};
    return Usage{st->column_int(0), st->column_int(1), st->column_int(2)};
  }

  Status insert_tenant(const std::string& id, std::int64_t created_at) override {
    return run("INSERT INTO tenants(id, created_at) VALUES (?1, ?2)",
               [&](Statement& st) { st.bind(1, id).bind(2, created_at); });
  }

  Result<std::vector<TenantEntry>> tenants(const std::optional<std::string>& after, std::size_t limit) override {
    auto st = connection_.prepare(
        "SELECT id, created_at, deleted FROM tenants WHERE ?1 IS NULL OR id > ?1 ORDER BY id LIMIT ?2");
    if (!st) return st.error();
    after ? st->bind(1, *after) : st->bind_null(1);
    st->bind(2, static_cast<std::int64_t>(limit));
    std::vector<TenantEntry> out;
    while (true) {
      auto more = st->step();
      if (!more) return more.error();
      if (!*more) return out;
      out.push_back({st->column_text(0), st->column_int(1), st->column_int(2) != 0});
    }
  }

  Result<std::optional<TenantEntry>> tenant(const std::string& id) override {
    auto st = connection_.prepare("SELECT id, created_at, deleted FROM tenants WHERE id = ?1");
    if (!st) return st.error();
    auto found = st->bind(1, id).step();
    if (!found) return found.error();
    if (!*found) return std::optional<TenantEntry>();
    return std::optional<TenantEntry>(TenantEntry{st->column_text(0), st->column_int(1), st->column_int(2) != 0});
  }

  Status mark_tenant_deleted(const std::string& tenant_id) override {
    if (auto s = run("UPDATE tenants SET deleted = 1 WHERE id = ?1", [&](Statement& st) { st.bind(1, tenant_id); });
        !s) {
      return s;
    }
    return run("UPDATE membranes SET revoked = 1 WHERE tenant_id = ?1", [&](Statement& st) { st.bind(1, tenant_id); });
  }

  Result<CapabilityRow> insert_capability(const CapabilityRecord& r) override {
    auto s = run(
        "INSERT INTO capabilities(digest, kind, tenant_id, membrane_row, parent_row, via_row, config, created_at, "
        "target_row) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        [&](Statement& st) {
          st.bind_blob(1, r.digest).bind(2, kind_value(r.kind)).bind(3, r.tenant_id).bind(8, r.created_at);
          bind_optional(st, 4, r.membrane);
          bind_optional(st, 5, r.parent);
          bind_optional(st, 6, r.via);
          r.sealed_config ? st.bind_blob(7, *r.sealed_config) : st.bind_null(7);
          bind_optional(st, 9, r.target);
        });
    if (!s) return s.error();
    return connection_.last_insert_rowid();
  }

  Status insert_grant(CapabilityRow row, const StoredGrant& g, const std::string& operation,
                      const std::optional<std::string>& sealed_target) override {
    return run(
        "INSERT INTO grants(row, id, label, expires_at, max_uses, rate_requests, rate_seconds, allow_from, "
        "operation, target) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        [&](Statement& st) {
          st.bind(1, row).bind(2, g.id).bind(8, g.allow_from).bind(9, operation);
          sealed_target ? st.bind_blob(10, *sealed_target) : st.bind_null(10);
          g.label ? st.bind(3, *g.label) : st.bind_null(3);
          bind_optional(st, 4, g.expires_at_ms);
          bind_optional(st, 5, g.max_uses);
          bind_optional(st, 6, g.rate_requests);
          bind_optional(st, 7, g.rate_seconds);
        });
  }

  Status mark_grant_revoked(CapabilityRow row, std::int64_t at_ms) override {
    return run("UPDATE grants SET revoked_at = ?2 WHERE row = ?1 AND revoked_at IS NULL",
               [&](Statement& st) { st.bind(1, row).bind(2, at_ms); });
  }

  // BEGIN IMMEDIATE already holds the database's one write lock.
  Result<std::optional<GrantUses>> lock_grant_uses(CapabilityRow row) override {
    auto st = connection_.prepare("SELECT max_uses, reserved_uses FROM grants WHERE row = ?1 AND max_uses IS NOT NULL");
    if (!st) return st.error();
    st->bind(1, row);
    auto found = st->step();
    if (!found) return found.error();
    if (!*found) return std::optional<GrantUses>();
    return std::optional<GrantUses>(GrantUses{st->column_int(0), st->column_int(1)});
  }

  Status add_reserved_uses(CapabilityRow row, std::int64_t count) override {
    return run("UPDATE grants SET reserved_uses = reserved_uses + ?2 WHERE row = ?1",
               [&](Statement& st) { st.bind(1, row).bind(2, count); });
  }

  Status add_uses(CapabilityRow row, std::int64_t count, std::int64_t last_used_ms) override {
    // A grant that is gone is not counted (as an UPDATE of no row would not).
    return run(
        "INSERT INTO grant_uses (row, uses, last_used_at) SELECT ?1, ?2, ?3 WHERE EXISTS "
        "(SELECT 1 FROM grants WHERE row = ?1) ON CONFLICT (row) DO UPDATE SET uses = uses + excluded.uses, "
        "last_used_at = max(last_used_at, excluded.last_used_at)",
        [&](Statement& st) { st.bind(1, row).bind(2, count).bind(3, last_used_ms); });
  }

  Result<std::int64_t> count_grants_below(std::optional<MembraneRow> membrane,
                                          std::optional<CapabilityRow> grant) override {
    auto st = connection_.prepare(kGrantsCut);
    if (!st) return st.error();
    bind_optional(*st, 1, membrane);
    bind_optional(*st, 2, grant);
    st->bind(3, kind_value(CapabilityKind::revoke));
    auto row = st->step();
    if (!row) return row.error();
    return st->column_int(0);
  }

  Result<std::vector<StoredGrantEntry>> grants_of_membrane(const std::string& tenant_id, const std::string& membrane_id,
                                                           const std::optional<std::string>& after,
                                                           std::size_t limit) override {
    auto st = connection_.prepare(std::string(kGrantEntryColumns) +
                                  "WHERE c.tenant_id = ?1 AND m.id = ?2 AND m.revoked = 0 AND (?3 IS NULL OR g.id > ?3) "
                                  "ORDER BY g.id LIMIT ?4");
    if (!st) return st.error();
    st->bind(1, tenant_id).bind(2, membrane_id).bind(4, static_cast<std::int64_t>(limit));
    after ? st->bind(3, *after) : st->bind_null(3);
    return grant_entries(*st);
  }

  Result<std::optional<StoredGrantEntry>> grant_by_id(const std::string& tenant_id, const std::string& grant_id) override {
    auto st = connection_.prepare(std::string(kGrantEntryColumns) + "WHERE c.tenant_id = ?1 AND g.id = ?2");
    if (!st) return st.error();
    st->bind(1, tenant_id).bind(2, grant_id);
    auto entries = grant_entries(*st);
    if (!entries) return entries.error();
    if (entries->empty()) return std::optional<StoredGrantEntry>();
    return std::optional<StoredGrantEntry>(std::move(entries->front()));
  }

  Result<MembraneRow> insert_membrane(const MembraneRecord& r) override {
    auto s = run(
        "INSERT INTO membranes(tenant_id, id, export_token, revoke_token, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        [&](Statement& st) {
          st.bind(1, r.tenant_id).bind(2, r.id).bind_blob(3, r.sealed_export).bind_blob(4, r.sealed_revoke);
          st.bind(5, r.created_at);
        });
    if (!s) return s.error();
    return connection_.last_insert_rowid();
  }

  Status mark_membrane_revoked(MembraneRow row) override {
    return run("UPDATE membranes SET revoked = 1 WHERE row = ?1", [&](Statement& st) { st.bind(1, row); });
  }

  Result<std::optional<StoredMembrane>> membrane(const std::string& tenant_id, const std::string& id) override {
    auto st = connection_.prepare(std::string(kMembraneColumns) +
                                  "WHERE m.tenant_id = ?1 AND m.id = ?2 AND m.revoked = 0");
    if (!st) return st.error();
    auto found = st->bind(1, tenant_id).bind(2, id).bind(3, kind_value(CapabilityKind::export_)).step();
    if (!found) return found.error();
    if (!*found) return std::optional<StoredMembrane>();
    return std::optional<StoredMembrane>(stored_membrane(*st));
  }

  Result<std::vector<StoredMembrane>> membranes(const std::string& tenant_id, const std::optional<std::string>& after,
                                                std::size_t limit) override {
    auto st = connection_.prepare(std::string(kMembraneColumns) +
                                  "WHERE m.tenant_id = ?1 AND m.revoked = 0 AND (?2 IS NULL OR m.id > ?2) "
                                  "ORDER BY m.id LIMIT ?4");
    if (!st) return st.error();
    st->bind(1, tenant_id).bind(3, kind_value(CapabilityKind::export_)).bind(4, static_cast<std::int64_t>(limit));
    after ? st->bind(2, *after) : st->bind_null(2);
    std::vector<StoredMembrane> rows;
    while (true) {
      auto more = st->step();
      if (!more) return more.error();
      if (!*more) return rows;
      rows.push_back(stored_membrane(*st));
    }
  }

 private:
  // A statement without results: prepared, bound by `bind`, run to completion.
  template <typename Bind>
  Status run(const char* sql, Bind&& bind) {
    auto st = connection_.prepare(sql);
    if (!st) return st.error();
    bind(*st);
    return st->run();
  }

  Connection& connection_;
  SharedLinks* shared_;
};

class SqliteBackend final : public Backend {
 public:
  std::string_view name() const override { return "sqlite"; }
  bool waits_on_network() const override { return false; }

  // Concurrent writes share one transaction and one durable commit (group_commit.hpp).
  Status write(const SessionWork& work) override {
    return group_commit_.run(work);
  }

  Status read(const SessionWork& work) override {
    Lease lease = acquire();
    SqliteSession session(*lease, &shared_links_);
    return work(session);
  }

  Status add_connection(std::unique_ptr<Connection> connection) {
    std::lock_guard lock(mutex_);
    idle_.push_back(std::move(connection));
    return core::ok_status();
  }

  Status migrate();

 private:
  // A pooled connection, returned to the pool when the lease ends.
  class Lease {
   public:
    Lease(SqliteBackend& backend, std::unique_ptr<Connection> connection)
        : backend_(&backend), connection_(std::move(connection)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    ~Lease() {
      if (!connection_) return;
      std::lock_guard lock(backend_->mutex_);
      backend_->idle_.push_back(std::move(connection_));
      backend_->available_.notify_one();
    }
    Connection& operator*() { return *connection_; }
    Connection* operator->() { return connection_.get(); }

   private:
    SqliteBackend* backend_;
    std::unique_ptr<Connection> connection_;
  };

  // Local disk work is bounded (busy_timeout): a caller waits for a connection without a bound
  // of its own.
  Lease acquire() {
    std::unique_lock lock(mutex_);
    available_.wait(lock, [this] { return !idle_.empty(); });
    auto connection = std::move(idle_.back());
    idle_.pop_back();
    return Lease(*this, std::move(connection));
  }

  void commit_batch(const GroupCommit::Batch& batch);
  static Status run_apart(Connection& connection, SqliteSession& session, GroupCommit::Member& member);
  static Status run_member(SqliteSession& session, GroupCommit::Member& member);

  std::mutex mutex_;
  std::condition_variable available_;
  SharedLinks shared_links_;
  std::vector<std::unique_ptr<Connection>> idle_;
  GroupCommit group_commit_{[this](const GroupCommit::Batch& batch) { commit_batch(batch); }, kMaxWritesPerCommit};
};

// One transaction for the whole batch. A lone write runs as before: its failure rolls the
// transaction back. In a larger batch each write has a savepoint of its own, so that one
// write's failure undoes its changes alone; a savepoint that cannot be rolled back leaves the
// transaction in doubt, and the whole batch fails. A failed COMMIT fails every write in it.
void SqliteBackend::commit_batch(const GroupCommit::Batch& batch) {
  auto fail_all = [&](const Error& error) {
    for (GroupCommit::Member* member : batch) {
      if (!member->result || *member->result) member->result = error;
    }
  };
  Lease lease = acquire();
  auto tx = Transaction::begin(*lease);
  if (!tx) return fail_all(tx.error());
  SqliteSession session(*lease);
  if (batch.size() == 1) {
    if (!run_member(session, *batch.front())) return;
  } else {
    for (GroupCommit::Member* member : batch) {
      if (auto s = run_apart(*lease, session, *member); !s) return fail_all(s.error());
    }
  }
  if (auto committed = tx->commit(); !committed) fail_all(committed.error());
}

// Runs one write of a batch under its own savepoint; the status is the savepoint's.
Status SqliteBackend::run_apart(Connection& connection, SqliteSession& session, GroupCommit::Member& member) {
  if (auto s = connection.exec("SAVEPOINT member"); !s) return s;
  if (!run_member(session, member)) {
    if (auto s = connection.exec("ROLLBACK TO member"); !s) return s;
  }
  return connection.exec("RELEASE member");
}

// The write's own status (an exception it threw is kept for its caller, and counts as failed).
Status SqliteBackend::run_member(SqliteSession& session, GroupCommit::Member& member) {
  try {
    member.result = (*member.work)(session);
  } catch (...) {
    member.thrown = std::current_exception();
    member.result = Error::internal("the write failed");
  }
  return *member.result;
}

Status SqliteBackend::migrate() {
  Lease lease = acquire();
  auto tx = Transaction::begin(*lease);
  if (!tx) return tx.error();
  if (auto s = lease->exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT"); !s) {
    return s;
  }
  std::int64_t version = 0;
  {
    auto read = lease->prepare("SELECT version FROM schema_version");
    if (!read) return read.error();
    auto has_row = read->step();
    if (!has_row) return has_row.error();
    if (*has_row) version = read->column_int(0);
  }
  if (version > schema_version()) {
    return Error::internal("the database was written by a newer membraned (schema " + std::to_string(version) + ")");
  }
  for (auto v = version; v < schema_version(); ++v) {
    if (auto s = lease->exec(kMigrations[v]); !s) return s;
  }
  if (version != schema_version()) {
    if (auto s = lease->exec("DELETE FROM schema_version"); !s) return s;
    auto write = lease->prepare("INSERT INTO schema_version(version) VALUES (?1)");
    if (!write) return write.error();
    if (auto s = write->bind(1, static_cast<std::int64_t>(schema_version())).run(); !s) return s;
  }
  return tx->commit();
}

}  // namespace

int schema_version() { return static_cast<int>(std::size(kMigrations)); }

Result<std::unique_ptr<Backend>> open_backend(const SqliteOptions& options) {
  auto backend = std::make_unique<SqliteBackend>();
  const std::size_t count = options.connections == 0 ? 1 : options.connections;
  for (std::size_t i = 0; i < count; ++i) {
    auto connection = Connection::open(options.path.string(), options.busy_timeout_ms);
    if (!connection) return connection.error();
    // WAL: readers never block the writer. synchronous=FULL: a COMMIT (and so a 202 after a
    // revoke) has reached stable storage before it returns, so neither kill -9 nor power loss
    // can bring a revoked capability back.
    for (const char* pragma : {"PRAGMA journal_mode=WAL",
                               options.durable_commits ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF",
                               "PRAGMA foreign_keys=ON"}) {
      if (auto s = (*connection)->exec(pragma); !s) return s.error();
    }
    (void)backend->add_connection(std::move(*connection));
  }
  if (auto s = backend->migrate(); !s) return s.error();
  return std::unique_ptr<Backend>(std::move(backend));
}

}  // namespace membraned::storage::sqlite
