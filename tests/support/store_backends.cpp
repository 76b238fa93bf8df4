#include "tests/support/store_backends.hpp"

#include <libpq-fe.h>
#include <sqlite3.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "storage/open_store.hpp"

namespace membraned::test {

namespace fs = std::filesystem;

namespace {

using Connection = std::unique_ptr<PGconn, void (*)(PGconn*)>;
using Result = std::unique_ptr<PGresult, void (*)(PGresult*)>;

Connection pg_connect(const std::string& url) {
  Connection conn(PQconnectdb(url.c_str()), &PQfinish);
  if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
    throw std::runtime_error("cannot connect to the test PostgreSQL (" + url +
                             "): " + (conn ? PQerrorMessage(conn.get()) : "out of memory"));
  }
  return conn;
}

// Runs `sql` (no parameters) with results in binary format; throws unless it succeeded.
Result pg_run(PGconn* conn, const std::string& sql) {
  Result result(PQexecParams(conn, sql.c_str(), 0, nullptr, nullptr, nullptr, nullptr, 1), &PQclear);
  auto status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    throw std::runtime_error("test PostgreSQL: " + sql + ": " + PQerrorMessage(conn));
  }
  return result;
}

std::string quoted_identifier(PGconn* conn, const std::string& name) {
  char* quoted = PQescapeIdentifier(conn, name.c_str(), name.size());
  if (quoted == nullptr) throw std::runtime_error("PQescapeIdentifier failed");
  std::string out(quoted);
  PQfreemem(quoted);
  return out;
}


}  // namespace

std::string file_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string backend_name(Backend backend) {
  return backend == Backend::sqlite ? "sqlite" : "postgresql";
}

void PrintTo(Backend backend, std::ostream* out) { *out << backend_name(backend); }

std::string pg_test_url() {
  if (const char* url = std::getenv("MEMBRANED_TEST_PG_URL"); url != nullptr && *url != '\0') return url;
  const char* dir = std::getenv("MEMBRANED_TEST_PG_DIR");
  if (dir == nullptr || *dir == '\0') {
    throw std::runtime_error(
        "no test PostgreSQL: set MEMBRANED_TEST_PG_URL, or MEMBRANED_TEST_PG_DIR to a folder where "
        "tests/support/pg_cluster.sh start has run (ctest does both through the pg_cluster fixture)");
  }
  std::string url = file_bytes(fs::path(dir) / "url");
  while (!url.empty() && (url.back() == '\n' || url.back() == '\r')) url.pop_back();
  if (url.empty()) {
    throw std::runtime_error(std::string("no test PostgreSQL: ") + dir +
                             "/url is missing (did the pg_cluster_start fixture fail?)");
  }
  return url;
}

std::string pg_url_with_database(const std::string& url, const std::string& database) {
  auto scheme = url.find("://");
  if (scheme == std::string::npos) throw std::runtime_error("not a PostgreSQL URL: " + url);
  const auto authority = scheme + 3;
  const auto query = url.find('?', authority);
  const auto end = query == std::string::npos ? url.size() : query;
  const auto slash = url.find('/', authority);
  if (slash == std::string::npos || slash > end) {
    return url.substr(0, end) + "/" + database + url.substr(end);
  }
  return url.substr(0, slash + 1) + database + url.substr(end);
}

void pg_admin(const std::string& url, const std::string& sql) {
  auto conn = pg_connect(url);
  pg_run(conn.get(), sql);
}

TestDatabase::TestDatabase(Backend backend) : backend_(backend) {
  if (backend == Backend::sqlite) {
    dir_.emplace("membraned-store-test-");
    return;
  }
  admin_url_ = pg_test_url();
  auto random = core::random_bytes(8);
  if (!random) throw std::runtime_error("random_bytes failed");
  name_ = "membraned_test_" + core::hex_encode(*random);
  auto conn = pg_connect(admin_url_);
  pg_run(conn.get(), "CREATE DATABASE " + quoted_identifier(conn.get(), name_));
  url_ = pg_url_with_database(admin_url_, name_);
}

TestDatabase::~TestDatabase() {
  if (backend_ != Backend::postgresql || name_.empty()) return;
  try {
    auto conn = pg_connect(admin_url_);
    // FORCE: connections a failed test left open do not keep the database.
    pg_run(conn.get(), "DROP DATABASE IF EXISTS " + quoted_identifier(conn.get(), name_) + " WITH (FORCE)");
  } catch (const std::exception&) {
    // The cluster is gone (a test stopped it): the fixture's cleanup removes everything anyway.
  }
}

core::Result<std::unique_ptr<storage::Store>> TestDatabase::open(storage::MasterKey key, std::size_t connections,
                                                                storage::TenantQuotas quotas,
                                                                storage::WallClock clock, std::size_t cache_bytes) const {
  if (backend_ == Backend::sqlite) {
    storage::SqliteOptions options{dir_->path() / "membraned.db"};
    options.connections = connections;
    options.resolution_cache_bytes = cache_bytes;
    return storage::open_sqlite_store(options, std::move(key), quotas, std::move(clock));
  }
  storage::PostgresOptions options;
  options.url = url_;
  options.connections = connections;
  options.resolution_cache_bytes = cache_bytes;
  return storage::open_postgres_store(options, std::move(key), quotas, std::move(clock));
}

std::int64_t TestDatabase::count_rows(const std::string& table) const {
  if (backend_ == Backend::sqlite) {
    sqlite3* db = nullptr;
    std::int64_t n = -1;
    const fs::path path = dir_->path() / "membraned.db";
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
      sqlite3_stmt* st = nullptr;
      std::string sql = "SELECT count(*) FROM \"" + table + "\"";
      if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) {
        n = sqlite3_column_int64(st, 0);
      }
      sqlite3_finalize(st);
    }
    sqlite3_close(db);
    if (n < 0) throw std::runtime_error("cannot count the rows of " + table);
    return n;
  }
  auto conn = pg_connect(url_);
  auto result = pg_run(conn.get(), "SELECT count(*)::bigint FROM " + quoted_identifier(conn.get(), table));
  const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(result.get(), 0, 0));
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n = (n << 8) | p[i];
  return static_cast<std::int64_t>(n);
}

std::string TestDatabase::run_sql(const std::string& sql) const {
  if (backend_ == Backend::sqlite) {
    sqlite3* db = nullptr;
    const fs::path path = dir_->path() / "membraned.db";
    std::string value;
    bool ok = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK;
    sqlite3_stmt* st = nullptr;
    ok = ok && sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK;
    int rc = ok ? sqlite3_step(st) : SQLITE_ERROR;
    if (rc == SQLITE_ROW && sqlite3_column_type(st, 0) != SQLITE_NULL) {
      value = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    }
    ok = rc == SQLITE_ROW || rc == SQLITE_DONE;
    std::string error = ok ? "" : sqlite3_errmsg(db);
    sqlite3_finalize(st);
    sqlite3_close(db);
    if (!ok) throw std::runtime_error("test SQLite: " + sql + ": " + error);
    return value;
  }
  auto conn = pg_connect(url_);
  Result result(PQexec(conn.get(), sql.c_str()), &PQclear);
  auto status = PQresultStatus(result.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    throw std::runtime_error("test PostgreSQL: " + sql + ": " + PQerrorMessage(conn.get()));
  }
  if (status != PGRES_TUPLES_OK || PQntuples(result.get()) == 0) return {};
  return PQgetvalue(result.get(), 0, 0);
}

std::string TestDatabase::stored_bytes() const {
  std::string all;
  if (backend_ == Backend::sqlite) {
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      fs::path file = dir_->path() / "membraned.db";
      file += suffix;
      if (fs::exists(file)) all += file_bytes(file);
    }
    return all;
  }
  auto conn = pg_connect(url_);
  auto tables = pg_run(conn.get(), "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = current_schema()");
  std::vector<std::string> names;
  for (int i = 0; i < PQntuples(tables.get()); ++i) {
    names.emplace_back(PQgetvalue(tables.get(), i, 0), static_cast<std::size_t>(PQgetlength(tables.get(), i, 0)));
  }
  if (names.empty()) throw std::runtime_error("the test database holds no table");
  for (const auto& name : names) {
    auto rows = pg_run(conn.get(), "SELECT * FROM " + quoted_identifier(conn.get(), name));
    for (int r = 0; r < PQntuples(rows.get()); ++r) {
      for (int c = 0; c < PQnfields(rows.get()); ++c) {
        if (PQgetisnull(rows.get(), r, c) != 0) continue;
        all.append(PQgetvalue(rows.get(), r, c), static_cast<std::size_t>(PQgetlength(rows.get(), r, c)));
        all.push_back('\0');
      }
    }
  }
  return all;
}

}  // namespace membraned::test
