// A thin RAII layer over the SQLite C API: connections, cached prepared statements,
// transactions. Private to the SQLite backend (storage/sqlite/backend.cpp): nothing outside
// storage/sqlite/ includes it, so sqlite3.h stays here.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace membraned::storage::sqlite {

// A prepared statement borrowed from its connection's cache, for as long as this object lives:
// its destructor resets the statement and clears its bindings for the next borrower.
class Statement {
 public:
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Statement();
  Statement(Statement&& other) noexcept : stmt_(other.stmt_) { other.stmt_ = nullptr; }
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, std::string_view text);  // TEXT
  Statement& bind_blob(int index, std::string_view bytes);
  Statement& bind_null(int index);

  // true: a row is ready; false: done.
  core::Result<bool> step();
  // Runs to completion.
  core::Status run();

  std::int64_t column_int(int index) const { return sqlite3_column_int64(stmt_, index); }
  bool column_is_null(int index) const { return sqlite3_column_type(stmt_, index) == SQLITE_NULL; }
  std::string column_text(int index) const;
  std::string column_blob(int index) const;

 private:
  sqlite3_stmt* stmt_;
};

class Connection {
 public:
  // Opens (creating if needed) the database file; a locked database is waited on for at most
  // `busy_timeout_ms`, then the call fails as unavailable.
  static core::Result<std::unique_ptr<Connection>> open(const std::string& path, int busy_timeout_ms);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Executes statements without results (schema, pragmas).
  core::Status exec(const char* sql);
  core::Result<Statement> prepare(const std::string& sql);
  std::int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*, std::less<>> cache_;
};

// Maps a SQLite result code to the service's error kinds: busy/locked/full/IO are
// "unavailable" (503), a constraint a conflict, anything else internal.
core::Error error_from(sqlite3* db, int rc, std::string_view what);

// BEGIN IMMEDIATE ... COMMIT, rolled back unless committed. IMMEDIATE takes the write lock at
// once: every check the transaction makes holds until its commit.
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

}  // namespace membraned::storage::sqlite
