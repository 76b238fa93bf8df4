// A thin RAII layer over libpq: connections with deadlines, cached prepared statements, binary
// results, transactions. Private to the PostgreSQL backend (storage/postgres/backend.cpp): nothing
// outside storage/postgres/ includes it, so libpq-fe.h stays here.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace membraned::storage::pg {

// A statement parameter, sent as text (the server parses it as the parameter's type) or as raw
// bytes (bytea). Values only ever travel as parameters, never inside the SQL text.
struct Param {
  std::optional<std::string> value;  // nullopt: SQL NULL
  bool binary = false;
};
Param text(std::string_view value);
Param bytes(std::string_view value);
Param integer(std::int64_t value);
Param null();

// The rows of one result, every column in binary format.
class Rows {
 public:
  explicit Rows(PGresult* result) : result_(result, &PQclear) {}
  int size() const { return PQntuples(result_.get()); }
  bool is_null(int row, int column) const { return PQgetisnull(result_.get(), row, column) != 0; }
  std::string bytes(int row, int column) const;      // bytea, text: the bytes as stored
  std::int64_t integer(int row, int column) const;   // int2, int4, int8
  bool boolean(int row, int column) const;

 private:
  std::unique_ptr<PGresult, void (*)(PGresult*)> result_;
};

struct Settings {
  std::string url;  // postgresql://USER@HOST:PORT/DB (any libpq connection URI)
  std::string application_name = "membraned";  // as pg_stat_activity shows it
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds statement_timeout{5000};
  // false only for bulk loads in benchmarks (synchronous_commit off): a COMMIT then returns
  // before its WAL record is on stable storage.
  bool durable_commits = true;
};

class Connection {
 public:
  // Connects within settings.connect_timeout (libpq's non-blocking connect, polled), then sets
  // the session's statement_timeout. Every failure is "unavailable": the database may come back.
  static core::Result<std::unique_ptr<Connection>> open(const Settings& settings);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // One statement with parameters, prepared once per connection and cached by its text.
  core::Result<Rows> query(const std::string& sql, const std::vector<Param>& params = {});
  // Statements without parameters nor results: transaction control, migrations.
  core::Status exec(const std::string& sql);

  // The connection can no longer be used (lost, timed out, shut down by the server).
  bool broken() const { return broken_; }
  // Calls of query() and exec() so far: tells whether a failure came on a lease's first call.
  std::uint64_t calls() const { return calls_; }

 private:
  Connection(PGconn* conn, std::chrono::milliseconds result_timeout)
      : conn_(conn), result_timeout_(result_timeout) {}
  // Waits (poll, never longer than result_timeout_) for the answer of what was just sent.
  core::Result<Rows> finish(std::string_view what);
  core::Error failure(const PGresult* result, std::string_view what);

  PGconn* conn_;
  // The server's statement_timeout plus a margin: beyond it the server is taken as gone (a
  // network that drops packets would otherwise hold the thread forever).
  std::chrono::milliseconds result_timeout_;
  std::map<std::string, std::string, std::less<>> prepared_;  // SQL -> statement name
  bool broken_ = false;
  std::uint64_t calls_ = 0;
};

// BEGIN ... COMMIT, rolled back unless committed.
class Transaction {
 public:
  static core::Result<Transaction> begin(Connection& connection);
  Transaction(Transaction&& other) noexcept : connection_(other.connection_) { other.connection_ = nullptr; }
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction();
  core::Status commit();

 private:
  explicit Transaction(Connection* connection) : connection_(connection) {}
  Connection* connection_;
};

}  // namespace membraned::storage::pg
