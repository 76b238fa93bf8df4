// Opening a Store: on one SQLite file or one shared PostgreSQL database, and the service's
// bootstrap (which URL, the data directory, when a new master key may be made).
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "storage/master_key.hpp"
#include "storage/store.hpp"

namespace membraned::storage {

struct SqliteOptions {
  std::filesystem::path path;      // the database file
  std::size_t connections = 4;     // pooled connections (WAL: readers do not block the writer)
  int busy_timeout_ms = 5000;      // beyond it a locked database answers "unavailable"
  // false only for bulk loads in benchmarks: commits are then not on stable storage when they
  // return. The service always opens with true.
  bool durable_commits = true;
  std::size_t resolution_cache_bytes = kDefaultResolutionCacheBytes;  // storage/resolution_cache.hpp
};

struct PostgresOptions {
  std::string url;                  // postgresql://USER@HOST:PORT/DB
  std::size_t connections = 4;      // the most open at once; callers beyond them wait
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds statement_timeout{5000};  // per statement, set on each connection
  // false only for bulk loads in benchmarks. The service always opens with true.
  bool durable_commits = true;
  // How long an instance trusts its latest reading of the revocation epoch (read in the
  // background about five times as often): an invocation sent on an older reading is resolved
  // again first, and a revoke's answer waits this long (plus a margin) after its commit. Every
  // instance sharing a database must use the same value, so it is not a flag: the service
  // always uses this default.
  std::chrono::milliseconds revocation_bound{250};
  std::size_t resolution_cache_bytes = kDefaultResolutionCacheBytes;  // storage/resolution_cache.hpp
};

// Open (creating and migrating as needed) and check that `key` opens what is stored.
// `clock`: the wall clock of what is recorded and of grants' expiry (tests give their own).
Result<std::unique_ptr<Store>> open_sqlite_store(const SqliteOptions& options, MasterKey key,
                                                 TenantQuotas quotas = {},
                                                 WallClock clock = &std::chrono::system_clock::now);
Result<std::unique_ptr<Store>> open_postgres_store(const PostgresOptions& options, MasterKey key,
                                                   TenantQuotas quotas = {},
                                                   WallClock clock = &std::chrono::system_clock::now);

// What `membraned serve` and `membraned tenant create` open.
struct StoreSettings {
  std::string url;  // --store: empty (SQLite in data_dir), sqlite:PATH, postgresql://... or postgres://...
  std::filesystem::path data_dir;  // made (mode 0700) if missing; holds master.key
  std::optional<std::string> master_key;  // MEMBRANED_MASTER_KEY, when set
  std::size_t connections = 4;
  std::chrono::milliseconds connect_timeout{5000};    // PostgreSQL
  std::chrono::milliseconds statement_timeout{5000};  // PostgreSQL
  TenantQuotas quotas;
  std::size_t resolution_cache_bytes = kDefaultResolutionCacheBytes;  // --resolution-cache-mb
  // false: open only a store that exists (a SQLite file, a master key given or in its file); make
  // neither the data directory, nor a database file, nor a key. membraned admin opens so: a
  // mistyped --data-dir must not look like an empty store.
  bool create = true;
};

// The master key comes from `master_key` or DATA_DIR/master.key. A new key file is made only
// for a database without data: for one made with another key it could open nothing, and a stray
// key file would stand in the way of the right key later. The URL is never part of a message
// (it may hold a password).
Result<std::unique_ptr<Store>> open_store(const StoreSettings& settings);

}  // namespace membraned::storage
