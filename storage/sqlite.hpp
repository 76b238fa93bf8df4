// A thin RAII layer over the SQLite C API: connections, cached prepared statements,
// transactions. Only the SQLite backend includes this.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace membraned::storage::sqlite {

class Connection;

// A prepared statement borrowed from its connection's cache; reset when the borrow ends.
class Statement {
 public:
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Statement() {
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  Statement& bind(int index, std::int64_t value);
  Statement& bind(int index, std::string_view text);  // TEXT
  Statement& bind_blob(int index, std::string_view bytes);
  Statement& bind_null(int index);

  // true: a row is ready; false: done. Errors come back as core::Error via `error()`.
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
  static core::Result<std::unique_ptr<Connection>> open(const std::string& path);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Executes statements without results (schema, pragmas).
  core::Status exec(const char* sql);
  core::Result<std::unique_ptr<Statement>> prepare(const std::string& sql);
  std::int64_t last_insert_rowid() const { return sqlite3_last_insert_rowid(db_); }
  sqlite3* handle() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}
  sqlite3* db_;
  std::map<std::string, sqlite3_stmt*, std::less<>> cache_;
};

// Maps a SQLite result code to the service's error kinds: busy/locked/full/IO are
// "unavailable" (503), anything else internal.
core::Error error_from(sqlite3* db, int rc, std::string_view what);

// BEGIN IMMEDIATE ... COMMIT, rolled back unless committed.
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
