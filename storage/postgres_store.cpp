#include "storage/postgres_store.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "storage/resolution.hpp"
#include "storage/sealing.hpp"

namespace membraned::storage {

using core::Error;
using core::ErrorKind;
using sealing::kKeyCheckContext;
using sealing::kKeyCheckPlaintext;
using sealing::membrane_token_context;
using sealing::now_seconds;
using sealing::uri_config_context;

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
};

// pg_advisory_xact_lock key of the migrations ("membrand" in ASCII): instances starting at once
// on one database migrate one after the other; the later ones find the work done.
constexpr std::int64_t kMigrationLock = 0x6d656d6272616e64;
// ... and of the first tenant's creation ("membfrst").
constexpr std::int64_t kFirstTenantLock = 0x6d656d6266727374;

// Everything a capability depends on, in one statement: the presented capability, and, from
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
         m.revoked, (SELECT epoch FROM revocation_epoch WHERE id = 1)
  FROM walk JOIN capabilities c ON c.row_id = walk.row_id JOIN tenants t ON t.id = c.tenant_id
  LEFT JOIN membranes m ON m.row_id = c.membrane_row
  LIMIT $2
)sql";

// Live membranes chosen by `selection` (a query over membranes, returning row_id, id and the
// sealed tokens), each with whether it is cut: made through a capability that has died since
// (its export capability no longer resolves), which makes it gone like a revoked one. The walk
// is kWalk's, from each membrane's export capability at once.
std::string membranes_with_cut(const char* selection) {
  return std::string("WITH RECURSIVE chosen AS (") + selection + R"sql(),
  walk(start, row_id) AS (
    SELECT c.membrane_row, c.row_id FROM chosen JOIN capabilities c ON c.membrane_row = chosen.row_id AND c.kind = 4
    UNION
    SELECT walk.start, next.row_id FROM walk JOIN capabilities c ON c.row_id = walk.row_id
      CROSS JOIN LATERAL (VALUES (c.parent_row), (c.via_row)) AS next(row_id)
    WHERE next.row_id IS NOT NULL
  )
  SELECT chosen.row_id, chosen.id, chosen.export_token, chosen.revoke_token,
         NOT EXISTS (SELECT 1 FROM capabilities e WHERE e.membrane_row = chosen.row_id AND e.kind = 4)
         OR EXISTS (SELECT 1 FROM walk JOIN capabilities c ON c.row_id = walk.row_id
                    JOIN tenants t ON t.id = c.tenant_id LEFT JOIN membranes m ON m.row_id = c.membrane_row
                    WHERE walk.start = chosen.row_id AND (t.deleted OR COALESCE(m.revoked, false)))
  FROM chosen ORDER BY chosen.id
)sql";
}

const std::string& find_membrane_sql() {
  static const std::string sql = membranes_with_cut(
      "SELECT row_id, id, export_token, revoke_token FROM membranes "
      "WHERE tenant_id = $1 AND id = $2 AND NOT revoked");
  return sql;
}

const std::string& list_membranes_sql() {
  static const std::string sql = membranes_with_cut(
      "SELECT row_id, id, export_token, revoke_token FROM membranes "
      "WHERE tenant_id = $1 AND NOT revoked AND ($2::bytea IS NULL OR id > $2::bytea) ORDER BY id LIMIT $3");
  return sql;
}

pg::Param optional_integer(const std::optional<std::int64_t>& value) {
  return value ? pg::integer(*value) : pg::null();
}

}  // namespace

// A pooled connection, returned to the pool when the lease ends.
class PostgresStore::Lease {
 public:
  Lease(PostgresStore& store, std::unique_ptr<pg::Connection> connection, bool reused)
      : store_(&store), connection_(std::move(connection)), reused_(reused) {}
  Lease(Lease&& other) noexcept = default;
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (connection_) store_->release(std::move(connection_));
  }
  pg::Connection& operator*() { return *connection_; }
  pg::Connection* operator->() { return connection_.get(); }
  bool reused() const { return reused_; }

 private:
  PostgresStore* store_;
  std::unique_ptr<pg::Connection> connection_;
  bool reused_;
};

PostgresStore::PostgresStore(const PostgresOptions& options, MasterKey key)
    : settings_{options.url, options.connect_timeout, options.statement_timeout, options.durable_commits},
      pool_size_(std::max<std::size_t>(options.connections, 1)),
      key_(std::move(key)) {}

// Waits for an idle connection, or opens one while fewer than pool_size_ exist. The wait is
// bounded: when every connection stays busy that long, the answer is 503 rather than a queue
// that grows without end.
Result<PostgresStore::Lease> PostgresStore::acquire() {
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
  auto connection = pg::Connection::open(settings_);
  if (!connection) {
    lock.lock();
    --open_;
    available_.notify_one();
    return connection.error();
  }
  return Lease(*this, std::move(*connection), /*reused=*/false);
}

void PostgresStore::release(std::unique_ptr<pg::Connection> connection) {
  std::vector<std::unique_ptr<pg::Connection>> closing;
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
  // After a failover the database may no longer hold what was cached (a capability created just
  // before it, on a standby that never received it), under the same epoch: start afresh.
  std::lock_guard lock(cache_mutex_);
  cache_.clear();
  cache_epoch_ = -1;
}

template <typename Work>
auto PostgresStore::with_connection(Work&& work) -> std::invoke_result_t<Work&, pg::Connection&> {
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

int PostgresStore::schema_version() { return static_cast<int>(std::size(kMigrations)); }

Status PostgresStore::migrate(pg::Connection& connection) {
  auto tx = pg::Transaction::begin(connection);
  if (!tx) return tx.error();
  // Held to the end of the transaction: a second instance waits here, then sees the tables.
  if (auto lock = connection.query("SELECT pg_advisory_xact_lock($1)", {pg::integer(kMigrationLock)}); !lock) {
    return lock.error();
  }
  if (auto s = connection.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"); !s) {
    return s.error();
  }
  auto read = connection.query("SELECT version FROM schema_version");
  if (!read) return read.error();
  if (read->size() > 1) return Error::internal("schema_version holds more than one row");
  const std::int64_t version = read->size() == 1 ? read->integer(0, 0) : 0;
  if (version > schema_version()) {
    return Error::internal("the database was written by a newer membraned (schema " + std::to_string(version) + ")");
  }
  for (auto v = version; v < schema_version(); ++v) {
    if (auto s = connection.exec(kMigrations[v]); !s) return s.error();
  }
  if (version != schema_version()) {
    if (auto s = connection.exec("DELETE FROM schema_version"); !s) return s.error();
    auto write = connection.query("INSERT INTO schema_version(version) VALUES ($1)", {pg::integer(schema_version())});
    if (!write) return write.error();
  }

  // The master key must open what this database holds; a new database records a check value.
  auto check = connection.query("SELECT value FROM meta WHERE key = 'key_check'");
  if (!check) return check.error();
  if (check->size() == 1) {
    auto opened = key_.open(check->bytes(0, 0), kKeyCheckContext);
    if (!opened || *opened != kKeyCheckPlaintext) {
      return Error::invalid("master key", "the master key does not open this database's secrets");
    }
  } else {
    auto sealed = key_.seal(kKeyCheckPlaintext, kKeyCheckContext);
    if (!sealed) return sealed.error();
    auto insert = connection.query("INSERT INTO meta(key, value) VALUES ('key_check', $1)", {pg::bytes(*sealed)});
    if (!insert) return insert.error();
  }
  return tx->commit();
}

Result<std::unique_ptr<PostgresStore>> PostgresStore::open(const PostgresOptions& options, MasterKey key) {
  std::unique_ptr<PostgresStore> store(new PostgresStore(options, std::move(key)));
  auto lease = store->acquire();
  if (!lease) return lease.error();
  if (auto s = store->migrate(**lease); !s) return s.error();
  return store;
}

Result<bool> PostgresStore::holds_data(const PostgresOptions& options) {
  auto connection = pg::Connection::open(
      pg::Settings{options.url, options.connect_timeout, options.statement_timeout, options.durable_commits});
  if (!connection) return connection.error();
  auto meta = (*connection)->query(
      "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename = $1)",
      {pg::text("meta")});
  if (!meta) return meta.error();
  if (!meta->boolean(0, 0)) return false;
  auto check = (*connection)->query("SELECT EXISTS (SELECT 1 FROM meta WHERE key = 'key_check')");
  if (!check) return check.error();
  return check->boolean(0, 0);
}

Status PostgresStore::insert_capability(pg::Connection& connection, const Token& token, CapabilityKind kind,
                                        const std::string& tenant_id, std::optional<MembraneRow> membrane,
                                        std::optional<CapabilityRow> parent, std::optional<CapabilityRow> via,
                                        std::optional<std::string> sealed_config) {
  auto insert = connection.query(
      "INSERT INTO capabilities(digest, kind, tenant_id, membrane_row, parent_row, via_row, config, created_at) "
      "VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
      {pg::bytes(token.digest()), pg::integer(static_cast<std::int64_t>(kind)), pg::text(tenant_id),
       optional_integer(membrane), optional_integer(parent), optional_integer(via),
       sealed_config ? pg::bytes(*sealed_config) : pg::null(), pg::integer(now_seconds())});
  if (!insert) return insert.error();
  return core::ok_status();
}

Result<std::string> PostgresStore::create_tenant(const TenantTokens& tokens) {
  return with_connection([&](pg::Connection& connection) -> Result<std::string> {
    auto tx = pg::Transaction::begin(connection);
    if (!tx) return tx.error();
    auto id = insert_tenant(connection, tokens);
    if (!id) return id;
    if (auto s = tx->commit(); !s) return s.error();
    return id;
  });
}

// Instances starting together on an empty database each ask; the transaction-scoped advisory
// lock makes their check-then-insert one at a time, so exactly one creates the tenant.
Result<std::optional<std::string>> PostgresStore::create_first_tenant(const TenantTokens& tokens) {
  return with_connection([&](pg::Connection& connection) -> Result<std::optional<std::string>> {
    auto tx = pg::Transaction::begin(connection);
    if (!tx) return tx.error();
    if (auto lock = connection.query("SELECT pg_advisory_xact_lock($1)", {pg::integer(kFirstTenantLock)}); !lock) {
      return lock.error();
    }
    auto rows = connection.query("SELECT EXISTS (SELECT 1 FROM tenants)");
    if (!rows) return rows.error();
    if (rows->boolean(0, 0)) return std::optional<std::string>();
    auto id = insert_tenant(connection, tokens);
    if (!id) return id.error();
    if (auto s = tx->commit(); !s) return s.error();
    return std::optional<std::string>(std::move(*id));
  });
}

Result<std::string> PostgresStore::insert_tenant(pg::Connection& connection, const TenantTokens& tokens) {
  auto random = core::random_bytes(16);
  if (!random) return random.error();
  const std::string id = core::hex_encode(*random);
  auto insert = connection.query("INSERT INTO tenants(id, created_at) VALUES ($1, $2)",
                                 {pg::text(id), pg::integer(now_seconds())});
  if (!insert) return insert.error();
  for (auto [token, kind] : {std::pair{&tokens.create, CapabilityKind::create},
                             std::pair{&tokens.query, CapabilityKind::query},
                             std::pair{&tokens.delete_self, CapabilityKind::delete_self}}) {
    if (auto s = insert_capability(connection, *token, kind, id, std::nullopt, std::nullopt, std::nullopt,
                                   std::nullopt);
        !s) {
      return s.error();
    }
  }
  return id;
}

Result<bool> PostgresStore::has_tenants() {
  return with_connection([&](pg::Connection& connection) -> Result<bool> {
    auto rows = connection.query("SELECT EXISTS (SELECT 1 FROM tenants)");
    if (!rows) return rows.error();
    return rows->boolean(0, 0);
  });
}

// A fresh random epoch (see resolve()): 2^-64 odds of meeting one a cache holds.
Status PostgresStore::new_revocation_epoch(pg::Connection& connection) {
  auto bytes = core::random_bytes(8);
  if (!bytes) return bytes.error();
  std::uint64_t value = 0;
  for (unsigned char b : *bytes) value = (value << 8) | b;
  auto updated = connection.query("UPDATE revocation_epoch SET epoch = $1 WHERE id = 1",
                                  {pg::integer(static_cast<std::int64_t>(value))});
  if (!updated) return updated.error();
  return core::ok_status();
}

Result<std::int64_t> PostgresStore::revocation_epoch(pg::Connection& connection) {
  auto rows = connection.query("SELECT epoch FROM revocation_epoch WHERE id = 1");
  if (!rows) return rows.error();
  if (rows->size() != 1) return Error::internal("the revocation epoch is missing");
  return rows->integer(0, 0);
}

// Resolutions are cached with the revocation epoch they were made under, and every resolve is
// one round trip: a cached token reads the epoch alone; any other runs the walk, which returns
// the epoch of its own snapshot. Any revoke or deleteSelf (by any instance sharing the
// database) sets a new epoch in its own transaction, so from its commit on, no resolution
// cached before it is used. Creations need no new epoch: they never make an existing capability
// die. Epochs are random, not counted: a counter can come back to a value it had (a database
// restored from a dump, a standby promoted behind its primary) with other revocations behind
// it, and a cache made under that value would be taken as current. The cache follows whatever
// epoch its latest walk saw; only equality with the database's epoch of the moment counts.
Result<Resolved> PostgresStore::resolve(const Token& token) {
  const std::string digest = token.digest();
  return with_connection([&](pg::Connection& connection) -> Result<Resolved> {
    std::optional<Resolved> cached;
    std::int64_t cached_epoch = -1;
    {
      std::lock_guard lock(cache_mutex_);
      if (auto it = cache_.find(digest); it != cache_.end()) {
        cached = it->second;
        cached_epoch = cache_epoch_;
      }
    }
    if (cached) {
      auto epoch = revocation_epoch(connection);
      if (!epoch) return epoch.error();
      if (*epoch == cached_epoch) return std::move(*cached);
    }
    std::int64_t epoch = -1;
    auto resolved = resolve_digest(connection, digest, &epoch);
    if (!resolved) return resolved;
    std::lock_guard lock(cache_mutex_);
    if (epoch != cache_epoch_) {
      cache_.clear();
      cache_epoch_ = epoch;
    }
    if (epoch == cache_epoch_) {
      if (cache_.size() >= kResolutionCacheSize) cache_.clear();
      cache_.insert_or_assign(digest, *resolved);
    }
    return resolved;
  });
}

Result<Resolved> PostgresStore::resolve_digest(pg::Connection& connection, const std::string& digest,
                                               std::int64_t* epoch) {
  auto rows = connection.query(kWalk, {pg::bytes(digest), pg::integer(static_cast<std::int64_t>(kMaxDependencies) + 1)});
  if (!rows) return rows.error();
  std::map<CapabilityRow, Link> links;
  for (int i = 0; i < rows->size(); ++i) {
    const auto& r = *rows;
    links.emplace(r.integer(i, 0),
                  Link{r.bytes(i, 1), static_cast<CapabilityKind>(r.integer(i, 2)), r.bytes(i, 3),
                       r.is_null(i, 4) ? std::nullopt : std::optional<MembraneRow>(r.integer(i, 4)),
                       r.is_null(i, 5) ? std::nullopt : std::optional<CapabilityRow>(r.integer(i, 5)),
                       r.is_null(i, 6) ? std::string() : r.bytes(i, 6), r.boolean(i, 7),
                       !r.is_null(i, 8) && r.boolean(i, 8)});
    if (epoch != nullptr) *epoch = r.integer(i, 9);
  }
  return resolve_links(links, digest, key_);
}

Result<Resolved> PostgresStore::recheck(pg::Connection& connection, const Token& presented, CapabilityKind kind) {
  auto resolved = resolve_digest(connection, presented.digest());
  if (!resolved) return resolved.error();
  if (resolved->kind != kind) return Error::unauthorized("the capability does not allow this");
  return resolved;
}

Status PostgresStore::create_membrane(const Token& presented, const Membrane& membrane) {
  return with_connection([&](pg::Connection& connection) -> Status {
    auto tx = pg::Transaction::begin(connection);
    if (!tx) return tx.error();
    auto who = recheck(connection, presented, CapabilityKind::create);
    if (!who) return who.error();
    if (who->walked + 1 > kMaxDependencies) {
      return Error::invalid("capability", "this create capability is too far from its origin to create more");
    }
    const std::string& tenant_id = who->tenant_id;
    auto sealed_export = key_.seal(membrane.export_token.text(),
                                   membrane_token_context("export", tenant_id, membrane.id));
    if (!sealed_export) return sealed_export.error();
    auto sealed_revoke = key_.seal(membrane.revoke_token.text(),
                                   membrane_token_context("revoke", tenant_id, membrane.id));
    if (!sealed_revoke) return sealed_revoke.error();

    auto existing = connection.query(find_membrane_sql(), {pg::text(tenant_id), pg::bytes(membrane.id)});
    if (!existing) return existing.error();
    if (existing->size() > 0) {
      // A membrane cut with the capability it was made through is gone, like a revoked one: it
      // frees its id (and is marked revoked now, so the unique index agrees).
      if (!existing->boolean(0, 4)) return Error::conflict("a membrane with this id exists");
      auto mark = connection.query("UPDATE membranes SET revoked = true WHERE row_id = $1",
                                   {pg::integer(existing->integer(0, 0))});
      if (!mark) return mark.error();
    }
    // A concurrent create of the same id waits on the unique index, then fails: conflict.
    auto insert = connection.query(
        "INSERT INTO membranes(tenant_id, id, export_token, revoke_token, created_at) "
        "VALUES ($1, $2, $3, $4, $5) RETURNING row_id",
        {pg::text(tenant_id), pg::bytes(membrane.id), pg::bytes(*sealed_export), pg::bytes(*sealed_revoke),
         pg::integer(now_seconds())});
    if (!insert) {
      if (insert.error().kind == ErrorKind::conflict) return Error::conflict("a membrane with this id exists");
      return insert.error();
    }
    const MembraneRow row = insert->integer(0, 0);
    for (auto [token, kind] : {std::pair{&membrane.export_token, CapabilityKind::export_},
                               std::pair{&membrane.revoke_token, CapabilityKind::revoke}}) {
      if (auto s = insert_capability(connection, *token, kind, tenant_id, row, std::nullopt, who->presented,
                                     std::nullopt);
          !s) {
        return s.error();
      }
    }
    return tx->commit();
  });
}

Result<Membrane> PostgresStore::membrane_from_row(const std::string& tenant_id, const std::string& id,
                                                  std::string_view sealed_export, std::string_view sealed_revoke) {
  auto export_text = key_.open(sealed_export, membrane_token_context("export", tenant_id, id));
  auto revoke_text = key_.open(sealed_revoke, membrane_token_context("revoke", tenant_id, id));
  if (!export_text || !revoke_text) return Error::internal("a stored membrane token does not open");
  auto export_token = Token::parse(*export_text);
  auto revoke_token = Token::parse(*revoke_text);
  if (!export_token || !revoke_token) return Error::internal("a stored membrane token is malformed");
  return Membrane{id, std::move(*export_token), std::move(*revoke_token)};
}

Result<std::optional<Membrane>> PostgresStore::find_membrane(const std::string& tenant_id, const std::string& id) {
  return with_connection([&](pg::Connection& connection) -> Result<std::optional<Membrane>> {
    auto rows = connection.query(find_membrane_sql(), {pg::text(tenant_id), pg::bytes(id)});
    if (!rows) return rows.error();
    if (rows->size() == 0 || rows->boolean(0, 4)) return std::optional<Membrane>();
    auto membrane = membrane_from_row(tenant_id, id, rows->bytes(0, 2), rows->bytes(0, 3));
    if (!membrane) return membrane.error();
    return std::optional<Membrane>(std::move(*membrane));
  });
}

Result<MembranePage> PostgresStore::list_membranes(const std::string& tenant_id,
                                                   const std::optional<std::string>& after, std::size_t limit) {
  limit = std::min<std::size_t>(limit, 1'000'000);
  return with_connection([&](pg::Connection& connection) -> Result<MembranePage> {
    MembranePage page;
    std::optional<std::string> cursor = after;
    // Reads in batches and skips cut membranes, until the page plus one more is found or the
    // membranes run out: "completed" must say exactly whether more exist.
    const std::size_t batch = limit + 1;
    while (true) {
      auto rows = connection.query(list_membranes_sql(),
                                   {pg::text(tenant_id), cursor ? pg::bytes(*cursor) : pg::null(),
                                    pg::integer(static_cast<std::int64_t>(batch))});
      if (!rows) return rows.error();
      for (int i = 0; i < rows->size(); ++i) {
        if (rows->boolean(i, 4)) continue;  // cut
        if (page.membranes.size() == limit) {
          page.completed = false;
          return page;
        }
        auto membrane = membrane_from_row(tenant_id, rows->bytes(i, 1), rows->bytes(i, 2), rows->bytes(i, 3));
        if (!membrane) return membrane.error();
        page.membranes.push_back(std::move(*membrane));
      }
      if (static_cast<std::size_t>(rows->size()) < batch) return page;
      cursor = rows->bytes(rows->size() - 1, 1);
    }
  });
}

Status PostgresStore::export_uri(const Token& presented, const Token& token, const core::UriExport& config) {
  std::string plain = core::to_json(config).dump();
  auto sealed = key_.seal(plain, uri_config_context(token.digest()));
  core::secure_wipe(plain);
  if (!sealed) return sealed.error();
  return with_connection([&](pg::Connection& connection) -> Status {
    auto tx = pg::Transaction::begin(connection);
    if (!tx) return tx.error();
    auto who = recheck(connection, presented, CapabilityKind::export_);
    if (!who) return who.error();
    if (who->walked + 1 > kMaxDependencies) {
      return Error::invalid("capability", "this export capability is too far from its origin to export more");
    }
    if (auto s = insert_capability(connection, token, CapabilityKind::uri, who->tenant_id, who->membrane,
                                   std::nullopt, who->presented, *sealed);
        !s) {
      return s.error();
    }
    return tx->commit();
  });
}

Status PostgresStore::export_reexport(const Token& presented, const Token& token, const Token& target) {
  return with_connection([&](pg::Connection& connection) -> Status {
    // Both resolved inside the write transaction; a revoke committing meanwhile makes what is
    // inserted unresolvable, since it depends on what was revoked.
    auto tx = pg::Transaction::begin(connection);
    if (!tx) return tx.error();
    auto who = recheck(connection, presented, CapabilityKind::export_);
    if (!who) return who.error();
    auto resolved = resolve_digest(connection, target.digest());
    if (!resolved) {
      if (resolved.error().kind == ErrorKind::unauthorized) {
        return Error::not_found("the capability to re-export does not exist or is revoked");
      }
      return resolved.error();
    }
    if (resolved->depth + 1 >= kMaxReexportDepth || resolved->walked + who->walked + 1 > kMaxDependencies) {
      return Error::invalid("capability", "re-export chains are limited to " + std::to_string(kMaxReexportDepth) +
                                              " links");
    }
    if (auto s = insert_capability(connection, token, CapabilityKind::reexport, who->tenant_id, who->membrane,
                                   resolved->presented, who->presented, std::nullopt);
        !s) {
      return s.error();
    }
    return tx->commit();
  });
}

Status PostgresStore::revoke_membrane(const Token& presented) {
  // One row: every capability exported through the membrane, every re-export below them and
  // everything made through them depend on it, and check it on each use. The epoch bump in
  // the same transaction retires every cached resolution, on every instance.
  return with_connection([&](pg::Connection& connection) -> Status {
    auto tx = pg::Transaction::begin(connection);
    if (!tx) return tx.error();
    auto who = recheck(connection, presented, CapabilityKind::revoke);
    if (!who) return who.error();
    auto mark = connection.query("UPDATE membranes SET revoked = true WHERE row_id = $1", {pg::integer(*who->membrane)});
    if (!mark) return mark.error();
    auto bump = new_revocation_epoch(connection);
    if (!bump) return bump.error();
    return tx->commit();
  });
}

Status PostgresStore::delete_tenant(const Token& presented) {
  return with_connection([&](pg::Connection& connection) -> Status {
    auto tx = pg::Transaction::begin(connection);
    if (!tx) return tx.error();
    auto who = recheck(connection, presented, CapabilityKind::delete_self);
    if (!who) return who.error();
    auto tenant = connection.query("UPDATE tenants SET deleted = true WHERE id = $1", {pg::text(who->tenant_id)});
    if (!tenant) return tenant.error();
    auto membranes = connection.query("UPDATE membranes SET revoked = true WHERE tenant_id = $1",
                                      {pg::text(who->tenant_id)});
    if (!membranes) return membranes.error();
    auto bump = new_revocation_epoch(connection);
    if (!bump) return bump.error();
    return tx->commit();
  });
}

}  // namespace membraned::storage
