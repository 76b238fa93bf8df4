#include "storage/sqlite_store.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
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
    // 2: the revocation epoch, bumped in the transaction of every revoke and deleteSelf, so a
    // cache of resolutions knows with one indexed read whether anything may have died since.
    R"sql(
    CREATE TABLE revocation_epoch (id INTEGER PRIMARY KEY CHECK (id = 1), epoch INTEGER NOT NULL) STRICT;
    INSERT INTO revocation_epoch (id, epoch) VALUES (1, 0);
    )sql",
};

}  // namespace

std::string_view to_string(CapabilityKind kind) {
  switch (kind) {
    case CapabilityKind::create: return "create";
    case CapabilityKind::query: return "query";
    case CapabilityKind::delete_self: return "deleteSelf";
    case CapabilityKind::export_: return "export";
    case CapabilityKind::revoke: return "revoke";
    case CapabilityKind::uri: return "invoke";
    case CapabilityKind::reexport: return "reexport";
  }
  return "unknown";
}

// A pooled connection, returned to the pool when the lease ends.
class SqliteStore::Lease {
 public:
  Lease(SqliteStore& store, std::unique_ptr<sqlite::Connection> connection)
      : store_(&store), connection_(std::move(connection)) {}
  Lease(Lease&& other) noexcept = default;
  ~Lease() {
    if (!connection_) return;
    std::lock_guard lock(store_->mutex_);
    store_->idle_.push_back(std::move(connection_));
    store_->available_.notify_one();
  }
  sqlite::Connection& operator*() { return *connection_; }
  sqlite::Connection* operator->() { return connection_.get(); }

 private:
  SqliteStore* store_;
  std::unique_ptr<sqlite::Connection> connection_;
};

SqliteStore::Lease SqliteStore::acquire() {
  std::unique_lock lock(mutex_);
  available_.wait(lock, [this] { return !idle_.empty(); });
  auto connection = std::move(idle_.back());
  idle_.pop_back();
  return Lease(*this, std::move(connection));
}

int SqliteStore::schema_version() { return static_cast<int>(std::size(kMigrations)); }

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const SqliteOptions& options, MasterKey key) {
  std::unique_ptr<SqliteStore> store(new SqliteStore(std::move(key)));
  const std::size_t count = options.connections == 0 ? 1 : options.connections;
  for (std::size_t i = 0; i < count; ++i) {
    auto connection = sqlite::Connection::open(options.path.string());
    if (!connection) return connection.error();
    sqlite3_busy_timeout((*connection)->handle(), options.busy_timeout_ms);
    // WAL: readers never block the writer. synchronous=FULL: a COMMIT (and so a 202 after a
    // revoke) has reached stable storage before it returns, so neither kill -9 nor power loss
    // can bring a revoked capability back.
    for (const char* pragma : {"PRAGMA journal_mode=WAL",
                               options.durable_commits ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=OFF",
                               "PRAGMA foreign_keys=ON"}) {
      if (auto s = (*connection)->exec(pragma); !s) return s.error();
    }
    store->idle_.push_back(std::move(*connection));
  }

  auto lease = store->acquire();
  {
    auto tx = sqlite::Transaction::begin(*lease);
    if (!tx) return tx.error();
    if (auto s = lease->exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL) STRICT"); !s) {
      return s.error();
    }
    auto read = lease->prepare("SELECT version FROM schema_version");
    if (!read) return read.error();
    auto has_row = (*read)->step();
    if (!has_row) return has_row.error();
    std::int64_t version = *has_row ? (*read)->column_int(0) : 0;
    read->reset();
    if (version > schema_version()) {
      return Error::internal("the database was written by a newer membraned (schema " +
                             std::to_string(version) + ")");
    }
    for (auto v = version; v < schema_version(); ++v) {
      if (auto s = lease->exec(kMigrations[v]); !s) return s.error();
    }
    if (version != schema_version()) {
      if (auto s = lease->exec("DELETE FROM schema_version"); !s) return s.error();
      auto write = lease->prepare("INSERT INTO schema_version(version) VALUES (?1)");
      if (!write) return write.error();
      if (auto s = (*write)->bind(1, static_cast<std::int64_t>(schema_version())).run(); !s) return s.error();
    }

    // The master key must open what this database holds; a new database records a check value.
    auto check = lease->prepare("SELECT value FROM meta WHERE key = 'key_check'");
    if (!check) return check.error();
    auto found = (*check)->step();
    if (!found) return found.error();
    if (*found) {
      auto opened = store->key_.open((*check)->column_blob(0), kKeyCheckContext);
      if (!opened || *opened != kKeyCheckPlaintext) {
        return Error::invalid("master key", "the master key does not open this database's secrets");
      }
    } else {
      auto sealed = store->key_.seal(kKeyCheckPlaintext, kKeyCheckContext);
      if (!sealed) return sealed.error();
      auto insert = lease->prepare("INSERT INTO meta(key, value) VALUES ('key_check', ?1)");
      if (!insert) return insert.error();
      if (auto s = (*insert)->bind_blob(1, *sealed).run(); !s) return s.error();
    }
    check->reset();
    if (auto s = tx->commit(); !s) return s.error();
  }
  return store;
}

Status SqliteStore::insert_capability(sqlite::Connection& connection, const Token& token,
                                      CapabilityKind kind, const std::string& tenant_id,
                                      std::optional<MembraneRow> membrane,
                                      std::optional<CapabilityRow> parent,
                                      std::optional<CapabilityRow> via,
                                      std::optional<std::string> sealed_config) {
  auto insert = connection.prepare(
      "INSERT INTO capabilities(digest, kind, tenant_id, membrane_row, parent_row, via_row, config, created_at) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  if (!insert) return insert.error();
  auto& st = **insert;
  st.bind_blob(1, token.digest()).bind(2, static_cast<std::int64_t>(kind)).bind(3, tenant_id);
  membrane ? st.bind(4, *membrane) : st.bind_null(4);
  parent ? st.bind(5, *parent) : st.bind_null(5);
  via ? st.bind(6, *via) : st.bind_null(6);
  sealed_config ? st.bind_blob(7, *sealed_config) : st.bind_null(7);
  st.bind(8, now_seconds());
  return st.run();
}

Result<std::string> SqliteStore::create_tenant(const TenantTokens& tokens) {
  auto lease = acquire();
  auto tx = sqlite::Transaction::begin(*lease);
  if (!tx) return tx.error();
  auto id = insert_tenant(*lease, tokens);
  if (!id) return id;
  if (auto s = tx->commit(); !s) return s.error();
  return id;
}

Result<std::optional<std::string>> SqliteStore::create_first_tenant(const TenantTokens& tokens) {
  auto lease = acquire();
  // BEGIN IMMEDIATE takes the write lock first: the check and the insert are one step.
  auto tx = sqlite::Transaction::begin(*lease);
  if (!tx) return tx.error();
  auto st = lease->prepare("SELECT EXISTS (SELECT 1 FROM tenants)");
  if (!st) return st.error();
  auto row = (*st)->step();
  if (!row) return row.error();
  if ((*st)->column_int(0) != 0) return std::optional<std::string>();
  st->reset();
  auto id = insert_tenant(*lease, tokens);
  if (!id) return id.error();
  if (auto s = tx->commit(); !s) return s.error();
  return std::optional<std::string>(std::move(*id));
}

Result<std::string> SqliteStore::insert_tenant(sqlite::Connection& connection, const TenantTokens& tokens) {
  auto random = core::random_bytes(16);
  if (!random) return random.error();
  std::string id = core::hex_encode(*random);
  auto insert = connection.prepare("INSERT INTO tenants(id, created_at) VALUES (?1, ?2)");
  if (!insert) return insert.error();
  if (auto s = (*insert)->bind(1, id).bind(2, now_seconds()).run(); !s) return s.error();
  insert->reset();
  for (auto [token, kind] : {std::pair{&tokens.create, CapabilityKind::create},
                             std::pair{&tokens.query, CapabilityKind::query},
                             std::pair{&tokens.delete_self, CapabilityKind::delete_self}}) {
    if (auto s = insert_capability(connection, *token, kind, id, std::nullopt, std::nullopt, std::nullopt, std::nullopt); !s) {
      return s.error();
    }
  }
  return id;
}

Result<bool> SqliteStore::has_tenants() {
  auto lease = acquire();
  auto st = lease->prepare("SELECT EXISTS (SELECT 1 FROM tenants)");
  if (!st) return st.error();
  auto row = (*st)->step();
  if (!row) return row.error();
  return (*st)->column_int(0) != 0;
}

Result<std::int64_t> SqliteStore::revocation_epoch(sqlite::Connection& connection) {
  auto st = connection.prepare("SELECT epoch FROM revocation_epoch WHERE id = 1");
  if (!st) return st.error();
  auto found = (*st)->step();
  if (!found) return found.error();
  if (!*found) return Error::internal("the revocation epoch is missing");
  return (*st)->column_int(0);
}

Status SqliteStore::bump_revocation_epoch(sqlite::Connection& connection) {
  auto st = connection.prepare("UPDATE revocation_epoch SET epoch = epoch + 1 WHERE id = 1");
  if (!st) return st.error();
  return (*st)->run();
}

// Resolutions are cached with the revocation epoch they were made under. A hit costs one
// indexed read of the epoch instead of the walk, the unsealing and the parsing; any revoke or
// deleteSelf (in any process sharing the database) bumps the epoch in its own transaction, so
// from its commit on, every cached resolution is stale and resolved afresh. Creations need no
// bump: they never make an existing capability die.
Result<Resolved> SqliteStore::resolve(const Token& token) {
  auto lease = acquire();
  auto epoch = revocation_epoch(*lease);
  if (!epoch) return epoch.error();
  const std::string digest = token.digest();
  {
    std::lock_guard lock(cache_mutex_);
    if (*epoch != cache_epoch_) {
      cache_.clear();
      cache_epoch_ = *epoch;
    } else if (auto it = cache_.find(digest); it != cache_.end()) {
      return it->second;
    }
  }
  auto resolved = resolve_digest(*lease, digest);
  if (!resolved) return resolved;
  std::lock_guard lock(cache_mutex_);
  if (*epoch == cache_epoch_) {
    if (cache_.size() >= kResolutionCacheSize) cache_.clear();
    cache_.emplace(digest, *resolved);
  }
  return resolved;
}

// Everything the capability depends on, in one statement: the presented capability, and, from
// each capability reached, what it stands for (parent) and what was presented to make it (via),
// each with its tenant's and membrane's state. Rows only ever point at older rows, so the walk
// ends; creation keeps it within kMaxDependencies.
Result<Resolved> SqliteStore::resolve_on(sqlite::Connection& connection, const Token& token) {
  return resolve_digest(connection, token.digest());
}

Result<Resolved> SqliteStore::resolve_digest(sqlite::Connection& connection, const std::string& digest) {
  static const std::string kWalk =
      "WITH RECURSIVE walk(row) AS ("
      "  SELECT row FROM capabilities WHERE digest = ?1"
      "  UNION SELECT c.parent_row FROM capabilities c JOIN walk ON c.row = walk.row WHERE c.parent_row IS NOT NULL"
      "  UNION SELECT c.via_row FROM capabilities c JOIN walk ON c.row = walk.row WHERE c.via_row IS NOT NULL"
      ") "
      "SELECT c.row, c.digest, c.kind, c.tenant_id, c.membrane_row, c.parent_row, c.config, t.deleted, m.revoked "
      "FROM walk JOIN capabilities c ON c.row = walk.row JOIN tenants t ON t.id = c.tenant_id "
      "LEFT JOIN membranes m ON m.row = c.membrane_row "
      "LIMIT ?2";
  auto st = connection.prepare(kWalk);
  if (!st) return st.error();
  (*st)->bind_blob(1, digest).bind(2, static_cast<std::int64_t>(kMaxDependencies) + 1);

  std::map<CapabilityRow, Link> links;
  while (true) {
    auto more = (*st)->step();
    if (!more) return more.error();
    if (!*more) break;
    auto& s = **st;
    links.emplace(s.column_int(0),
                  Link{s.column_blob(1), static_cast<CapabilityKind>(s.column_int(2)), s.column_text(3),
                       s.column_is_null(4) ? std::nullopt : std::optional<MembraneRow>(s.column_int(4)),
                       s.column_is_null(5) ? std::nullopt : std::optional<CapabilityRow>(s.column_int(5)),
                       s.column_blob(6), s.column_int(7) != 0, !s.column_is_null(8) && s.column_int(8) != 0});
  }
  return resolve_links(links, digest, key_);
}

Result<Resolved> SqliteStore::recheck(sqlite::Connection& connection, const Token& presented,
                                      CapabilityKind kind) {
  auto resolved = resolve_on(connection, presented);
  if (!resolved) return resolved.error();
  if (resolved->kind != kind) return Error::unauthorized("the capability does not allow this");
  return resolved;
}

Status SqliteStore::create_membrane(const Token& presented, const Membrane& membrane) {
  auto lease = acquire();
  auto tx = sqlite::Transaction::begin(*lease);
  if (!tx) return tx.error();
  auto who = recheck(*lease, presented, CapabilityKind::create);
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

  auto exists = lease->prepare("SELECT row FROM membranes WHERE tenant_id = ?1 AND id = ?2 AND revoked = 0");
  if (!exists) return exists.error();
  auto found = (*exists)->bind(1, tenant_id).bind(2, membrane.id).step();
  if (!found) return found.error();
  if (*found) {
    MembraneRow existing = (*exists)->column_int(0);
    exists->reset();
    // A membrane cut with the capability it was made through is gone, like a revoked one: it
    // frees its id (and is marked revoked now, so the unique index agrees).
    auto cut = membrane_is_cut(*lease, existing);
    if (!cut) return cut.error();
    if (!*cut) return Error::conflict("a membrane with this id exists");
    auto mark = lease->prepare("UPDATE membranes SET revoked = 1 WHERE row = ?1");
    if (!mark) return mark.error();
    if (auto s = (*mark)->bind(1, existing).run(); !s) return s.error();
  } else {
    exists->reset();
  }

  auto insert = lease->prepare(
      "INSERT INTO membranes(tenant_id, id, export_token, revoke_token, created_at) VALUES (?1, ?2, ?3, ?4, ?5)");
  if (!insert) return insert.error();
  if (auto s = (*insert)->bind(1, tenant_id).bind(2, membrane.id).bind_blob(3, *sealed_export)
                   .bind_blob(4, *sealed_revoke).bind(5, now_seconds()).run();
      !s) {
    return s.error();
  }
  MembraneRow row = lease->last_insert_rowid();
  for (auto [token, kind] : {std::pair{&membrane.export_token, CapabilityKind::export_},
                             std::pair{&membrane.revoke_token, CapabilityKind::revoke}}) {
    if (auto s = insert_capability(*lease, *token, kind, tenant_id, row, std::nullopt, who->presented,
                                   std::nullopt);
        !s) {
      return s.error();
    }
  }
  return tx->commit();
}

Result<Membrane> SqliteStore::membrane_from_row(const std::string& tenant_id, const std::string& id,
                                                std::string_view sealed_export,
                                                std::string_view sealed_revoke) {
  auto export_text = key_.open(sealed_export, membrane_token_context("export", tenant_id, id));
  auto revoke_text = key_.open(sealed_revoke, membrane_token_context("revoke", tenant_id, id));
  if (!export_text || !revoke_text) return Error::internal("a stored membrane token does not open");
  auto export_token = Token::parse(*export_text);
  auto revoke_token = Token::parse(*revoke_text);
  if (!export_token || !revoke_token) return Error::internal("a stored membrane token is malformed");
  return Membrane{id, std::move(*export_token), std::move(*revoke_token)};
}

// A membrane whose own revoke flag is clear can still be cut: made through a re-exported create
// capability whose membrane was revoked since. Its export capability then no longer resolves.
Result<bool> SqliteStore::membrane_is_cut(sqlite::Connection& connection, MembraneRow membrane) {
  std::string digest;
  {
    auto st = connection.prepare("SELECT digest FROM capabilities WHERE membrane_row = ?1 AND kind = ?2");
    if (!st) return st.error();
    auto found = (*st)->bind(1, membrane).bind(2, static_cast<std::int64_t>(CapabilityKind::export_)).step();
    if (!found) return found.error();
    if (!*found) return true;
    digest = (*st)->column_blob(0);
  }
  auto resolved = resolve_digest(connection, digest);
  if (resolved) return false;
  if (resolved.error().kind == ErrorKind::unauthorized) return true;
  return resolved.error();
}

Result<std::optional<Membrane>> SqliteStore::find_membrane(const std::string& tenant_id,
                                                           const std::string& id) {
  auto lease = acquire();
  std::string sealed_export, sealed_revoke;
  MembraneRow row = 0;
  {
    auto st = lease->prepare(
        "SELECT row, export_token, revoke_token FROM membranes WHERE tenant_id = ?1 AND id = ?2 AND revoked = 0");
    if (!st) return st.error();
    auto found = (*st)->bind(1, tenant_id).bind(2, id).step();
    if (!found) return found.error();
    if (!*found) return std::optional<Membrane>();
    row = (*st)->column_int(0);
    sealed_export = (*st)->column_blob(1);
    sealed_revoke = (*st)->column_blob(2);
  }
  auto cut = membrane_is_cut(*lease, row);
  if (!cut) return cut.error();
  if (*cut) return std::optional<Membrane>();
  auto membrane = membrane_from_row(tenant_id, id, sealed_export, sealed_revoke);
  if (!membrane) return membrane.error();
  return std::optional<Membrane>(std::move(*membrane));
}

Result<MembranePage> SqliteStore::list_membranes(const std::string& tenant_id,
                                                 const std::optional<std::string>& after,
                                                 std::size_t limit) {
  limit = std::min<std::size_t>(limit, 1'000'000);
  auto lease = acquire();
  struct Row {
    MembraneRow row;
    std::string id, sealed_export, sealed_revoke;
  };
  MembranePage page;
  std::optional<std::string> cursor = after;
  // Reads in batches and skips cut membranes, until the page plus one more is found or the
  // membranes run out: "completed" must say exactly whether more exist.
  const std::size_t batch = limit + 1;
  while (true) {
    std::vector<Row> rows;
    {
      auto st = lease->prepare(
          "SELECT row, id, export_token, revoke_token FROM membranes "
          "WHERE tenant_id = ?1 AND revoked = 0 AND (?2 IS NULL OR id > ?2) ORDER BY id LIMIT ?3");
      if (!st) return st.error();
      (*st)->bind(1, tenant_id).bind(3, static_cast<std::int64_t>(batch));
      cursor ? (*st)->bind(2, *cursor) : (*st)->bind_null(2);
      while (true) {
        auto more = (*st)->step();
        if (!more) return more.error();
        if (!*more) break;
        rows.push_back({(*st)->column_int(0), (*st)->column_text(1), (*st)->column_blob(2), (*st)->column_blob(3)});
      }
    }
    for (Row& r : rows) {
      auto cut = membrane_is_cut(*lease, r.row);
      if (!cut) return cut.error();
      if (*cut) continue;
      if (page.membranes.size() == limit) {
        page.completed = false;
        return page;
      }
      auto membrane = membrane_from_row(tenant_id, r.id, r.sealed_export, r.sealed_revoke);
      if (!membrane) return membrane.error();
      page.membranes.push_back(std::move(*membrane));
    }
    if (rows.size() < batch) return page;
    cursor = rows.back().id;
  }
}

Status SqliteStore::export_uri(const Token& presented, const Token& token,
                               const core::UriExport& config) {
  std::string plain = core::to_json(config).dump();
  auto sealed = key_.seal(plain, uri_config_context(token.digest()));
  core::secure_wipe(plain);
  if (!sealed) return sealed.error();
  auto lease = acquire();
  auto tx = sqlite::Transaction::begin(*lease);
  if (!tx) return tx.error();
  auto who = recheck(*lease, presented, CapabilityKind::export_);
  if (!who) return who.error();
  if (who->walked + 1 > kMaxDependencies) {
    return Error::invalid("capability", "this export capability is too far from its origin to export more");
  }
  if (auto s = insert_capability(*lease, token, CapabilityKind::uri, who->tenant_id, who->membrane,
                                 std::nullopt, who->presented, std::move(*sealed));
      !s) {
    return s.error();
  }
  return tx->commit();
}

Status SqliteStore::export_reexport(const Token& presented, const Token& token, const Token& target) {
  auto lease = acquire();
  // Both resolved inside the write transaction: a revoke cannot slip between check and insert.
  auto tx = sqlite::Transaction::begin(*lease);
  if (!tx) return tx.error();
  auto who = recheck(*lease, presented, CapabilityKind::export_);
  if (!who) return who.error();
  auto resolved = resolve_on(*lease, target);
  if (!resolved) {
    if (resolved.error().kind == ErrorKind::unauthorized) {
      return Error::not_found("the capability to re-export does not exist or is revoked");
    }
    return resolved.error();
  }
  if (resolved->depth + 1 >= kMaxReexportDepth ||
      resolved->walked + who->walked + 1 > kMaxDependencies) {
    return Error::invalid("capability", "re-export chains are limited to " +
                                            std::to_string(kMaxReexportDepth) + " links");
  }
  if (auto s = insert_capability(*lease, token, CapabilityKind::reexport, who->tenant_id, who->membrane,
                                 resolved->presented, who->presented, std::nullopt);
      !s) {
    return s.error();
  }
  return tx->commit();
}

Status SqliteStore::revoke_membrane(const Token& presented) {
  // One row: every capability exported through the membrane, every re-export below them and
  // everything made through them depend on it, and check it on each use.
  auto lease = acquire();
  auto tx = sqlite::Transaction::begin(*lease);
  if (!tx) return tx.error();
  auto who = recheck(*lease, presented, CapabilityKind::revoke);
  if (!who) return who.error();
  auto st = lease->prepare("UPDATE membranes SET revoked = 1 WHERE row = ?1");
  if (!st) return st.error();
  if (auto s = (*st)->bind(1, *who->membrane).run(); !s) return s.error();
  st->reset();
  if (auto s = bump_revocation_epoch(*lease); !s) return s.error();
  return tx->commit();
}

Status SqliteStore::delete_tenant(const Token& presented) {
  auto lease = acquire();
  auto tx = sqlite::Transaction::begin(*lease);
  if (!tx) return tx.error();
  auto who = recheck(*lease, presented, CapabilityKind::delete_self);
  if (!who) return who.error();
  auto tenant = lease->prepare("UPDATE tenants SET deleted = 1 WHERE id = ?1");
  if (!tenant) return tenant.error();
  if (auto s = (*tenant)->bind(1, who->tenant_id).run(); !s) return s.error();
  tenant->reset();
  auto membranes = lease->prepare("UPDATE membranes SET revoked = 1 WHERE tenant_id = ?1");
  if (!membranes) return membranes.error();
  if (auto s = (*membranes)->bind(1, who->tenant_id).run(); !s) return s.error();
  membranes->reset();
  if (auto s = bump_revocation_epoch(*lease); !s) return s.error();
  return tx->commit();
}

}  // namespace membraned::storage
