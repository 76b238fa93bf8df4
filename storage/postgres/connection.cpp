#include "storage/postgres/connection.hpp"

#include <poll.h>

#include <cerrno>

namespace membraned::storage::pg {

using core::Error;
namespace chrono = std::chrono;

namespace {

// Extra time, beyond the server's statement_timeout, before the client gives up on an answer.
constexpr chrono::milliseconds kAnswerMargin{2000};

std::string trimmed(const char* message) {
  std::string s = message == nullptr ? std::string() : std::string(message);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Waits until the socket is ready for `events` or the deadline passes; false on timeout.
bool wait_socket(int socket, short events, chrono::steady_clock::time_point deadline) {
  while (true) {
    auto remaining = chrono::duration_cast<chrono::milliseconds>(deadline - chrono::steady_clock::now());
    if (remaining.count() <= 0) return false;
    pollfd fd{socket, events, 0};
    int rc = ::poll(&fd, 1, static_cast<int>(std::min<chrono::milliseconds::rep>(remaining.count(), 60000)));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // let libpq find and report the socket's error
  }
}

// SQLSTATE classes and codes that say "the database is not there for now": answered 503, and
// the request may be retried. Those marked `lost` also end the connection.
struct Diagnosis {
  bool unavailable;
  bool lost;
};
Diagnosis diagnose(std::string_view state) {
  if (state.starts_with("08")) return {true, true};  // connection exception
  if (state == "57P01" || state == "57P02" || state == "57P03") return {true, true};  // shutdown, starting up
  if (state == "57014") return {true, false};  // query_canceled: the statement timeout
  if (state == "40001" || state == "40P01") return {true, false};  // serialization failure, deadlock
  if (state.starts_with("53")) return {true, false};  // insufficient resources (too many connections...)
  if (state == "55P03") return {true, false};          // lock not available
  return {false, false};
}

}  // namespace

Param text(std::string_view value) { return {std::string(value), false}; }
Param bytes(std::string_view value) { return {std::string(value), true}; }
Param integer(std::int64_t value) { return {std::to_string(value), false}; }
Param null() { return {std::nullopt, false}; }

std::string Rows::bytes(int row, int column) const {
  const char* value = PQgetvalue(result_.get(), row, column);
  return std::string(value, static_cast<std::size_t>(PQgetlength(result_.get(), row, column)));
}

std::int64_t Rows::integer(int row, int column) const {
  // Binary format: big-endian two's complement of 2, 4 or 8 bytes.
  const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(result_.get(), row, column));
  const int length = PQgetlength(result_.get(), row, column);
  std::uint64_t u = 0;
  for (int i = 0; i < length; ++i) u = (u << 8) | p[i];
  if (length > 0 && length < 8 && (p[0] & 0x80) != 0) u |= ~std::uint64_t{0} << (8 * length);
  return static_cast<std::int64_t>(u);
}

bool Rows::boolean(int row, int column) const {
  return PQgetlength(result_.get(), row, column) == 1 && PQgetvalue(result_.get(), row, column)[0] != 0;
}

core::Result<std::unique_ptr<Connection>> Connection::open(const Settings& settings) {
  // Keywords before "dbname" are defaults: the URL's own parameters win over them.
  const char* keywords[] = {"application_name", "client_encoding", "dbname", nullptr};
  const char* values[] = {settings.application_name.c_str(), "UTF8", settings.url.c_str(), nullptr};
  PGconn* conn = PQconnectStartParams(keywords, values, /*expand_dbname=*/1);
  if (conn == nullptr) return Error::internal("libpq could not allocate a connection");
  auto give_up = [conn](std::string message) {
    PQfinish(conn);
    return Error::unavailable("cannot connect to PostgreSQL: " + std::move(message));
  };
  if (PQstatus(conn) == CONNECTION_BAD) return give_up(trimmed(PQerrorMessage(conn)));
  const auto deadline = chrono::steady_clock::now() + settings.connect_timeout;
  PostgresPollingStatusType status = PGRES_POLLING_WRITING;
  while (status != PGRES_POLLING_OK) {
    if (status == PGRES_POLLING_FAILED) return give_up(trimmed(PQerrorMessage(conn)));
    short events = status == PGRES_POLLING_READING ? POLLIN : POLLOUT;
    if (!wait_socket(PQsocket(conn), events, deadline)) {
      return give_up("no connection within " + std::to_string(settings.connect_timeout.count()) + " ms");
    }
    status = PQconnectPoll(conn);
  }
  // Notices ("relation ... already exists, skipping") are not errors; libpq would print them on
  // stderr, between the service's log lines.
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  std::unique_ptr<Connection> connection(new Connection(conn, settings.statement_timeout + kAnswerMargin));
  auto timeout = connection->query("SELECT set_config('statement_timeout', $1, false)",
                                   {integer(settings.statement_timeout.count())});
  if (!timeout) return timeout.error();
  if (!settings.durable_commits) {
    auto sync = connection->query("SELECT set_config('synchronous_commit', $1, false)", {text("off")});
    if (!sync) return sync.error();
  }
  return connection;
}

Connection::~Connection() { PQfinish(conn_); }

core::Error Connection::failure(const PGresult* result, std::string_view what) {
  const char* state = result != nullptr ? PQresultErrorField(result, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary = result != nullptr ? PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  // The primary message only: the detail may quote values (a duplicate key's).
  std::string message = std::string(what) + ": " + (primary != nullptr ? trimmed(primary) : trimmed(PQerrorMessage(conn_)));
  if (PQstatus(conn_) == CONNECTION_BAD) broken_ = true;
  if (state == nullptr) {
    // No SQLSTATE: libpq's own failure, the connection lost.
    broken_ = true;
    return Error::unavailable(std::move(message));
  }
  auto diagnosis = diagnose(state);
  if (diagnosis.lost) broken_ = true;
  if (diagnosis.unavailable) return Error::unavailable(std::move(message));
  if (std::string_view(state) == "23505") return Error::conflict(std::move(message));
  return Error::internal(std::move(message) + " (SQLSTATE " + state + ")");
}

core::Result<Rows> Connection::finish(std::string_view what) {
  if (PQflush(conn_) != 0) {
    broken_ = true;
    return failure(nullptr, what);
  }
  const auto deadline = chrono::steady_clock::now() + result_timeout_;
  std::unique_ptr<PGresult, void (*)(PGresult*)> kept(nullptr, &PQclear);
  while (true) {
    while (PQisBusy(conn_) != 0) {
      if (!wait_socket(PQsocket(conn_), POLLIN, deadline)) {
        broken_ = true;  // the answer may still come: this connection can never be trusted again
        return Error::unavailable(std::string(what) + ": no answer from PostgreSQL in time");
      }
      if (PQconsumeInput(conn_) == 0) {
        broken_ = true;
        return failure(nullptr, what);
      }
    }
    PGresult* result = PQgetResult(conn_);
    if (result == nullptr) break;
    // One statement, one result; should more come, an error among them is what counts.
    if (!kept || PQresultStatus(result) == PGRES_FATAL_ERROR) {
      kept.reset(result);
    } else {
      PQclear(result);
    }
  }
  if (!kept) {
    broken_ = true;
    return failure(nullptr, what);
  }
  auto status = PQresultStatus(kept.get());
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) return failure(kept.get(), what);
  return Rows(kept.release());
}

core::Result<Rows> Connection::query(const std::string& sql, const std::vector<Param>& params) {
  ++calls_;
  if (broken_) return Error::unavailable("the PostgreSQL connection is lost");
  auto it = prepared_.find(sql);
  if (it == prepared_.end()) {
    std::string name = "membraned_" + std::to_string(prepared_.size() + 1);
    if (PQsendPrepare(conn_, name.c_str(), sql.c_str(), 0, nullptr) == 0) return failure(nullptr, "prepare");
    auto prepared = finish("prepare");
    if (!prepared) return prepared.error();
    it = prepared_.emplace(sql, std::move(name)).first;
  }
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  values.reserve(params.size());
  for (const Param& p : params) {
    values.push_back(p.value ? p.value->data() : nullptr);
    lengths.push_back(p.value ? static_cast<int>(p.value->size()) : 0);
    formats.push_back(p.binary ? 1 : 0);
  }
  if (PQsendQueryPrepared(conn_, it->second.c_str(), static_cast<int>(params.size()), values.data(),
                          lengths.data(), formats.data(), /*resultFormat=binary*/ 1) == 0) {
    return failure(nullptr, "statement");
  }
  return finish("statement");
}

core::Status Connection::exec(const std::string& sql) {
  ++calls_;
  if (broken_) return Error::unavailable("the PostgreSQL connection is lost");
  if (PQsendQuery(conn_, sql.c_str()) == 0) return failure(nullptr, "exec");
  auto done = finish("exec");
  if (!done) return done.error();
  return core::ok_status();
}

core::Result<Transaction> Transaction::begin(Connection& connection) {
  if (auto s = connection.exec("BEGIN"); !s) return s.error();
  return Transaction(&connection);
}

Transaction::~Transaction() {
  if (connection_ != nullptr && !connection_->broken()) (void)connection_->exec("ROLLBACK");
}

core::Status Transaction::commit() {
  auto s = connection_->exec("COMMIT");
  connection_ = nullptr;  // committed, or failed: PostgreSQL has ended the transaction either way
  return s;
}

}  // namespace membraned::storage::pg
