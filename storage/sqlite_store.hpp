// The embedded default backend: one SQLite database file in the data directory.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "storage/master_key.hpp"
#include "storage/sqlite.hpp"
#include "storage/store.hpp"

namespace membraned::storage {

struct SqliteOptions {
  std::filesystem::path path;      // the database file
  std::size_t connections = 4;     // pooled connections (WAL: readers do not block the writer)
  int busy_timeout_ms = 5000;      // beyond it a locked database answers "unavailable"
  // false only for bulk loads in benchmarks: commits are then not on stable storage when they
  // return. The service always opens with true.
  bool durable_commits = true;
};

class SqliteStore final : public Store {
 public:
  // Opens (creating if needed) the database, applies pending migrations, and checks that the
  // master key opens what is stored.
  static Result<std::unique_ptr<SqliteStore>> open(const SqliteOptions& options, MasterKey key);

  Result<std::string> create_tenant(const TenantTokens& tokens) override;
  std::string_view backend_name() const override { return "sqlite"; }
  Result<bool> has_tenants() override;
  Result<std::optional<std::string>> create_first_tenant(const TenantTokens& tokens) override;
  Result<Resolved> resolve(const Token& token) override;
  Status create_membrane(const Token& presented, const Membrane& membrane) override;
  Result<std::optional<Membrane>> find_membrane(const std::string& tenant_id,
                                                const std::string& id) override;
  Result<MembranePage> list_membranes(const std::string& tenant_id,
                                      const std::optional<std::string>& after,
                                      std::size_t limit) override;
  Status export_uri(const Token& presented, const Token& token, const core::UriExport& config) override;
  Status export_reexport(const Token& presented, const Token& token, const Token& target) override;
  Status revoke_membrane(const Token& presented) override;
  Status delete_tenant(const Token& presented) override;

  static int schema_version();

 private:
  class Lease;
  SqliteStore(MasterKey key) : key_(std::move(key)) {}
  Lease acquire();
  Result<Resolved> resolve_on(sqlite::Connection& connection, const Token& token);
  Result<std::int64_t> revocation_epoch(sqlite::Connection& connection);
  Status bump_revocation_epoch(sqlite::Connection& connection);
  Result<Resolved> resolve_digest(sqlite::Connection& connection, const std::string& digest);
  Result<bool> membrane_is_cut(sqlite::Connection& connection, MembraneRow membrane);
  // Inside a write transaction: the presented token resolved again, of the expected kind.
  Result<Resolved> recheck(sqlite::Connection& connection, const Token& presented, CapabilityKind kind);
  Result<Membrane> membrane_from_row(const std::string& tenant_id, const std::string& id,
                                     std::string_view sealed_export, std::string_view sealed_revoke);
  Result<std::string> insert_tenant(sqlite::Connection& connection, const TenantTokens& tokens);
  Status insert_capability(sqlite::Connection& connection, const Token& token, CapabilityKind kind,
                           const std::string& tenant_id, std::optional<MembraneRow> membrane,
                           std::optional<CapabilityRow> parent, std::optional<CapabilityRow> via,
                           std::optional<std::string> sealed_config);

  MasterKey key_;
  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<sqlite::Connection>> idle_;

  // Resolutions by token digest, valid for cache_epoch_ only (see resolve()).
  static constexpr std::size_t kResolutionCacheSize = 65536;
  std::mutex cache_mutex_;
  std::int64_t cache_epoch_ = -1;
  std::unordered_map<std::string, Resolved> cache_;
};

}  // namespace membraned::storage
