// What only the PostgreSQL backend has to get right, against real PostgreSQL servers (the test
// cluster of the ctest fixture pg_cluster, and a cluster of its own for the outage): instances
// migrating one empty database at once, the master key of a shared database, the bounded pool,
// the statement timeout, and the database going away and coming back. Everything else a Store
// does is tested on both backends by store_test and membrane_model_test.
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "api/api.hpp"
#include "core/crypto.hpp"
#include "core/encoding.hpp"
#include "core/export_config.hpp"
#include "core/token.hpp"
#include "storage/master_key.hpp"
#include "storage/open_store.hpp"
#include "storage/postgres/backend.hpp"
#include "tests/support/store_backends.hpp"
#include "tests/support/grants.hpp"
#include "tests/support/test_support.hpp"

namespace {

using membraned::test::new_token;

namespace core = membraned::core;
namespace storage = membraned::storage;
using core::ErrorKind;
using core::Token;
using membraned::test::Backend;
using membraned::test::TempDir;
using membraned::test::TestDatabase;
using storage::Membrane;
using storage::MasterKey;
using storage::PostgresOptions;
using storage::TenantTokens;

std::string new_key_text() {
  auto bytes = core::random_bytes(32);
  if (!bytes) throw std::runtime_error("random_bytes failed");
  return core::base64_encode(*bytes);
}

MasterKey key_of(const std::string& text) {
  auto key = MasterKey::from_base64(text);
  if (!key) throw std::runtime_error("bad key");
  return std::move(*key);
}

core::UriExport simple_config() {
  auto parsed = core::parse_export_config(R"({"uri":"https://upstream.example/x"})");
  if (!parsed) throw std::runtime_error("bad export body");
  return std::get<core::UriExport>(std::move(*parsed));
}

// An administrator's session on a database, for what the tests look at or hold from outside
// the store. Test code: the SQL holds no values from outside the test.
class Session {
 public:
  explicit Session(const std::string& url) : conn_(PQconnectdb(url.c_str()), &PQfinish) {
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
      throw std::runtime_error("cannot connect to " + url + ": " + PQerrorMessage(conn_.get()));
    }
  }
  // The first column of the first row, as text; "" when there is none.
  std::string value(const std::string& sql) {
    std::unique_ptr<PGresult, void (*)(PGresult*)> result(PQexec(conn_.get(), sql.c_str()), &PQclear);
    auto status = PQresultStatus(result.get());
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      throw std::runtime_error(sql + ": " + PQerrorMessage(conn_.get()));
    }
    if (status != PGRES_TUPLES_OK || PQntuples(result.get()) == 0) return {};
    return PQgetvalue(result.get(), 0, 0);
  }

 private:
  std::unique_ptr<PGconn, void (*)(PGconn*)> conn_;
};

PostgresOptions options_for(const std::string& url) {
  PostgresOptions options;
  options.url = url;
  return options;
}

std::unique_ptr<storage::Store> open_or_fail(const PostgresOptions& options, const std::string& key_text) {
  auto store = storage::open_postgres_store(options, key_of(key_text));
  EXPECT_TRUE(store.ok()) << store.error().message;
  if (!store) return nullptr;
  return std::move(*store);
}

struct Made {
  std::string tenant_id;
  TenantTokens tenant{new_token(), new_token(), new_token()};
  Membrane membrane{"m", new_token(), new_token()};
  Token exported = new_token();
};

Made make_some(storage::Store& store) {
  Made made;
  auto id = store.create_tenant(made.tenant);
  EXPECT_TRUE(id.ok()) << id.error().message;
  if (id) made.tenant_id = *id;
  auto created = store.create_membrane(made.tenant.create, made.membrane);
  EXPECT_TRUE(created.ok()) << created.error().message;
  auto exported = store.export_uri(made.membrane.export_token, made.exported, simple_config(), membraned::test::new_grant());
  EXPECT_TRUE(exported.ok()) << exported.error().message;
  return made;
}

// Runs `work(i)` on `count` threads released together, so they hit the database at once.
template <typename Work>
void at_once(int count, Work work) {
  std::atomic<int> waiting{count};
  std::vector<std::thread> threads;
  for (int i = 0; i < count; ++i) {
    threads.emplace_back([&, i] {
      waiting.fetch_sub(1);
      while (waiting.load() > 0) std::this_thread::yield();
      work(i);
    });
  }
  for (auto& t : threads) t.join();
}

// --- migrations and the master key ---------------------------------------------------------------

TEST(PostgresStore, InstancesOpeningAnEmptyDatabaseAtOnceMigrateItOnce) {
  TestDatabase db(Backend::postgresql);
  const std::string key = new_key_text();
  constexpr int kInstances = 4;
  std::vector<std::unique_ptr<storage::Store>> stores(kInstances);
  std::vector<std::string> errors(kInstances);
  at_once(kInstances, [&](int i) {
    auto store = storage::open_postgres_store(options_for(db.url()), key_of(key));
    if (store) {
      stores[static_cast<std::size_t>(i)] = std::move(*store);
    } else {
      errors[static_cast<std::size_t>(i)] = store.error().message;
    }
  });
  for (int i = 0; i < kInstances; ++i) {
    EXPECT_NE(stores[static_cast<std::size_t>(i)], nullptr) << "instance " << i << ": " << errors[static_cast<std::size_t>(i)];
  }
  if (testing::Test::HasFailure()) return;

  // One schema: one version row, one key check, one epoch row, each table once.
  EXPECT_EQ(db.count_rows("schema_version"), 1);
  EXPECT_EQ(db.count_rows("meta"), 1);
  EXPECT_EQ(db.count_rows("revocation_epoch"), 1);
  Session session(db.url());
  EXPECT_EQ(session.value("SELECT version FROM schema_version"), std::to_string(storage::pg::schema_version()));
  EXPECT_EQ(session.value("SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = 'capabilities'"),
            "1");
  // And every instance works on the same data.
  Made made = make_some(*stores[0]);
  for (auto& store : stores) {
    auto r = store->resolve(made.exported);
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->tenant_id, made.tenant_id);
  }
  ASSERT_TRUE(stores[3]->revoke_membrane(made.membrane.revoke_token).ok());
  for (auto& store : stores) {
    auto r = store->resolve(made.exported);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().kind, ErrorKind::unauthorized);
  }
}

TEST(PostgresStore, InstancesWithDifferentKeysOnAnEmptyDatabaseLetExactlyOneKeyIn) {
  TestDatabase db(Backend::postgresql);
  constexpr int kInstances = 4;
  std::vector<std::string> keys;
  for (int i = 0; i < kInstances; ++i) keys.push_back(new_key_text());
  std::vector<std::optional<core::Error>> errors(kInstances);
  at_once(kInstances, [&](int i) {
    auto store = storage::open_postgres_store(options_for(db.url()), key_of(keys[static_cast<std::size_t>(i)]));
    if (!store) errors[static_cast<std::size_t>(i)] = store.error();
  });
  int opened = 0;
  for (const auto& error : errors) {
    if (!error) {
      ++opened;
      continue;
    }
    EXPECT_EQ(error->kind, ErrorKind::invalid_input) << error->message;
    EXPECT_EQ(error->message, "the master key does not open this database's secrets");
  }
  EXPECT_EQ(opened, 1);
  EXPECT_EQ(db.count_rows("meta"), 1);
}

TEST(PostgresStore, ADatabaseMadeWithOneKeyRefusesAnother) {
  TestDatabase db(Backend::postgresql);
  const std::string key = new_key_text();
  auto held = storage::pg::holds_data(options_for(db.url()));
  ASSERT_TRUE(held.ok()) << held.error().message;
  EXPECT_FALSE(*held);
  Made made;
  {
    auto store = open_or_fail(options_for(db.url()), key);
    ASSERT_NE(store, nullptr);
    made = make_some(*store);
  }
  held = storage::pg::holds_data(options_for(db.url()));
  ASSERT_TRUE(held.ok()) << held.error().message;
  EXPECT_TRUE(*held);

  auto wrong = storage::open_postgres_store(options_for(db.url()), key_of(new_key_text()));
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.error().kind, ErrorKind::invalid_input);
  EXPECT_EQ(wrong.error().message, "the master key does not open this database's secrets");

  auto right = open_or_fail(options_for(db.url()), key);
  ASSERT_NE(right, nullptr);
  auto r = right->resolve(made.exported);
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_NE(r->uri, nullptr);
  auto found = right->find_membrane(made.tenant_id, "m");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->export_token.text(), made.membrane.export_token.text());
}

TEST(PostgresStore, ADatabaseOfANewerSchemaIsRefused) {
  TestDatabase db(Backend::postgresql);
  const std::string key = new_key_text();
  ASSERT_NE(open_or_fail(options_for(db.url()), key), nullptr);
  Session(db.url()).value("UPDATE schema_version SET version = version + 1");
  auto store = storage::open_postgres_store(options_for(db.url()), key_of(key));
  ASSERT_FALSE(store.ok());
  EXPECT_NE(store.error().message.find("newer membraned"), std::string::npos) << store.error().message;
}

// --- the pool and the statement timeout ----------------------------------------------------------

TEST(PostgresStore, ManyThreadsShareABoundedPool) {
  TestDatabase db(Backend::postgresql);
  PostgresOptions options = options_for(db.url());
  options.connections = 2;
  auto store = open_or_fail(options, new_key_text());
  ASSERT_NE(store, nullptr);
  Made made = make_some(*store);
  constexpr int kThreads = 8;
  constexpr int kEach = 25;
  std::atomic<int> failures{0};
  at_once(kThreads, [&](int i) {
    for (int j = 0; j < kEach; ++j) {
      Token x = new_token();
      if (!store->export_uri(made.membrane.export_token, x, simple_config(), membraned::test::new_grant())) ++failures;
      if (!store->resolve(x)) ++failures;
      if (j % 5 == 0) {
        Membrane m{"t" + std::to_string(i) + "-" + std::to_string(j), new_token(), new_token()};
        if (!store->create_membrane(made.tenant.create, m)) ++failures;
      }
    }
  });
  EXPECT_EQ(failures.load(), 0);
  // Never more than the pool's two connections to the database, whatever the threads.
  Session session(db.url());
  const std::string name = db.url().substr(db.url().rfind('/') + 1);
  EXPECT_LE(std::stoi(session.value("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'membraned' "
                                    "AND datname = '" + name + "'")),
            2);
  // Every export also writes its grant's revoke capability.
  EXPECT_EQ(db.count_rows("capabilities"), 3 + 2 + 2 * (1 + kThreads * kEach) + kThreads * 5 * 2);
  EXPECT_EQ(db.count_rows("grants"), 1 + kThreads * kEach);
}

// A statement that waits beyond the statement timeout (here: behind a lock held from outside)
// is cut by the server: the operation answers "unavailable" (503) and the store goes on.
TEST(PostgresStore, AStatementBeyondTheTimeoutIsUnavailableAndTheStoreGoesOn) {
  TestDatabase db(Backend::postgresql);
  PostgresOptions options = options_for(db.url());
  options.statement_timeout = std::chrono::milliseconds(300);
  auto store = open_or_fail(options, new_key_text());
  ASSERT_NE(store, nullptr);
  Made made = make_some(*store);
  {
    Session blocker(db.url());
    blocker.value("BEGIN");
    blocker.value("LOCK TABLE revocation_epoch IN ACCESS EXCLUSIVE MODE");
    auto revoked = store->revoke_membrane(made.membrane.revoke_token);
    ASSERT_FALSE(revoked.ok());
    EXPECT_EQ(revoked.error().kind, ErrorKind::unavailable) << revoked.error().message;
    auto resolved = store->resolve(made.exported);
    ASSERT_FALSE(resolved.ok());
    EXPECT_EQ(resolved.error().kind, ErrorKind::unavailable) << resolved.error().message;
    auto answer = membraned::api::Api::error_response(resolved.error());
    EXPECT_EQ(answer.status, 503);
    EXPECT_EQ(answer.body["message"], "Please try again soon");
  }  // the blocker's session ends: its lock goes
  EXPECT_TRUE(store->resolve(made.exported).ok());
  ASSERT_TRUE(store->revoke_membrane(made.membrane.revoke_token).ok());
  EXPECT_FALSE(store->resolve(made.exported).ok());
}

// --- the database going away ---------------------------------------------------------------------

// A PostgreSQL cluster of this test's own (tests/support/pg_cluster.sh), so stopping it cannot
// disturb the tests sharing the fixture's cluster. Stopped and removed when the object goes.
class OwnCluster {
 public:
  OwnCluster() { run("start"); }
  ~OwnCluster() {
    try {
      run("stop");
    } catch (const std::exception&) {
    }
  }
  void halt() { run("halt"); }
  void resume() { run("resume"); }
  std::string url() const {
    std::string url = membraned::test::read_file(dir_.path() / "url");
    while (!url.empty() && url.back() == '\n') url.pop_back();
    return url;
  }

 private:
  void run(const std::string& command) {
    std::string line = "bash '" + std::string(MEMBRANED_PG_CLUSTER_SCRIPT) + "' " + command + " '" +
                       dir_.path().string() + "'";
    if (std::system(line.c_str()) != 0) throw std::runtime_error(line + " failed");
  }
  TempDir dir_{"membraned-own-cluster-"};
};

TEST(PostgresStore, WhileTheDatabaseIsDownEveryOperationIsUnavailableAndItRecoversAfter) {
  OwnCluster cluster;
  PostgresOptions options = options_for(cluster.url());
  options.connections = 2;
  options.connect_timeout = std::chrono::milliseconds(2000);
  const std::string key = new_key_text();
  auto store = open_or_fail(options, key);
  ASSERT_NE(store, nullptr);
  Made made = make_some(*store);
  Membrane second{"second", new_token(), new_token()};
  ASSERT_TRUE(store->create_membrane(made.tenant.create, second).ok());
  Token in_second = new_token();
  ASSERT_TRUE(store->export_uri(second.export_token, in_second, simple_config(), membraned::test::new_grant()).ok());
  ASSERT_TRUE(store->resolve(made.exported).ok());  // now cached too

  cluster.halt();
  auto expect_unavailable = [](const core::Error& error, const char* what) {
    EXPECT_EQ(error.kind, ErrorKind::unavailable) << what << ": " << error.message;
    auto answer = membraned::api::Api::error_response(error);
    EXPECT_EQ(answer.status, 503) << what;
    EXPECT_EQ(answer.body["message"], "Please try again soon") << what;
  };
  // Twice each: the first finds the pooled connections dead, the second cannot connect.
  for (int round = 0; round < 2; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    auto resolved = store->resolve(made.exported);  // cached, but never trusted without the epoch
    ASSERT_FALSE(resolved.ok());
    expect_unavailable(resolved.error(), "resolve");
    auto has = store->has_tenants();
    ASSERT_FALSE(has.ok());
    expect_unavailable(has.error(), "has_tenants");
    auto created = store->create_membrane(made.tenant.create, Membrane{"during", new_token(), new_token()});
    ASSERT_FALSE(created.ok());
    expect_unavailable(created.error(), "create_membrane");
    Token x = new_token();
    auto exported = store->export_uri(made.membrane.export_token, x, simple_config(), membraned::test::new_grant());
    ASSERT_FALSE(exported.ok());
    expect_unavailable(exported.error(), "export_uri");
    auto listed = store->list_membranes(made.tenant_id, std::nullopt, 10);
    ASSERT_FALSE(listed.ok());
    expect_unavailable(listed.error(), "list_membranes");
    auto revoked = store->revoke_membrane(second.revoke_token);
    ASSERT_FALSE(revoked.ok());
    expect_unavailable(revoked.error(), "revoke_membrane");
  }
  // Starting against a database that is down is a clear error, not a hang nor a crash.
  auto other = storage::open_postgres_store(options, key_of(key));
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.error().kind, ErrorKind::unavailable) << other.error().message;

  cluster.resume();
  // The store recovers by itself: the first operation after the restart works.
  auto resolved = store->resolve(made.exported);
  ASSERT_TRUE(resolved.ok()) << resolved.error().message;
  ASSERT_TRUE(store->revoke_membrane(second.revoke_token).ok());
  EXPECT_FALSE(store->resolve(in_second).ok());
  EXPECT_TRUE(store->resolve(made.exported).ok());
  // Nothing acknowledged before the outage was lost, and nothing refused during it was made.
  auto found = store->find_membrane(made.tenant_id, "m");
  ASSERT_TRUE(found.ok() && found->has_value());
  auto during = store->find_membrane(made.tenant_id, "during");
  ASSERT_TRUE(during.ok());
  EXPECT_FALSE(during->has_value());
  auto reopened = storage::open_postgres_store(options, key_of(key));
  EXPECT_TRUE(reopened.ok()) << reopened.error().message;
}

}  // namespace
