// The shared backend: one PostgreSQL database that several membraned instances use at once.
// Same schema ideas, sealing and resolution as SqliteStore; SQL stays in here.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "storage/master_key.hpp"
#include "storage/postgres.hpp"
#include "storage/store.hpp"

namespace membraned::storage {

struct PostgresOptions {
  std::string url;                  // postgresql://USER@HOST:PORT/DB
  std::size_t connections = 4;      // the most open at once; callers beyond them wait
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds statement_timeout{5000};  // per statement, set on each connection
  // false only for bulk loads in benchmarks. The service always opens with true.
  bool durable_commits = true;
};

class PostgresStore final : public Store {
 public:
  // Connects, applies pending migrations (one instance at a time, under an advisory lock), and
  // checks that the master key opens what is stored (recording a check value in a new database).
  static Result<std::unique_ptr<PostgresStore>> open(const PostgresOptions& options, MasterKey key);
  // Whether the database already holds membraned's data (its key check): the caller must then
  // not make a new master key for it.
  static Result<bool> holds_data(const PostgresOptions& options);

  Result<std::string> create_tenant(const TenantTokens& tokens) override;
  bool waits_on_network() const override { return true; }
  std::string_view backend_name() const override { return "postgresql"; }
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
  struct MembraneRowData;
  PostgresStore(const PostgresOptions& options, MasterKey key);

  Result<Lease> acquire();
  void release(std::unique_ptr<pg::Connection> connection);
  // Runs `work` on a pooled connection. A pooled connection the database dropped while it sat
  // idle (a restart, a failover) fails on its first call, before anything was done: that once,
  // `work` runs again on a new connection.
  template <typename Work>
  auto with_connection(Work&& work) -> std::invoke_result_t<Work&, pg::Connection&>;

  Status migrate(pg::Connection& connection);
  Result<Resolved> resolve_digest(pg::Connection& connection, const std::string& digest,
                                  std::int64_t* epoch = nullptr);
  Result<std::int64_t> revocation_epoch(pg::Connection& connection);
  Status new_revocation_epoch(pg::Connection& connection);
  // Inside a write transaction: the presented token resolved again, of the expected kind.
  Result<Resolved> recheck(pg::Connection& connection, const Token& presented, CapabilityKind kind);
  Result<Membrane> membrane_from_row(const std::string& tenant_id, const std::string& id,
                                     std::string_view sealed_export, std::string_view sealed_revoke);
  Result<std::string> insert_tenant(pg::Connection& connection, const TenantTokens& tokens);
  Status insert_capability(pg::Connection& connection, const Token& token, CapabilityKind kind,
                           const std::string& tenant_id, std::optional<MembraneRow> membrane,
                           std::optional<CapabilityRow> parent, std::optional<CapabilityRow> via,
                           std::optional<std::string> sealed_config);

  pg::Settings settings_;
  std::size_t pool_size_;
  MasterKey key_;

  std::mutex mutex_;
  std::condition_variable available_;
  std::vector<std::unique_ptr<pg::Connection>> idle_;
  std::size_t open_ = 0;  // connections in existence, idle or leased

  // Resolutions by token digest, valid for cache_epoch_ only (see resolve()).
  static constexpr std::size_t kResolutionCacheSize = 65536;
  std::mutex cache_mutex_;
  std::int64_t cache_epoch_ = -1;
  std::unordered_map<std::string, Resolved> cache_;
};

}  // namespace membraned::storage
