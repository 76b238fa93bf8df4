#include "storage/open_store.hpp"

#include <sys/stat.h>

#include "storage/membrane_store.hpp"
#include "storage/postgres/backend.hpp"
#include "storage/sqlite/backend.hpp"

namespace membraned::storage {

namespace fs = std::filesystem;
using core::Error;

namespace {

Result<std::unique_ptr<Store>> open_on(Result<std::unique_ptr<Backend>> backend, MasterKey key, TenantQuotas quotas,
                                       WallClock clock, std::size_t cache_bytes) {
  if (!backend) return backend.error();
  auto store = MembraneStore::open(std::move(*backend), std::move(key), quotas, std::move(clock), cache_bytes);
  if (!store) return store.error();
  return std::unique_ptr<Store>(std::move(*store));
}

bool starts_with(const std::string& text, std::string_view prefix) { return text.rfind(prefix, 0) == 0; }

Error no_key_error(const fs::path& key_file) {
  return Error::invalid("master-key", "neither MEMBRANED_MASTER_KEY nor " + key_file.string() +
                                          " is there: give the key the store was made with");
}

Result<std::unique_ptr<Store>> bootstrap_postgres(const StoreSettings& settings) {
  PostgresOptions options;
  options.url = settings.url;
  options.connections = settings.connections;
  options.connect_timeout = settings.connect_timeout;
  options.statement_timeout = settings.statement_timeout;
  options.resolution_cache_bytes = settings.resolution_cache_bytes;
  const fs::path key_file = settings.data_dir / "master.key";
  if ((!settings.master_key || settings.master_key->empty()) && !fs::exists(key_file)) {
    if (!settings.create) return no_key_error(key_file);
    auto holds = pg::holds_data(options);
    if (!holds) return holds.error();
    if (*holds) {
      return Error::invalid("master-key", "the PostgreSQL store already holds data but neither "
                                          "MEMBRANED_MASTER_KEY nor " + key_file.string() +
                                          " is there: give the key it was made with");
    }
  }
  auto key = MasterKey::load(settings.master_key, settings.data_dir);
  if (!key) return key.error();
  return open_postgres_store(options, std::move(*key), settings.quotas);
}

Result<std::unique_ptr<Store>> bootstrap_sqlite(const StoreSettings& settings) {
  SqliteOptions options;
  if (settings.url.empty()) {
    options.path = settings.data_dir / "membraned.db";
  } else if (starts_with(settings.url, "sqlite:")) {
    options.path = settings.url.substr(7);
  } else {
    return Error::invalid("store", "--store must be sqlite:PATH or postgresql://...");
  }
  const fs::path key_file = settings.data_dir / "master.key";
  if (!settings.create && !fs::exists(options.path)) {
    return Error::invalid("store", "there is no database at " + options.path.string());
  }
  if (!settings.create && (!settings.master_key || settings.master_key->empty()) && !fs::exists(key_file)) {
    return no_key_error(key_file);
  }
  if (!settings.master_key && fs::exists(options.path) && !fs::exists(key_file)) {
    return Error::invalid("master-key", "the database " + options.path.string() +
                                            " exists but neither MEMBRANED_MASTER_KEY nor " + key_file.string() +
                                            " is there: give the key it was made with");
  }
  auto key = MasterKey::load(settings.master_key, settings.data_dir);
  if (!key) return key.error();
  options.connections = settings.connections;
  options.resolution_cache_bytes = settings.resolution_cache_bytes;
  return open_sqlite_store(options, std::move(*key), settings.quotas);
}

}  // namespace

Result<std::unique_ptr<Store>> open_sqlite_store(const SqliteOptions& options, MasterKey key, TenantQuotas quotas,
                                                 WallClock clock) {
  return open_on(sqlite::open_backend(options), std::move(key), quotas, std::move(clock),
                 options.resolution_cache_bytes);
}

Result<std::unique_ptr<Store>> open_postgres_store(const PostgresOptions& options, MasterKey key, TenantQuotas quotas,
                                                   WallClock clock) {
  return open_on(pg::open_backend(options), std::move(key), quotas, std::move(clock), options.resolution_cache_bytes);
}

Result<std::unique_ptr<Store>> open_store(const StoreSettings& settings) {
  if (settings.create) {
    std::error_code ec;
    fs::create_directories(settings.data_dir, ec);
    if (ec) return Error::invalid("data-dir", "cannot create " + settings.data_dir.string() + ": " + ec.message());
    ::chmod(settings.data_dir.c_str(), 0700);
  }
  if (starts_with(settings.url, "postgresql://") || starts_with(settings.url, "postgres://")) {
    return bootstrap_postgres(settings);
  }
  return bootstrap_sqlite(settings);
}

}  // namespace membraned::storage
