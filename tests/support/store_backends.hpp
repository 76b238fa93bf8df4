// The store backends the storage tests run against, each test on a fresh database of its own:
// SQLite in a temporary directory, or a new database (CREATE DATABASE, dropped after) on the
// test cluster that tests/support/pg_cluster.sh starts (the ctest fixture "pg_cluster").
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <ostream>
#include <string>

#include "core/result.hpp"
#include "storage/master_key.hpp"
#include "storage/store.hpp"
#include "tests/support/test_support.hpp"

namespace membraned::test {

enum class Backend { sqlite, postgresql };
inline constexpr Backend kBackends[] = {Backend::sqlite, Backend::postgresql};
std::string backend_name(Backend backend);  // "sqlite", "postgresql": gtest parameter names
void PrintTo(Backend backend, std::ostream* out);  // gtest prints the name, not the bytes

// A file's bytes, or "" when it cannot be read (unlike read_file, absence is not a failure).
std::string file_bytes(const std::filesystem::path& path);

// The test cluster's URL: MEMBRANED_TEST_PG_URL when set, else the `url` file in
// MEMBRANED_TEST_PG_DIR (written by pg_cluster.sh start). Throws std::runtime_error when neither
// gives one: a missing cluster fails the test, it never skips it.
std::string pg_test_url();
// `url` naming another database.
std::string pg_url_with_database(const std::string& url, const std::string& database);

// A statement run on a PostgreSQL server as its administrator (test code: database names are
// made here, quoted with PQescapeIdentifier). Throws on failure.
void pg_admin(const std::string& url, const std::string& sql);

class TestDatabase {
 public:
  explicit TestDatabase(Backend backend);  // throws when the database cannot be made
  ~TestDatabase();
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  Backend backend() const { return backend_; }
  // A new Store on this database; several may be open at once, as several instances would.
  core::Result<std::unique_ptr<storage::Store>> open(
      storage::MasterKey key, std::size_t connections = 4, storage::TenantQuotas quotas = {},
      storage::WallClock clock = &std::chrono::system_clock::now,
      std::size_t cache_bytes = storage::kDefaultResolutionCacheBytes) const;
  // Rows of a table, read from the database itself.
  std::int64_t count_rows(const std::string& table) const;
  // Runs `sql` on the database itself, as an operator (or a restore) would, beside any Store;
  // answers the first column of the first row as text ("" when there is none). Throws on failure.
  std::string run_sql(const std::string& sql) const;
  // Every byte the database holds at rest: SQLite's files (database, WAL, journal), or every
  // value of every PostgreSQL table (binary format: bytea as its bytes).
  std::string stored_bytes() const;
  const std::string& url() const { return url_; }  // PostgreSQL only

 private:
  Backend backend_;
  std::optional<TempDir> dir_;  // SQLite
  std::string admin_url_;       // PostgreSQL: the cluster's own database
  std::string name_;            // PostgreSQL: this test's database
  std::string url_;
};

}  // namespace membraned::test
